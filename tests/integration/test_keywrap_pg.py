"""Data keys wrapped under a KEK on PostgreSQL (`keywrap`): keys a release stored before a
KEK was set are wrapped as the service starts with one, the table then holds no key as it
is, a new KEK wraps them all again at the next start, and a start without the KEK they are
wrapped under is refused before it serves anything."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from c360_customer.application import CustomerApplication
from c360_platform import keywrap
from c360_platform.keywrap import KeyWrap, KeyWrapError
from c360_platform.pgstore import ensure_schema, postgres_env
from tests.unit.support import command_ctx

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def fresh_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(keywrap.ENV, raising=False)
    keywrap.from_env.cache_clear()
    yield
    keywrap.from_env.cache_clear()


def use(monkeypatch: pytest.MonkeyPatch, *keks: bytes) -> None:
    monkeypatch.setenv(keywrap.ENV, ",".join(base64.b64encode(k).decode() for k in keks))
    keywrap.from_env.cache_clear()


def stored(url: str, schema: str) -> list[bytes]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT key FROM {}.pii_keys UNION ALL SELECT key FROM {}.index_keys").format(
                sql.Identifier(schema), sql.Identifier(schema)
            )
        ).fetchall()
    return [bytes(r[0]) for r in rows]


def test_keys_stored_before_a_kek_are_wrapped_at_start_and_again_under_a_new_one(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = f"kek_{uuid.uuid4().hex[:8]}"
    ensure_schema(database_url, schema)
    env = postgres_env(database_url, schema, pool_size=1)
    first = CustomerApplication(env=env)
    ids = [
        first.register(
            command_ctx(f"r{i}"), kind="person", display_name=f"Ada {i}",
            emails=[f"ada{i}@example.com"], phones=[], addresses=[],
        ).aggregate_id
        for i in range(3)
    ]  # fmt: skip
    raw = stored(database_url, schema)
    assert len(raw) == 4  # three customers, the directory's index
    assert all(len(k) == 32 for k in raw)
    first.close()

    old, new = os.urandom(32), os.urandom(32)
    use(monkeypatch, old)
    second = CustomerApplication(env=env)
    wrapped = stored(database_url, schema)
    assert all(k.startswith(KeyWrap([old]).prefix) for k in wrapped)
    assert not any(r in k for r in raw for k in wrapped)
    assert [second.get_customer(i).display_name for i in ids] == ["Ada 0", "Ada 1", "Ada 2"]
    fourth = second.register(
        command_ctx("r3"), kind="person", display_name="Bob", emails=[], phones=[], addresses=[]
    ).aggregate_id
    second.close()

    use(monkeypatch, new, old)
    third = CustomerApplication(env=env)
    assert all(k.startswith(KeyWrap([new]).prefix) for k in stored(database_url, schema))
    third.close()
    use(monkeypatch, new)
    fourth_app = CustomerApplication(env=env)
    assert fourth_app.get_customer(fourth).display_name == "Bob"
    fourth_app.close()

    use(monkeypatch, old)
    with pytest.raises(KeyWrapError, match="does not hold"):
        CustomerApplication(env=env)
