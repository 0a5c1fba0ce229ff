"""The customers' data keys in the store of the service that holds them, and the mapper that
seals events with them on the way into the store (see `pii`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic

from c360_platform import keywrap, pii
from c360_platform.pii import FORGOTTEN, Sealer, Sealing, new_key, reveal
from c360_platform.store import ROW_TABLE, AnyOf, CommandRecorder, Eq, QueryTable, RowQuery

_log = logging.getLogger(__name__)

KEYS = QueryTable(
    name="pii_keys",
    columns=(
        ("customer_id", "uuid"),
        # NULL once the customer is forgotten: the row stays, so no key is ever made again.
        ("key", "bytea"),
        ("forgotten_at", "timestamptz"),
    ),
)
"""One data key per customer, written in the transaction of the customer's first event (a
key and the events sealed with it are stored together or not at all). A service that keeps
keys of people who are no customer keys them by its own aggregate's id in the same column
(sales: a prospect's lead)."""

INDEX_KEYS = QueryTable(
    name="index_keys",
    columns=(("name", "text"), ("key", "bytea NOT NULL")),
    write_once=True,
)
"""The keys of a service's blind indexes, made once (by whichever process starts first)."""

KEY_CACHE_SECONDS = 2.0
"""How long a process trusts a key it read (the loads of one command read it once); a forget
in another process is seen at most this late, and the Forgotten event is read regardless."""


ABSENT_CACHE_SECONDS = 60.0
"""How long a keyring that remembers absent ids (`Keyring.remember_absent`) trusts that an id
has no key of its own."""


class Keyring:
    """The customers' data keys, read from the service's key table (`KEYS`) through its
    application; keys of customers being created wait here until their first save."""

    def __init__(
        self, rows: Callable[[RowQuery], list[dict[str, Any]]], *, remember_absent: bool = False
    ) -> None:
        self._rows = rows
        self._lock = threading.Lock()
        self._pending: dict[UUID, bytes] = {}
        self._cache: dict[UUID, tuple[float, bytes | None]] = {}
        self._absent: dict[UUID, float] = {}
        self.remember_absent = remember_absent
        """Also cache that an id has no entry (a keyring asked mostly for others' subjects,
        `WithOwnKeys`): ids are never reused, and a key is made only for a new subject, in
        this process, before it is first looked up elsewhere."""

    def create(self, customer_id: UUID) -> dict[str, Any]:
        """A new key for a customer being created: its key-table row, to save with the
        customer's first events (the mapper seals them with it meanwhile)."""
        key = new_key()
        with self._lock:
            self._pending[customer_id] = key
        stored = keywrap.wrap(key, customer_id.bytes)
        return {
            ROW_TABLE: KEYS.name,
            "customer_id": customer_id,
            "key": stored,
            "forgotten_at": None,
        }

    def forget(self, customer_id: UUID, at: datetime) -> dict[str, Any]:
        """The key-table row that deletes a customer's key (save it with the Forgotten event)."""
        with self._lock:
            self._pending.pop(customer_id, None)
            self._cache[customer_id] = (time.monotonic() + KEY_CACHE_SECONDS, None)
        return {ROW_TABLE: KEYS.name, "customer_id": customer_id, "key": None, "forgotten_at": at}

    def settle(self, customer_ids: Iterable[UUID], saved: bool) -> None:
        """After a save: the pending keys of these customers are stored now, or were not."""
        now = time.monotonic()
        with self._lock:
            for customer_id in customer_ids:
                key = self._pending.pop(customer_id, None)
                if saved and key is not None:
                    self._cache[customer_id] = (now + KEY_CACHE_SECONDS, key)

    def lookup(self, customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
        """Key-table entries of these customers: their key, or None if they were forgotten;
        customers with no entry (none yet, or from before sealing) are left out."""
        now = time.monotonic()
        found: dict[UUID, bytes | None] = {}
        wanted: list[UUID] = []
        with self._lock:
            for customer_id in set(customer_ids):
                if customer_id in self._pending:
                    found[customer_id] = self._pending[customer_id]
                elif (hit := self._cache.get(customer_id)) is not None and hit[0] > now:
                    found[customer_id] = hit[1]
                elif self._absent.get(customer_id, 0.0) <= now:
                    wanted.append(customer_id)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self._rows(
                RowQuery(AnyOf(tuple(Eq("customer_id", i) for i in chunk)), table=KEYS.name)
            )
            with self._lock:
                for row in rows:
                    stored = row["key"]
                    key = (
                        keywrap.unwrap(bytes(stored), row["customer_id"].bytes)
                        if stored is not None
                        else None
                    )
                    found[row["customer_id"]] = key
                    self._cache[row["customer_id"]] = (now + KEY_CACHE_SECONDS, key)
                if self.remember_absent:
                    for customer_id in chunk:
                        if customer_id not in found:
                            self._absent[customer_id] = now + ABSENT_CACHE_SECONDS
                if len(self._cache) > 100_000:
                    self._cache.clear()
                if len(self._absent) > 100_000:
                    self._absent.clear()
        return found

    def keys(self, customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
        """Keys to reveal with: None for forgotten customers and those without a key."""
        ids = list(customer_ids)
        found = self.lookup(ids)
        return {i: found.get(i) for i in ids}

    def cached(self, customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None] | None:
        """`lookup` from what this keyring holds (keys being created, the cache), without
        reading the table; None if any of them must be read (so it never blocks: a
        handler on the event loop answers the customers it just made, the timeline's
        usual ask, with no thread)."""
        now = time.monotonic()
        found: dict[UUID, bytes | None] = {}
        with self._lock:
            for customer_id in customer_ids:
                if customer_id in self._pending:
                    found[customer_id] = self._pending[customer_id]
                elif (hit := self._cache.get(customer_id)) is not None and hit[0] > now:
                    found[customer_id] = hit[1]
                else:
                    return None
        return found


def rewrap_stored(recorder: CommandRecorder, tables: Iterable[QueryTable]) -> int:
    """As a service that holds keys starts: its data keys (`KEYS`) and index keys
    (`INDEX_KEYS`) among `tables` stored otherwise than wrapped under this process's current
    KEK (before a KEK was set, or under the one before) are wrapped under it (see `keywrap`);
    how many. Without a KEK, a key found wrapped stops the start (KeyWrapError): its data
    could not be read."""
    kw = keywrap.from_env()
    subjects: dict[str, tuple[str, Callable[[Any], bytes]]] = {
        KEYS.name: ("customer_id", lambda s: UUID(str(s)).bytes),
        INDEX_KEYS.name: ("name", lambda s: str(s).encode()),
    }
    held = [t for t in tables if t.name in subjects]
    if kw is None and held:
        _log.warning(
            "no %s: data keys are stored as they are, so a copy of the database (a backup, a"
            " disk) reads every customer, and a forgotten customer's key stays in old copies;"
            " set it (`c360 up` does; Kubernetes: the Secret c360-key-wrap)",
            keywrap.ENV,
        )
    changed = 0
    for table in held:
        if table.name in subjects:
            column, subject_of = subjects[table.name]
            changed += _rewrap(recorder, table.name, column, subject_of, kw)
    return changed


def _rewrap(
    recorder: CommandRecorder,
    table: str,
    column: str,
    subject_of: Callable[[Any], bytes],
    kw: keywrap.KeyWrap | None,
) -> int:
    if kw is None:

        def refuse(subject: Any, stored: bytes) -> bytes | None:
            keywrap.unwrap(stored, subject_of(subject))  # raises: this process has no KEK
            return None

        recorder.rewrap_keys(table, column, refuse, keywrap.MAGIC, matching=True)
        return 0

    def again(subject: Any, stored: bytes) -> bytes | None:
        return kw.rewrapped(stored, subject_of(subject))

    return recorder.rewrap_keys(table, column, again, kw.prefix)


class WithOwnKeys:
    """Keys of the service's own data subjects (its `Keyring`: people who are no customer,
    such as prospects' leads) before those of the customers (`others`: the key holder)."""

    def __init__(self, own: Keyring, others: KeySource) -> None:
        self.own = own
        self.others = others

    def lookup(self, customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
        wanted = set(customer_ids)
        found = self.own.lookup(wanted)
        rest = wanted - found.keys()
        if rest:
            found.update(self.others.lookup(rest))
        return found

    def keys(self, customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
        ids = list(customer_ids)
        found = self.lookup(ids)
        return {i: found.get(i) for i in ids}


class KeySource(Protocol):
    """Where a sealing mapper gets keys: the key table (`Keyring`, in the service that holds
    them), the key holder over gRPC (`datakeys.DataKeys`), or `LocalKeys` in memory."""

    def lookup(self, customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
        """Key or None (forgotten) for the customers the key holder knows; others left out."""
        ...

    def keys(self, customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
        """Keys to reveal with: None for forgotten and unknown customers."""
        ...


class LocalKeys:
    """Keys made in memory on first use (an application on the in-memory store: tests and
    tools, where no key holder runs)."""

    def __init__(self) -> None:
        self._keys: dict[UUID, bytes | None] = {}
        self._lock = threading.Lock()

    def lookup(self, customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
        with self._lock:
            return {i: self._keys.setdefault(i, new_key()) for i in customer_ids}

    def keys(self, customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
        return self.lookup(customer_ids)

    def forget(self, customer_id: UUID) -> None:
        with self._lock:
            self._keys[customer_id] = None


class SealingMapper(Mapper[UUID]):
    """The library's mapper with the personal fields of events sealed on the way into the
    store and revealed on the way out (`reveal=False`: kept sealed, as they are published)."""

    def __init__(
        self,
        base: Mapper[UUID],
        sealer: Sealer,
        keyring: KeySource | Callable[[], KeySource],
        *,
        reveal: bool = True,
    ) -> None:
        super().__init__(base.transcoder, base.compressor, base.cipher)
        self.sealer = sealer
        self._keys = keyring
        self.reveals = reveal

    @property
    def keyring(self) -> KeySource:
        """The key source (given, or got from the callable given: set after construction)."""
        keys = self._keys
        return keys() if callable(keys) else keys

    def sealed(self) -> SealingMapper:
        """This mapper, leaving personal fields sealed when reading."""
        return SealingMapper(self, self.sealer, self._keys, reveal=False)

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        topic = get_topic(type(domain_event))
        if not self.sealer.personal(topic):
            return super().to_stored_event(domain_event)
        state = dict(vars(domain_event))
        customer_id = self.sealer.owner(state, domain_event.originator_id, topic)
        copy = object.__new__(type(domain_event))
        if customer_id is not None:
            found = self.keyring.lookup([customer_id])
            if customer_id in found:
                key = found[customer_id]
                # A forgotten customer's new events keep no personal data at all.
                self.sealer.change(
                    topic,
                    state,
                    Sealing(key, customer_id) if key else (lambda v: FORGOTTEN),
                )
            # else: no key holder knows the customer (a ticket logged for an unknown id);
            # there is no one whose erasure would cover the values: they stay as they are.
        object.__setattr__(copy, "__dict__", state)
        return super().to_stored_event(copy)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        event = super().to_domain_event(stored_event)
        if self.reveals and self.sealer.personal(stored_event.topic):
            state = vars(event)
            ids = pii.subjects([v for v in state.values() if isinstance(v, str | list | dict)])
            keys = self.keyring.keys(ids) if ids else {}
            self.sealer.change(stored_event.topic, state, lambda v: reveal(v, keys))
        return event
