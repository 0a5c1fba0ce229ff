"""The sales aggregates and their rules: pure Python on `eventsourcing.domain`, no I/O.

Lead (captured -> assigned -> qualified -> converted; disqualified and reopened), SalesTeam
(members, territories, capacity, the round robin), Pipeline (ordered stages with default
probabilities), Opportunity (stage, amount, probability and forecast category; on hold and
resumed; won, lost, reopened; stage history), Product, PriceList, Quote (draft -> sent ->
accepted / declined / expired / cancelled, lines priced once and frozen) and Order (planned,
pending, fulfilled, unrealised). Command methods validate and check the state, then call the
decorated event methods, so each change is written once and is the same when replayed. Every
event of an aggregate about a customer names the customer.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Mapping, Sequence, Sized
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.domain import Aggregate, event

from c360_platform import currencies
from c360_platform.errors import PreconditionFailed
from c360_platform.pii import FORGOTTEN
from c360_platform.validation import Violations
from c360_sales import pricing

MAX_NAME = 200
MAX_TEXT = 5_000
MAX_REASON = 500
MAX_LINES = 500
MAX_PRODUCTS = 50
MAX_KEY = 64
"""Territories and each field of a price rule (an id, a target, a decimal, a date): short."""
MAX_MEMBERS = 100
"""Members of a sales team."""
MAX_TERRITORIES = 20
"""Territories of one team member."""
MAX_STAGES = 30
"""Stages of a pipeline."""
MAX_RULES = 200
"""Rules of a price list."""
_KEY = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
NAMESPACE = uuid.UUID("5a1e5c36-0c36-4c36-8c36-c360c3605a1e")
CURRENCIES = frozenset({"EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "JPY"})
"""The currencies sales accepts (others are INVALID_ARGUMENT: "unknown currency")."""


def named_id(kind: str, name: str) -> uuid.UUID:
    """The id of a team, pipeline, product (by SKU) or price list: derived from its name, so
    defining it again changes it instead of making a second one."""
    return uuid.uuid5(NAMESPACE, f"{kind}:{name}")


# -- values -------------------------------------------------------------------------------------


class Checks(Violations):
    """The platform's field checks plus the ones sales needs (money, dates, keys)."""

    def currency(
        self, field: str, value: str, *, default: str = "", among: Collection[str] = CURRENCIES
    ) -> str:
        """One of the currencies sales deals in."""
        return super().currency(field, value, default=default, among=among)

    def amount(self, field: str, value: str, *, required: bool = True) -> str:
        """An amount as sales keeps it: its text, checked ("" when empty or refused)."""
        number = self.decimal(field, value, required=required)
        return "" if number is None else str(number)

    def money(self, field: str, currency: str, amount: str, *, required: bool = False) -> Money:
        """A deal's money: a currency of sales and an amount in its smallest unit at most."""
        if not currency.strip() and not amount.strip():
            if required:
                self.add(field, "is required")
            return Money("", "")
        code = self.currency(f"{field}.currency", currency)
        return Money(code, self.in_units(f"{field}.amount", code, amount))

    def in_units(self, field: str, currency: str, amount: str) -> str:
        """An amount with no more decimals than `currency` has, written with all of them
        ("240" EUR is kept as "240.00", as every amount sales computes is): 1000.005 EUR is
        refused, not rounded one way in a list and shown another in a detail."""
        text = self.amount(field, amount)
        places = currencies.minor_units(currency)
        exponent = Decimal(text or "0").as_tuple().exponent
        if isinstance(exponent, int) and -exponent > places:
            self.add(field, f"at most {places} decimal places in {currency}")
            return ""
        return money_text(Decimal(text), currency) if text and currency else text

    def day_text(self, field: str, value: str, *, required: bool = False) -> str:
        """A day as sales keeps it: its text (YYYY-MM-DD), checked."""
        self.day(field, value, required=required)
        return value.strip()

    def key(self, field: str, value: str) -> str:
        cleaned = value.strip().lower()
        if not _KEY.match(cleaned):
            self.add(field, "must be 1-64 of a-z 0-9 _ - starting with a letter or digit")
        return cleaned

    def at_most(self, field: str, items: Sized, limit: int) -> bool:
        """Whether `items` are at most `limit` (else a violation of `field`, to be raised
        before each item is checked: thousands of items are one mistake, not thousands)."""
        if len(items) <= limit:
            return True
        self.add(field, f"must be at most {limit} (there are {len(items)})")
        return False

    def percent(self, field: str, value: int) -> int:
        if not 0 <= value <= 100:
            self.add(field, "must be 0 to 100")
        return value


@dataclass(frozen=True)
class Money:
    currency: str
    amount: str

    @property
    def empty(self) -> bool:
        return not self.currency


def dec(text: str) -> Decimal:
    try:
        return Decimal(text) if text else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def in_units(amount: str, currency: str) -> str:
    """An amount rounded (half up) to `currency`'s smallest unit: what another system's finer
    figure (a service contract's value) becomes as a deal's amount."""
    return money_text(dec(amount), currency)


def money_text(value: Decimal, currency: str) -> str:
    """An amount sales computed, as text in `currency`'s smallest unit ("18.01", "1234")."""
    return str(pricing.to_unit(value, currency))


def _require(kind: str, aggregate_id: uuid.UUID, state: str, action: str, *allowed: str) -> None:
    """FAILED_PRECONDITION, naming the state, unless `state` is one of `allowed`."""
    if state not in allowed:
        raise PreconditionFailed(
            f"{kind} {aggregate_id} is {state}: cannot {action} (only when {' or '.join(allowed)})"
        )


# -- leads --------------------------------------------------------------------------------------


class LeadChannel(StrEnum):
    WEB_FORM = "web_form"
    PHONE = "phone"
    IVR = "ivr"
    EMAIL = "email"
    SMS = "sms"
    IN_PERSON = "in_person"
    EVENT = "event"
    PARTNER = "partner"
    CAMPAIGN = "campaign"
    CHAT = "chat"
    REFERRAL = "referral"


class LeadState(StrEnum):
    NEW = "new"
    QUALIFIED = "qualified"
    CONVERTED = "converted"
    DISQUALIFIED = "disqualified"


class DisqualifyReason(StrEnum):
    CANNOT_CONTACT = "cannot_contact"
    NO_LONGER_INTERESTED = "no_longer_interested"
    LOST_TO_COMPETITOR = "lost_to_competitor"
    DUPLICATE = "duplicate"
    CANCELLED = "cancelled"


class AssignmentRule(StrEnum):
    MANUAL = "manual"
    ROUND_ROBIN = "round_robin"
    TERRITORY = "territory"
    CAPACITY = "capacity"


OPEN_LEAD_STATES = (LeadState.NEW.value, LeadState.QUALIFIED.value)


