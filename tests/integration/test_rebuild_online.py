"""A rebuild fills a new read model beside the live one and switches to it at once: reads
answer all along, and never from an empty or half-filled timeline."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from c360.customer.v1 import customer_service_pb2 as capi
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_platform.datakeys import DataKeys
from c360_platform.errors import Unavailable
from c360_timeline import projector
from c360_timeline.readmodel import SCHEMA
from tests.integration.conftest import Stack
from tests.integration.helpers import eventually, register, within
from tests.integration.test_delivery import snapshot

pytestmark = pytest.mark.integration

CUSTOMERS = 40


async def test_reads_during_a_rebuild_never_fail_nor_show_an_empty_timeline(stack: Stack) -> None:
    registered = await register(stack.customer, "Rebuilt", "rebuilt@example.com")
    customer_id = registered.result.aggregate_id
    for i in range(30):  # a history worth replaying
        reply = await stack.customer.RenameCustomer(
            capi.RenameCustomerRequest(customer_id=customer_id, display_name=f"Rebuilt {i}")
        )
    request = tapi.GetTimelineRequest(customer_id=customer_id, page_size=500)
    await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=customer_id, wait_for=reply.result.consistency_token),
        timeout=20,
    )
    complete = len((await stack.timeline.GetTimeline(request)).entries)
    assert complete == 31

    rebuilding = asyncio.Event()
    sizes: list[int] = []

    async def read_all_along() -> None:
        await rebuilding.wait()
        while rebuilding.is_set():
            page = await stack.timeline.GetTimeline(request, timeout=10)  # never fails
            sizes.append(len(page.entries))

    reader = asyncio.create_task(read_all_along())
    progress = []
    rebuilding.set()
    try:
        async for reply_ in stack.timeline.RebuildReadModel(tapi.RebuildReadModelRequest()):
            progress.append((reply_.applied, reply_.done))
    finally:
        rebuilding.clear()
        await reader
    assert progress[-1] == (31, True)
    assert sizes  # reads happened while it rebuilt
    assert set(sizes) == {complete}  # every read saw the whole timeline, never less
    after = await stack.timeline.GetTimeline(request)
    assert len(after.entries) == complete


async def test_a_rebuild_does_not_wait_for_the_feeds_idle_fetches(stack: Stack) -> None:
    """The live feeds hold their mutexes while they wait for new events; a rebuild ends
    those waits instead of waiting them out."""
    registered = await register(stack.customer, "Idle", "idle@example.com")
    await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(
            customer_id=registered.result.aggregate_id,
            wait_for=registered.result.consistency_token,
        ),
        timeout=20,
    )
    stack.projector.idle_wait = 120.0  # from the feeds' next wait on
    await asyncio.sleep(2.5)  # both feeds are in such a wait now
    replies = stack.timeline.RebuildReadModel(tapi.RebuildReadModelRequest(), timeout=60)

    async def steps() -> list[tuple[int, bool]]:
        return [(reply.applied, reply.done) async for reply in replies]

    # A rebuild of one event takes about a second; this test once hit the call's deadline
    # in a full run (never alone): if it does again, its failure says what waited.
    progress = await within(45, steps(), "a rebuild beside idle feeds")
    assert progress[-1] == (1, True)


async def test_a_rebuild_ends_while_commands_keep_coming_and_misses_none(stack: Stack) -> None:
    """The replay goes up to the stream's head as it began; what comes after is the live
    feed's, from the new model's tracking. Commands never pause long enough for a fetch to
    find the stream empty, and every one of them is in the new model after."""
    for i in range(20):
        await register(stack.customer, f"Before {i}", f"before{i}@example.com")
    writing = asyncio.Event()
    writing.set()
    registered: list[capi.RegisterCustomerResponse] = []

    async def keep_writing() -> None:
        while writing.is_set():
            n = len(registered)
            registered.append(await register(stack.customer, f"During {n}", f"d{n}@example.com"))

    writer = asyncio.create_task(keep_writing())
    try:
        await asyncio.sleep(0.5)
        replies = stack.timeline.RebuildReadModel(tapi.RebuildReadModelRequest(), timeout=60)
        progress = [(reply.applied, reply.done) async for reply in replies]
        await asyncio.sleep(0.5)  # commands after the rebuild, too
    finally:
        writing.clear()
        await writer
    assert progress[-1][1]
    assert progress[-1][0] >= 21  # at least every event stored as it began
    last = registered[-1].result
    await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=last.aggregate_id, wait_for=last.consistency_token),
        timeout=20,
    )
    for reply in registered:
        page = await stack.timeline.GetTimeline(
            tapi.GetTimelineRequest(customer_id=reply.result.aggregate_id)
        )
        assert len(page.entries) == 1


async def test_after_a_rebuild_the_live_feed_starts_where_the_replay_ended(stack: Stack) -> None:
    """The live durable made after the swap starts past what the replay applied: it does not
    read the whole stream again to drop it (which, for a large stream, would hold back every
    new event for as long)."""
    for i in range(30):
        await register(stack.customer, f"Replayed {i}", f"replayed{i}@example.com")
    replies = stack.timeline.RebuildReadModel(tapi.RebuildReadModelRequest(), timeout=60)
    progress = [(reply.applied, reply.done) async for reply in replies]
    assert progress[-1] == (30, True)
    after = await register(stack.customer, "After", "after@example.com")
    page = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(
            customer_id=after.result.aggregate_id, wait_for=after.result.consistency_token
        ),
        timeout=20,
    )
    assert len(page.entries) == 1
    consumer = stack.projector.consumer
    assert consumer is not None
    assert consumer.sub is not None
    delivered = (await consumer.sub.consumer_info()).delivered
    assert delivered is not None
    assert delivered.consumer_seq == 1  # the one event after the rebuild, not all 31


async def _merges(postgres_url: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cur = await conn.execute(
            f"SELECT merge_id, duplicate_id, survivor_id, merged_at, unmerged_at"
            f" FROM {SCHEMA}.merges ORDER BY merge_id"
        )
        return [tuple(r) for r in await cur.fetchall()]


@pytest.mark.parametrize("batch", [None, 3])
async def test_a_rebuild_of_many_customers_makes_the_model_it_replaces(
    stack: Stack, batch: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Many customers, each with a history, and a merge (two customers' rows written from one
    # customer's events): the whole model as it stood, not one customer's timeline. In
    # batches of three, a customer's events fall in batches one after the other, each read
    # and folded while the writes of the one before run (the shadow's carry).
    if batch is not None:
        monkeypatch.setattr(projector, "REBUILD_BATCH", batch)
    ids = []
    for i in range(CUSTOMERS):
        registered = await register(stack.customer, f"Lane {i}", f"lane{i}@example.com")
        ids.append(registered.result.aggregate_id)
        await stack.customer.AddEmail(
            capi.AddEmailRequest(customer_id=ids[-1], email=f"second{i}@example.com")
        )
    for i in range(0, CUSTOMERS, 3):
        await stack.customer.RenameCustomer(
            capi.RenameCustomerRequest(customer_id=ids[i], display_name=f"Lane {i} renamed")
        )
    merged = await stack.customer.MergeCustomers(
        capi.MergeCustomersRequest(survivor_id=ids[0], duplicate_id=ids[1], reason="same")
    )
    await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=ids[0], wait_for=merged.result.consistency_token),
        timeout=20,
    )
    before, merges = await snapshot(stack.postgres_url), await _merges(stack.postgres_url)
    indexes = await _indexes(stack.postgres_url)
    assert len(before["profiles"]) == CUSTOMERS
    assert merges  # the replay below has a merge to keep
    # No key in this process's cache: the replay writes every profile with its search
    # columns stale, and the rebuild fills them before its model takes over (a search finds
    # every customer from then on, not once a reindexer has caught up).
    keys = stack.projector.view.keys
    assert isinstance(keys, DataKeys)
    monkeypatch.setattr(keys, "_cache", {})
    progress = [r async for r in stack.timeline.RebuildReadModel(tapi.RebuildReadModelRequest())]
    assert (progress[-1].applied, progress[-1].done) == (len(before["entries"]), True)
    # (Those of keys refreshed meanwhile, read late in their time before, are written whole.)
    assert 0 < progress[-1].profiles_indexed == progress[-1].profiles_to_index <= CUSTOMERS
    # Reported as it went, after the events were all applied.
    filling = [r for r in progress if r.profiles_to_index and not r.done]
    assert filling
    assert all(r.applied == progress[-1].applied for r in filling)
    async with await psycopg.AsyncConnection.connect(stack.postgres_url) as conn:
        cur = await conn.execute(f"SELECT count(*) FROM {SCHEMA}.profiles WHERE search_stale")
        assert await cur.fetchone() == (0,)
    # Its read path's indexes, built once at the end, are the live model's.
    assert await _indexes(stack.postgres_url) == indexes
    assert await snapshot(stack.postgres_url) == before
    assert await _merges(stack.postgres_url) == merges


async def _indexes(postgres_url: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cur = await conn.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = %s"
            " ORDER BY indexname",
            (SCHEMA,),
        )
        return [tuple(r) for r in await cur.fetchall()]


async def test_a_rebuild_whose_key_holder_is_away_takes_over_and_leaves_the_rest_to_the_reindexer(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ids = [(await register(stack.customer, f"Mo {i}", f"mo{i}@example.com")) for i in range(4)]
    last = ids[-1].result
    await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=last.aggregate_id, wait_for=last.consistency_token),
        timeout=20,
    )
    keys = stack.projector.view.keys
    assert isinstance(keys, DataKeys)
    monkeypatch.setattr(keys, "_cache", {})
    lookup = keys.lookup

    def away(customer_ids: Any) -> Any:
        raise Unavailable("the customers' data keys cannot be read now: down for the test")

    monkeypatch.setattr(keys, "lookup", away)
    progress = [r async for r in stack.timeline.RebuildReadModel(tapi.RebuildReadModelRequest())]
    assert progress[-1].done
    assert progress[-1].profiles_to_index > progress[-1].profiles_indexed == 0
    assert "search columns stale" in caplog.text
    async with await psycopg.AsyncConnection.connect(stack.postgres_url) as conn:
        cur = await conn.execute(f"SELECT count(*) FROM {SCHEMA}.profiles WHERE search_stale")
        assert await cur.fetchone() == (progress[-1].profiles_to_index,)
    # The key holder answers again: the reindexer fills them (a search finds them then).
    monkeypatch.setattr(keys, "lookup", lookup)
    found = await stack.timeline.SearchCustomers(
        tapi.SearchCustomersRequest(text="mo3@example.com")
    )
    assert [h.customer_id for h in found.hits] == [last.aggregate_id]

    async def filled() -> bool:
        async with await psycopg.AsyncConnection.connect(stack.postgres_url) as conn:
            cur = await conn.execute(f"SELECT count(*) FROM {SCHEMA}.profiles WHERE search_stale")
            return await cur.fetchone() == (0,)

    await eventually(filled, what="the reindexer to fill the rest")
