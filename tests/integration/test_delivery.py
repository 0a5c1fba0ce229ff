"""Store -> stream -> read model without loss or doubling, on real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
from nats.js.api import AckPolicy, ConsumerConfig

from c360.events.v1 import envelope_pb2
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_customer.application import CustomerApplication
from c360_customer.contract import CONTRACT as CUSTOMER_CONTRACT
from c360_platform import relay as relay_module
from c360_platform import store
from c360_platform.embedded import EmbeddedNats
from c360_platform.errors import InvalidArgument
from c360_platform.pgstore import ensure_schema, postgres_env
from c360_platform.relay import ADVANCE_EVERY, OutboxRelay, StoredEnvelope
from c360_platform.store import CommandContext
from c360_platform.streams import StreamSettings
from c360_timeline import projection
from c360_timeline.projector import Projector
from c360_timeline.readmodel import ReadModel, open_read_model

from .conftest import Stack
from .helpers import eventually, register

pytestmark = pytest.mark.integration


@pytest.fixture
def app(database_url: str) -> Iterator[CustomerApplication]:
    ensure_schema(database_url, "customer")
    application = CustomerApplication(env=postgres_env(database_url, "customer"))
    yield application
    application.close()


@pytest.fixture
def view(database_url: str) -> ReadModel:
    return open_read_model(database_url)


def make_relay(
    app: CustomerApplication, database_url: str, nats_url: str, **kw: Any
) -> OutboxRelay:
    return OutboxRelay(app, CUSTOMER_CONTRACT, postgres_url=database_url, nats_url=nats_url, **kw)


def register_many(app: CustomerApplication, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        app.register(
            CommandContext(),
            kind="person",
            display_name=f"Customer {i}",
            emails=[f"c{i}@example.com"],
            phones=[],
            addresses=[],
        )


async def stream_messages(nats_url: str) -> list[tuple[str, envelope_pb2.Envelope]]:
    """Every message in the C360 stream as (Nats-Msg-Id, envelope), in stream order."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("C360")
        total = info.state.messages
        sub = await js.pull_subscribe(
            "c360.>", stream="C360", config=ConsumerConfig(ack_policy=AckPolicy.NONE)
        )
        out: list[tuple[str, envelope_pb2.Envelope]] = []
        while len(out) < total:
            for msg in await sub.fetch(min(256, total - len(out)), timeout=5):
                env = envelope_pb2.Envelope.FromString(msg.data)
                out.append(((msg.headers or {}).get("Nats-Msg-Id", ""), env))
        return out
    finally:
        await nc.close()


@pytest_asyncio.fixture
async def closing() -> AsyncIterator[list[OutboxRelay | Projector]]:
    things: list[OutboxRelay | Projector] = []
    yield things
    for thing in things:
        await thing.close()


@pytest.mark.parametrize("fast", [True, False], ids=["fast-batches", "ack-per-message"])
async def test_relay_crash_between_publish_and_position_update_loses_and_doubles_nothing(
    app: CustomerApplication,
    database_url: str,
    fresh_nats_url: str,
    closing: list[Any],
    fast: bool,
) -> None:
    register_many(app, 100)
    stream = StreamSettings(batched=fast)
    crashed = make_relay(app, database_url, fresh_nats_url, batch_size=40, stream=stream)
    closing.append(crashed)
    last = await crashed.publish_batch(crashed.position())
    assert last > 0
    assert crashed.position() == 0  # published and acknowledged, position not yet stored
    await crashed.close()  # the process dies here

    successor = make_relay(app, database_url, fresh_nats_url, batch_size=40, stream=stream)
    closing.append(successor)
    await successor.connect()
    assert (successor.batches is not None) == fast
    # The whole log, pages of 40 in one batch (the first page again: dropped as duplicates).
    assert await successor.publish_backlog(0) == app.recorder.max_notification_id()
    assert successor.position() == app.recorder.max_notification_id()
    messages = await stream_messages(fresh_nats_url)
    ids = [msg_id for msg_id, _ in messages]
    assert len(ids) == 100 == len(set(ids))
    assert ids == [f"customer:{env.source_position}" for _, env in messages]
    positions = [env.source_position for _, env in messages]
    assert positions == sorted(positions)  # per-source order kept


