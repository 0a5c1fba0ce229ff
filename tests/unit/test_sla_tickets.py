"""SLA clocks on tickets and contact-centre records, through the service desk's application
and servicer in memory (a hand-moved clock, no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest

from c360.events.v1 import contact_events_pb2 as cev
from c360.events.v1 import ticket_events_pb2 as ev
from c360.service_desk.v1 import service_desk_service_pb2 as dapi
from c360_platform.errors import PreconditionFailed
from c360_platform.store import Eq, RowQuery
from c360_service_desk.api import ServiceDeskServicer, ticket_message
from c360_service_desk.application import ServiceDeskApplication
from c360_service_desk.contract import CONTRACT
from c360_service_desk.domain import Ticket

from .support import CALL, Clock, KnownCustomers, bad_fields, refused

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, calendar in UTC


@pytest.fixture
def clock() -> Clock:
    return Clock(MONDAY_9)


@pytest.fixture
def desk(clock: Clock) -> ServiceDeskServicer:
    # The context reader is never asked (GetTicket is not called).
    return ServiceDeskServicer(ServiceDeskApplication.in_memory(clock=clock), KnownCustomers())


async def open_ticket(
    desk: ServiceDeskServicer,
    priority: ev.TicketPriority.ValueType = ev.TICKET_PRIORITY_HIGH,
    time_zone: str = "",
) -> str:
    reply = await desk.OpenTicket(
        dapi.OpenTicketRequest(
            allow_unknown_customer=True,  # no timeline in these tests
            customer_id=str(uuid4()),
            channel=ev.TICKET_CHANNEL_PHONE,
            subject="Card blocked",
            priority=priority,
            time_zone=time_zone,
        ),
        CALL,
    )
    return str(reply.result.aggregate_id)


def ticket(desk: ServiceDeskServicer, tid: str) -> Ticket:
    return desk.app.get_ticket(UUID(tid))


def targets(desk: ServiceDeskServicer, tid: str) -> dict[str, dapi.SlaTargetView]:
    view = ticket_message(ticket(desk, tid), desk.app.clock())
    return {ev.SlaTargetKind.Name(t.kind): t for t in view.sla_targets}


def events_of(desk: ServiceDeskServicer, tid: str) -> list[str]:
    return [type(e).__name__ for e in desk.app.repository.event_store.get(UUID(tid))]


async def test_friday_evening_high_ticket_is_due_monday_in_its_time_zone(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    clock.now = datetime(2026, 3, 6, 17, 30, tzinfo=BERLIN)
    tid = await open_ticket(desk, time_zone="Europe/Berlin")
    t = ticket(desk, tid)
    assert (t.sla_policy, t.time_zone) == ("high", "Europe/Berlin")
    view = targets(desk, tid)
    resolution = view["SLA_TARGET_KIND_RESOLUTION"]
    assert resolution.due_at.ToDatetime(tzinfo=UTC).astimezone(BERLIN) == datetime(
        2026, 3, 9, 13, 0, tzinfo=BERLIN
    )
    assert resolution.remaining_minutes == 240
    assert resolution.status == ev.SLA_TARGET_STATUS_IN_PROGRESS


async def test_a_ticket_left_open_gets_one_warning_and_one_breach_per_target(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    tid = await open_ticket(desk)
    assert desk.app.check_slas() == 0
    clock.advance(minutes=50)  # past the first response's warning point (45 of 60)
    assert desk.app.check_slas() == 1
    assert targets(desk, tid)["SLA_TARGET_KIND_FIRST_RESPONSE"].status == (
        ev.SLA_TARGET_STATUS_NEARING_BREACH
    )
    clock.advance(days=3)
    assert desk.app.check_slas() == 3  # first response breached; resolution warned, breached
    assert desk.app.check_slas() == 0
    clock.advance(days=30)
    assert desk.app.check_slas() == 0
    kinds = events_of(desk, tid)
    assert kinds.count("SlaBreached") == 2
    assert kinds.count("SlaWarned") == 2
    # Each breach carries the moment it fell due, not when the scheduler ran.
    breaches = [
        e
        for e in desk.app.repository.event_store.get(UUID(tid))
        if type(e).__name__ == "SlaBreached"
    ]
    assert [b.due_at for b in breaches] == [  # type: ignore[attr-defined]
        "2026-03-02T10:00:00+00:00",
        "2026-03-02T13:00:00+00:00",
    ]
    # Resolving late writes no second breach; the target stays breached, met late.
    await desk.ResolveTicket(dapi.ResolveTicketRequest(ticket_id=tid, resolution="Done"), CALL)
    assert events_of(desk, tid).count("SlaBreached") == 2
    late = targets(desk, tid)["SLA_TARGET_KIND_RESOLUTION"]
    assert late.status == ev.SLA_TARGET_STATUS_BREACHED
    assert late.met_at.ToDatetime(tzinfo=UTC) == clock.now


async def test_a_ticket_answered_and_resolved_in_time_is_never_breached(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    tid = await open_ticket(desk)
    clock.advance(minutes=20)
    await desk.RecordInteraction(
        dapi.RecordInteractionRequest(
            ticket_id=tid, kind=ev.INTERACTION_KIND_OUTBOUND_CALL, duration_seconds=60
        ),
        CALL,
    )
    # The reply started the next-update target (2 h, warned at 90 min): resolved within it.
    clock.advance(minutes=60)
    await desk.ResolveTicket(dapi.ResolveTicketRequest(ticket_id=tid, resolution="Done"), CALL)
    clock.advance(days=10)
    assert desk.app.check_slas() == 0
    kinds = events_of(desk, tid)
    assert "SlaBreached" not in kinds
    assert "SlaWarned" not in kinds
    assert kinds.count("SlaMet") == 3
    view = targets(desk, tid)
    assert {v.status for v in view.values()} == {ev.SLA_TARGET_STATUS_MET}
    assert view["SLA_TARGET_KIND_FIRST_RESPONSE"].met_at.ToDatetime(tzinfo=UTC) == datetime(
        2026, 3, 2, 9, 20, tzinfo=UTC
    )


async def test_the_clock_stands_still_while_waiting_for_the_customer(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    tid = await open_ticket(desk)
    await desk.RecordInteraction(
        dapi.RecordInteractionRequest(
            ticket_id=tid, kind=ev.INTERACTION_KIND_OUTBOUND_MESSAGE, body="Which card?"
        ),
        CALL,
    )
    clock.advance(minutes=30)
    hold = dapi.HoldTicketRequest(
        ticket_id=tid, waiting_for=ev.TICKET_WAITING_FOR_CUSTOMER, reason="card number"
    )
    await desk.HoldTicket(hold, CALL)
    view = targets(desk, tid)["SLA_TARGET_KIND_RESOLUTION"]
    assert (view.status, view.remaining_minutes) == (ev.SLA_TARGET_STATUS_PAUSED, 210)
    assert not view.HasField("due_at")
    refusal = await refused(desk.HoldTicket(hold, CALL), PreconditionFailed)
    assert "waiting for the customer already" in str(refusal)
    clock.advance(days=2)  # Wednesday 09:30
    assert desk.app.check_slas() == 0
    await desk.ResumeTicket(dapi.ResumeTicketRequest(ticket_id=tid), CALL)
    view = targets(desk, tid)["SLA_TARGET_KIND_RESOLUTION"]
    assert view.status == ev.SLA_TARGET_STATUS_IN_PROGRESS
    assert view.due_at.ToDatetime(tzinfo=UTC) == datetime(2026, 3, 4, 13, 0, tzinfo=UTC)
    assert "not waiting" in str(
        await refused(desk.ResumeTicket(dapi.ResumeTicketRequest(ticket_id=tid), CALL))
    )
    assert await bad_fields(desk.HoldTicket(dapi.HoldTicketRequest(ticket_id=tid), CALL)) == [
        "waiting_for"
    ]


async def test_raising_the_priority_recomputes_the_targets_with_the_time_spent(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    tid = await open_ticket(desk, priority=ev.TICKET_PRIORITY_NORMAL)
    assert ticket(desk, tid).sla_policy == "normal"
    clock.advance(minutes=30)
    await desk.ChangePriority(
        dapi.ChangePriorityRequest(
            ticket_id=tid, priority=ev.TICKET_PRIORITY_HIGH, reason="customer travels tomorrow"
        ),
        CALL,
    )
    t = ticket(desk, tid)
    assert t.sla_policy == "high"
    view = targets(desk, tid)
    # 30 of the high policy's 240 minutes are spent: due 4 h after opening.
    assert view["SLA_TARGET_KIND_RESOLUTION"].due_at.ToDatetime(tzinfo=UTC) == datetime(
        2026, 3, 2, 13, 0, tzinfo=UTC
    )
    applied = [
        e
        for e in desk.app.repository.event_store.get(UUID(tid))
        if type(e).__name__ == "SlaApplied"
    ]
    assert [a.reason for a in applied] == [  # type: ignore[attr-defined]
        "opened",
        "priority changed from normal to high",
    ]


async def test_closing_an_unresolved_ticket_cancels_its_targets(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    tid = await open_ticket(desk)
    clock.advance(minutes=10)
    await desk.CloseTicket(dapi.CloseTicketRequest(ticket_id=tid, reason="duplicate"), CALL)
    clock.advance(days=5)
    assert desk.app.check_slas() == 0
    assert {v.status for v in targets(desk, tid).values()} == {ev.SLA_TARGET_STATUS_CANCELLED}
    # Not due any more: no due time (as the API says: unset once met or cancelled).
    assert not any(v.HasField("due_at") for v in targets(desk, tid).values())


async def test_sla_events_are_published_with_their_targets(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    tid = await open_ticket(desk)
    clock.advance(days=1)
    desk.app.check_slas()
    published = [
        CONTRACT.publication(e).payload for e in desk.app.repository.event_store.get(UUID(tid))
    ]
    applied = next(m for m in published if isinstance(m, ev.TicketSlaApplied))
    assert [t.minutes for t in applied.targets] == [60, 240]
    breach = next(m for m in published if isinstance(m, ev.TicketSlaBreached))
    assert breach.target == ev.SLA_TARGET_KIND_FIRST_RESPONSE
    assert breach.due_at.ToDatetime(tzinfo=UTC) == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


async def test_an_open_ticket_with_an_unknown_time_zone_is_refused(
    desk: ServiceDeskServicer,
) -> None:
    assert await bad_fields(
        desk.OpenTicket(
            dapi.OpenTicketRequest(
                allow_unknown_customer=True,  # no timeline in these tests
                customer_id=str(uuid4()),
                channel=ev.TICKET_CHANNEL_PHONE,
                subject="x",
                time_zone="Europe/Atlantis",
            ),
            CALL,
        )
    ) == ["time_zone"]
    assert desk.app.head() == 0


# -- contact-centre records ---------------------------------------------------------------------


async def test_an_ivr_session_is_recorded_as_a_contact(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    customer = str(uuid4())
    reply = await desk.RecordContact(
        dapi.RecordContactRequest(
            customer_id=customer,
            channel=ev.TICKET_CHANNEL_IVR,
            direction=cev.CONTACT_DIRECTION_INBOUND,
            duration_seconds=95,
            outcome=cev.CONTACT_OUTCOME_SELF_SERVICE,
            ivr_path=["cards", "balance"],
        ),
        CALL,
    )
    contact = desk.app.get_contact(UUID(reply.result.aggregate_id))
    assert (contact.customer_id, contact.channel, contact.outcome) == (
        customer,
        "ivr",
        "self_service",
    )
    assert contact.ivr_path == ["cards", "balance"]
    assert contact.started_at == clock.now
    message = CONTRACT.publication(
        desk.app.repository.event_store.get(contact.id).__next__()
    ).payload
    assert isinstance(message, cev.ContactRecorded)
    assert list(message.ivr_path) == ["cards", "balance"]


async def test_bad_contacts_name_every_field_and_store_nothing(
    desk: ServiceDeskServicer,
) -> None:
    assert await bad_fields(
        desk.RecordContact(
            dapi.RecordContactRequest(
                customer_id="nobody",
                channel=ev.TICKET_CHANNEL_SMS,
                direction=cev.CONTACT_DIRECTION_INBOUND,
                outcome=cev.CONTACT_OUTCOME_SELF_SERVICE,
                duration_seconds=30,
                agent_id="E-1",
                ivr_path=["menu"],
            ),
            CALL,
        )
    ) == ["agent_id", "customer_id", "duration_seconds", "ivr_path", "outcome"]
    assert await bad_fields(
        desk.RecordContact(
            dapi.RecordContactRequest(customer_id=str(uuid4()), channel=ev.TICKET_CHANNEL_SMS),
            CALL,
        )
    ) == ["direction"]
    assert desk.app.head() == 0


async def test_sla_compliance_per_policy_queue_agent_and_channel(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    on_time = await open_ticket(desk)
    await desk.AssignTicket(
        dapi.AssignTicketRequest(ticket_id=on_time, agent_id="emp-0001", queue="cards"), CALL
    )
    await desk.ResolveTicket(dapi.ResolveTicketRequest(ticket_id=on_time, resolution="ok"), CALL)
    late = await open_ticket(desk)
    running = await open_ticket(desk, priority=ev.TICKET_PRIORITY_LOW)
    withdrawn = await open_ticket(desk, priority=ev.TICKET_PRIORITY_URGENT)
    await desk.CloseTicket(dapi.CloseTicketRequest(ticket_id=withdrawn, reason="withdrawn"), CALL)
    clock.advance(hours=2)  # the second high ticket's first response is breached
    desk.app.check_slas()
    assert late != running
    # (the period is of the tickets' recording time, the wall clock's)
    now = datetime.now(UTC)
    request = dapi.GetSlaComplianceRequest()
    request.opened_from.FromDatetime(now - timedelta(hours=1))
    request.opened_to.FromDatetime(now + timedelta(hours=1))
    reply = await desk.GetSlaCompliance(request, CALL)
    rows = {(r.dimension, r.value): r for r in reply.rows}
    high = rows[("policy", "high")]
    assert (high.tickets, high.met, high.breached, high.running) == (2, 1, 1, 0)
    assert high.compliance == 0.5
    # Closed unresolved before any target fell due: cancelled, not met.
    urgent = rows[("policy", "urgent")]
    assert (urgent.tickets, urgent.met, urgent.breached, urgent.cancelled) == (1, 0, 0, 1)
    assert not urgent.HasField("compliance")
    low = rows[("policy", "low")]
    assert (low.tickets, low.running) == (1, 1)
    assert not low.HasField("compliance")
    assert rows[("agent", "emp-0001")].compliance == 1.0
    assert rows[("queue", "-")].tickets == 3
    assert rows[("channel", "phone")].tickets == 4
    # A period before the tickets: nothing.
    request.opened_to.FromDatetime(now - timedelta(hours=1))
    request.opened_from.FromDatetime(now - timedelta(days=1))
    assert list((await desk.GetSlaCompliance(request, CALL)).rows) == []
    assert await bad_fields(desk.GetSlaCompliance(dapi.GetSlaComplianceRequest(), CALL)) == [
        "opened_from"
    ]


async def test_the_next_update_target_starts_again_at_every_reply(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    tid = await open_ticket(desk)  # high: next update within 2 business hours of each reply
    assert "SLA_TARGET_KIND_NEXT_UPDATE" not in targets(desk, tid)  # not before a reply

    async def reply() -> None:
        await desk.RecordInteraction(
            dapi.RecordInteractionRequest(
                ticket_id=tid, kind=ev.INTERACTION_KIND_OUTBOUND_MESSAGE, body="On it."
            ),
            CALL,
        )

    clock.advance(minutes=10)
    await reply()
    first_due = targets(desk, tid)["SLA_TARGET_KIND_NEXT_UPDATE"].due_at.ToDatetime(tzinfo=UTC)
    assert first_due == clock.now + timedelta(hours=2)
    clock.advance(minutes=150)  # past due: one breach
    assert desk.app.check_slas() == 2  # the warning, then the breach
    await reply()  # late, and the next cycle starts
    view = targets(desk, tid)["SLA_TARGET_KIND_NEXT_UPDATE"]
    assert view.status == ev.SLA_TARGET_STATUS_IN_PROGRESS
    assert view.due_at.ToDatetime(tzinfo=UTC) == clock.now + timedelta(hours=2)
    # The earlier breach still counts in the ticket's row (what the compliance report reads).
    row = desk.app.rows(RowQuery(Eq("ticket_id", UUID(tid))))[0]
    assert row["sla_breaches"] >= 1
    clock.advance(minutes=30)
    await desk.ResolveTicket(dapi.ResolveTicketRequest(ticket_id=tid, resolution="Done"), CALL)
    assert targets(desk, tid)["SLA_TARGET_KIND_NEXT_UPDATE"].status == ev.SLA_TARGET_STATUS_MET
    assert events_of(desk, tid).count("SlaRestarted") == 2


async def test_the_customers_reply_ends_a_wait_for_the_customer_not_one_for_a_third_party(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    tid = await open_ticket(desk)  # high, Monday 09:00: resolution within 4 business hours

    async def note(kind: ev.InteractionKind.ValueType) -> None:
        body = "" if kind == ev.INTERACTION_KIND_INBOUND_CALL else "Card ends in 1234"
        request = dapi.RecordInteractionRequest(ticket_id=tid, kind=kind, body=body)
        await desk.RecordInteraction(request, CALL)

    clock.advance(minutes=60)
    hold = dapi.HoldTicketRequest(ticket_id=tid, waiting_for=ev.TICKET_WAITING_FOR_THIRD_PARTY)
    await desk.HoldTicket(hold, CALL)
    clock.advance(minutes=60)
    await note(ev.INTERACTION_KIND_INBOUND_MESSAGE)  # the customer chases: the bank still waits
    assert ticket(desk, tid).waiting_for == "third_party"
    again = await refused(desk.HoldTicket(hold, CALL), PreconditionFailed)
    assert "waiting for the third party already" in str(again)
    view = targets(desk, tid)["SLA_TARGET_KIND_RESOLUTION"]
    assert (view.status, view.remaining_minutes) == (ev.SLA_TARGET_STATUS_PAUSED, 180)
    await desk.ResumeTicket(dapi.ResumeTicketRequest(ticket_id=tid), CALL)

    hold.waiting_for = ev.TICKET_WAITING_FOR_CUSTOMER  # 11:00, asks for the card number
    await desk.HoldTicket(hold, CALL)
    clock.advance(days=1)  # Tuesday 11:00 the customer calls back with it
    await note(ev.INTERACTION_KIND_INBOUND_CALL)
    assert ticket(desk, tid).waiting_for == ""
    view = targets(desk, tid)["SLA_TARGET_KIND_RESOLUTION"]
    assert view.status == ev.SLA_TARGET_STATUS_IN_PROGRESS
    assert view.due_at.ToDatetime(tzinfo=UTC) == clock.now + timedelta(hours=3)
    resumed = desk.app.repository.event_store.get(UUID(tid))
    last = [e for e in resumed if type(e).__name__ == "SlaResumed"][-1]
    published = CONTRACT.publication(last).payload
    assert isinstance(published, ev.TicketSlaResumed)
    assert published.reason == "the customer replied"


async def test_a_reopened_ticket_owes_its_resolution_again_with_the_time_it_had_used(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    tid = await open_ticket(desk)  # high, Monday 09:00: resolution within 4 business hours
    clock.advance(minutes=50)
    await desk.ResolveTicket(dapi.ResolveTicketRequest(ticket_id=tid, resolution="Reset"), CALL)
    assert targets(desk, tid)["SLA_TARGET_KIND_RESOLUTION"].status == ev.SLA_TARGET_STATUS_MET
    clock.now = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)  # Tuesday: "it broke again"
    await desk.ReopenTicket(dapi.ReopenTicketRequest(ticket_id=tid, reason="again"), CALL)
    view = targets(desk, tid)["SLA_TARGET_KIND_RESOLUTION"]
    assert view.status == ev.SLA_TARGET_STATUS_IN_PROGRESS
    # 50 business minutes were used before the resolution; the night in between was not.
    assert view.due_at.ToDatetime(tzinfo=UTC) == datetime(2026, 3, 3, 12, 10, tzinfo=UTC)
    first = targets(desk, tid)["SLA_TARGET_KIND_FIRST_RESPONSE"]
    assert first.status == ev.SLA_TARGET_STATUS_MET  # met before: stays met
    clock.now = datetime(2026, 3, 3, 12, 30, tzinfo=UTC)
    assert desk.app.check_slas() == 2  # the warning, then the breach of the resolution
    assert ticket(desk, tid).breaches() == 1
    published = [
        CONTRACT.publication(e).payload for e in desk.app.repository.event_store.get(UUID(tid))
    ]
    resumed = next(m for m in published if isinstance(m, ev.TicketSlaResumed))
    assert resumed.reason == "the ticket was reopened"


async def test_lowering_the_priority_does_not_undo_a_breach(
    desk: ServiceDeskServicer, clock: Clock
) -> None:
    tid = await open_ticket(desk)  # high: next update within 2 business hours of a reply
    clock.advance(minutes=10)
    await desk.RecordInteraction(
        dapi.RecordInteractionRequest(
            ticket_id=tid, kind=ev.INTERACTION_KIND_OUTBOUND_MESSAGE, body="On it."
        ),
        CALL,
    )
    clock.advance(minutes=150)
    desk.app.check_slas()  # the next update is breached
    assert ticket(desk, tid).breaches() == 1
    await desk.ChangePriority(
        dapi.ChangePriorityRequest(ticket_id=tid, priority=ev.TICKET_PRIORITY_LOW), CALL
    )  # the low policy has no next-update target
    assert ticket(desk, tid).sla_policy == "low"
    assert ticket(desk, tid).breaches() == 1
    row = desk.app.rows(RowQuery(Eq("ticket_id", UUID(tid))))[0]
    assert row["sla_breaches"] == 1
    view = targets(desk, tid)
    assert view["SLA_TARGET_KIND_NEXT_UPDATE"].status == ev.SLA_TARGET_STATUS_BREACHED
