"""Phases beyond the load and freshness ones: throughput against concurrency (1-64), the
outbox relay against raw nats-py publishing, and a timeline rebuild."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import nats

from bench import rawsave
from bench.cpu import CpuMeter, ms_per_call
from bench.measure import Measure, closed_loop
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360.timeline.v1 import timeline_service_pb2_grpc as tapi_grpc
from c360_customer.contract import CONTRACT
from c360_platform import natsauth
from c360_platform.channels import aio_channel
from c360_platform.envelope import msg_id
from c360_platform.relay import OutboxRelay, StoredEnvelope
from c360_platform.streams import StreamSettings, ensure_stream

LEVELS = (1, 2, 4, 8, 16, 32, 64)
RELAY_STREAM = StreamSettings(name="BENCH_RELAY", subjects=("c360.>",), duplicate_window=120)
"""A stream of the bench's own for the relay phase, removed before the services start (it
takes the subjects the services' C360 stream will have)."""


async def concurrency_sweep(
    op: Callable[[int], Awaitable[None]],
    ids: Iterator[int],
    seconds: float,
    warmup: float,
    on_level: Callable[[int], None] = lambda c: None,
    pids: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Throughput and latency of `op` with 1, 2, 4 ... 64 calls in flight, `seconds` each
    (after a short warm-up at that level); with `pids`, also each process's CPU per call at
    each level (ms: its CPU over the level's throughput), and their sum."""
    found = []
    for level in LEVELS:
        on_level(level)
        await closed_loop(None, op, concurrency=level, seconds=warmup, ids=ids)
        m = Measure(f"c{level}", f"{level} in flight")
        meter = CpuMeter(pids) if pids else None
        if meter is not None:
            meter.start()
        await closed_loop(m, op, concurrency=level, seconds=seconds, ids=ids)
        row: dict[str, Any] = {
            "concurrency": level,
            "per_s": round(m.throughput or 0.0, 1),
            "p50_ms": m.ms(50),
            "p99_ms": m.ms(99),
            "errors": m.error_count,
        }
        if meter is not None and m.throughput:
            per_call = ms_per_call(meter.percent(), m.throughput)
            row["cpu_ms_per_call"] = per_call
            row["cpu_ms_per_call_all"] = round(sum(per_call.values()), 3)
        found.append(row)
    return found


RELAY_ROUNDS = 3
"""Rounds of the relay and raw publishing, alternating (each on a fresh stream): the two are
compared by their medians, so one noisy moment does not decide the ratio."""


async def relay_vs_raw(
    postgres_url: str, nats_url: str, limit: int, rounds: int = RELAY_ROUNDS
) -> dict[str, Any]:
    """The outbox relay publishing up to `limit` stored events (the raw-save phases' customers,
    schema bench_raw) to a stream of the bench's own, as it relays a backlog (connected, and
    with its CPU pool's process ready to read pages ahead, as a running relay), beside nats-py
    publishing the same messages with publish_async (window of 256) and awaiting every ack;
    `rounds` of each, alternating, each on a fresh stream: events/s of each (medians)."""
    app = await asyncio.to_thread(rawsave.open_app, postgres_url, 2)
    nc = await nats.connect(nats_url, **natsauth.client_options(nats_url))
    relay_rates: list[float] = []
    raw_rates: list[float] = []
    published = 0
    messages: list[tuple[str, bytes]] = []
    try:
        js = nc.jetstream(publish_async_max_pending=256)
        for round_ in range(rounds):
            await ensure_stream(js, RELAY_STREAM)
            relay = OutboxRelay(
                app,
                CONTRACT,
                postgres_url=postgres_url,
                nats_url=nats_url,
                stream=RELAY_STREAM,
                pool=True,
            )
            # As a running relay is: connected, its pool process (if any) ready.
            await relay.connect()
            warming = relay.start_pool()
            if warming is not None:
                await warming
            started = time.perf_counter()
            try:
                await relay.publish_backlog(0, limit=limit)
            finally:
                relay_s = time.perf_counter() - started
                await relay.close()
            published = relay.published
            relay_rates.append(published / relay_s)
            await js.delete_stream(RELAY_STREAM.name)
            if not messages:
                rows = await asyncio.to_thread(
                    app.event_recorder.select_with_metadata, 0, published
                )
                messages = [
                    (s.subject, s.pack().SerializeToString())
                    for s in (StoredEnvelope(app, CONTRACT, n, meta) for n, meta in rows)
                ]
            await ensure_stream(js, RELAY_STREAM)
            started = time.perf_counter()
            acks = [
                await js.publish_async(
                    subject,
                    data,
                    headers={"Nats-Msg-Id": f"raw-{msg_id('bench', i)}-{round_}"},
                    stream=RELAY_STREAM.name,
                )
                for i, (subject, data) in enumerate(messages)
            ]
            await asyncio.gather(*acks)
            raw_rates.append(len(messages) / (time.perf_counter() - started))
            await js.delete_stream(RELAY_STREAM.name)
    finally:
        await nc.close()
        await asyncio.to_thread(app.close)
    return {
        "events": published,
        "rounds": rounds,
        "relay_per_s": round(statistics.median(relay_rates), 1) if relay_rates else None,
        "raw_publish_per_s": round(statistics.median(raw_rates), 1) if raw_rates else None,
        "relay_per_s_by_round": [round(r, 1) for r in relay_rates],
        "raw_publish_per_s_by_round": [round(r, 1) for r in raw_rates],
        "message_bytes_mean": round(sum(len(d) for _, d in messages) / max(1, len(messages))),
    }


async def rebuild(
    timeline_addr: str, token: str, on_progress: Callable[[int, int], None]
) -> dict[str, Any]:
    """Drop and rebuild the timeline's read model from the stream (RebuildReadModel, an
    operator's call); events applied per second of the whole rebuild (its search columns
    and indexes included: it ends when the new model has taken over)."""
    channel = aio_channel(timeline_addr, token)
    try:
        stub: Any = tapi_grpc.TimelineServiceStub(channel)
        started = time.perf_counter()
        applied = total = indexed = 0
        async for progress in stub.RebuildReadModel(tapi.RebuildReadModelRequest(), timeout=900):
            applied, total = progress.applied, progress.total
            indexed = progress.profiles_indexed
            on_progress(applied, total)
            if progress.done:
                break
        seconds = time.perf_counter() - started
    finally:
        await channel.close(None)
    return {
        "events": applied,
        "profiles_indexed": indexed,
        "seconds": round(seconds, 2),
        "per_s": round(applied / seconds, 1) if seconds else None,
    }
