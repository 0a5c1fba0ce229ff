"""The PostgreSQL event store of a service: the library's recorder (psycopg 3), one schema per
service, plus tables written in the same transaction as the events: per-event metadata
(correlation, causation, W3C trace context) for the published envelope, idempotency records
(request id -> outcome) so that a retried command appends nothing, and optionally a query
table of the service's own (for lists)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import orjson
import psycopg
from eventsourcing.persistence import Notification, ProgrammingError, StoredEvent
from eventsourcing.persistence import OperationalError as StoreOperationalError
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
    PostgresTrackingRecorder,
)
from psycopg import Cursor
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composable, Composed, Identifier
from psycopg.types.json import set_json_loads

from c360_platform.config import pg_pool_from_env
from c360_platform.locks import lock_key
from c360_platform.pgpool import CHECKOUT_TIMEOUT, make_patient
from c360_platform.store import (
    ROW_TABLE,
    AnyOf,
    CommandOutcome,
    Condition,
    Eq,
    EventMetadata,
    In,
    Matches,
    Ne,
    Overlaps,
    QueryTable,
    RowQuery,
    ServiceApplication,
    check_sizes,
    commands_of,
    schema_for,
)

if TYPE_CHECKING:
    from c360_platform.config import Settings

App = TypeVar("App", bound=ServiceApplication)


def postgres_env(url: str, schema: str, *, pool_size: int | None = None) -> dict[str, str]:
    """The `eventsourcing` environment for a PostgreSQL URL and a schema of the service's own;
    a pool of `pool_size` connections (growing to twice that), or as C360_PG_POOL_MIN and
    C360_PG_POOL_MAX say (the library keeps its POOL_SIZE open and opens up to MAX_OVERFLOW
    more under load)."""
    params = conninfo_to_dict(url)
    least, most = (pool_size, 2 * pool_size) if pool_size else pg_pool_from_env()
    return {
        "PERSISTENCE_MODULE": "c360_platform.pgstore:Factory",
        "APPLICATION_RECORDER_TOPIC": "c360_platform.pgstore:EventRecorder",
        "POSTGRES_DBNAME": str(params.get("dbname") or "postgres"),
        "POSTGRES_HOST": str(params.get("host") or "127.0.0.1"),
        "POSTGRES_PORT": str(params.get("port") or "5432"),
        "POSTGRES_USER": str(params.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(params.get("password") or ""),
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(least),
        "POSTGRES_MAX_OVERFLOW": str(most - least),
        # The library uses it as the pool's checkout timeout too: with PostgreSQL down a
        # call fails (UNAVAILABLE) within about a second instead of hanging to the deadline
        # (a pool that is only busy waits on: `pgpool.make_patient`).
        "POSTGRES_CONNECT_TIMEOUT": str(int(CHECKOUT_TIMEOUT)),
        # A pooled connection is checked before use, so one broken by a restart of PostgreSQL
        # is replaced at once instead of failing the call that drew it.
        "POSTGRES_PRE_PING": "y",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "TRACKING_RECORDER_TOPIC": "c360_platform.pgstore:TrackingRecorder",
    }


def ensure_schema(url: str, schema: str) -> None:
    """Create the service's schema if it is missing (the library creates tables, not schemas).
    The processes of one service start together (C360_WORKERS) and `CREATE SCHEMA IF NOT
    EXISTS` races with itself, so the check and the creation hold an advisory lock."""
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s)", (lock_key(f"c360.create-schema.{schema}"),)
        )
        # Looked up first: a service's own role owns its schema but may not create schemas.
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone():
            return
        conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(schema)))


def open_application(kind: type[App], settings: Settings, **options: Any) -> App:
    """The service's application on its own schema of the PostgreSQL server in `settings`
    (`options`: keyword arguments of the application's constructor)."""
    schema = schema_for(settings.service)
    ensure_schema(settings.postgres_url, schema)
    app = kind(env=postgres_env(settings.postgres_url, schema), **options)
    if settings.group_commit:
        app.attach_writer()
    return app


# -- schema changes, once -----------------------------------------------------------------------
#
# A recorder's tables, indexes and columns are created when its DDL changes, not at every
# process start: DDL such as ALTER TABLE takes locks that abort or block the transactions of
# a live writer (another replica's projector). Each recorder's statements have a digest; the
# schema's `c360_schema` table records the digest applied; a starting process whose digest
# is recorded runs no DDL at all, and one that must apply it does so under an advisory lock
# (one process at a time), with a lock timeout, then records it.


def _digest(statements: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(statements).encode()).hexdigest()


def _ddl_table(schema: str) -> Composable:
    return SQL("{}.c360_schema").format(Identifier(schema))


def _applied(datastore: PostgresDatastore, name: str) -> str | None:
    """The digest of `name`'s DDL applied in the datastore's schema, if any."""
    try:
        with datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT digest FROM {} WHERE name = %s").format(_ddl_table(datastore.schema)),
                (name,),
            )
            row = curs.fetchone()
    except (psycopg.errors.UndefinedTable, ProgrammingError):  # the library wraps it
        return None
    return str(row["digest"]) if row else None