async def test_a_backlog_goes_out_in_a_fast_batch_and_a_few_events_with_an_ack_each(
    app: CustomerApplication, database_url: str, fresh_nats_url: str, closing: list[Any]
) -> None:
    register_many(app, 70)
    relay = make_relay(app, database_url, fresh_nats_url, batch_size=50)
    closing.append(relay)
    await relay.connect()
    assert relay.publisher is not None
    assert relay.batches is not None
    counts = {"fast": 0, "each": 0}

    def counted(publisher: Any, kind: str) -> None:
        publish = publisher.publish

        async def counting(*args: Any, **kwargs: Any) -> None:
            counts[kind] += 1
            await publish(*args, **kwargs)

        publisher.publish = counting

    counted(relay.batches, "fast")
    counted(relay.publisher, "each")
    backlog = app.recorder.max_notification_id()
    assert await relay.publish_backlog(0) == backlog
    assert counts == {"fast": 70, "each": 0}  # pages of 50 and 20, one fast batch
    register_many(app, 3, start=70)
    assert await relay.publish_backlog(backlog) == app.recorder.max_notification_id()
    assert counts == {"fast": 70, "each": 3}
    assert relay.position() == app.recorder.max_notification_id()
    positions = [env.source_position for _, env in await stream_messages(fresh_nats_url)]
    assert positions == sorted(set(positions))
    assert len(positions) == 73


@pytest.fixture
def pool() -> Iterator[ProcessPoolExecutor]:
    """A process pool of its own (spawned, as the CPU pool is): shut down after the test,
    so its process's connection to the store goes with it."""
    executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


