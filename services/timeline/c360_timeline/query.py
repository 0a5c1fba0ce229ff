"""The timeline query API (gRPC): timeline pages, live watch, 360 profile, search, rebuild."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import functools
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import grpc
import phonenumbers
from google.protobuf import struct_pb2
from google.protobuf.field_mask_pb2 import FieldMask
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from c360.events.v1.catalogue import PUBLISHED
from c360.timeline.v1 import timeline_service_pb2 as api
from c360.timeline.v1 import timeline_service_pb2_grpc as api_grpc
from c360_platform import keywrap, paging, pii
from c360_platform.auth import Role, requires
from c360_platform.commands import parse_id
from c360_platform.consistency import ConsistencyToken
from c360_platform.datakeys import no_keys
from c360_platform.envelope import short_type, timestamp
from c360_platform.errors import (
    DeadlineExceeded,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from c360_platform.notify import Notifications
from c360_platform.pgstore import json_loads
from c360_platform.turns import Turns
from c360_timeline.entries import entry_message, needs_columns, put_entry
from c360_timeline.erp_inbound import AGGREGATES as ERP_AGGREGATES
from c360_timeline.projection import (
    DERIVED_SOURCE,
    DERIVED_TYPES,
    ChurnRule,
    Entry,
    group_profile,
    loaded_doc,
    profile_as_of,
    registry,
)
from c360_timeline.projector import Projector, RebuildProgress
from c360_timeline.readmodel import (
    MAX_PREFIX,
    SCHEMA,
    KeySource,
    churn_rule_from_env,
    customer_topic,
    name_key,
)

T = TypeVar("T")

Ctx = grpc.aio.ServicerContext[Any, Any]
Conn = AsyncConnection[Any]
MAX_PAGE = 500
DEFAULT_PAGE = 50
MAX_PAGE_BYTES = 3 << 20
"""A GetTimeline page holds fewer entries than asked for rather than more than this (gRPC
clients refuse replies over 4 MiB unless told otherwise)."""
MAX_WAIT = 10.0
PUSH_FALLBACK_S = 0.25
"""A read-your-writes wait looks again this often even without a push (one missed NOTIFY)."""
CHANGED_FALLBACK_S = 2.0
"""A ListChangedProfiles that waits for a change looks again this often if nothing pushes
(the LISTEN fan-out wakes it at the projection's next commit)."""
WATCH_FALLBACK_S = 30.0
"""A watch with pushes looks again this often all the same (a thousand idle watches then cost
about 33 small queries a second; every watch is woken anyway when the LISTEN reconnects)."""
WATCH_POLL_S = 0.25
"""A watch without pushes (LISTEN down) looks this often."""
UNKNOWN_WATCH_S = 30.0
"""A watch of a customer the timeline has no entry of waits this long for its first one (a
customer registered a moment ago is projected within it), then ends NOT_FOUND: a mistyped id
is said to be one, not watched for ever."""
_AT_ONCE = 50
"""Values `_opened` reveals in one go (a page of entries); more are revealed in turns
(`Turns`)."""
MAX_DEPTH = 100
# The survivor and every customer merged into it at a time (transitively: A into B, B into C),
# in merge order; `infinity` for now (only merges not undone).
GROUP_CTE = (
    "WITH RECURSIVE grp(id, depth, merged_at) AS ("
    " SELECT %(root)s::uuid, 0, '-infinity'::timestamptz"
    " UNION ALL"
    f" SELECT m.duplicate_id, grp.depth + 1, m.merged_at FROM {SCHEMA}.merges m"
    " JOIN grp ON m.survivor_id = grp.id"
    " WHERE m.merged_at <= %(at)s::timestamptz"
    " AND (m.unmerged_at IS NULL OR m.unmerged_at > %(at)s::timestamptz)"
    f" AND grp.depth < {MAX_DEPTH})"
)
GROUP_SQL = GROUP_CTE + " SELECT id FROM grp ORDER BY depth, merged_at, id"
# The survivor a customer was merged into at a time, if it was.
SURVIVOR_SQL = (
    f"SELECT survivor_id FROM {SCHEMA}.merges WHERE duplicate_id = %(id)s"
    " AND merged_at <= %(at)s::timestamptz"
    " AND (unmerged_at IS NULL OR unmerged_at > %(at)s::timestamptz)"
    " ORDER BY merged_at DESC LIMIT 1"
)
# GetProfile's reads in one round trip: the customer's group (survivor first, then in merge
# order, as GROUP_SQL), which of it is forgotten, the customer it was merged into (one step of
# the chain; SURVIVOR_SQL goes on from there), and its profile document.
PROFILE_SQL = (
    GROUP_CTE + " SELECT"
    " (SELECT array_to_string(array_agg(id ORDER BY depth, merged_at, id), ' ') FROM grp)"
    " AS group_ids,"
    f" (SELECT array_to_string(array_agg(customer_id), ' ') FROM {SCHEMA}.forgotten"
    "  WHERE customer_id IN (SELECT id FROM grp)) AS group_gone,"
    f" ({SURVIVOR_SQL.replace('%(id)s', '%(root)s::uuid')}) AS survivor,"
    f" (SELECT doc FROM {SCHEMA}.profiles WHERE customer_id = %(root)s::uuid) AS doc"
)
ENTRY_COLUMNS = (
    "entry_seq, event_id::text AS event_id, customer_id::text AS customer_id, occurred_at,"
    " source, position, type, summary, details, aggregate_id::text AS aggregate_id,"
    " aggregate_version"
)
"""An entry's columns; ids as text, as the replies carry them."""
REPLY_COLUMNS = (
    ENTRY_COLUMNS.replace(
        " details,", " CASE WHEN message IS NULL OR sealed THEN details END AS details,"
    )
    + ", message, sealed"
)
"""What a reply's entries are made of (`entries.put_entry`): the kept message, and the details
only where the message lacks them (read as JSON, the largest part of a row's cost)."""
# Entries after a cursor of a customer and of those merged into it now, in arrival order.
WATCH_SQL = (
    GROUP_CTE + f" SELECT {REPLY_COLUMNS} FROM {SCHEMA}.entries"
    " WHERE customer_id IN (SELECT id FROM grp) AND entry_seq > %(after)s"
    " ORDER BY entry_seq LIMIT 500"
)
# The customers changed after a cursor, each once at its latest entry, oldest change first:
# a range of the profiles' `last_seq` index (a page reads its own rows, not every entry after
# the cursor grouped by customer, as it once did: a follower reading all profiles from 0 read
# the entries some profiles/page times over).
CHANGED_SQL = (
    "SELECT last_seq AS seq, doc::text AS doc,"
    f" (SELECT survivor_id::text FROM {SCHEMA}.merges m WHERE m.duplicate_id = p.customer_id"
    "  AND m.unmerged_at IS NULL ORDER BY m.merged_at DESC LIMIT 1) AS survivor"
    f" FROM {SCHEMA}.profiles p WHERE last_seq > %s ORDER BY last_seq LIMIT %s"
)
"""ListChangedProfiles' page: each changed profile once, and the customer it is merged into now
(one step of the chain, `_final_survivor` goes on from there), if it is: a merge and an
unmerge are the duplicate's entries, so they change its place in the page order too."""


PAGE_OPTIONS = "-c enable_sort=off -c plan_cache_mode=force_generic_plan"
"""The session settings of the connections GetTimeline reads its page on (`pages`, a pool of
their own: nothing else runs there), so that a page is planned as read: each member's entries
in the order of entries_by_customer up to the page, never all of them sorted. The planner
sizes a member (a join's value) by the average entries per customer; where that is below the
page (most customers freshly registered, with an entry each), reading in order saves nothing
by its estimate, and it may read all of a long history to sort it instead: 7 ms for the first
page of 10,000 entries, against 0.1 ms. The merged pages are still sorted (no plan goes
without that). A setting per statement instead (SET LOCAL, in the same round trip) cost 13 %
of GetTimeline's calls/s in the timeline's Python.

And each form of the page's statement (which filters it has) is planned once per connection,
not at each call: psycopg prepares a statement from its fifth use, and PostgreSQL kept making
a plan for each call's values (the generic plan's estimate is no cheaper under
enable_sort=off), the same plan every time, some 0.2 ms of its CPU a page. 16 calls in flight
on 2 cores, 8,000 customers of ten entries each: 949-1,037 -> 1,135-1,168 pages/s, p99
27.4-29.2 -> 22.2-23.5 ms (of one entry each: unchanged). Each form's plan for any values reads
a page of each member's entries in index order, as those for a call's values did
(tests/integration/test_page_plan.py)."""


def page_sql(where: Sequence[str]) -> str:
    """GetTimeline's page: the customer (`root`) and those merged into it, and a page (`size`)
    of each one's entries that match `where` (conditions on `entries`, with `g.id` for the
    member), in one statement. Per customer, equality on the index on (customer_id,
    occurred_at DESC, ...) yields its entries in order and the scan stops at LIMIT
    (`= ANY(array)` would read every entry of the group and sort them); the pages are merged
    and cut. Each row also carries the group and which of it is forgotten (computed once, not
    per row): what revealing the page needs, in the same round trip. They come as text (ids
    with a space between), read from the first row only: as arrays of uuid, each row's copy
    was parsed into UUIDs, a quarter of the page's reading."""
    order = "ORDER BY occurred_at DESC, source DESC, position DESC LIMIT %(size)s"
    return (
        f"{GROUP_CTE} SELECT p.*,"
        " (SELECT array_to_string(array_agg(id), ' ') FROM grp) AS group_ids,"
        f" (SELECT array_to_string(array_agg(customer_id), ' ') FROM {SCHEMA}.forgotten"
        "  WHERE customer_id IN (SELECT id FROM grp)) AS group_gone"
        " FROM (SELECT DISTINCT id FROM grp) g CROSS JOIN LATERAL"
        f" (SELECT {REPLY_COLUMNS} FROM {SCHEMA}.entries WHERE {' AND '.join(where)}"
        f" {order}) p {order}"
    )


@functools.cache
def entry_types() -> frozenset[str]:
    """Every type of entry the timeline makes: those of the published events of its sources
    (the contract's catalogue, c360.events.v1.catalogue), of the ERP's messages, and its own."""
    sources = registry().sources
    return frozenset(
        [
            *(e.type for e in PUBLISHED.values() if e.source in sources),
            *(short_type(aggregate, name) for name, aggregate in ERP_AGGREGATES.items()),
            *DERIVED_TYPES,
        ]
    )


def _unknown_type(text: str) -> str:
    """Why a type filter matches nothing, with the nearest types if there are any."""
    near = difflib.get_close_matches(text, sorted(entry_types()), n=3, cutoff=0.75)
    hint = f"did you mean {' or '.join(near)}?" if near else "the types are in docs/events.md"
    return f"no entry type {text[:60]!r}; {hint}"


def _filtered(request: api.GetTimelineRequest) -> bool:
    """Whether a request filters its customer's entries (by source, type or time)."""
    return bool(
        request.sources or request.types or request.HasField("since") or request.HasField("until")
    )


def _check_filters(request: api.GetTimelineRequest) -> None:
    """A filter that can match nothing is the caller's mistake: a source the timeline has no
    entries of (a typo, `service_desk` for `service-desk`), a type it makes no entries of
    (`ticket.open` for `ticket.opened`) or an empty time range."""
    known = sorted({*registry().sources, DERIVED_SOURCE})
    wrong = [
        FieldViolation(f"sources[{i}]", f"no source {s[:40]!r}; the timeline's: {', '.join(known)}")
        for i, s in enumerate(request.sources)
        if s not in known
    ]
    types = entry_types()
    wrong += [
        FieldViolation(f"types[{i}]", _unknown_type(t))
        for i, t in enumerate(request.types)
        if t not in types
    ]
    since, until = request.since, request.until
    if (
        request.HasField("since")
        and request.HasField("until")
        and (until.seconds, until.nanos) <= (since.seconds, since.nanos)
    ):
        wrong.append(FieldViolation("until", "must be after since"))
    if wrong:
        raise InvalidArgument(wrong)


def page_query(
    request: api.GetTimelineRequest, customer_id: UUID, size: int
) -> tuple[str, dict[str, Any]]:
    """GetTimeline's statement and its values for a request (`page_sql` with the request's
    filters) and a page of `size` entries, plus one to tell whether there is a next page.
    INVALID_ARGUMENT for filters that can match nothing."""
    _check_filters(request)
    as_of = request.as_of.ToDatetime(tzinfo=UTC) if request.HasField("as_of") else None
    params: dict[str, Any] = {"root": customer_id, "at": as_of or "infinity", "size": size + 1}
    where = ["customer_id = g.id"]
    if request.sources:
        where.append("source = ANY(%(sources)s)")
        params["sources"] = list(request.sources)
    if request.types:
        where.append("type = ANY(%(types)s)")
        params["types"] = list(request.types)
    if request.HasField("since"):
        where.append("occurred_at >= %(since)s")
        params["since"] = request.since.ToDatetime(tzinfo=UTC)
    if request.HasField("until"):
        where.append("occurred_at < %(until)s")
        params["until"] = request.until.ToDatetime(tzinfo=UTC)
    if as_of is not None:
        where.append("occurred_at <= %(as_of)s")
        params["as_of"] = as_of
    if request.page_token:
        where.append("(occurred_at, source, position) < (%(t_at)s, %(t_source)s, %(t_pos)s)")
        params["t_at"], params["t_source"], params["t_pos"] = _read_entry_token(request)
    return page_sql(where), params


def _struct(doc: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(doc)
    return s


NOT_SCOPING = ("wait_for",)
"""GetTimelineRequest's fields a page token is not bound to (a first page may wait for a
write; the next pages need not)."""


def entry_token(r: Mapping[str, Any], request: api.GetTimelineRequest | None = None) -> str:
    """The page token of a page of a timeline that ends at this entry (its sort key); with
    `request`, bound to it: `page_query` refuses it with another customer or filters."""
    key = (r["occurred_at"], r["source"], r["position"])
    if request is None:
        return paging.token(*key)
    return paging.token(*key, paging.request_scope(request, NOT_SCOPING))


def _read_entry_token(request: api.GetTimelineRequest) -> tuple[Any, ...]:
    """The sort key of a request's page token (`paging.read_bound_token`: a token of another
    request continued the other's entries silently)."""
    return paging.read_bound_token(
        request.page_token,
        request,
        datetime.fromisoformat,
        str,
        int,
        ignore=NOT_SCOPING,
        other="another customer or other filters",
    )


def _ts(text: str) -> Any:
    return timestamp(datetime.fromisoformat(text)) if text else None


def _at_risk(doc: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The churn signal as of `now` (a flag whose window has passed is off, swept or not)."""
    churn = doc.get("churn")
    if not churn or not churn["at_risk"] or datetime.fromisoformat(churn["until"]) <= now:
        return {"at_risk": False}
    return {
        "at_risk": True,
        "at_risk_since": _ts(churn["since"]),
        "at_risk_until": _ts(churn["until"]),
        "at_risk_reasons": [
            api.AtRiskReason(
                ticket_id=c["ticket_id"],
                contact=c["contact"],
                channel=c["channel"],
                at=_ts(c["at"]),
                summary=c["summary"],
                event_id=c["event_id"],
            )
            for c in churn["contacts"]
        ],
    }


def entry_from_row(r: dict[str, Any]) -> Entry:
    """A stored entry as the projection's Entry (times in UTC, as the fold wrote them)."""
    return Entry(
        event_id=str(r["event_id"]),
        customer_id=str(r["customer_id"]),
        occurred_at=r["occurred_at"].astimezone(UTC),
        source=r["source"],
        position=r["position"],
        type=r["type"],
        summary=r["summary"],
        details=r["details"],
        aggregate_id=str(r["aggregate_id"]),
        aggregate_version=r["aggregate_version"],
    )


def provenance_messages(doc: dict[str, Any]) -> list[api.FieldProvenance]:
    return [
        api.FieldProvenance(
            field=path,
            source=p["source"],
            type=p["type"],
            occurred_at=_ts(p["occurred_at"]),
            event_id=p["event_id"],
        )
        for path, p in sorted(doc.get("provenance", {}).items())
    ]


CORE_FIELDS = frozenset(
    {
        "customer_id",
        "kind",
        "display_name",
        "emails",
        "phones",
        "owner_id",
        "tags",
        "touches",
        "last_contact_at",
        "last_contact_source",
        "first_seen_at",
        "updated_at",
        "churn",
        "provenance",
    }
)
"""The profile document's keys that Profile carries in fields of its own."""


_FIELDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "customer_id": lambda d: d["customer_id"],
    "kind": lambda d: d["kind"],
    "display_name": lambda d: d["display_name"],
    "emails": lambda d: d["emails"],
    "phones": lambda d: d["phones"],
    "owner_id": lambda d: d["owner_id"],
    "tags": lambda d: d["tags"],
    "touches": lambda d: [
        api.SourceTouches(source=s, count=t["count"], last_at=_ts(t["last_at"]))
        for s, t in sorted(d["touches"].items())
    ],
    "last_contact_at": lambda d: _ts(d["last_contact_at"]),
    "last_contact_source": lambda d: d["last_contact_source"],
    "first_seen_at": lambda d: _ts(d["first_seen_at"]),
    "updated_at": lambda d: _ts(d["updated_at"]),
    "provenance": lambda d: provenance_messages(d),
}
"""The Profile fields made from the document's key of the same name."""
AT_RISK_FIELDS = frozenset({"at_risk", "at_risk_since", "at_risk_until", "at_risk_reasons"})
"""The Profile fields made from the document's churn signal."""
PROFILE_FIELDS = frozenset(api.Profile.DESCRIPTOR.fields_by_name)


def _typed_sections() -> dict[str, Any]:
    """The plug-ins whose profile section has a typed Profile field of its name."""
    return {p.section: p for p in registry().plugins if p.typed_profile is not None}


def profile_fields(mask: FieldMask) -> frozenset[str] | None:
    """The Profile fields a read mask names (None: all of them); INVALID_ARGUMENT names
    each path that is not one."""
    if not mask.paths:
        return None
    unknown = [f"read_mask.paths[{i}]" for i, p in enumerate(mask.paths) if p not in PROFILE_FIELDS]
    if unknown:
        raise InvalidArgument(
            FieldViolation(f, "not a field of Profile (top-level names only)") for f in unknown
        )
    return frozenset(mask.paths)


def needed_parts(doc: dict[str, Any], fields: frozenset[str] | None) -> dict[str, Any]:
    """The part of a profile document that `fields` are made of (a smaller one to reveal; a
    copy either way: revealing sets its keys)."""
    if fields is None:
        return dict(doc)
    sections = _typed_sections()
    attributes = "attributes" in fields
    churn = not AT_RISK_FIELDS.isdisjoint(fields)
    return {
        k: v
        for k, v in doc.items()
        if k in fields
        or k == "customer_id"
        or (k == "churn" and churn)
        or (attributes and k not in CORE_FIELDS and k not in sections)
    }


def profile_message(
    doc: dict[str, Any],
    now: datetime | None = None,
    merged_into: str = "",
    absorbed: list[str] | None = None,
    fields: frozenset[str] | None = None,
) -> api.Profile:
    """The Profile of a profile document: core fields, each plug-in's typed field (from its
    section), and the rest of the document in `attributes`; only `fields` (None: all)."""
    now = now or datetime.now(UTC)
    wanted = PROFILE_FIELDS if fields is None else fields
    sections = _typed_sections()
    values: dict[str, Any] = {name: make(doc) for name, make in _FIELDS.items() if name in wanted}
    values.update(
        (section, plugin.typed_profile(doc[section], now))
        for section, plugin in sections.items()
        if section in wanted and section in doc
    )
    if "attributes" in wanted:
        values["attributes"] = _struct(
            {k: v for k, v in doc.items() if k not in CORE_FIELDS and k not in sections}
        )
    if not AT_RISK_FIELDS.isdisjoint(wanted):
        values.update((k, v) for k, v in _at_risk(doc, now).items() if k in wanted)
    if "merged_into" in wanted:
        values["merged_into"] = merged_into
    if "absorbed" in wanted:
        values["absorbed"] = absorbed or []
    return api.Profile(**values)


@dataclass(frozen=True)
class Forgotten:
    """Which of some customers (`among`) are forgotten (`gone`), as one statement read it."""

    among: set[UUID]
    gone: set[UUID]


class TimelineServicer(api_grpc.TimelineServiceServicer):
    """gRPC servicer for c360.timeline.v1.TimelineService."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        projector: Projector | None,
        rule: ChurnRule | None = None,
        notifications: Notifications | None = None,
        keys: KeySource = no_keys,
        *,
        pages: AsyncConnectionPool[Any],
    ) -> None:
        self.pool = pool
        self.pages = pages
        """Connections with PAGE_OPTIONS, for GetTimeline's page (and its look-ups after)."""
        self.keys = keys
        self._index: pii.BlindIndex | None = None
        """The customers' data keys: what entries and profiles keep sealed is revealed with
        them on the way out (a forgotten customer's reads "[forgotten]")."""
        self.projector = projector
        self.notifications = notifications
        """The projector's commits, pushed (LISTEN); without it, waits poll."""
        # The churn rule the projector applies, for profiles folded again as of a time.
        self.rule = rule or (projector.view.rule if projector else churn_rule_from_env())

    @contextlib.asynccontextmanager
    async def _connection(self, conn: Conn | None) -> AsyncIterator[Conn]:
        """`conn` if the caller holds one (a request's reads share one checkout), else one
        of the pool's."""
        if conn is not None:
            yield conn
            return
        async with self.pool.connection() as fresh:
            yield fresh

    async def _opened(
        self,
        value: list[T],
        conn: Conn | None = None,
        known: Forgotten | None = None,
        turns: Turns | None = None,
    ) -> list[T]:
        """`value` (rows, profile documents) with the sealed values in it revealed; `known`:
        which customers of a group are forgotten, read already (no look-up for those);
        `turns`: the caller's, to make them in (more than _AT_ONCE values get their own)."""
        if turns is None and len(value) > _AT_ONCE:
            turns = Turns()
        if turns is not None:  # other calls served between (a page of changed profiles)
            ids = set().union(*await turns.map(pii.subjects, value))
        else:
            ids = pii.subjects(value)
        if not ids:
            return value
        cached = getattr(self.keys, "cached", None)  # DataKeys answers from its cache at once
        hit: pii.Keys | None = cached(ids) if cached is not None else None
        keys = hit if hit is not None else await asyncio.to_thread(self.keys, ids)
        if known is not None and ids <= known.among:
            gone = known.gone
        else:
            async with self._connection(conn) as c:
                cur = await c.execute(
                    f"SELECT customer_id FROM {SCHEMA}.forgotten WHERE customer_id = ANY(%s)",
                    (list(ids),),
                )
                gone = {row[0] for row in await cur.fetchall()}
        usable = {i: None if i in gone else k for i, k in keys.items()}
        if turns is not None:
            return await turns.map(lambda item: pii.reveal_item(item, usable), value)
        opened: list[T] = pii.reveal_items(value, usable)
        return opened

    async def _opened_entries(
        self, rows: list[dict[str, Any]], conn: Conn | None = None, known: Forgotten | None = None
    ) -> list[dict[str, Any]]:
        """Entry rows with their summaries and details revealed where the reply is made
        from them (`entries.needs_columns`): the only columns that can hold sealed values, so
        the others are not searched for them."""
        needed = [r for r in rows if needs_columns(r)]
        parts = await self._opened([[r["summary"], r["details"]] for r in needed], conn, known)
        for r, (summary, details) in zip(needed, parts, strict=True):
            r["summary"], r["details"] = summary, details
        return rows

    async def _opened_profiles(
        self,
        docs: list[dict[str, Any]],
        conn: Conn | None = None,
        turns: Turns | None = None,
        known: Forgotten | None = None,
    ) -> list[dict[str, Any]]:
        """Profile documents revealed (one look-up for all); a value two merged customers both
        had (sealed under each one's key) once."""
        opened = await self._opened(docs, conn, known, turns)
        for doc in opened:
            for field in ("emails", "phones"):
                if field in doc:
                    doc[field] = list(dict.fromkeys(doc[field]))
        return opened

    async def _applied(self, source: str) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT max(notification_id) FROM {SCHEMA}.timeline_tracking"
                " WHERE application_name = %s",
                (source,),
            )
            row = await cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    async def wait_for(self, token_text: str, context: Ctx) -> None:
        """Wait until the projection has applied the token's position (read-your-writes)."""
        if not token_text:
            return
        token = ConsistencyToken.parse(token_text)
        remaining = context.time_remaining()
        budget = min(MAX_WAIT, remaining if remaining is not None else MAX_WAIT)
        deadline = time.monotonic() + budget
        # A cheap indexed look-up, again at each projector commit (pushed), or after short
        # pauses when nothing pushes.
        pause = 0.005
        while True:
            seen = self.notifications.generation if self.notifications else 0
            if await self._applied(token.source) >= token.position:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(
                    f"the timeline has not applied {token} yet; retry or pass a longer deadline"
                )
            if self.notifications is not None and self.notifications.connected:
                await self.notifications.changed(seen, min(PUSH_FALLBACK_S, left))
            else:
                await asyncio.sleep(min(pause, left))
                pause = min(pause * 1.5, 0.025)

    async def GetTimeline(
        self, request: api.GetTimelineRequest, context: Ctx
    ) -> api.GetTimelineResponse:
        customer_id = parse_id("customer_id", request.customer_id)
        size = paging.count(request.page_size, maximum=MAX_PAGE, default=DEFAULT_PAGE)
        await self.wait_for(request.wait_for, context)
        statement, params = page_query(request, customer_id, size)
        async with self.pages.connection() as conn:
            # Binary: the kept messages as they are (not as hex), times and numbers unparsed.
            async with conn.cursor(row_factory=dict_row, binary=True) as cur:
                await cur.execute(statement, params)
                rows = await cur.fetchall()
            known = None
            if not rows and not request.page_token and not _filtered(request):
                # No entry at all of the customer or those merged into it: as GetProfile.
                when = f" as of {request.as_of.ToJsonString()}" if request.HasField("as_of") else ""
                raise NotFound(
                    f"the timeline has no customer {customer_id}{when} (one registered a moment"
                    " ago: pass the command's consistency token as wait_for)"
                )
            if rows:
                first = rows[0]
                known = Forgotten(
                    {UUID(i) for i in first["group_ids"].split()},
                    {UUID(i) for i in (first["group_gone"] or "").split()},
                )
            page = await self._opened_entries(rows[:size], conn, known)
        reply = api.GetTimelineResponse(
            next_page_token=entry_token(page[-1], request) if len(rows) > size else ""
        )
        used = 0
        for n, r in enumerate(page, 1):
            entry = reply.entries.add()
            put_entry(entry, r)
            used += entry.ByteSize()
            if used > MAX_PAGE_BYTES and n < len(page):
                # A page of long entries (500 notes of 10 KB: 5.1 MB) is cut where a client's
                # default 4 MiB limit would refuse it; the next page goes on from there.
                reply.next_page_token = entry_token(r, request)
                break
        return reply

    async def _watch_look(
        self, customer_id: UUID, cursor: int
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """A watch's look: its customer's entries after `cursor`, and the customer's group.
        A method of its own so that its cursor (with psycopg's loaders and dumpers of its
        columns) is gone when the look is: an idle watch waits holding its rows only."""
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(WATCH_SQL, {"root": customer_id, "at": "infinity", "after": cursor})
            rows = await self._opened_entries(await cur.fetchall(), conn)
            group = await self._group(conn, customer_id, None)
        return rows, group

    async def WatchTimeline(
        self, request: api.WatchTimelineRequest, context: Ctx
    ) -> AsyncIterator[api.WatchTimelineResponse]:
        customer_id = parse_id("customer_id", request.customer_id)
        cursor = request.after_cursor
        # The topics of the customer and of those merged into it (see below).
        topics = [customer_topic(customer_id)]
        unknown_until: float | None = None  # while the timeline has no entry of it
        while True:
            seen = self.notifications.mark(topics) if self.notifications else 0
            # The customer and those merged into it now, in the same statement (one snapshot)
            # as the entries: a merge while watching adds the duplicate's new entries from
            # then on; its older history is in GetTimeline.
            rows, group = await self._watch_look(customer_id, cursor)
            # A merge since the last look names the survivor's topic; the group, and so the
            # topics to wait for, are read again at every look (a changed group makes `seen`
            # stale, and the next wait returns at once: one look more).
            topics = sorted({customer_topic(member) for member in group} or set(topics))
            for r in rows:
                cursor = r["entry_seq"]
                yield api.WatchTimelineResponse(entry=entry_message(r))
            if rows:
                unknown_until = -1.0
                continue
            wait = WATCH_FALLBACK_S
            if unknown_until is None or unknown_until >= 0:
                unknown_until = await self._unknown_until(customer_id, unknown_until)
                if unknown_until >= 0:
                    wait = unknown_until - time.monotonic()
                    if wait <= 0:
                        raise NotFound(
                            f"the timeline has no customer {customer_id}: no entry of it"
                            f" arrived within {UNKNOWN_WATCH_S:g} s"
                        )
            if self.notifications is not None and self.notifications.connected:
                # Woken by the projector's commits that name one of the topics (not by every
                # commit: a thousand idle watches are not a thousand looks per commit); a
                # look now and then all the same.
                await self.notifications.changed_for(topics, seen, min(WATCH_FALLBACK_S, wait))
            else:
                await asyncio.sleep(min(WATCH_POLL_S, wait))

    async def _unknown_until(self, customer_id: UUID, until: float | None) -> float:
        """-1 once the timeline has an entry of the customer (or of one merged into it); else
        when a watch of it gives up (`until`, or UNKNOWN_WATCH_S from now)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"{GROUP_CTE} SELECT EXISTS (SELECT 1 FROM {SCHEMA}.entries"
                " WHERE customer_id IN (SELECT id FROM grp))",
                {"root": customer_id, "at": "infinity"},
            )
            row = await cur.fetchone()
        if row is not None and row[0]:
            return -1.0
        return until if until is not None else time.monotonic() + UNKNOWN_WATCH_S

    @staticmethod
    async def _group(conn: Conn, customer_id: Any, as_of: datetime | None) -> list[str]:
        """The customer and the customers merged into it (then, or now), survivor first."""
        cur = await conn.execute(GROUP_SQL, {"root": customer_id, "at": as_of or "infinity"})
        return list(dict.fromkeys(str(r[0]) for r in await cur.fetchall()))

    @staticmethod
    async def _final_survivor(conn: Conn, customer_id: Any, as_of: datetime | None) -> str:
        """The end of the customer's merge chain (then, or now); "" if it is not merged."""
        current, survivor = str(customer_id), ""
        for _ in range(MAX_DEPTH):
            cur = await conn.execute(SURVIVOR_SQL, {"id": current, "at": as_of or "infinity"})
            row = await cur.fetchone()
            if row is None:
                break
            current = survivor = str(row[0])
        return survivor

    async def GetProfile(
        self, request: api.GetProfileRequest, context: Ctx
    ) -> api.GetProfileResponse:
        customer_id = parse_id("customer_id", request.customer_id)
        await self.wait_for(request.wait_for, context)
        as_of = request.as_of.ToDatetime(tzinfo=UTC) if request.HasField("as_of") else None
        async with self.pool.connection() as conn:
            cur = await conn.execute(PROFILE_SQL, {"root": customer_id, "at": as_of or "infinity"})
            row = await cur.fetchone()
            assert row is not None  # one row, whatever the customer
            group_ids, gone, survivor, stored = row
            group = list(dict.fromkeys(group_ids.split()))
            known = Forgotten({UUID(i) for i in group}, {UUID(i) for i in (gone or "").split()})
            if survivor:  # merged: the end of its chain
                survivor = await self._final_survivor(conn, survivor, as_of) or str(survivor)
            if as_of is None and len(group) == 1:
                doc = loaded_doc(dict(stored)) if stored else None
            else:
                # A survivor's profile, or one as of a time: folded again from the entries.
                doc = await self._profile_doc_as_of(conn, group, as_of or datetime.now(UTC))
            if doc is None:
                when = f" as of {as_of.isoformat()}" if as_of else ""
                raise NotFound(f"no profile for customer {customer_id}{when}")
            (doc,) = await self._opened_profiles([doc], conn, known=known)
        return api.GetProfileResponse(
            profile=profile_message(doc, as_of, merged_into=survivor, absorbed=group[1:])
        )

    async def _profile_doc_as_of(
        self, conn: Conn, group: list[str], as_of: datetime
    ) -> dict[str, Any] | None:
        """The profile of `group[0]` folded again from the entries that occurred by `as_of`,
        in the order the read model applied them, joined with those of the customers merged
        into it then (`group[1:]`)."""
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"SELECT {ENTRY_COLUMNS} FROM {SCHEMA}.entries"
                " WHERE customer_id = ANY(%s::uuid[]) AND occurred_at <= %s AND source <> %s"
                " ORDER BY entry_seq",
                (group, as_of, DERIVED_SOURCE),
            )
            rows = await cur.fetchall()
        entries = [entry_from_row(r) for r in rows]
        if len(group) == 1:
            return await asyncio.to_thread(profile_as_of, group[0], entries, as_of, self.rule)
        return await asyncio.to_thread(group_profile, group[0], group, entries, as_of, self.rule)

    async def SearchCustomers(
        self, request: api.SearchCustomersRequest, context: Ctx
    ) -> api.SearchCustomersResponse:
        text = " ".join(request.text.split())
        if not text:
            raise InvalidArgument.one("text", "is required")
        if len(text) > 200:
            raise InvalidArgument.one("text", "must be at most 200 characters")
        limit = paging.count(request.limit, maximum=100, default=20, field="limit")
        # Profiles the projection left stale (new customers) are indexed first: a search
        # finds what GetProfile shows. Those the background reindex is filling right now are
        # waited for, not skipped (the search would miss them until it commits).
        if self.projector is not None and await asyncio.to_thread(
            self.projector.view.stale_searches
        ):
            await asyncio.to_thread(self.projector.view.reindex, wait=True)
        # Best first: a name that starts with the text, then one with a later word that does.
        # The profiles hold blind indexes of these (keyed hashes), not the values.
        index = await self._search_index()
        rank, where = "0", ""
        if "@" in text:
            matched, where, params = (
                "email",
                "emails @> ARRAY[%s::bigint]",
                [index.token(text.lower())],
            )
        elif phone := _phone(text):
            matched, where, params = "phone", "phones @> ARRAY[%s::bigint]", [index.token(phone)]
        else:
            key = index.token(name_key(text)[:MAX_PREFIX])
            matched = "name"
            rank = "CASE WHEN name_starts @> ARRAY[%s::bigint] THEN 0 ELSE 1 END"
            where = "(name_starts @> ARRAY[%s::bigint] OR word_starts @> ARRAY[%s::bigint])"
            params = [key, key, key]
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"SELECT customer_id, display_name, kind, {rank} AS rank"
                f" FROM {SCHEMA}.profiles WHERE {where}"
                " ORDER BY rank, customer_id LIMIT %s",
                [*params, limit],
            )
            rows = await self._as_survivors(await cur.fetchall(), conn)
            rows = await self._opened(rows, conn)
        rows.sort(key=lambda r: (r["rank"], name_key(r["display_name"]), str(r["customer_id"])))
        return api.SearchCustomersResponse(
            hits=[
                api.SearchHit(
                    customer_id=str(r["customer_id"]),
                    display_name=r["display_name"],
                    kind=r["kind"],
                    matched_on=matched,
                    merged_customer_id=r.get("merged_customer_id", ""),
                )
                for r in rows
            ]
        )

    async def _as_survivors(self, rows: list[dict[str, Any]], conn: Conn) -> list[dict[str, Any]]:
        """Search hits with each merged customer replaced by the end of its merge chain (whose
        360 view holds the duplicate's data), its own id kept as `merged_customer_id`, and each
        customer once, at its best rank: an e-mail of a duplicate finds the customer it is now
        part of, not a record nobody works on."""
        cur = await conn.execute(
            f"SELECT DISTINCT duplicate_id FROM {SCHEMA}.merges"
            " WHERE duplicate_id = ANY(%s::uuid[]) AND unmerged_at IS NULL",
            ([r["customer_id"] for r in rows],),
        )
        merged = {str(r[0]) for r in await cur.fetchall()}
        if not merged:
            return rows
        survivor_of = {m: await self._final_survivor(conn, m, None) for m in merged}
        wanted = [s for s in survivor_of.values() if s]
        async with conn.cursor(row_factory=dict_row) as found:
            await found.execute(
                f"SELECT customer_id, display_name, kind FROM {SCHEMA}.profiles"
                " WHERE customer_id = ANY(%s::uuid[])",
                (wanted,),
            )
            profiles = {str(r["customer_id"]): r for r in await found.fetchall()}
        hits: dict[str, dict[str, Any]] = {}
        for r in sorted(rows, key=lambda r: r["rank"]):
            own = str(r["customer_id"])
            survivor = profiles.get(survivor_of.get(own, ""))
            hit = (
                {**survivor, "rank": r["rank"], "merged_customer_id": own}
                if survivor is not None
                else r
            )
            hits.setdefault(str(hit["customer_id"]), hit)
        return list(hits.values())

    async def _search_index(self) -> pii.BlindIndex:
        """The key of the profiles' search columns (the projector made it; read once)."""
        if self._index is None:
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    f"SELECT key FROM {SCHEMA}.index_keys WHERE name = 'search'"
                )
                row = await cur.fetchone()
            if row is None:
                raise Unavailable("the timeline's read model is not set up yet")
            # Stored wrapped under the deployment's KEK (keywrap), as the projector made it.
            self._index = pii.BlindIndex(keywrap.unwrap(bytes(row[0]), b"search"))
        return self._index

    async def ListChangedProfiles(
        self, request: api.ListChangedProfilesRequest, context: Ctx
    ) -> api.ListChangedProfilesResponse:
        limit = paging.count(request.limit, maximum=MAX_PAGE, default=100, field="limit")
        fields = profile_fields(request.read_mask)
        wait = request.max_wait.ToTimedelta().total_seconds()
        if wait < 0:
            raise InvalidArgument.one("max_wait", "must not be negative")
        budget, remaining = min(wait, MAX_WAIT), context.time_remaining()
        if remaining is not None:  # the empty answer must reach the caller before its deadline
            budget = min(budget, max(0.0, remaining - 0.5))
        deadline = time.monotonic() + budget
        turns = Turns()
        survivors: list[str] = []
        while True:
            seen = self.notifications.generation if self.notifications else 0
            async with self.pool.connection() as conn:
                rows = await self._changed_profiles(conn, request.after_cursor, limit)
                if rows:
                    # Revealed: only the parts of each document that the fields asked for need.
                    # A page of many profiles is made in turns (Turns: other calls are served
                    # between, not behind all of it).
                    docs = await turns.map(
                        lambda r: needed_parts(loaded_doc(json_loads(r["doc"])), fields), rows
                    )
                    docs = await self._opened_profiles(docs, conn, turns)
                    if fields is None or "merged_into" in fields:  # each chain's end
                        for r in rows:
                            step = r["survivor"] or ""
                            end = step and await self._final_survivor(conn, step, None)
                            survivors.append(end or step)
                    break
            # Nothing changed: wait for the projection's next commit (pushed, as the watches
            # are), looking again now and then if nothing pushes; no connection held.
            left = deadline - time.monotonic()
            if left <= 0:
                docs = []
                break
            if self.notifications is not None and self.notifications.connected:
                await self.notifications.changed(seen, min(CHANGED_FALLBACK_S, left))
            else:
                await asyncio.sleep(min(PUSH_FALLBACK_S, left))
        now = datetime.now(UTC)
        reply = api.ListChangedProfilesResponse(
            cursor=rows[-1]["seq"] if rows else request.after_cursor
        )
        for doc, r, survivor in zip(docs, rows, survivors or [""] * len(docs), strict=True):
            if turns.due():
                await turns.give()
            changed = reply.profiles.add(cursor=r["seq"])
            changed.profile.CopyFrom(profile_message(doc, now, merged_into=survivor, fields=fields))
        return reply

    async def _changed_profiles(
        self, conn: Conn, after_cursor: int, limit: int
    ) -> list[dict[str, Any]]:
        """Each customer changed after the cursor once, at its latest entry: a page ends at a
        change, so everyone changed up to the returned cursor is in this page or an earlier
        one (CHANGED_SQL)."""
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(CHANGED_SQL, (after_cursor, limit))
            return await cur.fetchall()

    @requires(Role.OPERATOR)
    async def RebuildReadModel(
        self, request: api.RebuildReadModelRequest, context: Ctx
    ) -> AsyncIterator[api.RebuildReadModelResponse]:
        if self.projector is None:
            raise Unavailable("this replica runs no projector")
        last = None
        async for last in self.projector.rebuild():
            yield _rebuild_progress(last, done=False)
        if last is not None:  # its last report is of every event applied
            yield _rebuild_progress(last, done=True)


def _rebuild_progress(progress: RebuildProgress, *, done: bool) -> api.RebuildReadModelResponse:
    return api.RebuildReadModelResponse(
        applied=progress.applied,
        total=progress.total,
        done=done,
        profiles_indexed=progress.indexed,
        profiles_to_index=progress.to_index,
    )


def _phone(text: str) -> str:
    if not any(ch.isdigit() for ch in text) or any(ch.isalpha() for ch in text):
        return ""
    try:
        parsed = phonenumbers.parse(text, "DE")
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_valid_number(parsed):
        return ""
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
