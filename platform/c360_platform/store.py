"""The application side of a service's event store: idempotent, conflict-checked commands on
an `eventsourcing.Application`, with per-event metadata and an optional query table.

The recorder behind it is the library's PostgreSQL recorder with c360's extra tables
(`c360_platform.pgstore`), or the library's in-memory (POPO) recorder with the same extras
kept in memory (`c360_platform.memstore`), so every application also runs without servers
(`ServiceApplication.in_memory()`), as the library's own examples do.

Naming, in one place: source "service-desk" keeps its events in schema `service_desk`, table
`service_desk_events` (`schema_for`, `events_table_for`).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import re
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.scanner import make_scanner
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    NamedTuple,
    Protocol,
    TypeVar,
    cast,
    runtime_checkable,
)
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate, DomainEventProtocol, MutableOrImmutableAggregate
from eventsourcing.persistence import (
    IntegrityError,
    JSONTranscoder,
    Mapper,
    Notification,
    Recording,
    StoredEvent,
)
from eventsourcing.utils import get_topic

from c360_platform import pii
from c360_platform.errors import InvalidArgument, NotFound, VersionConflict
from c360_platform.pii import Sealer

if TYPE_CHECKING:
    from c360_platform.keyring import Keyring, KeySource
    from c360_platform.writer import Writer

A = TypeVar("A", bound=Aggregate)
App = TypeVar("App", bound="ServiceApplication")
T = TypeVar("T")

Steps = Generator["Future[list[int]]", list[int], T]
"""A command's way through its writes: it yields each write it handed to the group-commit
writer and is sent the write's notification ids (or thrown its error) once it committed.
`run_steps` drives it on a thread; a call's handler awaits it on its event loop
(`commands.run_on_loop`)."""

_log = logging.getLogger(__name__)


def run_steps(steps: Steps[T]) -> T:
    """Drive a command's steps on this thread, waiting here for each of its writes."""
    try:
        waiting = next(steps)
        while True:
            try:
                ids = waiting.result()
            except Exception as exc:
                waiting = steps.throw(exc)
            else:
                waiting = steps.send(ids)
    except StopIteration as done:
        return cast(T, done.value)


_ON_LOOP: contextvars.ContextVar[bool] = contextvars.ContextVar("c360_on_loop", default=False)


@contextlib.contextmanager
def on_loop() -> Iterator[None]:
    """Around a command its call's handler runs on the event loop: `execute` then hands back
    the command's steps undriven (`Deferred`) for the handler to await."""
    reset = _ON_LOOP.set(True)
    try:
        yield
    finally:
        _ON_LOOP.reset(reset)


IN_MEMORY = "c360_platform.memstore:Factory"
"""The persistence module of applications on the in-memory store."""


def schema_for(source: str) -> str:
    """The PostgreSQL schema of a source's store ("service-desk" -> "service_desk"); also the
    `eventsourcing` application name, so that its table is `events_table_for(source)`."""
    return source.replace("-", "_")


def events_table_for(source: str) -> str:
    """The events table (the notification log) of a source's store."""
    return f"{schema_for(source)}_events"


def utc_now() -> datetime:
    """The default clock of applications (tests pass their own)."""
    return datetime.now(UTC)


Clock = Callable[[], datetime]


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


_NOTHING_YET = UUID(int=0)


class Deferred(CommandOutcome):
    """A command taken on by a handler on its event loop (`on_loop`): not run yet; `steps`
    decide it and write it as the handler drives them, and end with its outcome."""

    def __init__(self, steps: Steps[CommandOutcome]) -> None:
        super().__init__(_NOTHING_YET, 0, 0)
        object.__setattr__(self, "steps", steps)

    steps: Steps[CommandOutcome]


class EventMetadata(NamedTuple):
    """Per-event metadata kept beside the event for the published envelope (a tuple: the
    relay reads one with every event)."""

    correlation_id: str = ""
    causation_id: str = ""
    traceparent: str = ""
    tracestate: str = ""


@dataclass(frozen=True)
class SaveContext:
    """What a command's save records beside its events: who asked (metadata, idempotency)
    and its outcome (for a retry)."""

    context: CommandContext
    aggregate_id: UUID
    version: int
    extra: dict[str, str]


