"""An idle event store holds C360_PG_POOL_MIN connections, not the library's ten, and says
which process it is in pg_stat_activity (PGAPPNAME, as `c360-service` sets it)."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from c360_customer.application import CustomerApplication
from c360_platform.pgstore import ensure_schema, postgres_env


def _connections(database_url: str, name: str) -> int:
    with psycopg.connect(database_url, application_name="c360 pool probe") as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def _settled(database_url: str, name: str, want: int) -> int:
    """The count once the pool has opened what it keeps (it opens them in the background)."""
    deadline = time.monotonic() + 10
    seen = _connections(database_url, name)
    while seen < want and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = _connections(database_url, name)
    time.sleep(0.3)  # and opens no more
    return _connections(database_url, name)


def test_an_idle_store_keeps_the_minimum(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"c360 pool test {uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PGAPPNAME", name)
    monkeypatch.delenv("C360_PG_POOL_MIN", raising=False)
    monkeypatch.delenv("C360_PG_POOL_MAX", raising=False)
    ensure_schema(database_url, "customer")
    app = CustomerApplication(env=postgres_env(database_url, "customer"))
    try:
        # The minimum, and the one the pool adds when the store's start-up (its tables'
        # digest under an advisory lock) holds two at once; the library's 10 before.
        assert 2 <= _settled(database_url, name, 2) <= 3
    finally:
        app.close()


def test_a_store_grows_to_the_maximum_under_load(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"c360 pool test {uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PGAPPNAME", name)
    monkeypatch.setenv("C360_PG_POOL_MIN", "1")
    monkeypatch.setenv("C360_PG_POOL_MAX", "3")
    ensure_schema(database_url, "customer")
    app = CustomerApplication(env=postgres_env(database_url, "customer"))
    try:
        assert 1 <= _settled(database_url, name, 1) <= 2
        pool = app.recorder.datastore.pool  # type: ignore[attr-defined]
        held = [pool.getconn(timeout=5) for _ in range(3)]
        assert _connections(database_url, name) == 3
        with pytest.raises(PoolTimeout):
            pool.getconn(timeout=0.2)
        for conn in held:
            pool.putconn(conn)
    finally:
        app.close()
