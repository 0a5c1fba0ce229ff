"""SLA entries and contact-centre records in the timeline and profile, without servers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from google.protobuf import message
from google.protobuf.timestamp_pb2 import Timestamp

from c360.events.v1 import contact_events_pb2 as cev
from c360.events.v1 import ticket_events_pb2 as ev
from c360_platform.envelope import Publication, pack
from c360_timeline.projection import Entry, entry_for
from c360_timeline.query import profile_message

from .test_ticket_projection import Desk, replay

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def ts(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


class Centre(Desk):
    def contact(self, payload: message.Message, at: datetime) -> Entry:
        self.position += 1
        return entry_for(
            pack(
                source="service-desk",
                publication=Publication("contact", self.customer, payload),
                aggregate_id=uuid.uuid4(),
                aggregate_version=1,
                position=self.position,
                occurred_at=at,
            )
        )

    def ivr(self, at: datetime, outcome: int = cev.CONTACT_OUTCOME_SELF_SERVICE) -> Entry:
        return self.contact(
            cev.ContactRecorded(
                customer_id=self.customer,
                channel=ev.TICKET_CHANNEL_IVR,
                direction=cev.CONTACT_DIRECTION_INBOUND,
                started_at=ts(at),
                duration_seconds=125,
                outcome=outcome,  # type: ignore[arg-type]
                ivr_path=["cards", "balance"],
            ),
            at,
        )


def test_sla_entries_read_as_what_happened_and_breaches_are_counted() -> None:
    desk = Centre()
    opened = desk.opened(T0)
    tid = opened.aggregate_id
    applied = desk.event(
        tid,
        ev.TicketSlaApplied(
            customer_id=desk.customer,
            policy="high",
            reason="opened",
            time_zone="Europe/Berlin",
            targets=[
                ev.SlaTarget(
                    kind=ev.SLA_TARGET_KIND_RESOLUTION,
                    minutes=240,
                    due_at=ts(T0 + timedelta(hours=4)),
                )
            ],
        ),
        T0,
    )
    breached = desk.event(
        tid,
        ev.TicketSlaBreached(
            customer_id=desk.customer,
            target=ev.SLA_TARGET_KIND_RESOLUTION,
            due_at=ts(T0 + timedelta(hours=4)),
        ),
        T0 + timedelta(hours=4, seconds=3),
    )
    assert applied.summary == "SLA policy high (opened): resolution by 2026-11-02 13:00 UTC"
    assert breached.summary == "SLA resolution target breached (was due 2026-11-02 13:00 UTC)"
    profile, _ = replay([opened, applied, breached])
    shown = profile_message(profile, now=T0 + DAY).service_desk
    assert shown.sla_breaches == 1
    assert [(t.sla_policy, t.sla_breaches) for t in shown.open_tickets] == [("high", 1)]


def test_contact_records_fill_the_contact_history_and_count_as_support_contacts() -> None:
    desk = Centre()
    entries = [desk.ivr(T0 + i * timedelta(hours=2)) for i in range(4)]
    assert entries[
        0
    ].summary == "IVR contact from the customer (menu cards > balance), 2 min 5 s:" + (
        " self-service"
    )
    profile, derived = replay(entries)
    shown = profile_message(profile, now=T0 + DAY)
    desk_part = shown.service_desk
    assert (desk_part.contacts_total, desk_part.contacts_last_30_days) == (4, 4)
    assert [c.at.ToDatetime(tzinfo=UTC) for c in desk_part.recent_contacts] == [
        T0 + i * timedelta(hours=2) for i in (3, 2, 1, 0)
    ]
    assert desk_part.recent_contacts[0].outcome == "self_service"
    assert desk_part.last_contact_channel == "ivr"
    # Four inbound contacts within the window: the churn signal sees them, not only tickets.
    assert shown.at_risk is True
    assert [r.contact for r in shown.at_risk_reasons] == ["inbound_call"] * 4
    assert [d.type for d in derived] == ["customer.at_risk_flagged"]
    assert profile_message(profile, now=T0 + 40 * DAY).service_desk.contacts_last_30_days == 0


def test_outbound_contacts_are_history_but_no_support_contact() -> None:
    desk = Centre()
    out = desk.contact(
        cev.ContactRecorded(
            customer_id=desk.customer,
            channel=ev.TICKET_CHANNEL_SMS,
            direction=cev.CONTACT_DIRECTION_OUTBOUND,
            started_at=ts(T0),
            outcome=cev.CONTACT_OUTCOME_INFORMATION,
        ),
        T0,
    )
    profile, _ = replay([out, out, out, out])
    shown = profile_message(profile, now=T0 + DAY)
    assert shown.service_desk.contacts_total == 4
    assert shown.at_risk is False


def test_a_wait_ended_by_the_customers_reply_says_so() -> None:
    desk = Centre()
    tid = desk.opened(T0).aggregate_id
    due = ev.SlaTarget(
        kind=ev.SLA_TARGET_KIND_RESOLUTION, minutes=240, due_at=ts(T0 + timedelta(hours=4))
    )
    by_agent = desk.event(tid, ev.TicketSlaResumed(customer_id=desk.customer, targets=[due]), T0)
    by_reply = desk.event(
        tid,
        ev.TicketSlaResumed(
            customer_id=desk.customer, targets=[due], reason="the customer replied"
        ),
        T0,
    )
    assert by_agent.summary == "SLA clock resumed: resolution by 2026-11-02 13:00 UTC"
    assert by_reply.summary == (
        "SLA clock resumed (the customer replied): resolution by 2026-11-02 13:00 UTC"
    )


def test_a_target_met_before_a_new_policy_is_not_shown_as_due() -> None:
    desk = Centre()
    tid = desk.opened(T0).aggregate_id
    met = ev.SlaTarget(
        kind=ev.SLA_TARGET_KIND_FIRST_RESPONSE,
        minutes=240,
        due_at=ts(T0 + timedelta(hours=4)),
        status=ev.SLA_TARGET_STATUS_MET,
    )
    running = ev.SlaTarget(
        kind=ev.SLA_TARGET_KIND_RESOLUTION,
        minutes=120,
        due_at=ts(T0 + timedelta(hours=2)),
        status=ev.SLA_TARGET_STATUS_IN_PROGRESS,
    )
    applied = desk.event(
        tid,
        ev.TicketSlaApplied(
            customer_id=desk.customer,
            policy="urgent",
            reason="priority changed from normal to urgent",
            targets=[met, running],
        ),
        T0 + timedelta(minutes=30),
    )
    assert applied.summary == (
        "SLA policy urgent (priority changed from normal to urgent):"
        " resolution by 2026-11-02 11:00 UTC"
    )


def test_the_profile_shows_which_open_tickets_are_on_hold() -> None:
    desk = Centre()
    opened = desk.opened(T0)
    tid = opened.aggregate_id
    paused = desk.event(
        tid,
        ev.TicketSlaPaused(
            customer_id=desk.customer, waiting_for=ev.TICKET_WAITING_FOR_THIRD_PARTY
        ),
        T0 + timedelta(minutes=5),
    )
    resumed = desk.event(
        tid, ev.TicketSlaResumed(customer_id=desk.customer), T0 + timedelta(minutes=9)
    )
    profile, _ = replay([opened, paused])
    [shown] = profile_message(profile, now=T0 + DAY).service_desk.open_tickets
    assert shown.waiting_for == "third_party"
    profile, _ = replay([opened, paused, resumed])
    [shown] = profile_message(profile, now=T0 + DAY).service_desk.open_tickets
    assert shown.waiting_for == ""
