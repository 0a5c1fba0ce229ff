"""The processes of one service start together (C360_WORKERS): the schema and each recorder's
tables are created once, under advisory locks, however many processes create them at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from c360_platform.pgstore import Factory, ensure_schema, postgres_env

pytestmark = pytest.mark.integration

PROCESSES = 6
ROUNDS = 4


def test_recorders_created_at_once_by_many_processes(database_url: str) -> None:
    for round_ in range(ROUNDS):
        schema = f"race_{round_}"
        barrier = threading.Barrier(PROCESSES)

        def start(_: int, schema: str = schema, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            ensure_schema(database_url, schema)
            factory = Factory(postgres_env(database_url, schema, pool_size=1))
            try:
                factory.aggregate_recorder("snapshots")
                factory.application_recorder()
            finally:
                factory.close()

        with ThreadPoolExecutor(PROCESSES) as pool:
            list(pool.map(start, range(PROCESSES)))  # raises what any of them raised
        with psycopg.connect(database_url) as conn:
            tables = {
                name
                for (name,) in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
                )
            }
        assert {"stored_snapshots", "stored_events"} <= tables
