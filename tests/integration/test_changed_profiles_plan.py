"""ListChangedProfiles reads a page of profiles, not every entry after the cursor: each
profile keeps the cursor of its latest entry (`last_seq`, indexed), filled from the entries
when a read model from before it opens."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from c360_timeline.query import CHANGED_SQL
from c360_timeline.readmodel import SCHEMA, ReadModel, open_read_model

pytestmark = pytest.mark.integration

CUSTOMERS = 3_000
ENTRIES_EACH = 4


@pytest.fixture
def view(database_url: str) -> Iterator[ReadModel]:
    model = open_read_model(database_url)
    try:
        yield model
    finally:
        model.datastore.close()


def fill(database_url: str, customers: int, entries_each: int) -> list[uuid.UUID]:
    """Customers with a profile each and `entries_each` entries each, interleaved (each
    customer's entries spread over the whole arrival order), written as a read model from
    before `last_seq` holds them: the column left empty."""
    ids = [uuid.uuid4() for _ in range(customers)]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {SCHEMA}.entries (event_id, customer_id, occurred_at, source,"
            " position, type, summary, details, aggregate_id, aggregate_version)"
            " SELECT gen_random_uuid(), c, now(), 'customer', n * 100000 + i,"
            " 'customer.noted', 'note', '{}', c, n"
            " FROM generate_series(1, %s) AS n, unnest(%s::uuid[]) WITH ORDINALITY AS u (c, i)"
            " ORDER BY n, i",
            (entries_each, ids),
        )
        conn.execute(
            f"INSERT INTO {SCHEMA}.profiles (customer_id, kind, display_name, name_key, emails,"
            " phones, doc) SELECT c, 'person', '', '', '{}', '{}', jsonb_build_object('n', c)"
            " FROM unnest(%s::uuid[]) AS c",
            (ids,),
        )
        conn.execute(f"ANALYZE {SCHEMA}.profiles")
    return ids


def as_before(database_url: str) -> None:
    """The read model as it was before `last_seq`: without the column, its DDL of then."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE {SCHEMA}.profiles DROP COLUMN last_seq")
        conn.execute(f"UPDATE {SCHEMA}.c360_schema SET digest = 'before'")


def latest_entries(database_url: str) -> dict[uuid.UUID, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            f"SELECT customer_id, max(entry_seq) FROM {SCHEMA}.entries GROUP BY customer_id"
        ).fetchall()
    return {r[0]: r[1] for r in rows}


def test_a_read_model_from_before_gets_each_profiles_latest_entry(
    view: ReadModel, database_url: str
) -> None:
    ids = fill(database_url, 50, 3)
    as_before(database_url)
    open_read_model(database_url).datastore.close()
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(f"SELECT customer_id, last_seq FROM {SCHEMA}.profiles").fetchall()
    assert {r[0]: r[1] for r in rows} == latest_entries(database_url)
    assert len(rows) == len(ids)


def test_a_page_of_changed_profiles_reads_a_page(view: ReadModel, database_url: str) -> None:
    fill(database_url, CUSTOMERS, ENTRIES_EACH)
    as_before(database_url)  # filled as a read model from before is when it opens
    open_read_model(database_url).datastore.close()
    latest = latest_entries(database_url)
    page = 200
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"ANALYZE {SCHEMA}.profiles")
        # From the start: every customer's latest entry is after the cursor.
        explained = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + CHANGED_SQL, (0, page))
        plan: Any = explained.fetchone()
        seen = conn.execute(CHANGED_SQL, (0, CUSTOMERS + 1)).fetchall()
    assert plan is not None
    tree = plan[0] if isinstance(plan[0], list) else json.loads(plan[0])
    scans = scans_of(tree[0]["Plan"])
    assert sorted(s["Relation Name"] for s in scans) == ["merges", "profiles"]
    # The profiles of the page, in the index's order; grouping entries read all of them.
    (profiles,) = [s for s in scans if s["Relation Name"] == "profiles"]
    assert profiles["Index Name"] == "profiles_by_last_seq"
    assert profiles["Actual Rows"] == page
    # Whom each is merged into: one look for each profile of the page, none for the others.
    (merges,) = [s for s in scans if s["Relation Name"] == "merges"]
    assert merges["Actual Loops"] == page
    assert [r[0] for r in seen] == sorted(latest.values())


def scans_of(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan] if "Relation Name" in plan else []
    for child in plan.get("Plans", []):
        found += scans_of(child)
    return found