class Lead(Aggregate):
    """A prospect's interest, from its capture to a customer's opportunity (or its end)."""

    if TYPE_CHECKING:
        Captured: ClassVar[type[Aggregate.Event]]
        Assigned: ClassVar[type[Aggregate.Event]]
        Qualified: ClassVar[type[Aggregate.Event]]
        Converted: ClassVar[type[Aggregate.Event]]
        Disqualified: ClassVar[type[Aggregate.Event]]
        Reopened: ClassVar[type[Aggregate.Event]]
        Forgotten: ClassVar[type[Aggregate.Event]]
        # When the person behind the lead was forgotten (erased on request), None while not.
        forgotten_at: datetime | None
    forgotten_at = None

    @event("Captured")
    def __init__(
        self,
        customer_id: str,
        channel: str,
        campaign_id: str,
        source: str,
        person_name: str,
        company_name: str,
        email: str,
        phone: str,
        position: str,
        industry: str,
        territory: str,
        interest_products: list[str],
        estimated_currency: str,
        estimated_amount: str,
        description: str,
        team: str,
    ) -> None:
        self.customer_id = customer_id
        self.channel = channel
        self.campaign_id = campaign_id
        self.source = source
        self.person_name = person_name
        self.company_name = company_name
        self.email = email
        self.phone = phone
        self.position = position
        self.industry = industry
        self.territory = territory
        self.interest_products = list(interest_products)
        self.estimated_currency = estimated_currency
        self.estimated_amount = estimated_amount
        self.description = description
        self.team = team
        self.state = LeadState.NEW.value
        self.agent_id = ""
        self.disqualify_reason = ""
        self.opportunity_id = ""
        self.customer_registered = False
        self.contact_person_id = ""
        """The person registered for the lead and linked to its organisation as its contact
        (on conversion)."""

    def _require(self, action: str, *allowed: str) -> None:
        if self.forgotten_at is not None:
            raise PreconditionFailed(f"lead {self.id} is forgotten: it takes no more changes")
        _require("lead", self.id, self.state, action, *allowed)

    @property
    def display_name(self) -> str:
        return self.company_name or self.person_name

    def assign(self, agent_id: str, rule: str, team: str) -> None:
        self._require("assign it", *OPEN_LEAD_STATES)
        if agent_id != self.agent_id:
            self._assigned(self.customer_id, agent_id, self.agent_id, rule, team or self.team)

    @event("Assigned")
    def _assigned(
        self, customer_id: str, agent_id: str, previous_agent_id: str, rule: str, team: str
    ) -> None:
        self.agent_id = agent_id
        self.team = team

    def qualify(self, note: str) -> None:
        v = Checks()
        text = v.paragraphs("note", note, required=False, max_len=MAX_REASON)
        v.check()
        self._require("qualify it", LeadState.NEW.value)
        self._qualified(self.customer_id, text)

    @event("Qualified")
    def _qualified(self, customer_id: str, note: str) -> None:
        self.state = LeadState.QUALIFIED.value

    def check_convertible(self) -> None:
        self._require("convert it", LeadState.QUALIFIED.value)

    def convert(
        self,
        customer_id: str,
        registered: bool,
        opportunity_id: str,
        contact_person_id: str = "",
    ) -> None:
        self.check_convertible()
        if self.customer_id and customer_id != self.customer_id:
            raise PreconditionFailed(
                f"lead {self.id} belongs to customer {self.customer_id}: convert it for that one"
            )
        self._converted(
            customer_id,
            registered,
            opportunity_id,
            self.channel,
            self.agent_id,
            self.created_on.isoformat(),
            contact_person_id,
        )

    @event("Converted")
    def _converted(
        self,
        customer_id: str,
        customer_registered: bool,
        opportunity_id: str,
        channel: str,
        agent_id: str,
        captured_at: str,
        contact_person_id: str = "",  # absent from conversions stored before it
    ) -> None:
        self.customer_id = customer_id
        self.customer_registered = customer_registered
        self.opportunity_id = opportunity_id
        self.contact_person_id = contact_person_id
        self.state = LeadState.CONVERTED.value

    def disqualify(self, reason: str, note: str, competitor: str) -> None:
        v = Checks()
        why = v.enum("reason", reason, DisqualifyReason)
        text = v.paragraphs("note", note, required=False, max_len=MAX_REASON)
        rival = v.text("competitor", competitor, required=False)
        v.check()
        assert why is not None
        self._require("disqualify it", *OPEN_LEAD_STATES)
        self._disqualified(self.customer_id, why.value, text, rival)

    @event("Disqualified")
    def _disqualified(self, customer_id: str, reason: str, note: str, competitor: str) -> None:
        self.state = LeadState.DISQUALIFIED.value
        self.disqualify_reason = reason

    def reopen(self, reason: str) -> None:
        v = Checks()
        why = v.text("reason", reason, required=False, max_len=MAX_REASON)
        v.check()
        self._require("reopen it", LeadState.DISQUALIFIED.value)
        self._reopened(self.customer_id, why)

    @event("Reopened")
    def _reopened(self, customer_id: str, reason: str) -> None:
        self.state = LeadState.NEW.value
        self.disqualify_reason = ""

    def forget(self, at: datetime, *, with_customer: bool = False) -> None:
        """Erase the person behind the lead on request: a prospect's lead (sealed with a key of
        its own, deleted with this event) on its own; a customer's lead only `with_customer`,
        when that customer is forgotten. What happened, and when, stays."""
        if self.forgotten_at is not None:
            raise PreconditionFailed(
                f"lead {self.id} is forgotten already (since {self.forgotten_at.isoformat()})"
            )
        if self.customer_id and not with_customer:
            raise PreconditionFailed(
                f"lead {self.id} belongs to customer {self.customer_id}: forget the customer"
                " (its leads are forgotten with it)"
            )
        self._forgotten(self.customer_id, at)

    @event("Forgotten")
    def _forgotten(self, customer_id: str, forgotten_at: datetime) -> None:
        self.forgotten_at = forgotten_at
        for name in ("person_name", "company_name", "email", "phone", "description"):
            if getattr(self, name):
                setattr(self, name, FORGOTTEN)


def capture_lead(
    *,
    channel: str,
    campaign_id: str = "",
    source: str = "",
    customer_id: str = "",
    person_name: str = "",
    company_name: str = "",
    email: str = "",
    phone: str = "",
    position: str = "",
    industry: str = "",
    territory: str = "",
    interest_products: Sequence[str] = (),
    estimated_currency: str = "",
    estimated_amount: str = "",
    description: str = "",
    team: str = "",
    default_region: str = "",
) -> Lead:
    """Validate and normalise a new lead, then capture it."""
    v = Checks()
    ch = v.enum("channel", channel, LeadChannel)
    campaign = v.uuid("campaign_id", campaign_id.strip()) if campaign_id.strip() else ""
    if ch == LeadChannel.CAMPAIGN and not campaign:
        v.add("campaign_id", "is required for channel campaign")
    customer = v.uuid("customer_id", customer_id.strip()) if customer_id.strip() else ""
    person = v.text("person_name", person_name, required=False)
    company = v.text("company_name", company_name, required=False)
    if not person and not company and not customer:
        v.add("person_name", "a person name, a company name or a customer is required")
    mail = v.email("email", email) if email.strip() else ""
    tel = v.phone("phone", phone, default_region) if phone.strip() else ""
    products: list[str] = []
    if len(interest_products) > MAX_PRODUCTS:  # the list first: none of its items is read
        v.add("interest_products", f"at most {MAX_PRODUCTS}")
    else:
        products = [
            v.text(f"interest_products[{i}]", p, max_len=64)
            for i, p in enumerate(interest_products)
        ]
    value = v.money("estimated_value", estimated_currency, estimated_amount)
    clean_team = v.key("team", team) if team.strip() else ""
    lead_source = v.text("source", source, required=False)
    pos = v.text("position", position, required=False)
    ind = v.text("industry", industry, required=False, max_len=64).lower()
    terr = v.text("territory", territory, required=False, max_len=64).lower()
    text = v.paragraphs("description", description, required=False, max_len=MAX_TEXT)
    v.check()
    assert ch is not None
    return Lead(
        customer_id=customer,
        channel=ch.value,
        campaign_id=campaign,
        source=lead_source,
        person_name=person,
        company_name=company,
        email=mail,
        phone=tel,
        position=pos,
        industry=ind,
        territory=terr,
        interest_products=[p for p in products if p],
        estimated_currency=value.currency,
        estimated_amount=value.amount,
        description=text,
        team=clean_team,
    )


# -- sales teams and lead routing --------------------------------------------------------------


class SalesTeam(Aggregate):
    """A team of agents with the territories they cover and how many open leads they take."""

    if TYPE_CHECKING:
        Defined: ClassVar[type[Aggregate.Event]]
        Redefined: ClassVar[type[Aggregate.Event]]
        LeadRouted: ClassVar[type[Aggregate.Event]]

    @staticmethod
    def create_id(name: str, members: list[dict[str, Any]]) -> uuid.UUID:
        return named_id("team", name)

    @event("Defined")
    def __init__(self, name: str, members: list[dict[str, Any]]) -> None:
        self.name = name
        self.members = members
        self.last_agent = ""
        self.routed: list[str] = []
        """The agents leads were routed to, the most recent last (each once)."""

    def redefine(self, members: list[dict[str, Any]]) -> None:
        if members != self.members:
            self._redefined(self.name, members)

    @event("Redefined")
    def _redefined(self, name: str, members: list[dict[str, Any]]) -> None:
        self.members = members

    def route(self, lead_id: str, agent_id: str, rule: str) -> None:
        self._lead_routed(lead_id, agent_id, rule)

    @event("LeadRouted")
    def _lead_routed(self, lead_id: str, agent_id: str, rule: str) -> None:
        self.last_agent = agent_id
        if agent_id in self.routed:
            self.routed.remove(agent_id)
        self.routed.append(agent_id)


