"""The timeline read model in PostgreSQL: entries, profiles and the tracking of applied events.

Rows and tracking records are written in one transaction. Tracking is `eventsourcing`'s
multi-row tracking table: one record per (source, notification id), so an event that is
redelivered, re-published or replayed is recognised and changes nothing.
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import psycopg
from eventsourcing.postgres import PostgresDatastore, PostgresFactory
from eventsourcing.utils import Environment
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier, Literal
from unidecode import unidecode

from c360.events.v1 import envelope_pb2
from c360_platform import keywrap, notify, pii
from c360_platform.datakeys import no_keys
from c360_platform.pgstore import (
    TrackingRecorder,
    ensure_schema,
    json_rows,
    pipelined_transaction,
    postgres_env,
)
from c360_timeline.entries import stored
from c360_timeline.erp_inbound import DOCUMENT_TYPES, Document
from c360_timeline.erp_inbound import SOURCE as ERP_SOURCE
from c360_timeline.projection import (
    ChurnRule,
    Doc,
    Entry,
    at_risk_until,
    empty_profile,
    entry_for,
    fold_into,
    loaded_doc,
    observe,
    stored_doc,
    sweep,
)

SCHEMA = "timeline"


def churn_rule_from_env(env: Mapping[str, str] = os.environ) -> ChurnRule:
    """C360_AT_RISK_THRESHOLD (default 4 contacts) and C360_AT_RISK_WINDOW_DAYS (default 30;
    fractions allowed). A change applies to new events; `c360 timeline rebuild` applies it
    to the whole history."""
    try:
        threshold = int(env.get("C360_AT_RISK_THRESHOLD", "4"))
        days = float(env.get("C360_AT_RISK_WINDOW_DAYS", "30"))
    except ValueError as exc:
        raise ValueError(f"C360_AT_RISK_THRESHOLD / C360_AT_RISK_WINDOW_DAYS: {exc}") from None
    if threshold < 1 or not days > 0:
        raise ValueError(
            "C360_AT_RISK_THRESHOLD must be 1 or more and C360_AT_RISK_WINDOW_DAYS more than 0"
        )
    return ChurnRule(threshold, timedelta(days=days))


def name_key(name: str) -> str:
    """Lower-case ASCII form of a name for prefix search ("Žirnovskis" -> "zirnovskis")."""
    return " ".join(unidecode(name).lower().split())


MAX_PREFIX = 24
"""Name prefixes longer than this are not indexed (a search text is cut to this length)."""


def _identity(p: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a profile's search columns are made of (as it stands now: a copy)."""
    return (p["display_name"], tuple(p["emails"]), tuple(p["phones"]))


def _searched(p: Mapping[str, Any]) -> set[UUID]:
    """The customers whose keys a profile's search columns are made with."""
    return pii.subjects([p["display_name"], p["emails"], p["phones"]])


def name_starts(key: str) -> list[str]:
    """The prefixes of a name key a search may give (the whole name's, up to MAX_PREFIX)."""
    return [key[:n] for n in range(1, min(len(key), MAX_PREFIX) + 1)]


def word_starts(key: str) -> list[str]:
    """The prefixes of each word of a name key after the first."""
    return sorted({p for word in key.split()[1:] for p in name_starts(word)})


KeySource = Callable[[Iterable[UUID]], pii.Keys]
SearchColumns = tuple[list[int], list[int], list[int], list[int]]


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


FORGOTTEN_TYPE = "customer.forgotten"
"""The entry of a customer's erasure (`forgotten` records who)."""
KEY_CACHE_SECONDS = 60.0
"""How long the timeline trusts a key it read: a forget is seen at once all the same (the
`forgotten` table, kept with the entries)."""

LAST_SEQ = "(SELECT max(entry_seq) FROM {entries} WHERE customer_id = r.c)"
"""A profile's `last_seq` as its write finds it: its customer's latest entry, the batch's
entries inserted already (through `entries_by_arrival`, one index entry read)."""

SEARCHED_FIELDS = (
    "SELECT customer_id, doc->'display_name' AS display_name,"
    " doc->'emails' AS emails, doc->'phones' AS phones"
)
"""A profile's search columns are made of these fields, not of its whole document: the server
picks them out, and the reindex and a rebuild's fill decode a few values instead of it all."""

NOTIFY_CHANNEL = "c360_timeline"
"""The projector NOTIFYs here in each transaction that applies events (query.py LISTENs),
naming the customers whose entries it added by their `customer_topic`s."""


def customer_topic(customer_id: UUID | str) -> str:
    """The wake-up topic of a customer's watches: the first three hex digits of its id (4,096
    topics), so that a commit names a thousand customers in 4 KB, and a watch is woken by the
    commits about its customer and by one in 4,096 of the others."""
    return str(customer_id)[:3]


def _entry_row(e: Entry) -> dict[str, Any]:
    """An entry as a row of `_write`'s insert, with its reply (`entries.stored`) in base64."""
    message, sealed = stored(e)
    return {
        "e": e.event_id,
        "c": e.customer_id,
        "o": e.occurred_at.isoformat(),
        "s": e.source,
        "p": e.position,
        "t": e.type,
        "m": e.summary,
        "d": e.details,
        "a": e.aggregate_id,
        "v": e.aggregate_version,
        "b": base64.b64encode(message).decode(),
        "x": sealed,
    }


def changed_topics(entries: Iterable[Entry]) -> set[str]:
    """The topics of the customers these entries are about, and of the survivors of the merges
    among them (a survivor's watch then takes in the duplicate's later entries)."""
    topics = {customer_topic(e.customer_id) for e in entries if e.customer_id}
    topics.update(
        customer_topic(e.details["survivor_id"])
        for e in entries
        if e.type == "customer.merged_into" and e.details.get("survivor_id")
    )
    return topics


