"""Watches and read-your-writes waits are woken by the projector's commits (one LISTEN per
timeline process), not by polling: many idle watchers leave the read side answering, and each
of them gets a new entry."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from c360.customer.v1 import customer_service_pb2 as capi
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_platform.notify import Notifications
from c360_timeline import query
from c360_timeline.readmodel import customer_topic

from .conftest import Stack
from .helpers import eventually, register

pytestmark = pytest.mark.integration

WATCHERS = 200


async def test_idle_watchers_cost_no_polling_and_all_see_the_next_entry(stack: Stack) -> None:
    pushed = stack.hosts["timeline"].part("notifications", Notifications)

    async def listening() -> bool:
        return pushed.connected

    await eventually(listening, what="the timeline LISTENing")
    ada = (await register(stack.customer, "Ada Lovelace", "ada@example.com")).result
    bob = (await register(stack.customer, "Bob Babbage", "bob@example.com")).result
    await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=ada.aggregate_id, wait_for=ada.consistency_token)
    )
    first = await stack.timeline.GetTimeline(tapi.GetTimelineRequest(customer_id=ada.aggregate_id))
    after = max(e.cursor for e in first.entries)
    calls = [
        stack.timeline.WatchTimeline(
            tapi.WatchTimelineRequest(customer_id=ada.aggregate_id, after_cursor=after)
        )
        for _ in range(WATCHERS)
    ]
    streams = [c.__aiter__() for c in calls]
    nexts = [asyncio.ensure_future(s.__anext__()) for s in streams]
    topic = customer_topic(ada.aggregate_id)

    async def all_waiting() -> bool:
        return len(pushed._waiting.get(topic, ())) == WATCHERS

    try:
        # Every watcher has looked once and is waiting now (a fixed second was too short for
        # 200 first looks in a clean-clone CI run: 142 were waiting).
        await eventually(all_waiting, what=f"{WATCHERS} watchers waiting")
        assert not any(n.done() for n in nexts)
        # The read side answers beside them (they hold no pooled connection while waiting).
        read = await stack.timeline.GetTimeline(
            tapi.GetTimelineRequest(customer_id=bob.aggregate_id, wait_for=bob.consistency_token),
            timeout=5,
        )
        assert [e.type for e in read.entries] == ["customer.registered"]
        # Another customer's commit wakes none of them (each would look at the database):
        # they are still waiting on the same futures after it is visible.
        other = bob
        while customer_topic(other.aggregate_id) == topic:  # 1 in 4,096: another customer
            other = (await register(stack.customer, "Cid Other", "cid@example.com")).result
        waiting = set(pushed._waiting[topic])
        assert len(waiting) == WATCHERS
        renamed = await stack.customer.RenameCustomer(
            capi.RenameCustomerRequest(customer_id=other.aggregate_id, display_name="Bob King")
        )
        await stack.timeline.GetTimeline(
            tapi.GetTimelineRequest(
                customer_id=other.aggregate_id, wait_for=renamed.result.consistency_token
            ),
            timeout=5,
        )
        await asyncio.sleep(0.2)
        assert set(pushed._waiting[topic]) == waiting
        assert not any(n.done() for n in nexts)
        woken_before = pushed.generation
        await stack.customer.RenameCustomer(
            capi.RenameCustomerRequest(customer_id=ada.aggregate_id, display_name="Ada King")
        )
        got = await asyncio.wait_for(asyncio.gather(*nexts), 10)
        assert {g.entry.type for g in got} == {"customer.renamed"}
        assert len(got) == WATCHERS
        assert pushed.generation > woken_before  # the wake-up came from the projector's NOTIFY
    finally:
        for c in calls:
            c.cancel()
        for n in nexts:
            n.cancel()


async def test_a_watch_of_a_customer_the_timeline_has_no_entry_of_ends_not_found(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mistyped id was watched for ever; a customer registered a moment ago still gets its
    first entry (it is projected within the wait)."""
    monkeypatch.setattr(query, "UNKNOWN_WATCH_S", 1.5)
    nobody = str(uuid.uuid4())
    call = stack.timeline.WatchTimeline(tapi.WatchTimelineRequest(customer_id=nobody), timeout=20)
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        async for _ in call:
            pass
    assert ended.value.code() == grpc.StatusCode.NOT_FOUND
    assert ended.value.details() == (
        f"the timeline has no customer {nobody}: no entry of it arrived within 1.5 s"
    )

    ada = (await register(stack.customer, "Ada Watched", "ada.watched@example.com")).result
    watch = stack.timeline.WatchTimeline(
        tapi.WatchTimelineRequest(customer_id=ada.aggregate_id), timeout=20
    )
    first = await watch.__aiter__().__anext__()
    assert first.entry.type == "customer.registered"
    watch.cancel()
