"""Marketing's aggregates and rules, pure (no I/O).

Two kinds of aggregate, in two stores of the service: the plans (`Segment`, `Campaign`:
marketing's own configuration, not facts about a customer) and what happens to customers
(`Membership` of a customer in a segment, `Touch`: one send of a campaign to one customer
and the provider's reports on it), which is published. The audience of a send is decided by
`audience`, from the customers' facts at that moment.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.domain import Aggregate, event

from c360_marketing import conditions
from c360_marketing.conditions import Facts, Tree
from c360_platform.errors import PreconditionFailed, require_state
from c360_platform.validation import Violations

MAX_NAME = 120
MAX_TEXT = 2000
_NAMESPACE = uuid.UUID("9b0c6d4e-1f2a-4c36-8c36-c360c360a710")


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PHONE = "phone"
    POST = "post"


class State(StrEnum):
    PLANNED = "planned"
    APPROVED = "approved"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class Response(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"
    SOFT_BOUNCED = "soft_bounced"
    HARD_BOUNCED = "hard_bounced"
    OPENED = "opened"
    CLICKED = "clicked"
    UNSUBSCRIBED = "unsubscribed"
    REPLIED = "replied"


REVOKING = {Response.UNSUBSCRIBED}
"""Reports that are the customer's decision: an unsubscribe withdraws consent. A hard bounce
is not theirs: the address is undeliverable, and is passed over (`contact_point`)."""
"""Reports that end the customer's consent to marketing on the touch's channel."""
RESPONDING = {Response.CLICKED, Response.REPLIED}
"""Reports that count as a response to the campaign."""
COST_KINDS = ("fixed", "agent_hours", "other")


def money(v: Violations, field: str, text: str, *, required: bool = True) -> str:
    """A non-negative amount as text ("1250.00"), by c360's rule (`Violations.decimal`);
    "0" when empty or refused."""
    number = v.decimal(field, text, required=required)
    return "0" if number is None else str(number)


# -- segments -----------------------------------------------------------------------------------


class Segment(Aggregate):
    """A named condition tree; each revision is a new version that everyone is evaluated on."""

    if TYPE_CHECKING:
        Defined: ClassVar[type[Aggregate.Event]]
        Revised: ClassVar[type[Aggregate.Event]]

    @event("Defined")
    def __init__(self, name: str, description: str, condition: Tree) -> None:
        self.name = name
        self.description = description
        self.condition = condition
        self.revision = 1
        self.revised_at: datetime | None = None

    def revise(self, condition: Tree, description: str) -> None:
        """A new version, if the condition or the description (kept when empty) changed."""
        v = Violations()
        text = segment_description(v, description)
        v.check()
        if condition != self.condition or (text and text != self.description):
            self._revised(condition, text or self.description)

    @event("Revised")
    def _revised(self, condition: Tree, description: str) -> None:
        self.condition = condition
        self.description = description
        self.revision += 1


def segment_description(v: Violations, description: str) -> str:
    """A segment's description, as defined or revised: optional, one line of at most
    MAX_TEXT characters, no control characters."""
    return v.text("description", description, required=False, max_len=MAX_TEXT)


def define_segment(*, name: str, description: str, condition: str) -> Segment:
    v = Violations()
    clean = v.text("name", name, max_len=MAX_NAME)
    text = segment_description(v, description)
    v.check()
    tree = conditions.parse_json(condition)
    return Segment(name=clean, description=text, condition=tree)


# -- memberships --------------------------------------------------------------------------------


def membership_id(segment_id: str, customer_id: str) -> uuid.UUID:
    """One membership aggregate per segment and customer."""
    return uuid.uuid5(_NAMESPACE, f"membership:{segment_id}:{customer_id}")


class Membership(Aggregate):
    """Whether a customer is in a segment: entries and leaves, each with the condition that
    changed it."""

    if TYPE_CHECKING:
        Entered: ClassVar[type[Aggregate.Event]]
        Reentered: ClassVar[type[Aggregate.Event]]
        Left: ClassVar[type[Aggregate.Event]]

    @classmethod
    def create_id(cls, segment_id: str, customer_id: str) -> uuid.UUID:
        return membership_id(segment_id, customer_id)

    @event("Entered")
    def __init__(
        self,
        segment_id: str,
        customer_id: str,
        segment_name: str,
        segment_version: int,
        condition_path: str,
        condition: str,
        cause: str,
    ) -> None:
        self.segment_id = segment_id
        self.customer_id = customer_id
        self.member = True
        self._note(segment_version, condition_path, condition, cause)

    def _note(self, version: int, path: str, text: str, cause: str) -> None:
        self.segment_version = version
        self.condition_path = path
        self.condition = text
        self.cause = cause

    def change(
        self, member: bool, name: str, version: int, path: str, text: str, cause: str
    ) -> None:
        """Enter or leave, if that is a change."""
        if member and not self.member:
            self._entered(self.customer_id, self.segment_id, name, version, path, text, cause)
        elif not member and self.member:
            self._left(self.customer_id, self.segment_id, name, version, path, text, cause)

    @event("Reentered")
    def _entered(
        self,
        customer_id: str,
        segment_id: str,
        segment_name: str,
        segment_version: int,
        condition_path: str,
        condition: str,
        cause: str,
    ) -> None:
        self.member = True
        self._note(segment_version, condition_path, condition, cause)

    @event("Left")
    def _left(
        self,
        customer_id: str,
        segment_id: str,
        segment_name: str,
        segment_version: int,
        condition_path: str,
        condition: str,
        cause: str,
    ) -> None:
        self.member = False
        self._note(segment_version, condition_path, condition, cause)


# -- campaigns ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A member of a campaign's segments at a send, as the audience rule sees them."""

    facts: Facts
    segment_id: str
    touches_in_period: int
    """Touches on the campaign's channel within the frequency period, of any campaign."""
    reached: bool
    """This campaign reached them already."""
    member: bool = True
    """False: they left the segment after the campaign was planned (counted, never sent)."""
    bounced: frozenset[str] = frozenset()
    """Addresses on the campaign's channel that hard-bounced a touch: undeliverable."""