def team_members(members: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Validated members: agent ids unique, territories lower-case, capacity >= 0."""
    v = Checks()
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    if not v.at_most("members", members, MAX_MEMBERS):
        v.check()
    for i, m in enumerate(members):
        agent = v.employee_id(f"members[{i}].agent_id", str(m.get("agent_id", "")))
        if not agent:
            v.add(f"members[{i}].agent_id", "is required")
        if agent in seen:
            v.add(f"members[{i}].agent_id", "is listed twice")
        seen.add(agent)
        given = list(m.get("territories", ()))
        where = f"members[{i}].territories"
        territories = sorted(
            {
                v.text(f"{where}[{j}]", str(t), max_len=MAX_KEY).lower()
                for j, t in enumerate(given)
                if str(t).strip()
            }
            if v.at_most(where, given, MAX_TERRITORIES)
            else ()
        )
        out.append(
            {"agent_id": agent, "territories": territories, "capacity": int(m.get("capacity", 0))}
        )
    if not out:
        v.add("members", "a team needs at least one member")
    v.check()
    return out


def choose_agent(team: SalesTeam, rule: str, territory: str, open_leads: Mapping[str, int]) -> str:
    """The member a rule gives a lead to: round robin after the last agent routed a lead
    among the members it chooses from (the team, or for TERRITORY those covering the
    territory: each turns in the territory's own rotation), or the member with the most
    room for CAPACITY (fewest open leads relative to capacity; full members are skipped)."""
    members: list[str] = [str(m["agent_id"]) for m in team.members]
    if rule == AssignmentRule.TERRITORY.value:
        members = [str(m["agent_id"]) for m in team.members if territory in m["territories"]]
        if not members:
            raise PreconditionFailed(
                f"no member of team {team.name} covers territory {territory or '(none)'}"
            )
    if rule == AssignmentRule.CAPACITY.value:
        room: list[tuple[float, int, str]] = []
        for i, m in enumerate(team.members):
            held = open_leads.get(m["agent_id"], 0)
            cap = m["capacity"]
            if cap and held >= cap:
                continue
            room.append((held / cap if cap else held / 1_000_000, i, str(m["agent_id"])))
        if not room:
            raise PreconditionFailed(f"every member of team {team.name} is at capacity")
        return min(room)[2]
    last = next((a for a in reversed(team.routed) if a in members), "")
    if last:
        return members[(members.index(last) + 1) % len(members)]
    return members[0]


# -- pipelines and opportunities ---------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    key: str
    name: str
    probability: int
    won: bool = False
    lost: bool = False


class Pipeline(Aggregate):
    """A team's sales process: ordered stages, each with a default win probability."""

    if TYPE_CHECKING:
        Defined: ClassVar[type[Aggregate.Event]]
        Redefined: ClassVar[type[Aggregate.Event]]

    @staticmethod
    def create_id(name: str, team: str, stages: list[dict[str, Any]]) -> uuid.UUID:
        return named_id("pipeline", name)

    @event("Defined")
    def __init__(self, name: str, team: str, stages: list[dict[str, Any]]) -> None:
        self.name = name
        self.team = team
        self.stages = stages

    def redefine(self, team: str, stages: list[dict[str, Any]]) -> None:
        if (team, stages) != (self.team, self.stages):
            self._redefined(self.name, team, stages)

    @event("Redefined")
    def _redefined(self, name: str, team: str, stages: list[dict[str, Any]]) -> None:
        self.team = team
        self.stages = stages

    def stage(self, key: str) -> Stage:
        for s in self.stages:
            if s["key"] == key:
                return Stage(**s)
        raise PreconditionFailed(
            f"pipeline {self.name} has no stage {key!r}; its stages:"
            f" {', '.join(s['key'] for s in self.stages)}"
        )

    def first_open(self) -> Stage:
        return next(Stage(**s) for s in self.stages if not s["won"] and not s["lost"])

    def won_stage(self) -> Stage | None:
        return next((Stage(**s) for s in self.stages if s["won"]), None)

    def lost_stage(self) -> Stage | None:
        return next((Stage(**s) for s in self.stages if s["lost"]), None)


def pipeline_stages(stages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    v = Checks()
    out: list[dict[str, Any]] = []
    keys: set[str] = set()
    if not v.at_most("stages", stages, MAX_STAGES):
        v.check()
    for i, s in enumerate(stages):
        key = v.key(f"stages[{i}].key", str(s.get("key", "")))
        if key in keys:
            v.add(f"stages[{i}].key", "is used twice")
        keys.add(key)
        name = v.text(f"stages[{i}].name", str(s.get("name", "")) or key)
        won, lost = bool(s.get("won")), bool(s.get("lost"))
        probability = int(s.get("probability", 0))
        v.percent(f"stages[{i}].probability", probability)
        if won and lost:
            v.add(f"stages[{i}]", "a stage is won or lost, not both")
        if won:
            probability = 100
        if lost:
            probability = 0
        out.append({"key": key, "name": name, "probability": probability, "won": won, "lost": lost})
    if not any(not s["won"] and not s["lost"] for s in out):
        v.add("stages", "a pipeline needs at least one open stage")
    v.check()
    return out


class ForecastCategory(StrEnum):
    PIPELINE = "pipeline"
    BEST_CASE = "best_case"
    COMMIT = "commit"
    OMITTED = "omitted"
    WON = "won"
    LOST = "lost"


class LostStatus(StrEnum):
    """How a lost opportunity ended."""

    CANCELED = "canceled"
    OUT_SOLD = "out_sold"


class OpportunityState(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class Opportunity(Aggregate):
    """A possible sale to a customer, moving through a pipeline's stages."""

    if TYPE_CHECKING:
        Opened: ClassVar[type[Aggregate.Event]]
        StageMoved: ClassVar[type[Aggregate.Event]]
        Updated: ClassVar[type[Aggregate.Event]]
        Won: ClassVar[type[Aggregate.Event]]
        Lost: ClassVar[type[Aggregate.Event]]
        Reopened: ClassVar[type[Aggregate.Event]]
        PutOnHold: ClassVar[type[Aggregate.Event]]
        Resumed: ClassVar[type[Aggregate.Event]]
        # Open and waiting (HoldOpportunity), with the reason; class defaults for the
        # opportunities opened before holds existed.
        on_hold: bool
        hold_reason: str
        # canceled or out_sold once lost ("" for those lost before the status existed).
        lost_status: str
    on_hold = False
    hold_reason = ""
    lost_status = ""
    closed_at: datetime | None = None
    """When it was won or lost (recorded), None while open."""

    @event("Opened")
    def __init__(
        self,
        customer_id: str,
        name: str,
        pipeline_id: str,
        stage: str,
        owner_id: str,
        currency: str,
        amount: str,
        expected_close: str,
        probability: int,
        manual_probability: bool,
        forecast_category: str,
        competitor: str,
        territory: str,
        partner: str,
        lead_id: str,
        opened_at: datetime,
        campaign_id: str = "",
    ) -> None:
        self.customer_id = customer_id
        self.name = name
        self.campaign_id = campaign_id
        self.pipeline_id = pipeline_id
        self.stage = stage
        self.owner_id = owner_id
        self.currency = currency
        self.amount = amount
        self.expected_close = expected_close
        self.probability = probability
        self.manual_probability = manual_probability
        self.forecast_category = forecast_category
        self.competitor = competitor
        self.territory = territory
        self.partner = partner
        self.lead_id = lead_id
        self.state = OpportunityState.OPEN.value
        self.actual_amount = ""
        self.closed_on = ""
        self.lost_reason = ""
        self.stage_history: list[dict[str, str]] = [
            {"stage": stage, "entered_at": opened_at.isoformat()}
        ]

    def _require(self, action: str, *allowed: str) -> None:
        _require("opportunity", self.id, self.state, action, *allowed)

    def _enter(self, stage: str, at: datetime) -> None:
        self.stage = stage
        self.stage_history.append({"stage": stage, "entered_at": at.isoformat()})

    def move(self, stage: Stage, at: datetime) -> None:
        self._require("move its stage", OpportunityState.OPEN.value)
        if stage.won or stage.lost:
            raise PreconditionFailed(
                f"stage {stage.key} closes the opportunity: win or lose it instead"
            )
        if stage.key != self.stage:
            probability = self.probability if self.manual_probability else stage.probability
            self._stage_moved(
                self.customer_id, stage.key, self.stage, probability, at, name=self.name
            )

    @event("StageMoved")
    def _stage_moved(
        self,
        customer_id: str,
        stage: str,
        previous_stage: str,
        probability: int,
        moved_at: datetime,
        name: str = "",
    ) -> None:
        self.probability = probability
        self._enter(stage, moved_at)

    def update(self, changes: Mapping[str, Any], stage: Stage) -> None:
        """Change amount, close date, probability (a number, or None for the stage's default),
        forecast category, competitor, territory, partner or owner (only those given)."""
        self._require("update it", OpportunityState.OPEN.value)
        v = Checks()
        new: dict[str, Any] = {
            "currency": self.currency,
            "amount": self.amount,
            "expected_close": self.expected_close,
            "probability": self.probability,
            "manual_probability": self.manual_probability,
            "forecast_category": self.forecast_category,
            "competitor": self.competitor,
            "territory": self.territory,
            "partner": self.partner,
            "owner_id": self.owner_id,
        }
        if "amount" in changes:
            money = v.money("amount", *changes["amount"], required=True)
            new["currency"], new["amount"] = money.currency, money.amount
        if "expected_close" in changes:
            new["expected_close"] = v.day_text("expected_close", changes["expected_close"])
        if "probability" in changes:
            p = changes["probability"]
            if p is None:
                new["probability"], new["manual_probability"] = stage.probability, False
            else:
                new["probability"], new["manual_probability"] = (
                    v.percent("probability", int(p)),
                    True,
                )
        if "forecast_category" in changes:
            cat = v.enum("forecast_category", changes["forecast_category"], ForecastCategory)
            if cat in (ForecastCategory.WON, ForecastCategory.LOST):
                v.add("forecast_category", "won and lost are set by winning or losing")
            new["forecast_category"] = cat.value if cat else ""
        for name in ("competitor", "partner"):
            if name in changes:
                new[name] = v.text(name, changes[name], required=False)
        if "territory" in changes:
            new["territory"] = v.text("territory", changes["territory"], required=False).lower()
        if "owner_id" in changes:
            new["owner_id"] = v.employee_id("owner_id", changes["owner_id"])
        v.check()
        current = {k: getattr(self, k) for k in new}
        if new != current:
            self._updated(self.customer_id, **new, name=self.name)

    @event("Updated")
    def _updated(
        self,
        customer_id: str,
        currency: str,
        amount: str,
        expected_close: str,
        probability: int,
        manual_probability: bool,
        forecast_category: str,
        competitor: str,
        territory: str,
        partner: str,
        owner_id: str,
        name: str = "",
    ) -> None:
        self.currency = currency
        self.amount = amount
        self.expected_close = expected_close
        self.probability = probability
        self.manual_probability = manual_probability
        self.forecast_category = forecast_category
        self.competitor = competitor
        self.territory = territory
        self.partner = partner
        self.owner_id = owner_id

    def win(self, actual_amount: str, stage: Stage | None, on: date, at: datetime) -> None:
        v = Checks()
        given = actual_amount.strip()
        amount = (v.in_units("actual_amount", self.currency, given) if given else "") or self.amount
        v.check()
        self._require("win it", OpportunityState.OPEN.value)
        self._won(
            self.customer_id,
            self.currency,
            amount,
            stage.key if stage else self.stage,
            on.isoformat(),
            at,
            name=self.name,
        )

    @event("Won")
    def _won(
        self,
        customer_id: str,
        currency: str,
        actual_amount: str,
        stage: str,
        closed_on: str,
        closed_at: datetime,
        name: str = "",
    ) -> None:
        self.state = OpportunityState.WON.value
        self.closed_at = closed_at
        self._end_hold()
        self.actual_amount = actual_amount
        self.closed_on = closed_on
        self.probability = 100
        self.forecast_category = ForecastCategory.WON.value
        if stage != self.stage:
            self._enter(stage, closed_at)

    def lose(
        self,
        reason: str,
        competitor: str,
        stage: Stage | None,
        on: date,
        at: datetime,
        status: str = "",
    ) -> None:
        """Close as lost: canceled, or out-sold (`status`; when empty, out-sold if a
        competitor is named, else canceled)."""
        v = Checks()
        why = v.text("reason", reason, max_len=MAX_REASON)
        rival = v.text("competitor", competitor, required=False)
        how = v.enum("status", status, LostStatus) if status else None
        v.check()
        self._require("lose it", OpportunityState.OPEN.value)
        if how is None:
            how = LostStatus.OUT_SOLD if rival else LostStatus.CANCELED
        self._lost(
            self.customer_id,
            why,
            rival,
            stage.key if stage else self.stage,
            on.isoformat(),
            at,
            how.value,
            name=self.name,
        )

    @event("Lost")
    def _lost(
        self,
        customer_id: str,
        reason: str,
        competitor: str,
        stage: str,
        closed_on: str,
        closed_at: datetime,
        status: str = "",
        name: str = "",
    ) -> None:
        self.state = OpportunityState.LOST.value
        self.closed_at = closed_at
        self._end_hold()
        self.lost_status = status
        self.lost_reason = reason
        if competitor:
            self.competitor = competitor
        self.closed_on = closed_on
        self.probability = 0
        self.forecast_category = ForecastCategory.LOST.value
        if stage != self.stage:
            self._enter(stage, closed_at)

    def reopen(self, stage: Stage, reason: str, at: datetime) -> None:
        v = Checks()
        why = v.text("reason", reason, required=False, max_len=MAX_REASON)
        v.check()
        self._require("reopen it", OpportunityState.WON.value, OpportunityState.LOST.value)
        self._reopened(
            self.customer_id,
            stage.key,
            why,
            stage.probability,
            at,
            name=self.name,
            owner_id=self.owner_id,
            currency=self.currency,
            amount=self.amount,
            expected_close=self.expected_close,
        )

    @event("Reopened")
    def _reopened(
        self,
        customer_id: str,
        stage: str,
        reason: str,
        probability: int,
        reopened_at: datetime,
        name: str = "",
        # What the deal is, repeated for readers ("" in events recorded before).
        owner_id: str = "",
        currency: str = "",
        amount: str = "",
        expected_close: str = "",
    ) -> None:
        self.state = OpportunityState.OPEN.value
        self.probability = probability
        self.manual_probability = False
        self.forecast_category = ForecastCategory.PIPELINE.value
        self.actual_amount = ""
        self.closed_on = ""
        self.lost_reason = ""
        self.lost_status = ""
        self.closed_at = None
        self._enter(stage, reopened_at)

    def hold(self, reason: str) -> None:
        """Put the open opportunity on hold: it keeps its stage and forecast category."""
        v = Checks()
        why = v.text("reason", reason, max_len=MAX_REASON)
        v.check()
        self._require("put it on hold", OpportunityState.OPEN.value)
        if self.on_hold:
            raise PreconditionFailed(
                f"opportunity {self.id} is on hold already ({self.hold_reason}): resume it first"
            )
        self._put_on_hold(self.customer_id, why, name=self.name)

    @event("PutOnHold")
    def _put_on_hold(self, customer_id: str, reason: str, name: str = "") -> None:
        self.on_hold = True
        self.hold_reason = reason

    def resume(self) -> None:
        self._require("resume it", OpportunityState.OPEN.value)
        if not self.on_hold:
            raise PreconditionFailed(
                f"opportunity {self.id} is in progress: cannot resume it (only when on hold)"
            )
        self._resumed(self.customer_id, name=self.name)

    @event("Resumed")
    def _resumed(self, customer_id: str, name: str = "") -> None:
        self._end_hold()

    def _end_hold(self) -> None:
        self.on_hold = False
        self.hold_reason = ""

    @property
    def weighted(self) -> Decimal:
        """amount x probability (the forecast's weighted value)."""
        return dec(self.amount) * self.probability / 100


def open_opportunity(
    *,
    customer_id: str,
    name: str,
    pipeline: Pipeline,
    stage: str = "",
    owner_id: str = "",
    currency: str = "",
    amount: str = "",
    expected_close: str = "",
    probability: int | None = None,
    forecast_category: str = "",
    competitor: str = "",
    territory: str = "",
    partner: str = "",
    lead_id: str = "",
    campaign_id: str = "",
    at: datetime,
) -> Opportunity:
    v = Checks()
    customer = v.uuid("customer_id", customer_id.strip())
    title = v.text("name", name, max_len=MAX_NAME)
    owner = v.employee_id("owner_id", owner_id)
    money = v.money("amount", currency, amount, required=True)
    close = v.day_text("expected_close", expected_close)
    manual = probability is not None
    if probability is not None:
        v.percent("probability", probability)
    cat = v.enum("forecast_category", forecast_category or "pipeline", ForecastCategory)
    if cat in (ForecastCategory.WON, ForecastCategory.LOST):
        v.add("forecast_category", "won and lost are set by winning or losing")
    rival = v.text("competitor", competitor, required=False)
    terr = v.text("territory", territory, required=False, max_len=64).lower()
    dealer = v.text("partner", partner, required=False)
    v.check()
    assert cat is not None
    first = pipeline.stage(stage) if stage else pipeline.first_open()
    if first.won or first.lost:
        raise PreconditionFailed(
            f"stage {first.key} closes an opportunity: open it in an open stage"
        )
    return Opportunity(
        customer_id=customer,
        name=title,
        pipeline_id=str(pipeline.id),
        stage=first.key,
        owner_id=owner,
        currency=money.currency,
        amount=money.amount,
        expected_close=close,
        probability=probability if probability is not None else first.probability,
        manual_probability=manual,
        forecast_category=cat.value,
        competitor=rival,
        territory=terr,
        partner=dealer,
        lead_id=lead_id,
        opened_at=at,
        campaign_id=campaign_id,
    )


# -- products and price lists -------------------------------------------------------------------


class Product(Aggregate):
    """A catalogue product (its id derives from its SKU)."""

    if TYPE_CHECKING:
        Defined: ClassVar[type[Aggregate.Event]]
        Redefined: ClassVar[type[Aggregate.Event]]

    @staticmethod
    def create_id(
        sku: str,
        name: str,
        category: str,
        unit: str,
        currency: str,
        list_price: str,
        cost: str,
        active: bool,
    ) -> uuid.UUID:
        return named_id("product", sku)

    @event("Defined")
    def __init__(
        self,
        sku: str,
        name: str,
        category: str,
        unit: str,
        currency: str,
        list_price: str,
        cost: str,
        active: bool,
    ) -> None:
        self._set(name, category, unit, currency, list_price, cost, active)
        self.sku = sku

    def _set(
        self,
        name: str,
        category: str,
        unit: str,
        currency: str,
        list_price: str,
        cost: str,
        active: bool,
    ) -> None:
        self.name = name
        self.category = category
        self.unit = unit
        self.currency = currency
        self.list_price = list_price
        self.cost = cost
        self.active = active

    def redefine(self, **fields: Any) -> None:
        current = {k: getattr(self, k) for k in fields}
        if current != fields:
            self._redefined(sku=self.sku, **fields)

    @event("Redefined")
    def _redefined(
        self,
        sku: str,
        name: str,
        category: str,
        unit: str,
        currency: str,
        list_price: str,
        cost: str,
        active: bool,
    ) -> None:
        self._set(name, category, unit, currency, list_price, cost, active)

    def for_pricing(self) -> pricing.Product:
        return pricing.Product(
            str(self.id), self.category, self.currency, dec(self.list_price), dec(self.cost)
        )


def product_fields(
    *,
    sku: str,
    name: str,
    category: str,
    unit: str,
    currency: str,
    list_price: str,
    cost: str,
    active: bool,
) -> dict[str, Any]:
    v = Checks()
    clean = {
        "name": v.text("name", name, max_len=MAX_NAME),
        "category": v.key("category", category or "general"),
        "unit": v.key("unit", unit or "unit"),
        "currency": v.currency("list_price.currency", currency),
        "list_price": v.amount("list_price.amount", list_price),
        "cost": v.amount("cost", cost, required=False) or "0",
        "active": active,
    }
    v.key("sku", sku)
    v.check()
    return clean


class PriceList(Aggregate):
    """Prices in one currency: rules by scope, quantity and validity."""

    if TYPE_CHECKING:
        Defined: ClassVar[type[Aggregate.Event]]
        Redefined: ClassVar[type[Aggregate.Event]]

    @staticmethod
    def create_id(name: str, currency: str, rules: list[dict[str, Any]]) -> uuid.UUID:
        return named_id("price_list", name)

    @event("Defined")
    def __init__(self, name: str, currency: str, rules: list[dict[str, Any]]) -> None:
        self.name = name
        self.currency = currency
        self.rules = rules

    def redefine(self, currency: str, rules: list[dict[str, Any]]) -> None:
        if (currency, rules) != (self.currency, self.rules):
            self._redefined(self.name, currency, rules)

    @event("Redefined")
    def _redefined(self, name: str, currency: str, rules: list[dict[str, Any]]) -> None:
        self.currency = currency
        self.rules = rules

    def for_pricing(self) -> pricing.PriceList:
        return pricing.PriceList(str(self.id), self.currency, tuple(rule_of(r) for r in self.rules))


RULE_FIELDS = (
    "rule_id", "scope", "target", "min_quantity", "valid_from", "valid_to", "computation",
    "fixed_price", "discount_percent", "base", "base_price_list_id", "rounding", "surcharge",
    "min_margin", "max_margin",
)  # fmt: skip


def rule_of(r: Mapping[str, str]) -> pricing.Rule:
    """A stored rule (all text) as the pricing function takes it."""

    def opt(name: str) -> Decimal | None:
        return Decimal(r[name]) if r.get(name) else None

    return pricing.Rule(
        rule_id=r["rule_id"],
        scope=pricing.Scope(r["scope"]),
        computation=pricing.Computation(r["computation"]),
        target=r.get("target", ""),
        min_quantity=dec(r.get("min_quantity", "")),
        valid_from=date.fromisoformat(r["valid_from"]) if r.get("valid_from") else None,
        valid_to=date.fromisoformat(r["valid_to"]) if r.get("valid_to") else None,
        fixed_price=dec(r.get("fixed_price", "")),
        discount_percent=dec(r.get("discount_percent", "")),
        base=pricing.Base(r.get("base") or "list_price"),
        base_price_list_id=r.get("base_price_list_id", ""),
        rounding=dec(r.get("rounding", "")),
        surcharge=dec(r.get("surcharge", "")),
        min_margin=opt("min_margin"),
        max_margin=opt("max_margin"),
    )


def price_rules(rules: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """Validated rules, all values as text; INVALID_ARGUMENT naming `rules[i].<field>`."""
    v = Checks()
    out: list[dict[str, str]] = []
    ids: set[str] = set()
    if not v.at_most("rules", rules, MAX_RULES):
        v.check()
    for i, raw in enumerate(rules):
        f = f"rules[{i}]."
        r = {  # each a word or a number: an id, a key, a decimal, a date
            name: v.text(f + name, str(raw.get(name, "") or ""), required=False, max_len=MAX_KEY)
            for name in RULE_FIELDS
        }
        r["rule_id"] = r["rule_id"] or f"r{i + 1}"
        if r["rule_id"] in ids:
            v.add(f + "rule_id", "is used twice")
        ids.add(r["rule_id"])
        scope = v.enum(f + "scope", r["scope"], pricing.Scope) if r["scope"] else None
        if scope is None and not r["scope"]:
            v.add(f + "scope", "is required: all, category or product")
        if scope in (pricing.Scope.CATEGORY, pricing.Scope.PRODUCT) and not r["target"]:
            v.add(f + "target", f"is required for scope {scope}")
        comp = v.enum(f + "computation", r["computation"], pricing.Computation)
        if comp == pricing.Computation.FIXED:
            v.decimal(f + "fixed_price", r["fixed_price"])
        for name in ("discount_percent", "surcharge"):
            v.decimal(f + name, r[name], required=False, negative=True)
        for name in ("min_quantity", "rounding"):
            v.decimal(f + name, r[name], required=False)
        for name in ("min_margin", "max_margin"):
            v.decimal(f + name, r[name], required=False, negative=True)
        if r["base"]:
            base = v.enum(f + "base", r["base"], pricing.Base)
            if base == pricing.Base.PRICE_LIST:
                r["base_price_list_id"] = v.uuid(f + "base_price_list_id", r["base_price_list_id"])
        start = v.day_text(f + "valid_from", r["valid_from"])
        end = v.day_text(f + "valid_to", r["valid_to"])
        if start and end and end < start:
            v.add(f + "valid_to", "must not be before valid_from")
        out.append(r)
    v.check()
    return out


# -- quotes -------------------------------------------------------------------------------------


class QuoteState(StrEnum):
    DRAFT = "draft"
    SENT = "sent"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Totals:
    net: Decimal
    tax: Decimal

    @property
    def gross(self) -> Decimal:
        return self.net + self.tax


def line_net(quantity: str, unit_price: str, discount_percent: str, currency: str) -> Decimal:
    gross = dec(quantity) * dec(unit_price)
    return pricing.to_unit(gross * (1 - dec(discount_percent) / 100), currency)


def totals(lines: Sequence[Mapping[str, str]], currency: str) -> Totals:
    """The net and the tax of `lines`, the tax rounded per line (as each line's net is)."""
    net = sum((dec(line["net_amount"]) for line in lines), Decimal(0))
    tax = sum(
        (
            pricing.to_unit(dec(line["net_amount"]) * dec(line["tax_rate"]) / 100, currency)
            for line in lines
        ),
        Decimal(0),
    )
    return Totals(pricing.to_unit(net, currency), pricing.to_unit(tax, currency))


class Quote(Aggregate):
    """A commercial proposal for an opportunity; each line keeps the price it was given."""

    if TYPE_CHECKING:
        Drafted: ClassVar[type[Aggregate.Event]]
        LineAdded: ClassVar[type[Aggregate.Event]]
        LineRemoved: ClassVar[type[Aggregate.Event]]
        Sent: ClassVar[type[Aggregate.Event]]
        Accepted: ClassVar[type[Aggregate.Event]]
        Declined: ClassVar[type[Aggregate.Event]]
        Expired: ClassVar[type[Aggregate.Event]]
        Cancelled: ClassVar[type[Aggregate.Event]]

    @event("Drafted")
    def __init__(
        self,
        customer_id: str,
        opportunity_id: str,
        price_list_id: str,
        currency: str,
        valid_until: str,
        revision: int,
        revises_quote_id: str,
        lines: list[dict[str, str]],
    ) -> None:
        self.customer_id = customer_id
        self.opportunity_id = opportunity_id
        self.price_list_id = price_list_id
        self.currency = currency
        self.valid_until = valid_until
        self.revision = revision
        self.revises_quote_id = revises_quote_id
        self.lines = list(lines)
        self.state = QuoteState.DRAFT.value
        self.order_id = ""
        self.reason = ""

    def _require(self, action: str, *allowed: str) -> None:
        _require("quote", self.id, self.state, action, *allowed)

    @property
    def totals(self) -> Totals:
        return totals(self.lines, self.currency)

    def add_line(
        self,
        *,
        product: Product,
        quantity: str,
        price: pricing.Price,
        discount_percent: str,
        tax_rate: str,
        description: str,
    ) -> str:
        self._require("add a line", QuoteState.DRAFT.value)
        if len(self.lines) >= MAX_LINES:
            raise PreconditionFailed(f"quote {self.id} has {MAX_LINES} lines already")
        line_id = f"l{len(self.lines) + 1}"
        while any(line["line_id"] == line_id for line in self.lines):
            line_id += "a"
        unit_price = money_text(price.unit_price, self.currency)
        line = {
            "line_id": line_id,
            "product_id": str(product.id),
            "sku": product.sku,
            "description": description or product.name,
            "quantity": quantity,
            "unit_price": unit_price,
            "rule_id": price.rule_id,
            "pricing_note": price.note,
            "discount_percent": discount_percent or "0",
            "tax_rate": tax_rate or "0",
            "net_amount": money_text(
                line_net(quantity, unit_price, discount_percent, self.currency), self.currency
            ),
            "unit_cost": product.cost,
        }
        self._line_added(self.customer_id, line)
        return line_id

    @event("LineAdded")
    def _line_added(self, customer_id: str, line: dict[str, str]) -> None:
        self.lines.append(line)

    def remove_line(self, line_id: str) -> None:
        self._require("remove a line", QuoteState.DRAFT.value)
        if not any(line["line_id"] == line_id for line in self.lines):
            from c360_platform.errors import NotFound

            raise NotFound(f"quote {self.id} has no line {line_id}")
        self._line_removed(self.customer_id, line_id)

    @event("LineRemoved")
    def _line_removed(self, customer_id: str, line_id: str) -> None:
        self.lines = [line for line in self.lines if line["line_id"] != line_id]

    def send(self, today: date | None = None) -> None:
        """Send the draft (with lines, and still valid on `today` if it has a date)."""
        self._require("send it", QuoteState.DRAFT.value)
        if not self.lines:
            raise PreconditionFailed(f"quote {self.id} has no lines: add one before sending it")
        if today is not None and self.valid_until and today.isoformat() > self.valid_until:
            raise PreconditionFailed(
                f"quote {self.id} was valid until {self.valid_until}: draft a revision of it"
                " with a later date"
            )
        t = self.totals
        self._sent(
            self.customer_id,
            self.currency,
            money_text(t.net, self.currency),
            money_text(t.tax, self.currency),
            money_text(t.gross, self.currency),
        )

    @event("Sent")
    def _sent(
        self, customer_id: str, currency: str, net_total: str, tax_total: str, gross_total: str
    ) -> None:
        self.state = QuoteState.SENT.value

    def accept(self, order_id: str, today: date) -> None:
        self._require("accept it", QuoteState.SENT.value)
        if self.valid_until and today.isoformat() > self.valid_until:
            raise PreconditionFailed(
                f"quote {self.id} was valid until {self.valid_until}: revise it and send it again"
            )
        self._accepted(
            self.customer_id, order_id, self.currency, money_text(self.totals.gross, self.currency)
        )

    @event("Accepted")
    def _accepted(self, customer_id: str, order_id: str, currency: str, gross_total: str) -> None:
        self.state = QuoteState.ACCEPTED.value
        self.order_id = order_id

    def decline(self, reason: str) -> None:
        v = Checks()
        why = v.text("reason", reason, required=False, max_len=MAX_REASON)
        v.check()
        self._require("decline it", QuoteState.SENT.value)
        self._declined(self.customer_id, why)

    @event("Declined")
    def _declined(self, customer_id: str, reason: str) -> None:
        self.state = QuoteState.DECLINED.value
        self.reason = reason

    def expire_if_due(self, today: date) -> bool:
        """Expire a sent quote whose validity date has passed; True if it did."""
        if self.state != QuoteState.SENT.value or not self.valid_until:
            return False
        if today.isoformat() <= self.valid_until:
            return False
        self._expired(self.customer_id, self.valid_until)
        return True

    @event("Expired")
    def _expired(self, customer_id: str, valid_until: str) -> None:
        self.state = QuoteState.EXPIRED.value

    def cancel(self, reason: str) -> None:
        v = Checks()
        why = v.text("reason", reason, required=False, max_len=MAX_REASON)
        v.check()
        self._require("cancel it", QuoteState.DRAFT.value, QuoteState.SENT.value)
        self._cancelled(self.customer_id, why)

    @event("Cancelled")
    def _cancelled(self, customer_id: str, reason: str) -> None:
        self.state = QuoteState.CANCELLED.value
        self.reason = reason


def line_input(quantity: str, discount_percent: str, tax_rate: str) -> tuple[str, str, str]:
    """Validated line numbers: quantity > 0, discount 0..100, tax rate 0..100."""
    v = Checks()
    q = v.decimal("quantity", quantity, negative=True)
    if q is not None and q <= 0:
        v.add("quantity", "must be more than zero")
    d = v.decimal("discount_percent", discount_percent, required=False)
    if d is not None and d > 100:
        v.add("discount_percent", "must be 0 to 100")
    t = v.decimal("tax_rate", tax_rate, required=False)
    if t is not None and t > 100:
        v.add("tax_rate", "must be 0 to 100")
    v.check()
    return str(q), str(d or 0), str(t or 0)


# -- orders -------------------------------------------------------------------------------------


class OrderState(StrEnum):
    PLANNED = "planned"
    PENDING = "pending"
    FULFILLED = "fulfilled"
    UNREALISED = "unrealised"


def order_number(order_id: uuid.UUID, on: date) -> str:
    """A readable number for people and ERP: SO-2026-1A2B3C4D (from the order's id)."""
    return f"SO-{on.year}-{order_id.hex[:8].upper()}"


class Order(Aggregate):
    """A customer's order: planned, then pending at ERP once confirmed, until ERP reports it
    fulfilled; or unrealised (cancelled, lapsed) with the reason."""

    if TYPE_CHECKING:
        Placed: ClassVar[type[Aggregate.Event]]
        Confirmed: ClassVar[type[Aggregate.Event]]
        FulfilmentRecorded: ClassVar[type[Aggregate.Event]]
        Fulfilled: ClassVar[type[Aggregate.Event]]
        Invoiced: ClassVar[type[Aggregate.Event]]
        Unrealised: ClassVar[type[Aggregate.Event]]

    @staticmethod
    def create_id(order_id: str) -> uuid.UUID:
        return uuid.UUID(order_id)

    @event("Placed")
    def __init__(
        self,
        order_id: str,
        customer_id: str,
        quote_id: str,
        opportunity_id: str,
        currency: str,
        lines: list[dict[str, str]],
        order_number: str,
    ) -> None:
        self.customer_id = customer_id
        self.quote_id = quote_id
        self.opportunity_id = opportunity_id
        self.currency = currency
        self.lines = [{**line, "fulfilled_quantity": "0"} for line in lines]
        self.order_number = order_number
        self.state = OrderState.PLANNED.value
        self.erp_events: list[str] = []
        self.reason = ""
        self.fulfilled_on = ""
        self.invoices: list[dict[str, str]] = []

    def _require(self, action: str, *allowed: str) -> None:
        _require("order", self.id, self.state, action, *allowed)

    @property
    def totals(self) -> Totals:
        return totals(self.lines, self.currency)

    def confirm(self) -> None:
        self._require("confirm it", OrderState.PLANNED.value)
        self._confirmed(
            self.customer_id,
            self.order_number,
            self.currency,
            self.lines,
            money_text(self.totals.gross, self.currency),
        )

    @event("Confirmed")
    def _confirmed(
        self,
        customer_id: str,
        order_number: str,
        currency: str,
        lines: list[dict[str, str]],
        gross_total: str,
    ) -> None:
        self.state = OrderState.PENDING.value

    def record_fulfilment(
        self, erp_event_id: str, delivered: Mapping[str, str], reference: str, on: date
    ) -> None:
        """A delivery ERP reported (once per ERP event): quantities per line; when every line
        is delivered in full the order is fulfilled."""
        if erp_event_id in self.erp_events:
            return
        self._require("record a delivery on it", OrderState.PENDING.value)
        v = Checks()
        lines = {line["line_id"]: line for line in self.lines}
        clean: dict[str, str] = {}
        for line_id, quantity in delivered.items():
            if line_id not in lines:
                v.add("delivered", f"order {self.order_number} has no line {line_id}")
                continue
            q = v.decimal(f"delivered[{line_id}]", quantity, negative=True)
            if q is not None and q <= 0:
                v.add(f"delivered[{line_id}]", "must be more than zero")
            clean[line_id] = str(q)
        if not delivered:
            v.add("delivered", "at least one line")
        v.check()
        after = {
            lid: dec(line["fulfilled_quantity"]) + dec(clean.get(lid, "0"))
            for lid, line in lines.items()
        }
        complete = all(after[lid] >= dec(line["quantity"]) for lid, line in lines.items())
        value = sum(
            (
                min(after[lid], dec(line["quantity"]))
                / dec(line["quantity"])
                * dec(line["net_amount"])
                for lid, line in lines.items()
            ),
            Decimal(0),
        )
        self._fulfilment_recorded(
            self.customer_id,
            erp_event_id,
            clean,
            complete,
            self.currency,
            money_text(value, self.currency),
            reference,
        )
        if complete:
            t = self.totals
            self._fulfilled(
                self.customer_id,
                self.currency,
                money_text(t.gross, self.currency),
                money_text(t.net, self.currency),
                sorted({line["product_id"] for line in self.lines}),
                on.isoformat(),
            )

    @event("FulfilmentRecorded")
    def _fulfilment_recorded(
        self,
        customer_id: str,
        erp_event_id: str,
        delivered: dict[str, str],
        complete: bool,
        currency: str,
        fulfilled_amount: str,
        delivery_reference: str,
    ) -> None:
        self.erp_events.append(erp_event_id)
        for line in self.lines:
            if line["line_id"] in delivered:
                line["fulfilled_quantity"] = str(
                    dec(line["fulfilled_quantity"]) + dec(delivered[line["line_id"]])
                )

    @event("Fulfilled")
    def _fulfilled(
        self,
        customer_id: str,
        currency: str,
        gross_total: str,
        net_total: str,
        product_ids: list[str],
        fulfilled_on: str,
    ) -> None:
        self.state = OrderState.FULFILLED.value
        self.fulfilled_on = fulfilled_on

    @property
    def invoiced_total(self) -> Decimal:
        return sum((dec(i["amount"]) for i in self.invoices), Decimal(0))

    @property
    def invoice_status(self) -> str:
        """Odoo's invoice status, as people read it: "nothing invoiced", "partly invoiced",
        "invoiced" (all of the gross total, or more); "not to invoice" while the order is
        planned or unrealised with nothing invoiced."""
        invoiced = self.invoiced_total
        if not invoiced:
            return (
                "not to invoice"
                if self.state in (OrderState.PLANNED.value, OrderState.UNREALISED.value)
                else "nothing invoiced"
            )
        return "invoiced" if invoiced >= self.totals.gross else "partly invoiced"

    def record_invoice(
        self, erp_event_id: str, invoice_number: str, currency: str, amount: str, issued: date
    ) -> None:
        """An invoice ERP issued for (part of) this order, once per ERP event: confirmed
        orders only (pending or fulfilled: ERP invoices on order or on delivery), in the
        order's currency; an invoice number recorded before under another event is refused
        (one invoice, one number)."""
        if erp_event_id in self.erp_events:
            return
        self._require(
            "record an invoice on it", OrderState.PENDING.value, OrderState.FULFILLED.value
        )
        v = Checks()
        number = v.text("invoice_issued.invoice_number", invoice_number, max_len=64)
        if currency != self.currency:
            v.add(
                "invoice_issued.amount.currency",
                f"order {self.order_number} is in {self.currency}, not {currency}",
            )
        value = v.decimal("invoice_issued.amount.amount", amount, negative=True)
        if value is not None and value <= 0:
            v.add("invoice_issued.amount.amount", "must be more than zero")
        if any(i["invoice_number"] == number for i in self.invoices):
            v.add(
                "invoice_issued.invoice_number",
                f"invoice {number} is recorded on order {self.order_number} already",
            )
        v.check()
        assert value is not None  # checked
        total = self.invoiced_total + value
        self._invoiced(
            self.customer_id,
            erp_event_id,
            number,
            self.currency,
            money_text(value, self.currency),
            money_text(total, self.currency),
            "invoiced" if total >= self.totals.gross else "partly invoiced",
            issued.isoformat(),
        )

    @event("Invoiced")
    def _invoiced(
        self,
        customer_id: str,
        erp_event_id: str,
        invoice_number: str,
        currency: str,
        amount: str,
        invoiced_total: str,
        invoice_status: str,
        issue_date: str,
    ) -> None:
        self.erp_events.append(erp_event_id)
        self.invoices.append(
            {"invoice_number": invoice_number, "amount": amount, "issue_date": issue_date}
        )

    def unrealise(self, reason: str) -> None:
        v = Checks()
        why = v.text("reason", reason, max_len=MAX_REASON)
        v.check()
        self._require("mark it unrealised", OrderState.PLANNED.value, OrderState.PENDING.value)
        self._unrealised(self.customer_id, why, self.state)

    @event("Unrealised")
    def _unrealised(self, customer_id: str, reason: str, previous_state: str) -> None:
        self.state = OrderState.UNREALISED.value
        self.reason = reason


# -- activities -------------------------------------------------------------------------------


class ActivityKind(StrEnum):
    CALL = "call"
    MEETING = "meeting"
    EMAIL = "email"
    TASK = "task"


class ActivityState(StrEnum):
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


class Activity(Aggregate):
    """A call, meeting, e-mail or task of an agent, due by a time, about a customer, a lead or
    an opportunity."""

    if TYPE_CHECKING:
        Scheduled: ClassVar[type[Aggregate.Event]]
        Rescheduled: ClassVar[type[Aggregate.Event]]
        Completed: ClassVar[type[Aggregate.Event]]
        Cancelled: ClassVar[type[Aggregate.Event]]

    @event("Scheduled")
    def __init__(
        self,
        customer_id: str,
        kind: str,
        subject: str,
        due_at: datetime,
        agent_id: str,
        lead_id: str,
        opportunity_id: str,
        notes: str,
        origin: str,
    ) -> None:
        self.customer_id = customer_id
        self.kind = kind
        self.subject = subject
        self.due_at = due_at
        self.agent_id = agent_id
        self.lead_id = lead_id
        self.opportunity_id = opportunity_id
        self.notes = notes
        self.origin = origin
        self.state = ActivityState.OPEN.value
        self.outcome = ""

    def _require(self, action: str) -> None:
        _require("activity", self.id, self.state, action, ActivityState.OPEN.value)

    def reschedule(self, due_at: datetime | None, agent_id: str) -> None:
        v = Checks()
        agent = v.employee_id("agent_id", agent_id)
        if due_at is None and not agent:
            v.add("due_at", "a new due time or agent is required")
        v.check()
        self._require("reschedule it")
        new = (due_at or self.due_at, agent or self.agent_id)
        if new != (self.due_at, self.agent_id):
            self._rescheduled(self.customer_id, *new)

    @event("Rescheduled")
    def _rescheduled(self, customer_id: str, due_at: datetime, agent_id: str) -> None:
        self.due_at = due_at
        self.agent_id = agent_id

    def complete(self, outcome: str) -> None:
        v = Checks()
        text = v.paragraphs("outcome", outcome, required=False, max_len=MAX_REASON * 4)
        v.check()
        self._require("complete it")
        self._completed(self.customer_id, text)

    @event("Completed")
    def _completed(self, customer_id: str, outcome: str) -> None:
        self.state = ActivityState.DONE.value
        self.outcome = outcome

    def cancel(self, reason: str) -> None:
        v = Checks()
        why = v.text("reason", reason, required=False, max_len=MAX_REASON)
        v.check()
        self._require("cancel it")
        self._cancelled(self.customer_id, why)

    @event("Cancelled")
    def _cancelled(self, customer_id: str, reason: str) -> None:
        self.state = ActivityState.CANCELLED.value

    def overdue(self, now: datetime) -> bool:
        return self.state == ActivityState.OPEN.value and self.due_at < now


def schedule_activity(
    *,
    kind: str,
    subject: str,
    due_at: datetime | None,
    agent_id: str = "",
    customer_id: str = "",
    lead_id: str = "",
    opportunity_id: str = "",
    notes: str = "",
    origin: str = "",
) -> Activity:
    v = Checks()
    k = v.enum("kind", kind, ActivityKind)
    title = v.text("subject", subject, max_len=MAX_NAME)
    if due_at is None:
        v.add("due_at", "is required")
    agent = v.employee_id("agent_id", agent_id)
    ids = {
        name: v.uuid(name, value.strip()) if value.strip() else ""
        for name, value in (
            ("customer_id", customer_id),
            ("lead_id", lead_id),
            ("opportunity_id", opportunity_id),
        )
    }
    if not any(ids.values()):
        v.add("customer_id", "a customer, a lead or an opportunity is required")
    text = v.paragraphs("notes", notes, required=False, max_len=MAX_TEXT)
    v.check()
    assert k is not None
    assert due_at is not None
    return Activity(
        customer_id=ids["customer_id"],
        kind=k.value,
        subject=title,
        due_at=due_at,
        agent_id=agent,
        lead_id=ids["lead_id"],
        opportunity_id=ids["opportunity_id"],
        notes=text,
        origin=origin,
    )


# -- customer classes -------------------------------------------------------------------------


class CustomerClasses(Aggregate):
    """The classes a customer holds, with their reasons; each start and end is an event."""

    if TYPE_CHECKING:
        Classified: ClassVar[type[Aggregate.Event]]
        Reclassified: ClassVar[type[Aggregate.Event]]

    @staticmethod
    def create_id(
        customer_id: str,
        started: list[dict[str, str]],
        ended: list[dict[str, str]],
        classes: list[dict[str, str]],
    ) -> uuid.UUID:
        return named_id("customer_classes", customer_id)

    @event("Classified")
    def __init__(
        self,
        customer_id: str,
        started: list[dict[str, str]],
        ended: list[dict[str, str]],
        classes: list[dict[str, str]],
    ) -> None:
        self.customer_id = customer_id
        self.classes = {c["name"]: c["reason"] for c in classes}

    def update(self, now: Mapping[str, str]) -> bool:
        """Record the classes that hold now (name -> reason); True if any started or ended.
        A class that still holds keeps its first reason (no event for a changed figure)."""
        started = [
            {"name": n, "reason": r} for n, r in sorted(now.items()) if n not in self.classes
        ]
        ended = [{"name": n, "reason": r} for n, r in sorted(self.classes.items()) if n not in now]
        if not started and not ended:
            return False
        kept = {n: r for n, r in self.classes.items() if n in now}
        kept.update({c["name"]: c["reason"] for c in started})
        current = [{"name": n, "reason": r} for n, r in sorted(kept.items())]
        self._reclassified(self.customer_id, started, ended, current)
        return True

    @event("Reclassified")
    def _reclassified(
        self,
        customer_id: str,
        started: list[dict[str, str]],
        ended: list[dict[str, str]],
        classes: list[dict[str, str]],
    ) -> None:
        self.classes = {c["name"]: c["reason"] for c in classes}


def first_classes(customer_id: str, now: Mapping[str, str]) -> CustomerClasses:
    started = [{"name": n, "reason": r} for n, r in sorted(now.items())]
    return CustomerClasses(customer_id=customer_id, started=started, ended=[], classes=started)
