"""One active worker among replicas: stand by for a PostgreSQL advisory lock, then run.

The relay of each service and the timeline's projector share this loop: `lead()` waits
until the lock is ours, runs the work until it returns (stop, or the lock's session lost),
and after a failure closes what the work opened and tries again a second later. A standby
takes over within a poll of the holder's death (its session ends, and with it the lock).

Beside it, the idle waits of the platform's loops (theirs and the others'): `wait_at_most`,
`sleep_or_stop`, `unless_stopped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from c360_platform.locks import AdvisoryLock

_log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_SECONDS = 1.0


async def wait_at_most(waiting: Awaitable[object], seconds: float) -> bool:
    """Await `waiting` for at most `seconds` (cancelled then); whether it finished.

    Every idle wait with a timeout goes through this, not `asyncio.wait_for`: Python 3.11's
    returns the result when the awaited thing finishes in the same turn of the loop as a
    cancellation of the waiting task, and the cancellation is lost (CPython gh-86296, fixed
    in 3.12). A loop around such a wait then goes on waiting: a feed told to pause for a
    rebuild went on with its fetch, for as long as its idle wait, with the mutex the rebuild
    needed."""
    scope = asyncio.timeout(seconds)
    try:
        async with scope:
            await waiting
    except TimeoutError:
        if not scope.expired():
            raise  # raised by what was awaited, not by the wait's end
        return False
    return True


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake as soon as `stop` is set."""
    await wait_at_most(stop.wait(), seconds)


async def unless_stopped(
    stop: asyncio.Event, waiting: Awaitable[T], *more: asyncio.Event | None
) -> T | None:
    """Await `waiting` (an idle wait: a fetch, a notification) unless `stop` (or one of
    `more`) is set first, in which case it is cancelled and None returned. Never use it
    around work in progress."""
    task = asyncio.ensure_future(waiting)
    events = [stop, *(event for event in more if event is not None)]
    stopped = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait({task, *stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in stopped:
            waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return None


async def lead(
    lock: AdvisoryLock,
    stop: asyncio.Event,
    work: Callable[[], Awaitable[None]],
    close: Callable[[], Awaitable[None]],
    *,
    name: str,
    standby_poll: float = 1.0,
) -> None:
    """Run `work` whenever the lock is ours, until `stop` is set; `close` ends each turn."""
    failing = False
    while not stop.is_set():
        try:
            if not await lock.try_acquire():
                await sleep_or_stop(stop, standby_poll)
                continue
            await work()
            failing = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The whole story once; while the failure lasts (a server down), a line a second.
            if failing:
                _log.warning("%s failed again (%s: %s); retrying", name, type(exc).__name__, exc)
            else:
                _log.exception("%s failed; retrying every %.0f s", name, RETRY_SECONDS)
            failing = True
            await close()
            await sleep_or_stop(stop, RETRY_SECONDS)
    await close()
