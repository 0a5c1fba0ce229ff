"""Connection pools that tell a busy pool from a server that is down.

A checkout waits at most about a second (the pools' `timeout`). When it times out, one direct
connection attempt says why: if PostgreSQL answers, the pool was only busy and the checkout
waits on (up to `BUSY_PATIENCE` seconds in all); if it does not, the call fails at once with
the pool's error, which the gRPC layer answers as UNAVAILABLE. So a command fails fast while
PostgreSQL is down, and a burst of load is never mistaken for an outage.
"""

from __future__ import annotations

import select
import time
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

CHECKOUT_TIMEOUT = 1.0
BUSY_PATIENCE = 15.0
PROBE_TIMEOUT = 1  # seconds; libpq's connect_timeout takes whole seconds


def _probe_args(conninfo: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    args = {k: v for k, v in kwargs.items() if k not in ("row_factory", "autocommit")}
    return {"conninfo": conninfo, **args, "connect_timeout": PROBE_TIMEOUT}


def _target(pool: ConnectionPool[Any] | AsyncConnectionPool[Any]) -> dict[str, Any] | None:
    """How to reach the pool's server directly; None if the pool computes it by a callable."""
    conninfo, kwargs = pool.conninfo, pool.kwargs or {}
    if not isinstance(conninfo, str) or not isinstance(kwargs, dict):
        return None
    return _probe_args(conninfo, kwargs)


def server_answers(pool: ConnectionPool[Any]) -> bool:
    """Whether a new connection to the pool's server succeeds now."""
    target = _target(pool)
    if target is None:
        return False
    try:
        with psycopg.connect(**target):
            return True
    except psycopg.Error:
        return False


async def server_answers_async(pool: AsyncConnectionPool[Any]) -> bool:
    target = _target(pool)
    if target is None:
        return False
    try:
        conn = await psycopg.AsyncConnection.connect(**target)
    except psycopg.Error:
        return False
    await conn.close()
    return True


def disturbed(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle connection's server spoke unasked. An idle connection has nothing to
    read: the server writes only when asked, so a socket with something to read holds the
    end of the stream (the server went away) or a notice that it is shutting down."""
    try:
        return bool(select.select([conn.fileno()], [], [], 0)[0])
    except (OSError, ValueError, psycopg.Error):
        return True  # closed already


def check_if_disturbed(conn: psycopg.Connection[Any]) -> None:
    """A pool's check on checkout without a round trip for a connection that is well: the
    check query is sent only to a `disturbed` connection, and fails if it is broken, so that
    the pool replaces it rather than hand it to a query."""
    if disturbed(conn):
        ConnectionPool.check_connection(conn)


def make_patient(pool: ConnectionPool[Any]) -> None:
    """Give a (library-made) pool the behaviour above, and the check on checkout of
    `check_if_disturbed` where it checked with a query (the library's pre-ping); idempotent."""
    if getattr(pool, "_c360_patient", False):
        return
    if getattr(pool, "_check", None) is not None:
        pool._check = check_if_disturbed  # psycopg_pool's own attribute: set at construction
    getconn = pool.getconn

    def patient_getconn(timeout: float | None = None) -> Any:
        give_up = time.monotonic() + BUSY_PATIENCE
        while True:
            try:
                return getconn(timeout)
            except PoolTimeout:
                if time.monotonic() >= give_up or not server_answers(pool):
                    raise

    setattr(pool, "getconn", patient_getconn)  # noqa: B010 (an instance's method, replaced)
    setattr(pool, "_c360_patient", True)  # noqa: B010


class PatientAsyncPool(AsyncConnectionPool[Any]):
    """An asyncio pool with the behaviour above (`timeout` defaults to CHECKOUT_TIMEOUT)."""

    async def getconn(self, timeout: float | None = None) -> Any:
        give_up = time.monotonic() + BUSY_PATIENCE
        while True:
            try:
                return await super().getconn(timeout)
            except PoolTimeout:
                if time.monotonic() >= give_up or not await server_answers_async(self):
                    raise

    @staticmethod
    async def check_if_disturbed(conn: psycopg.AsyncConnection[Any]) -> None:
        """`check_if_disturbed` for an asyncio pool: a `select()` call per checkout, a query
        only for a `disturbed` connection (where a check with a query cost a round trip)."""
        if disturbed(conn):
            await AsyncConnectionPool.check_connection(conn)
