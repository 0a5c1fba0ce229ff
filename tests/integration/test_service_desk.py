"""The service desk on real PostgreSQL and NATS: tickets, their timeline, context, churn signal."""

from __future__ import annotations

import asyncio
from datetime import UTC, timedelta

import grpc
import pytest

from c360.events.v1 import ticket_events_pb2 as ev
from c360.service_desk.v1 import service_desk_service_pb2 as dapi
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_platform.notify import Notifications
from c360_timeline.readmodel import customer_topic

from .conftest import Stack
from .helpers import eventually, register
from .test_delivery import snapshot

pytestmark = pytest.mark.integration


def opening(
    customer_id: str,
    subject: str = "Parcel not delivered",
    channel: ev.TicketChannel.ValueType = ev.TICKET_CHANNEL_PHONE,
    request_id: str = "",
) -> dapi.OpenTicketRequest:
    return dapi.OpenTicketRequest(
        request_id=request_id,
        customer_id=customer_id,
        channel=channel,
        subject=subject,
        category="delivery",
    )


async def open_ticket(
    stack: Stack,
    customer_id: str,
    subject: str = "Parcel not delivered",
    channel: ev.TicketChannel.ValueType = ev.TICKET_CHANNEL_PHONE,
) -> dapi.OpenTicketResponse:
    return await stack.service_desk.OpenTicket(opening(customer_id, subject, channel))


async def failed(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_a_ticket_from_phone_call_to_rating_in_the_timeline_and_on_screen(
    stack: Stack,
) -> None:
    customer = await register(stack.customer, "Ieva Žirnovska", "ieva@example.lv")
    cid = customer.result.aggregate_id
    opened = await open_ticket(stack, cid)
    assert opened.result.consistency_token.startswith("service-desk:")
    tid = opened.result.aggregate_id
    desk = stack.service_desk
    await desk.AssignTicket(dapi.AssignTicketRequest(ticket_id=tid, agent_id="emp-0042"))
    call = await desk.RecordInteraction(
        dapi.RecordInteractionRequest(
            ticket_id=tid, kind=ev.INTERACTION_KIND_INBOUND_CALL, duration_seconds=125
        )
    )
    assert call.interaction_id
    await desk.ResolveTicket(dapi.ResolveTicketRequest(ticket_id=tid, resolution="Re-sent"))
    rated = await desk.RateTicket(dapi.RateTicketRequest(ticket_id=tid, score=5))

    # every ticket event is in the customer's timeline, readable, under source service-desk
    timeline = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(
            customer_id=cid, sources=["service-desk"], wait_for=rated.result.consistency_token
        ),
        timeout=10,
    )
    entries = list(reversed(timeline.entries))
    # (its SLA entries depend on the wall clock: their kinds only)
    assert [e.type for e in entries if e.type.startswith("ticket.sla_")] == [
        "ticket.sla_applied",
        "ticket.sla_met",
        "ticket.sla_met",
    ]
    assert [(e.type, e.summary) for e in entries if not e.type.startswith("ticket.sla_")] == [
        ("ticket.opened", "Ticket opened by phone: “Parcel not delivered” (delivery, normal)"),
        ("ticket.assigned", "Ticket assigned to emp-0042"),
        ("ticket.interaction_recorded", "Call from the customer (2 min 5 s)"),
        ("ticket.resolved", "Ticket resolved: Re-sent"),
        ("ticket.rated", "Customer rated the ticket 5/5"),
    ]
    assert {e.aggregate_id for e in timeline.entries} == {tid}

    # the ticket with everything about the customer, at once
    shown = await desk.GetTicket(dapi.GetTicketRequest(ticket_id=tid))
    assert shown.ticket.state == ev.TICKET_STATE_RESOLVED
    assert shown.ticket.rating == 5
    assert [i.kind for i in shown.ticket.interactions] == [ev.INTERACTION_KIND_INBOUND_CALL]
    context = shown.context
    assert context.available, context.unavailable_reason
    assert context.profile.display_name == "Ieva Žirnovska"
    assert context.profile.emails == ["ieva@example.lv"]
    assert context.profile.service_desk.tickets_total == 1
    assert context.profile.service_desk.mean_satisfaction == 5.0
    assert context.profile.service_desk.last_contact_channel == "phone"
    assert context.recent_entries[0].type == "ticket.rated"

    # illegal transitions name the state; nothing is stored
    again = await failed(desk.RateTicket(dapi.RateTicketRequest(ticket_id=tid, score=1)))
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "is resolved and rated 5 already" in (again.details() or "")
    await desk.CloseTicket(dapi.CloseTicketRequest(ticket_id=tid))
    late = await failed(
        desk.ResolveTicket(dapi.ResolveTicketRequest(ticket_id=tid, resolution="x"))
    )
    assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"ticket {tid} is closed: cannot resolve it" in (late.details() or "")
    assert stack.desk_app.event_recorder.count_events() == 9  # 6 and SLA applied, met twice