@dataclass(frozen=True)
class Send:
    customer_id: str
    address: str
    segment_id: str
    region: str


@dataclass(frozen=True)
class Audience:
    sends: list[Send]
    exclusions: dict[str, int]
    size: int


def contact_points(channel: str, facts: Facts) -> list[str]:
    """Where the channel may reach the customer, in the customer's order."""
    if channel == Channel.EMAIL:
        return list(facts.emails)
    if channel in (Channel.SMS, Channel.PHONE):
        return list(facts.phones)
    return [facts.postal] if facts.postal else []


def contact_point(channel: str, facts: Facts, bounced: frozenset[str] = frozenset()) -> str:
    """Where the channel reaches the customer: the first of their addresses that did not
    hard-bounce ("" if none)."""
    return next((a for a in contact_points(channel, facts) if a not in bounced), "")


def audience(
    channel: str,
    candidates: Iterable[Candidate],
    *,
    frequency_cap: int,
    cost_per_send: Decimal,
    budget_left: Decimal,
    purpose: str = "marketing",
) -> Audience:
    """Who a send reaches, and everyone else counted by reason, checked in this order:
    no consent, revoked (consent first: a revocation shows as such), already reached, left
    the segment (since the campaign was planned, for another reason than consent), no
    contact point, undeliverable (every address of theirs on the channel hard-bounced),
    frequency cap, over budget."""
    sends: list[Send] = []
    excluded: Counter[str] = Counter()
    size = 0
    spent = Decimal(0)
    for c in candidates:
        size += 1
        decided = c.facts.consent.get(f"{channel}/{purpose}")
        address = contact_point(channel, c.facts, c.bounced)
        if decided is None:
            excluded["no_consent"] += 1
        elif decided is False:
            excluded["revoked"] += 1
        elif c.reached:
            excluded["already_reached"] += 1
        elif not c.member:
            excluded["left_segment"] += 1
        elif not address and not contact_points(channel, c.facts):
            excluded["no_contact_point"] += 1
        elif not address:
            excluded["undeliverable"] += 1
        elif frequency_cap and c.touches_in_period >= frequency_cap:
            excluded["frequency_cap"] += 1
        elif spent + cost_per_send > budget_left:
            excluded["over_budget"] += 1
        else:
            spent += cost_per_send
            sends.append(Send(c.facts.customer_id, address, c.segment_id, c.facts.region))
    return Audience(sends, dict(sorted(excluded.items())), size)


