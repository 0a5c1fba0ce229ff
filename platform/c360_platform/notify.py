"""Wake-ups on PostgreSQL NOTIFY: one LISTEN connection per process, fanned out in-process to
every call waiting for the data to change (a watch, a read-your-writes wait), so that a thousand
waiting calls cost one connection and no polling.

Waiters note `generation` before they look at the data, then `await changed(seen, timeout)`:
a NOTIFY between the look and the wait is not lost (the generation has moved on). The timeout
is a fallback: notifications sent while the connection was down are not delivered, so waiters
look again at least that often (and are all woken when the connection is re-established).

A notification may name topics (its payload, `payload(topics)`), and a waiter may wait for
some topics only (`mark(topics)`, then `changed_for(topics, seen, timeout)`): a thousand
watches of a thousand customers are then not all woken, each to look at the database, by every
commit about one of them. A notification that names nothing ("") wakes every waiter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable

import psycopg
from psycopg import sql

from c360_platform.leader import wait_at_most

_log = logging.getLogger(__name__)
RECONNECT_S = 1.0
LISTEN_SLICE_S = 0.5
CONNECT_TIMEOUT_S = 5
TOPICS = "t:"
"""A payload that starts so names topics, comma-separated (possibly none)."""
MAX_TOPICS = 1500
"""More topics than fit in a NOTIFY payload (8,000 bytes) with room: named as everyone."""


def payload(topics: Iterable[str]) -> str:
    """The payload of a notification about these topics ("", everyone, if too many)."""
    named = sorted(set(topics))
    return "" if len(named) > MAX_TOPICS else TOPICS + ",".join(named)


def _topics(text: str) -> list[str] | None:
    """The topics a payload names; None if it names none in particular (wake everyone)."""
    if not text.startswith(TOPICS):
        return None
    return [t for t in text[len(TOPICS) :].split(",") if t]


class Notifications:
    """LISTENs on `channel` of the database at `url` while `run` runs (a background task)."""

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self.generation = 0
        self._changed = asyncio.Event()
        self.connected = False
        self._everyone = 0
        """Notifications that named no topic in particular (each changes every `mark`)."""
        self._counts: dict[str, int] = {}
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}
        self._all_waiting: set[asyncio.Future[None]] = set()

    def _bump(self) -> None:
        self.generation += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def deliver(self, text: str) -> None:
        """Take one notification (its payload): every `changed` waiter is woken, and the
        `changed_for` waiters of the topics it names, or all of them if it names none."""
        self._bump()
        topics = _topics(text)
        if topics is None:
            self._everyone += 1
            woken: Iterable[asyncio.Future[None]] = self._all_waiting
        else:
            for topic in topics:
                self._counts[topic] = self._counts.get(topic, 0) + 1
            woken = {f for t in topics for f in self._waiting.get(t, ())}
        for future in woken:
            if not future.done():
                future.set_result(None)

    def mark(self, topics: Collection[str]) -> int:
        """A number that moves on with every notification that names one of `topics`, or
        names none in particular: note it before looking at the data."""
        return self._everyone + sum(self._counts.get(t, 0) for t in topics)

    async def changed_for(self, topics: Collection[str], seen: int, timeout: float) -> bool:
        """Wait until a notification for `topics` after `mark(topics)` gave `seen`, or
        `timeout` seconds; whether one came."""
        if self.mark(topics) != seen:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._all_waiting.add(future)
        for topic in topics:
            self._waiting.setdefault(topic, set()).add(future)
        try:
            await wait_at_most(future, timeout)
        finally:
            self._all_waiting.discard(future)
            for topic in topics:
                waiting = self._waiting.get(topic)
                if waiting is not None:
                    waiting.discard(future)
                    if not waiting:
                        del self._waiting[topic]
        return self.mark(topics) != seen

    async def changed(self, seen: int, timeout: float) -> bool:
        """Wait until a notification after generation `seen`, or `timeout` seconds; whether
        one came."""
        if self.generation != seen:
            return True
        event = self._changed
        await wait_at_most(event.wait(), timeout)
        return self.generation != seen

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._listen(stop)
            except (psycopg.Error, OSError) as exc:
                _log.warning("LISTEN %s lost (%s); again in %.0f s", self.channel, exc, RECONNECT_S)
            self.connected = False
            self.deliver("")  # whatever was missed: every waiter looks again
            await wait_at_most(stop.wait(), RECONNECT_S)

    async def _listen(self, stop: asyncio.Event) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        )
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self.connected = True
            self.deliver("")  # changes before the LISTEN took effect: look again
            while not stop.is_set():
                # In slices, to see `stop`; notifications between two slices are kept.
                async for notice in conn.notifies(timeout=LISTEN_SLICE_S):
                    self.deliver(notice.payload)
        finally:
            await conn.close()
