"""`c360 verify`: reconcile every stored event of every service with the timeline read model."""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from c360_cli.client import load_endpoints
from c360_cli.errors import CliError
from c360_cli.output import Output
from c360_platform import registry
from c360_platform.store import events_table_for, schema_for

TIMELINE_SCHEMA = "timeline"
SAMPLE = 20
POLL_SECONDS = 0.5


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `verify` subcommand."""
    parser = subparsers.add_parser(
        "verify",
        help="check that every stored event is in the timeline exactly once",
        description=(
            "Compare every event in every service's store with the timeline read model "
            "(reads PostgreSQL directly). Exit 1 if an event is missing or doubled."
        ),
    )
    parser.add_argument(
        "--wait",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="keep comparing while events are missing, for up to this long (default 30)",
    )
    parser.set_defaults(func=run)


@dataclass
class Report:
    """The outcome of one comparison."""

    stored_events: int = 0
    timeline_entries: int = 0
    """Entries of the sources' events (what must match the stores one to one)."""
    about_no_customer: int = 0
    """Stored events about no customer (a product, a price list): tracked, no entry."""
    other_entries: int = 0
    """Entries no store holds: those the projection derives (the churn signal)."""
    missing: int = 0
    missing_sample: list[str] = field(default_factory=list)
    doubled: int = 0
    doubled_sample: list[str] = field(default_factory=list)
    per_source: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.doubled == 0

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "stored_events": self.stored_events,
            "timeline_entries": self.timeline_entries,
            "other_entries": self.other_entries,
            "about_no_customer": self.about_no_customer,
            "missing": {"count": self.missing, "sample": self.missing_sample},
            "doubled": {"count": self.doubled, "sample": self.doubled_sample},
            "sources": self.per_source,
        }


def _exists(conn: psycopg.Connection[Any], schema: str, table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", (f"{schema}.{table}",)).fetchone()
    return bool(row and row[0] is not None)


def compare(conn: psycopg.Connection[Any], sources: list[str]) -> Report:
    """One consistent comparison (a single repeatable-read snapshot) of stores and timeline."""
    report = Report()
    entries = sql.Identifier(TIMELINE_SCHEMA, "entries")
    tracking = sql.Identifier(TIMELINE_SCHEMA, "timeline_tracking")
    have_entries = _exists(conn, TIMELINE_SCHEMA, "entries") and _exists(
        conn, TIMELINE_SCHEMA, "timeline_tracking"
    )
    if have_entries:
        row = conn.execute(
            sql.SQL("SELECT count(*) FILTER (WHERE source = ANY(%s)), count(*) FROM {}").format(
                entries
            ),
            (sources,),
        ).fetchone()
        report.timeline_entries = int(row[0]) if row else 0
        report.other_entries = int(row[1]) - report.timeline_entries if row else 0
        doubled = conn.execute(
            sql.SQL(
                "SELECT source, position, count(*) FROM {} GROUP BY source, position"
                " HAVING count(*) > 1 ORDER BY source, position"
            ).format(entries)
        ).fetchall()
        report.doubled = len(doubled)
        report.doubled_sample = [f"{s}:{p}" for s, p, _ in doubled[:SAMPLE]]
    for source in sources:
        schema, table = schema_for(source), events_table_for(source)
        stats = {"stored_events": 0, "timeline_entries": 0, "about_no_customer": 0, "missing": 0}
        report.per_source[source] = stats
        if not _exists(conn, schema, table):
            continue
        events = sql.Identifier(schema, table)
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(events)).fetchone()
        stats["stored_events"] = int(row[0]) if row else 0
        if have_entries:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE source = %s").format(entries), (source,)
            ).fetchone()
            stats["timeline_entries"] = int(row[0]) if row else 0
            # An event about no customer (a product, a price list) has no entry; the
            # projection tracked it as applied in the transaction that would have written one.
            anti_join = sql.SQL(
                "FROM {events} e WHERE NOT EXISTS"
                " (SELECT 1 FROM {entries} t WHERE t.source = %s"
                " AND t.position = e.notification_id)"
                " AND NOT EXISTS (SELECT 1 FROM {tracking} k WHERE k.application_name = %s"
                " AND k.notification_id = e.notification_id)"
            ).format(events=events, entries=entries, tracking=tracking)
            row = conn.execute(sql.SQL("SELECT count(*) ") + anti_join, (source, source)).fetchone()
            stats["missing"] = int(row[0]) if row else 0
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*) FROM {events} e WHERE NOT EXISTS"
                    " (SELECT 1 FROM {entries} t WHERE t.source = %s"
                    " AND t.position = e.notification_id)"
                ).format(events=events, entries=entries),
                (source,),
            ).fetchone()
            stats["about_no_customer"] = (int(row[0]) if row else 0) - stats["missing"]
            sample = conn.execute(
                sql.SQL("SELECT e.notification_id ")
                + anti_join
                + sql.SQL(" ORDER BY e.notification_id LIMIT %s"),
                (source, source, SAMPLE),
            ).fetchall()
        else:
            stats["missing"] = stats["stored_events"]
            sample = conn.execute(
                sql.SQL("SELECT notification_id FROM {} ORDER BY notification_id LIMIT %s").format(
                    events
                ),
                (SAMPLE,),
            ).fetchall()
        report.stored_events += stats["stored_events"]
        report.about_no_customer += stats["about_no_customer"]
        report.missing += stats["missing"]
        room = SAMPLE - len(report.missing_sample)
        report.missing_sample.extend(f"{source}:{r[0]}" for r in sample[: max(room, 0)])
    return report


def _postgres_url(args: argparse.Namespace) -> str:
    url = load_endpoints(args).postgres_url or os.environ.get("C360_POSTGRES_URL")
    if not url:
        raise CliError(
            f"no postgres_url: {args.home}/endpoints.json does not exist or lacks it and"
            " C360_POSTGRES_URL is not set; start the stack with `c360 up`"
        )
    return url


def run(args: argparse.Namespace) -> int:
    """Compare until nothing is missing or --wait runs out; print the last comparison."""
    url = _postgres_url(args)
    # Every service whose event store the timeline projects (its schema and events table
    # named by `c360_platform.store.schema_for` / `events_table_for`).
    sources = [spec.name for spec in registry.event_sources()]
    deadline = time.monotonic() + args.wait
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            while True:
                with conn.transaction():
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    report = compare(conn, sources)
                if report.missing == 0 or time.monotonic() >= deadline:
                    break
                time.sleep(POLL_SECONDS)
    except psycopg.OperationalError as exc:
        raise CliError(f"cannot reach PostgreSQL: {str(exc).strip()}") from None
    except psycopg.Error as exc:
        raise CliError(f"PostgreSQL error: {str(exc).strip()}") from None
    out = Output(args.json)
    if out.json_mode:
        out.json(report.as_json())
    else:
        out.table(
            ["check", "result"],
            [
                ["stored events", report.stored_events],
                ["timeline entries", report.timeline_entries],
                ["derived entries", report.other_entries],
                ["events about no customer", report.about_no_customer],
                ["missing", _counted(report.missing, report.missing_sample)],
                ["doubled", _counted(report.doubled, report.doubled_sample)],
                ["ok", report.ok],
            ],
            title="verify: stores vs timeline",
        )
    return 0 if report.ok else 1


def _counted(count: int, sample: list[str]) -> str:
    if not count:
        return "0"
    more = " …" if count > len(sample) else ""
    return f"{count}  ({', '.join(sample)}{more})"