def counting_submits(pool: ProcessPoolExecutor, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions given to the pool from now on."""
    submitted: list[str] = []
    submit = pool.submit

    def spy(fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        submitted.append(fn.__name__)
        return submit(fn, *args, **kwargs)

    monkeypatch.setattr(pool, "submit", spy)
    return submitted


async def pooled_relay(
    app: CustomerApplication,
    database_url: str,
    nats_url: str,
    pool: ProcessPoolExecutor,
    batch_size: int,
    closing: list[Any],
) -> tuple[OutboxRelay, int]:
    """A connected relay whose pool process is ready to read pages (closed with the test);
    that process's id."""
    relay = make_relay(app, database_url, nats_url, batch_size=batch_size, pool=pool)
    closing.append(relay)
    await relay.connect()
    warming = relay.start_pool()
    assert warming is not None
    return relay, await warming


async def test_a_backlog_read_ahead_in_a_pool_process_goes_out_byte_for_byte_as_stored(
    app: CustomerApplication,
    database_url: str,
    fresh_nats_url: str,
    closing: list[Any],
    pool: ProcessPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register_many(app, 130)
    relay, pid = await pooled_relay(app, database_url, fresh_nats_url, pool, 40, closing)
    assert pid != os.getpid()
    submitted = counting_submits(pool, monkeypatch)

    assert await relay.publish_backlog(0) == app.recorder.max_notification_id()

    # Pages of 40, 40, 40 and 10: the first read here, the three after it by the pool.
    assert submitted == ["packed_page"] * 3
    assert relay.position() == app.recorder.max_notification_id()
    messages = await stream_messages(fresh_nats_url)
    rows = app.event_recorder.select_with_metadata(0, 1000)
    assert len(messages) == len(rows) == 130
    for (msg_id, published), (notification, meta) in zip(messages, rows, strict=True):
        assert msg_id == f"customer:{notification.id}"
        stored = StoredEnvelope(app, CUSTOMER_CONTRACT, notification, meta).pack()
        assert published.SerializeToString() == stored.SerializeToString()


async def test_only_a_long_backlog_gets_a_pool_process_to_read_ahead(
    app: CustomerApplication,
    database_url: str,
    fresh_nats_url: str,
    closing: list[Any],
    pool: ProcessPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register_many(app, 130)
    submitted = counting_submits(pool, monkeypatch)
    short = make_relay(app, database_url, fresh_nats_url, batch_size=40, pool=pool)
    closing.append(short)
    assert await short.publish_backlog(0) == app.recorder.max_notification_id()
    assert submitted == []  # 130 events: caught up before a process could be ready

    monkeypatch.setattr(relay_module, "POOL_AFTER", 80)
    long = make_relay(app, database_url, fresh_nats_url, batch_size=40, pool=pool)
    closing.append(long)
    assert await long.publish_backlog(0) == app.recorder.max_notification_id()
    assert submitted[:1] == ["ready_page_source"]  # asked for after the page through 80
    await asyncio.wrap_future(pool.submit(os.getpid))  # after it: the warm-up has ended
    await asyncio.sleep(0)  # and its callback has run, on this loop


async def test_a_relay_whose_pool_process_died_reads_its_pages_itself(
    app: CustomerApplication,
    database_url: str,
    fresh_nats_url: str,
    closing: list[Any],
    pool: ProcessPoolExecutor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    register_many(app, 100)
    relay, pid = await pooled_relay(app, database_url, fresh_nats_url, pool, 30, closing)
    os.kill(pid, signal.SIGKILL)

    with caplog.at_level(logging.WARNING, logger="c360_platform.relay"):
        assert await relay.publish_backlog(0) == app.recorder.max_notification_id()

    assert "the CPU pool reads no pages" in caplog.text
    positions = [env.source_position for _, env in await stream_messages(fresh_nats_url)]
    assert len(positions) == 100
    assert positions == sorted(set(positions))


async def test_republished_beyond_the_dedup_window_and_redelivered_events_apply_once(
    app: CustomerApplication,
    database_url: str,
    fresh_nats_url: str,
    view: ReadModel,
    closing: list[Any],
) -> None:
    register_many(app, 10)
    no_window = StreamSettings(duplicate_window=0.1)
    first = make_relay(app, database_url, fresh_nats_url, stream=no_window)
    closing.append(first)
    await first.publish_batch(0)
    await asyncio.sleep(0.3)  # past the duplicate window: JetStream stores the repeats
    await first.publish_batch(0)
    assert len(await stream_messages(fresh_nats_url)) == 20

    projector = Projector(
        view, postgres_url=database_url, nats_url=fresh_nats_url, stream=no_window, batch_size=7
    )
    closing.append(projector)
    await projector.connect()
    assert projector.consumer is not None
    sub = projector.consumer.sub
    assert sub is not None
    # A projector that applied a batch and died before acknowledging it: redelivery follows.
    msgs = await sub.fetch(7, timeout=5)
    await asyncio.to_thread(view.apply, [envelope_pb2.Envelope.FromString(m.data) for m in msgs])
    for m in msgs:
        await m.nak()
    while await projector.process_batch(timeout=0.5):
        pass
    assert projector.applied == 3  # 10 events, 7 applied before the "crash"
    assert await count(view, "entries") == 10
    assert await count(view, "timeline_tracking") == 10


async def test_a_projector_dying_mid_batch_leaves_no_partial_effect(
    app: CustomerApplication, view: ReadModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_many(app, 6)
    envelopes = envelopes_of(app)
    calls = 0
    real_fold = projection.fold_into

    def failing_fold(profile: Any, entry: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise RuntimeError("process killed mid-batch")
        return real_fold(profile, entry)

    monkeypatch.setattr("c360_timeline.readmodel.fold_into", failing_fold)
    with pytest.raises(RuntimeError):
        view.apply(envelopes)
    assert await count(view, "entries") == 0
    assert await count(view, "timeline_tracking") == 0
    monkeypatch.setattr("c360_timeline.readmodel.fold_into", real_fold)
    assert view.apply(envelopes) == 6
    assert view.apply(envelopes) == 0
    assert await count(view, "entries") == 6


def envelopes_of(app: CustomerApplication) -> list[envelope_pb2.Envelope]:
    from c360_platform import envelope

    contract = CUSTOMER_CONTRACT
    out = []
    for notification, _ in app.event_recorder.select_with_metadata(0, 1000):
        event = app.mapper.to_domain_event(notification)
        out.append(
            envelope.pack(
                source="customer",
                publication=contract.publication(event),
                aggregate_id=event.originator_id,
                aggregate_version=event.originator_version,
                position=notification.id,
                occurred_at=event.timestamp,  # type: ignore[attr-defined]
            )
        )
    return out


async def count(view: ReadModel, table: str) -> int:
    def run() -> int:
        with view.datastore.transaction(commit=False) as curs:
            curs.execute(f"SELECT count(*) AS n FROM timeline.{table}")
            row = curs.fetchone()
            return int(row["n"]) if row else 0

    return await asyncio.to_thread(run)


async def test_a_standby_relay_takes_over_when_the_active_one_dies(
    app: CustomerApplication, database_url: str, fresh_nats_url: str, closing: list[Any]
) -> None:
    active = make_relay(app, database_url, fresh_nats_url)
    standby = make_relay(app, database_url, fresh_nats_url)
    closing.extend([active, standby])
    stop_active, stop_standby = asyncio.Event(), asyncio.Event()
    active_task = asyncio.create_task(active.run(stop_active))
    await asyncio.wait_for(active.active.wait(), 10)
    standby_task = asyncio.create_task(standby.run(stop_standby, standby_poll=0.2))
    register_many(app, 5)
    await eventually(lambda: _published(active, 5), what="the active relay to publish")
    assert not standby.active.is_set()

    # The active relay's process dies: its task is gone and its database session with it.
    active_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await active_task
    assert active.lock.conn is not None
    await active.lock.conn.close()

    await asyncio.wait_for(standby.active.wait(), 10)
    register_many(app, 5, start=5)
    await eventually(lambda: _position(standby, 10), what="the standby to publish")
    stop_standby.set()
    await standby_task
    ids = [msg_id for msg_id, _ in await stream_messages(fresh_nats_url)]
    assert len(ids) == 10 == len(set(ids))


async def test_a_running_relay_writes_its_position_once_a_second_not_for_each_event(
    app: CustomerApplication, database_url: str, fresh_nats_url: str, closing: list[Any]
) -> None:
    """Events coming one at a time are each published at once, but the position is written
    at most once a second meanwhile (each write is a commit), and within a second of the
    last; the stream has each event once."""
    relay = make_relay(app, database_url, fresh_nats_url)
    closing.append(relay)
    writes: list[int] = []
    advance = relay.advance

    def counted(position: int) -> None:
        writes.append(position)
        advance(position)

    relay.advance = counted  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await asyncio.wait_for(relay.active.wait(), 10)
    started = time.monotonic()
    for i in range(10):
        register_many(app, 1, start=i)
        await eventually(partial(_published, relay, i + 1), what=f"event {i + 1} published")
    elapsed = time.monotonic() - started
    # One round (a page of one event) for each: before, a write for each.
    assert len(writes) <= 2 + int(elapsed / ADVANCE_EVERY), (writes, elapsed)
    head = app.recorder.max_notification_id() or 0
    await eventually(lambda: _position(relay, head), timeout=3 * ADVANCE_EVERY + 2)
    assert writes == sorted(writes)
    stop.set()
    await task
    ids = [msg_id for msg_id, _ in await stream_messages(fresh_nats_url)]
    assert len(ids) == 10 == len(set(ids))


async def _published(relay: OutboxRelay, n: int) -> bool:
    return relay.published >= n


async def _position(relay: OutboxRelay, n: int) -> bool:
    return await asyncio.to_thread(relay.position) >= n


async def test_rebuild_gives_identical_rows(stack: Stack) -> None:
    token = ""
    for i in range(12):
        reply = await register(stack.customer, f"Person {i}", f"p{i}@example.com")
        token = reply.result.consistency_token
    await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=reply.result.aggregate_id, wait_for=token), timeout=10
    )
    before = await snapshot(stack.postgres_url)
    assert len(before["entries"]) == 12
    progress = [p async for p in stack.timeline.RebuildReadModel(tapi.RebuildReadModelRequest())]
    assert progress[-1].done
    assert progress[-1].applied == progress[-1].total == 12
    assert await snapshot(stack.postgres_url) == before


async def snapshot(url: str) -> dict[str, list[Any]]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url) as conn:

        async def indexed() -> bool:
            # New customers' search columns are filled with their entries, or just after
            # them (the reindexer beside the projector): compare the rows once they are.
            cur = await conn.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM timeline.profiles WHERE search_stale)"
            )
            row = await cur.fetchone()
            return bool(row and row[0])

        await eventually(indexed, what="the search columns to be filled")
        out: dict[str, list[Any]] = {}
        for table, order in [
            ("entries", "entry_seq"),
            ("profiles", "customer_id"),
            ("timeline_tracking", "application_name, notification_id"),
        ]:
            cur = await conn.execute(f"SELECT * FROM timeline.{table} ORDER BY {order}")
            out[table] = await cur.fetchall()
        return out


async def test_personal_data_stays_out_of_subjects_and_logs(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reply = await register(stack.customer, "Zelda Secretname", "zelda.secret@example.com")
    await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(
            customer_id=reply.result.aggregate_id, wait_for=reply.result.consistency_token
        ),
        timeout=10,
    )
    nc = await nats.connect(stack.nats_url)
    try:
        info = await nc.jetstream().stream_info("C360", subjects_filter=">")
        subjects = list((info.state.subjects or {}).keys())
    finally:
        await nc.close()
    assert subjects == ["c360.customer.customer.registered"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Secretname" not in logged
    assert "zelda.secret" not in logged


async def test_a_relay_stops_at_an_event_the_server_cannot_take_and_says_where(
    app: CustomerApplication,
    database_url: str,
    tmp_path: Path,
    closing: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An event stored larger than the server's max_payload (here a server that takes 2 KiB;
    a registration with a long name and ten long e-mail addresses is more) is never skipped:
    what came before it is published and its position written, the relay stops at it, says
    so once at ERROR naming its position, and shows it as `blocked`."""
    server = EmbeddedNats(tmp_path / "nats", extra_config="max_payload: 2048")
    nats_url = server.start()
    try:
        register_many(app, 3)
        app.register(
            CommandContext(),
            kind="person",
            display_name="Large " + "x" * 190,
            emails=[f"large{i}.{'y' * 50}@example.com" for i in range(10)],
            phones=[],
            addresses=[],
        )
        large = app.recorder.max_notification_id() or 0
        register_many(app, 2, start=3)
        relay = make_relay(app, database_url, nats_url)
        closing.append(relay)
        with pytest.raises(relay_module.Unpublishable, match=f"at position {large} "):
            await relay.publish_backlog(0)
        assert relay.position() == large - 1

        stop = asyncio.Event()
        caplog.set_level(logging.ERROR, logger=relay_module.__name__)
        task = asyncio.create_task(relay.run(stop))
        await eventually(lambda: _blocked(relay, large), what="the relay to stop at the event")
        stop.set()
        await task
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1
        assert f"the event at position {large} (c360.customer." in errors[0].getMessage()
        assert "max_payload" in errors[0].getMessage()
        ids = [msg_id for msg_id, _ in await stream_messages(nats_url)]
        assert ids == [f"customer:{p}" for p in range(1, large)]
    finally:
        server.stop()


async def _blocked(relay: OutboxRelay, position: int) -> bool:
    return relay.blocked == position


def test_a_store_on_postgresql_refuses_an_event_too_large_to_publish(
    app: CustomerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_many(app, 1)
    monkeypatch.setattr(store, "MAX_EVENT_BYTES", 500)
    with pytest.raises(InvalidArgument, match="this change is too large") as refused:
        app.register(
            CommandContext(request_id="large", command="RegisterCustomer", fingerprint="large"),
            kind="person",
            display_name="x" * 200,
            emails=[],
            phones=[],
            addresses=[],
        )
    assert [v.field for v in refused.value.violations] == ["request"]
    assert app.event_recorder.count_events() == 1
    assert app.event_recorder.find_outcome("large") is None
