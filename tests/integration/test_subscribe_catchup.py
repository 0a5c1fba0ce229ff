"""The catch-up read and the seam: a durable from the start gets every stored event once, in order,
also those the stream no longer holds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import grpc
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig

from c360.events.v1 import envelope_pb2
from c360.events.v1 import event_log_pb2 as log_api
from c360.events.v1 import event_log_pb2_grpc as log_grpc
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_customer import domain
from c360_customer.application import CustomerApplication
from c360_customer.contract import CONTRACT as CUSTOMER_CONTRACT
from c360_platform.catchup import CatchUpConsumer, Event, SourceDirectory, StartAt
from c360_platform.eventlog import SERVICE_NAME, EventLogServicer
from c360_platform.pgstore import ensure_schema, postgres_env
from c360_platform.pii import reveal
from c360_platform.relay import OutboxRelay
from c360_platform.rpc import ServiceHost
from c360_platform.streams import StreamSettings

from .conftest import Stack
from .helpers import eventually, register
from .test_delivery import snapshot

pytestmark = pytest.mark.integration
STREAM = StreamSettings()


@pytest.fixture
def app(database_url: str) -> Iterator[CustomerApplication]:
    ensure_schema(database_url, "customer")
    application = CustomerApplication(env=postgres_env(database_url, "customer"))
    yield application
    application.close()


def store_customers(app: CustomerApplication, count: int, start: int = 0) -> None:
    """Register customers straight into the store, many per transaction."""
    customers = [
        domain.register_customer(
            kind="person",
            display_name=f"Customer {i}",
            emails=[f"c{i}@example.com"],
            phones=[],
            addresses=[],
        )
        for i in range(start, start + count)
    ]
    for first in range(0, count, 500):
        app.save(*customers[first : first + 500])


async def publish_all(relay: OutboxRelay) -> None:
    head = relay.app.recorder.max_notification_id() or 0
    while relay.position() < head:
        await relay.publish_once()


@pytest_asyncio.fixture
async def relay(
    app: CustomerApplication, database_url: str, fresh_nats_url: str
) -> AsyncIterator[OutboxRelay]:
    relay = OutboxRelay(app, CUSTOMER_CONTRACT, postgres_url=database_url, nats_url=fresh_nats_url)
    yield relay
    await relay.close()


@pytest_asyncio.fixture
async def event_log(app: CustomerApplication) -> AsyncIterator[str]:
    """The customer store's catch-up read on a gRPC host of its own (small pages)."""
    host = ServiceHost("customer", 0)
    servicer = EventLogServicer(app, CUSTOMER_CONTRACT, page_size=7)
    host.add(
        SERVICE_NAME,
        lambda server: log_grpc.add_EventLogServiceServicer_to_server(servicer, server),
    )
    port = await host.start()
    yield f"127.0.0.1:{port}"
    await host.stop()