def commands_of(
    stored_events: Sequence[StoredEvent], kwargs: Mapping[str, Any]
) -> list[tuple[SaveContext | None, Sequence[StoredEvent]]]:
    """The commands of one `insert_events` call, each with its own events: one command
    (`c360=SaveContext`), or a batch of the group-commit writer (`c360_batch=[(SaveContext,
    number of events)]`, the events in the same order)."""
    batch: list[tuple[SaveContext | None, int]] | None = kwargs.get("c360_batch")
    if batch is None:
        save: SaveContext | None = kwargs.get("c360")
        return [(save, stored_events)] if save is not None else []
    commands: list[tuple[SaveContext | None, Sequence[StoredEvent]]] = []
    start = 0
    for save, count in batch:
        commands.append((save, stored_events[start : start + count]))
        start += count
    return commands


MAX_EVENT_BYTES = 256 * 1024
"""The largest stored state of one event a store takes (bytes of its JSON). Every stored event
is published as one NATS message, and nats-server refuses a message over its `max_payload`
(1 MiB: its default, which the embedded server keeps, and deploy/components/nats/nats.conf
sets); the relay could never publish a larger event, and every event after it would wait
behind it. The envelope around the state (ids, times, trace context, the payload as protobuf,
smaller than its JSON) stays well under 1 MiB at a quarter of it, and no command of c360's
fields and count limits comes near it: a state this large is a request nobody meant."""


def check_sizes(stored_events: Sequence[StoredEvent]) -> None:
    """Refuse (INVALID_ARGUMENT naming the request, before anything is stored) a command one
    of whose events holds more than MAX_EVENT_BYTES of state."""
    largest = max((len(e.state) for e in stored_events), default=0)
    if largest > MAX_EVENT_BYTES:
        raise InvalidArgument.one(
            "request",
            f"this change is too large: {largest} bytes; at most {MAX_EVENT_BYTES}"
            " (send less text, or fewer items, at once)",
        )


def spoken(kind: type) -> str:
    """An aggregate's class as a person names it in a message: `ServiceContract` -> "service
    contract", `LeadList` -> "lead list"."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", kind.__name__).lower()


def require_version(kind: type, key: object, current: int, expected: int | None) -> None:
    """ABORTED unless the caller expects no version or the one there is (`current`; 0 for
    nothing yet): "product … is at version 2, not 1; reload and retry"."""
    if expected is not None and expected != current:
        raise VersionConflict(
            f"{spoken(kind)} {key} is at version {current}, not {expected}; reload and retry"
        )


def fingerprint(data: bytes) -> str:
    """A stable digest of a request, to tell a retry from a reuse of its request id."""
    return hashlib.sha256(data).hexdigest()


# -- query tables -------------------------------------------------------------------------------


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
    write_once: bool = False
    """A row, once written, is never changed: a later write of its key is ignored (keys that
    concurrent processes may each try to create, the first one kept)."""
    refills: tuple[tuple[str, Condition], ...] = ()
    """(column, condition): when a table kept by another version (an older one, or an older
    one again after a rollback) becomes this version's, its rows meeting the condition are
    written again from their aggregates as the service starts (the column's DEFAULT is right
    for the others: a new column of open tickets only)."""

    @property
    def key(self) -> str:
        return self.columns[0][0]

    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def column_type(self, column: str) -> str:
        """The SQL type of a column (`uuid`, `text[]`)."""
        return dict(self.columns)[column].split()[0]

    def array_type(self, column: str) -> str:
        """The SQL array type of an array column (`text[]`)."""
        kind = self.column_type(column)
        if not kind.endswith("[]"):
            raise ValueError(f"{self.name}.{column} is not an array column")
        return kind


ROW_TABLE = "_table"
"""A query row carrying this key goes to the table of that name (one of the service's
`more_tables`); without it, to the service's main query table."""


@dataclass(frozen=True)
class Searchable:
    """The value of a text-search (`tsvector`) column: `text` analysed with the text-search
    configuration `config` (PostgreSQL's `to_tsvector(config, text)`; "simple" analyses no
    language: lower case, no stemming, no stop words)."""

    config: str
    text: str


def words(text: str) -> set[str]:
    """The lower-cased words of a text (the in-memory stand-in for a text-search analysis)."""
    return set(re.findall(r"\w+", text.lower()))


@dataclass(frozen=True)
class Eq:
    """`column` equals `value`."""

    column: str
    value: Any


