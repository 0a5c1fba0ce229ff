"""As-of reads (GetCustomer, GetProfile, GetTimeline) and field provenance on a live stack."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2

from c360.customer.v1 import customer_service_pb2 as capi
from c360.timeline.v1 import timeline_service_pb2 as tapi

from .conftest import Stack
from .helpers import register

pytestmark = pytest.mark.integration


def _ts(at: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(at)
    return ts


async def test_as_of_shows_the_old_state_and_provenance_names_the_event(stack: Stack) -> None:
    before = datetime.now(UTC)
    reply = await register(stack.customer, "Ada Byron", "ada@example.com")
    cid = reply.result.aggregate_id
    await stack.customer.AddPhone(capi.AddPhoneRequest(customer_id=cid, phone="+4930123"))
    await asyncio.sleep(0.01)
    between = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await stack.customer.RemovePhone(capi.RemovePhoneRequest(customer_id=cid, phone="+4930123"))
    await stack.customer.AddPhone(capi.AddPhoneRequest(customer_id=cid, phone="+4940999"))
    renamed = await stack.customer.RenameCustomer(
        capi.RenameCustomerRequest(customer_id=cid, display_name="Ada Lovelace")
    )
    token = renamed.result.consistency_token

    # the customer service replays the events up to that time
    now = (await stack.customer.GetCustomer(capi.GetCustomerRequest(customer_id=cid))).customer
    assert (now.display_name, list(now.phones)) == ("Ada Lovelace", ["+4940999"])
    then = (
        await stack.customer.GetCustomer(
            capi.GetCustomerRequest(customer_id=cid, as_of=_ts(between))
        )
    ).customer
    assert (then.display_name, list(then.phones), then.version) == ("Ada Byron", ["+4930123"], 2)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stack.customer.GetCustomer(
            capi.GetCustomerRequest(customer_id=cid, as_of=_ts(before - timedelta(seconds=1)))
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    # the timeline: only what had occurred by then, other filters still apply
    page = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=cid, as_of=_ts(between), wait_for=token), timeout=10
    )
    assert [e.type for e in page.entries] == ["customer.phone_added", "customer.registered"]
    only = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=cid, as_of=_ts(between), types=["customer.registered"])
    )
    assert [e.type for e in only.entries] == ["customer.registered"]
    full = await stack.timeline.GetTimeline(tapi.GetTimelineRequest(customer_id=cid))
    assert len(full.entries) == 5

    # the profile folded again as of then, provenance included
    old = (
        await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=cid, as_of=_ts(between)))
    ).profile
    assert (old.display_name, list(old.phones)) == ("Ada Byron", ["+4930123"])
    added = page.entries[0]
    prov = {f.field: f for f in old.provenance}
    assert prov["phones[+4930123]"].event_id == added.event_id
    assert prov["phones[+4930123]"].type == "customer.phone_added"
    assert prov["phones[+4930123]"].source == "customer"
    assert prov["display_name"].type == "customer.registered"
    with pytest.raises(grpc.aio.AioRpcError) as none_yet:
        await stack.timeline.GetProfile(
            tapi.GetProfileRequest(customer_id=cid, as_of=_ts(before - timedelta(seconds=1)))
        )
    assert none_yet.value.code() == grpc.StatusCode.NOT_FOUND

    # the current profile names the events of today's values; as of later, it is the same
    current = (await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=cid))).profile
    cur = {f.field: f for f in current.provenance}
    assert "phones[+4930123]" not in cur
    assert cur["phones[+4940999]"].type == "customer.phone_added"
    assert cur["display_name"].event_id == full.entries[0].event_id
    later = datetime.now(UTC) + timedelta(hours=1)
    refolded = (
        await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=cid, as_of=_ts(later)))
    ).profile
    assert refolded == current