@contextlib.contextmanager
def schema_change(datastore: PostgresDatastore, name: str, digest: str) -> Iterator[bool]:
    """Yields True if `name`'s DDL with this digest must be applied now: then the caller
    runs it while this holds the schema's advisory lock, and it is recorded on exit. Yields
    False when it was applied already (by this or another process)."""
    if _applied(datastore, name) == digest:
        yield False
        return
    key = lock_key(f"c360.schema.{datastore.schema}")
    with datastore.get_connection() as conn:
        conn.autocommit = True
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            conn.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, digest text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(_ddl_table(datastore.schema))
            )
            if _applied(datastore, name) == digest:  # another process did it meanwhile
                yield False
                return
            yield True
            conn.execute(
                SQL(
                    "INSERT INTO {} (name, digest) VALUES (%s, %s) ON CONFLICT (name)"
                    " DO UPDATE SET digest = EXCLUDED.digest, applied_at = now()"
                ).format(_ddl_table(datastore.schema)),
                (name, digest),
            )
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def _once(method: Callable[..., Any]) -> Callable[..., Any]:
    """A recorder method of the library without its retry loop (ten attempts 0.2 s apart, each
    waiting up to the checkout timeout): with PostgreSQL down a command would hang for ~12 s.
    c360 answers UNAVAILABLE at once instead; callers retry (commands with their request id),
    and the relay and projector retry from their leader loop."""
    return getattr(method, "__wrapped__", method)


def _rerun_aborted_pipeline(method: Callable[..., Any]) -> Callable[..., Any]:
    """`insert_events` run once (no retry loop like the library's), except for one case: it
    writes in pipeline mode, where a failed statement (a concurrent retry's primary key) can
    surface as "pipeline aborted" rather than as itself; run once more, and the real error
    (IntegrityError: the command's replay or ABORTED) comes out."""
    inner = _once(method)

    def insert_events(self: Any, *args: Any, **kwargs: Any) -> Any:
        for attempt in range(3):
            try:
                return inner(self, *args, **kwargs)
            except StoreOperationalError as exc:
                if attempt == 2 or not isinstance(exc.__cause__, psycopg.errors.PipelineAborted):
                    raise
        raise AssertionError("unreachable")

    return insert_events


class _SchemaOnce:
    """Mixin for the library's PostgreSQL recorders: `create_table` runs the recorder's DDL
    only when it changed (see `schema_change`)."""

    datastore: PostgresDatastore
    sql_create_statements: list[Composed]

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)  # type: ignore[call-arg]
        make_patient(datastore.pool)

    def _ddl_name(self) -> str:
        return type(self).__qualname__

    def create_table(self) -> None:
        digest = _digest([s.as_string() for s in self.sql_create_statements])
        with schema_change(self.datastore, self._ddl_name(), digest) as needed:
            if needed:
                super().create_table()  # type: ignore[misc]
                return
        self._schema_known()

    def _schema_known(self) -> None:
        """What `create_table` does besides DDL, when the DDL is skipped."""
        self.datastore.register_type_adapters()


class TrackingRecorder(_SchemaOnce, PostgresTrackingRecorder):
    """The library's tracking recorder, whose tables are created once (not at every start)."""

    insert_tracking = _once(PostgresTrackingRecorder.insert_tracking)
    max_tracking_id = _once(PostgresTrackingRecorder.max_tracking_id)
    has_tracking_id = _once(PostgresTrackingRecorder.has_tracking_id)

    def _ddl_name(self) -> str:
        return f"tracking:{self.tracking_table_name}"

    def _schema_known(self) -> None:
        super()._schema_known()
        self.tracking_table_exists = True


