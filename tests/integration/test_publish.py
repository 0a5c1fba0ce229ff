"""Batches published to JetStream by `BatchPublisher` (one ack per message) and
`FastBatchPublisher` (fast-ingest batches), against a real nats-server: a batch is
acknowledged only when the stream stored every message of it, and an error for any one of
them fails the batch."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.errors import APIError

from c360_platform.publish import Batches, BatchPublisher, FastBatchPublisher, FastIngestRefused

pytestmark = pytest.mark.integration


@pytest.fixture
def nc(session_nc: NATS) -> NATS:
    return session_nc


@pytest_asyncio.fixture(params=["ack-per-message", "fast-batches"])
async def publisher(nc: NATS, request: pytest.FixtureRequest) -> AsyncIterator[Batches]:
    publisher: Batches
    if request.param == "fast-batches":
        publisher = FastBatchPublisher(nc, flow=4, outstanding=2)
    else:
        publisher = BatchPublisher(nc, window=8)
    await publisher.open()
    yield publisher
    await publisher.close()


async def a_stream(nc: NATS) -> str:
    name = f"P{uuid.uuid4().hex[:10]}"
    await nc.jetstream().add_stream(name=name, subjects=[f"{name}.>"], allow_batched=True)
    return name


Message = tuple[str, bytes, dict[str, str]]


async def batch(publisher: Batches, messages: list[Message]) -> None:
    """Publish a batch and wait for it to be stored (a failure may surface at either)."""
    for subject, data, headers in messages:
        await publisher.publish(subject, data, headers=headers)
    await publisher.acknowledged()


async def stored(nc: NATS, stream: str) -> list[bytes]:
    js = nc.jetstream()
    info = await js.stream_info(stream)
    out = []
    for seq in range(1, int(info.state.last_seq) + 1):
        out.append((await js.get_msg(stream, seq)).data or b"")
    return out


async def test_a_batch_is_acknowledged_when_the_stream_stored_all_of_it(
    nc: NATS, publisher: Batches
) -> None:
    stream = await a_stream(nc)
    most = 0
    for n in range(50):
        headers = {"Nats-Msg-Id": f"m{n}", "Nats-Expected-Stream": stream}
        await publisher.publish(f"{stream}.m", str(n).encode(), headers=headers)
        most = max(most, publisher.sent - publisher.stored)
        assert 0 <= publisher.stored <= publisher.sent == n + 1
    await asyncio.wait_for(publisher.acknowledged(), 10)
    assert publisher.sent == publisher.stored == 0  # the next batch
    assert 1 <= most <= 8  # the window: 8 messages, or two flows of 4
    assert await stored(nc, stream) == [str(n).encode() for n in range(50)]


async def test_a_batch_again_is_acknowledged_and_its_duplicates_dropped(
    nc: NATS, publisher: Batches
) -> None:
    """What the relay does after a crash: the batch again, with the same message ids."""
    stream = await a_stream(nc)
    first = [(f"{stream}.m", str(n).encode(), {"Nats-Msg-Id": f"d{n}"}) for n in range(5)]
    await asyncio.wait_for(batch(publisher, first), 10)
    more = [(f"{stream}.m", str(n).encode(), {"Nats-Msg-Id": f"d{n}"}) for n in range(5, 8)]
    await asyncio.wait_for(batch(publisher, first + more), 10)
    assert await stored(nc, stream) == [str(n).encode() for n in range(8)]


async def test_a_message_no_stream_takes_fails_its_batch_and_the_next_batch_starts_clean(
    nc: NATS, publisher: Batches
) -> None:
    stream = await a_stream(nc)
    failing = [
        (f"{stream}.m", b"kept", {"Nats-Msg-Id": "a"}),
        (f"nowhere{stream}.m", b"lost", {"Nats-Msg-Id": "b"}),
    ]
    with pytest.raises(APIError) as failed:
        await asyncio.wait_for(batch(publisher, failing), 10)
    # 503, no responders: no stream stores the subject (a fast batch may see the gap first)
    assert failed.value.code == 503 or "missed" in str(failed.value.description)
    publisher.reset()
    clean = [(f"{stream}.m", str(n).encode(), {"Nats-Msg-Id": f"c{n}"}) for n in range(3)]
    await asyncio.wait_for(batch(publisher, clean), 10)
    assert await stored(nc, stream) == [b"kept", b"0", b"1", b"2"]


async def test_a_stream_that_is_not_the_expected_one_fails_the_batch(
    nc: NATS, publisher: Batches
) -> None:
    stream = await a_stream(nc)
    headers = {"Nats-Msg-Id": "x", "Nats-Expected-Stream": "SOMEWHERE_ELSE"}
    with pytest.raises(APIError) as failed:
        await asyncio.wait_for(batch(publisher, [(f"{stream}.m", b"x", headers)]), 10)
    assert failed.value.err_code == 10060  # expected stream does not match
    assert await stored(nc, stream) == []


async def test_a_failure_ends_a_wait_for_acknowledgements_that_will_not_come(
    nc: NATS, publisher: Batches
) -> None:
    silent = f"silent{uuid.uuid4().hex[:10]}"
    listener = await nc.subscribe(silent)  # takes the message, never acknowledges it
    try:
        waiting = asyncio.ensure_future(batch(publisher, [(silent, b"x", {"Nats-Msg-Id": "s"})]))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        publisher.fail(ConnectionError("the NATS connection dropped"))
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(waiting, 10)
        # Raised once: the next batch is not failed by it.
        stream = await a_stream(nc)
        publisher.reset()
        await asyncio.wait_for(batch(publisher, [(f"{stream}.m", b"y", {"Nats-Msg-Id": "y"})]), 10)
        assert await stored(nc, stream) == [b"y"]
    finally:
        await listener.unsubscribe()


async def test_a_fast_batch_with_a_gap_stores_what_came_before_it_and_fails(nc: NATS) -> None:
    """A message the server never saw (lost on the way): with gaps failing the batch, nothing
    after it is stored, so the relay's second try keeps the stream in order."""
    publisher = FastBatchPublisher(nc, flow=2)
    await publisher.open()
    try:
        stream = await a_stream(nc)
        for n in range(3):
            await publisher.publish(f"{stream}.m", str(n).encode(), {"Nats-Msg-Id": f"g{n}"})
        publisher._sent += 1  # message 4 is lost
        with pytest.raises(APIError) as failed:
            await asyncio.wait_for(
                batch(publisher, [(f"{stream}.m", b"5", {"Nats-Msg-Id": "g5"})]), 10
            )
        assert "missed" in str(failed.value.description)
        assert await stored(nc, stream) == [b"0", b"1", b"2"]
    finally:
        await publisher.close()


