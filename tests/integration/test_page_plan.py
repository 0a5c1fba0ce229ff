"""GetTimeline reads a long history's first page, not the whole history, whatever the other
customers are like: where most have one entry each (as freshly registered ones do), the
planner, sizing a customer by the average, would read all of a long one to sort it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from c360_timeline.query import PAGE_OPTIONS, page_sql
from c360_timeline.readmodel import SCHEMA, open_read_model

pytestmark = pytest.mark.integration

ONE_ENTRY_CUSTOMERS = 12_000
LONG_HISTORY = 10_000


def _scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of a JSON plan that reads `entries`."""
    found = [plan] if plan.get("Relation Name") == "entries" else []
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


@pytest.mark.parametrize("page", [50, 500])
def test_a_long_historys_first_page_reads_a_page(database_url: str, page: int) -> None:
    view = open_read_model(database_url)
    try:
        long = uuid.uuid4()
        with psycopg.connect(database_url, autocommit=True) as conn:
            insert = (
                f"INSERT INTO {SCHEMA}.entries (event_id, customer_id, occurred_at, source,"
                " position, type, summary, details, aggregate_id, aggregate_version)"
                " SELECT gen_random_uuid(), {customer}, now() - n * interval '1 minute',"
                " 'customer', n, 'customer.noted', 'note', '{{}}', gen_random_uuid(), 1"
                " FROM generate_series(1, %s) AS n"
            )
            conn.execute(insert.format(customer="gen_random_uuid()"), (ONE_ENTRY_CUSTOMERS,))
            conn.execute(insert.format(customer="%s::uuid"), (long, LONG_HISTORY))
            conn.execute(f"ANALYZE {SCHEMA}.entries")
        # On a connection as GetTimeline's page has them.
        with psycopg.connect(database_url, autocommit=True, options=PAGE_OPTIONS) as conn:
            explained = conn.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + page_sql(["customer_id = g.id"]),
                {"root": long, "at": "infinity", "size": page + 1},
            ).fetchone()
        assert explained is not None
        plan = explained[0] if isinstance(explained[0], list) else json.loads(explained[0])
        scans = _scans(plan[0]["Plan"])
        assert scans, "the plan reads no entries"
        # The scan stops at the page (the last row tells whether there is a next one); the
        # other way reads all LONG_HISTORY of them.
        assert [s["Actual Rows"] for s in scans] == [page + 1]
        assert {s["Index Name"] for s in scans} == {"entries_by_customer"}
    finally:
        view.datastore.close()
