"""Event store wiring: `eventsourcing` on PostgreSQL (psycopg 3), one schema per service.

The application recorder is the library's PostgreSQL recorder plus tables written in the
same transaction as the events: per-event metadata (correlation, causation, W3C trace context)
for the published envelope, idempotency records (request id -> outcome) so that a retried
command appends nothing, and optionally a query table of the service's own (for lists).

Naming, in one place: source "service-desk" keeps its events in schema `service_desk`, table
`service_desk_events` (`schema_for`, `events_table_for`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, DomainEventProtocol, MutableOrImmutableAggregate
from eventsourcing.persistence import IntegrityError, Notification, Recording, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from c360_platform.errors import InvalidArgument, NotFound, VersionConflict

if TYPE_CHECKING:
    from c360_platform.config import Settings

A = TypeVar("A", bound=Aggregate)
App = TypeVar("App", bound="ServiceApplication")


def postgres_env(url: str, schema: str, *, pool_size: int = 10) -> dict[str, str]:
    """The `eventsourcing` environment for a PostgreSQL URL and a schema of the service's own."""
    params = conninfo_to_dict(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "APPLICATION_RECORDER_TOPIC": "c360_platform.store:EventRecorder",
        "POSTGRES_DBNAME": str(params.get("dbname") or "postgres"),
        "POSTGRES_HOST": str(params.get("host") or "127.0.0.1"),
        "POSTGRES_PORT": str(params.get("port") or "5432"),
        "POSTGRES_USER": str(params.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(params.get("password") or ""),
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(pool_size),
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "POSTGRES_LOCK_TIMEOUT": "10",
    }


def schema_for(source: str) -> str:
    """The PostgreSQL schema of a source's store ("service-desk" -> "service_desk"); also the
    `eventsourcing` application name, so that its table is `events_table_for(source)`."""
    return source.replace("-", "_")


def events_table_for(source: str) -> str:
    """The events table (the notification log) of a source's store."""
    return f"{schema_for(source)}_events"


def open_application(kind: type[App], settings: Settings) -> App:
    """The service's application on its own schema of the PostgreSQL server in `settings`."""
    schema = schema_for(settings.service)
    ensure_schema(settings.postgres_url, schema)
    return kind(env=postgres_env(settings.postgres_url, schema))


def ensure_schema(url: str, schema: str) -> None:
    """Create the service's schema if it is missing (the library creates tables, not schemas)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(schema)))


@dataclass(frozen=True)
class CommandContext:
    """Who asked for a command, and how to recognise a retry of it."""

    command: str = ""
    request_id: str = ""
    fingerprint: str = ""
    correlation_id: str = ""
    causation_id: str = ""
    traceparent: str = ""
    tracestate: str = ""


@dataclass(frozen=True)
class CommandOutcome:
    """What a command did: the aggregate, its version and the log position to wait for."""

    aggregate_id: UUID
    version: int
    position: int
    replayed: bool = False
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EventMetadata:
    """Per-event metadata kept beside the event for the published envelope."""

    correlation_id: str = ""
    causation_id: str = ""
    traceparent: str = ""
    tracestate: str = ""


@dataclass(frozen=True)
class QueryTable:
    """A service's own query table (one row per aggregate, for lists and filters), written in
    the same transaction as the events that change it, so it never disagrees with them."""

    name: str
    columns: tuple[tuple[str, str], ...]
    """(column, SQL type); the first column is the primary key (the aggregate id)."""
    indexes: tuple[tuple[str, ...], ...] = ()
    """B-tree indexes, each a tuple of columns."""
    gin_indexes: tuple[str, ...] = ()
    """Array columns indexed with GIN (for overlap `&&` and containment `@>`)."""

    @property
    def key(self) -> str:
        return self.columns[0][0]

    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]


@dataclass(frozen=True)
class _SaveContext:
    context: CommandContext
    aggregate_id: UUID
    version: int
    extra: dict[str, str]


def fingerprint(data: bytes) -> str:
    """A stable digest of a request, to tell a retry from a reuse of its request id."""
    return hashlib.sha256(data).hexdigest()


class EventRecorder(PostgresApplicationRecorder):
    """The library's application recorder, plus metadata and idempotency in the same commit."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        self.query_table: QueryTable | None = None
        schema = Identifier(self.datastore.schema)
        self.metadata_table = Identifier(f"{events_table_name}_metadata")
        self.idempotency_table = Identifier(f"{events_table_name}_requests")
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0}.{1} ("
                " originator_id uuid NOT NULL, originator_version bigint NOT NULL,"
                " correlation_id text NOT NULL, causation_id text NOT NULL,"
                " traceparent text NOT NULL, tracestate text NOT NULL,"
                " PRIMARY KEY (originator_id, originator_version))"
            ).format(schema, self.metadata_table)
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0}.{1} ("
                " request_id text PRIMARY KEY, command text NOT NULL, fingerprint text NOT NULL,"
                " aggregate_id uuid NOT NULL, version bigint NOT NULL, changes jsonb NOT NULL,"
                " extra jsonb NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now())"
            ).format(schema, self.idempotency_table)
        )

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        save: _SaveContext | None = kwargs.get("c360")
        rows: list[dict[str, Any]] = kwargs.get("c360_rows") or []
        super()._insert_events(curs, stored_events, **kwargs)
        if rows and self.query_table is not None:
            self._upsert_rows(curs, self.query_table, rows)
        if save is None:
            return
        ctx = save.context
        if stored_events:
            curs.executemany(
                SQL("INSERT INTO {0}.{1} VALUES (%s, %s, %s, %s, %s, %s)").format(
                    Identifier(self.datastore.schema), self.metadata_table
                ),
                [
                    (
                        e.originator_id,
                        e.originator_version,
                        ctx.correlation_id,
                        ctx.causation_id,
                        ctx.traceparent,
                        ctx.tracestate,
                    )
                    for e in stored_events
                ],
            )
        if ctx.request_id:
            # A concurrent retry with the same id fails here on the primary key, so the
            # whole transaction (events included) is rolled back: one effect only.
            curs.execute(
                SQL(
                    "INSERT INTO {0}.{1} (request_id, command, fingerprint, aggregate_id,"
                    " version, changes, extra) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                ).format(Identifier(self.datastore.schema), self.idempotency_table),
                (
                    ctx.request_id,
                    ctx.command,
                    ctx.fingerprint,
                    save.aggregate_id,
                    save.version,
                    # The events it appended, to find their log position on a replay.
                    json.dumps(
                        [
                            {"id": str(e.originator_id), "v": e.originator_version}
                            for e in stored_events
                        ]
                    ),
                    json.dumps(save.extra),
                ),
            )

    def add_query_table(self, table: QueryTable) -> None:
        """Create the service's query table if missing, and keep it with every command."""
        schema = Identifier(self.datastore.schema)
        columns = SQL(", ").join(
            SQL("{} {}").format(Identifier(name), SQL(kind)) for name, kind in table.columns
        )
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("CREATE TABLE IF NOT EXISTS {0}.{1} ({2}, PRIMARY KEY ({3}))").format(
                    schema, Identifier(table.name), columns, Identifier(table.key)
                )
            )
            # Columns are only ever added: a table made by an older version gains the new ones
            # (their type must then carry a DEFAULT, or allow NULL).
            for name, kind in table.columns[1:]:
                curs.execute(
                    SQL("ALTER TABLE {0}.{1} ADD COLUMN IF NOT EXISTS {2} {3}").format(
                        schema, Identifier(table.name), Identifier(name), SQL(kind)
                    )
                )
            for index in table.indexes:
                curs.execute(
                    SQL("CREATE INDEX IF NOT EXISTS {0} ON {1}.{2} ({3})").format(
                        Identifier(f"{table.name}_by_{'_'.join(index)}"),
                        schema,
                        Identifier(table.name),
                        SQL(", ").join(Identifier(c) for c in index),
                    )
                )
            for column in table.gin_indexes:
                curs.execute(
                    SQL("CREATE INDEX IF NOT EXISTS {0} ON {1}.{2} USING gin ({3})").format(
                        Identifier(f"{table.name}_by_{column}"),
                        schema,
                        Identifier(table.name),
                        Identifier(column),
                    )
                )
        self.query_table = table

    def upsert_rows(self, rows: list[dict[str, Any]]) -> None:
        """Write query-table rows in a transaction of their own (backfills only: commands
        write theirs with their events)."""
        if self.query_table is None or not rows:
            return
        with self.datastore.transaction(commit=True) as curs:
            self._upsert_rows(curs, self.query_table, rows)

    def query_table_is_empty(self) -> bool:
        table = self.query_table
        if table is None:
            raise RuntimeError("this application has no query table")
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT EXISTS (SELECT 1 FROM {0}.{1}) AS present").format(
                    Identifier(self.datastore.schema), Identifier(table.name)
                )
            )
            row = curs.fetchone()
        return not (row and row["present"])

    def aggregate_ids(self, after: UUID | None, limit: int) -> list[UUID]:
        """Ids of the aggregates in the store, in id order, after `after` (a page)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT originator_id FROM {0}.{1} WHERE originator_version = 1"
                    " AND (%s::uuid IS NULL OR originator_id > %s::uuid)"
                    " ORDER BY originator_id LIMIT %s"
                ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name)),
                (after, after, limit),
            )
            return [r["originator_id"] for r in curs.fetchall()]

    def _upsert_rows(
        self, curs: Cursor[DictRow], table: QueryTable, rows: list[dict[str, Any]]
    ) -> None:
        names = table.column_names()
        curs.executemany(
            SQL(
                "INSERT INTO {0}.{1} ({2}) VALUES ({3}) ON CONFLICT ({4}) DO UPDATE SET {5}"
            ).format(
                Identifier(self.datastore.schema),
                Identifier(table.name),
                SQL(", ").join(Identifier(n) for n in names),
                SQL(", ").join(SQL("%s") for _ in names),
                Identifier(table.key),
                SQL(", ").join(SQL("{0} = EXCLUDED.{0}").format(Identifier(n)) for n in names[1:]),
            ),
            [tuple(row[n] for n in names) for row in rows],
        )

    def select_rows(
        self,
        where: Mapping[str, Any],
        order: Sequence[str],
        after: Sequence[Any] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Query-table rows equal to every `where` value, in descending `order` (whose last
        column must be unique), starting after the keyset `after` (the order values of the
        last row of the previous page)."""
        table = self.query_table
        if table is None:
            raise RuntimeError("this application has no query table")
        known = set(table.column_names())
        unknown = (set(where) | set(order)) - known
        if unknown:
            raise ValueError(f"not columns of {table.name}: {sorted(unknown)}")
        conditions = [SQL("{} = %s").format(Identifier(c)) for c in where]
        params: list[Any] = list(where.values())
        keys = SQL(", ").join(Identifier(c) for c in order)
        if after is not None:
            conditions.append(
                SQL("({}) < ({})").format(keys, SQL(", ").join(SQL("%s") for _ in order))
            )
            params.extend(after)
        query = SQL("SELECT * FROM {0}.{1}{2} ORDER BY {3} LIMIT %s").format(
            Identifier(self.datastore.schema),
            Identifier(table.name),
            SQL(" WHERE ") + SQL(" AND ").join(conditions) if conditions else SQL(""),
            SQL(", ").join(SQL("{} DESC").format(Identifier(c)) for c in order),
        )
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(query, (*params, limit))
            return [dict(r) for r in curs.fetchall()]

    def find_outcome(self, request_id: str) -> tuple[str, str, CommandOutcome] | None:
        """An earlier request's stored outcome, as (command, fingerprint, outcome)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT r.command, r.fingerprint, r.aggregate_id, r.version, r.extra,"
                    " (SELECT max(e.notification_id) FROM {0}.{2} e"
                    "  JOIN jsonb_to_recordset(r.changes) AS c(id uuid, v bigint)"
                    "  ON e.originator_id = c.id AND e.originator_version = c.v) AS position"
                    " FROM {0}.{1} r WHERE r.request_id = %s"
                ).format(
                    Identifier(self.datastore.schema),
                    self.idempotency_table,
                    Identifier(self.events_table_name),
                ),
                (request_id,),
            )
            row = curs.fetchone()
        if row is None:
            return None
        outcome = CommandOutcome(
            aggregate_id=row["aggregate_id"],
            version=row["version"],
            position=row["position"] or 0,
            replayed=True,
            extra=dict(row["extra"]),
        )
        return row["command"], row["fingerprint"], outcome

    def position_of(self, aggregate_id: UUID) -> int:
        """The log position of the aggregate's latest event (0 if it has none)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT notification_id FROM {0}.{1} WHERE originator_id = %s"
                    " ORDER BY originator_version DESC LIMIT 1"
                ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name)),
                (aggregate_id,),
            )
            row = curs.fetchone()
        return int(row["notification_id"]) if row else 0

    def select_with_metadata(
        self, after: int, limit: int
    ) -> list[tuple[Notification, EventMetadata]]:
        """Notifications after a position, each with its metadata, in log order."""
        schema = Identifier(self.datastore.schema)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic,"
                    " e.state, m.correlation_id, m.causation_id, m.traceparent, m.tracestate"
                    " FROM {0}.{1} e LEFT JOIN {0}.{2} m"
                    " ON m.originator_id = e.originator_id"
                    " AND m.originator_version = e.originator_version"
                    " WHERE e.notification_id > %s ORDER BY e.notification_id LIMIT %s"
                ).format(schema, Identifier(self.events_table_name), self.metadata_table),
                (after, limit),
            )
            rows = curs.fetchall()
        return [
            (
                Notification(
                    id=r["notification_id"],
                    originator_id=r["originator_id"],
                    originator_version=r["originator_version"],
                    topic=r["topic"],
                    state=bytes(r["state"]),
                ),
                EventMetadata(
                    correlation_id=r["correlation_id"] or "",
                    causation_id=r["causation_id"] or "",
                    traceparent=r["traceparent"] or "",
                    tracestate=r["tracestate"] or "",
                ),
            )
            for r in rows
        ]

    def existing(self, aggregate_ids: list[UUID]) -> set[UUID]:
        """Which of these aggregates have events already."""
        if not aggregate_ids:
            return set()
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT DISTINCT originator_id FROM {0}.{1}"
                    " WHERE originator_id = ANY(%s) AND originator_version = 1"
                ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name)),
                (aggregate_ids,),
            )
            return {r["originator_id"] for r in curs.fetchall()}

    def count_events(self) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT count(*) AS n FROM {0}.{1}").format(
                    Identifier(self.datastore.schema), Identifier(self.events_table_name)
                )
            )
            row = curs.fetchone()
        return int(row["n"]) if row else 0