@dataclass(frozen=True)
class Ne:
    """`column` differs from `value`."""

    column: str
    value: Any


@dataclass(frozen=True)
class In:
    """`column` equals one of `values` (none: false)."""

    column: str
    values: Sequence[Any]


@dataclass(frozen=True)
class Overlaps:
    """The array `column` shares an element with `values`."""

    column: str
    values: Sequence[Any]


@dataclass(frozen=True)
class Matches:
    """The text-search `column` holds the words of `text` analysed with `config`: all of
    them (PostgreSQL's web-search syntax: quotes, `or`, `-word`), or with `any_word` at least
    one (for suggestions made from a longer text)."""

    column: str
    config: str
    text: str
    any_word: bool = False


@dataclass(frozen=True)
class AnyOf:
    """At least one of the conditions holds."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class AllOf:
    """Every condition holds (none: true)."""

    conditions: tuple[Condition, ...]


Condition = Eq | Ne | In | Overlaps | Matches | AnyOf | AllOf


def where(**equal: Any) -> AllOf:
    """Rows whose columns equal these values."""
    return AllOf(tuple(Eq(column, value) for column, value in equal.items()))


def columns_of(condition: Condition) -> set[str]:
    if isinstance(condition, AnyOf | AllOf):
        return set().union(*(columns_of(c) for c in condition.conditions))
    return {condition.column}


def holds(condition: Condition, row: Mapping[str, Any]) -> bool:
    """Whether a row meets a condition (the in-memory evaluation)."""
    if isinstance(condition, Eq):
        return bool(row[condition.column] == condition.value)
    if isinstance(condition, Ne):
        return bool(row[condition.column] != condition.value)
    if isinstance(condition, In):
        return row[condition.column] in set(condition.values)
    if isinstance(condition, Overlaps):
        return not set(row[condition.column]).isdisjoint(condition.values)
    if isinstance(condition, Matches):
        return match_score(condition, row) > 0
    if isinstance(condition, AnyOf):
        return any(holds(c, row) for c in condition.conditions)
    return all(holds(c, row) for c in condition.conditions)


def match_score(m: Matches, row: Mapping[str, Any]) -> int:
    """In memory: how many of the query's words the row's text holds (0 unless all of them
    are there, without `any_word`)."""
    value = row[m.column]
    have = words(value.text) if isinstance(value, Searchable) else set()
    wanted = words(m.text)
    found = len(wanted & have)
    return found if m.any_word or (wanted and found == len(wanted)) else 0


@dataclass(frozen=True)
class RowQuery:
    """Rows of a query table (the service's main one, or `table` of its `more_tables`): those
    meeting `condition`, the best `rank` matches first, then those meeting `prefer`, then in
    descending `order` (whose last column must be unique), after the keyset `after` (the
    order values of the last row of the previous page), at most `limit`."""

    condition: Condition = AllOf(())
    order: tuple[str, ...] = ()
    after: tuple[Any, ...] | None = None
    limit: int | None = None
    prefer: Condition | None = None
    table: str = ""
    rank: Matches | None = None

    def check(self, table: QueryTable) -> None:
        used = columns_of(self.condition) | set(self.order)
        if self.prefer is not None:
            used |= columns_of(self.prefer)
        if self.rank is not None:
            used.add(self.rank.column)
        unknown = used - set(table.column_names())
        if unknown:
            raise ValueError(f"not columns of {table.name}: {sorted(unknown)}")


@runtime_checkable
class CommandRecorder(Protocol):
    """What a `ServiceApplication` needs of its recorder beyond the library's: idempotency,
    metadata, positions and the query table. Both c360 recorders provide it."""

    query_table: QueryTable | None

    def add_query_table(self, table: QueryTable) -> set[str]: ...
    def upsert_rows(self, rows: list[dict[str, Any]]) -> None: ...
    def query_table_is_empty(self) -> bool: ...
    def aggregate_ids(self, after: UUID | None, limit: int) -> list[UUID]: ...
    def select(self, query: RowQuery) -> list[dict[str, Any]]: ...
    def find_outcome(self, request_id: str) -> tuple[str, str, CommandOutcome] | None: ...
    def position_of(self, aggregate_id: UUID) -> int: ...
    def select_with_metadata(
        self, after: int, limit: int
    ) -> list[tuple[Notification, EventMetadata]]: ...
    def strip_item_keys(self, topics: list[str], array: str, keys: list[str]) -> int: ...
    def rewrap_keys(
        self,
        table: str,
        subject: str,
        rewrap: Callable[[Any, bytes], bytes | None],
        current: bytes,
        *,
        matching: bool = False,
    ) -> int: ...
    def existing(self, aggregate_ids: list[UUID]) -> set[UUID]: ...
    def ids_in_range(self, low: UUID, high: UUID, limit: int) -> list[tuple[UUID, str]]: ...
    def count_events(self) -> int: ...
    def max_notification_id(self) -> int | None: ...


MIN_PREFIX = 4
"""Hex digits an id's beginning needs at least to be looked up (fewer match too many)."""


def prefix_range(prefix: str) -> tuple[UUID, UUID]:
    """The lowest and highest UUIDs that begin with `prefix` (hex digits; dashes ignored):
    a short id as people copy it from a list ("466108df"). ValueError if it is not hex."""
    digits = prefix.replace("-", "").lower()
    if not digits or len(digits) > 32 or not all(c in "0123456789abcdef" for c in digits):
        raise ValueError("not the beginning of an id (hexadecimal digits)")
    return UUID(digits.ljust(32, "0")), UUID(digits.ljust(32, "f"))


def kind_of(topic: str) -> str:
    """The aggregate kind of an event topic, as a word: "pkg.domain:ServiceContract.Signed"
    is "service_contract"."""
    name = topic.rpartition(":")[2].split(".")[0]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# -- the application ----------------------------------------------------------------------------


@dataclass
class Decision(Generic[A]):
    """What a command decided: the aggregate it is about, every aggregate it changed, and
    what it created that the caller should get back (an address id, a link id)."""

    subject: A
    changed: list[Aggregate]
    extra: dict[str, str] = field(default_factory=dict)


class EventTranscoder(JSONTranscoder):
    """The library's JSON transcoder, reading a stored event's state with its decoder's own
    scanner: `JSONDecoder.decode` wraps the same scan (same object hook, same values) in two
    whitespace matches and a check. A customer's registration reads in 7.9 us, where it took
    9.6 (the relay, the catch-up read and every aggregate load read each stored event). The
    library writes no whitespace around a state; one that has some, or is not JSON, goes
    through `decode` as before (its error is `decode`'s)."""

    def __init__(self) -> None:
        super().__init__()
        # The scan `self.decoder` makes for itself (`JSONDecoder.__init__`), made the same way.
        self._scan: Callable[[str, int], tuple[Any, int]] = make_scanner(cast(Any, self.decoder))

    def decode(self, data: bytes) -> Any:
        text = data.decode("utf8")
        try:
            value, end = self._scan(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            return self.decoder.decode(text)
        return value


class ServiceApplication(Application[UUID]):
    """An `eventsourcing` application with idempotent, conflict-checked commands."""

    env: ClassVar[dict[str, str]] = {"TRANSCODER_TOPIC": get_topic(EventTranscoder)}
    """Defaults of the library's settings (the environment and the `env` given win)."""
    source: str = ""
    query_table: QueryTable | None = None
    """The service's own query table, if it has one; rows come from `query_row`."""
    more_tables: tuple[QueryTable, ...] = ()
    """Further query tables (with a main one): `query_row` sends a row to one of them by
    naming it under ROW_TABLE. Only the main table is backfilled from an older store."""

    sealer: Sealer | None = None
    """The personal fields of this service's events (`pii.Sealer`), if it has any: sealed in
    the store with the keys of the customers they are about (`keys`), revealed when read, kept
    sealed as published (`publishing_mapper`)."""
    key_table: Keyring | None = None
    """The keys this service holds itself, if any (`keyring.Keyring` on its key table): a key
    made for a command's change (`query_rows` saves its row with the change) seals the
    change's events meanwhile, and is settled by `record`: kept once saved, dropped if not."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        clock: Clock = utc_now,
        keys: KeySource | None = None,
    ) -> None:
        self.keys = keys
        """The customers' data keys, for a service with a `sealer`: the key table in the
        service that holds them, `datakeys.DataKeys` in the others (given by the composition
        root), `LocalKeys` on the in-memory store unless given."""
        self._publishing: Mapper[UUID] | None = None
        super().__init__(env)
        self.clock = clock
        """Now, for the times a command records (a consent decision, a call)."""
        if self.query_table is not None:
            added = {self.query_table.name: self.event_recorder.add_query_table(self.query_table)}
            for table in self.more_tables:
                added[table.name] = self.event_recorder.add_query_table(table)
            if not self.backfill_query_table():
                self.refill_query_tables(added)
            from c360_platform.keyring import rewrap_stored

            # Keys written before a KEK was set, or under the one before, wrapped under this
            # process's (keywrap); a key it cannot open stops the start, naming its KEK.
            if rewrapped := rewrap_stored(self.event_recorder, self.more_tables):
                _log.info("%s: %d stored keys wrapped under the current KEK", self.name, rewrapped)

    @classmethod
    def in_memory(cls: type[App], *, clock: Clock = utc_now) -> App:
        """The application on the in-memory recorder: no servers (unit tests, tools)."""
        return cls(env={"PERSISTENCE_MODULE": IN_MEMORY}, clock=clock)

    def query_row(self, aggregate: Aggregate) -> dict[str, Any] | None:
        """The query-table row of a changed aggregate (None: the aggregate has no row)."""
        return None

    def query_rows(self, aggregate: Aggregate) -> list[dict[str, Any]]:
        """Every query-table row a changed aggregate writes (by default its `query_row`); an
        application whose aggregates keep rows in several tables says so here."""
        row = self.query_row(aggregate)
        return [] if row is None else [row]

    def construct_mapper(self) -> Mapper[UUID]:
        mapper = super().construct_mapper()
        if self.sealer is None:
            return mapper
        from c360_platform.keyring import LocalKeys, SealingMapper

        if self.keys is None and self.env.get("PERSISTENCE_MODULE") == IN_MEMORY:
            self.keys = LocalKeys()
        return SealingMapper(mapper, self.sealer, self.key_source)

    def key_source(self) -> KeySource:
        """The customers' data keys (an application with a sealer needs them)."""
        if self.keys is None:
            raise RuntimeError(f"{self.source or self.name} has no source of customers' keys")
        return self.keys

    @property
    def publishing_mapper(self) -> Mapper[UUID]:
        """The mapper the relay and the catch-up read decode stored events with: the
        application's own, or its sealing view (personal fields stay sealed, as published)."""
        from c360_platform.keyring import SealingMapper

        if not isinstance(self.mapper, SealingMapper):
            return self.mapper
        if self._publishing is None:
            self._publishing = self.mapper.sealed()
        return self._publishing

    def sealed_text(self, customer_id: UUID, text: str) -> str:
        """A text about a customer, sealed as its events seal it (for a query row): under its
        key; "[forgotten]" once it is forgotten; as it is if no key holder knows it."""
        found = self.key_source().lookup([customer_id])
        if customer_id not in found:
            return text
        key = found[customer_id]
        return pii.seal(key, customer_id, text) if key else pii.FORGOTTEN

    def revealed(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Query rows with the sealed texts in them opened (None-keyed: "[forgotten]")."""
        ids = pii.subjects(rows)
        if not ids:
            return rows
        keys = self.key_source().keys(ids)
        return [pii.reveal_all(r, keys) for r in rows]

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
                if isinstance(a, Aggregate) and a.pending_events
                for row in self.query_rows(a)
            ]
        return super().save(*objs, **kwargs)

    writer: Writer | None = None
    """The group-commit writer (writer.py) commands' saves go through, if one is attached
    (`attach_writer`; the PostgreSQL composition root does it unless C360_GROUP_COMMIT=0)."""

    def attach_writer(self, **options: Any) -> Writer:
        """Save commands through a group-commit writer of this application's own."""
        from c360_platform.writer import Writer

        self.writer = Writer(self.recorder, name=f"writer-{self.name}", **options)
        return self.writer

    def deciding(self) -> contextlib.AbstractContextManager[None]:
        """Around a command until its write: the writer's next batch waits for it
        (`Writer.deciding`); nothing without a writer."""
        return self.writer.deciding() if self.writer is not None else contextlib.nullcontext()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        super().close()

    def record(
        self, changed: Sequence[Aggregate], save: SaveContext | None = None
    ) -> list[Recording[UUID]]:
        """Append a command's changes with what it records beside them: through the
        group-commit writer if there is one (batched with concurrent commands), else in a
        save of its own. Same effects either way (rows, snapshots, the aggregate cache).
        Keys made for the changes (`key_table`) are settled after."""
        return run_steps(self._record_steps(changed, save))

    def _record_steps(
        self, changed: Sequence[Aggregate], save: SaveContext | None
    ) -> Steps[list[Recording[UUID]]]:
        if self.key_table is None:
            return (yield from self._record_changes(changed, save))
        ids = [a.id for a in changed]
        try:
            recordings = yield from self._record_changes(changed, save)
        except BaseException:
            self.key_table.settle(ids, saved=False)
            raise
        self.key_table.settle(ids, saved=True)
        return recordings

    def _record_changes(
        self, changed: Sequence[Aggregate], save: SaveContext | None
    ) -> Steps[list[Recording[UUID]]]:
        if self.writer is None:
            return self.save(*changed, c360=save)
        rows = (
            [row for a in changed if a.pending_events for row in self.query_rows(a)]
            if self.query_table is not None
            else []
        )
        processing: ProcessingEvent[UUID] = ProcessingEvent()
        for one in changed:
            # What `ProcessingEvent.collect_events` does for an aggregate, without its two
            # checks against runtime protocols (each walks the protocol's members).
            processing.events.extend(one.collect_events())
            processing.aggregates[one.id] = one
        stored = [self.mapper.to_stored_event(e) for e in processing.events]
        ids = yield self.writer.enqueue(stored, save, rows)
        recordings = [
            Recording(
                d,
                Notification(
                    originator_id=s.originator_id,
                    originator_version=s.originator_version,
                    topic=s.topic,
                    state=s.state,
                    id=i,
                ),
            )
            for d, s, i in zip(processing.events, stored, ids, strict=True)
        ]
        if self.repository.cache and not self.repository.fastforward:
            for aggregate_id, aggregate in processing.aggregates.items():
                self.repository.cache.put(aggregate_id, aggregate)
        self._take_snapshots(processing)
        self._notify(recordings)
        return recordings

    def record_stored(
        self, events: Sequence[StoredEvent], rows: list[dict[str, Any]] | None = None
    ) -> list[int]:
        """Append events encoded already (e.g. by a CPU pool's process) with their query-table
        rows, in one transaction (batched with concurrent commands through the writer, if
        there is one); their notification ids."""
        if self.writer is not None:
            return self.writer.write(events, None, rows)
        ids = self.recorder.insert_events(list(events), c360_rows=rows or [])
        return list(ids or [])

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
            rows = [row for i in ids for row in self.query_rows(self.repository.get(i))]
            recorder.upsert_rows(rows)
            written += len(rows)
        return written

    def refill_query_tables(self, added: Mapping[str, set[str]], batch: int = 500) -> int:
        """Write again from their aggregates the rows a column's `refills` condition names
        (`added`: table name -> the columns that may be stale in it, those of a table another
        version kept until now). Runs at start, in the process that altered the table. A
        command another process (of the version before, during a rolling upgrade) saves
        meanwhile may leave its row's new column at its default until the aggregate's next
        change."""
        written = 0
        main = self.query_table.name if self.query_table else ""
        for table in (self.query_table, *self.more_tables):
            if table is None:
                continue
            conditions = [c for column, c in table.refills if column in added.get(table.name, ())]
            if not conditions:
                continue
            named = "" if table.name == main else table.name
            query = RowQuery(AnyOf(tuple(conditions)), table=named)
            ids = [row[table.key] for row in self.event_recorder.select(query)]
            for start in range(0, len(ids), batch):
                rows = [
                    row
                    for i in ids[start : start + batch]
                    for row in self.query_rows(self.repository.get(i))
                    if (row.get(ROW_TABLE) or main) == table.name
                ]
                self.event_recorder.upsert_rows(rows)
                written += len(rows)
        return written

    def rows(self, query: RowQuery) -> list[dict[str, Any]]:
        """Rows of the service's query table."""
        return self.event_recorder.select(query)

    @property
    def event_recorder(self) -> CommandRecorder:
        recorder = self.recorder
        # Checked once per recorder: an isinstance of a runtime protocol walks its members
        # (some microseconds, several times a command).
        if recorder is not getattr(self, "_checked_recorder", None):
            assert isinstance(recorder, CommandRecorder), "configure a c360 recorder"
            self._checked_recorder = recorder
        return cast(CommandRecorder, recorder)

    def head(self) -> int:
        """The position of the newest event in the store (0 when empty)."""
        return self.event_recorder.max_notification_id() or 0

    def find(self, kind: type[A], aggregate_id: UUID) -> A | None:
        """The aggregate of that id and kind, None if there is none."""
        try:
            found: Any = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, kind) else None

    def load(self, kind: type[A], aggregate_id: UUID, expected_version: int | None = None) -> A:
        """Get an aggregate, NOT_FOUND if missing, ABORTED if it moved past expected_version."""
        try:
            aggregate: Any = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"{spoken(kind)} {aggregate_id} does not exist") from None
        if not isinstance(aggregate, kind):
            raise NotFound(f"{spoken(kind)} {aggregate_id} does not exist")
        require_version(kind, aggregate_id, aggregate.version, expected_version)
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

    def execute(
        self, ctx: CommandContext, decide: Callable[[], Decision[A]], *, pure: bool = False
    ) -> CommandOutcome:
        """Run a command once: replay a retry, else decide, then append atomically.

        `pure`: `decide` reads nothing (it validates its input and builds new aggregates), so
        a retry decides as the first attempt did and is recognised when it is appended (its
        request id is recorded already: the append fails whole) and answered from there, with
        no look for the request id first (a round trip on every command).

        Until it writes (or ends without a write), the group-commit writer's next batch waits
        for it (`deciding`; a call's handler marks it already).

        Called from a call's handler that runs the command on its event loop (`on_loop`), a
        pure command returns a `Deferred` outcome there: decided and handed to the writer,
        the handler awaits its write."""
        steps = self._execute_steps(ctx, decide, pure=pure)
        if _ON_LOOP.get():
            if not (pure and self.decides_on_loop):
                raise RuntimeError(
                    f"{ctx.command} reads the store or asks for keys as it decides: run it on"
                    " a command thread, not on the event loop"
                )
            return Deferred(steps)
        with self.deciding():
            return run_steps(steps)

    @property
    def decides_on_loop(self) -> bool:
        """A pure command of this application can be decided on the event loop: it seals with
        keys it makes itself (or seals nothing), its changes go to a group-commit writer,
        and nothing after the write touches the store (no snapshots)."""
        return (
            self.writer is not None
            and (self.sealer is None or self.key_table is not None)
            and not self.snapshotting_intervals
        )

    def _execute_steps(
        self, ctx: CommandContext, decide: Callable[[], Decision[A]], *, pure: bool
    ) -> Steps[CommandOutcome]:
        if not pure:
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
        save = SaveContext(ctx, subject.id, subject.version, decision.extra)
        try:
            recordings = yield from self._record_steps(decision.changed, save)
        except IntegrityError:
            earlier = self.replay(ctx)
            if earlier is not None:
                return earlier
            raise VersionConflict(
                f"{spoken(type(subject))} {subject.id} was changed concurrently; reload and retry"
            ) from None
        position = max(r.notification.id for r in recordings)
        return CommandOutcome(subject.id, subject.version, position, extra=decision.extra)

    def change(
        self,
        ctx: CommandContext,
        kind: type[A],
        aggregate_id: UUID,
        expected_version: int | None,
        act: Callable[[A], Mapping[str, str] | None],
        *,
        load: Callable[[type[A], UUID, int | None], A] | None = None,
    ) -> CommandOutcome:
        """A command on one aggregate: load it (NOT_FOUND, ABORTED), act on it through one of
        its command methods, append what it recorded. `act` returns what the command created
        that the caller gets back (e.g. {"address_id": ...}), or None."""

        def decide() -> Decision[A]:
            aggregate = (load or self.load)(kind, aggregate_id, expected_version)
            return Decision(aggregate, [aggregate], dict(act(aggregate) or {}))

        return self.execute(ctx, decide)

    def create(
        self, ctx: CommandContext, make: Callable[[], A], *, pure: bool = False
    ) -> CommandOutcome:
        """A command that creates one aggregate (`make` validates and builds it; `pure`: it
        reads nothing of the store, see `execute`)."""

        def decide() -> Decision[A]:
            aggregate = make()
            return Decision(aggregate, [aggregate])

        return self.execute(ctx, decide, pure=pure)
