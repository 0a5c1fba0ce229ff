"""The read pools' check on checkout: a connection the server dropped is found and replaced
before a query gets it; one that is well is handed out without a round trip."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from c360_platform.pgpool import PatientAsyncPool, make_patient

pytestmark = pytest.mark.integration

Check = Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]] | None


async def _backend_of_a_dropped_connection(database_url: str, check: Check) -> tuple[int, Any]:
    """Check a connection out and back in, have the server end its session, then query
    through the pool again: (the dropped backend's pid, the second query's outcome)."""
    pool = PatientAsyncPool(
        database_url, min_size=1, max_size=1, open=False, check=check, kwargs={"autocommit": True}
    )
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            first = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
        assert first is not None
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s, 5000)", (first[0],))
        try:
            async with pool.connection() as conn:
                outcome: Any = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
        except psycopg.OperationalError as exc:
            outcome = exc
        return first[0], outcome
    finally:
        await pool.close()


async def test_a_connection_the_server_ended_is_replaced_before_a_query_gets_it(
    database_url: str,
) -> None:
    dropped, outcome = await _backend_of_a_dropped_connection(
        database_url, PatientAsyncPool.check_if_disturbed
    )
    assert isinstance(outcome, tuple), outcome
    assert outcome[0] != dropped  # a new session answered


async def test_without_the_check_the_query_gets_the_dropped_connection(
    database_url: str,
) -> None:
    # The control: the same sequence fails when nothing checks on checkout.
    _, outcome = await _backend_of_a_dropped_connection(database_url, None)
    assert isinstance(outcome, psycopg.OperationalError)


async def test_a_connection_that_is_well_is_not_asked_anything(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The round trip of the check is psycopg_pool's `check_connection`: count its calls.
    checked: list[object] = []
    original = AsyncConnectionPool.check_connection

    async def counting(conn: psycopg.AsyncConnection[Any]) -> None:
        checked.append(conn)
        await original(conn)

    monkeypatch.setattr(AsyncConnectionPool, "check_connection", staticmethod(counting))
    pool = PatientAsyncPool(
        database_url,
        min_size=1,
        max_size=1,
        open=False,
        check=PatientAsyncPool.check_if_disturbed,
        kwargs={"autocommit": True},
    )
    await pool.open(wait=True)
    try:
        for _ in range(20):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
    finally:
        await pool.close()
    assert checked == []


def test_a_services_store_pool_replaces_a_dropped_connection_without_asking_well_ones(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The library's pool with its pre-ping (a query per checkout), made patient: the check
    # asks only a connection whose server spoke unasked.
    checked: list[object] = []
    original = ConnectionPool.check_connection

    def counting(conn: psycopg.Connection[Any]) -> None:
        checked.append(conn)
        original(conn)

    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(counting))
    pool = ConnectionPool(
        database_url,
        min_size=1,
        max_size=1,
        open=False,
        check=ConnectionPool.check_connection,
        kwargs={"autocommit": True},
    )
    make_patient(pool)
    pool.open(wait=True)
    try:
        for _ in range(20):
            with pool.connection() as conn:
                first = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert checked == []
        assert first is not None
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (first[0],))
        with pool.connection() as conn:
            again = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert again is not None
        assert again[0] != first[0]
        assert len(checked) == 1  # the dropped one, found and replaced
    finally:
        pool.close()