async def test_the_fourth_support_contact_flags_the_customer_at_risk(stack: Stack) -> None:
    cid = (await register(stack.customer, "Jürgen Köhler", "jk@example.de")).result.aggregate_id
    ticket_ids, token = [], ""
    for n, channel in enumerate(
        [ev.TICKET_CHANNEL_PHONE, ev.TICKET_CHANNEL_EMAIL, ev.TICKET_CHANNEL_CHAT]
    ):
        reply = await open_ticket(stack, cid, subject=f"Still broken ({n})", channel=channel)
        ticket_ids.append(reply.result.aggregate_id)
        token = reply.result.consistency_token

    async def profile(wait_for: str) -> tapi.Profile:
        request = tapi.GetProfileRequest(customer_id=cid, wait_for=wait_for)
        return (await stack.timeline.GetProfile(request, timeout=10)).profile

    three = await profile(token)
    assert three.at_risk is False
    assert list(three.at_risk_reasons) == []
    assert three.service_desk.open_ticket_count == 3

    fourth = await open_ticket(stack, cid, subject="Cancel my contract")
    ticket_ids.append(fourth.result.aggregate_id)
    four = await profile(fourth.result.consistency_token)
    assert four.at_risk is True
    assert [r.ticket_id for r in four.at_risk_reasons] == ticket_ids
    assert {r.contact for r in four.at_risk_reasons} == {"ticket_opened"}
    assert four.service_desk.tickets_last_30_days == 4
    flagged = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=cid, sources=["timeline"]), timeout=10
    )
    assert [(e.type, e.summary) for e in flagged.entries] == [
        ("customer.at_risk_flagged", "At risk of churning: 4 support contacts within 30 days")
    ]

    # the read model rebuilds into the same rows, derived entries included
    before = await snapshot(stack.postgres_url)
    assert len(before["entries"]) == 10  # registered, 4 tickets opened with their SLA, flagged
    async for _ in stack.timeline.RebuildReadModel(tapi.RebuildReadModelRequest()):
        pass
    assert await snapshot(stack.postgres_url) == before

    # when the window has passed with no new contact, the sweep clears the flag; a watch of
    # the customer, waiting, is woken by the sweep's commit (not by its look every 30 s)
    view = stack.projector.view
    until = four.at_risk_until.ToDatetime(tzinfo=UTC)
    assert await asyncio.to_thread(view.sweep, until - timedelta(seconds=1)) == 0
    everything = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=cid, page_size=100), timeout=10
    )
    watch = stack.timeline.WatchTimeline(
        tapi.WatchTimelineRequest(
            customer_id=cid, after_cursor=max(e.cursor for e in everything.entries)
        )
    )
    stream = watch.__aiter__()
    waiting = stack.hosts["timeline"].part("notifications", Notifications)._waiting

    async def watch_waits() -> bool:
        return customer_topic(cid) in waiting

    await eventually(watch_waits, what="the watch waiting for its customer's commits")
    assert await asyncio.to_thread(view.sweep, until) == 1
    woken = await asyncio.wait_for(stream.__anext__(), 5)
    watch.cancel()
    assert woken.entry.type == "customer.at_risk_cleared"
    cleared = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=cid, sources=["timeline"]), timeout=10
    )
    assert [e.type for e in cleared.entries] == [
        "customer.at_risk_cleared",
        "customer.at_risk_flagged",
    ]
    assert cleared.entries[0].occurred_at.ToDatetime(tzinfo=UTC) == until
    assert (await profile("")).at_risk is False


async def test_a_ticket_answers_with_its_context_marked_unavailable_without_the_timeline(
    stack: Stack,
) -> None:
    cid = (await register(stack.customer, "Åse Løvås", "ase@example.no")).result.aggregate_id
    tid = (await open_ticket(stack, cid)).result.aggregate_id
    await stack.hosts["timeline"].stop()
    shown = await stack.service_desk.GetTicket(dapi.GetTicketRequest(ticket_id=tid), timeout=10)
    assert shown.ticket.ticket_id == tid
    assert shown.ticket.subject == "Parcel not delivered"
    assert shown.context.available is False
    assert "timeline service" in shown.context.unavailable_reason
    assert not shown.context.HasField("profile")
    # Without the timeline, whether a customer exists cannot be checked: UNAVAILABLE, nothing
    # stored; a call logged on purpose for an unknown customer still goes in.
    before = stack.desk_app.event_recorder.count_events()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await open_ticket(stack, cid)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "timeline" in (refused.value.details() or "")
    allowed = opening(cid)
    allowed.allow_unknown_customer = True
    await stack.service_desk.OpenTicket(allowed)
    assert stack.desk_app.event_recorder.count_events() > before


async def test_a_ticket_for_a_customer_nobody_knows_is_refused(stack: Stack) -> None:
    typo = "00000000-0000-4000-8000-00000000abcd"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await open_ticket(stack, typo)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert "allow_unknown_customer" in (refused.value.details() or "")
    assert stack.desk_app.event_recorder.count_events() == 0
    logged = opening(typo)
    logged.allow_unknown_customer = True
    tid = (await stack.service_desk.OpenTicket(logged)).result.aggregate_id
    shown = await stack.service_desk.GetTicket(dapi.GetTicketRequest(ticket_id=tid))
    assert shown.ticket.customer_id == typo
