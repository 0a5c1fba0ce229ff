"""EventLogService.ResolveIds: the short ids lists show, completed by the service that owns
them (what the CLI does before a call); bad prefixes refused with the field named."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from c360.events.v1 import event_log_pb2 as log_api
from c360.events.v1 import event_log_pb2_grpc as log_grpc
from c360.events.v1 import marketing_events_pb2 as mev
from c360.marketing.v1 import marketing_service_pb2 as mapi
from c360.marketing.v1 import marketing_service_pb2_grpc as mapi_grpc

from .conftest import Stack
from .helpers import bad_fields, register

pytestmark = pytest.mark.integration


async def test_ids_are_found_by_their_beginning_and_kind(stack: Stack) -> None:
    ada = (await register(stack.customer, "Ada Lovelace", "ada@example.com")).result.aggregate_id
    log = stack.stub("customer", log_grpc.EventLogServiceStub)
    found = await log.ResolveIds(log_api.ResolveIdsRequest(prefix=ada[:8]))
    assert [(r.id, r.kind) for r in found.ids] == [(ada, "customer")]
    dashed = await log.ResolveIds(log_api.ResolveIdsRequest(prefix=ada[:13].upper()))
    assert [r.id for r in dashed.ids] == [ada]
    other_kind = await log.ResolveIds(log_api.ResolveIdsRequest(prefix=ada[:8], kind="ticket"))
    assert list(other_kind.ids) == []
    desk = stack.stub("service-desk", log_grpc.EventLogServiceStub)
    assert list((await desk.ResolveIds(log_api.ResolveIdsRequest(prefix=ada[:8]))).ids) == []


async def test_bad_prefixes_are_refused_naming_the_field(stack: Stack) -> None:
    log = stack.stub("customer", log_grpc.EventLogServiceStub)
    for request, field in [
        (log_api.ResolveIdsRequest(prefix="4a1"), "prefix"),
        (log_api.ResolveIdsRequest(prefix="zz12345"), "prefix"),
        (log_api.ResolveIdsRequest(prefix="4a1b\x00"), "prefix"),
        (log_api.ResolveIdsRequest(prefix="4a1b", limit=1000), "limit"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await log.ResolveIds(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in bad_fields(refused.value)


async def test_ids_of_a_store_that_publishes_nothing_are_found_too(stack: Stack) -> None:
    """Marketing's campaigns and segments live in its plans' store, whose events are not
    published: their short ids, as `campaign list` and `segment list` show them, are
    completed all the same."""
    marketing = stack.stub("marketing", mapi_grpc.MarketingServiceStub)
    condition = json.dumps({"field": "country", "value": "LV"})
    segment = await marketing.DefineSegment(
        mapi.DefineSegmentRequest(name="short-ids", condition=condition)
    )
    planned = await marketing.PlanCampaign(
        mapi.PlanCampaignRequest(
            name="Short ids",
            channel=mev.MARKETING_CHANNEL_EMAIL,
            segments=["short-ids"],
            # A period to come: a campaign whose period is over is not planned.
            starts_on=datetime.now(UTC).date().isoformat(),
            ends_on=(datetime.now(UTC).date() + timedelta(days=30)).isoformat(),
            budget=mapi.Money(amount="100", currency="EUR"),
        )
    )
    log = stack.stub("marketing", log_grpc.EventLogServiceStub)
    found = await log.ResolveIds(
        log_api.ResolveIdsRequest(prefix=planned.campaign_id[:8], kind="campaign")
    )
    assert [(r.id, r.kind) for r in found.ids] == [(planned.campaign_id, "campaign")]
    # A segment is named by its name, its id, or the beginning of its id.
    short = segment.segment_id[:8]
    shown = await marketing.GetSegment(mapi.GetSegmentRequest(segment=short))
    assert (shown.segment.segment_id, shown.segment.name) == (segment.segment_id, "short-ids")