def _ids(values: Iterable[str]) -> set[UUID]:
    """The customer ids among these texts (an ERP message may name one that is not)."""
    found = set()
    for value in set(values):
        try:
            found.add(UUID(value))
        except ValueError:
            continue
    return found


def search_columns(index: pii.BlindIndex, p: Mapping[str, Any], keys: pii.Keys) -> SearchColumns:
    """A profile's blind indexes: e-mails, phones, name prefixes, later words' prefixes
    (none of what cannot be read: a forgotten customer's data, or values sealed under a
    key this process cannot get)."""

    def readable(values: list[str]) -> list[str]:
        opened = [pii.reveal(v, keys) for v in values]
        return [v for v in opened if v and pii.FORGOTTEN not in v and "pii1~" not in v]

    name = readable([p["display_name"]])
    key = name_key(name[0]) if name else ""
    return (
        index.tokens(e.lower() for e in readable(p["emails"])),
        index.tokens(readable(p["phones"])),
        index.tokens(name_starts(key)),
        index.tokens(word_starts(key)),
    )


_INDEXES: dict[bytes, pii.BlindIndex] = {}


def search_rows(
    index_key: bytes,
    docs: Sequence[Mapping[str, Any]],
    keys: pii.Keys,
    index: pii.BlindIndex | None = None,
) -> str:
    """The search columns of profiles (their customer id, display name, e-mails and phones)
    as the JSON rows of the reindex's UPDATE. Its arguments are all it needs, so that a
    process of the CPU pool can make them: opening the sealed values and some forty keyed
    hashes a profile are most of a reindex's CPU, which during a rebuild or after a bulk
    import held the timeline's interpreter beside the projection."""
    if index is None:
        index = _INDEXES.get(index_key) or _INDEXES.setdefault(index_key, pii.BlindIndex(index_key))

    def row(doc: Mapping[str, Any]) -> dict[str, Any]:
        emails, phones, starts, words = search_columns(index, doc, keys)
        return {"c": str(doc["customer_id"]), "e": emails, "p": phones, "s": starts, "w": words}

    return json_rows(map(row, docs))


def ready_for_search() -> int:
    """In a process of the CPU pool: this module imported (the first task's wait); its pid."""
    return os.getpid()


class Sink(Protocol):
    """Where writes go: a cursor, or `Writes` to send them later."""

    def execute(self, query: Any, params: Any = None, /) -> object: ...

    def executemany(self, query: Any, params_seq: Iterable[Any], /) -> object: ...


class Writes:
    """Statements kept to be sent later, in the order given (a batch's writes, made ready by
    `ReadModel.begin`, sent by `Begun.commit`). Executed on the batch's cursor as they are
    made, a pipeline sends them as soon as its buffer fills: a replayed batch's insert of a
    customer the batch before it also inserts could run first, and that batch's insert then
    waited for this one's transaction, which waits for that batch to commit (a rebuild hung
    for good)."""

    def __init__(self) -> None:
        self.statements: list[tuple[bool, Any, Any]] = []

    def execute(self, query: Any, params: Any = None) -> None:
        self.statements.append((False, query, params))

    def executemany(self, query: Any, params_seq: Iterable[Any]) -> None:
        self.statements.append((True, query, list(params_seq)))

    def send(self, curs: Cursor[DictRow]) -> None:
        for many, query, params in self.statements:
            if many:
                curs.executemany(query, params)
            else:
                curs.execute(query, params)


@dataclass
class Begun:
    """A batch `ReadModel.begin` made ready: its transaction open, its writes not yet sent."""

    applied: int
    """The events it applies."""
    ending: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    """Its transaction and pooled connection, ended by `commit` (nothing for an empty batch)."""
    writes: Writes = field(default_factory=Writes)
    cursor: Cursor[DictRow] | None = None
    """Where `writes` go (None: nothing to send)."""

    def commit(self) -> int:
        """Send the writes and COMMIT (on another thread than `begin` if need be: one at a
        time per batch); the events applied."""
        with self.ending:
            if self.cursor is not None:
                self.writes.send(self.cursor)
        return self.applied


@dataclass
class Carry:
    """What a batch hands to the next one when batches overlap (`ReadModel.carry`)."""

    profiles: dict[str, tuple[Doc, tuple[Any, ...] | None]] = field(default_factory=dict)
    """The documents it folded (as it writes them), each with what its search columns are
    made of (None: written stale)."""
    events: set[str] = field(default_factory=set)
    """The events it wrote (one event at two positions takes effect once)."""