@pytest_asyncio.fixture
async def nc(fresh_nats_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(fresh_nats_url)
    yield client
    with contextlib.suppress(Exception):
        await client.close()


async def stream_envelopes(nc: NATS) -> list[envelope_pb2.Envelope]:
    js = nc.jetstream()
    total = (await js.stream_info(STREAM.name)).state.messages
    sub = await js.pull_subscribe(
        "c360.>", stream=STREAM.name, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
    )
    out: list[envelope_pb2.Envelope] = []
    while len(out) < total:
        out.extend(envelope_pb2.Envelope.FromString(m.data) for m in await sub.fetch(100, 5))
    await sub.unsubscribe()
    return out


async def drain(consumer: CatchUpConsumer) -> list[Event]:
    """Hand out everything there is, committing each batch, until caught up."""
    events: list[Event] = []
    while True:
        batch = await consumer.next_batch(timeout=0.3)
        events.extend(batch.events)
        await consumer.commit(batch)
        if not len(batch) and not consumer.filling and await consumer.pending() == 0:
            return events


async def test_the_catch_up_read_pages_the_store_as_the_relay_published_it(
    app: CustomerApplication, relay: OutboxRelay, event_log: str, nc: NATS
) -> None:
    store_customers(app, 30)
    await publish_all(relay)
    published = await stream_envelopes(nc)
    assert len(published) == 30

    channel = grpc.aio.insecure_channel(event_log)
    stub = log_grpc.EventLogServiceStub(channel)
    pages = [p async for p in stub.ReadEvents(log_api.ReadEventsRequest())]
    assert [len(p.envelopes) for p in pages] == [7, 7, 7, 7, 2]
    assert {(p.source, p.head_position) for p in pages} == {("customer", 30)}
    assert [e for p in pages for e in p.envelopes] == published  # same ids, bytes, positions

    window = [
        p async for p in stub.ReadEvents(log_api.ReadEventsRequest(after_position=10, limit=5))
    ]
    assert [e.source_position for p in window for e in p.envelopes] == [11, 12, 13, 14, 15]
    beyond = [p async for p in stub.ReadEvents(log_api.ReadEventsRequest(after_position=30))]
    assert [(len(p.envelopes), p.head_position) for p in beyond] == [(0, 30)]
    await channel.close(None)


async def test_a_durable_from_the_start_reads_what_the_stream_lost_then_switches_to_it(
    app: CustomerApplication, relay: OutboxRelay, event_log: str, nc: NATS
) -> None:
    store_customers(app, 30)
    await publish_all(relay)
    js = nc.jetstream()
    await js.purge_stream(STREAM.name, seq=21)  # the stream's retention took the first 20
    store_customers(app, 10, start=30)
    await publish_all(relay)
    directory = SourceDirectory({"customer": event_log})

    consumer = CatchUpConsumer(js, STREAM, "erp", "c360.>", directory, batch_size=8)
    assert await consumer.open(StartAt.beginning())
    events = await drain(consumer)
    assert [e.envelope.source_position for e in events] == list(range(1, 41))
    assert [e.stream_seq for e in events[:20]] == [0] * 20  # from the store
    assert [e.stream_seq for e in events[20:]] == list(range(21, 41))  # then the stream
    assert len({e.envelope.event_id for e in events}) == 40
    await consumer.close()

    # Restarted, it continues at the exact next event: the new ones, from the stream.
    store_customers(app, 5, start=40)
    await publish_all(relay)
    again = CatchUpConsumer(js, STREAM, "erp", "c360.>", directory, batch_size=8)
    assert not await again.open(StartAt.beginning())
    later = await drain(again)
    assert [(e.envelope.source_position, e.stream_seq) for e in later] == [
        (p, p) for p in range(41, 46)
    ]
    await again.close()
    await directory.close()


async def test_a_durable_overtaken_while_away_heals_the_gap_from_the_store(
    app: CustomerApplication, relay: OutboxRelay, event_log: str, nc: NATS
) -> None:
    js = nc.jetstream()
    directory = SourceDirectory({"customer": event_log})
    store_customers(app, 10)
    await publish_all(relay)
    consumer = CatchUpConsumer(
        js, STREAM, "billing", "c360.customer.customer.registered", directory, batch_size=4
    )
    await consumer.open(StartAt.beginning())
    assert len(await drain(consumer)) == 10
    await consumer.close()

    # While it is away, 20 more events are published and the stream drops all up to seq 25.
    store_customers(app, 20, start=10)
    await publish_all(relay)
    await js.purge_stream(STREAM.name, seq=26)
    back = CatchUpConsumer(
        js, STREAM, "billing", "c360.customer.customer.registered", directory, batch_size=4
    )
    await back.open()
    events = await drain(back)
    assert [e.envelope.source_position for e in events] == list(range(11, 31))
    assert {e.stream_seq for e in events[:15]} == {0}
    assert [e.stream_seq for e in events[15:]] == list(range(26, 31))
    await back.close()
    await directory.close()


async def test_a_rebuild_beyond_the_streams_retention_gives_identical_rows(
    stack: Stack,
) -> None:
    for i in range(8):
        reply = await register(stack.customer, f"Person {i}", f"p{i}@example.com")
    await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(
            customer_id=reply.result.aggregate_id, wait_for=reply.result.consistency_token
        ),
        timeout=10,
    )
    before = await snapshot(stack.postgres_url)
    nc = await nats.connect(stack.nats_url)
    await nc.jetstream().purge_stream(STREAM.name)  # nothing left in the stream
    await nc.close()
    progress = [p async for p in stack.timeline.RebuildReadModel(tapi.RebuildReadModelRequest())]
    assert progress[-1].done
    assert progress[-1].applied == progress[-1].total == 8
    assert await snapshot(stack.postgres_url) == before


