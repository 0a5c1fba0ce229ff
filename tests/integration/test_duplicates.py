"""Duplicate detection over the customer directory: FindDuplicates, the report, imports and
the directory's backfill for stores from before it existed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from c360.customer.v1 import customer_service_pb2 as capi
from c360_customer.application import CustomerApplication
from c360_platform import auth
from c360_platform.pgstore import postgres_env
from c360_platform.pii import reveal
from c360_platform.store import RowQuery

from .conftest import Stack
from .helpers import register

pytestmark = pytest.mark.integration


async def _one(row: capi.ImportRow) -> AsyncIterator[capi.ImportCustomersRequest]:
    yield capi.ImportCustomersRequest(rows=[row])


def _cli(home: Path, port: int, token: str, *args: str) -> Any:
    # A home of its own: the default ./.c360 of the checkout may be a running stack's, whose
    # TLS settings the CLI would take to this plain port (a handshake error).
    command = [sys.executable, "-m", "c360_cli.main", "--home", str(home)]
    command += ["--addr", f"customer=127.0.0.1:{port}"]
    done = subprocess.run(
        [*command, "--token", token, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_cli_lists_duplicates_of_one_customer_and_the_report(
    stack: Stack, tmp_path: Path
) -> None:
    a = (await register(stack.customer, "Jānis Žirnovskis", "Janis@Example.LV")).result
    b = (await register(stack.customer, "Janis Zhirnovskis", "janis@example.lv")).result
    port = stack.hosts["customer"].bound_port
    agent = stack.token(auth.Role.AGENT)
    one, report = await asyncio.gather(
        asyncio.to_thread(
            _cli, tmp_path, port, agent, "customer", "duplicates", a.aggregate_id, "--json"
        ),
        asyncio.to_thread(_cli, tmp_path, port, agent, "customer", "duplicates", "--json"),
    )
    assert one["customer_id"] == a.aggregate_id
    assert [(c["customer_id"], c["reasons"]) for c in one["candidates"]] == [
        (b.aggregate_id, ["same e-mail janis@example.lv", "same name when transliterated"])
    ]
    low, high = sorted((a.aggregate_id, b.aggregate_id))
    assert [(p["customer_id"], p["duplicate_id"]) for p in report["pairs"]] == [(low, high)]
    assert report["pairs"][0]["score"] == one["candidates"][0]["score"]


async def test_a_store_from_before_the_directory_gets_its_rows_on_start(stack: Stack) -> None:
    await register(stack.customer, "Jānis Žirnovskis", "janis@example.lv")
    await register(stack.customer, "Ada Lovelace", "ada@example.com")
    with psycopg.connect(stack.postgres_url, autocommit=True) as conn:
        conn.execute("TRUNCATE customer.directory")
    app = CustomerApplication(env=postgres_env(stack.postgres_url, "customer"))
    try:
        rows = app.rows(RowQuery(order=("customer_id",), limit=10))
        # The rows hold the names sealed (and blind indexes), revealed with their keys.
        assert not any("Ada" in r["display_name"] for r in rows)
        assert sorted(_name(app, r) for r in rows) == ["Ada Lovelace", "Jānis Žirnovskis"]
        assert app.backfill_query_table() == 0  # not empty any more: nothing to do
    finally:
        app.close()


async def test_a_directory_from_an_older_version_gains_new_columns_on_start(
    stack: Stack,
) -> None:
    await register(stack.customer, "Ada Lovelace", "ada@example.com")
    with psycopg.connect(stack.postgres_url, autocommit=True) as conn:
        # The table and its recorded definition as an older version left them.
        conn.execute("ALTER TABLE customer.directory DROP COLUMN merged")
        conn.execute(
            "UPDATE customer.c360_schema SET digest = 'older' WHERE name = %s", ("query:directory",)
        )
    app = CustomerApplication(env=postgres_env(stack.postgres_url, "customer"))
    try:
        rows = app.rows(RowQuery(order=("customer_id",), limit=10))
        assert [(_name(app, r), r["merged"]) for r in rows] == [("Ada Lovelace", False)]
    finally:
        app.close()


def _name(app: CustomerApplication, row: dict[str, Any]) -> str:
    return reveal(row["display_name"], app.keyring.keys([row["customer_id"]]))