class ReadModel(TrackingRecorder):
    """Timeline entries and 360 profiles, with tracking records in the same transaction."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.rule = ChurnRule()
        self.keys: KeySource = no_keys
        """The customers' data keys: what the profiles' search columns are made from (the
        entries and profiles keep what the events sealed, sealed)."""
        self.prefetch = True
        """Ask for the keys of a batch's customers that this process does not hold as the
        batch begins, in the background: the reindexer (and the first read of a new customer)
        then finds them at hand. The batch does not wait for them: a profile whose keys are
        not at hand is written stale, and the reindexer fills its search columns right after.
        A rebuild's model does not ask: its new profiles are written stale and `reindex`
        fills them beside the replay and after the take-over (see docs/architecture.md,
        Rebuild)."""
        self.carry: Carry | None = None
        """Set (to an empty `Carry`) while a rebuild's replay begins each batch while the writes
        of the one before it run (`begin`, then `Begun.commit`): the next batch folds on the
        documents the one before made, not on the table's (where they may not be yet), and
        reads none of those from it. Only where one writer follows its batches in order (the
        replay, which commits them in order and fails as a whole on any error). None: each
        batch reads what it folds on."""
        self.index_key = b""
        self.index = pii.BlindIndex(b"")
        """The search columns' key (`open_read_model` reads it from `index_keys`)."""
        self.stale_written = False
        """Set when a write left search columns stale (a profile whose keys were not at
        hand), for `take_stale_written`."""
        self.index_keys = SQL("{}.index_keys").format(Identifier(self.datastore.schema))
        s = Identifier(self.datastore.schema)
        self.entries = SQL("{}.entries").format(s)
        self.profiles = SQL("{}.profiles").format(s)
        self.merges = SQL("{}.merges").format(s)
        self.forgotten = SQL("{}.forgotten").format(s)
        self.tracking = SQL("{}.{}").format(s, Identifier(self.tracking_table_name))
        self._composed: dict[str, bytes] = {}
        self.sql_create_statements.extend(
            [
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " entry_seq bigserial UNIQUE,"
                    " event_id uuid PRIMARY KEY,"
                    " customer_id uuid NOT NULL,"
                    " occurred_at timestamptz NOT NULL,"
                    " source text NOT NULL,"
                    " position bigint NOT NULL,"
                    " type text NOT NULL,"
                    " summary text NOT NULL,"
                    " details jsonb NOT NULL,"
                    " aggregate_id uuid NOT NULL,"
                    " aggregate_version bigint NOT NULL)"
                ).format(self.entries),
                # Each entry's reply, made as it is written (c360_timeline.entries): NULL in
                # rows written before, which are made from their columns at each read.
                SQL(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS message bytea,"
                    " ADD COLUMN IF NOT EXISTS sealed boolean"
                ).format(self.entries),
                SQL(
                    "CREATE INDEX IF NOT EXISTS entries_by_customer ON {}"
                    " (customer_id, occurred_at DESC, source DESC, position DESC)"
                ).format(self.entries),
                SQL(
                    "CREATE INDEX IF NOT EXISTS entries_by_arrival ON {} (customer_id, entry_seq)"
                ).format(self.entries),
                # The ERP documents taken (an invoice, a payment, by their number): the ERP
                # intake looks each new one up (`erp_documents`), in a rebuild too.
                SQL(
                    "CREATE INDEX IF NOT EXISTS entries_erp_documents ON {} (aggregate_id)"
                    " WHERE source = 'erp'"
                ).format(self.entries),
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " customer_id uuid PRIMARY KEY,"
                    " kind text NOT NULL, display_name text NOT NULL, name_key text NOT NULL,"
                    " emails bigint[] NOT NULL, phones bigint[] NOT NULL,"
                    " doc jsonb NOT NULL, updated_at timestamptz)"
                ).format(self.profiles),
                # `name_key` stays empty since names are sealed (search: name_starts and
                # word_starts); the index that served it goes.
                SQL("DROP INDEX IF EXISTS {}.profiles_by_name").format(
                    Identifier(self.datastore.schema)
                ),
                # When each at-risk flag clears, for the sweep.
                SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS at_risk_until timestamptz").format(
                    self.profiles
                ),
                SQL(
                    "CREATE INDEX IF NOT EXISTS profiles_at_risk ON {} (at_risk_until)"
                    " WHERE at_risk_until IS NOT NULL"
                ).format(self.profiles),
                SQL("CREATE INDEX IF NOT EXISTS profiles_by_email ON {} USING gin (emails)").format(
                    self.profiles
                ),
                SQL("CREATE INDEX IF NOT EXISTS profiles_by_phone ON {} USING gin (phones)").format(
                    self.profiles
                ),
                # Search without names in clear: blind indexes of the name's prefixes and of
                # its later words' (and `emails`, `phones` hold blind indexes too).
                SQL(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS name_starts bigint[] NOT NULL"
                    " DEFAULT '{{}}'"
                ).format(self.profiles),
                SQL(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS word_starts bigint[] NOT NULL"
                    " DEFAULT '{{}}'"
                ).format(self.profiles),
                # Search columns of text tokens ("bi1~" and 32 hex digits, before 64-bit
                # integer ones): each token becomes its first 64 bits, the integer the same
                # value's token is now (no value has to be read again), and the GIN indexes
                # are built again on the integers.
                SQL(
                    "DO $$ BEGIN IF EXISTS (SELECT 1 FROM information_schema.columns"
                    " WHERE table_schema = {schema} AND table_name = 'profiles'"
                    " AND column_name = 'emails' AND udt_name = '_text') THEN"
                    " CREATE FUNCTION pg_temp.search_tokens(t text[]) RETURNS bigint[]"
                    " LANGUAGE sql IMMUTABLE AS 'SELECT coalesce(array_agg("
                    "(''x'' || substr(x, 5, 16))::bit(64)::bigint ORDER BY n), ''{{}}'')"
                    " FROM unnest(t) WITH ORDINALITY AS u (x, n)';"
                    " ALTER TABLE {profiles} ALTER COLUMN name_starts DROP DEFAULT,"
                    " ALTER COLUMN word_starts DROP DEFAULT;"
                    " ALTER TABLE {profiles}"
                    " ALTER COLUMN emails TYPE bigint[] USING pg_temp.search_tokens(emails),"
                    " ALTER COLUMN phones TYPE bigint[] USING pg_temp.search_tokens(phones),"
                    " ALTER COLUMN name_starts TYPE bigint[]"
                    " USING pg_temp.search_tokens(name_starts),"
                    " ALTER COLUMN word_starts TYPE bigint[]"
                    " USING pg_temp.search_tokens(word_starts);"
                    " ALTER TABLE {profiles} ALTER COLUMN name_starts SET DEFAULT '{{}}',"
                    " ALTER COLUMN word_starts SET DEFAULT '{{}}';"
                    " END IF; END $$"
                ).format(schema=Literal(self.datastore.schema), profiles=self.profiles),
                SQL(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS search_stale boolean NOT NULL"
                    " DEFAULT false"
                ).format(self.profiles),
                SQL(
                    "CREATE INDEX IF NOT EXISTS profiles_search_stale ON {} (customer_id)"
                    " WHERE search_stale"
                ).format(self.profiles),
                SQL(
                    "CREATE INDEX IF NOT EXISTS profiles_by_name_start ON {} USING gin"
                    " (name_starts)"
                ).format(self.profiles),
                SQL(
                    "CREATE INDEX IF NOT EXISTS profiles_by_word_start ON {} USING gin"
                    " (word_starts)"
                ).format(self.profiles),
                # Each profile's latest entry (its `entry_seq`), written with the profile: the
                # changed profiles after a cursor are a range of this index, where grouping the
                # entries after the cursor by customer read all of them for each page (a follower
                # reading every profile from 0 read the entries some N/page times over). Filled
                # from the entries where empty (the DDL runs once per change of it).
                SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS last_seq bigint").format(
                    self.profiles
                ),
                SQL(
                    "UPDATE {profiles} AS p SET last_seq = (SELECT max(entry_seq) FROM {entries}"
                    " WHERE customer_id = p.customer_id) WHERE p.last_seq IS NULL"
                ).format(profiles=self.profiles, entries=self.entries),
                SQL("CREATE INDEX IF NOT EXISTS profiles_by_last_seq ON {} (last_seq)").format(
                    self.profiles
                ),
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, key bytea NOT NULL)"
                ).format(self.index_keys),
                # Who was forgotten: reads treat their keys as gone at once, whatever a
                # process may still hold of them (its key cache).
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (customer_id uuid PRIMARY KEY,"
                    " forgotten_at timestamptz NOT NULL)"
                ).format(self.forgotten),
                # Who is (or was) merged into whom, from the duplicate's merge and unmerge
                # events: the groups of GetTimeline and GetProfile, now and as of a time.
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " merge_id uuid PRIMARY KEY,"
                    " duplicate_id uuid NOT NULL,"
                    " survivor_id uuid NOT NULL,"
                    " merged_at timestamptz NOT NULL,"
                    " unmerged_at timestamptz)"
                ).format(self.merges),
                SQL(
                    "CREATE INDEX IF NOT EXISTS merges_by_survivor ON {} (survivor_id, merged_at)"
                ).format(self.merges),
                SQL(
                    "CREATE INDEX IF NOT EXISTS merges_by_duplicate ON {} (duplicate_id, merged_at)"
                ).format(self.merges),
            ]
        )

    def _sql(self, text: str) -> bytes:
        """A statement of the projection's path with the read model's tables named in it
        ({entries}, {profiles}, {tracking}, {merges}, {forgotten}), composed once and kept:
        composing costs some 10 us per statement and batch."""
        found = self._composed.get(text)
        if found is None:
            tables = {
                "entries": self.entries,
                "profiles": self.profiles,
                "tracking": self.tracking,
                "merges": self.merges,
                "forgotten": self.forgotten,
            }
            found = self._composed[text] = SQL(text).format(**tables).as_bytes(None)
        return found

    def apply(self, envelopes: Sequence[envelope_pb2.Envelope]) -> int:
        """Apply a batch in one transaction; events applied before are skipped. Returns the
        number of events applied now."""
        return self.begin(envelopes).commit()

    def begin(self, envelopes: Sequence[envelope_pb2.Envelope]) -> Begun:
        """A batch read and folded, its writes made ready in its transaction (the profiles it
        changes locked), not yet sent: `commit` sends them. A rebuild's replay begins the
        next batch while this one's writes run in PostgreSQL (`carry`)."""
        entries: list[Entry] = []
        seen: set[tuple[str, int]] = set()
        for env in envelopes:
            key = (env.source, env.source_position)
            if key not in seen:
                seen.add(key)
                entries.append(entry_for(env))
        if not entries:
            return Begun(0)
        attached = [e for e in entries if e.customer_id]
        prefetch = getattr(self.keys, "prefetch", None) if self.prefetch else None
        if prefetch is not None and attached:
            # Asked while the batch is read and folded; the profiles' writes wait for them.
            prefetch(_ids(e.customer_id for e in attached))
        # In one round trip: BEGIN, what is applied already, which events are in, and the
        # profiles these events change (locked); the writes then go in a second one, with
        # the COMMIT (a pipeline: each statement no longer waits for the one before).
        with contextlib.ExitStack() as stack:
            conn = stack.enter_context(self.datastore.get_connection())
            stack.enter_context(pipelined_transaction(conn))
            writes = Writes()
            applied = self._prepare(conn, entries, attached, writes)
            # Still open: `commit` sends the writes and ends it (on an error above, the stack
            # rolled it back).
            return Begun(applied, stack.pop_all(), writes, conn.cursor())

    def _prepare(
        self,
        conn: psycopg.Connection[DictRow],
        entries: list[Entry],
        attached: list[Entry],
        writes: Writes,
    ) -> int:
        """`begin`'s reads in its transaction, and its writes made ready in `writes`; how
        many events it applies."""
        carry = self.carry
        if carry is not None:
            # The batch before (its writes may not be committed yet) folded these profiles
            # and wrote these events: its documents are the ones to fold on, not the table's.
            attached = [e for e in attached if e.event_id not in carry.events]
        curs, in_entries, in_profiles = conn.cursor(), conn.cursor(), conn.cursor()
        curs.execute(
            self._sql(
                "SELECT application_name, notification_id FROM {tracking}"
                " WHERE (application_name, notification_id) IN"
                " (SELECT * FROM unnest(%s::text[], %s::bigint[]))"
            ),
            ([e.source for e in entries], [e.position for e in entries]),
        )
        if attached:
            in_entries.execute(
                self._sql("SELECT event_id FROM {entries} WHERE event_id = ANY(%s::uuid[])"),
                ([e.event_id for e in attached],),
            )
            in_profiles.execute(
                self._sql(
                    "SELECT customer_id, doc, search_stale FROM {profiles}"
                    " WHERE customer_id = ANY(%s::uuid[]) ORDER BY customer_id FOR UPDATE"
                ),
                (
                    sorted(
                        {e.customer_id for e in attached}
                        - (carry.profiles.keys() if carry is not None else set())
                    ),
                ),
            )
        done = {(r["application_name"], r["notification_id"]) for r in curs.fetchall()}
        fresh = [e for e in entries if (e.source, e.position) not in done]
        if not fresh:
            return 0
        self._check_has_multi_row_tracking_table(curs)
        self._record_tracking(writes, fresh)
        # Delivered at commit: it wakes the read-your-writes waits of every timeline
        # process, and the watches of the customers it names.
        writes.execute(
            "SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, notify.payload(changed_topics(fresh)))
        )
        # Events about no customer (a product, a price list, a lead not yet linked) are
        # tracked as applied but make no entry: a timeline is a customer's.
        unattached = sum(1 for e in fresh if not e.customer_id)
        fresh = [e for e in fresh if e.customer_id]
        if not fresh:
            return unattached
        if carry is not None:
            fresh = [e for e in fresh if e.event_id not in carry.events]
            if not fresh:
                return unattached
        # One event at two positions (an ERP message sent twice) takes effect once.
        known = {str(r["event_id"]) for r in in_entries.fetchall()}
        first = {e.event_id: e for e in reversed(fresh) if e.event_id not in known}
        fresh = [e for e in fresh if first.get(e.event_id) is e]
        if not fresh:
            return unattached
        customer_ids = sorted({e.customer_id for e in fresh})
        profiles: dict[str, Doc] = {}
        indexed: dict[str, tuple[Any, ...]] = {}
        for r in in_profiles.fetchall():
            profiles[str(r["customer_id"])] = loaded_doc(r["doc"])
            if not r["search_stale"]:
                indexed[str(r["customer_id"])] = _identity(r["doc"])
        if carry is not None:
            for cid in customer_ids:
                if cid in carry.profiles:
                    profiles[cid], identity = carry.profiles[cid]
                    if identity is not None:
                        indexed[cid] = identity
        rows: list[Entry] = []
        for e in fresh:
            # The documents were just read (or made): folded in place, no copy per entry.
            profile = profiles.get(e.customer_id) or empty_profile(e.customer_id)
            profile = fold_into(profile, e)
            rows.extend([e, *observe(profile, e, self.rule)])
            profiles[e.customer_id] = profile
        # Most entries (a ticket, an order) leave who the customer is as it was: their
        # search columns stay as they are, with no key and no hash to compute again.
        unchanged = {cid for cid in customer_ids if indexed.get(cid) == _identity(profiles[cid])}
        # Its notification (above) names these customers: the writes add none.
        stale = self._write(
            writes, rows, [profiles[cid] for cid in customer_ids], unchanged, wake=False
        )
        if carry is not None:
            # What the next batch folds on: these documents as this batch writes them,
            # and what their search columns were made of (None: written stale).
            self.carry = Carry(
                {
                    cid: (
                        profiles[cid],
                        indexed[cid]
                        if cid in unchanged
                        else None
                        if cid in stale
                        else _identity(profiles[cid]),
                    )
                    for cid in customer_ids
                },
                {e.event_id for e in fresh},
            )
        return len(fresh) + unattached

    def _record_tracking(self, curs: Sink, entries: Sequence[Entry]) -> None:
        """The library's tracking records of these events, in one statement (its own insert
        is a round trip per record; `_check_has_multi_row_tracking_table` before it)."""
        curs.execute(
            self._sql(
                "INSERT INTO {tracking} (application_name, notification_id)"
                " SELECT * FROM unnest(%s::text[], %s::bigint[])"
            ),
            ([e.source for e in entries], [e.position for e in entries]),
        )

    def sweep(self, now: datetime) -> int:
        """Clear the at-risk flags whose window has passed by `now`, each with its timeline
        entry at the moment it cleared. Returns how many were cleared."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self._sql(
                    "SELECT customer_id, doc FROM {profiles} WHERE at_risk_until <= %s"
                    " ORDER BY customer_id FOR UPDATE"
                ),
                (now,),
            )
            profiles: list[Doc] = []
            rows: list[Entry] = []
            for r in curs.fetchall():
                profile, derived = sweep(loaded_doc(r["doc"]), now, self.rule)
                profiles.append(profile)
                rows.extend(derived)
            if rows:
                self._write(curs, rows, profiles)
        return len(rows)

    def _write(
        self,
        curs: Sink,
        rows: list[Entry],
        profiles: list[Doc],
        unchanged: Collection[str] = (),
        *,
        wake: bool = True,
    ) -> set[str]:
        """Insert entries and upsert profiles (those named in `unchanged` keep their search
        columns: what they are made of did not change), then wake the watches of their
        customers and the read-your-writes waits (unless `wake` is False: the caller's
        transaction notifies them already). Returns the customers whose profiles it wrote
        with stale search columns."""
        self._record_merges(curs, rows)
        forgotten = [(e.customer_id, e.occurred_at) for e in rows if e.type == FORGOTTEN_TYPE]
        if forgotten:
            curs.executemany(
                self._sql("INSERT INTO {forgotten} VALUES (%s, %s) ON CONFLICT DO NOTHING"),
                forgotten,
            )
        # Each of these is one statement of one JSON parameter (`json_rows`), not an
        # executemany, whose row-by-row sending cost more than all the rest of a batch.
        curs.execute(
            self._sql(
                "INSERT INTO {entries} (event_id, customer_id, occurred_at, source, position,"
                " type, summary, details, aggregate_id, aggregate_version, message, sealed)"
                " SELECT e, c, o, s, p, t, m, d, a, v, decode(b, 'base64'), x"
                " FROM ROWS FROM (jsonb_to_recordset(%s::jsonb)"
                " AS (e uuid, c uuid, o timestamptz, s text, p bigint, t text, m text, d jsonb,"
                " a uuid, v bigint, b text, x boolean))"
                " WITH ORDINALITY AS r (e, c, o, s, p, t, m, d, a, v, b, x, n)"
                " ORDER BY n ON CONFLICT (event_id) DO NOTHING"
            ),
            (json_rows(_entry_row(e) for e in rows),),
        )
        stale: set[str] = set()
        kept = [p for p in profiles if p["customer_id"] in unchanged]
        profiles = [p for p in profiles if p["customer_id"] not in unchanged]
        if kept:
            curs.execute(
                self._sql(
                    "UPDATE {profiles} AS p SET kind = r.k, display_name = r.n, doc = r.d,"
                    " updated_at = r.u, at_risk_until = r.r, last_seq = " + LAST_SEQ + " FROM"
                    " jsonb_to_recordset(%s::jsonb)"
                    " AS r (c uuid, k text, n text, d jsonb, u timestamptz, r timestamptz)"
                    " WHERE p.customer_id = r.c"
                ),
                (
                    json_rows(
                        {
                            "c": p["customer_id"],
                            "k": p["kind"],
                            "n": p["display_name"],
                            "d": stored_doc(p),
                            "u": p["updated_at"] or None,
                            "r": _iso(at_risk_until(p)),
                        }
                        for p in kept
                    ),
                ),
            )
        if profiles:
            # Search columns from the keys at hand; a profile whose keys are not (a new
            # customer) is marked stale and indexed by `reindex` right after, so that no key
            # has to be asked for while the entries wait to become visible.
            searched = [_searched(p) for p in profiles]
            known = self.known_keys(set().union(*searched))

            def row(p: Doc, needs: set[UUID]) -> dict[str, Any]:
                readable = needs <= known.keys()
                empty: SearchColumns = ([], [], [], [])
                emails, phones, starts, words = (
                    search_columns(self.index, p, known) if readable else empty
                )
                return {
                    "c": p["customer_id"],
                    "k": p["kind"],
                    "n": p["display_name"],
                    "e": emails,
                    "p": phones,
                    "s": starts,
                    "w": words,
                    "x": not readable,
                    "d": stored_doc(p),
                    "u": p["updated_at"] or None,
                    "r": _iso(at_risk_until(p)),
                }

            upserted = list(map(row, profiles, searched))
            stale = {r["c"] for r in upserted if r["x"]}
            if stale:
                self.stale_written = True
            curs.execute(
                self._sql(
                    "INSERT INTO {profiles} (customer_id, kind, display_name, name_key, emails,"
                    " phones, name_starts, word_starts, search_stale, doc, updated_at,"
                    " at_risk_until, last_seq)"
                    " SELECT c, k, n, '', e, p, s, w, x, d, u, r, " + LAST_SEQ + " FROM"
                    " jsonb_to_recordset(%s::jsonb)"
                    " AS r (c uuid, k text, n text, e bigint[], p bigint[], s bigint[], w bigint[],"
                    " x boolean, d jsonb, u timestamptz, r timestamptz)"
                    " ON CONFLICT (customer_id) DO UPDATE SET kind = EXCLUDED.kind,"
                    " display_name = EXCLUDED.display_name, name_key = '',"
                    " emails = EXCLUDED.emails, phones = EXCLUDED.phones,"
                    " name_starts = EXCLUDED.name_starts, word_starts = EXCLUDED.word_starts,"
                    " search_stale = EXCLUDED.search_stale,"
                    " doc = EXCLUDED.doc, updated_at = EXCLUDED.updated_at,"
                    " at_risk_until = EXCLUDED.at_risk_until, last_seq = EXCLUDED.last_seq"
                ),
                (json_rows(upserted),),
            )
        if wake:
            curs.execute(
                "SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, notify.payload(changed_topics(rows)))
            )
        return stale

    def known_keys(self, customer_ids: set[UUID]) -> pii.Keys:
        """The keys of these customers this process holds now, without asking for any and
        without waiting for those asked for already: under load, waiting for the customer
        service's answer held every batch of new customers (42 % of the projection's time at
        220 registrations/s), and with it their entries' visibility."""
        known = getattr(self.keys, "known", None)
        if known is None:
            return self.keys(customer_ids)
        found: pii.Keys = known(customer_ids)
        return found

    def take_stale_written(self) -> bool:
        """Whether a write left search columns stale since the last call (then cleared)."""
        written, self.stale_written = self.stale_written, False
        return written

    def stale_searches(self) -> bool:
        with self.datastore.transaction(commit=False) as curs:
            # Through the partial index (its order), as `reindex` reads: the planner may
            # otherwise scan every profile, when statistics taken during a burst of new
            # customers say half of them are stale.
            curs.execute(
                self._sql(
                    "SELECT customer_id FROM {profiles} WHERE search_stale"
                    " ORDER BY customer_id LIMIT 1"
                )
            )
            return curs.fetchone() is not None

    def reindex(self, limit: int = 500, *, wait: bool = False, pool: Executor | None = None) -> int:
        """Fill the search columns of profiles marked stale (asking for their keys first,
        outside any transaction). Returns how many were indexed. Profiles another reindex is
        filling are skipped, or with `wait` waited for (a search must find what it filled).
        With `pool`, a process of it makes their blind indexes (`search_rows`)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                self._sql(
                    "SELECT display_name, emails, phones FROM {profiles}"
                    # In the partial index's order: without it the planner may scan every
                    # profile for the few that are stale (statistics taken during a burst of
                    # new customers say half are): 8 ms at 20,000 profiles instead of 2.
                    " WHERE search_stale ORDER BY customer_id LIMIT %s"
                ),
                (limit,),
            )
            wanted = {i for r in curs.fetchall() for i in _searched(r)}
        if not wanted:
            return 0
        keys = self.keys(wanted)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self._sql(
                    SEARCHED_FIELDS + " FROM {profiles} WHERE search_stale ORDER BY customer_id"
                    " LIMIT %s FOR UPDATE" + ("" if wait else " SKIP LOCKED")
                ),
                (limit,),
            )
            docs = [r for r in curs.fetchall() if _searched(r) <= keys.keys()]
            self._fill(curs, docs, keys, pool)
        return len(docs)

    def count_stale(self) -> int:
        """How many profiles' search columns are stale."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._sql("SELECT count(*) AS n FROM {profiles} WHERE search_stale"))
            row = curs.fetchone()
        return int(row["n"]) if row else 0

    def stale_after(self, after: str | None, limit: int) -> list[DictRow]:
        """Up to `limit` profiles with stale search columns after customer `after` (in
        customer order), with what their search columns are made of: a rebuild's pages of
        `index_stale`."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                self._sql(
                    SEARCHED_FIELDS + " FROM {profiles} WHERE search_stale AND customer_id > %s"
                    " ORDER BY customer_id LIMIT %s"
                ),
                (after or "00000000-0000-0000-0000-000000000000", limit),
            )
            return curs.fetchall()

    def index_stale(self, docs: list[DictRow], pool: Executor | None = None) -> int:
        """Fill the search columns of these profiles (from `stale_after`), asking for their
        keys; returns how many it filled (a customer whose key the key holder does not know
        stays stale). Locks nothing: only for a model no one else writes (a rebuild's, once
        its events are applied). UNAVAILABLE if the key holder cannot be asked."""
        keys = self.keys({i for r in docs for i in _searched(r)})
        docs = [r for r in docs if _searched(r) <= keys.keys()]
        with self.datastore.transaction(commit=True) as curs:
            self._fill(curs, docs, keys, pool)
        return len(docs)

    def _fill(
        self, curs: Cursor[DictRow], docs: list[DictRow], keys: pii.Keys, pool: Executor | None
    ) -> None:
        """Write the search columns of these profiles, made from their fields and keys."""
        if docs:
            curs.execute(
                self._sql(
                    "UPDATE {profiles} AS p SET emails = r.e, phones = r.p,"
                    " name_starts = r.s, word_starts = r.w, search_stale = false"
                    " FROM jsonb_to_recordset(%s::jsonb)"
                    " AS r (c uuid, e bigint[], p bigint[], s bigint[], w bigint[])"
                    " WHERE p.customer_id = r.c"
                ),
                (self._search_rows(docs, keys, pool),),
            )

    def _search_rows(self, docs: list[DictRow], keys: pii.Keys, pool: Executor | None) -> str:
        """The reindex's rows, made by a process of `pool` if there is one (a backlog of
        stale profiles: a rebuild, a bulk import), else here."""
        if pool is not None:
            # Only the keys these profiles are sealed under go across, as a plain dict.
            needed = {i: keys[i] for i in set().union(*map(_searched, docs)) if i in keys}
            made: str = pool.submit(search_rows, self.index_key, docs, needed).result()
            return made
        return search_rows(self.index_key, docs, keys, self.index)

    def load_index_key(self, key: bytes | None = None) -> None:
        """Use `key` for the search columns (a rebuild's shadow takes the live one's), else
        the one in `index_keys`, made by the first process that needs one."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "INSERT INTO {} (name, key) VALUES ('search', %s) ON CONFLICT (name) DO {}"
                ).format(
                    self.index_keys,
                    SQL("UPDATE SET key = EXCLUDED.key" if key else "NOTHING"),
                ),
                (keywrap.wrap(key or pii.new_key(), b"search"),),
            )
            curs.execute(SQL("SELECT key FROM {} WHERE name = 'search'").format(self.index_keys))
            row = curs.fetchone()
            assert row is not None
            stored = bytes(row["key"])
            self.index_key = keywrap.unwrap(stored, b"search")
            # One stored before a KEK was set, or under the one before: under the current.
            kw = keywrap.from_env()
            if kw is not None and (again := kw.rewrapped(stored, b"search")) is not None:
                curs.execute(
                    SQL("UPDATE {} SET key = %s WHERE name = 'search'").format(self.index_keys),
                    (again,),
                )
        self.index = pii.BlindIndex(self.index_key)

    def _record_merges(self, curs: Sink, rows: list[Entry]) -> None:
        """Keep `merges` from the duplicates' merge and unmerge entries (upserts, so the order
        of the two within a batch or a replay does not matter)."""
        for e in rows:
            if e.type == "customer.merged_into":
                curs.execute(
                    SQL(
                        "INSERT INTO {} (merge_id, duplicate_id, survivor_id, merged_at)"
                        " VALUES (%s, %s, %s, %s) ON CONFLICT (merge_id) DO UPDATE SET"
                        " duplicate_id = EXCLUDED.duplicate_id,"
                        " survivor_id = EXCLUDED.survivor_id, merged_at = EXCLUDED.merged_at"
                    ).format(self.merges),
                    (e.details["merge_id"], e.customer_id, e.details["survivor_id"], e.occurred_at),
                )
            elif e.type == "customer.unmerged":
                # An unmerge seen before its merge (never in order) gets the merge's row later.
                curs.execute(
                    SQL(
                        "INSERT INTO {} (merge_id, duplicate_id, survivor_id, merged_at,"
                        " unmerged_at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (merge_id)"
                        " DO UPDATE SET unmerged_at = EXCLUDED.unmerged_at"
                    ).format(self.merges),
                    (
                        e.details["merge_id"],
                        e.customer_id,
                        e.details["survivor_id"],
                        e.occurred_at,
                        e.occurred_at,
                    ),
                )

    def truncate(self) -> None:
        """Empty the read model and its tracking (for a rebuild), in one transaction."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("TRUNCATE {}, {}, {}, {} RESTART IDENTITY").format(
                    self.entries, self.profiles, self.merges, self.forgotten
                )
            )
            curs.execute(
                SQL("DELETE FROM {} WHERE application_name <> %s").format(self.tracking),
                (self.table_migration_identifier,),
            )

    def registered(self, customer_ids: Collection[str]) -> set[str]:
        """The customers among `customer_ids` whose registration this read model applied."""
        if not customer_ids:
            return set()
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                self._sql(
                    "SELECT customer_id FROM {profiles}"
                    " WHERE customer_id = ANY(%s::uuid[]) AND kind <> ''"
                ),
                (sorted(customer_ids),),
            )
            return {str(r["customer_id"]) for r in curs.fetchall()}

    def erp_documents(self, aggregate_ids: Collection[str]) -> dict[str, Document]:
        """The ERP documents (invoices issued, payments received) among `aggregate_ids` that
        the timeline took already: by aggregate id, the event that brought each."""
        if not aggregate_ids:
            return {}
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                self._sql(
                    "SELECT DISTINCT ON (aggregate_id) aggregate_id, event_id, type,"
                    " details->'amount'->>'currency' AS currency FROM {entries}"
                    " WHERE source = %s AND aggregate_id = ANY(%s::uuid[]) AND type = ANY(%s)"
                    " ORDER BY aggregate_id, entry_seq"
                ),
                (ERP_SOURCE, sorted(aggregate_ids), list(DOCUMENT_TYPES)),
            )
            return {
                str(r["aggregate_id"]): Document(str(r["event_id"]), r["type"], r["currency"] or "")
                for r in curs.fetchall()
            }

    def applied_positions(self) -> dict[str, int]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT application_name, max(notification_id) AS p FROM {}"
                    " WHERE application_name <> %s GROUP BY application_name"
                ).format(self.tracking),
                (self.table_migration_identifier,),
            )
            return {r["application_name"]: int(r["p"]) for r in curs.fetchall()}


def shadow_schema(schema: str) -> str:
    """Where a rebuild fills the new read model beside the live one."""
    return f"{schema}_rebuild"


DEFERRED_INDEXES = (
    "entries_by_customer",
    "profiles_by_email",
    "profiles_by_phone",
    "profiles_by_name_start",
    "profiles_by_word_start",
    "profiles_by_last_seq",
)
"""The read path's indexes, which the projection's own statements never use: a rebuild's
model is filled without them and has them built once, before it takes over (one sort per
index, where keeping them up to date cost PostgreSQL every row's entries again, the four
GIN indexes some forty keys a profile, and the search columns' second write as much)."""


def open_shadow(live: ReadModel, postgres_url: str) -> ReadModel:
    """An empty read model in the live one's shadow schema (an earlier, unfinished one is
    dropped first), with the live one's churn rule, without its DEFERRED_INDEXES
    (`build_indexes` makes them)."""
    schema = shadow_schema(live.datastore.schema)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(schema)))
    shadow = open_read_model(postgres_url, schema, live.rule, index_key=live.index_key)
    shadow.keys = live.keys
    shadow.prefetch = False
    with shadow.datastore.transaction(commit=True) as curs:
        for name in DEFERRED_INDEXES:
            curs.execute(SQL("DROP INDEX {}.{}").format(Identifier(schema), Identifier(name)))
    return shadow


