"""The entry types a GetTimeline may filter on: those of the contract's catalogue (generated
from the protos by `make proto`), which must name the aggregates the services publish as."""

from __future__ import annotations

from uuid import uuid4

import pytest

from c360.events.v1.catalogue import PUBLISHED
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_platform import registry
from c360_platform.envelope import subject_for
from c360_platform.errors import InvalidArgument
from c360_timeline.query import entry_types, page_query


def test_a_type_no_entry_has_is_refused_with_the_nearest() -> None:
    request = tapi.GetTimelineRequest(types=["ticket.opened", "ticket.opned", "Ticket Opened!"])
    with pytest.raises(InvalidArgument) as refused:
        page_query(request, uuid4(), 10)
    found = {v.field: v.description for v in refused.value.violations}
    assert sorted(found) == ["types[1]", "types[2]"]
    assert found["types[1]"].startswith("no entry type 'ticket.opned'; did you mean ticket.opened")
    assert found["types[2]"] == ("no entry type 'Ticket Opened!'; the types are in docs/events.md")


def test_every_kind_of_entry_may_be_filtered_on() -> None:
    request = tapi.GetTimelineRequest(types=sorted(entry_types()))
    statement, params = page_query(request, uuid4(), 10)
    assert "type = ANY" in statement
    assert {
        "customer.registered",
        "ticket.opened",
        "opportunity.won",
        "touch.sent",
        "invoice.issued",
        "credit_note.issued",
        "customer.at_risk_flagged",
    } <= set(params["types"])


@pytest.mark.parametrize("spec", list(registry.event_sources()), ids=lambda s: s.name)
def test_the_catalogue_names_the_aggregates_each_service_publishes_as(
    spec: registry.ServiceSpec,
) -> None:
    """docs/events.md and the catalogue read each event's aggregate from its file's comment;
    the relay publishes under the aggregate of the service's contract. Marketing's file names
    two (membership and touch), and the docs gave touch events membership's subjects
    (c360.marketing.membership.touch_sent, where the relay publishes c360.marketing.touch.sent)."""
    published = {p.aggregate_type for p in spec.event_contract()}
    catalogued = {e.aggregate for e in PUBLISHED.values() if e.source == spec.name}
    assert catalogued == published


def test_the_catalogue_gives_each_event_the_relays_subject() -> None:
    sent = PUBLISHED["c360.events.v1.TouchSent"]
    assert (sent.aggregate, sent.type, sent.subject) == (
        "touch",
        "touch.sent",
        "c360.marketing.touch.sent",
    )
    for name, event in PUBLISHED.items():
        assert event.subject == subject_for(event.source, event.aggregate, name.split(".")[-1])
