"""The Ticket aggregate's state machine, validation and published contract, without servers."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from c360.events.v1 import ticket_events_pb2 as ev
from c360_platform.envelope import subject_for
from c360_platform.errors import InvalidArgument, PreconditionFailed
from c360_service_desk.contract import CONTRACT as TICKET_CONTRACT
from c360_service_desk.domain import Ticket, open_ticket

CUSTOMER = str(uuid.uuid4())
AT = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)

COMMANDS: dict[str, Callable[[Ticket], Any]] = {
    "assign": lambda t: t.assign("emp-0007", "billing"),
    "record_interaction": lambda t: t.record_interaction(
        "inbound_call", "", AT, duration_seconds=95
    ),
    "change_priority": lambda t: t.change_priority("urgent", "customer is a VIP"),
    "escalate": lambda t: t.escalate("asked for a supervisor", "complaints"),
    "resolve": lambda t: t.resolve("Refunded the double charge", "emp-0007", AT),
    "reopen": lambda t: t.reopen("charged twice again"),
    "close": lambda t: t.close("", AT),
    "rate": lambda t: t.rate(4, "quick and friendly"),
}
ALLOWED: dict[str, set[str]] = {
    "assign": {"open"},
    "record_interaction": {"open", "resolved"},
    "change_priority": {"open"},
    "escalate": {"open"},
    "resolve": {"open"},
    "reopen": {"resolved"},
    "close": {"open", "resolved"},
    "rate": {"resolved"},  # a closed ticket only if it was resolved first
}
STATE_AFTER = {"resolve": "resolved", "reopen": "open", "close": "closed"}


def new_ticket(**overrides: Any) -> Ticket:
    fields: dict[str, Any] = {
        "customer_id": CUSTOMER,
        "channel": "phone",
        "subject": "Invoice shows a double charge",
        "description": "Charged twice on 1 November.\n\nCard ending 4242.",
        "category": "Billing",
        "priority": "high",
    }
    return open_ticket(**{**fields, **overrides})


def ticket_in(state: str) -> Ticket:
    ticket = new_ticket()
    if state == "resolved":
        ticket.resolve("Refunded", "", AT)
    elif state == "closed":
        ticket.close("duplicate", AT)
    assert ticket.state == state
    return ticket


@pytest.mark.parametrize("state", ["open", "resolved", "closed"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_in_every_state(command: str, state: str) -> None:
    ticket = ticket_in(state)
    before = len(ticket.pending_events)
    if state in ALLOWED[command]:
        COMMANDS[command](ticket)
        assert len(ticket.pending_events) == before + 1
        assert ticket.state == STATE_AFTER.get(command, state)
    else:
        with pytest.raises(PreconditionFailed, match=rf"is {state}: cannot "):
            COMMANDS[command](ticket)
        assert len(ticket.pending_events) == before
        assert ticket.state == state


def test_the_illegal_transitions_of_the_issue_name_the_state() -> None:
    closed = ticket_in("closed")
    with pytest.raises(PreconditionFailed) as caught:
        closed.resolve("too late", "", AT)
    assert re.search(
        r"ticket .+ is closed: cannot resolve it \(only when open\)", str(caught.value)
    )
    with pytest.raises(PreconditionFailed, match="is open: cannot rate it"):
        ticket_in("open").rate(5, "")
    with pytest.raises(PreconditionFailed, match="closed is final"):
        closed.reopen("")


def test_a_ticket_closed_after_its_resolution_is_rated_one_closed_without_none() -> None:
    resolved_then_closed = ticket_in("resolved")
    resolved_then_closed.close("", AT)
    resolved_then_closed.rate(4, "")
    assert resolved_then_closed.rating == 4
    withdrawn = ticket_in("closed")
    with pytest.raises(PreconditionFailed, match="closed without a resolution"):
        withdrawn.rate(1, "never heard back")
    assert withdrawn.rating is None


def test_a_resolution_is_rated_once_and_a_reopened_ticket_again_after_its_next() -> None:
    ticket = ticket_in("resolved")
    ticket.rate(2, "slow")
    with pytest.raises(PreconditionFailed, match="rated 2 already"):
        ticket.rate(5, "")
    ticket.reopen("still broken")
    ticket.resolve("Replaced the router", "emp-0001", AT)
    assert ticket.rating is None
    ticket.rate(5, "")
    rated: Ticket = ticket  # (mypy narrowed rating to None above)
    assert (rated.rating, rated.reopened_count, rated.resolution) == (
        5,
        1,
        "Replaced the router",
    )


def test_opening_validates_and_normalises() -> None:
    ticket = new_ticket(subject="  Invoice   shows a double charge ", category=" Billing ")
    assert (ticket.subject, ticket.category, ticket.priority) == (
        "Invoice shows a double charge",
        "billing",
        "high",
    )
    assert new_ticket(category="", priority="").category == "general"
    assert new_ticket(priority="").priority == "normal"
    with pytest.raises(InvalidArgument) as caught:
        open_ticket(customer_id="nobody", channel="pigeon", subject=" ", priority="asap")
    assert [v.field for v in caught.value.violations] == [
        "customer_id",
        "channel",
        "subject",
        "priority",
    ]


def test_interactions_validate_their_kind_channel_and_duration() -> None:
    ticket = new_ticket()
    call = ticket.record_interaction("inbound_call", "", AT, duration_seconds=300)
    message = ticket.record_interaction("outbound_message", "We are on it", AT)
    ticket.record_interaction("internal_note", "Checked the ledger", AT, agent_id="emp-0002")
    assert call != message
    assert [(i["kind"], i["channel"]) for i in ticket.interactions] == [
        ("inbound_call", "phone"),
        ("outbound_message", "phone"),  # messages default to the ticket's channel
        ("internal_note", ""),
    ]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "internal_note", "body": "x", "duration_seconds": 5}, "duration_seconds"),
        ({"kind": "internal_note", "body": "x", "channel": "email"}, "channel"),
        ({"kind": "inbound_message", "body": "  "}, "body"),
        ({"kind": "telepathy", "body": "x"}, "kind"),
        ({"kind": "inbound_call", "body": "", "agent_id": "Jane Doe"}, "agent_id"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidArgument) as caught:
            ticket.record_interaction(at=AT, **kwargs)
        assert [v.field for v in caught.value.violations] == [field]


def test_assigning_needs_an_agent_or_a_queue_and_repeats_change_nothing() -> None:
    ticket = new_ticket()
    with pytest.raises(InvalidArgument, match="agent_id: an agent or a queue is required"):
        ticket.assign("", "")
    ticket.assign("emp-0003", "")
    ticket.assign("", "technical")
    count = len(ticket.pending_events)
    ticket.assign("emp-0003", "technical")
    ticket.change_priority("high", "")
    assert len(ticket.pending_events) == count
    assert (ticket.agent_id, ticket.queue) == ("emp-0003", "technical")
    with pytest.raises(InvalidArgument, match="score: must be 1 to 5"):
        ticket_in("resolved").rate(6, "")


def test_a_ticket_rebuilt_from_its_events_is_the_same() -> None:
    ticket = new_ticket()
    for command in ("assign", "record_interaction", "escalate", "resolve", "rate", "close"):
        COMMANDS[command](ticket)
    events = ticket.collect_events()
    copy: Any = None
    for event in events:
        copy = event.mutate(copy)
    assert copy.__dict__ == ticket.__dict__
    assert all(getattr(e, "customer_id") == CUSTOMER for e in events)  # noqa: B009


def test_every_ticket_event_is_published_for_its_customer() -> None:
    ticket = new_ticket()
    for command in ("assign", "record_interaction", "change_priority", "escalate", "resolve"):
        COMMANDS[command](ticket)
    ticket.reopen("")
    ticket.close("", AT)
    ticket.rate(3, "")
    contract = TICKET_CONTRACT
    publications = [contract.publication(e) for e in ticket.collect_events()]
    assert {p.customer_id for p in publications} == {CUSTOMER}
    assert {p.aggregate_type for p in publications} == {"ticket"}
    names = [p.payload.DESCRIPTOR.name for p in publications]
    assert names == [
        "TicketOpened",
        "TicketAssigned",
        "TicketInteractionRecorded",
        "TicketPriorityChanged",
        "TicketEscalated",
        "TicketResolved",
        "TicketReopened",
        "TicketClosed",
        "TicketRated",
    ]
    opened = publications[0].payload
    assert isinstance(opened, ev.TicketOpened)
    assert opened.channel == ev.TICKET_CHANNEL_PHONE
    closed = publications[7].payload
    assert isinstance(closed, ev.TicketClosed)
    assert closed.previous_state == ev.TICKET_STATE_OPEN
    subjects = [subject_for("service-desk", "ticket", name) for name in names]
    assert subjects[2] == "c360.service-desk.ticket.interaction_recorded"
    # Valid NATS subjects: dot-separated tokens, no spaces or wildcards.
    assert all(re.fullmatch(r"[a-z0-9_-]+(\.[a-z0-9_-]+)+", s) for s in subjects)
