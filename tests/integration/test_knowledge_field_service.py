"""The knowledge base and field service through gRPC, PostgreSQL (its text search) and the
timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from c360.events.v1 import ticket_events_pb2 as ev
from c360.service_desk.v1 import service_desk_service_pb2 as dapi
from c360.timeline.v1 import timeline_service_pb2 as tapi

from .conftest import Stack
from .helpers import register, status_of


def ts(at: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(at)
    return t


async def publish(stack: Stack, title: str, body: str, language: str = "en") -> str:
    desk = stack.service_desk
    made = await desk.CreateArticle(
        dapi.CreateArticleRequest(title=title, body=body, language=language, author_id="emp-1")
    )
    aid = made.result.aggregate_id
    await desk.SubmitArticle(dapi.SubmitArticleRequest(article_id=aid))
    await desk.PublishArticle(dapi.PublishArticleRequest(article_id=aid, reviewer_id="emp-2"))
    return aid


async def test_published_articles_are_found_by_stemmed_words_and_suggested(stack: Stack) -> None:
    desk = stack.service_desk
    router = await publish(
        stack,
        "Restarting a frozen router",
        "If the lights blink orange, the router has frozen: unplug it for thirty seconds.",
    )
    roaming = await publish(
        stack,
        "Roaming-Gebühren verstehen",
        "Im Ausland fallen für Telefonate Gebühren an, wenn kein Roaming-Paket gebucht ist.",
        language="de",
    )
    draft = await desk.CreateArticle(
        dapi.CreateArticleRequest(title="Router draft", body="routers restart", author_id="emp-1")
    )
    # English stemming: "restart routers" finds "Restarting a frozen router".
    found = await desk.SearchArticles(dapi.SearchArticlesRequest(text="restart routers"))
    assert [a.article_id for a in found.articles] == [router]
    # German stemming: "Gebühr" finds "Gebühren"; a language filter keeps to German.
    found = await desk.SearchArticles(dapi.SearchArticlesRequest(text="Gebühr", language="de"))
    assert [a.article_id for a in found.articles] == [roaming]
    found = await desk.SearchArticles(dapi.SearchArticlesRequest(text="router", language="de"))
    assert list(found.articles) == []
    # Web-search syntax: an excluded word.
    found = await desk.SearchArticles(dapi.SearchArticlesRequest(text="router -orange"))
    assert list(found.articles) == []
    assert draft.result.aggregate_id not in {a.article_id for a in found.articles}

    cid = (await register(stack.customer, "Ivo Marić", "ivo@example.hr")).result.aggregate_id
    opened = await desk.OpenTicket(
        dapi.OpenTicketRequest(
            customer_id=cid,
            channel=ev.TICKET_CHANNEL_PHONE,
            subject="Internet gone",
            description="My router froze again and the lights are blinking",
        )
    )
    tid = opened.result.aggregate_id
    suggested = await desk.SuggestArticles(dapi.SuggestArticlesRequest(ticket_id=tid))
    assert [a.article_id for a in suggested.articles] == [router]
    # A draft cannot resolve a ticket; the published article can, in the same step.
    code = await status_of(
        desk.ResolveTicket(
            dapi.ResolveTicketRequest(
                ticket_id=tid, resolution="x", article_id=draft.result.aggregate_id
            )
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    resolved = await desk.ResolveTicket(
        dapi.ResolveTicketRequest(ticket_id=tid, resolution="Router restarted", article_id=router)
    )
    token = resolved.result.consistency_token
    timeline = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=cid, sources=["service-desk"], wait_for=token),
        timeout=10,
    )
    summaries = [e.summary for e in timeline.entries]
    assert "Knowledge article “Restarting a frozen router” used to resolve the ticket" in summaries
    profile = (await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=cid))).profile
    assert profile.service_desk.tickets_resolved_with_article == 1
    article = (await desk.GetArticle(dapi.GetArticleRequest(article_id=router))).article
    assert article.used_to_resolve == 1
    now = datetime.now(UTC)
    report = await desk.GetKnowledgeReport(
        dapi.GetKnowledgeReportRequest(
            resolved_from=ts(now - timedelta(hours=1)), resolved_to=ts(now + timedelta(hours=1))
        )
    )
    with_article = next(r for r in report.rows if r.with_article)
    assert with_article.tickets >= 1
    assert router in {a.article_id for a in report.top_articles}


async def test_a_completed_visit_shows_its_cost_and_satisfaction(stack: Stack) -> None:
    desk = stack.service_desk
    cid = (await register(stack.customer, "Mia Horvat", "mia@example.hr")).result.aggregate_id
    start = datetime.now(UTC)
    made = await desk.CreateWorkOrder(
        dapi.CreateWorkOrderRequest(
            customer_id=cid, summary="Install fibre modem", region="zagreb-west"
        )
    )
    wid = made.result.aggregate_id
    await desk.ScheduleWorkOrder(
        dapi.ScheduleWorkOrderRequest(
            work_order_id=wid,
            technician_id="emp-31",
            window_start=ts(start + timedelta(hours=1)),
            window_end=ts(start + timedelta(hours=3)),
        )
    )
    await desk.StartWorkOrderTravel(dapi.StartWorkOrderTravelRequest(work_order_id=wid))
    await desk.StartWorkOrderWork(dapi.StartWorkOrderWorkRequest(work_order_id=wid))
    part = await desk.RecordWorkOrderPart(
        dapi.RecordWorkOrderPartRequest(
            work_order_id=wid, sku="modem-f1", quantity="1", unit_cost="120.00"
        )
    )
    assert part.line_id
    await desk.RecordWorkOrderLabour(
        dapi.RecordWorkOrderLabourRequest(work_order_id=wid, minutes=45, hourly_rate="80.00")
    )
    await desk.CompleteWorkOrder(dapi.CompleteWorkOrderRequest(work_order_id=wid, fixed=True))
    rated = await desk.RateWorkOrder(dapi.RateWorkOrderRequest(work_order_id=wid, score=4))
    report = await desk.GetFieldServiceReport(
        dapi.GetFieldServiceReportRequest(
            completed_from=ts(start - timedelta(minutes=1)),
            completed_to=ts(datetime.now(UTC) + timedelta(minutes=1)),
        )
    )
    rows = {(r.dimension, r.value): r for r in report.rows}
    mine = rows[("technician", "emp-31")]
    assert (mine.visits, mine.total_cost, mine.cost_per_visit, mine.currency) == (
        1,
        "180.00",
        "180.00",
        "EUR",
    )
    assert (mine.first_time_fixes, mine.mean_satisfaction) == (1, 4.0)
    assert rows[("region", "zagreb-west")].visits == 1
    timeline = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(
            customer_id=cid, sources=["service-desk"], wait_for=rated.result.consistency_token
        ),
        timeout=10,
    )
    summaries = [e.summary for e in timeline.entries]
    assert "On-site visit completed (fixed), cost 180.00 EUR" in summaries
    assert "Customer rated the on-site visit 4/5" in summaries
    profile = (await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=cid))).profile
    assert (
        profile.service_desk.visits_completed,
        profile.service_desk.mean_visit_satisfaction,
    ) == (
        1,
        4.0,
    )
    # An unknown work order is NOT_FOUND; a second rating FAILED_PRECONDITION.
    assert (
        await status_of(desk.GetWorkOrder(dapi.GetWorkOrderRequest(work_order_id=cid)))
        == grpc.StatusCode.NOT_FOUND
    )
    assert (
        await status_of(desk.RateWorkOrder(dapi.RateWorkOrderRequest(work_order_id=wid, score=5)))
        == grpc.StatusCode.FAILED_PRECONDITION
    )


async def test_a_technician_booked_for_a_window_is_refused_a_second_visit_in_it(
    stack: Stack,
) -> None:
    desk = stack.service_desk
    cid = (await register(stack.customer, "Ivo Babić", "ivo@example.hr")).result.aggregate_id
    nine = (datetime.now(UTC) + timedelta(days=2)).replace(
        hour=9, minute=0, second=0, microsecond=0
    )

    async def requested(summary: str) -> str:
        made = await desk.CreateWorkOrder(
            dapi.CreateWorkOrderRequest(customer_id=cid, summary=summary, region="split")
        )
        return made.result.aggregate_id

    def booking(wid: str, start: datetime, hours: int) -> dapi.ScheduleWorkOrderRequest:
        return dapi.ScheduleWorkOrderRequest(
            work_order_id=wid,
            technician_id="emp-77",
            window_start=ts(start),
            window_end=ts(start + timedelta(hours=hours)),
        )

    first, second = await requested("Heat pump fan"), await requested("Heat pump service")
    await desk.ScheduleWorkOrder(booking(first, nine, 3))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await desk.ScheduleWorkOrder(booking(second, nine + timedelta(hours=2), 2))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = refused.value.details() or ""
    assert f"emp-77 is booked from {nine:%Y-%m-%d} 09:00 UTC to" in details
    assert first in details
    await desk.ScheduleWorkOrder(booking(second, nine + timedelta(hours=3), 2))
