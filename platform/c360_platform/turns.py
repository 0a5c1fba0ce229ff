"""Long work on the event loop in turns, so that the calls beside it keep being served.

A service answers its calls on one event loop. A call that makes a large reply in Python (the
timeline's pages of changed profiles, which marketing reads whole at its start and each hour)
holds the loop for as long as that takes, and every other call's next step waits behind all
of it. `Turns` lets such work give the loop up every SLICE_S seconds, until the loop has
polled for I/O once: the calls whose requests or database answers arrived meanwhile take
their step first, then the work goes on. A thread would not do: the work holds the
interpreter's lock there too, and each step of the other calls then waits up to the switch
interval (5 ms) for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

SLICE_S = 0.0005
"""How long work runs before it gives the loop up (a step of another call waits about this
long behind it at most)."""
AFTER_IO_S = 1e-6
"""What the work sleeps when it gives the loop up: a timer, not `asyncio.sleep(0)`. A loop
runs its due timers after the callbacks of the I/O it has just polled (uvloop: libuv's timers
phase; asyncio: `_run_once`), so the calls whose bytes arrived go first; `sleep(0)` would
resume the work ahead of them, and each of their steps would wait a whole slice."""


class Turns:
    """Gives the event loop up once SLICE_S (or `slice_s`) has passed since it last did."""

    def __init__(self, slice_s: float = SLICE_S) -> None:
        self.slice_s = slice_s
        self.since = time.perf_counter()
        self.given = 0
        """How many times it gave the loop up."""

    def due(self) -> bool:
        """Whether this slice is over (then `give`)."""
        return time.perf_counter() - self.since >= self.slice_s

    async def give(self) -> None:
        """Let the loop poll for I/O and run what that woke, then go on."""
        self.given += 1
        await asyncio.sleep(AFTER_IO_S)
        self.since = time.perf_counter()

    async def map(self, make: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`[make(item) for item in items]`, giving the loop up between items when due."""
        made: list[R] = []
        for item in items:
            if made and self.due():
                await self.give()
            made.append(make(item))
        return made
