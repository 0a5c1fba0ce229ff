"""The Customer aggregate's rules, without servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from c360.events.v1 import customer_events_pb2 as ev
from c360_customer.contract import CONTRACT
from c360_customer.domain import (
    Channel,
    Customer,
    Purpose,
    end_contact_person,
    import_customer,
    link_contact_person,
    register_customer,
)
from c360_platform.errors import AlreadyExists, InvalidArgument, NotFound, PreconditionFailed

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def person(name: str = "Ada Lovelace", **kw: object) -> Customer:
    fields: dict[str, object] = {
        "kind": "person",
        "display_name": name,
        "emails": ["Ada@Example.COM"],
        "phones": ["+49 30 901820"],
        "addresses": [],
    }
    fields.update(kw)
    return register_customer(**fields)  # type: ignore[arg-type]


def organisation(name: str = "Analytical Engines Ltd") -> Customer:
    return register_customer(
        kind="organisation", display_name=name, emails=[], phones=[], addresses=[]
    )


def replayed(customer: Customer) -> Customer:
    """The aggregate rebuilt from its own events, as the repository would."""
    events = customer.collect_events()
    copy: Customer | None = None
    for e in events:
        copy = e.mutate(copy)
    assert copy is not None
    return copy


def test_registration_normalises_contact_points() -> None:
    c = person(emails=["Ada@Example.COM", "ada@example.com"], phones=["+49 (30) 901820"])
    assert c.emails == ["ada@example.com"]
    assert c.phones == ["+4930901820"]
    assert c.kind == "person"
    assert c.version == 1


def test_registration_reports_every_bad_field_at_once() -> None:
    with pytest.raises(InvalidArgument) as caught:
        register_customer(
            kind="robot",
            display_name=" ",
            emails=["not-an-address"],
            phones=["12"],
            addresses=[{"lines": [], "city": "Berlin", "country": "Germany"}],
            tags=["Has Space"],
        )
    fields = {v.field for v in caught.value.violations}
    assert fields == {
        "kind",
        "display_name",
        "emails[0]",
        "phones[0]",
        "addresses[0].lines",
        "addresses[0].country",
        "tags[0]",
    }


def test_overlong_name_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="display_name: must be at most 200"):
        person("x" * 201)


def test_adding_a_known_email_records_nothing() -> None:
    c = person()
    c.collect_events()
    c.add_email("ADA@example.com")
    assert c.collect_events() == []
    c.add_email("countess@example.org")
    assert [type(e).__name__ for e in c.collect_events()] == ["EmailAdded"]
    assert c.emails == ["ada@example.com", "countess@example.org"]


def test_removing_an_unknown_phone_is_not_found() -> None:
    c = person()
    with pytest.raises(NotFound):
        c.remove_phone("+44 20 7946 0958")


def test_state_rebuilt_from_events_equals_state_after_commands() -> None:
    c = person()
    c.rename("Augusta Ada King")
    c.add_phone("+44 20 7946 0958")
    address_id = c.add_postal_address(
        {"lines": ["12 St James's Square"], "city": "London", "country": "gb"}
    )
    c.assign_owner("emp-0042")
    c.change_tags(["vip", "b2c"], [])
    c.decide_consent(True, "email", "marketing", "web-form", NOW)
    c.decide_consent(False, "email", "marketing", "call-centre", NOW + timedelta(days=1))
    copy = replayed(c)
    assert copy.display_name == c.display_name == "Augusta Ada King"
    assert copy.phones == c.phones
    assert copy.addresses == c.addresses
    assert copy.addresses[0]["address_id"] == address_id
    assert copy.addresses[0]["country"] == "GB"
    assert copy.owner_id == "emp-0042"
    assert copy.tags == ["b2c", "vip"]
    assert copy.consents == c.consents
    assert not copy.has_consent(Channel.EMAIL, Purpose.MARKETING)


def test_a_consent_decision_keeps_who_recorded_it_and_older_ones_read_without() -> None:
    c = person()
    [registered] = c.collect_events()
    c.decide_consent(True, "email", "marketing", "web-form", NOW, recorded_by="emp-0042")
    [granted] = c.collect_events()
    assert c.consents["email/marketing"]["recorded_by"] == "emp-0042"
    published = CONTRACT.publication(granted).payload
    assert isinstance(published, ev.ConsentGranted)
    assert (published.source, published.recorded_by) == ("web-form", "emp-0042")
    # An event recorded before `recorded_by` existed has no such attribute.
    state = {k: v for k, v in granted.__dict__.items() if k != "recorded_by"}
    older: Any = object.__new__(type(granted))
    older.__dict__.update(state)
    copy = older.mutate(registered.mutate(None))
    assert copy.consents["email/marketing"]["recorded_by"] == ""
    assert CONTRACT.publication(older).payload.recorded_by == ""  # type: ignore[attr-defined]


def test_a_consent_decision_is_dated_when_the_customer_decided_never_out_of_order() -> None:
    c = person()
    signed = NOW - timedelta(days=7)
    c.decide_consent(True, "post", "marketing", "signed form", signed, now=NOW)
    assert c.consents["post/marketing"]["decided_at"] == signed
    c.collect_events()
    with pytest.raises(InvalidArgument) as caught:
        c.decide_consent(True, "sms", "marketing", "web", NOW + timedelta(minutes=6), now=NOW)
    assert [v.field for v in caught.value.violations] == ["decided_at"]
    # Before the latest decision on that channel and purpose: it could not be the latest.
    with pytest.raises(PreconditionFailed, match="post/marketing decision is from"):
        c.decide_consent(False, "post", "marketing", "letter", signed - timedelta(days=1), now=NOW)
    assert c.collect_events() == []
    assert c.consents["post/marketing"]["granted"] is True
    c.decide_consent(False, "post", "marketing", "letter", NOW - timedelta(days=1), now=NOW)
    assert c.consents["post/marketing"]["granted"] is False


def test_a_decision_dated_by_a_clock_a_little_ahead_of_ours_is_taken_as_now() -> None:
    """A caller whose clock was a second ahead had its "now" refused as "in the future"
    (a contact's start is allowed five minutes)."""
    c = person()
    c.decide_consent(True, "sms", "marketing", "web", NOW + timedelta(minutes=4), now=NOW)
    assert c.consents["sms/marketing"]["decided_at"] == NOW
    # Dated now, not ahead: the next decision, made now, is not older than it.
    c.decide_consent(False, "sms", "marketing", "call", NOW, now=NOW)
    assert c.consents["sms/marketing"]["granted"] is False


def test_latest_consent_decision_wins_and_every_decision_is_kept() -> None:
    c = person()
    c.collect_events()
    c.decide_consent(True, "sms", "service", "app", NOW)
    c.decide_consent(True, "sms", "service", "app", NOW)
    assert c.has_consent(Channel.SMS, Purpose.SERVICE)
    assert len(c.collect_events()) == 2
    with pytest.raises(InvalidArgument) as caught:
        c.decide_consent(True, "pigeon", "gossip", "", NOW)
    assert {v.field for v in caught.value.violations} == {"channel", "purpose", "source"}


def test_owner_must_be_an_employee_id() -> None:
    c = person()
    with pytest.raises(InvalidArgument, match="owner_id"):
        c.assign_owner("Ada Lovelace <ada@example.com>")


def test_contact_person_changing_company_keeps_the_old_link() -> None:
    ada = person()
    old, new = organisation("Old Co"), organisation("New Co")
    first = link_contact_person(old, ada, "buyer", NOW)
    end_contact_person(old, ada, first, NOW + timedelta(days=30))
    second = link_contact_person(new, ada, "head of purchasing", NOW + timedelta(days=31))
    assert set(ada.links) == {first, second}
    assert ada.links[first]["valid_until"] == NOW + timedelta(days=30)
    assert [link["link_id"] for link in ada.current_links()] == [second]
    assert old.links[first]["valid_until"] is not None
    with pytest.raises(PreconditionFailed, match="ended already"):
        end_contact_person(old, ada, first, NOW + timedelta(days=40))


def test_contact_person_rules() -> None:
    ada, org = person(), organisation()
    with pytest.raises(PreconditionFailed, match="not an organisation"):
        link_contact_person(ada, org, "buyer", NOW)
    link = link_contact_person(org, ada, "buyer", NOW)
    with pytest.raises(AlreadyExists):
        link_contact_person(org, ada, "buyer", NOW)
    with pytest.raises(InvalidArgument, match="valid_until"):
        end_contact_person(org, ada, link, NOW - timedelta(days=1))


def test_tags_change_only_what_differs() -> None:
    c = person(tags=["vip"])
    c.collect_events()
    c.change_tags(["VIP"], ["unknown"])
    assert c.collect_events() == []


def test_a_tag_both_added_and_removed_is_refused_whether_or_not_the_customer_has_it() -> None:
    """It was added to a customer without it and removed from one with it."""
    for tags in ([], ["vip"]):
        c = person(tags=tags)
        c.collect_events()
        with pytest.raises(InvalidArgument) as caught:
            c.change_tags(["b2c", "vip"], ["VIP"])
        assert [str(v) for v in caught.value.violations] == [
            "remove[0]: tag 'vip' is also in add: add or remove it, not both"
        ]
        assert c.collect_events() == []
        assert c.tags == tags


def test_removing_an_address_without_its_id_is_bad_input_not_a_missing_address() -> None:
    c = person()
    with pytest.raises(InvalidArgument) as caught:
        c.remove_postal_address(" ")
    assert [str(v) for v in caught.value.violations] == ["address_id: is required"]


def test_a_list_over_its_limit_is_refused_before_its_items_are_read() -> None:
    many = [f"not an address {i}" for i in range(5_000)]
    with pytest.raises(InvalidArgument) as caught:
        register_customer(kind="person", display_name="Ann", emails=many, phones=[], addresses=[])
    # One violation for the list, none for its 5,000 (invalid) items.
    assert [v.field for v in caught.value.violations] == ["emails"]


KEY = b"an import key of 32 bytes, made up"


def test_an_imported_row_reads_its_local_numbers_in_its_address_country_if_it_has_any() -> None:
    """A row's first address gives its numbers' country; one without phone numbers of its own
    (Antarctica) gives none, so the row's international number is not refused for it."""
    row: dict[str, Any] = {"kind": "person", "display_name": "Ada", "emails": []}
    home = {"lines": ["Main St 1"], "city": "Berlin", "country": "de"}
    base = {"lines": ["Station"], "city": "McMurdo", "country": "AQ"}
    local = import_customer("r1", KEY, **row, phones=["030 901820"], addresses=[home])
    assert local.phones == ["+4930901820"]
    station = import_customer("r2", KEY, **row, phones=["+49 30 901820"], addresses=[base])
    assert station.phones == ["+4930901820"]