def build_indexes(shadow: ReadModel) -> None:
    """Build a rebuild's DEFERRED_INDEXES, two at a time (each build is one backend's work,
    the GIN ones a sort of some forty keys a profile: 14-17 s for `name_starts` of 680,000
    profiles), then run its tables' statements again (each creates what is missing only),
    so that its indexes are the ones the live model has."""
    statements = [
        next(s for s in shadow.sql_create_statements if f" {name} ON " in s.as_string())
        for name in DEFERRED_INDEXES
    ]

    def build(statement: Composed) -> None:
        # With the server's maintenance_work_mem: 256MB instead of its default 64MB built
        # name_starts' index of 680,000 profiles no faster (psql, alternating: 19.0 and
        # 20.5 s against 15.9 and 17.1), and two builds at once would hold twice that.
        with shadow.datastore.transaction(commit=True) as curs:
            curs.execute(statement, prepare=False)

    with ThreadPoolExecutor(2, thread_name_prefix="c360-index-build") as builders:
        # The longest first (name prefixes, then later words' prefixes), the others beside.
        list(builders.map(build, sorted(statements, key=_build_order)))
    with shadow.datastore.transaction(commit=True) as curs:
        for statement in shadow.sql_create_statements:
            curs.execute(statement, prepare=False)


def _build_order(statement: Composed) -> int:
    text = statement.as_string()
    return 0 if "name_starts" in text else 1 if "word_starts" in text else 2


