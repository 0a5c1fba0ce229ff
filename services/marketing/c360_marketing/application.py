"""The marketing applications and what connects them: the plans' store (segments and
campaigns), the people store (memberships and touches, published), and `Marketing`, which
keeps every customer's profile facts as the timeline last reported them and evaluates
segments, sends and reports over both stores.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from c360_marketing import conditions, domain, offers
from c360_marketing.conditions import Facts, Tree
from c360_marketing.domain import Call, CallList, Campaign, LeadList, Membership, Segment, Touch
from c360_platform.errors import AlreadyExists, InvalidArgument, NotFound
from c360_platform.errors import PreconditionFailed as FailedPrecondition
from c360_platform.pii import FORGOTTEN, Sealer
from c360_platform.store import (
    MIN_PREFIX,
    AllOf,
    AnyOf,
    CommandContext,
    CommandOutcome,
    Decision,
    Eq,
    In,
    QueryTable,
    RowQuery,
    ServiceApplication,
    kind_of,
    prefix_range,
    schema_for,
    where,
)

SOURCE = "marketing"
PLANS_SOURCE = "marketing-plans"
ATTRIBUTION = timedelta(days=30)
"""A growth of the lifetime value within this time after a touch is the touch's revenue."""
KNOWN_CHUNK = 500
"""Customers whose memberships and responses one read fetches (`_known_of_many`)."""


FORGOTTEN_CAUSE = "customer_forgotten"
"""Why a forgotten customer left a segment (SegmentLeft.cause)."""
MERGED_CAUSE = "customer_merged"
"""Why a customer merged into another left a segment (SegmentLeft.cause)."""


CENT = Decimal("0.01")


def _apportioned(total: Decimal, parts: list[Decimal]) -> list[Decimal]:
    """The parts in cents, adding up to the total in cents (largest remainder): the recorded
    costs shared by the groups in proportion to their sends are fractions of a cent, and
    each rounded alone, the groups' costs did not add up to the campaign's (8 of 25.64 and
    102.54 ... for 461.44: 461.46)."""
    whole = total.quantize(CENT, ROUND_HALF_UP)
    down = [p.quantize(CENT, ROUND_DOWN) for p in parts]
    left = int((whole - sum(down, Decimal(0))) / CENT)
    order = sorted(range(len(parts)), key=lambda i: (parts[i] - down[i], -i), reverse=True)
    for i in order[: max(left, 0)]:
        down[i] += CENT
    return down


def _may_convert(before: Facts | None, fresh: Facts) -> bool:
    """Whether a customer's new facts can give a touch revenue (`Touch.convert`: the growth of
    the lifetime value since the send). Only a lifetime value above zero that differs from the
    one last seen can: a touch sent since then was sent at that value, and the touches sent
    before were attributed when it was seen. Most changes of a profile (every one of an
    import, of a rebuild's replay) are not such, and need no look-up of touches."""
    if not any(amount > 0 for amount in fresh.lifetime_value.values()):
        return False
    return before is None or before.lifetime_value != fresh.lifetime_value


PLANS = QueryTable(
    name="plans",
    columns=(
        ("plan_id", "uuid"),
        ("kind", "text NOT NULL"),
        ("name", "text NOT NULL"),
        ("state", "text NOT NULL"),
        ("created_at", "timestamptz NOT NULL"),
    ),
    indexes=(("kind", "created_at", "plan_id"), ("name",)),
)
"""One row per segment and campaign, for look-ups by name and lists."""

PEOPLE = QueryTable(
    name="people",
    columns=(
        ("row_id", "uuid"),
        ("kind", "text NOT NULL"),
        ("customer_id", "uuid NOT NULL"),
        ("segment_id", "text NOT NULL"),
        ("campaign_id", "text NOT NULL"),
        ("member", "boolean NOT NULL"),
        ("channel", "text NOT NULL"),
        ("region", "text NOT NULL"),
        ("responses", "text[] NOT NULL"),
        ("cost", "text NOT NULL"),
        ("revenue", "text NOT NULL"),
        ("created_at", "timestamptz NOT NULL"),
        ("changed_at", "timestamptz NOT NULL"),
        ("offer", "text NOT NULL DEFAULT ''"),
    ),
    indexes=(
        ("kind", "segment_id", "customer_id"),
        ("kind", "campaign_id", "row_id"),
        ("kind", "customer_id", "created_at"),
    ),
)
"""One row per membership and per touch."""


PLANS_PERSONAL: dict[type, tuple[str, ...]] = {CallList.CallRecorded: ("note",)}
"""What an agent noted of a call to a customer: sealed with that customer's key."""
PEOPLE_PERSONAL: dict[type, tuple[str, ...]] = {
    Touch.Sent: ("address",),
    Touch.Responded: ("detail",),
    Call.Recorded: ("note",),
}
"""The e-mail address or phone number a touch went to, and what the provider reported of it
(a bounce can quote the address): sealed with the customer's key."""


@dataclass(frozen=True)
class Contact:
    """How a list's entry is reached: read from the customer's profile, never stored."""

    name: str
    email: str
    phone: str


CLEAR_IN_LISTS: tuple[tuple[type, tuple[str, ...]], ...] = (
    (LeadList.Built, ("name", "email", "phone")),
    (CallList.Built, ("name", "phone")),
)
"""What lead and call lists built before kept of each entry in clear (see build_lead_list)."""