class SnapshotRecorder(_SchemaOnce, PostgresAggregateRecorder):
    """The library's recorder of snapshots, whose table is created once under the schema's
    lock: the processes of one service (C360_WORKERS) start together, and the library's
    `CREATE TABLE IF NOT EXISTS` races with itself on the same table's type."""

    def _ddl_name(self) -> str:
        return f"aggregate:{self.events_table_name}"


class Factory(PostgresFactory):
    """The library's PostgreSQL factory with c360's snapshot recorder."""

    aggregate_recorder_class = SnapshotRecorder


def _tsquery(m: Matches, params: list[Any]) -> Composable:
    """A text-search query of `m`'s words: all of them in web-search syntax, or any one."""
    params.extend((m.config, m.text))
    if m.any_word:
        return SQL("replace(plainto_tsquery(%s::regconfig, %s)::text, ' & ', ' | ')::tsquery")
    return SQL("websearch_to_tsquery(%s::regconfig, %s)")


def _sql(table: QueryTable, condition: Condition, params: list[Any]) -> Composable:
    """A condition as SQL, its parameters appended to `params`."""
    if isinstance(condition, Eq | Ne):
        params.append(condition.value)
        op = "=" if isinstance(condition, Eq) else "<>"
        return SQL("{} {} %s").format(Identifier(condition.column), SQL(op))
    if isinstance(condition, In):
        params.append(list(condition.values))
        column_type = table.column_type(condition.column)
        if column_type.endswith("[]"):
            raise ValueError(f"{table.name}.{condition.column} is an array column: Overlaps")
        return SQL("{} = ANY(%s::{}[])").format(Identifier(condition.column), SQL(column_type))
    if isinstance(condition, Overlaps):
        params.append(list(condition.values))
        return SQL("{} && %s::{}").format(
            Identifier(condition.column), SQL(table.array_type(condition.column))
        )
    if isinstance(condition, Matches):
        return SQL("{} @@ {}").format(Identifier(condition.column), _tsquery(condition, params))
    parts = [_sql(table, c, params) for c in condition.conditions]
    if not parts:
        return SQL("false" if isinstance(condition, AnyOf) else "true")
    glue = SQL(" OR ") if isinstance(condition, AnyOf) else SQL(" AND ")
    return SQL("({})").format(glue.join(parts))


_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