class Campaign(Aggregate):
    """A campaign: its plan, its state, its costs and its send rounds."""

    if TYPE_CHECKING:
        Planned: ClassVar[type[Aggregate.Event]]
        Approved: ClassVar[type[Aggregate.Event]]
        Launched: ClassVar[type[Aggregate.Event]]
        Paused: ClassVar[type[Aggregate.Event]]
        Resumed: ClassVar[type[Aggregate.Event]]
        Completed: ClassVar[type[Aggregate.Event]]
        Cancelled: ClassVar[type[Aggregate.Event]]
        CostRecorded: ClassVar[type[Aggregate.Event]]
        RoundSent: ClassVar[type[Aggregate.Event]]

    @event("Planned")
    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.state = State.PLANNED.value
        self.state_reason = ""
        """The reason given with the last change of state (c360's own, when it completed
        the campaign at the end of its period)."""
        self.costs: list[dict[str, Any]] = []
        self.rounds: list[dict[str, Any]] = []
        self.sent = 0

    def _require(self, action: str, *allowed: State) -> None:
        require_state("campaign", self.id, self.state, action, allowed)

    def approve(self, reason: str) -> None:
        self._require("approve", State.PLANNED)
        self._approved(reason)

    @event("Approved")
    def _approved(self, reason: str) -> None:
        self.state = State.APPROVED.value
        self.state_reason = reason

    def launch(self, reason: str) -> None:
        self._require("launch", State.APPROVED)
        self._launched(reason)

    @event("Launched")
    def _launched(self, reason: str) -> None:
        self.state = State.RUNNING.value
        self.state_reason = reason

    def pause(self, reason: str) -> None:
        self._require("pause", State.RUNNING)
        self._paused(reason)

    @event("Paused")
    def _paused(self, reason: str) -> None:
        self.state = State.PAUSED.value
        self.state_reason = reason

    def resume(self, reason: str) -> None:
        self._require("resume", State.PAUSED)
        self._resumed(reason)

    @event("Resumed")
    def _resumed(self, reason: str) -> None:
        self.state = State.RUNNING.value
        self.state_reason = reason

    def complete(self, reason: str) -> None:
        self._require("complete", State.RUNNING, State.PAUSED)
        self._completed(reason)

    @event("Completed")
    def _completed(self, reason: str) -> None:
        self.state = State.COMPLETED.value
        self.state_reason = reason

    def cancel(self, reason: str) -> None:
        self._require("cancel", State.PLANNED, State.APPROVED, State.RUNNING, State.PAUSED)
        self._cancelled(reason)

    @event("Cancelled")
    def _cancelled(self, reason: str) -> None:
        self.state = State.CANCELLED.value
        self.state_reason = reason

    def record_cost(self, kind: str, amount: str, note: str, at: datetime) -> None:
        v = Violations()
        v.choice("kind", kind, COST_KINDS)
        value = money(v, "amount", amount)
        text = v.text("note", note, required=False, max_len=MAX_NAME)
        v.check()
        if self.state == State.CANCELLED:
            raise PreconditionFailed(f"campaign {self.id} is cancelled: it takes no costs")
        self._cost_recorded(kind, value, text, at)

    @event("CostRecorded")
    def _cost_recorded(self, kind: str, amount: str, note: str, at: datetime) -> None:
        self.costs.append({"kind": kind, "amount": amount, "note": note, "at": at})

    def require_sending(self, today: date) -> None:
        """Running, and within its period: a campaign never goes out before its first day
        nor after its last."""
        self._require("send", State.RUNNING)
        starts = str(self.plan["starts_on"])
        if today.isoformat() < starts:
            raise PreconditionFailed(
                f"campaign {self.id} starts on {starts}: it sends from that day"
                f" (today is {today.isoformat()}, UTC)"
            )
        if self.ended(today):
            raise PreconditionFailed(
                f"campaign {self.id} ended on {self.plan['ends_on']}: it sends no more"
                f" (today is {today.isoformat()}, UTC); plan a new one"
            )

    def require_calling(self, today: date, action: str) -> None:
        """Approved or running, and its last day not over: a phone campaign's calls (a call
        list built, the next call handed out) are made under it only then; paused, cancelled
        or completed, nobody is called for it. `action`: "build a call list for it"."""
        self._require(action, State.APPROVED, State.RUNNING)
        if self.ended(today):
            raise PreconditionFailed(
                f"campaign {self.id} ended on {self.plan['ends_on']}: nobody is called for it"
                f" any more (today is {today.isoformat()}, UTC)"
            )

    def ended(self, day: date) -> bool:
        """Whether the campaign's last day (UTC) is over on `day`."""
        return day.isoformat() > str(self.plan["ends_on"])

    def complete_if_ended(self, day: date) -> bool:
        """A running or paused campaign whose last day is over completes (as a journey with
        an end date does in Dynamics): nothing of it is due any more, and its results are
        final. True if it did."""
        if self.state not in (State.RUNNING, State.PAUSED) or not self.ended(day):
            return False
        self._completed(f"its period ended on {self.plan['ends_on']}")
        return True

    def in_period(self, day: date) -> bool:
        """Whether `day` (UTC) is within the campaign's planned period, first and last day
        included."""
        return str(self.plan["starts_on"]) <= day.isoformat() <= str(self.plan["ends_on"])

    def record_round(self, at: datetime, size: int, sent: int, exclusions: dict[str, int]) -> None:
        self._round_sent(at, size, sent, exclusions)

    @event("RoundSent")
    def _round_sent(self, at: datetime, size: int, sent: int, exclusions: dict[str, int]) -> None:
        self.rounds.append({"at": at, "audience": size, "sent": sent, "exclusions": exclusions})
        self.sent += sent

    # -- money ---------------------------------------------------------------------------------

    @property
    def cost_per_send(self) -> Decimal:
        return Decimal(self.plan["cost_per_send"])

    @property
    def recorded_costs(self) -> Decimal:
        return sum((Decimal(c["amount"]) for c in self.costs), Decimal(0))

    @property
    def actual_cost(self) -> Decimal:
        return self.recorded_costs + self.sent * self.cost_per_send

    @property
    def budget_left(self) -> Decimal:
        return Decimal(self.plan["budget"]) - self.actual_cost