@dataclass
class Decision(Generic[A]):
    """What a command decided: the aggregate it is about, and every aggregate it changed."""

    subject: A
    changed: list[Aggregate]
    extra: dict[str, str] = field(default_factory=dict)


class ServiceApplication(Application[UUID]):
    """An `eventsourcing` application with idempotent, conflict-checked commands."""

    source: str = ""
    query_table: QueryTable | None = None
    """The service's own query table, if it has one; rows come from `query_row`."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__(env)
        if self.query_table is not None:
            self.event_recorder.add_query_table(self.query_table)
            self.backfill_query_table()

    def query_row(self, aggregate: Aggregate) -> dict[str, Any] | None:
        """The query-table row of a changed aggregate (None: the aggregate has no row)."""
        return None

    def save(
        self,
        *objs: MutableOrImmutableAggregate[UUID] | DomainEventProtocol[UUID] | None,
        **kwargs: Any,
    ) -> list[Recording[UUID]]:
        """Append the aggregates' pending events and, in the same transaction, their
        query-table rows: every save keeps the query table, `execute` or not."""
        if self.query_table is not None and "c360_rows" not in kwargs:
            kwargs["c360_rows"] = [
                row
                for a in objs
                if isinstance(a, Aggregate)
                and a.pending_events
                and (row := self.query_row(a)) is not None
            ]
        return super().save(*objs, **kwargs)

    def backfill_query_table(self, batch: int = 500) -> int:
        """Build the query table from the aggregates when it is empty but the store is not
        (a store from before the table existed). Runs at start, before the service answers;
        it reads every aggregate once, so it is meant for stores of moderate size."""
        recorder = self.event_recorder
        if not recorder.query_table_is_empty() or recorder.max_notification_id() is None:
            return 0
        written = 0
        after: UUID | None = None
        while ids := recorder.aggregate_ids(after, batch):
            after = ids[-1]
            rows = [row for i in ids if (row := self.query_row(self.repository.get(i))) is not None]
            recorder.upsert_rows(rows)
            written += len(rows)
        return written

    @property
    def event_recorder(self) -> EventRecorder:
        assert isinstance(self.recorder, EventRecorder)
        return self.recorder

    def load(self, kind: type[A], aggregate_id: UUID, expected_version: int | None = None) -> A:
        """Get an aggregate, NOT_FOUND if missing, ABORTED if it moved past expected_version."""
        from eventsourcing.application import AggregateNotFoundError

        try:
            aggregate: Any = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"{kind.__name__.lower()} {aggregate_id} does not exist") from None
        if not isinstance(aggregate, kind):
            raise NotFound(f"{kind.__name__.lower()} {aggregate_id} does not exist")
        if expected_version is not None and aggregate.version != expected_version:
            raise VersionConflict(
                f"{kind.__name__.lower()} {aggregate_id} is at version {aggregate.version},"
                f" not {expected_version}; reload and retry"
            )
        return aggregate

    def replay(self, ctx: CommandContext) -> CommandOutcome | None:
        """The first answer to a retried request, if this request id was seen before."""
        if not ctx.request_id:
            return None
        found = self.event_recorder.find_outcome(ctx.request_id)
        if found is None:
            return None
        command, digest, outcome = found
        if command != ctx.command or digest != ctx.fingerprint:
            raise InvalidArgument.one(
                "request_id", "was already used for a different request; use a new id"
            )
        return outcome

    def execute(self, ctx: CommandContext, decide: Callable[[], Decision[A]]) -> CommandOutcome:
        """Run a command once: replay a retry, else decide, then append atomically."""
        earlier = self.replay(ctx)
        if earlier is not None:
            return earlier
        decision = decide()
        subject = decision.subject
        if not any(a.pending_events for a in decision.changed):
            return CommandOutcome(
                subject.id,
                subject.version,
                self.event_recorder.position_of(subject.id),
                extra=decision.extra,
            )
        save = _SaveContext(ctx, subject.id, subject.version, decision.extra)
        try:
            recordings = self.save(*decision.changed, c360=save)
        except IntegrityError:
            earlier = self.replay(ctx)
            if earlier is not None:
                return earlier
            raise VersionConflict(
                f"{type(subject).__name__.lower()} {subject.id} was changed concurrently;"
                " reload and retry"
            ) from None
        position = max(r.notification.id for r in recordings)
        return CommandOutcome(subject.id, subject.version, position, extra=decision.extra)