class PlanningApplication(ServiceApplication):
    """Segments and campaigns: marketing's own plans. Not facts about a customer, so kept in a
    store of their own that is not published (the timeline is per customer)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The names, e-mails and phones lists built by an earlier version kept in clear are
        # removed from their events (they are read from the profiles now): an erasure could
        # not reach them. Once done, a start finds none.
        for built, keys in CLEAR_IN_LISTS:
            self.event_recorder.strip_item_keys([get_topic(built)], "entries", list(keys))

    name = schema_for(PLANS_SOURCE)
    source = PLANS_SOURCE
    snapshotting_intervals = {Campaign: 50}
    sealer = Sealer(PLANS_PERSONAL, owner="customer_id")
    query_table = PLANS

    def query_row(self, aggregate: Aggregate) -> dict[str, Any] | None:
        if isinstance(aggregate, Segment):
            return {
                "plan_id": aggregate.id,
                "kind": "segment",
                "name": aggregate.name,
                "state": "",
                "created_at": aggregate.created_on,
            }
        if isinstance(aggregate, CallList):
            return {
                "plan_id": aggregate.id,
                "kind": "call_list",
                "name": aggregate.name,
                "state": f"{len(aggregate.state)}/{len(aggregate.entries)}",
                "created_at": aggregate.created_on,
            }
        if isinstance(aggregate, LeadList):
            return {
                "plan_id": aggregate.id,
                "kind": "lead_list",
                "name": aggregate.name,
                "state": f"{len(aggregate.leads)}/{len(aggregate.entries)}"
                + (f", {len(aggregate.passed_over)} passed over" if aggregate.passed_over else ""),
                "created_at": aggregate.created_on,
            }
        if isinstance(aggregate, Campaign):
            return {
                "plan_id": aggregate.id,
                "kind": "campaign",
                "name": aggregate.plan["name"],
                "state": aggregate.state,
                "created_at": aggregate.created_on,
            }
        return None


class PeopleApplication(ServiceApplication):
    """Memberships and touches: what marketing did and learned about each customer."""

    name = schema_for(SOURCE)
    source = SOURCE
    # No snapshots of touches: they would hold the address outside the sealed event.
    snapshotting_intervals = {Membership: 100}
    sealer = Sealer(PEOPLE_PERSONAL, owner="customer_id")
    query_table = PEOPLE

    def query_row(self, aggregate: Aggregate) -> dict[str, Any] | None:
        base = {
            "row_id": aggregate.id,
            "created_at": aggregate.created_on,
            "changed_at": aggregate.modified_on,
        }
        if isinstance(aggregate, Membership):
            return base | {
                "kind": "membership",
                "customer_id": UUID(aggregate.customer_id),
                "segment_id": aggregate.segment_id,
                "campaign_id": "",
                "member": aggregate.member,
                "channel": "",
                "region": "",
                "responses": [],
                "cost": "0",
                "revenue": "0",
                "offer": "",
            }
        if isinstance(aggregate, Call):
            # For the frequency cap of phone campaigns (`_candidates`).
            return base | {
                "kind": "call",
                "customer_id": UUID(aggregate.customer_id),
                "segment_id": "",
                "campaign_id": aggregate.campaign_id,
                "member": False,
                "channel": domain.Channel.PHONE.value,
                "region": "",
                "responses": [aggregate.outcome],
                "cost": "0",
                "revenue": "0",
                "offer": "",
            }
        if isinstance(aggregate, Touch):
            return base | {
                "kind": "touch",
                "customer_id": UUID(aggregate.customer_id),
                "segment_id": aggregate.segment_id,
                "campaign_id": aggregate.campaign_id,
                "member": False,
                "channel": aggregate.channel,
                "region": aggregate.region,
                "responses": sorted(aggregate.responses),
                "cost": aggregate.cost,
                "revenue": aggregate.revenue,
                "offer": aggregate.offer,
            }
        return None

    def at(self, kind: type[Any], aggregate_id: UUID, as_of: datetime | None) -> Any | None:
        """An aggregate now or as it was at `as_of` (None if it did not exist then)."""
        if as_of is None:
            try:
                return self.load(kind, aggregate_id)
            except NotFound:
                return None
        version = None
        for e in self.events.get(aggregate_id):
            if getattr(e, "timestamp") > as_of:  # noqa: B009 (not in the protocol)
                break
            version = e.originator_version
        return None if version is None else self.repository.get(aggregate_id, version=version)


@dataclass
class Progress:
    """How far the evaluation of everyone on a segment's current version is: the customers
    known when the version was first seen (`pending`, in order) are evaluated a batch at a
    time by `reevaluate`; those first observed after it were evaluated as they arrived
    (`arrived`), and count as evaluated."""

    version: int
    pending: list[str] = field(default_factory=list)
    at: int = 0
    """How many of `pending` are evaluated."""
    arrived: int = 0

    @property
    def evaluated(self) -> int:
        return self.at + self.arrived

    @property
    def total(self) -> int:
        return len(self.pending) + self.arrived


@dataclass(frozen=True)
class Revocation:
    """A consent to end in the customer service, because of a provider report."""

    customer_id: str
    channel: str
    report_id: str
    kind: str
    purpose: str = "marketing"
    """The touch's campaign's purpose: an unsubscribe from a service reminder ends the consent
    to service messages on the channel, not to marketing."""
    campaign_name: str = ""
    """The campaign the customer unsubscribed from, for the consent's evidence."""

    @property
    def source(self) -> str:
        """The consent decision's source as the customer service keeps it (at most 64
        characters): "marketing: unsubscribed from Autumn newsletter"."""
        text = f"marketing: {self.kind.replace('_', ' ')}"
        if self.campaign_name:
            text += f" from {self.campaign_name}"
        return text if len(text) <= 64 else text[:63] + "…"


@dataclass(frozen=True)
class Explanation:
    evaluated: bool
    member: bool = False
    since: datetime | None = None
    condition_path: str = ""
    condition: str = ""
    cause: str = ""
    segment_version: int = 0
    conditions: list[tuple[str, str, bool, str]] = field(default_factory=list)


@dataclass(frozen=True)
class ResultRow:
    key: str
    counts: dict[str, int]
    revenue: Decimal
    cost: Decimal