def plan_campaign(
    *,
    name: str,
    objective: str,
    channel: str,
    segment_ids: list[str],
    starts_on: str,
    ends_on: str,
    budget: str,
    budget_currency: str,
    cost_per_send: str,
    expected_responses: int,
    offer: str,
    frequency_cap: int,
    frequency_days: int,
    trigger: str = "",
    purpose: str = "",
    today: date | None = None,
) -> Campaign:
    v = Violations()
    plan: dict[str, Any] = {
        "name": v.text("name", name, max_len=MAX_NAME),
        "objective": v.text("objective", objective, required=False, max_len=MAX_TEXT),
        "channel": (v.enum("channel", channel, Channel) or Channel.EMAIL).value,
        "segment_ids": list(dict.fromkeys(segment_ids)),
        "budget": money(v, "budget.amount", budget),
        # Any currency: revenue is the growth of lifetime values (sales' orders, ERP's
        # payments) in the budget's currency.
        "currency": v.currency("budget.currency", budget_currency),
        "cost_per_send": money(v, "cost_per_send", cost_per_send, required=False),
        "expected_responses": expected_responses,
        "offer": v.text("offer", offer, required=False, max_len=MAX_NAME),
        "frequency_cap": frequency_cap,
        "frequency_days": frequency_days or 30,
        "trigger": v.choice("trigger", trigger, ("", *TRIGGERS)),
        "purpose": v.choice("purpose", purpose or "marketing", ("marketing", "service")),
    }
    if trigger and plan["channel"] == Channel.PHONE:
        v.add("trigger", "a phone campaign is called from call lists: it sends nothing by itself")
    if plan["purpose"] == "service" and trigger != "overdue_invoice":
        v.add("purpose", "service is for reminders (trigger overdue_invoice) only")
    if not segment_ids:
        v.add("segments", "at least one target segment is required")
    days: list[date] = []
    for key, text in (("starts_on", starts_on), ("ends_on", ends_on)):
        day = v.day(key, text)
        if day is not None:
            days.append(day)
            plan[key] = day.isoformat()
    if len(days) == 2 and days[1] < days[0]:
        v.add("ends_on", "must not be before starts_on")
    elif len(days) == 2 and today is not None and days[1] < today:
        # It could never send, nor be called for: approved, it would stay so for good.
        v.add("ends_on", f"is over (today is {today.isoformat()}, UTC): plan days to come")
    if frequency_days > 366:
        v.add("frequency_days", "must be at most 366")
    v.check()
    return Campaign(plan=plan)