def take_over(live: ReadModel, shadow: ReadModel) -> None:
    """Make the shadow's tables the live schema's in one transaction (queries answer from
    the old tables until it commits and from the new ones after), then drop the old ones."""
    name, new = live.datastore.schema, shadow.datastore.schema
    old = f"{name}_old"
    with live.datastore.transaction(commit=True) as curs:
        curs.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(old)))
        curs.execute(SQL("ALTER SCHEMA {} RENAME TO {}").format(Identifier(name), Identifier(old)))
        curs.execute(SQL("ALTER SCHEMA {} RENAME TO {}").format(Identifier(new), Identifier(name)))
    with live.datastore.transaction(commit=True) as curs:
        curs.execute(SQL("DROP SCHEMA {} CASCADE").format(Identifier(old)))


def open_read_model(
    postgres_url: str,
    schema: str = SCHEMA,
    rule: ChurnRule | None = None,
    *,
    index_key: bytes | None = None,
) -> ReadModel:
    """The read model on a PostgreSQL URL, tables created if missing; the churn rule from
    the environment unless given; the search columns' key its own unless given."""
    ensure_schema(postgres_url, schema)
    env = postgres_env(postgres_url, schema)
    env["SINGLE_ROW_TRACKING"] = "f"
    factory = PostgresFactory(Environment("Timeline", env))
    view = factory.tracking_recorder(ReadModel)
    view.rule = rule or churn_rule_from_env()
    view.load_index_key(index_key)
    return view