@contextlib.contextmanager
def pipelined_transaction(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """One transaction whose statements go in pipeline mode, its BEGIN sent with the first of
    them and its COMMIT with the last. psycopg's `transaction()` in a pipeline syncs right
    after its BEGIN: a round trip to the server of its own, before any statement is sent.
    For a connection in autocommit mode (the library's pool's are). The block's statements
    are sent when a result is fetched and at its end; a failed statement (or an exception
    in the block) rolls the whole transaction back."""
    if not conn.autocommit:
        raise ProgrammingError("pipelined_transaction needs a connection in autocommit mode")
    try:
        with conn.pipeline():
            conn.execute("BEGIN")
            yield
            conn.execute("COMMIT")
    except BaseException:
        # The pipeline is synced and left: what remains is a transaction open or aborted.
        if conn.info.transaction_status in (
            psycopg.pq.TransactionStatus.INTRANS,
            psycopg.pq.TransactionStatus.INERROR,
        ):
            # Through `rollback()`, not as a statement: it also forgets every statement the
            # connection prepared (DEALLOCATE ALL). A statement psycopg prepares as it
            # crosses its threshold is taken for prepared at once; in a pipeline aborted
            # before its turn the server never parsed it, and each later use would fail
            # ("prepared statement does not exist"). ROLLBACK run as a statement forgets
            # them only until psycopg prepares the ROLLBACK itself (its sixth).
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
        raise


def json_rows(
    rows: Iterable[Mapping[str, Any]], default: Callable[[Any], Any] | None = None
) -> str:
    """Rows as one JSON array, the parameter of a statement that reads them all at once with
    `jsonb_to_recordset` (psycopg's executemany sends each row by itself: a socket write and
    a wake-up of the server per row).

    Written by orjson (ids as the text `str` gives; times, and whatever else it does not
    write itself, through `default` as before: its own time format drops an offset's
    seconds): 1-3 us per row of the projection's entries and profiles, where the standard
    library's encoder took 8-36 (7 % of a rebuild's CPU). A value orjson refuses where `json`
    would not (an integer past 64 bits) is written by `json`, as it was."""
    listed = list(rows)
    try:
        return orjson.dumps(listed, default=default, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(listed, separators=(",", ":"), default=default)


_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19


def json_loads(data: bytes | bytearray | memoryview | str) -> Any:
    """JSON text as `json.loads` reads it, by orjson (about a third of the time: a page of
    timeline entries' details) where that reads the same values. Not where it would not: a
    run of 19 digits or more (orjson reads an integer past 64 bits as a float; the run may
    as well be in a text: `json` reads that too), or a text orjson refuses (`NaN`, `1e400`,
    a lone surrogate: `json` reads them, or refuses them as before)."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if _LONG_NUMBER not in raw.translate(_DIGITS_AS_ZERO):  # C speed, ~1 us for 200 bytes
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def use_json_loads(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """Read the connection's json and jsonb columns with `json_loads`."""
    set_json_loads(json_loads, conn)


def _json_value(value: Any) -> Any:
    """A query-table value JSON cannot write, as text its column's type reads."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, UUID | Decimal):
        return str(value)
    raise TypeError(f"a query table cannot hold {type(value).__name__}")


class EventRecorder(_SchemaOnce, PostgresApplicationRecorder):
    """The library's application recorder, plus metadata and idempotency in the same commit;
    its tables (and the query table's) are created once per change, not at every start."""

    select_events = _once(PostgresApplicationRecorder.select_events)
    select_notifications = _once(PostgresApplicationRecorder.select_notifications)
    max_notification_id = _once(PostgresApplicationRecorder.max_notification_id)

    def _ddl_name(self) -> str:
        return f"events:{self.events_table_name}"

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        self.query_table: QueryTable | None = None
        """The main query table (the first added); `query_tables` has it and the others."""
        self.query_tables: dict[str, QueryTable] = {}
        self._statements: dict[str, bytes] = {}
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

    def _table(self, name: str) -> Composable:
        return SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(name))

    def _statement(self, key: str, build: Callable[[], Composable]) -> bytes:
        """A statement every command runs, composed (identifiers quoted) once and kept: the
        composing cost about 10 us per statement and execution, some 5 % of a command."""
        found = self._statements.get(key)
        if found is None:
            found = self._statements[key] = build().as_bytes(None)
        return found

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        """The library's insert of the events (its table lock, its NOTIFY, then the events,
        their notification ids returned in order), with its statements composed once and the
        events sent as one JSON parameter. The library sends them as an array of a composite
        type, which psycopg dumps field by field in Python: about a third of a group-commit
        transaction's CPU, and of an import's store."""
        schema, table = Identifier(self.datastore.schema), Identifier(self.events_table_name)
        curs.execute(
            self._statement(
                "lock timeout",
                lambda: SQL("SET LOCAL lock_timeout = '{0}s'").format(self.datastore.lock_timeout),
            ),
            prepare=True,
        )
        curs.execute(
            self._statement(
                "lock", lambda: SQL("LOCK TABLE {0}.{1} IN EXCLUSIVE MODE").format(schema, table)
            ),
            prepare=True,
        )
        curs.execute(
            self._statement(
                "notify", lambda: SQL("NOTIFY {0}").format(Identifier(self.channel_name))
            )
        )
        curs.execute(
            self._statement(
                "events",
                lambda: SQL(
                    "INSERT INTO {0}.{1} (originator_id, originator_version, topic, state)"
                    " SELECT i, v, t, s FROM ROWS FROM (jsonb_to_recordset(%s::jsonb)"
                    " AS (i uuid, v bigint, t text, s bytea)) WITH ORDINALITY AS r (i, v, t, s, n)"
                    " ORDER BY n RETURNING notification_id"
                ).format(schema, table),
            ),
            (
                json_rows(
                    (
                        {
                            "i": e.originator_id,
                            "v": e.originator_version,
                            "t": e.topic,
                            "s": e.state,
                        }
                        for e in stored_events
                    ),
                    default=_json_value,  # the id as text, the state as bytea's hex
                ),
            ),
        )

    def _insert_in_one_round_trip(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The library's `insert_events`, with every statement of the transaction sent at once:
        BEGIN, the query-table rows, metadata and request ids, the table lock, the events and
        COMMIT go in one pipeline, synced once. The library's own syncs after BEGIN and after
        the events, and c360's after the request ids, made four round trips of a command's
        transaction, each a wait for PostgreSQL and then for the interpreter under load (6.6
        of a registration's 17 ms at 220/s), and the table lock was held across two of them.
        A failed statement fails the rest and rolls back: the first error is raised as itself
        (psycopg raises the first of a sync's results that failed), a request id or an
        aggregate version recorded already as the library's IntegrityError. An event too
        large to publish is refused before anything is sent (`check_sizes`)."""
        check_sizes(stored_events)
        with self.datastore.get_connection() as conn:
            inserted = conn.cursor()
            with pipelined_transaction(conn):
                self._insert_events(conn.cursor(), stored_events, **kwargs)
                if stored_events:
                    self._insert_stored_events(inserted, stored_events, **kwargs)
            if not stored_events:
                return None
            return self._fetch_ids_after_insert_events(inserted, stored_events, **kwargs)

    insert_events = _rerun_aborted_pipeline(_insert_in_one_round_trip)

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        rows: list[dict[str, Any]] = kwargs.get("c360_rows") or []
        super()._insert_events(curs, stored_events, **kwargs)
        if rows and self.query_table is not None:
            self._upsert_rows(curs, rows)
        metadata: list[dict[str, Any]] = []
        requests: list[dict[str, Any]] = []
        for save, events in commands_of(stored_events, kwargs):
            if save is None:
                continue
            ctx = save.context
            metadata.extend(
                {
                    "i": str(e.originator_id),
                    "v": e.originator_version,
                    "c": ctx.correlation_id,
                    "k": ctx.causation_id,
                    "t": ctx.traceparent,
                    "s": ctx.tracestate,
                }
                for e in events
            )
            if ctx.request_id:
                requests.append(
                    {
                        "r": ctx.request_id,
                        "c": ctx.command,
                        "f": ctx.fingerprint,
                        "a": str(save.aggregate_id),
                        "v": save.version,
                        # The events it appended, to find their log position on a replay.
                        "h": [
                            {"id": str(e.originator_id), "v": e.originator_version} for e in events
                        ],
                        "x": save.extra,
                    }
                )
        # Before the events' table lock: a request id another transaction is recording is
        # waited for without holding it. One statement each for all the commands of the
        # transaction (`json_rows`).
        if metadata:
            curs.execute(
                self._statement(
                    "metadata",
                    lambda: SQL(
                        "INSERT INTO {0}.{1} (originator_id, originator_version,"
                        " correlation_id, causation_id, traceparent, tracestate)"
                        " SELECT * FROM jsonb_to_recordset(%s::jsonb)"
                        " AS (i uuid, v bigint, c text, k text, t text, s text)"
                    ).format(Identifier(self.datastore.schema), self.metadata_table),
                ),
                (json_rows(metadata),),
            )
        if requests:
            # A concurrent retry with the same id fails here on the primary key, so the
            # whole transaction (events included) is rolled back: one effect only.
            curs.execute(
                self._statement(
                    "requests",
                    lambda: SQL(
                        "INSERT INTO {0}.{1} (request_id, command, fingerprint, aggregate_id,"
                        " version, changes, extra) SELECT * FROM jsonb_to_recordset(%s::jsonb)"
                        " AS (r text, c text, f text, a uuid, v bigint, h jsonb, x jsonb)"
                    ).format(Identifier(self.datastore.schema), self.idempotency_table),
                ),
                (json_rows(requests),),
            )

    def add_query_table(self, table: QueryTable) -> set[str]:
        """Create a query table of the service if missing (or changed), and keep it with every
        command. The first added is the main one. Returns the columns of a table that
        another version kept until now (all of them: a column that version did not know is
        stale in the rows it wrote, also after a rollback to it and an upgrade again, when
        the column is there already); none if this process made the table, or the table was
        this version's already (another process of it altered it)."""
        if self.query_table is None:
            self.query_table = table
        self.query_tables[table.name] = table
        self._statements.pop(f"upsert:{table.name}", None)
        digest = _digest([repr(table)])
        with schema_change(self.datastore, f"query:{table.name}", digest) as needed:
            if needed:
                return self._create_query_table(table)
        return set()

    def _create_query_table(self, table: QueryTable) -> set[str]:
        schema = Identifier(self.datastore.schema)
        columns = SQL(", ").join(
            SQL("{} {}").format(Identifier(name), SQL(kind)) for name, kind in table.columns
        )
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = %s AND table_name = %s",
                (self.datastore.schema, table.name),
            )
            had = {str(r["column_name"]) for r in curs.fetchall()}
            curs.execute(
                SQL("SET LOCAL lock_timeout = '{}s'").format(SQL(str(self.datastore.lock_timeout)))
            )
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
        return set(table.column_names()) if had else set()

    def _query_table(self, name: str = "") -> QueryTable:
        if self.query_table is None:
            raise RuntimeError("this application has no query table")
        return self.query_tables[name] if name else self.query_table

    def upsert_rows(self, rows: list[dict[str, Any]]) -> None:
        """Write query-table rows in a transaction of their own (backfills only: commands
        write theirs with their events)."""
        if self.query_table is None or not rows:
            return
        with self.datastore.transaction(commit=True) as curs:
            self._upsert_rows(curs, rows)

    def query_table_is_empty(self) -> bool:
        table = self._query_table()
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT EXISTS (SELECT 1 FROM {}) AS present").format(self._table(table.name))
            )
            row = curs.fetchone()
        return not (row and row["present"])

    def aggregate_ids(self, after: UUID | None, limit: int) -> list[UUID]:
        """Ids of the aggregates in the store, in id order, after `after` (a page)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT originator_id FROM {} WHERE originator_version = 1"
                    " AND (%s::uuid IS NULL OR originator_id > %s::uuid)"
                    " ORDER BY originator_id LIMIT %s"
                ).format(self._table(self.events_table_name)),
                (after, after, limit),
            )
            return [r["originator_id"] for r in curs.fetchall()]

    def _upsert_rows(self, curs: Cursor[DictRow], rows: list[dict[str, Any]]) -> None:
        """Each query table's rows in one statement (`json_rows`). A key given twice takes
        effect as the rows one after the other would: the last one, or the first if rows are
        written once."""
        by_table: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_table.setdefault(row.get(ROW_TABLE, ""), []).append(row)
        for name, table_rows in by_table.items():
            table = self._query_table(name)
            names = table.column_names()
            search = {n for n, kind in table.columns if kind.split()[0] == "tsvector"}

            def upsert(
                table: QueryTable = table, names: list[str] = names, search: set[str] = search
            ) -> Composable:
                # Columns as r0, r1, ... (a search column as its config and text, c0 and t0).
                fields = [
                    SQL("c{0} regconfig, t{0} text").format(SQL(str(i)))
                    if n in search
                    else SQL("r{} {}").format(SQL(str(i)), SQL(kind.split()[0]))
                    for i, (n, kind) in enumerate(table.columns)
                ]
                values = [
                    SQL("to_tsvector(c{0}, t{0})").format(SQL(str(i)))
                    if n in search
                    else SQL("r{}").format(SQL(str(i)))
                    for i, n in enumerate(names)
                ]
                return SQL(
                    "INSERT INTO {0} ({1}) SELECT {2} FROM jsonb_to_recordset(%s::jsonb) AS ({3})"
                    " ON CONFLICT ({4}) DO " + ("NOTHING" if table.write_once else "UPDATE SET {5}")
                ).format(
                    self._table(table.name),
                    SQL(", ").join(Identifier(n) for n in names),
                    SQL(", ").join(values),
                    SQL(", ").join(fields),
                    Identifier(table.key),
                    SQL(", ").join(
                        SQL("{0} = EXCLUDED.{0}").format(Identifier(n)) for n in names[1:]
                    ),
                )

            keyed: dict[Any, dict[str, Any]] = {}
            for row in table_rows:
                if not (table.write_once and row[table.key] in keyed):
                    keyed[row[table.key]] = row
            records = []
            for row in keyed.values():
                record: dict[str, Any] = {}
                for i, n in enumerate(names):
                    if n in search:
                        record[f"c{i}"], record[f"t{i}"] = row[n].config, row[n].text
                    else:
                        record[f"r{i}"] = row[n]
                records.append(record)
            curs.execute(
                self._statement(f"upsert:{table.name}", upsert),
                (json_rows(records, _json_value),),
            )

    def select(self, query: RowQuery) -> list[dict[str, Any]]:
        """Query-table rows (see `RowQuery`), in one indexed statement."""
        table = self._query_table(query.table)
        query.check(table)
        params: list[Any] = []
        conditions = [_sql(table, query.condition, params)]
        if query.after is not None:
            keys = SQL(", ").join(Identifier(c) for c in query.order)
            conditions.append(
                SQL("({}) < ({})").format(keys, SQL(", ").join(SQL("%s") for _ in query.order))
            )
            params.extend(query.after)
        ordering: list[Composable] = []
        if query.rank is not None:
            ordering.append(
                SQL("ts_rank({}, {}) DESC").format(
                    Identifier(query.rank.column), _tsquery(query.rank, params)
                )
            )
        if query.prefer is not None:
            ordering.append(SQL("({}) DESC").format(_sql(table, query.prefer, params)))
        ordering += [SQL("{} DESC").format(Identifier(c)) for c in query.order]
        statement = SQL("SELECT * FROM {0} WHERE {1}{2}{3}").format(
            self._table(table.name),
            SQL(" AND ").join(conditions),
            SQL(" ORDER BY ") + SQL(", ").join(ordering) if ordering else SQL(""),
            SQL(" LIMIT %s") if query.limit is not None else SQL(""),
        )
        if query.limit is not None:
            params.append(query.limit)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, params)
            return [dict(r) for r in curs.fetchall()]

    def find_outcome(self, request_id: str) -> tuple[str, str, CommandOutcome] | None:
        """An earlier request's stored outcome, as (command, fingerprint, outcome)."""
        # One statement on an autocommit connection: no BEGIN and ROLLBACK around it (every
        # command with a request id asks this first).
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self._statement(
                    "outcome",
                    lambda: SQL(
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
                    "SELECT notification_id FROM {} WHERE originator_id = %s"
                    " ORDER BY originator_version DESC LIMIT 1"
                ).format(self._table(self.events_table_name)),
                (aggregate_id,),
            )
            row = curs.fetchone()
        return int(row["notification_id"]) if row else 0

    def with_metadata_statement(self) -> bytes:
        """Notifications after a position (%s) with their metadata, in log order, at most %s."""
        return self._statement(
            "with metadata",
            lambda: SQL(
                "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic,"
                " e.state, coalesce(m.correlation_id, ''), coalesce(m.causation_id, ''),"
                " coalesce(m.traceparent, ''), coalesce(m.tracestate, '')"
                " FROM {0}.{1} e LEFT JOIN {0}.{2} m"
                " ON m.originator_id = e.originator_id"
                " AND m.originator_version = e.originator_version"
                " WHERE e.notification_id > %s ORDER BY e.notification_id LIMIT %s"
            ).format(
                Identifier(self.datastore.schema),
                Identifier(self.events_table_name),
                self.metadata_table,
            ),
        )

    @staticmethod
    def with_metadata(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Notification, EventMetadata]]:
        return [
            (
                Notification(
                    id=position,
                    originator_id=originator_id,
                    originator_version=version,
                    topic=topic,
                    state=bytes(state),
                ),
                EventMetadata(correlation, causation, traceparent, tracestate),
            )
            for (
                position,
                originator_id,
                version,
                topic,
                state,
                correlation,
                causation,
                traceparent,
                tracestate,
            ) in rows
        ]

    def select_with_metadata(
        self, after: int, limit: int
    ) -> list[tuple[Notification, EventMetadata]]:
        """Notifications after a position, each with its metadata, in log order."""
        # One statement on an autocommit connection (its own snapshot): no BEGIN and ROLLBACK
        # around it. Rows as tuples, not the pool's dicts, and in binary (a state as it is,
        # not as hex; an id as 16 bytes, not text to parse): the relay reads every event here.
        with self.datastore.get_connection() as conn:
            cursor = conn.cursor(row_factory=tuple_row, binary=True)
            cursor.execute(self.with_metadata_statement(), (after, limit))
            return self.with_metadata(cursor.fetchall())

    async def select_with_metadata_async(
        self, conn: psycopg.AsyncConnection[Any], after: int, limit: int
    ) -> list[tuple[Notification, EventMetadata]]:
        """`select_with_metadata` on an async connection of the caller's (autocommit): the
        relay reads on its event loop, without a thread hop per read."""
        async with conn.cursor(row_factory=tuple_row, binary=True) as cursor:
            await cursor.execute(self.with_metadata_statement(), (after, limit))
            return self.with_metadata(await cursor.fetchall())

    def strip_item_keys(self, topics: list[str], array: str, keys: list[str]) -> int:
        """Remove `keys` from every item of the top-level list `array` of the stored events of
        `topics` that have any of them; how many events were changed. For personal data an
        older version kept in clear where it no longer keeps it (an erasure must reach it: a
        store's events are otherwise never changed). Idempotent: a second call changes none."""
        if not topics or not keys:
            return 0
        table = self._table(self.events_table_name)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "UPDATE {0} SET state = convert_to(jsonb_set(doc, ARRAY[%(array)s],"
                    " (SELECT coalesce(jsonb_agg(item - %(keys)s::text[] ORDER BY n),"
                    " '[]'::jsonb) FROM jsonb_array_elements(doc -> %(array)s)"
                    " WITH ORDINALITY AS items(item, n)))::text, 'UTF8')"
                    " FROM (SELECT originator_id AS id, originator_version AS v,"
                    " convert_from(state, 'UTF8')::jsonb AS doc FROM {0}"
                    " WHERE topic = ANY(%(topics)s)) AS old"
                    " WHERE {0}.originator_id = old.id AND {0}.originator_version = old.v"
                    " AND jsonb_typeof(old.doc -> %(array)s) = 'array'"
                    " AND EXISTS (SELECT 1 FROM jsonb_array_elements(old.doc -> %(array)s) i"
                    " WHERE jsonb_typeof(i) = 'object' AND i ?| %(keys)s::text[])"
                ).format(table),
                {"topics": topics, "array": array, "keys": keys},
            )
            return curs.rowcount

    def rewrap_keys(
        self,
        table: str,
        subject: str,
        rewrap: Callable[[Any, bytes], bytes | None],
        current: bytes,
        *,
        matching: bool = False,
    ) -> int:
        """Write again the `key` column of the rows of query table `table` that do not start
        with `current` (stored before a KEK was set, or under another; `matching`: that do),
        as `rewrap` gives it (None: leave it); the rows are read in pages of `subject` order.
        How many changed."""
        name = self._table(self._query_table(table).name)
        changed, after = 0, None
        while True:
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(
                    SQL(
                        "SELECT {0} AS s, key FROM {1} WHERE key IS NOT NULL"
                        " AND (substr(key, 1, %s) = %s) = %s"
                        " AND (%s::text IS NULL OR {0}::text > %s)"
                        " ORDER BY {0}::text LIMIT 500 FOR UPDATE"
                    ).format(Identifier(subject), name),
                    (len(current), current, matching, after, after),
                )
                rows = curs.fetchall()
                if not rows:
                    return changed
                updates = [
                    (new, r["s"])
                    for r in rows
                    if (new := rewrap(r["s"], bytes(r["key"]))) is not None
                ]
                if updates:
                    curs.executemany(
                        SQL("UPDATE {} SET key = %s WHERE {} = %s").format(
                            name, Identifier(subject)
                        ),
                        updates,
                    )
                changed += len(updates)
                after = str(rows[-1]["s"])

    def existing(self, aggregate_ids: list[UUID]) -> set[UUID]:
        """Which of these aggregates have events already."""
        if not aggregate_ids:
            return set()
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT DISTINCT originator_id FROM {}"
                    " WHERE originator_id = ANY(%s) AND originator_version = 1"
                ).format(self._table(self.events_table_name)),
                (aggregate_ids,),
            )
            return {r["originator_id"] for r in curs.fetchall()}

    def ids_in_range(self, low: UUID, high: UUID, limit: int) -> list[tuple[UUID, str]]:
        """The aggregates whose ids lie in [low, high] with their first event's topic
        (the primary key's index answers it: no scan)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT originator_id, topic FROM {}"
                    " WHERE originator_id BETWEEN %s AND %s AND originator_version = 1"
                    " ORDER BY originator_id LIMIT %s"
                ).format(self._table(self.events_table_name)),
                (low, high, limit),
            )
            return [(r["originator_id"], r["topic"]) for r in curs.fetchall()]

    def count_events(self) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT count(*) AS n FROM {}").format(self._table(self.events_table_name))
            )
            row = curs.fetchone()
        return int(row["n"]) if row else 0
