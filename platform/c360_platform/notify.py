"""Wake-ups on PostgreSQL NOTIFY: one LISTEN connection per process, fanned out in-process to
every call waiting for the data to change (a watch, a read-your-writes wait), so that a thousand
waiting calls cost one connection and no polling.

Waiters note `generation` before they look at the data, then `await changed(seen, timeout)`:
a NOTIFY between the look and the wait is not lost (the generation has moved on). The timeout
is a fallback: notifications sent while the connection was down are not delivered, so waiters
look again at least that often (and are all woken when the connection is re-established).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg
from psycopg import sql

_log = logging.getLogger(__name__)
RECONNECT_S = 1.0
LISTEN_SLICE_S = 0.5
CONNECT_TIMEOUT_S = 5


class Notifications:
    """LISTENs on `channel` of the database at `url` while `run` runs (a background task)."""

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self.generation = 0
        self._changed = asyncio.Event()
        self.connected = False

    def _bump(self) -> None:
        self.generation += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, seen: int, timeout: float) -> bool:
        """Wait until a notification after generation `seen`, or `timeout` seconds; whether
        one came."""
        if self.generation != seen:
            return True
        event = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return self.generation != seen

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._listen(stop)
            except (psycopg.Error, OSError) as exc:
                _log.warning("LISTEN %s lost (%s); again in %.0f s", self.channel, exc, RECONNECT_S)
            self.connected = False
            self._bump()  # whatever was missed: every waiter looks again
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RECONNECT_S)

    async def _listen(self, stop: asyncio.Event) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        )
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self.connected = True
            self._bump()  # changes before the LISTEN took effect: look again
            while not stop.is_set():
                # In slices, to see `stop`; notifications between two slices are kept.
                async for _ in conn.notifies(timeout=LISTEN_SLICE_S):
                    self._bump()
        finally:
            await conn.close()
