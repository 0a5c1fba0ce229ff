"""The in-memory event store: the library's POPO recorder plus what c360 keeps beside the
events (metadata, idempotency records, query-table rows), all under the recorder's lock, so
an application runs without servers (`PERSISTENCE_MODULE=c360_platform.memstore:Factory`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, IntegrityError, Notification
from eventsourcing.persistence import StoredEvent as _StoredEvent
from eventsourcing.popo import POPOApplicationRecorder, POPOFactory

from c360_platform.store import (
    ROW_TABLE,
    CommandOutcome,
    EventMetadata,
    QueryTable,
    RowQuery,
    check_sizes,
    commands_of,
    holds,
    match_score,
)


class MemoryEventRecorder(POPOApplicationRecorder):
    """The library's in-memory application recorder, plus c360's extras in the same step."""

    def __init__(self) -> None:
        super().__init__()
        self.query_table: QueryTable | None = None
        """The main query table (the first added); `query_tables` has it and the others."""
        self.query_tables: dict[str, QueryTable] = {}
        self._rows: dict[str, dict[Any, dict[str, Any]]] = {}
        self._metadata: dict[tuple[UUID, int], EventMetadata] = {}
        self._requests: dict[str, tuple[str, str, CommandOutcome]] = {}

    # -- one atomic step: events, metadata, request outcome, rows --------------------------

    def _assert_uniqueness(self, stored_events: Sequence[_StoredEvent], **kwargs: Any) -> None:
        check_sizes(stored_events)  # as the PostgreSQL recorder: nothing it could not publish
        super()._assert_uniqueness(stored_events, **kwargs)
        seen: set[str] = set()
        for save, _ in commands_of(stored_events, kwargs):
            request_id = save.context.request_id if save is not None else ""
            if request_id and (request_id in self._requests or request_id in seen):
                raise IntegrityError(f"request id {request_id!r} recorded already")
            seen.add(request_id)

    def _update_table(
        self, stored_events: Sequence[_StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = list(super()._update_table(stored_events, **kwargs) or [])
        rows: list[dict[str, Any]] = kwargs.get("c360_rows") or []
        if rows and self.query_table is not None:
            self._upsert(rows)
        position = {
            (e.originator_id, e.originator_version): i
            for e, i in zip(stored_events, ids, strict=True)
        }
        for save, events in commands_of(stored_events, kwargs):
            if save is None:
                continue
            ctx = save.context
            meta = EventMetadata(
                ctx.correlation_id, ctx.causation_id, ctx.traceparent, ctx.tracestate
            )
            for event in events:
                self._metadata[(UUID(str(event.originator_id)), event.originator_version)] = meta
            if ctx.request_id:
                outcome = CommandOutcome(
                    save.aggregate_id,
                    save.version,
                    max(
                        (position.get((e.originator_id, e.originator_version), 0) for e in events),
                        default=0,
                    ),
                    replayed=True,
                    extra=dict(save.extra),
                )
                self._requests[ctx.request_id] = (ctx.command, ctx.fingerprint, outcome)
        return ids

    # -- the query table --------------------------------------------------------------------

    def add_query_table(self, table: QueryTable) -> set[str]:
        if self.query_table is None:
            self.query_table = table
        self.query_tables[table.name] = table
        self._rows.setdefault(table.name, {})
        return set()  # made with every column: none added

    def _table_of(self, name: str) -> QueryTable:
        if self.query_table is None:
            raise RuntimeError("this application has no query table")
        return self.query_tables[name] if name else self.query_table

    def _upsert(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            table = self._table_of(row.get(ROW_TABLE, ""))
            names = table.column_names()
            if table.write_once and row[table.key] in self._rows[table.name]:
                continue
            self._rows[table.name][row[table.key]] = {n: row[n] for n in names}

    def upsert_rows(self, rows: list[dict[str, Any]]) -> None:
        if self.query_table is None or not rows:
            return
        with self._database_lock:
            self._upsert(rows)

    def query_table_is_empty(self) -> bool:
        return not self._rows[self._table_of("").name]

    def select(self, query: RowQuery) -> list[dict[str, Any]]:
        table = self._table_of(query.table)
        query.check(table)
        with self._database_lock:
            rows = [dict(r) for r in self._rows[table.name].values() if holds(query.condition, r)]
        if query.after is not None:
            after = query.after
            rows = [r for r in rows if tuple(r[c] for c in query.order) < after]
        rows.sort(key=lambda r: tuple(r[c] for c in query.order), reverse=True)
        if query.prefer is not None:
            prefer = query.prefer
            rows.sort(key=lambda r: not holds(prefer, r))  # stable: order kept within
        if query.rank is not None:
            rank = query.rank
            rows.sort(key=lambda r: -match_score(rank, r))
        return rows if query.limit is None else rows[: query.limit]

    # -- what commands and the relay read ---------------------------------------------------

    def aggregate_ids(self, after: UUID | None, limit: int) -> list[UUID]:
        with self._database_lock:
            ids = sorted(UUID(i) for i, versions in self._stored_events_index.items() if versions)
        return [i for i in ids if after is None or i > after][:limit]

    def find_outcome(self, request_id: str) -> tuple[str, str, CommandOutcome] | None:
        with self._database_lock:
            return self._requests.get(request_id)

    def position_of(self, aggregate_id: UUID) -> int:
        with self._database_lock:
            versions = self._stored_events_index.get(str(aggregate_id))
            return versions[max(versions)] + 1 if versions else 0

    def select_with_metadata(
        self, after: int, limit: int
    ) -> list[tuple[Notification, EventMetadata]]:
        notifications = self.select_notifications(after + 1, limit)
        with self._database_lock:
            return [
                (
                    n,
                    self._metadata.get(
                        (UUID(str(n.originator_id)), n.originator_version), EventMetadata()
                    ),
                )
                for n in notifications
            ]

    def strip_item_keys(self, topics: list[str], array: str, keys: list[str]) -> int:
        return 0  # a store in memory holds only what this version wrote

    def rewrap_keys(
        self,
        table: str,
        subject: str,
        rewrap: Callable[[Any, bytes], bytes | None],
        current: bytes,
        *,
        matching: bool = False,
    ) -> int:
        changed = 0
        with self._database_lock:
            for row in self._rows[self._table_of(table).name].values():
                key = row.get("key")
                if key is None or bytes(key).startswith(current) != matching:
                    continue
                new = rewrap(row[subject], bytes(key))
                if new is not None:
                    row["key"] = new
                    changed += 1
        return changed

    def existing(self, aggregate_ids: list[UUID]) -> set[UUID]:
        with self._database_lock:
            return {i for i in aggregate_ids if self._stored_events_index.get(str(i))}

    def ids_in_range(self, low: UUID, high: UUID, limit: int) -> list[tuple[UUID, str]]:
        with self._database_lock:
            found = sorted(
                (UUID(str(e.originator_id)), e.topic)
                for e in self._stored_events
                if e.originator_version == 1 and low <= UUID(str(e.originator_id)) <= high
            )
        return found[:limit]

    def count_events(self) -> int:
        with self._database_lock:
            return len(self._stored_events)


class Factory(POPOFactory):
    """The library's in-memory factory, with c360's application recorder."""

    def application_recorder(self) -> ApplicationRecorder:
        return MemoryEventRecorder()
