"""Batches published to JetStream by `BatchPublisher`, against a real nats-server: a batch is
acknowledged only when the stream stored every message of it, and an error for any one of
them fails the batch."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.js.errors import APIError

from c360_platform.publish import BatchPublisher

pytestmark = pytest.mark.integration


@pytest.fixture
def nc(session_nc: NATS) -> NATS:
    return session_nc


@pytest_asyncio.fixture
async def publisher(nc: NATS) -> AsyncIterator[BatchPublisher]:
    publisher = BatchPublisher(nc, window=8)
    await publisher.open()
    yield publisher
    await publisher.close()


async def a_stream(nc: NATS) -> str:
    name = f"P{uuid.uuid4().hex[:10]}"
    await nc.jetstream().add_stream(name=name, subjects=[f"{name}.>"])
    return name


async def stored(nc: NATS, stream: str) -> list[bytes]:
    js = nc.jetstream()
    info = await js.stream_info(stream)
    out = []
    for seq in range(1, int(info.state.last_seq) + 1):
        out.append((await js.get_msg(stream, seq)).data or b"")
    return out


async def test_a_batch_is_acknowledged_when_the_stream_stored_all_of_it(
    nc: NATS, publisher: BatchPublisher
) -> None:
    stream = await a_stream(nc)
    most = 0
    for n in range(50):
        headers = {"Nats-Msg-Id": f"m{n}", "Nats-Expected-Stream": stream}
        await publisher.publish(f"{stream}.m", str(n).encode(), headers=headers)
        most = max(most, publisher.unacknowledged)
    await asyncio.wait_for(publisher.acknowledged(), 10)
    assert publisher.unacknowledged == 0
    assert 1 <= most <= 8  # the window
    assert await stored(nc, stream) == [str(n).encode() for n in range(50)]


async def test_a_message_no_stream_takes_fails_its_batch_and_the_next_batch_starts_clean(
    nc: NATS, publisher: BatchPublisher
) -> None:
    stream = await a_stream(nc)
    await publisher.publish(f"{stream}.m", b"kept", headers={"Nats-Msg-Id": "a"})
    await publisher.publish(f"nowhere{stream}.m", b"lost", headers={"Nats-Msg-Id": "b"})
    with pytest.raises(APIError) as failed:
        await asyncio.wait_for(publisher.acknowledged(), 10)
    assert failed.value.code == 503  # no responders: no stream stores the subject
    publisher.reset()
    for n in range(3):
        await publisher.publish(f"{stream}.m", str(n).encode(), headers={"Nats-Msg-Id": f"c{n}"})
    await asyncio.wait_for(publisher.acknowledged(), 10)
    assert await stored(nc, stream) == [b"kept", b"0", b"1", b"2"]


async def test_a_stream_that_is_not_the_expected_one_fails_the_batch(
    nc: NATS, publisher: BatchPublisher
) -> None:
    stream = await a_stream(nc)
    headers = {"Nats-Msg-Id": "x", "Nats-Expected-Stream": "SOMEWHERE_ELSE"}
    await publisher.publish(f"{stream}.m", b"x", headers=headers)
    with pytest.raises(APIError) as failed:
        await asyncio.wait_for(publisher.acknowledged(), 10)
    assert failed.value.err_code == 10060  # expected stream does not match
    assert await stored(nc, stream) == []


async def test_a_failure_ends_a_wait_for_acknowledgements_that_will_not_come(
    nc: NATS, publisher: BatchPublisher
) -> None:
    silent = f"silent{uuid.uuid4().hex[:10]}"
    listener = await nc.subscribe(silent)  # takes the message, never acknowledges it
    try:
        await publisher.publish(silent, b"x", headers={"Nats-Msg-Id": "s"})
        waiting = asyncio.ensure_future(publisher.acknowledged())
        await asyncio.sleep(0.3)
        assert not waiting.done()
        publisher.fail(ConnectionError("the NATS connection dropped"))
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(waiting, 10)
        # Raised once: the next batch is not failed by it.
        stream = await a_stream(nc)
        publisher.reset()
        await publisher.publish(f"{stream}.m", b"y", headers={"Nats-Msg-Id": "y"})
        await asyncio.wait_for(publisher.acknowledged(), 10)
        assert await stored(nc, stream) == [b"y"]
    finally:
        await listener.unsubscribe()
