"""Ticket events in the timeline and profile, and the churn signal, without servers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import message

from c360.events.v1 import ticket_events_pb2 as ev
from c360_platform.envelope import Publication, pack
from c360_timeline.projection import (
    ChurnRule,
    Doc,
    Entry,
    empty_profile,
    entry_for,
    fold,
    observe,
    profile_as_of,
    sweep,
)
from c360_timeline.query import profile_message

T0 = datetime(2026, 11, 1, 9, 0, 0, 123456, tzinfo=UTC)
DAY = timedelta(days=1)
RULE = ChurnRule()


class Desk:
    """Publishes ticket events for one customer, as the service desk would."""

    def __init__(self) -> None:
        self.customer = str(uuid.uuid4())
        self.position = 0
        self.versions: dict[str, int] = {}

    def event(self, ticket: str, payload: message.Message, at: datetime) -> Entry:
        self.position += 1
        self.versions[ticket] = self.versions.get(ticket, 0) + 1
        return entry_for(
            pack(
                source="service-desk",
                publication=Publication("ticket", self.customer, payload),
                aggregate_id=uuid.UUID(ticket),
                aggregate_version=self.versions[ticket],
                position=self.position,
                occurred_at=at,
            )
        )

    def opened(self, at: datetime, channel: Any = ev.TICKET_CHANNEL_PHONE) -> Entry:
        return self.event(
            str(uuid.uuid4()),
            ev.TicketOpened(
                customer_id=self.customer,
                channel=channel,
                subject="Router keeps dropping the connection",
                category="technical",
                priority=ev.TICKET_PRIORITY_HIGH,
            ),
            at,
        )


def replay(entries: list[Entry], rule: ChurnRule = RULE) -> tuple[Doc, list[Entry]]:
    profile = empty_profile(entries[0].customer_id)
    derived: list[Entry] = []
    for entry in entries:
        profile = fold(profile, entry)
        derived += observe(profile, entry, rule)
    return profile, derived


def test_ticket_events_have_readable_summaries_and_fill_the_profile() -> None:
    desk = Desk()
    opened = desk.opened(T0)
    tid = opened.aggregate_id
    c = desk.customer
    entries = [
        opened,
        desk.event(tid, ev.TicketAssigned(customer_id=c, agent_id="emp-7", queue="technical"), T0),
        desk.event(
            tid,
            ev.TicketInteractionRecorded(
                customer_id=c,
                kind=ev.INTERACTION_KIND_INBOUND_CALL,
                channel=ev.TICKET_CHANNEL_PHONE,
                duration_seconds=275,
            ),
            T0 + DAY,
        ),
        desk.event(
            tid,
            ev.TicketInteractionRecorded(
                customer_id=c,
                kind=ev.INTERACTION_KIND_OUTBOUND_MESSAGE,
                channel=ev.TICKET_CHANNEL_EMAIL,
                body="We replaced your router.",
            ),
            T0 + 2 * DAY,
        ),
        desk.event(
            tid, ev.TicketResolved(customer_id=c, resolution="Router replaced"), T0 + 3 * DAY
        ),
        desk.event(tid, ev.TicketRated(customer_id=c, score=4), T0 + 3 * DAY),
    ]
    second = desk.opened(T0 + 4 * DAY, ev.TICKET_CHANNEL_WEB_FORM)
    entries.append(second)
    assert [(e.source, e.type, e.summary) for e in entries] == [
        (
            "service-desk",
            "ticket.opened",
            "Ticket opened by phone: “Router keeps dropping the connection” (technical, high)",
        ),
        ("service-desk", "ticket.assigned", "Ticket assigned to emp-7 in queue technical"),
        ("service-desk", "ticket.interaction_recorded", "Call from the customer (4 min 35 s)"),
        (
            "service-desk",
            "ticket.interaction_recorded",
            "Message to the customer by e-mail: “We replaced your router.”",
        ),
        ("service-desk", "ticket.resolved", "Ticket resolved: Router replaced"),
        ("service-desk", "ticket.rated", "Customer rated the ticket 4/5"),
        (
            "service-desk",
            "ticket.opened",
            "Ticket opened by web form: “Router keeps dropping the connection” (technical, high)",
        ),
    ]
    profile, derived = replay(entries)
    assert derived == []
    summary = profile_message(profile, now=T0 + 5 * DAY).service_desk
    assert [t.ticket_id for t in summary.open_tickets] == [second.aggregate_id]
    assert summary.open_ticket_count == 1
    assert summary.tickets_total == 2
    assert summary.tickets_last_30_days == 2
    assert summary.last_contact_channel == "web_form"
    assert summary.last_contact_at.ToDatetime(tzinfo=UTC) == T0 + 4 * DAY
    assert (summary.mean_satisfaction, summary.ratings) == (4.0, 1)
    # "the last 30 days" is counted when the profile is read
    later = profile_message(profile, now=T0 + 33 * DAY).service_desk
    assert later.tickets_last_30_days == 1
    closed = fold(profile, desk.event(second.aggregate_id, ev.TicketClosed(customer_id=c), T0))
    assert profile_message(closed, now=T0).service_desk.open_ticket_count == 0
    assert profile_message(closed, now=T0).touches[0].count == 8


def test_three_contacts_within_the_window_are_not_a_churn_signal() -> None:
    desk = Desk()
    profile, derived = replay([desk.opened(T0 + i * 9 * DAY) for i in range(3)])
    assert derived == []
    assert profile_message(profile, now=T0 + 20 * DAY).at_risk is False


def test_the_fourth_contact_within_the_window_flags_the_customer_with_the_reasons() -> None:
    desk = Desk()
    entries = [desk.opened(T0 + i * 9 * DAY) for i in range(3)]
    # an inbound call on an open ticket is a contact; our reply and a note are not
    tid, c = entries[0].aggregate_id, desk.customer
    for kind in (ev.INTERACTION_KIND_OUTBOUND_CALL, ev.INTERACTION_KIND_INTERNAL_NOTE):
        entries.append(
            desk.event(tid, ev.TicketInteractionRecorded(customer_id=c, kind=kind), T0 + 19 * DAY)
        )
    assert replay(entries)[1] == []
    fourth = desk.event(
        tid,
        ev.TicketInteractionRecorded(
            customer_id=c, kind=ev.INTERACTION_KIND_INBOUND_CALL, channel=ev.TICKET_CHANNEL_PHONE
        ),
        T0 + 27 * DAY,
    )
    profile, derived = replay([*entries, fourth])
    assert [(d.source, d.type, d.occurred_at) for d in derived] == [
        ("timeline", "customer.at_risk_flagged", T0 + 27 * DAY)
    ]
    assert derived[0].summary == "At risk of churning: 4 support contacts within 30 days"
    shown = profile_message(profile, now=T0 + 28 * DAY)
    assert shown.at_risk is True
    assert [(r.contact, r.ticket_id) for r in shown.at_risk_reasons] == [
        ("ticket_opened", entries[0].aggregate_id),
        ("ticket_opened", entries[1].aggregate_id),
        ("ticket_opened", entries[2].aggregate_id),
        ("inbound_call", entries[0].aggregate_id),
    ]
    assert shown.at_risk_until.ToDatetime(tzinfo=UTC) == T0 + 57 * DAY
    # the same events give the same derived entries (ids included): rebuilds agree
    assert replay([*entries, fourth]) == (profile, derived)


def test_contacts_exactly_a_window_apart_do_not_count_together() -> None:
    desk = Desk()
    entries = [desk.opened(T0), *(desk.opened(T0 + (28 + i) * DAY) for i in range(3))]
    entries.append(desk.opened(T0 + 30 * DAY))
    # T0 falls out of the window (T0 + 30 days - 30 days, ...]: only 4 of 5 count, at the last
    profile, derived = replay(entries)
    assert [d.occurred_at for d in derived] == [T0 + 30 * DAY]
    assert len(profile["churn"]["contacts"]) == 4


def test_the_flag_clears_when_the_window_passes_with_no_new_contact() -> None:
    desk = Desk()
    entries = [desk.opened(T0 + i * DAY) for i in range(4)]
    profile, _ = replay(entries)
    until = T0 + 33 * DAY
    assert sweep(profile, until - timedelta(microseconds=1), RULE) == (profile, [])
    assert profile_message(profile, now=until).at_risk is False  # read time, before any sweep
    cleared, derived = sweep(profile, until + DAY, RULE)
    assert [(d.type, d.occurred_at, d.summary) for d in derived] == [
        ("customer.at_risk_cleared", until, "No longer at risk: no support contact for 30 days")
    ]
    assert cleared["churn"]["at_risk"] is False
    assert profile["churn"]["at_risk"] is True  # sweep does not change its input
    # a contact after the window passed, with no sweep in between, clears the old episode first
    late, derived = replay([*entries, desk.opened(until + 5 * DAY)])
    assert [(d.type, d.occurred_at) for d in derived[-1:]] == [("customer.at_risk_cleared", until)]
    assert late["churn"]["at_risk"] is False
    assert late["churn"] == {**cleared["churn"], "contacts": late["churn"]["contacts"]}


def test_contacts_during_an_episode_keep_the_flag_and_move_its_end() -> None:
    desk = Desk()
    entries = [desk.opened(T0 + i * DAY) for i in range(4)]
    entries.append(desk.opened(T0 + 25 * DAY))
    profile, derived = replay(entries)
    assert len(derived) == 1
    assert profile_message(profile, now=T0 + 40 * DAY).at_risk is True
    assert profile["churn"]["until"] == (T0 + 55 * DAY).isoformat()


def test_threshold_and_window_are_configurable() -> None:
    desk = Desk()
    rule = ChurnRule(threshold=2, window=timedelta(days=7))
    assert replay([desk.opened(T0), desk.opened(T0 + 8 * DAY)], rule)[1] == []
    _, derived = replay([desk.opened(T0), desk.opened(T0 + 6 * DAY)], rule)
    assert derived[0].summary == "At risk of churning: 2 support contacts within 7 days"


def test_as_of_profiles_reproduce_tickets_and_the_churn_signal_at_that_time() -> None:
    desk = Desk()
    entries = [desk.opened(T0 + i * DAY) for i in range(4)]
    profile, derived = replay(entries)
    # the entry that flagged the customer is the provenance of the flag
    assert profile["provenance"]["at_risk"]["event_id"] == derived[0].event_id
    tid = entries[3].aggregate_id
    assert profile["provenance"][f"service_desk.tickets[{tid}]"]["event_id"] == (
        entries[3].event_id
    )
    # derived entries stored beside the events are ignored: the rule derives them again
    stored = [*entries, *derived]
    assert profile_as_of(desk.customer, stored, T0 + 3 * DAY, RULE) == profile
    before = profile_as_of(desk.customer, stored, T0 + 2 * DAY, RULE)
    assert before is not None
    assert profile_message(before, now=T0 + 2 * DAY).at_risk is False
    assert profile_message(before, now=T0 + 2 * DAY).service_desk.tickets_total == 3
    # read-time values use as_of as "now": 40 days on, the flag has cleared
    later = profile_as_of(desk.customer, stored, T0 + 40 * DAY, RULE)
    assert later is not None
    assert later["churn"]["at_risk"] is False
    assert "at_risk" not in later["provenance"]
    shown = profile_message(later, now=T0 + 40 * DAY)
    assert shown.at_risk is False
    assert shown.service_desk.tickets_last_30_days == 0


def test_a_merged_duplicate_leaves_the_open_tickets_and_both_tickets_say_so() -> None:
    desk = Desk()
    first = desk.opened(T0)
    again = desk.opened(T0 + DAY, channel=ev.TICKET_CHANNEL_EMAIL)
    c, survivor, duplicate = desk.customer, first.aggregate_id, again.aggregate_id
    merged = desk.event(
        duplicate,
        ev.TicketMergedInto(customer_id=c, survivor_ticket_id=survivor, reason="same router"),
        T0 + 2 * DAY,
    )
    listed = desk.event(
        survivor,
        ev.TicketDuplicateMerged(
            customer_id=c,
            duplicate_ticket_id=duplicate,
            duplicate_channel=ev.TICKET_CHANNEL_EMAIL,
            reason="same router",
        ),
        T0 + 2 * DAY,
    )
    profile, _ = replay([first, again, merged, listed])
    assert list(profile["service_desk"]["tickets"]) == [survivor]
    assert merged.summary == f"Ticket merged into ticket {survivor[:8]} as a duplicate: same router"
    assert listed.summary == f"Duplicate ticket {duplicate[:8]} (by e-mail) merged in: same router"
    # Bookkeeping, not a contact with the customer.
    assert profile["last_contact_at"] == again.occurred_at.isoformat()