# -- triggered campaigns ------------------------------------------------------------------------

TRIGGERS: dict[str, tuple[timedelta, str]] = {
    "registration_anniversary": (
        timedelta(days=300),
        "a year or more since they became a customer, to the day",
    ),
    "overdue_invoice": (timedelta(days=7), "an invoice overdue (a weekly reminder)"),
}
"""A running campaign with a trigger sends by itself, to the members for whom it fires, at
most once per period (the first value) per customer."""


def fires(trigger: str, facts: Facts, today: date) -> bool:
    """Whether a campaign's trigger fires for the customer today."""
    if trigger == "registration_anniversary":
        first = facts.first_seen
        return (
            first is not None
            and today.year > first.year
            and (first.month, first.day) == (today.month, today.day)
        )
    if trigger == "overdue_invoice":
        return bool(facts.overdue_invoices)
    return True


# -- touches ------------------------------------------------------------------------------------


class Touch(Aggregate):
    """One send of a campaign to one customer, and what the provider reported on it."""

    if TYPE_CHECKING:
        Sent: ClassVar[type[Aggregate.Event]]
        Responded: ClassVar[type[Aggregate.Event]]
        Converted: ClassVar[type[Aggregate.Event]]

    @event("Sent")
    def __init__(
        self,
        customer_id: str,
        campaign_id: str,
        campaign_name: str,
        channel: str,
        address: str,
        segment_id: str,
        region: str,
        cost: str,
        currency: str,
        offer: str,
        lifetime_value: str,
    ) -> None:
        self.customer_id = customer_id
        self.campaign_id = campaign_id
        self.campaign_name = campaign_name
        self.channel = channel
        self.address = address
        """Where it was sent (sealed in the store, revealed when read)."""
        self.segment_id = segment_id
        self.region = region
        self.cost = cost
        self.currency = currency
        self.offer = offer
        self.lifetime_value = lifetime_value
        """The customer's lifetime value in the campaign's currency when it was sent."""
        self.reports: set[str] = set()
        self.responses: set[str] = set()
        self.revenue = "0"

    def respond(self, kind: str, report_id: str, detail: str, reported_at: datetime) -> bool:
        """Record a provider report once: False if it was recorded before, by its id or by its
        kind (the touch was opened, whoever says so again: a second provider's report of it,
        or a resend under a new id, changes nothing)."""
        v = Violations()
        k = v.enum("kind", kind, Response)
        rid = v.text("report_id", report_id, max_len=MAX_NAME)
        text = v.text("detail", detail, required=False, max_len=MAX_TEXT)
        v.check()
        assert k is not None
        if rid in self.reports or k.value in self.responses:
            return False
        self._responded(
            self.customer_id, self.campaign_id, k.value, rid, text, reported_at, self.campaign_name
        )
        return True

    @event("Responded")
    def _responded(
        self,
        customer_id: str,
        campaign_id: str,
        kind: str,
        report_id: str,
        detail: str,
        reported_at: datetime,
        campaign_name: str = "",
    ) -> None:
        """`campaign_name`: for the customer's timeline ("" in events recorded before it)."""
        self.reports.add(report_id)
        self.responses.add(kind)

    def convert(self, lifetime_value: Decimal, window: timedelta, now: datetime) -> None:
        """Attribute the growth of the lifetime value since the send, within the window."""
        if self.created_on + window < now or self.revenue != "0":
            return
        growth = lifetime_value - Decimal(self.lifetime_value)
        if growth > 0:
            self._converted(
                self.customer_id, self.campaign_id, str(growth), self.currency, self.campaign_name
            )

    @event("Converted")
    def _converted(
        self,
        customer_id: str,
        campaign_id: str,
        amount: str,
        currency: str,
        campaign_name: str = "",
    ) -> None:
        self.revenue = amount


