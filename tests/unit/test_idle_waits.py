"""Idle waits with a timeout end when their task is cancelled, also when what they wait for
arrives in the same turn of the event loop (Python 3.11's `asyncio.wait_for` then returned,
and the cancellation was lost)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from c360_platform.leader import wait_at_most


async def test_a_wait_cancelled_as_its_future_is_set_ends_cancelled() -> None:
    wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(wait_at_most(wake, 30))
    await asyncio.sleep(0)  # the task waits on the future now
    wake.set_result(None)  # a reply comes ...
    waiting.cancel()  # ... as the wait is cancelled (a feed told to pause)
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert waiting.cancelled()


async def test_a_wait_cancelled_as_its_event_is_set_ends_cancelled() -> None:
    stop = asyncio.Event()
    waiting = asyncio.create_task(wait_at_most(stop.wait(), 30))
    await asyncio.sleep(0)
    stop.set()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_wait_says_whether_it_finished() -> None:
    wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    assert not await wait_at_most(wake, 0.01)
    assert wake.cancelled()  # what timed out is cancelled, as wait_for did
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    assert await wait_at_most(done, 0.01)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, stop.set)
    assert await wait_at_most(stop.wait(), 5)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for keeps it from 3.12 on")
async def test_python_3_11_wait_for_loses_such_a_cancellation() -> None:
    """Why the helper exists: where this fails, `asyncio.wait_for` was fixed (3.12+)."""
    wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def wait_for_based() -> str:
        await asyncio.wait_for(wake, 30)
        return "returned"

    waiting = asyncio.create_task(wait_for_based())
    await asyncio.sleep(0)
    wake.set_result(None)
    waiting.cancel()
    assert await waiting == "returned"


async def test_a_timeout_raised_by_what_is_awaited_is_its_own() -> None:
    async def gives_up() -> None:
        raise TimeoutError("no answer from the server")

    with pytest.raises(TimeoutError, match="no answer from the server"):
        await wait_at_most(gives_up(), 5)