async def test_a_stream_without_fast_batches_refuses_the_first_message(nc: NATS) -> None:
    publisher = FastBatchPublisher(nc)
    await publisher.open()
    try:
        name = f"P{uuid.uuid4().hex[:10]}"
        await nc.jetstream().add_stream(name=name, subjects=[f"{name}.>"])
        with pytest.raises(APIError) as failed:
            await asyncio.wait_for(
                batch(publisher, [(f"{name}.m", b"x", {"Nats-Msg-Id": "r"})]), 10
            )
        assert failed.value.err_code == 10205  # batch publish not enabled on the stream
        assert await stored(nc, name) == []
    finally:
        await publisher.close()


async def test_a_server_storing_a_fast_batch_message_as_a_plain_publish_is_told_apart(
    nc: NATS,
) -> None:
    """A server before 2.14 takes the first message of a fast batch as a plain publish and
    answers a PubAck without a batch: the relay must know to publish one ack per message."""
    subject = f"old{uuid.uuid4().hex[:10]}"

    async def old_server(msg: Msg) -> None:
        await nc.publish(msg.reply, b'{"stream":"OLD","seq":1}')

    responder = await nc.subscribe(subject, cb=old_server)
    publisher = FastBatchPublisher(nc)
    await publisher.open()
    try:
        with pytest.raises(FastIngestRefused):
            await asyncio.wait_for(batch(publisher, [(subject, b"x", {"Nats-Msg-Id": "o"})]), 10)
    finally:
        await publisher.close()
        await responder.unsubscribe()


async def test_a_fast_batch_nobody_answers_is_given_up(nc: NATS) -> None:
    """A subject a plain subscriber takes (no stream): no answer comes, and the relay is not
    left waiting on its first message for ever."""
    silent = f"silent{uuid.uuid4().hex[:10]}"
    listener = await nc.subscribe(silent)
    publisher = FastBatchPublisher(nc, ping_after=0.1, silence=0.5)
    await publisher.open()
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batch(publisher, [(silent, b"x", {"Nats-Msg-Id": "q"})]), 10)
        stream = await a_stream(nc)
        await asyncio.wait_for(batch(publisher, [(f"{stream}.m", b"y", {"Nats-Msg-Id": "y"})]), 10)
        assert await stored(nc, stream) == [b"y"]
    finally:
        await publisher.close()
        await listener.unsubscribe()
