"""GetTimeline reads a long history's page, not the whole history, whatever the other
customers are like: where most have one entry each (as freshly registered ones do), the
planner, sizing a customer by the average, would read all of a long one to sort it. Its
connections plan each form of the statement once (a generic plan, PAGE_OPTIONS): each form
(the filters a request has) is checked as it is planned there."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from google.protobuf import timestamp_pb2
from psycopg import sql

from c360.timeline.v1 import timeline_service_pb2 as api
from c360_timeline.query import PAGE_OPTIONS, entry_token, page_query
from c360_timeline.readmodel import SCHEMA, open_read_model

pytestmark = pytest.mark.integration

ONE_ENTRY_CUSTOMERS = 12_000
LONG_HISTORY = 10_000
NOW = datetime.now(UTC)


def _at(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


_NEXT = {"occurred_at": NOW - timedelta(minutes=100), "source": "customer", "position": 100}
FORMS = {
    "first page": api.GetTimelineRequest(),
    "next page": api.GetTimelineRequest(page_token=entry_token(_NEXT)),
    "sources": api.GetTimelineRequest(sources=["customer"]),
    "types": api.GetTimelineRequest(types=["customer.renamed"]),
    "since and until": api.GetTimelineRequest(
        since=_at(NOW - timedelta(days=365)), until=_at(NOW + timedelta(days=1))
    ),
    "as of": api.GetTimelineRequest(as_of=_at(NOW + timedelta(days=1))),
}
"""Each form of GetTimeline's statement (the filters a request has), with values under which
every entry of the long history matches: a page is the most any of them may read."""
TYPES = {
    "root": "uuid",
    "at": "timestamptz",
    "size": "bigint",
    "t_at": "timestamptz",
    "t_source": "text",
    "t_pos": "bigint",
    "sources": "text[]",
    "types": "text[]",
    "since": "timestamptz",
    "until": "timestamptz",
    "as_of": "timestamptz",
}


def _prepared(statement: str) -> tuple[str, list[str]]:
    """`statement` with $n for its named parameters, and their names in that order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"%\((\w+)\)s", number, statement), names


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
                " 'customer', n, 'customer.renamed', 'note', '{{}}', gen_random_uuid(), 1"
                " FROM generate_series(1, %s) AS n"
            )
            conn.execute(insert.format(customer="gen_random_uuid()"), (ONE_ENTRY_CUSTOMERS,))
            conn.execute(insert.format(customer="%s::uuid"), (long, LONG_HISTORY))
            conn.execute(f"ANALYZE {SCHEMA}.entries")
        # On a connection as GetTimeline's pages have them, each form prepared and run as a
        # prepared statement is from its fifth use on (the connection's plan of it).
        with psycopg.connect(database_url, autocommit=True, options=PAGE_OPTIONS) as conn:
            for form, request in FORMS.items():
                statement, params = page_query(request, long, page)
                text, names = _prepared(statement)
                conn.execute(f"PREPARE page ({', '.join(TYPES[n] for n in names)}) AS {text}")
                # The values as literals: a utility statement takes no parameters of its own.
                values_sql = sql.SQL(", ").join(
                    sql.SQL("{}::{}").format(sql.Literal(params[n]), sql.SQL(TYPES[n]))
                    for n in names
                )
                explained = conn.execute(
                    sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE page ({})").format(values_sql)
                ).fetchone()
                conn.execute("DEALLOCATE page")
                assert explained is not None
                plan = explained[0] if isinstance(explained[0], list) else json.loads(explained[0])
                # A plan for any values (theirs would be written in it): the parameters are.
                assert "$2" in json.dumps(plan), form
                scans = _scans(plan[0]["Plan"])
                assert scans, f"{form}: the plan reads no entries"
                # The scan stops at the page (the last row tells whether there is a next
                # one); the other way reads all LONG_HISTORY of them.
                assert [s["Actual Rows"] for s in scans] == [page + 1], form
                assert {s["Index Name"] for s in scans} == {"entries_by_customer"}, form
    finally:
        view.datastore.close()