def touch_counts(responses: Iterable[str]) -> Mapping[str, bool]:
    """The result flags of a touch from the kinds reported on it."""
    seen = set(responses)
    return {
        "delivered": bool(seen & {"delivered", "opened", "clicked", "replied", "unsubscribed"}),
        "opened": bool(seen & {"opened", "clicked", "replied"}),
        "clicked": "clicked" in seen,
        "responded": bool(seen & {r.value for r in RESPONDING}),
        # Failed: the provider could not send it (no mailbox ever answered); bounced: the
        # receiving end refused it. Mautic keeps the two apart too (is_failed, DNC bounced).
        "failed": "failed" in seen,
        "bounced": bool(seen & {"soft_bounced", "hard_bounced"}),
        "unsubscribed": "unsubscribed" in seen,
    }


def reached(responses: Iterable[str]) -> bool:
    """Whether a touch may have reached the customer: not failed nor hard-bounced, and a
    soft bounce only if a delivery came after all (no report yet: it may have)."""
    seen = set(responses)
    counts = touch_counts(seen)
    if counts["failed"] or Response.HARD_BOUNCED.value in seen:
        return False
    return counts["delivered"] or Response.SOFT_BOUNCED.value not in seen


# -- lead lists ---------------------------------------------------------------------------------


class LeadList(Aggregate):
    """Customers handed to sales as leads of a campaign: its responders, or the members of a
    segment; each entry, once distributed, names its lead in the sales service and its agent,
    or why sales took none (passed over: the customer was forgotten or merged into another
    since the list was built), and is not offered again."""

    if TYPE_CHECKING:
        Built: ClassVar[type[Aggregate.Event]]
        Distributed: ClassVar[type[Aggregate.Event]]
        PassedOver: ClassVar[type[Aggregate.Event]]

    @event("Built")
    def __init__(
        self, name: str, campaign_id: str, segment_id: str, entries: list[dict[str, str]]
    ) -> None:
        self.name = name
        self.campaign_id = campaign_id
        self.segment_id = segment_id
        self.entries = entries
        self.leads: dict[str, dict[str, str]] = {}
        """customer id -> {lead_id, agent_id} of the entries distributed."""
        self.passed_over: dict[str, str] = {}
        """customer id -> why sales took no lead for the entry (its refusal)."""

    def pending(self) -> list[dict[str, str]]:
        done = self.leads.keys() | self.passed_over.keys()
        return [e for e in self.entries if e["customer_id"] not in done]

    def distributed(
        self,
        team: str,
        rule: str,
        leads: dict[str, dict[str, str]],
        passed_over: dict[str, str] | None = None,
    ) -> None:
        """The entries sales took (`leads`) and those it refused for good (`passed_over`:
        customer id -> its refusal); entries settled already are left as they are."""
        done = self.leads.keys() | self.passed_over.keys()
        fresh = {k: v for k, v in leads.items() if k not in done}
        if fresh:
            self._distributed(team, rule, fresh)
        refused = {k: v for k, v in (passed_over or {}).items() if k not in done}
        if refused:
            self._passed_over(refused)

    @event("Distributed")
    def _distributed(self, team: str, rule: str, leads: dict[str, dict[str, str]]) -> None:
        self.leads.update(leads)

    @event("PassedOver")
    def _passed_over(self, reasons: dict[str, str]) -> None:
        self.passed_over.update(reasons)


