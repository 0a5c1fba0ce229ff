"""Leader election with PostgreSQL session advisory locks: one active relay or projector."""

from __future__ import annotations

import contextlib
import hashlib
import logging

import psycopg

_log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for a lock name."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


class AdvisoryLock:
    """A session-level advisory lock held on a connection of its own.

    The lock lives as long as the connection: if the holder dies, PostgreSQL ends the session
    and a standby's next `try_acquire()` succeeds.
    """

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self.key = lock_key(name)
        self.conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    async def try_acquire(self) -> bool:
        if self.conn is None or self.conn.closed:
            self.conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, application_name=f"c360 {self.name}"
            )
        cur = await self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
        row = await cur.fetchone()
        held = bool(row and row[0])
        if held:
            _log.info("acquired lock %s", self.name)
        return held

    async def still_held(self) -> bool:
        """False once the session is gone (and with it the lock)."""
        if self.conn is None or self.conn.closed:
            return False
        try:
            await self.conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    async def release(self) -> None:
        if self.conn is not None and not self.conn.closed:
            with contextlib.suppress(psycopg.Error):
                await self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            await self.conn.close()
        self.conn = None