class Marketing:
    """Segments evaluated over the customers' profile facts, campaigns sent to who may be
    reached, and the provider's reports. Its methods block (the stores): call them off the
    event loop. One lock keeps evaluations and sends in order."""

    def __init__(
        self, plans: PlanningApplication, people: PeopleApplication, clock: Callable[[], datetime]
    ) -> None:
        self.plans = plans
        self.people = people
        self.clock = clock
        self.facts: dict[str, Facts] = {}
        self.progress: dict[str, Progress] = {}
        self.lock = threading.RLock()
        self._segments: tuple[int, list[Segment]] = (-1, [])
        """The plans store's head when the segments were read, and what was read."""

    @classmethod
    def in_memory(cls, clock: Callable[[], datetime]) -> Marketing:
        return cls(
            PlanningApplication.in_memory(clock=clock),
            PeopleApplication.in_memory(clock=clock),
            clock,
        )

    # -- segments ------------------------------------------------------------------------------

    def segment(self, ref: str) -> Segment:
        """A segment by id, by name, or by the beginning of its id as lists show it
        ("c6275b1e"; a name comes first). NOT_FOUND; INVALID_ARGUMENT on `segment` when that
        beginning is several segments' ids."""
        ref = ref.strip()
        try:
            segment_id = UUID(ref)
        except ValueError:
            rows = self.plans.rows(RowQuery(where(kind="segment", name=ref), limit=1))
            if rows:
                return self.plans.load(Segment, rows[0]["plan_id"])
            found = self._segments_beginning(ref)
            if len(found) > 1:
                raise InvalidArgument.one(
                    "segment",
                    f"{ref} is the beginning of {len(found)} segment ids: give more digits",
                ) from None
            if not found:
                raise NotFound(f"no segment named {ref!r}") from None
            segment_id = found[0]
        return self.plans.load(Segment, segment_id)

    def _segments_beginning(self, prefix: str) -> list[UUID]:
        """The ids of the segments that begin with `prefix` (MIN_PREFIX hex digits at least)."""
        if len(prefix.replace("-", "")) < MIN_PREFIX:
            return []
        try:
            low, high = prefix_range(prefix)
        except ValueError:
            return []
        found = self.plans.event_recorder.ids_in_range(low, high, 1000)
        return [i for i, topic in found if kind_of(topic) == "segment"]

    def segments(self) -> list[Segment]:
        """Every segment, by name: read again only when the plans store has moved (a plan
        saved by this process or another), not at each of the follower's rounds."""
        head = self.plans.head()
        at, found = self._segments
        if at != head:
            rows = self.plans.rows(RowQuery(where(kind="segment")))
            found = [self.plans.load(Segment, r["plan_id"]) for r in rows]
            found.sort(key=lambda s: s.name)
            self._segments = (head, found)
        return list(found)

    def _check_references(self, tree: Tree, own_id: str = "") -> None:
        """Segments a tree names must exist and not lead back to the segment itself."""
        known = {str(s.id): s for s in self.segments()}
        for path, leaf in conditions.leaves(tree):
            if leaf["field"] == "campaign_response":
                try:
                    leaf["value"] = str(self.campaign(UUID(leaf["value"])).id)
                except (ValueError, NotFound):
                    raise InvalidArgument.one(f"{path}.value", "no such campaign") from None
                continue
            if leaf["field"] != "segment":
                continue
            target = leaf["value"]
            if target not in known:
                by_name = [i for i, s in known.items() if s.name == target]
                if not by_name:
                    raise InvalidArgument.one(f"{path}.value", "no such segment")
                leaf["value"] = target = by_name[0]
            pending, seen = [target], set()
            while pending:
                current = pending.pop()
                if current == own_id:
                    raise InvalidArgument.one(f"{path}.value", "refers back to this segment")
                if current in seen or current not in known:
                    continue
                seen.add(current)
                pending.extend(conditions.segments_used(known[current].condition))

    def define_segment(
        self, ctx: CommandContext, *, name: str, description: str, condition: str
    ) -> CommandOutcome:
        def decide() -> Decision[Segment]:
            segment = domain.define_segment(name=name, description=description, condition=condition)
            self._check_references(segment.condition)
            if self.plans.rows(RowQuery(where(kind="segment", name=segment.name), limit=1)):
                raise AlreadyExists(f"a segment named {segment.name!r} exists")
            return Decision(segment, [segment], {"segment_id": str(segment.id)})

        with self.lock:
            outcome = self.plans.execute(ctx, decide)
            self.progress.setdefault(str(outcome.aggregate_id), Progress(0))
        return outcome

    def revise_segment(
        self,
        ctx: CommandContext,
        segment_id: UUID,
        version: int | None,
        condition: str,
        description: str,
    ) -> CommandOutcome:
        tree = conditions.parse_json(condition)
        self._check_references(tree, str(segment_id))
        with self.lock:
            outcome = self.plans.change(
                ctx, Segment, segment_id, version, lambda s: s.revise(tree, description)
            )
            self.progress.setdefault(str(segment_id), Progress(0))
        return outcome

    def preview(self, condition: str, sample_size: int) -> tuple[int, int, list[Facts]]:
        tree = conditions.parse_json(condition)
        self._check_references(tree)
        with self.lock:
            people = [f for f, _ in self._known_of_many(list(self.facts.values()))]
        # Who would be a member: never one forgotten or merged away (`_evaluate`), whatever
        # their profile still holds.
        matched = [
            f
            for f in people
            if not f.forgotten and not f.merged_into and conditions.evaluate(tree, f).member
        ]
        matched.sort(key=lambda f: (f.display_name, f.customer_id))
        return len(matched), len(people), matched[:sample_size]

    def _known_of(self, facts: Facts) -> tuple[Facts, dict[str, bool]]:
        """The facts with what marketing itself knows (segments, campaign responses), and the
        customer's memberships, in or out (whether a member, by segment id): one read."""
        return self._known_of_many([facts])[0]

    def _known_of_many(self, people: Sequence[Facts]) -> list[tuple[Facts, dict[str, bool]]]:
        """`_known_of` of each of these customers, in their order: one read for up to
        KNOWN_CHUNK of them (a page of changed profiles, a round of evaluation, a preview of
        everyone), where one read each cost a round trip to PostgreSQL per customer."""
        rows_of: dict[UUID, list[dict[str, Any]]] = {}
        ids = list(dict.fromkeys(UUID(f.customer_id) for f in people))
        for start in range(0, len(ids), KNOWN_CHUNK):
            chunk = ids[start : start + KNOWN_CHUNK]
            query = RowQuery(
                AllOf(
                    (
                        AnyOf((Eq("kind", "membership"), Eq("kind", "touch"))),
                        In("customer_id", chunk),
                    )
                )
            )
            for r in self.people.rows(query):
                rows_of.setdefault(r["customer_id"], []).append(r)
        known = []
        for facts in people:
            rows = rows_of.get(UUID(facts.customer_id), [])
            memberships = {r["segment_id"]: r["member"] for r in rows if r["kind"] == "membership"}
            responded = frozenset(
                r["campaign_id"]
                for r in rows
                if r["kind"] == "touch" and domain.touch_counts(r["responses"])["responded"]
            )
            segments = frozenset(s for s, member in memberships.items() if member)
            known.append((replace(facts, segments=segments, responded=responded), memberships))
        return known

    def _with_segments(self, facts: Facts) -> Facts:
        """The facts with what marketing itself knows: segments and campaign responses."""
        return self._known_of(facts)[0]

    def _ordered(self, segments: list[Segment]) -> list[Segment]:
        """Segments after those they refer to."""
        by_id = {str(s.id): s for s in segments}
        done: list[Segment] = []
        seen: set[str] = set()

        def visit(s: Segment) -> None:
            if str(s.id) in seen:
                return
            seen.add(str(s.id))
            for used in sorted(conditions.segments_used(s.condition)):
                if used in by_id:
                    visit(by_id[used])
            done.append(s)

        for s in segments:
            visit(s)
        return done

    def _evaluate(
        self,
        segment: Segment,
        before: Facts | None,
        after: Facts,
        cause: str,
        names: Mapping[str, str] | None = None,
        memberships: Mapping[str, bool] | None = None,
    ) -> tuple[bool, bool]:
        """Save the customer's entry or leave if the segment's verdict changed: whether it
        did, and whether the customer is a member now. `names`: the segments' names by id, if
        the caller has them (else read when a condition shows one); `memberships`: the
        customer's (as `_known_of` reads them), if the caller has them: then a verdict that
        leaves the customer where its membership (or the lack of one) says loads nothing."""
        tree = segment.condition
        now = conditions.values(tree, after)
        verdict = conditions.decide(tree, now)
        if after.forgotten and verdict.member:  # leaves every segment, whatever the tree says
            verdict, cause = replace(verdict, member=False), FORGOTTEN_CAUSE
        elif after.merged_into and verdict.member:  # so does a duplicate merged away
            verdict, cause = replace(verdict, member=False), MERGED_CAUSE
        if memberships is not None and memberships.get(str(segment.id), False) == verdict.member:
            return False, verdict.member
        path = verdict.path
        if before is not None:
            path = conditions.changed_condition(tree, conditions.values(tree, before), now)
        if "segment" not in str(tree):
            names = {}
        elif names is None:
            names = {str(s.id): s.name for s in self.segments()}
        # What is true of the customer now: "consent email/marketing not granted" for one
        # who left on a revoked consent, "tags has none of vip" for one in a `not` segment.
        text = conditions.text_of(tree, path, names, holds=conditions.holds_at(tree, path, now))
        if cause == FORGOTTEN_CAUSE:
            path, text = "", "the customer was forgotten on request"
        elif cause == MERGED_CAUSE:
            path, text = "", f"the customer was merged into customer {after.merged_into}"
        mid = domain.membership_id(str(segment.id), after.customer_id)
        existing = self.people.at(Membership, mid, None)
        if existing is None:
            if not verdict.member:
                return False, False
            membership = Membership(
                segment_id=str(segment.id),
                customer_id=after.customer_id,
                segment_name=segment.name,
                segment_version=segment.version,
                condition_path=path,
                condition=text,
                cause=cause,
            )
        else:
            membership = existing
            membership.change(verdict.member, segment.name, segment.version, path, text, cause)
        if not membership.pending_events:
            return False, membership.member
        self.people.save(membership)
        return True, membership.member

    def observe(self, changed: Iterable[Facts]) -> int:
        """Take the customers' new facts and evaluate every segment for them; returns how many
        memberships changed."""
        changes = 0
        with self.lock:
            segments = self._ordered(self.segments())
            names = {str(s.id): s.name for s in segments}
            changed = list(changed)
            # The memberships and responses of the page's customers, in one read.
            known = self._known_of_many(changed) if segments else [(f, {}) for f in changed]
            evaluated: set[str] = set()
            for fresh, read in zip(changed, known, strict=True):
                if segments and fresh.customer_id in evaluated:
                    read = self._known_of(fresh)  # twice in the batch: as the first left it
                evaluated.add(fresh.customer_id)
                seen, memberships = read
                before = self.facts.get(fresh.customer_id)
                if before is None:
                    # Evaluated on every segment's current version below: no round of
                    # `reevaluate` comes back to this customer. (At start, the follower's
                    # first reading of every profile is the only evaluation of everyone.)
                    for segment in segments:
                        self._progress(segment).arrived += 1
                self.facts[fresh.customer_id] = fresh
                # The memberships and responses were read once per customer (above); the
                # memberships are then kept here as each segment decides (a later segment may
                # ask about an earlier one's), not read again for every segment, and a
                # membership is loaded only where the verdict changes it.
                prior = None if before is None else replace(before, responded=seen.responded)
                for segment in segments:
                    members = frozenset(s for s, member in memberships.items() if member)
                    after = replace(seen, segments=members)
                    if prior is not None:
                        prior = replace(prior, segments=after.segments)
                    entered_or_left, member = self._evaluate(
                        segment, prior, after, "profile_changed", names, memberships
                    )
                    changes += entered_or_left
                    if member or str(segment.id) in memberships:
                        memberships[str(segment.id)] = member
                if _may_convert(before, fresh):
                    self._attribute(fresh)
        return changes

    def _progress(self, segment: Segment) -> Progress:
        """The evaluation of everyone on the segment's current version, begun the first time
        that version is seen: who is known then is pending; who is observed later is
        evaluated on arrival."""
        key = str(segment.id)
        progress = self.progress.get(key)
        if progress is None or progress.version != segment.version:
            progress = self.progress[key] = Progress(segment.version, sorted(self.facts))
        return progress

    def reevaluate(self, batch: int = 200) -> int:
        """Evaluate everyone on segments whose current version has not been evaluated yet, a
        batch at a time (progress in `self.progress`); returns how many were evaluated now."""
        done = 0
        with self.lock:
            segments = self._ordered(self.segments())
            names = {str(s.id): s.name for s in segments}
            for segment in segments:
                progress = self._progress(segment)
                pending = progress.pending[progress.at : progress.at + batch]
                known = self._known_of_many([self.facts[c] for c in pending])
                for after, memberships in known:
                    self._evaluate(segment, None, after, "segment_revised", names, memberships)
                    progress.at += 1
                    done += 1
                if done >= batch:
                    break
        return done

    def members(self, segment: Segment, as_of: datetime | None) -> list[Membership]:
        rows = self.people.rows(RowQuery(where(kind="membership", segment_id=str(segment.id))))
        found = [self.people.at(Membership, r["row_id"], as_of) for r in rows]
        members = [m for m in found if m is not None and m.member]
        return sorted(members, key=lambda m: (m.modified_on, m.customer_id))

    def explain(self, segment: Segment, customer_id: str, as_of: datetime | None) -> Explanation:
        mid = domain.membership_id(str(segment.id), customer_id)
        membership = self.people.at(Membership, mid, as_of)
        tree = segment.condition
        facts = self.facts.get(customer_id)
        listed: list[tuple[str, str, bool, str]] = []
        names: dict[str, str] = {}
        if facts is not None:
            facts = self._with_segments(facts)
            names = {str(s.id): s.name for s in self.segments()}
            listed = [
                (
                    path,
                    conditions.describe(leaf, names),
                    conditions.holds(leaf, facts),
                    conditions.actual(leaf, facts),
                )
                for path, leaf in conditions.leaves(tree)
            ]
        if membership is None:
            if facts is None or as_of is not None:
                return Explanation(evaluated=facts is not None and as_of is None, conditions=listed)
            # Never a member: no membership was ever written. The condition that keeps them
            # out now (a verdict of member would be one not applied yet: not evaluated).
            truth = conditions.values(tree, facts)
            verdict = conditions.decide(tree, truth)
            if verdict.member:
                return Explanation(evaluated=False, conditions=listed)
            return Explanation(
                evaluated=True,
                condition_path=verdict.path,
                condition=conditions.text_of(
                    tree, verdict.path, names, holds=conditions.holds_at(tree, verdict.path, truth)
                ),
                segment_version=segment.version,
                conditions=listed,
            )
        return Explanation(
            evaluated=True,
            member=membership.member,
            since=membership.modified_on,
            condition_path=membership.condition_path,
            condition=membership.condition,
            cause=membership.cause,
            segment_version=membership.segment_version,
            conditions=listed,
        )

    # -- campaigns -----------------------------------------------------------------------------

    def plan_campaign(
        self, ctx: CommandContext, segments: list[str], **plan: Any
    ) -> CommandOutcome:
        def decide() -> Decision[Campaign]:
            ids = []
            for i, ref in enumerate(segments):
                try:
                    ids.append(str(self.segment(ref).id))
                except NotFound:
                    raise InvalidArgument.one(
                        f"segments[{i}]", f"no segment {ref!r} (a segment's name or id)"
                    ) from None
            campaign = domain.plan_campaign(segment_ids=ids, today=self.clock().date(), **plan)
            return Decision(campaign, [campaign], {"campaign_id": str(campaign.id)})

        return self.plans.execute(ctx, decide)

    def change_campaign(
        self,
        ctx: CommandContext,
        campaign_id: UUID,
        version: int | None,
        act: Callable[[Campaign], None],
    ) -> CommandOutcome:
        with self.lock:
            return self.plans.change(ctx, Campaign, campaign_id, version, act)

    def campaign(self, campaign_id: UUID) -> Campaign:
        return self.plans.load(Campaign, campaign_id)

    def campaigns(self) -> list[Campaign]:
        rows = self.plans.rows(RowQuery(where(kind="campaign")))
        found = [self.plans.load(Campaign, r["plan_id"]) for r in rows]
        return sorted(found, key=lambda c: c.created_on, reverse=True)

    def _touches(self, **equal: Any) -> list[dict[str, Any]]:
        return self.people.rows(RowQuery(where(kind="touch", **equal)))

    def _candidates(self, campaign: Campaign, now: datetime) -> dict[str, domain.Candidate]:
        """The members of the campaign's segments, and those who left them since it was
        planned, with their touches on its channel in the frequency period."""
        plan = campaign.plan
        since = now - timedelta(days=plan["frequency_days"])
        trigger = plan.get("trigger", "")
        # A triggered campaign reaches a customer again once its period has passed.
        again = now - domain.TRIGGERS[trigger][0] if trigger else None
        reached = {
            str(r["customer_id"])
            for r in self._touches(campaign_id=str(campaign.id))
            if again is None or r["created_at"] >= again
        }
        # The customers merged into each survivor: one person, whose records' touches all
        # count toward the frequency cap (and who was reached if any record was).
        absorbed: dict[str, list[str]] = {}
        for f in self.facts.values():
            if f.merged_into:
                absorbed.setdefault(f.merged_into, []).append(f.customer_id)
        candidates: dict[str, domain.Candidate] = {}
        # Members now, then those who left since the campaign was planned: they are
        # counted with the reason (a revocation after the launch shows as "revoked").
        rows = [
            r
            for segment_id in plan["segment_ids"]
            for r in self.people.rows(RowQuery(where(kind="membership", segment_id=segment_id)))
            if r["member"] or r["changed_at"] >= campaign.created_on
        ]
        rows.sort(key=lambda r: (not r["member"], str(r["customer_id"])))
        for r in rows:
            cid = str(r["customer_id"])
            facts = self.facts.get(cid)
            if cid in candidates or facts is None:
                continue
            if trigger and not domain.fires(trigger, facts, now.date()):
                continue  # not due: no exclusion either
            group = [cid, *absorbed.get(cid, ())]
            touches = [
                t
                for member in group
                for t in self._touches(customer_id=UUID(member), channel=plan["channel"])
            ]
            recent = [t for t in touches if t["created_at"] >= since]
            if plan["channel"] == domain.Channel.PHONE:
                # Calls from call lists are a phone campaign's contacts: they count too.
                calls = [
                    c
                    for member in group
                    for c in self.people.rows(
                        RowQuery(where(kind="call", customer_id=UUID(member)))
                    )
                ]
                recent += [c for c in calls if c["created_at"] >= since]
            candidates[cid] = domain.Candidate(
                facts,
                r["segment_id"],
                len(recent),
                any(member in reached for member in group),
                r["member"],
                self._bounced(touches),
            )
        return candidates

    def send(
        self, ctx: CommandContext, campaign_id: UUID, version: int | None, launch: bool
    ) -> tuple[CommandOutcome, domain.Audience]:
        """Launch (if `launch`) and send to the audience at this moment: the members of the
        target segments not reached yet who have consent for the channel and marketing now."""
        with self.lock:
            campaign = self.plans.load(Campaign, campaign_id, version)
            earlier = self.plans.replay(ctx)
            if earlier is not None:
                last = campaign.rounds[-1]["exclusions"] if campaign.rounds else {}
                return earlier, domain.Audience([], dict(last), 0)
            if launch:
                campaign.launch("")
            campaign.require_sending(self.clock().date())
            if campaign.plan["channel"] == domain.Channel.PHONE:
                # Its audience is called from call lists, each call on the customer's
                # timeline: launched, it runs; nothing is "sent by phone" (a touch the
                # provider would report delivered, with its cost, for a call nobody made).
                if not launch:
                    raise FailedPrecondition(
                        f"campaign {campaign.id} is a phone campaign: its audience is called"
                        " from a call list (c360 calllist build), not sent to"
                    )
                outcome = self.plans.execute(ctx, lambda: Decision(campaign, [campaign]))
                return outcome, domain.Audience([], {}, 0)
            chosen = self._round(campaign, self.clock())
            outcome = self.plans.execute(ctx, lambda: Decision(campaign, [campaign]))
            return outcome, chosen

    def _round(self, campaign: Campaign, now: datetime) -> domain.Audience:
        """One send of a running campaign: its audience now, its touches saved (before the
        campaign, which the caller saves with the round)."""
        plan = campaign.plan
        chosen = self._audience(campaign, now)
        touches = [
            Touch(
                customer_id=s.customer_id,
                campaign_id=str(campaign.id),
                campaign_name=plan["name"],
                channel=plan["channel"],
                address=s.address,
                segment_id=s.segment_id,
                region=s.region,
                cost=plan["cost_per_send"],
                currency=plan["currency"],
                offer=self._offer(plan["offer"], s.customer_id),
                lifetime_value=str(
                    self.facts[s.customer_id].lifetime_value.get(plan["currency"], 0)
                ),
            )
            for s in chosen.sends
        ]
        campaign.record_round(now, chosen.size, len(touches), chosen.exclusions)
        if touches:
            self.people.save(*touches)
        return chosen

    def _audience(self, campaign: Campaign, now: datetime) -> domain.Audience:
        plan = campaign.plan
        return domain.audience(
            plan["channel"],
            self._candidates(campaign, now).values(),
            frequency_cap=plan["frequency_cap"],
            cost_per_send=campaign.cost_per_send,
            budget_left=campaign.budget_left,
            purpose=plan.get("purpose", "marketing"),
        )

    def complete_ended(self) -> list[str]:
        """Complete the running and paused campaigns whose last day is over (UTC); returns
        their ids."""
        done = []
        with self.lock:
            today = self.clock().date()
            for campaign in self.campaigns():
                if campaign.complete_if_ended(today):
                    self.plans.save(campaign)
                    done.append(str(campaign.id))
        return done

    def _bounced(self, touches: list[dict[str, Any]]) -> frozenset[str]:
        """The addresses of these touches that hard-bounced (each touch read only then)."""
        return frozenset(
            self.people.load(Touch, t["row_id"]).address
            for t in touches
            if domain.Response.HARD_BOUNCED.value in t["responses"]
        )

    def triggered(self) -> int:
        """Send the running campaigns with a trigger to whom it fires now (a round only when
        someone is due), on the days of their planned period only; returns how many touches
        were sent."""
        sent = 0
        with self.lock:
            for campaign in self.campaigns():
                if campaign.state != domain.State.RUNNING or not campaign.plan.get("trigger"):
                    continue
                if not campaign.in_period(self.clock().date()):
                    continue  # before its first day or after its last: it sends nothing
                if not self._audience(campaign, self.clock()).sends:
                    continue  # nobody due: no round
                chosen = self._round(campaign, self.clock())
                self.plans.save(campaign)
                sent += len(chosen.sends)
        return sent

    def _offer(self, offer: str, customer_id: str) -> str:
        """The campaign's offer; "personalised": the customer's first one-to-one offer."""
        if offer.lower() not in ("personalised", "personalized"):
            return offer
        found = offers.offers_for(self.facts[customer_id], self.facts.values(), limit=1)
        return found[0].sku if found else ""

    def record_report(
        self, touch_id: UUID, kind: str, report_id: str, detail: str, at: datetime
    ) -> Revocation | None:
        """A provider's report on a touch, once; an unsubscribe asks for the customer's
        consent to marketing on that channel to end (also on a repeat, so that a revocation
        that failed is asked again; the customer service takes it once). A hard bounce
        withdraws nothing (the customer decided nothing): later sends pass over the address."""
        with self.lock:
            touch = self.people.load(Touch, touch_id)
            if touch.respond(kind, report_id, detail, at):
                self.people.save(touch)
        if kind in {r.value for r in domain.REVOKING}:
            purpose, name = "marketing", ""
            try:
                plan = self.campaign(UUID(touch.campaign_id)).plan
                purpose, name = plan.get("purpose", "marketing"), plan["name"]
            except (ValueError, NotFound):
                pass
            # A customer merged into another since the touch is the survivor now, who holds
            # their consent (the duplicate takes no more changes).
            facts = self.facts.get(touch.customer_id)
            whom = facts.merged_into if facts is not None and facts.merged_into else None
            return Revocation(
                whom or touch.customer_id, touch.channel, report_id, kind, purpose, name
            )
        return None

    def _attribute(self, facts: Facts) -> None:
        """A customer's lifetime value grew: the growth is the revenue of the last touch that
        reached them within the attribution window (in its currency), once. Last touch: the
        same money is no campaign's revenue twice (every touch in the window got all of it,
        so a customer in two campaigns' audiences doubled the revenue their results and ROI
        showed); a touch that failed or bounced never reached them, and converts nothing."""
        now = self.clock()
        rows = [
            r
            for r in self._touches(customer_id=UUID(facts.customer_id))
            if r["created_at"] + ATTRIBUTION >= now and domain.reached(r["responses"])
        ]
        rows.sort(key=lambda r: (r["created_at"], str(r["row_id"])), reverse=True)
        currencies: set[str] = set()
        for row in rows:
            touch = self.people.load(Touch, row["row_id"])
            if touch.currency in currencies:
                continue  # an earlier touch: the growth is the last one's
            currencies.add(touch.currency)
            touch.convert(facts.lifetime_value.get(touch.currency, Decimal(0)), ATTRIBUTION, now)
            if touch.pending_events:
                self.people.save(touch)

    # -- lead lists ----------------------------------------------------------------------------

    def build_lead_list(
        self, ctx: CommandContext, *, name: str, campaign_id: UUID, segment: str
    ) -> CommandOutcome:
        """A campaign's responders (clicked or replied), or the members of `segment` for the
        campaign, as a list of leads to hand to sales."""

        def decide() -> Decision[LeadList]:
            campaign = self.campaign(campaign_id)
            segment_id = ""
            if segment.strip():
                try:
                    found = self.segment(segment)
                except NotFound:
                    raise InvalidArgument.one(
                        "segment", f"no segment {segment!r} (a segment's name or id)"
                    ) from None
                segment_id = str(found.id)
                rows = self.people.rows(
                    RowQuery(where(kind="membership", segment_id=segment_id, member=True))
                )
                ids = {str(r["customer_id"]) for r in rows}
            else:
                ids = {
                    str(r["customer_id"])
                    for r in self._touches(campaign_id=str(campaign.id))
                    if domain.touch_counts(r["responses"])["responded"]
                }
            people = [self.facts[i] for i in ids if i in self.facts]
            lead_list = domain.build_lead_list(
                name=name, campaign_id=str(campaign.id), segment_id=segment_id, people=people
            )
            return Decision(lead_list, [lead_list], {"lead_list_id": str(lead_list.id)})

        with self.lock:
            return self.plans.execute(ctx, decide)

    def lead_list(self, lead_list_id: UUID) -> LeadList:
        return self.plans.load(LeadList, lead_list_id)

    def record_distribution(
        self,
        ctx: CommandContext,
        lead_list_id: UUID,
        team: str,
        rule: str,
        leads: dict[str, dict[str, str]],
        passed_over: dict[str, str] | None = None,
    ) -> CommandOutcome:
        with self.lock:
            return self.plans.change(
                ctx,
                LeadList,
                lead_list_id,
                None,
                lambda x: x.distributed(team, rule, leads, passed_over),
            )

    # -- call lists ----------------------------------------------------------------------------

    def build_call_list(
        self, ctx: CommandContext, *, name: str, campaign_id: UUID, agents: list[str]
    ) -> CommandOutcome:
        """A phone campaign's audience at this moment (consent for phone marketing, a phone
        number, the frequency cap), shared among the agents in turn."""

        def decide() -> Decision[CallList]:
            campaign = self.campaign(campaign_id)
            if campaign.plan["channel"] != domain.Channel.PHONE:
                raise FailedPrecondition(
                    f"campaign {campaign.id} is a {campaign.plan['channel']} campaign;"
                    " call lists are for phone campaigns"
                )
            campaign.require_calling(self.clock().date(), "build a call list for it")
            chosen = domain.audience(
                domain.Channel.PHONE,
                self._candidates(campaign, self.clock()).values(),
                frequency_cap=campaign.plan["frequency_cap"],
                cost_per_send=Decimal(0),
                budget_left=Decimal(1),
            )
            call_list = domain.build_call_list(
                name=name, campaign_id=str(campaign.id), agents=agents, sends=chosen.sends
            )
            return Decision(call_list, [call_list], {"call_list_id": str(call_list.id)})

        with self.lock:
            return self.plans.execute(ctx, decide)

    def call_list(self, call_list_id: UUID) -> CallList:
        return self.plans.load(CallList, call_list_id)

    def contact(self, customer_id: str) -> Contact:
        """A list entry's name, e-mail and phone, from the customer's profile now (a
        forgotten customer's name reads "[forgotten]", with neither)."""
        facts = self.facts.get(customer_id)
        if facts is None:
            return Contact("", "", "")
        if facts.forgotten:
            return Contact(FORGOTTEN, "", "")
        return Contact(
            facts.display_name,
            facts.emails[0] if facts.emails else "",
            facts.phones[0] if facts.phones else "",
        )

    def may_call(self, customer_id: str) -> bool:
        """Whether a customer may be called for marketing now: consent to phone marketing,
        not forgotten (what the call list checked when it was built, checked again)."""
        facts = self.facts.get(customer_id)
        return (
            facts is not None
            and not facts.forgotten
            and facts.consent.get(f"{domain.Channel.PHONE}/marketing") is True
        )

    def next_call(
        self, call_list_id: UUID, agent_id: str
    ) -> tuple[CallList, dict[str, str] | None, int, int]:
        """The agent's next call on the list, among the customers who may still be called;
        how many of the agent's customers are still to call, and how many may no longer be
        (consent revoked, or forgotten, since the list was built): never handed out."""
        found = self.call_list(call_list_id)
        campaign = self.campaign(UUID(found.campaign_id))
        campaign.require_calling(self.clock().date(), "hand out calls for it")
        if not campaign.in_period(self.clock().date()):
            raise FailedPrecondition(
                f"campaign {campaign.id} starts on {campaign.plan['starts_on']}: its calls are"
                f" made from that day (today is {self.clock().date().isoformat()}, UTC)"
            )
        entry = found.next_for(agent_id, self.clock(), self.may_call)
        still = [
            e["customer_id"]
            for e in found.entries
            if e["agent_id"] == agent_id
            and found.state.get(e["customer_id"], {}).get("outcome") not in domain.FINAL
        ]
        withdrawn = sum(1 for c in still if not self.may_call(c))
        return found, entry, len(still) - withdrawn, withdrawn

    def record_call(
        self,
        ctx: CommandContext,
        call_list_id: UUID,
        customer_id: str,
        agent_id: str,
        outcome: str,
        call_back_at: datetime | None,
        note: str,
    ) -> CommandOutcome:
        at = self.clock()

        def record(c: CallList) -> None:
            # A call made may be recorded while the campaign is paused or after it completed,
            # not under one called off: no outcome (nor sales lead) comes of it.
            if self.campaign(UUID(c.campaign_id)).state == domain.State.CANCELLED:
                raise FailedPrecondition(
                    f"campaign {c.campaign_id} is cancelled: no call is recorded for it"
                )
            c.record(customer_id, agent_id, outcome, call_back_at, note, at)

        with self.lock:
            done = self.plans.change(ctx, CallList, call_list_id, None, record)
            self._publish_call(call_list_id, customer_id)
            return done

    def _publish_call(self, call_list_id: UUID, customer_id: str) -> None:
        """The customer's latest call on the list, on their timeline (a `Call` in the people
        store), once: also after a retry that replays the recorded call."""
        found = self.call_list(call_list_id)
        calls = [c for c in found.calls if c["customer_id"] == customer_id]
        if not calls:
            return
        n, last = len(calls), calls[-1]
        if self.people.at(Call, domain.call_id(str(found.id), customer_id, n), None) is not None:
            return
        campaign = self.campaign(UUID(found.campaign_id))
        self.people.save(
            Call(
                call_list_id=str(found.id),
                customer_id=customer_id,
                n=n,
                campaign_id=found.campaign_id,
                campaign_name=campaign.plan["name"],
                agent_id=last["agent_id"],
                outcome=last["outcome"],
                call_back_at=last["call_back_at"],
                note=last["note"],
                at=last["at"],
            )
        )

    def forecast(self, campaign: Campaign) -> tuple[float, Decimal, str]:
        """Responses and revenue past campaigns predict for this one: completed campaigns on
        the same channel sharing a target segment (else any on the channel); their rates per
        send times this campaign's sends, or before a send its segments' members."""
        plan = campaign.plan
        done = [
            c
            for c in self.campaigns()
            if c.id != campaign.id
            and c.state == domain.State.COMPLETED
            and c.plan["channel"] == plan["channel"]
        ]
        similar = [c for c in done if set(c.plan["segment_ids"]) & set(plan["segment_ids"])]
        basis = similar or done
        if not basis:
            return 0.0, Decimal(0), ""
        sent = responded = 0
        revenue = Decimal(0)
        for c in basis:
            for r in self._touches(campaign_id=str(c.id)):
                sent += 1
                responded += domain.touch_counts(r["responses"])["responded"]
                revenue += Decimal(r["revenue"])
        if not sent:
            return 0.0, Decimal(0), ""
        reach = campaign.sent or len(
            {
                str(r["customer_id"])
                for sid in plan["segment_ids"]
                for r in self.people.rows(
                    RowQuery(where(kind="membership", segment_id=sid, member=True))
                )
            }
        )
        kind = "on the same segments" if similar else "on the same channel"
        words = (
            f"from {len(basis)} completed {plan['channel']} campaign{'s' if len(basis) > 1 else ''}"
            f" {kind} ({sent} sends), for {reach} sends"
        )
        return responded / sent * reach, (revenue / sent * reach).quantize(Decimal("0.01")), words

    def call_outcomes(self, campaign: Campaign) -> Counter[str]:
        """How many of a campaign's calls (from its call lists) ended in each outcome."""
        rows = self.people.rows(RowQuery(where(kind="call", campaign_id=str(campaign.id))))
        return Counter(r["responses"][0] for r in rows if r["responses"])

    def results(self, campaign: Campaign, by: str) -> tuple[ResultRow, list[ResultRow]]:
        if by not in ("", "segment", "region", "channel", "product"):
            raise InvalidArgument.one("by", "must be segment, region, channel, product or empty")
        rows = self._touches(campaign_id=str(campaign.id))
        names = {str(s.id): s.name for s in self.segments()}
        fixed = campaign.recorded_costs
        total_sent = len(rows)

        def summed(key: str, group: list[dict[str, Any]]) -> ResultRow:
            counts = {
                k: 0
                for k in (
                    "sent",
                    "failed",
                    "delivered",
                    "opened",
                    "clicked",
                    "responded",
                    "bounced",
                    "unsubscribed",
                    "converted",
                )
            }
            revenue = cost = Decimal(0)
            for r in group:
                counts["sent"] += 1
                for flag, on in domain.touch_counts(r["responses"]).items():
                    counts[flag] += on
                counts["converted"] += r["revenue"] != "0"
                revenue += Decimal(r["revenue"])
                cost += Decimal(r["cost"])
            # Recorded costs are shared by the groups in proportion to their sends.
            share = fixed * len(group) / total_sent if total_sent else fixed
            return ResultRow(key, counts, revenue, cost + share)

        total = summed("total", rows)
        if not by:
            return total, []
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            key = {
                "segment": names.get(r["segment_id"], r["segment_id"]),
                "region": r["region"] or "unknown",
                "channel": r["channel"],
                "product": r.get("offer") or "no offer",
            }[by]
            groups.setdefault(key, []).append(r)
        found = [summed(k, g) for k, g in sorted(groups.items())]
        cents = _apportioned(total.cost, [row.cost for row in found])
        total = replace(total, cost=total.cost.quantize(CENT, ROUND_HALF_UP))
        return total, [replace(row, cost=c) for row, c in zip(found, cents, strict=True)]
