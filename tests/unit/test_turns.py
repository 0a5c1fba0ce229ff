"""Long work in turns (`c360_platform.turns`): the same results, the loop given up only when a
slice is over, and, when it is, what the loop's I/O woke meanwhile runs before the work goes
on (on asyncio's loop and on uvloop, the services' loop)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import uvloop

from c360_platform.turns import Turns

T = TypeVar("T")
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def run(loop_name: str, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        return runner.run(work())


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_map_makes_every_item_in_order_and_gives_the_loop_up_only_when_due(
    loop_name: str,
) -> None:
    async def work() -> tuple[list[int], int, list[int], int, list[str]]:
        seen: list[str] = []

        def make(n: int) -> int:
            seen.append(f"item {n}")
            return n * n

        # A slice that never ends: one go, nothing else runs between the items.
        whole = Turns(slice_s=3600.0)
        asyncio.get_running_loop().call_soon(seen.append, "other")
        made_whole = await whole.map(make, range(5))
        await asyncio.sleep(0)
        # A slice that is always over: the loop is given up between every two items.
        every = Turns(slice_s=0.0)
        asyncio.get_running_loop().call_soon(seen.append, "other")
        made_every = await every.map(make, range(3))
        return made_whole, whole.given, made_every, every.given, seen

    made_whole, given_whole, made_every, given_every, seen = run(loop_name, work)
    assert made_whole == [0, 1, 4, 9, 16]
    assert given_whole == 0
    assert made_every == [0, 1, 4]
    assert given_every == 2  # between items, not before the first
    # The first map ran through; the callback scheduled before the second ran in its first turn.
    assert seen == [
        *(f"item {n}" for n in range(5)),
        "other",
        "item 0",
        "other",
        "item 1",
        "item 2",
    ]


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_turn_lets_what_io_woke_run_before_the_work_goes_on(loop_name: str) -> None:
    """A request's bytes that arrive while the work runs are read, and the call they wake
    takes its step, before the work's next slice (not after it, as `sleep(0)` would have it)."""

    async def work() -> list[str]:
        loop = asyncio.get_running_loop()
        order: list[str] = []
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        arrived = loop.create_future()

        def readable() -> None:
            ours.recv(16)
            loop.remove_reader(ours)
            arrived.set_result(None)

        async def call() -> None:  # another call, waiting for its bytes
            await arrived
            order.append("call's step")

        waiting = asyncio.create_task(call())
        await asyncio.sleep(0)  # it waits now
        loop.add_reader(ours, readable)
        turns = Turns(slice_s=0.0)
        try:
            # The work's first slice: meanwhile the call's bytes arrive.
            theirs.send(b"request")
            time.sleep(0.01)  # noqa: ASYNC251 (the work holding the loop, as CPU work does)
            order.append("work, slice 1")
            await turns.give()
            order.append("work, slice 2")
            await waiting
        finally:
            ours.close()
            theirs.close()
        return order

    assert run(loop_name, work) == ["work, slice 1", "call's step", "work, slice 2"]