# -- the reference subscriber, `c360 subscribe`, as a process of its own ------------------------


def subscribe_command(home: Path, durable: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "c360_cli.main",
        "--home",
        str(home),
        "subscribe",
        "--durable",
        durable,
        *extra,
    ]


def endpoints(tmp_path: Path, nats_url: str, event_log: str) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "endpoints.json").write_text(
        json.dumps({"nats_url": nats_url, "event_sources": {"customer": event_log}})
    )
    return home


def complete_lines(output: bytes) -> list[dict[str, Any]]:
    """The JSON lines of a subscriber's output; a killed one may leave a partial last line."""
    lines = output.decode().split("\n")
    return [json.loads(line) for line in lines[:-1]]


def run_to_the_end(command: list[str]) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done


def kill_after(command: list[str], lines: int) -> bytes:
    """Start a subscriber, kill -9 it once it printed `lines` lines; everything it printed."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    seen = b""
    while seen.count(b"\n") < lines:
        chunk = os.read(proc.stdout.fileno(), 65536)
        assert chunk, "the subscriber ended before it was killed"
        seen += chunk
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return seen + proc.stdout.read()


async def test_a_subscriber_killed_mid_stream_resumes_at_the_exact_next_event(
    app: CustomerApplication,
    relay: OutboxRelay,
    event_log: str,
    nc: NATS,
    fresh_nats_url: str,
    tmp_path: Path,
) -> None:
    store_customers(app, 2000)
    await publish_all(relay)
    expected = [env.event_id for env in await stream_envelopes(nc)]
    home = endpoints(tmp_path, fresh_nats_url, event_log)
    # Only the customer store runs here (no customer service to give keys): names as sealed.
    command = subscribe_command(home, "erp", "--from-start", "--batch", "50", "--sealed")

    first = complete_lines(await asyncio.to_thread(kill_after, command, 700))
    second = complete_lines((await asyncio.to_thread(run_to_the_end, [*command, "--drain"])).stdout)
    ids = [line["event_id"] for line in first + second]
    once = list(dict.fromkeys(ids))
    assert once == expected  # every event, in order, none missing
    assert len(ids) - len(once) <= 50  # repeats: only the one batch not yet acknowledged
    line = second[-1]
    assert line.keys() >= {"event_id", "subject", "type", "customer_id", "occurred_at", "payload"}
    assert line["subject"] == "c360.customer.customer.registered"
    assert line["type"] == "c360.events.v1.CustomerRegistered"
    keys = app.keyring.keys([UUID(line["customer_id"])])
    assert reveal(line["payload"]["display_name"], keys) == "Customer 1999"


async def test_from_the_start_yields_every_event_ever_stored_with_seconds_of_retention(
    app: CustomerApplication,
    database_url: str,
    fresh_nats_url: str,
    event_log: str,
    nc: NATS,
    tmp_path: Path,
) -> None:
    short = OutboxRelay(
        app,
        CUSTOMER_CONTRACT,
        postgres_url=database_url,
        nats_url=fresh_nats_url,
        stream=StreamSettings(max_age=2.0),
    )
    store_customers(app, 300)
    await publish_all(short)
    js = nc.jetstream()

    async def expired() -> bool:
        return (await js.stream_info(STREAM.name)).state.first_seq > 1

    await eventually(expired, what="the stream's retention to drop the first events")
    store_customers(app, 200, start=300)
    await publish_all(short)
    await short.close()

    home = endpoints(tmp_path, fresh_nats_url, event_log)
    command = subscribe_command(home, "archive", "--from-start", "--drain", "--sealed")
    done = await asyncio.to_thread(run_to_the_end, command)
    lines = complete_lines(done.stdout)
    assert [line["source_position"] for line in lines] == list(range(1, 501))
    assert len({line["event_id"] for line in lines}) == 500
