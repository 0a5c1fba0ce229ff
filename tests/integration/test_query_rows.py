"""A service's query-table rows are written in one statement per table (their values carried
as JSON): every column type the services use reads back as written, and a key given twice in
one transaction keeps what writing the rows one after the other kept."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from c360_platform.pgstore import EventRecorder, Factory, ensure_schema, postgres_env
from c360_platform.store import (
    ROW_TABLE,
    AllOf,
    In,
    Ne,
    QueryTable,
    RowQuery,
    Searchable,
    holds,
)

pytestmark = pytest.mark.integration

ITEMS = QueryTable(
    name="items",
    columns=(
        ("item_id", "uuid"),
        ("title", "text NOT NULL"),
        ("tags", "text[] NOT NULL DEFAULT '{}'"),
        ("cost", "numeric NOT NULL"),
        ("due_at", "timestamptz"),
        ("done", "boolean NOT NULL DEFAULT false"),
        ("secret", "bytea"),
        ("search", "tsvector NOT NULL"),
    ),
)
FIRST_WINS = QueryTable(
    name="names", columns=(("name", "text"), ("key", "bytea NOT NULL")), write_once=True
)


def test_rows_of_every_column_type_and_a_key_given_twice(database_url: str) -> None:
    ensure_schema(database_url, "query_rows")
    factory = Factory(postgres_env(database_url, "query_rows", pool_size=1))
    recorder = factory.application_recorder()
    assert isinstance(recorder, EventRecorder)
    recorder.add_query_table(ITEMS)
    recorder.add_query_table(FIRST_WINS)
    one, two = uuid4(), uuid4()
    due = datetime(2026, 12, 4, 17, 30, 15, 123456, tzinfo=UTC)

    def item(item_id: object, title: str, **more: object) -> dict[str, object]:
        row = {
            "item_id": item_id,
            "title": title,
            "tags": ["a", "b c", 'd"e'],
            "cost": Decimal("12.30"),
            "due_at": due,
            "done": False,
            "secret": b"\x00\xffkey",
            "search": Searchable("simple", f"{title} Ünïcode"),
        }
        return {**row, **more}

    try:
        with recorder.datastore.transaction(commit=True) as curs:
            recorder._upsert_rows(
                curs,
                [
                    item(one, "first"),
                    item(two, "other", due_at=None, tags=[], done=True, secret=None),
                    item(one, "second"),  # the same key again: the last row is kept
                    {ROW_TABLE: "names", "name": "n", "key": b"kept"},
                    {ROW_TABLE: "names", "name": "n", "key": b"ignored"},  # written once
                ],
            )
        with recorder.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT item_id, title, tags, cost, due_at, done, secret,"
                " search @@ to_tsquery('simple', 'ünïcode') AS found"
                " FROM query_rows.items ORDER BY title"
            )
            rows = curs.fetchall()
            curs.execute("SELECT key FROM query_rows.names")
            names = curs.fetchall()
    finally:
        factory.close()
    assert [r["title"] for r in rows] == ["other", "second"]
    other, second = rows
    assert second["item_id"] == one
    assert second["tags"] == ["a", "b c", 'd"e']
    assert second["cost"] == Decimal("12.30")
    assert second["due_at"] == due
    assert second["done"] is False
    assert bytes(second["secret"]) == b"\x00\xffkey"
    assert second["found"] is True
    assert other["due_at"] is None
    assert other["tags"] == []
    assert other["secret"] is None
    assert other["done"] is True
    assert [bytes(r["key"]) for r in names] == [b"kept"]


def test_in_selects_the_rows_whose_column_is_one_of_the_values(database_url: str) -> None:
    """`In` in PostgreSQL (`= ANY` of the column's type) and in memory (`holds`) alike; no
    values select nothing; an array column is refused (Overlaps is for those)."""
    ensure_schema(database_url, "query_in")
    factory = Factory(postgres_env(database_url, "query_in", pool_size=1))
    recorder = factory.application_recorder()
    assert isinstance(recorder, EventRecorder)
    recorder.add_query_table(ITEMS)
    ids = [uuid4() for _ in range(4)]
    rows: list[dict[str, Any]] = [
        {
            "item_id": i,
            "title": f"t{n}",
            "tags": [],
            "cost": Decimal(n),
            "due_at": None,
            "done": False,
            "secret": None,
            "search": Searchable("simple", ""),
        }
        for n, i in enumerate(ids)
    ]
    try:
        with recorder.datastore.transaction(commit=True) as curs:
            recorder._upsert_rows(curs, rows)
        for wanted in ([ids[1], ids[3], uuid4()], [ids[0]], []):
            query = RowQuery(AllOf((In("item_id", wanted), Ne("title", "t3"))))
            found = sorted(r["item_id"] for r in recorder.select(query))
            expected = sorted(i for i in wanted if i in ids and i != ids[3])
            assert found == expected
            kept = [r["item_id"] for r in rows if holds(query.condition, r)]
            assert sorted(kept) == expected
        with pytest.raises(ValueError, match="array column"):
            recorder.select(RowQuery(In("tags", ["a"])))
    finally:
        factory.close()