def build_lead_list(
    *, name: str, campaign_id: str, segment_id: str, people: Iterable[Facts]
) -> LeadList:
    v = Violations()
    clean = v.text("name", name, max_len=MAX_NAME)
    v.check()
    # Who, not their name, e-mail or phone: one event about many customers cannot be sealed
    # with each one's key, and kept in clear they would outlive an erasure. They are read
    # from the customer's profile when the list is shown or handed to sales.
    entries = [
        {"customer_id": f.customer_id, "kind": f.kind, "territory": f.region}
        for f in sorted(people, key=lambda f: (f.display_name, f.customer_id))
    ]
    if not entries:
        raise PreconditionFailed("the lead list would be empty: no responders or members")
    return LeadList(name=clean, campaign_id=campaign_id, segment_id=segment_id, entries=entries)


# -- call lists ---------------------------------------------------------------------------------


class CallOutcome(StrEnum):
    REACHED = "reached"
    NO_ANSWER = "no_answer"
    CALL_BACK = "call_back"
    NOT_INTERESTED = "not_interested"
    INTERESTED = "interested"


FINAL = {CallOutcome.REACHED, CallOutcome.NOT_INTERESTED, CallOutcome.INTERESTED}
"""Outcomes after which a customer is not called again for this list."""


class CallList(Aggregate):
    """A telemarketing campaign's customers shared among agents; each agent works through
    theirs, recording the outcome of every call."""

    if TYPE_CHECKING:
        Built: ClassVar[type[Aggregate.Event]]
        CallRecorded: ClassVar[type[Aggregate.Event]]

    @event("Built")
    def __init__(self, name: str, campaign_id: str, entries: list[dict[str, str]]) -> None:
        self.name = name
        self.campaign_id = campaign_id
        self.entries = entries
        self.calls: list[dict[str, Any]] = []
        self.state: dict[str, dict[str, Any]] = {}
        """customer id -> its latest outcome and call-back time."""

    def entry(self, customer_id: str) -> dict[str, str]:
        for e in self.entries:
            if e["customer_id"] == customer_id:
                return e
        raise PreconditionFailed(f"customer {customer_id} is not on call list {self.id}")

    def next_for(
        self, agent_id: str, now: datetime, may_call: Callable[[str], bool] | None = None
    ) -> dict[str, str] | None:
        """The agent's next call: a call-back that is due, else the first never called, else
        one that did not answer; None when the agent's list is done. `may_call`: whether a
        customer may still be called (consent can be revoked after the list was built)."""
        mine = [
            e
            for e in self.entries
            if e["agent_id"] == agent_id and (may_call is None or may_call(e["customer_id"]))
        ]
        due = [
            e
            for e in mine
            if self.state.get(e["customer_id"], {}).get("outcome") == CallOutcome.CALL_BACK
            and self.state[e["customer_id"]]["call_back_at"] <= now
        ]
        fresh = [e for e in mine if e["customer_id"] not in self.state]
        retry = [
            e
            for e in mine
            if self.state.get(e["customer_id"], {}).get("outcome") == CallOutcome.NO_ANSWER
        ]
        found = (due or fresh or retry)[:1]
        return found[0] if found else None

    def record(
        self,
        customer_id: str,
        agent_id: str,
        outcome: str,
        call_back_at: datetime | None,
        note: str,
        at: datetime,
    ) -> None:
        v = Violations()
        o = v.enum("outcome", outcome, CallOutcome)
        agent = v.employee_id("agent_id", agent_id)
        text = v.text("note", note, required=False, max_len=MAX_TEXT)
        if o == CallOutcome.CALL_BACK and call_back_at is None:
            v.add("call_back_at", "is required for call_back")
        if o != CallOutcome.CALL_BACK and call_back_at is not None:
            v.add("call_back_at", "only a call_back has one")
        v.check()
        assert o is not None
        entry = self.entry(customer_id)
        if entry["agent_id"] != agent:
            raise PreconditionFailed(
                f"customer {customer_id} is on {entry['agent_id']}'s list, not {agent}'s"
            )
        if self.state.get(customer_id, {}).get("outcome") in FINAL:
            raise PreconditionFailed(
                f"customer {customer_id} was called already: {self.state[customer_id]['outcome']}"
            )
        self._recorded(customer_id, agent, o.value, call_back_at, text, at)

    @event("CallRecorded")
    def _recorded(
        self,
        customer_id: str,
        agent_id: str,
        outcome: str,
        call_back_at: datetime | None,
        note: str,
        at: datetime,
    ) -> None:
        call = {
            "customer_id": customer_id,
            "agent_id": agent_id,
            "outcome": outcome,
            "call_back_at": call_back_at,
            "note": note,
            "at": at,
        }
        self.calls.append(call)
        self.state[customer_id] = call


