"""Batches from a durable pull consumer by `Puller`, against a real nats-server: every message
once and in order, whether it was there before the request or came while it waited."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid

import pytest
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig

from c360.events.v1 import envelope_pb2
from c360_platform.catchup import CatchUpConsumer, SourceDirectory, StartAt
from c360_platform.pull import Puller
from c360_platform.streams import StreamSettings

from .helpers import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def nc(session_nc: NATS) -> NATS:
    return session_nc


async def a_stream(nc: NATS, max_ack_pending: int = 1000) -> tuple[str, str]:
    """A stream and durable of this test's own (one server serves the session)."""
    name = f"T{uuid.uuid4().hex[:10]}"
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"{name}.>"])
    await js.add_consumer(
        name,
        ConsumerConfig(
            durable_name="d",
            ack_policy=AckPolicy.EXPLICIT,
            max_ack_pending=max_ack_pending,
            filter_subject=f"{name}.>",
        ),
    )
    return name, "d"


async def publish(nc: NATS, stream: str, first: int, count: int) -> None:
    js = nc.jetstream()
    for n in range(first, first + count):
        await js.publish(f"{stream}.m", str(n).encode())


async def test_a_batch_is_what_the_stream_holds_up_to_its_size(nc: NATS) -> None:
    stream, durable = await a_stream(nc)
    await publish(nc, stream, 0, 10)
    puller = Puller(nc.jetstream(), stream, durable)
    await puller.open()
    try:
        # A full batch is handed out at once (its request ends without a status).
        first = await asyncio.wait_for(puller.fetch(4, timeout=60), 10)
        rest = await puller.fetch(100, timeout=5)
        assert [m.data for m in first] == [b"0", b"1", b"2", b"3"]
        assert [m.data for m in rest] == [str(n).encode() for n in range(4, 10)]
        # Nothing left: an empty batch when the request expires.
        assert await puller.fetch(100, timeout=0.3) == []
    finally:
        await puller.close()


async def test_a_waiting_fetch_hands_out_a_message_as_soon_as_it_is_published(nc: NATS) -> None:
    stream, durable = await a_stream(nc)
    puller = Puller(nc.jetstream(), stream, durable)
    await puller.open()
    try:
        waiting = asyncio.ensure_future(puller.fetch(100, timeout=30))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await publish(nc, stream, 0, 1)
        # Handed out on arrival: the 30 s timeout (and the batch of 100) are not waited for.
        got = await asyncio.wait_for(waiting, 10)
        assert [m.data for m in got] == [b"0"]
        # The request stays open for the rest of its batch: later messages come next.
        await publish(nc, stream, 1, 3)
        more: list[bytes] = []
        while len(more) < 3:
            more += [m.data for m in await puller.fetch(100, timeout=5)]
        assert more == [b"1", b"2", b"3"]
    finally:
        await puller.close()


async def test_every_message_once_in_order_while_publishing_in_bursts(nc: NATS) -> None:
    stream, durable = await a_stream(nc)
    puller = Puller(nc.jetstream(), stream, durable)
    await puller.open()
    total = 600
    rng = random.Random(7)

    async def bursts() -> None:
        sent = 0
        while sent < total:
            size = min(rng.randint(1, 90), total - sent)
            await publish(nc, stream, sent, size)
            sent += size
            await asyncio.sleep(rng.choice((0, 0.001, 0.02)))

    publisher = asyncio.ensure_future(bursts())
    got: list[int] = []
    try:
        while len(got) < total:
            batch = await asyncio.wait_for(puller.fetch(rng.randint(1, 64), timeout=2), 10)
            for msg in batch:
                await msg.ack()
            got += [int(m.data) for m in batch]
        await publisher
        assert got == list(range(total))
        assert await puller.fetch(64, timeout=0.3) == []
    finally:
        publisher.cancel()
        with contextlib.suppress(BaseException):
            await publisher
        await puller.close()


async def test_a_batch_is_acknowledged_by_its_last_message_on_new_durables(nc: NATS) -> None:
    stream, old = await a_stream(nc)  # made before: one acknowledgement per message
    settings = StreamSettings(name=stream, subjects=(f"{stream}.>",))
    js = nc.jetstream()
    for position in range(1, 13):
        event = envelope_pb2.Envelope(source="t", source_position=position)
        await js.publish(f"{stream}.m", event.SerializeToString())
    directory = SourceDirectory({})
    for durable in ("new", old):
        consumer = CatchUpConsumer(js, settings, durable, f"{stream}.>", directory, batch_size=5)
        try:
            await consumer.open(StartAt.beginning())
            assert consumer.config is not None
            expected = AckPolicy.ALL if durable == "new" else AckPolicy.EXPLICIT
            assert consumer.config.ack_policy == expected
            positions: list[int] = []
            while len(positions) < 12:
                batch = await consumer.next_batch(timeout=5)
                positions += [e.envelope.source_position for e in batch.events]
                await consumer.commit(batch, save=False)
            assert positions == list(range(1, 13))

            async def all_acknowledged(durable: str = durable) -> bool:
                info = await js.consumer_info(stream, durable)
                done = (info.num_ack_pending, info.num_pending, info.ack_floor.stream_seq)
                return done == (0, 0, 12)

            # Acknowledgements are not answered: the consumer counts them shortly after.
            await eventually(all_acknowledged, timeout=10, what=f"{durable}'s acks")
        finally:
            await consumer.close()
