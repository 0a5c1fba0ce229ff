"""SLA breaches and contact-centre records through gRPC, the store, NATS and the timeline."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID

from c360.events.v1 import contact_events_pb2 as cev
from c360.events.v1 import ticket_events_pb2 as ev
from c360.service_desk.v1 import service_desk_service_pb2 as dapi
from c360.timeline.v1 import timeline_service_pb2 as tapi

from .conftest import Stack
from .helpers import register
from .test_delivery import snapshot


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_a_ticket_left_open_gets_exactly_one_breach_entry_also_after_a_rebuild(
    stack: Stack,
) -> None:
    cid = (await register(stack.customer, "Ana Kovač", "ana@example.hr")).result.aggregate_id
    # The desk's clock, moved by hand: Friday 6 March 2026 17:30 in Zagreb.
    clock = Clock(datetime(2026, 3, 6, 16, 30, tzinfo=UTC))
    app = stack.desk_app
    real_clock, app.clock = app.clock, clock
    try:
        desk = stack.service_desk
        opened = await desk.OpenTicket(
            dapi.OpenTicketRequest(
                customer_id=cid,
                channel=ev.TICKET_CHANNEL_PHONE,
                subject="Card blocked abroad",
                priority=ev.TICKET_PRIORITY_HIGH,
                time_zone="Europe/Zagreb",
            )
        )
        tid = opened.result.aggregate_id
        shown = (await desk.GetTicket(dapi.GetTicketRequest(ticket_id=tid), timeout=10)).ticket
        due = {t.kind: t.due_at.ToDatetime(tzinfo=UTC) for t in shown.sla_targets}
        # Monday 9 March 09:00 + 4 business hours in Zagreb (CET) = 12:00 UTC.
        assert due[ev.SLA_TARGET_KIND_RESOLUTION] == datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
        assert shown.sla_policy == "high"

        clock.now = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
        # The scheduler (a task on the host) and a round of our own race; the store lets one
        # of each win.
        rounds = await asyncio.gather(*(asyncio.to_thread(app.check_slas) for _ in range(3)))
        assert sum(rounds) <= 4
        await asyncio.to_thread(app.check_slas)
        assert await asyncio.to_thread(app.check_slas) == 0
        shown = (await desk.GetTicket(dapi.GetTicketRequest(ticket_id=tid), timeout=10)).ticket
        assert {t.status for t in shown.sla_targets} == {ev.SLA_TARGET_STATUS_BREACHED}
        token = f"service-desk:{app.position_of(UUID(tid))}"
    finally:
        app.clock = real_clock

    async def breaches() -> list[str]:
        timeline = await stack.timeline.GetTimeline(
            tapi.GetTimelineRequest(customer_id=cid, sources=["service-desk"], wait_for=token),
            timeout=10,
        )
        return [e.summary for e in timeline.entries if e.type == "ticket.sla_breached"]

    expected = [
        "SLA resolution target breached (was due 2026-03-09 12:00 UTC)",
        "SLA first-response target breached (was due 2026-03-09 09:00 UTC)",
    ]
    assert await breaches() == expected
    profile = (
        await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=cid, wait_for=token))
    ).profile
    assert profile.service_desk.sla_breaches == 2

    before = await snapshot(stack.postgres_url)
    async for _ in stack.timeline.RebuildReadModel(tapi.RebuildReadModelRequest()):
        pass
    assert await snapshot(stack.postgres_url) == before
    assert await breaches() == expected


async def test_ivr_contacts_show_in_the_contact_history_and_count_as_support_contacts(
    stack: Stack,
) -> None:
    cid = (await register(stack.customer, "Mihai Popa", "mihai@example.ro")).result.aggregate_id
    desk = stack.service_desk
    now = datetime.now(UTC)
    token = ""
    for n, (path, outcome) in enumerate(
        [
            (["billing", "balance"], cev.CONTACT_OUTCOME_SELF_SERVICE),
            (["technical", "other"], cev.CONTACT_OUTCOME_TRANSFERRED),
            (["main"], cev.CONTACT_OUTCOME_ABANDONED),
            (["billing", "last-invoice"], cev.CONTACT_OUTCOME_SELF_SERVICE),
        ]
    ):
        request = dapi.RecordContactRequest(
            customer_id=cid,
            channel=ev.TICKET_CHANNEL_IVR,
            direction=cev.CONTACT_DIRECTION_INBOUND,
            duration_seconds=60 + n,
            outcome=outcome,
            ivr_path=path,
            agent_id="emp-0007" if outcome == cev.CONTACT_OUTCOME_TRANSFERRED else "",
        )
        request.started_at.FromDatetime(now - timedelta(hours=4 - n))
        token = (await desk.RecordContact(request)).result.consistency_token

    profile = (
        await stack.timeline.GetProfile(
            tapi.GetProfileRequest(customer_id=cid, wait_for=token), timeout=10
        )
    ).profile
    history = profile.service_desk
    assert (history.contacts_total, history.contacts_last_30_days) == (4, 4)
    assert [c.outcome for c in history.recent_contacts] == [
        "self_service",
        "abandoned",
        "transferred",
        "self_service",
    ]
    assert history.last_contact_channel == "ivr"
    assert profile.at_risk is True
    assert {r.contact for r in profile.at_risk_reasons} == {"inbound_call"}
    timeline = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=cid, sources=["service-desk"]), timeout=10
    )
    assert timeline.entries[-1].summary == (
        "IVR contact from the customer (menu billing > balance), 1 min 0 s: self-service"
    )


async def test_a_contract_ending_within_its_warning_days_is_warned_by_the_scheduler(
    stack: Stack,
) -> None:
    cid = (await register(stack.customer, "Lena Berg", "lena@example.se")).result.aggregate_id
    ends = (datetime.now(UTC) + timedelta(days=20)).date()
    created = await stack.service_desk.CreateServiceContract(
        dapi.CreateServiceContractRequest(
            customer_id=cid,
            name="Router care",
            services=["router-care"],
            starts_on="2026-01-01",
            ends_on=ends.isoformat(),
        )
    )
    contract_id = created.result.aggregate_id
    # The scheduler on the host (every 5 s) writes the warning; wait for it in the timeline.
    summaries: list[str] = []
    for _ in range(100):
        timeline = await stack.timeline.GetTimeline(
            tapi.GetTimelineRequest(customer_id=cid, sources=["service-desk"]), timeout=10
        )
        summaries = [e.summary for e in timeline.entries]
        if len(summaries) == 3:
            break
        await asyncio.sleep(0.2)
    assert summaries == [
        "Renewal of service contract “Router care” handed to sales",
        f"Service contract “Router care” ends in 20 days ({ends.isoformat()}): time to renew",
        f"Service contract “Router care” from 2026-01-01 to {ends.isoformat()} (router-care)",
    ]
    profile = (await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=cid))).profile
    assert [(c.contract_id, c.state) for c in profile.service_desk.service_contracts] == [
        (contract_id, "expiring")
    ]