def call_id(call_list_id: str, customer_id: str, n: int) -> uuid.UUID:
    """The n-th call (from 1) of a call list to a customer."""
    return uuid.uuid5(_NAMESPACE, f"call:{call_list_id}:{customer_id}:{n}")


class Call(Aggregate):
    """One call an agent made from a call list, as recorded: published, so that the call is
    on the customer's timeline (the call list is marketing's plan, and is not)."""

    if TYPE_CHECKING:
        Recorded: ClassVar[type[Aggregate.Event]]

    @classmethod
    def create_id(cls, call_list_id: str, customer_id: str, n: int) -> uuid.UUID:
        return call_id(call_list_id, customer_id, n)

    @event("Recorded")
    def __init__(
        self,
        call_list_id: str,
        customer_id: str,
        n: int,
        campaign_id: str,
        campaign_name: str,
        agent_id: str,
        outcome: str,
        call_back_at: datetime | None,
        note: str,
        at: datetime,
    ) -> None:
        self.call_list_id = call_list_id
        self.customer_id = customer_id
        self.campaign_id = campaign_id
        self.agent_id = agent_id
        self.outcome = outcome


def build_call_list(
    *,
    name: str,
    campaign_id: str,
    agents: list[str],
    sends: Iterable[Send],
) -> CallList:
    """The campaign's reachable audience (consent for phone marketing, a phone number), shared
    among the agents in turn."""
    v = Violations()
    clean = v.text("name", name, max_len=MAX_NAME)
    people = [v.employee_id(f"agents[{i}]", a) for i, a in enumerate(agents)]
    if not people:
        v.add("agents", "at least one agent is required")
    v.check()
    entries = [
        # No name or number: read from the customer's profile when the call is handed out
        # (see build_lead_list).
        {"customer_id": s.customer_id, "agent_id": people[i % len(people)]}
        for i, s in enumerate(sorted(sends, key=lambda s: s.customer_id))
    ]
    if not entries:
        raise PreconditionFailed("the call list would be empty: nobody may be called")
    return CallList(name=clean, campaign_id=campaign_id, entries=entries)
