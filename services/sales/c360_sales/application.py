"""The sales application: commands over leads, teams, pipelines, opportunities, products, price
lists, quotes and orders, and the reads (pipeline and forecast, now or as of a past time, from
the event store's history). An `eventsourcing.Application`: a command's aggregates are saved in
one transaction, and the notification log is the outbox."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from c360_platform.errors import InvalidArgument, NotFound, PreconditionFailed
from c360_platform.keyring import KEYS, Keyring, KeySource, WithOwnKeys
from c360_platform.pii import Sealer
from c360_platform.store import (
    AllOf,
    AnyOf,
    CommandContext,
    CommandOutcome,
    Condition,
    Decision,
    Eq,
    QueryTable,
    RowQuery,
    ServiceApplication,
    require_version,
    schema_for,
)
from c360_sales import classes, domain, pricing, reports
from c360_sales.domain import (
    Activity,
    Checks,
    CustomerClasses,
    Lead,
    Opportunity,
    Order,
    Pipeline,
    PriceList,
    Product,
    Quote,
    SalesTeam,
    dec,
    named_id,
)

SOURCE = "sales"
A = TypeVar("A", bound=Aggregate)

INDEX = QueryTable(
    name="sales_index",
    columns=(
        ("id", "uuid"),
        ("kind", "text NOT NULL"),
        ("state", "text NOT NULL"),
        ("customer_id", "text NOT NULL"),
        ("agent_id", "text NOT NULL"),
        ("team", "text NOT NULL"),
        ("channel", "text NOT NULL"),
        ("territory", "text NOT NULL"),
        ("name", "text NOT NULL"),
        ("parent_id", "text NOT NULL"),
        ("stage", "text NOT NULL"),
        ("currency", "text NOT NULL"),
        ("amount", "text NOT NULL"),
        ("probability", "integer NOT NULL"),
        ("forecast_category", "text NOT NULL"),
        ("expected_close", "text NOT NULL"),
        ("number", "text NOT NULL"),
        ("version", "bigint NOT NULL"),
        ("created_at", "timestamptz NOT NULL"),
        ("updated_at", "timestamptz NOT NULL"),
    ),
    indexes=(
        ("kind", "created_at", "id"),
        ("kind", "state", "created_at", "id"),
        ("kind", "agent_id", "created_at", "id"),
        ("customer_id", "created_at", "id"),
    ),
)
"""One row per aggregate (kind: lead, sales_team, pipeline, opportunity, product, price_list,
quote, order) for lists and filters, kept in the same transaction as its events."""

KINDS: dict[type, str] = {
    Lead: "lead",
    SalesTeam: "sales_team",
    Pipeline: "pipeline",
    Opportunity: "opportunity",
    Product: "product",
    PriceList: "price_list",
    Quote: "quote",
    Order: "order",
    Activity: "activity",
    CustomerClasses: "customer_classes",
}
LIST_ORDER = ("created_at", "id")


def _row(a: Aggregate) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": a.id,
        "kind": KINDS[type(a)],
        "state": "",
        "customer_id": "",
        "agent_id": "",
        "team": "",
        "channel": "",
        "territory": "",
        "name": "",
        "parent_id": "",
        "stage": "",
        "currency": "",
        "amount": "",
        "probability": 0,
        "forecast_category": "",
        "expected_close": "",
        "number": "",
        "version": a.version,
        "created_at": a.created_on,
        "updated_at": a.modified_on,
    }
    if isinstance(a, Lead):
        base.update(
            state=a.state,
            customer_id=a.customer_id,
            agent_id=a.agent_id,
            team=a.team,
            channel=a.channel,
            territory=a.territory,
            name=a.display_name,
            parent_id=a.campaign_id,
            currency=a.estimated_currency,
            amount=a.estimated_amount,
        )
    elif isinstance(a, Opportunity):
        base.update(
            state=a.state,
            customer_id=a.customer_id,
            agent_id=a.owner_id,
            territory=a.territory,
            name=a.name,
            parent_id=a.pipeline_id,
            stage=a.stage,
            currency=a.currency,
            amount=a.actual_amount or a.amount,
            probability=a.probability,
            forecast_category=a.forecast_category,
            expected_close=a.closed_on or a.expected_close,
        )
    elif isinstance(a, Quote):
        base.update(
            state=a.state,
            customer_id=a.customer_id,
            parent_id=a.opportunity_id,
            currency=a.currency,
            amount=domain.money_text(a.totals.gross, a.currency),
            expected_close=a.valid_until,
            number=str(a.revision),
        )
    elif isinstance(a, Order):
        base.update(
            state=a.state,
            customer_id=a.customer_id,
            parent_id=a.quote_id,
            currency=a.currency,
            amount=domain.money_text(a.totals.gross, a.currency),
            number=a.order_number,
        )
    elif isinstance(a, Activity):
        base.update(
            state=a.state,
            customer_id=a.customer_id,
            agent_id=a.agent_id,
            channel=a.kind,
            name=a.subject,
            parent_id=a.opportunity_id or a.lead_id,
            expected_close=a.due_at.astimezone(UTC).isoformat(),
        )
    elif isinstance(a, CustomerClasses):
        base.update(customer_id=a.customer_id, name=",".join(sorted(a.classes)))
    elif isinstance(a, Product):
        base.update(
            state="active" if a.active else "inactive",
            name=a.name,
            number=a.sku,
            stage=a.category,
            currency=a.currency,
            amount=a.list_price,
        )
    elif isinstance(a, SalesTeam | Pipeline | PriceList):
        base.update(name=a.name)
        if isinstance(a, Pipeline):
            base.update(team=a.team)
        if isinstance(a, PriceList):
            base.update(currency=a.currency)
    return base


@dataclass(frozen=True)
class Page:
    """One page of a list: rows newest first, and the keyset of the last row if more."""

    rows: list[dict[str, Any]]
    after: tuple[datetime, UUID] | None


@dataclass
class Bucket:
    """A group of opportunities in a pipeline or forecast read."""

    key: tuple[str, ...]
    currency: str
    count: int = 0
    amount: Decimal = Decimal(0)
    weighted: Decimal = Decimal(0)
    won: Decimal = Decimal(0)
    opportunity_ids: list[str] = field(default_factory=list)


def period_of(day: str, period: str) -> str:
    """2026-05-14 -> "2026-05" (month) or "2026-Q2" (quarter); "" for no date."""
    if not day:
        return ""
    if period == "quarter":
        return f"{day[:4]}-Q{(int(day[5:7]) - 1) // 3 + 1}"
    return day[:7]


PERSONAL_FIELDS: dict[type, tuple[str, ...]] = {
    Lead.Captured: ("person_name", "company_name", "email", "phone", "description"),
    Lead.Qualified: ("note",),
    Lead.Disqualified: ("note",),
    Lead.Reopened: ("reason",),
    Opportunity.Opened: ("name",),
    Opportunity.StageMoved: ("name",),
    Opportunity.Updated: ("name",),
    Opportunity.Won: ("name",),
    Opportunity.Lost: ("reason", "name"),
    Opportunity.PutOnHold: ("reason", "name"),
    Opportunity.Resumed: ("name",),
    Opportunity.Reopened: ("name",),
    Activity.Scheduled: ("subject", "notes"),
    Activity.Completed: ("outcome",),
    Activity.Cancelled: ("reason",),
}
"""Who a lead is, and the free texts of leads, deals and activities (an opportunity made from
a lead is named after it; each opportunity event repeats its name, for the timeline): sealed
with the key of the customer the event is about. A lead captured for no customer (a
prospect's) is sealed with a key of its own, which the sales service keeps
(`SalesApplication.prospects`) and deletes when the lead is forgotten: by ForgetLead, or with
the customer it was converted for."""

NAMED = frozenset({"lead", "opportunity", "activity"})
"""The kinds whose index rows' `name` is one of those texts."""


class SalesApplication(ServiceApplication):
    """Leads, opportunities and pipelines, products and price lists, quotes and orders."""

    name = schema_for(SOURCE)
    source = SOURCE
    # Leads, opportunities and activities have no snapshots: they would hold the sealed texts.
    snapshotting_intervals = {Quote: 100, Order: 100}
    sealer = Sealer(PERSONAL_FIELDS, owner="customer_id", own=(Lead,))
    query_table = INDEX
    more_tables = (KEYS,)

    def __init__(self, env: Any = None, **kwargs: Any) -> None:
        self.prospects = self.key_table = Keyring(
            lambda query: self.rows(query), remember_absent=True
        )
        """The keys of prospects' leads (leads captured for no customer), in this service's
        key table (`keyring.KEYS`, the lead's id as the subject)."""
        self._subjects: KeySource | None = None
        super().__init__(env, **kwargs)

    def key_source(self) -> KeySource:
        """Prospects' keys (this service's own), then the customers' (their key holder)."""
        if self._subjects is None:
            self._subjects = WithOwnKeys(self.prospects, super().key_source())
        return self._subjects

    def query_row(self, aggregate: Aggregate) -> dict[str, Any] | None:
        if type(aggregate) not in KINDS:
            return None
        row = _row(aggregate)
        if row["kind"] in NAMED and row["customer_id"]:
            row["name"] = self.sealed_text(UUID(row["customer_id"]), row["name"])
        elif row["kind"] == "lead" and row["name"]:
            row["name"] = self.sealed_text(aggregate.id, row["name"])
        return row

    def query_rows(self, aggregate: Aggregate) -> list[dict[str, Any]]:
        """The index row and, for a prospect's lead, its key: made with its first event (it
        seals the lead's events and its row's name), deleted with its Forgotten event."""
        keys: list[dict[str, Any]] = []
        if isinstance(aggregate, Lead) and aggregate.pending_events:
            first = aggregate.pending_events[0].originator_version == 1
            if aggregate.forgotten_at is not None:
                if any(isinstance(e, Lead.Forgotten) for e in aggregate.pending_events):
                    keys.append(self.prospects.forget(aggregate.id, aggregate.forgotten_at))
            elif first and not aggregate.customer_id:
                keys.append(self.prospects.create(aggregate.id))
        return [*super().query_rows(aggregate), *keys]

    # -- helpers ---------------------------------------------------------------------------------

    def today(self) -> date:
        return self.clock().date()

    def validity_day(self) -> date:
        """The day a quote's validity is judged by: the one still running somewhere on earth
        (UTC-12). A quote valid until the 10th may be accepted until the 10th has ended for
        every customer, wherever they are, and expires only then."""
        return (self.clock() - timedelta(hours=12)).date()

    def _define(
        self,
        ctx: CommandContext,
        kind: type[A],
        key: UUID,
        make: Callable[[], A],
        change: Callable[[A], None],
        expected_version: int | None = None,
    ) -> CommandOutcome:
        """Define `kind` under `key`: create it, or change what is there; ABORTED if
        `expected_version` is given and is not the version there (0: nothing defined yet)."""

        def decide() -> Decision[A]:
            existing = self.find(kind, key)
            current = 0 if existing is None else existing.version
            require_version(kind, key, current, expected_version)
            if existing is None:
                created = make()
                return Decision(created, [created])
            change(existing)
            return Decision(existing, [existing])

        return self.execute(ctx, decide)

    # -- leads -----------------------------------------------------------------------------------

    default_region = ""
    """The country of phone numbers given without a country code, when the request names
    none (C360_DEFAULT_REGION); "" refuses such numbers."""

    def capture_lead(self, ctx: CommandContext, **fields: Any) -> CommandOutcome:
        fields["default_region"] = fields.get("default_region") or self.default_region
        return self.create(ctx, lambda: domain.capture_lead(**fields), pure=True)

    def assign_lead(
        self,
        ctx: CommandContext,
        lead_id: UUID,
        version: int | None,
        *,
        agent_id: str,
        rule: str,
        team: str,
    ) -> CommandOutcome:
        """By hand (agent_id, rule manual or empty), or by a rule within the team (the lead's
        team when `team` is empty); the agent chosen is in `extra["agent_id"]`."""
        v = Checks()
        agent = v.employee_id("agent_id", agent_id)
        chosen_rule = rule or domain.AssignmentRule.MANUAL.value
        if chosen_rule == domain.AssignmentRule.MANUAL.value and not agent:
            v.add("agent_id", "is required (or a rule: round_robin, territory, capacity)")
        if chosen_rule != domain.AssignmentRule.MANUAL.value and agent:
            v.add("agent_id", f"is chosen by rule {chosen_rule}; leave it empty")
        clean_team = v.key("team", team) if team.strip() else ""
        v.check()

        def decide() -> Decision[Lead]:
            lead = self.load(Lead, lead_id, version)
            team_name = clean_team or lead.team
            if chosen_rule == domain.AssignmentRule.MANUAL.value:
                lead.assign(agent, chosen_rule, team_name)
                return Decision(lead, [lead], {"agent_id": agent})
            if not team_name:
                raise InvalidArgument.one("team", f"is required for rule {chosen_rule}")
            sales_team = self.find(SalesTeam, named_id("team", team_name))
            if sales_team is None:
                raise NotFound(f"sales team {team_name} does not exist")
            held = self._open_leads(sales_team) if chosen_rule == "capacity" else {}
            picked = domain.choose_agent(sales_team, chosen_rule, lead.territory, held)
            lead.assign(picked, chosen_rule, team_name)
            sales_team.route(str(lead.id), picked, chosen_rule)
            return Decision(lead, [lead, sales_team], {"agent_id": picked})

        return self.execute(ctx, decide)

    def _open_leads(self, team: SalesTeam) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in team.members:
            rows = self.rows(
                RowQuery(
                    AllOf(
                        (
                            Eq("kind", "lead"),
                            Eq("agent_id", m["agent_id"]),
                            AnyOf(tuple(Eq("state", s) for s in domain.OPEN_LEAD_STATES)),
                        )
                    )
                )
            )
            counts[m["agent_id"]] = len(rows)
        return counts

    def _lead(
        self, ctx: CommandContext, lead_id: UUID, version: int | None, act: Callable[[Lead], None]
    ) -> CommandOutcome:
        return self.change(ctx, Lead, lead_id, version, lambda lead: act(lead))

    def qualify_lead(
        self, ctx: CommandContext, lead_id: UUID, version: int | None, note: str
    ) -> CommandOutcome:
        return self._lead(ctx, lead_id, version, lambda lead: lead.qualify(note))

    def disqualify_lead(
        self,
        ctx: CommandContext,
        lead_id: UUID,
        version: int | None,
        reason: str,
        note: str,
        competitor: str,
    ) -> CommandOutcome:
        return self._lead(
            ctx, lead_id, version, lambda lead: lead.disqualify(reason, note, competitor)
        )

    def reopen_lead(
        self, ctx: CommandContext, lead_id: UUID, version: int | None, reason: str
    ) -> CommandOutcome:
        return self._lead(ctx, lead_id, version, lambda lead: lead.reopen(reason))

    def forget_lead(self, ctx: CommandContext, lead_id: UUID) -> CommandOutcome:
        """Erase a prospect's lead on request (GDPR art. 17): its Forgotten event, saved with
        the deletion of its key. A customer's lead is forgotten with the customer."""
        return self._forgotten_lead(ctx, lead_id, with_customer=False)

    def forget_leads_of(self, customer_id: str, cause: str) -> list[UUID]:
        """The leads of a customer who was forgotten (`cause`: the CustomerForgotten event's
        id), each forgotten in turn (a lead converted from a prospect's still had a key of its
        own); those forgotten already are skipped. The ids forgotten now."""
        rows = self.rows(
            RowQuery(AllOf((Eq("kind", "lead"), Eq("customer_id", customer_id))), limit=10_000)
        )
        done: list[UUID] = []
        for row in rows:
            ctx = CommandContext(
                command="ForgetLead",
                request_id=f"forgotten-customer:{cause}:{row['id']}",
                correlation_id=cause,
                causation_id=cause,
            )
            try:
                outcome = self._forgotten_lead(ctx, row["id"], with_customer=True)
            except PreconditionFailed:
                continue  # forgotten already
            if not outcome.replayed:
                done.append(row["id"])
        return done

    def _forgotten_lead(
        self, ctx: CommandContext, lead_id: UUID, *, with_customer: bool
    ) -> CommandOutcome:
        return self._lead(
            ctx, lead_id, None, lambda lead: lead.forget(self.clock(), with_customer=with_customer)
        )

    def get_lead(self, lead_id: UUID) -> Lead:
        return self.load(Lead, lead_id)

    def check_convertible(self, lead_id: UUID, version: int | None) -> Lead:
        """The lead, if it can be converted now (before a customer is registered for it)."""
        lead = self.load(Lead, lead_id, version)
        lead.check_convertible()
        return lead

    def convert_lead(
        self,
        ctx: CommandContext,
        lead_id: UUID,
        version: int | None,
        *,
        customer_id: str,
        registered: bool,
        pipeline: str,
        opportunity_name: str,
        currency: str,
        amount: str,
        expected_close: str,
        owner_id: str,
        contact_person_id: str = "",
    ) -> CommandOutcome:
        """Link the lead to the customer and open its opportunity, in one transaction."""

        def decide() -> Decision[Lead]:
            lead = self.load(Lead, lead_id, version)
            lead.check_convertible()
            flow = self.pipeline(pipeline)
            opportunity = domain.open_opportunity(
                customer_id=customer_id,
                name=opportunity_name or lead.display_name or "Opportunity",
                pipeline=flow,
                owner_id=owner_id or lead.agent_id,
                currency=currency or lead.estimated_currency,
                amount=amount or lead.estimated_amount,
                expected_close=expected_close,
                territory=lead.territory,
                lead_id=str(lead.id),
                campaign_id=lead.campaign_id,
                at=self.clock(),
            )
            lead.convert(
                opportunity.customer_id, registered, str(opportunity.id), contact_person_id
            )
            extra = {
                "customer_id": opportunity.customer_id,
                "opportunity_id": str(opportunity.id),
                "customer_registered": "true" if registered else "",
            }
            return Decision(lead, [lead, opportunity], extra)

        return self.execute(ctx, decide)

    def list_rows(
        self,
        kind: str,
        filters: Sequence[Condition],
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> Page:
        rows = self.rows(
            RowQuery(AllOf((Eq("kind", kind), *filters)), LIST_ORDER, after, limit + 1)
        )
        page = rows[:limit]
        last = page[-1] if len(rows) > limit else None
        return Page(page, (last["created_at"], last["id"]) if last else None)

    # -- teams, pipelines, products, price lists ---------------------------------------------------

    def define_team(
        self,
        ctx: CommandContext,
        name: str,
        members: Sequence[Mapping[str, Any]],
        expected_version: int | None = None,
    ) -> CommandOutcome:
        v = Checks()
        key = v.key("name", name)
        v.check()
        clean = domain.team_members(members)
        return self._define(
            ctx,
            SalesTeam,
            named_id("team", key),
            lambda: SalesTeam(name=key, members=clean),
            lambda t: t.redefine(clean),
            expected_version,
        )

    def define_pipeline(
        self,
        ctx: CommandContext,
        name: str,
        team: str,
        stages: Sequence[Mapping[str, Any]],
        expected_version: int | None = None,
    ) -> CommandOutcome:
        v = Checks()
        key = v.key("name", name)
        clean_team = v.key("team", team) if team.strip() else ""
        v.check()
        clean = domain.pipeline_stages(stages)

        def redefine(pipeline: Pipeline) -> None:
            self._refuse_stranding(pipeline, {s["key"] for s in clean})
            pipeline.redefine(clean_team, clean)

        return self._define(
            ctx,
            Pipeline,
            named_id("pipeline", key),
            lambda: Pipeline(name=key, team=clean_team, stages=clean),
            redefine,
            expected_version,
        )

    def _refuse_stranding(self, pipeline: Pipeline, kept: set[str]) -> None:
        """FAILED_PRECONDITION naming them if open opportunities stand in stages a new
        definition of `pipeline` drops: they would be left in a stage it no longer has."""
        rows = self.rows(
            RowQuery(
                AllOf(
                    (
                        Eq("kind", "opportunity"),
                        Eq("state", domain.OpportunityState.OPEN.value),
                        Eq("parent_id", str(pipeline.id)),
                    )
                )
            )
        )
        stranded = Counter(r["stage"] for r in rows if r["stage"] not in kept)
        if stranded:
            standing = ", ".join(f"{n} in {stage}" for stage, n in sorted(stranded.items()))
            raise PreconditionFailed(
                f"pipeline {pipeline.name} has open opportunities in stages the new definition"
                f" drops ({standing}): keep those stages, or move or close the opportunities"
                " first"
            )

    def pipeline(self, name_or_id: str) -> Pipeline:
        """A pipeline by name or id (NOT_FOUND naming it)."""
        return self._named(Pipeline, "pipeline", name_or_id)

    def _named(self, kind: type[A], prefix: str, name_or_id: str) -> A:
        text = name_or_id.strip()
        if not text:
            raise InvalidArgument.one(
                prefix if prefix != "price_list" else "price_list_id", "is required"
            )
        try:
            key = UUID(text)
        except ValueError:
            key = named_id(prefix, text.lower() if prefix != "product" else text)
        found = self.find(kind, key)
        if found is None:
            raise NotFound(f"{prefix.replace('_', ' ')} {text} does not exist")
        return found

    def define_product(
        self,
        ctx: CommandContext,
        *,
        sku: str,
        expected_version: int | None = None,
        **fields: Any,
    ) -> CommandOutcome:
        clean = domain.product_fields(sku=sku, **fields)
        key = sku.strip()
        return self._define(
            ctx,
            Product,
            named_id("product", key),
            lambda: Product(sku=key, **clean),
            lambda p: p.redefine(**clean),
            expected_version,
        )

    def product(self, sku_or_id: str) -> Product:
        return self._named(Product, "product", sku_or_id)

    def define_price_list(
        self,
        ctx: CommandContext,
        name: str,
        currency: str,
        rules: Sequence[Mapping[str, str]],
        expected_version: int | None = None,
    ) -> CommandOutcome:
        v = Checks()
        key = v.key("name", name)
        code = v.currency("currency", currency)
        v.check()
        clean = self._product_targets(domain.price_rules(rules))
        return self._define(
            ctx,
            PriceList,
            named_id("price_list", key),
            lambda: PriceList(name=key, currency=code, rules=clean),
            lambda p: p.redefine(code, clean),
            expected_version,
        )

    def _product_targets(self, rules: list[dict[str, str]]) -> list[dict[str, str]]:
        """Each product rule's target as the product's id, from its id or its SKU (the rule
        is matched by id: a SKU kept as it was typed would never apply); INVALID_ARGUMENT
        naming `rules[i].target` for a product that does not exist."""
        v = Checks()
        for i, rule in enumerate(rules):
            if rule["scope"] != pricing.Scope.PRODUCT.value or not rule["target"]:
                continue
            try:
                rule["target"] = str(self.product(rule["target"]).id)
            except NotFound:
                v.add(f"rules[{i}].target", f"no product {rule['target']} (its SKU or id)")
        v.check()
        return rules

    def price_list(self, name_or_id: str) -> PriceList:
        return self._named(PriceList, "price_list", name_or_id)

    def price_list_as_of(self, name_or_id: str, at: datetime | None) -> PriceList:
        current = self.price_list(name_or_id)
        return current if at is None else self.as_of(PriceList, current.id, at) or current

    def _lists(self, at: datetime | None = None) -> pricing.Lists:
        def look(list_id: str) -> pricing.PriceList | None:
            try:
                found = self.find(PriceList, UUID(list_id))
            except ValueError:
                return None
            if found is not None and at is not None:
                found = self.as_of(PriceList, found.id, at)
            return found.for_pricing() if found else None

        return look

    def price(
        self,
        price_list: PriceList,
        product: Product,
        quantity: Decimal,
        on: date,
        at: datetime | None = None,
    ) -> pricing.Price:
        """The unit price of a product from a list; FAILED_PRECONDITION when it has none."""
        try:
            return pricing.resolve(
                price_list.for_pricing(), product.for_pricing(), quantity, on, self._lists(at)
            )
        except pricing.CannotPrice as exc:
            raise PreconditionFailed(str(exc)) from None

    # -- opportunities -----------------------------------------------------------------------------

    def open_opportunity(self, ctx: CommandContext, pipeline: str, **fields: Any) -> CommandOutcome:
        flow = self.pipeline(pipeline)
        return self.create(
            ctx, lambda: domain.open_opportunity(pipeline=flow, at=self.clock(), **fields)
        )

    def _opportunity(
        self,
        ctx: CommandContext,
        opportunity_id: UUID,
        version: int | None,
        act: Callable[[Opportunity, Pipeline], None],
    ) -> CommandOutcome:
        def run(o: Opportunity) -> None:
            act(o, self.load(Pipeline, UUID(o.pipeline_id)))

        return self.change(ctx, Opportunity, opportunity_id, version, run)

    def move_stage(
        self, ctx: CommandContext, opportunity_id: UUID, version: int | None, stage: str
    ) -> CommandOutcome:
        return self._opportunity(
            ctx, opportunity_id, version, lambda o, p: o.move(p.stage(stage), self.clock())
        )

    def update_opportunity(
        self,
        ctx: CommandContext,
        opportunity_id: UUID,
        version: int | None,
        changes: Mapping[str, Any],
    ) -> CommandOutcome:
        return self._opportunity(
            ctx, opportunity_id, version, lambda o, p: o.update(changes, p.stage(o.stage))
        )

    def closing_day(self, closed_on: str) -> date:
        """The day a deal closed: `closed_on` (YYYY-MM-DD) when given, else today (UTC). A day
        still to come anywhere on earth (UTC+14) is INVALID_ARGUMENT naming `closed_on`."""
        v = Checks()
        day = v.day("closed_on", closed_on, required=False)
        if day is not None and day > (self.clock() + timedelta(hours=14)).date():
            v.add("closed_on", "must not be in the future")
        v.check()
        return day or self.today()

    def win(
        self,
        ctx: CommandContext,
        opportunity_id: UUID,
        version: int | None,
        actual_amount: str,
        closed_on: str = "",
    ) -> CommandOutcome:
        """Close as won, for `actual_amount` (the amount when empty), on `closed_on` (the
        actual close date; today when empty)."""
        on = self.closing_day(closed_on)
        return self._opportunity(
            ctx,
            opportunity_id,
            version,
            lambda o, p: o.win(actual_amount, p.won_stage(), on, self.clock()),
        )

    def lose(
        self,
        ctx: CommandContext,
        opportunity_id: UUID,
        version: int | None,
        reason: str,
        competitor: str,
        closed_on: str = "",
        status: str = "",
    ) -> CommandOutcome:
        """Close as lost, canceled or out-sold (`status`; by the competitor when empty)."""
        on = self.closing_day(closed_on)
        return self._opportunity(
            ctx,
            opportunity_id,
            version,
            lambda o, p: o.lose(reason, competitor, p.lost_stage(), on, self.clock(), status),
        )

    def hold_opportunity(
        self, ctx: CommandContext, opportunity_id: UUID, version: int | None, reason: str
    ) -> CommandOutcome:
        return self.change(ctx, Opportunity, opportunity_id, version, lambda o: o.hold(reason))

    def resume_opportunity(
        self, ctx: CommandContext, opportunity_id: UUID, version: int | None
    ) -> CommandOutcome:
        return self.change(ctx, Opportunity, opportunity_id, version, lambda o: o.resume())

    def reopen_opportunity(
        self,
        ctx: CommandContext,
        opportunity_id: UUID,
        version: int | None,
        stage: str,
        reason: str,
    ) -> CommandOutcome:
        return self._opportunity(
            ctx,
            opportunity_id,
            version,
            lambda o, p: o.reopen(
                p.stage(stage) if stage else p.first_open(), reason, self.clock()
            ),
        )

    def get_opportunity(self, opportunity_id: UUID) -> Opportunity:
        return self.load(Opportunity, opportunity_id)

    # -- quotes ------------------------------------------------------------------------------------

    def draft_quote(
        self,
        ctx: CommandContext,
        *,
        opportunity_id: UUID,
        price_list: str,
        valid_until: str,
        revises_quote_id: str,
    ) -> CommandOutcome:
        v = Checks()
        until = v.day_text("valid_until", valid_until)
        revises = v.uuid("revises_quote_id", revises_quote_id) if revises_quote_id else ""
        v.check()

        def decide() -> Decision[Quote]:
            o = self.load(Opportunity, opportunity_id)
            if o.state != domain.OpportunityState.OPEN.value:
                raise PreconditionFailed(
                    f"opportunity {o.id} is {o.state}: cannot quote it (only when open)"
                )
            prices = self.price_list(price_list)
            if o.currency and prices.currency != o.currency:
                raise InvalidArgument.one(
                    "price_list",
                    f"is in {prices.currency}, the opportunity in {o.currency}: quote it from a"
                    f" {o.currency} list (or change the opportunity's amount first)",
                )
            lines: list[dict[str, str]] = []
            revision = 1
            old: Quote | None = None
            if revises:
                old = self.load(Quote, UUID(revises))
                if old.opportunity_id != str(o.id):
                    raise InvalidArgument.one(
                        "revises_quote_id", "is a quote of another opportunity"
                    )
                if old.state == domain.QuoteState.ACCEPTED.value:
                    raise PreconditionFailed(
                        f"quote {old.id} is accepted (order {old.order_id}): cannot revise it"
                    )
                lines, revision = [dict(line) for line in old.lines], old.revision + 1
                if old.currency != prices.currency:
                    raise InvalidArgument.one(
                        "price_list",
                        f"the revised quote is in {old.currency}, this list in {prices.currency}",
                    )
            if until and until < self.validity_day().isoformat():
                raise InvalidArgument.one("valid_until", "must not be in the past")
            quote = Quote(
                customer_id=o.customer_id,
                opportunity_id=str(o.id),
                price_list_id=str(prices.id),
                currency=prices.currency,
                valid_until=until,
                revision=revision,
                revises_quote_id=revises,
                lines=lines,
            )
            if old is not None and old.state in (
                domain.QuoteState.DRAFT.value,
                domain.QuoteState.SENT.value,
            ):
                old.cancel(f"revised by quote {quote.id} (revision {revision})")
                return Decision(quote, [quote, old])
            return Decision(quote, [quote])

        return self.execute(ctx, decide)

    def add_quote_line(
        self,
        ctx: CommandContext,
        quote_id: UUID,
        version: int | None,
        *,
        product: str,
        quantity: str,
        discount_percent: str,
        tax_rate: str,
        description: str,
    ) -> CommandOutcome:
        """Price the line from the quote's price list now and freeze it on the line."""
        q, d, t = domain.line_input(quantity, discount_percent, tax_rate)
        v = Checks()
        text = v.text("description", description, required=False, max_len=MAX_LINE_TEXT)
        v.check()

        def act(quote: Quote) -> dict[str, str]:
            item = self.product(product)
            if not item.active:
                raise PreconditionFailed(f"product {item.sku} is inactive: it cannot be quoted")
            prices = self.load(PriceList, UUID(quote.price_list_id))
            price = self.price(prices, item, Decimal(q), self.today())
            line_id = quote.add_line(
                product=item,
                quantity=q,
                price=price,
                discount_percent=d,
                tax_rate=t,
                description=text,
            )
            return {"line_id": line_id}

        return self.change(ctx, Quote, quote_id, version, act)

    def remove_quote_line(
        self, ctx: CommandContext, quote_id: UUID, version: int | None, line_id: str
    ) -> CommandOutcome:
        return self.change(ctx, Quote, quote_id, version, lambda q: q.remove_line(line_id))

    def send_quote(
        self, ctx: CommandContext, quote_id: UUID, version: int | None
    ) -> CommandOutcome:
        def send(quote: Quote) -> None:
            self._not_lost(quote, "send it")
            quote.send(self.validity_day())

        return self.change(ctx, Quote, quote_id, version, send)

    def _not_lost(self, quote: Quote, action: str) -> None:
        """FAILED_PRECONDITION if the quote's opportunity was lost: its offer is off the table
        (a won one may still have its quotes sent and accepted)."""
        deal = self.find(Opportunity, UUID(quote.opportunity_id))
        if deal is not None and deal.state == domain.OpportunityState.LOST.value:
            raise PreconditionFailed(
                f"quote {quote.id} is of opportunity {deal.id}, which is lost: cannot {action}"
                " (reopen the opportunity first)"
            )

    def decline_quote(
        self, ctx: CommandContext, quote_id: UUID, version: int | None, reason: str
    ) -> CommandOutcome:
        return self.change(ctx, Quote, quote_id, version, lambda q: q.decline(reason))

    def cancel_quote(
        self, ctx: CommandContext, quote_id: UUID, version: int | None, reason: str
    ) -> CommandOutcome:
        return self.change(ctx, Quote, quote_id, version, lambda q: q.cancel(reason))

    def accept_quote(
        self, ctx: CommandContext, quote_id: UUID, version: int | None, *, hold: bool = False
    ) -> CommandOutcome:
        """The customer's yes: the quote is accepted and an order placed from its lines, and
        confirmed for ERP unless `hold` (then it stays planned). Order id in extra."""

        def decide() -> Decision[Quote]:
            quote = self.load(Quote, quote_id, version)
            order_id = uuid4()
            quote.accept(str(order_id), self.validity_day())
            self._not_lost(quote, "accept it")
            order = Order(
                order_id=str(order_id),
                customer_id=quote.customer_id,
                quote_id=str(quote.id),
                opportunity_id=quote.opportunity_id,
                currency=quote.currency,
                lines=[_order_line(line) for line in quote.lines],
                order_number=domain.order_number(order_id, self.today()),
            )
            if not hold:
                order.confirm()
            return Decision(quote, [quote, order], {"order_id": str(order.id)})

        return self.execute(ctx, decide)

    def expire_quotes(self) -> int:
        """Expire every sent quote whose validity date has passed (one save each)."""
        expired = 0
        for row in self.rows(RowQuery(AllOf((Eq("kind", "quote"), Eq("state", "sent"))))):
            quote = self.find(Quote, row["id"])
            if quote is not None and quote.expire_if_due(self.validity_day()):
                self.save(quote)
                expired += 1
        return expired

    def get_quote(self, quote_id: UUID) -> Quote:
        return self.load(Quote, quote_id)

    # -- orders ------------------------------------------------------------------------------------

    def confirm_order(
        self, ctx: CommandContext, order_id: UUID, version: int | None
    ) -> CommandOutcome:
        return self.change(ctx, Order, order_id, version, lambda o: o.confirm())

    def unrealise_order(
        self, ctx: CommandContext, order_id: UUID, version: int | None, reason: str
    ) -> CommandOutcome:
        return self.change(ctx, Order, order_id, version, lambda o: o.unrealise(reason))

    def record_fulfilment(
        self,
        ctx: CommandContext,
        order_id: UUID,
        *,
        erp_event_id: str,
        delivered: Mapping[str, str],
        reference: str,
        on: date,
    ) -> CommandOutcome:
        return self.change(
            ctx,
            Order,
            order_id,
            None,
            lambda o: o.record_fulfilment(erp_event_id, delivered, reference, on),
        )

    def record_invoice(
        self,
        ctx: CommandContext,
        order_id: UUID,
        *,
        erp_event_id: str,
        invoice_number: str,
        currency: str,
        amount: str,
        issued: date,
    ) -> CommandOutcome:
        return self.change(
            ctx,
            Order,
            order_id,
            None,
            lambda o: o.record_invoice(erp_event_id, invoice_number, currency, amount, issued),
        )

    def get_order(self, order_id: UUID) -> Order:
        return self.load(Order, order_id)

    # -- history -----------------------------------------------------------------------------------

    def as_of(self, kind: type[A], aggregate_id: UUID, at: datetime) -> A | None:
        """The aggregate as it stood at `at` (its events recorded by then), None if it did not
        exist yet: the event store's own history."""
        version = None
        for e in self.events.get(aggregate_id):
            if getattr(e, "timestamp") > at:  # noqa: B009  # every library event has one
                break
            version = e.originator_version
        if version is None:
            return None
        found: Any = self.repository.get(aggregate_id, version=version)
        return found if isinstance(found, kind) else None

    def opportunities(self, at: datetime | None = None) -> list[Opportunity]:
        """Every opportunity, now or as it stood at `at`."""
        rows = self.rows(RowQuery(Eq("kind", "opportunity")))
        out: list[Opportunity] = []
        for row in rows:
            if at is not None and row["created_at"] > at:
                continue
            found = (
                self.find(Opportunity, row["id"])
                if at is None
                else self.as_of(Opportunity, row["id"], at)
            )
            if found is not None:
                out.append(found)
        return out

    def pipeline_report(
        self,
        *,
        at: datetime | None,
        by: str,
        pipeline: str = "",
        owner: str = "",
        territory: str = "",
    ) -> list[Bucket]:
        """Open opportunities grouped by stage (in pipeline order), owner, territory or team:
        count, amount and weighted amount (amount x probability) per currency."""
        flows = {str(p.id): p for p in self._pipelines()}
        wanted = str(self.pipeline(pipeline).id) if pipeline else ""
        buckets: dict[tuple[str, ...], Bucket] = {}
        for o in self.opportunities(at):
            if o.state != domain.OpportunityState.OPEN.value:
                continue
            if (wanted and o.pipeline_id != wanted) or (owner and o.owner_id != owner):
                continue
            if territory and o.territory != territory:
                continue
            flow = flows.get(o.pipeline_id)
            if by == "owner":
                key: tuple[str, ...] = (o.owner_id,)
            elif by == "territory":
                key = (o.territory,)
            elif by == "team":
                key = (flow.team if flow else "",)
            else:
                order = next(
                    (i for i, s in enumerate(flow.stages if flow else []) if s["key"] == o.stage),
                    99,
                )
                key = (flow.name if flow else "", f"{order:02d}", o.stage)
            b = buckets.setdefault((*key, o.currency), Bucket(key, o.currency))
            b.count += 1
            b.amount += dec(o.amount)
            b.weighted += o.weighted
            b.opportunity_ids.append(str(o.id))
        return [buckets[k] for k in sorted(buckets)]

    def _pipelines(self) -> list[Pipeline]:
        rows = self.rows(RowQuery(Eq("kind", "pipeline")))
        return [p for r in rows if (p := self.find(Pipeline, r["id"])) is not None]

    def forecast(self, *, at: datetime | None, period: str, owner: str = "") -> list[Bucket]:
        """Per period (of the expected close, or of the close for won ones), forecast category
        and owner: count, amount, weighted amount (omitted ones weigh nothing) and won amount."""
        buckets: dict[tuple[str, ...], Bucket] = {}
        for o in self.opportunities(at):
            if owner and o.owner_id != owner:
                continue
            if o.state == domain.OpportunityState.LOST.value:
                continue
            day = o.closed_on if o.state == domain.OpportunityState.WON.value else o.expected_close
            key = (period_of(day, period), o.forecast_category, o.owner_id)
            b = buckets.setdefault((*key, o.currency), Bucket(key, o.currency))
            b.count += 1
            if o.state == domain.OpportunityState.WON.value:
                b.won += dec(o.actual_amount or o.amount)
                b.amount += dec(o.actual_amount or o.amount)
                b.weighted += dec(o.actual_amount or o.amount)
            else:
                b.amount += dec(o.amount)
                if o.forecast_category != domain.ForecastCategory.OMITTED.value:
                    b.weighted += o.weighted
            b.opportunity_ids.append(str(o.id))
        return [buckets[k] for k in sorted(buckets)]

    def _all(self, kind: type[A], name: str) -> list[A]:
        rows = self.rows(RowQuery(Eq("kind", name)))
        return [a for r in rows if (a := self.find(kind, r["id"])) is not None]

    def reports(self, names: Sequence[str], period: str) -> list[reports.Table]:
        """The sales reports named (every one when none), from the current aggregates."""
        wanted = list(names) or list(reports.REPORTS)
        unknown = [n for n in wanted if n not in reports.REPORTS]
        if unknown:
            raise InvalidArgument.one("reports", f"one of {', '.join(reports.REPORTS)}")
        leads = self._all(Lead, "lead") if {"leads", "conversion"} & set(wanted) else []
        deals = self._all(Opportunity, "opportunity")
        out: list[reports.Table] = []
        for name in wanted:
            if name == "leads":
                out.append(reports.leads_table(leads, period))
            elif name == "conversion":
                out.append(reports.conversion_table(leads, deals, period))
            elif name == "owners":
                out.append(reports.owners_table(deals))
            elif name == "lost":
                out.append(reports.lost_table(deals))
            else:
                territories = {str(o.id): o.territory for o in deals}
                out.append(reports.revenue_table(self._all(Order, "order"), territories))
        return out

    # -- activities ------------------------------------------------------------------------

    def schedule_activity(self, ctx: CommandContext, **fields: Any) -> CommandOutcome:
        return self.create(ctx, lambda: domain.schedule_activity(**fields), pure=True)

    def reschedule_activity(
        self,
        ctx: CommandContext,
        activity_id: UUID,
        version: int | None,
        due_at: datetime | None,
        agent_id: str,
    ) -> CommandOutcome:
        return self.change(
            ctx, Activity, activity_id, version, lambda a: a.reschedule(due_at, agent_id)
        )

    def complete_activity(
        self, ctx: CommandContext, activity_id: UUID, version: int | None, outcome: str
    ) -> CommandOutcome:
        return self.change(ctx, Activity, activity_id, version, lambda a: a.complete(outcome))

    def cancel_activity(
        self, ctx: CommandContext, activity_id: UUID, version: int | None, reason: str
    ) -> CommandOutcome:
        return self.change(ctx, Activity, activity_id, version, lambda a: a.cancel(reason))

    def list_activities(
        self, *, agent_id: str, customer_id: str, state: str, due: str, limit: int
    ) -> list[Activity]:
        """By due time, earliest first; `due` "overdue" or "upcoming" keeps open ones only."""
        conditions: list[Condition] = [Eq("kind", "activity")]
        if agent_id:
            conditions.append(Eq("agent_id", agent_id))
        if customer_id:
            conditions.append(Eq("customer_id", customer_id))
        if state or due:
            conditions.append(Eq("state", state or domain.ActivityState.OPEN.value))
        rows = self.rows(RowQuery(AllOf(tuple(conditions))))
        now = self.clock().astimezone(UTC).isoformat()
        if due == "overdue":
            rows = [r for r in rows if r["expected_close"] < now]
        elif due == "upcoming":
            rows = [r for r in rows if r["expected_close"] >= now]
        rows.sort(key=lambda r: (r["expected_close"], str(r["id"])))
        return [a for r in rows[:limit] if (a := self.find(Activity, r["id"])) is not None]

    def get_activity(self, activity_id: UUID) -> Activity:
        return self.load(Activity, activity_id)

    # -- classification ----------------------------------------------------------------------

    def classify(self, at: datetime | None = None) -> dict[str, classes.Classes]:
        """Every customer's classes from the orders (and overdue-invoice follow-ups) as they
        stood at `at` (now when None), judged on that day."""
        now = at or self.clock()
        purchases: list[classes.Purchase] = []
        for row in self.rows(RowQuery(Eq("kind", "order"))):
            if at is not None and row["created_at"] > at:
                continue
            order = self.find(Order, row["id"]) if at is None else self.as_of(Order, row["id"], at)
            if order is None or order.state != domain.OrderState.FULFILLED.value:
                continue
            cost = sum(
                (dec(line["unit_cost"]) * dec(line["quantity"]) for line in order.lines),
                Decimal(0),
            )
            purchases.append(
                classes.Purchase(
                    order.customer_id,
                    date.fromisoformat(order.fulfilled_on),
                    order.currency,
                    order.totals.net,
                    cost,
                )
            )
        debts: dict[str, list[str]] = {}
        for row in self.rows(RowQuery(Eq("kind", "activity"))):
            if at is not None and row["created_at"] > at:
                continue
            activity = (
                self.find(Activity, row["id"])
                if at is None
                else self.as_of(Activity, row["id"], at)
            )
            prefix = "erp invoice overdue "
            if (
                activity is not None
                and activity.origin.startswith(prefix)
                and activity.state == domain.ActivityState.OPEN.value
                and activity.customer_id
            ):
                invoices = debts.setdefault(activity.customer_id, [])
                invoices.append(activity.origin.removeprefix(prefix))
        return classes.classify(purchases, debts, now.date())

    def reclassify(self) -> int:
        """Record, per customer, the classes that started or ended since the last time (one
        save each); returns how many customers changed."""
        return self.record_classes(self.class_changes())

    def record_classes(
        self, changes: Mapping[str, CustomerClasses], skip: Collection[str] = ()
    ) -> int:
        """Save `changes` (`class_changes`), but for the customers in `skip` (forgotten:
        nothing new is recorded for them); how many were saved."""
        saved = 0
        for customer, held in changes.items():
            if customer not in skip:
                self.save(held)
                saved += 1
        return saved

    def class_changes(self) -> dict[str, CustomerClasses]:
        """Per customer whose classes started or ended since the last time, its classes with
        the change made (not saved)."""
        found = self.classify()
        changes: dict[str, CustomerClasses] = {}
        recorded = {
            r["customer_id"]: r["id"] for r in self.rows(RowQuery(Eq("kind", "customer_classes")))
        }
        for customer in sorted(set(found) | set(recorded)):
            now = found[customer].found if customer in found else {}
            key = recorded.get(customer)
            held = self.find(CustomerClasses, key) if key is not None else None
            if held is None:
                if not now:
                    continue
                held = domain.first_classes(customer, now)
            elif not held.update(now):
                continue
            changes[customer] = held
        return changes


MAX_LINE_TEXT = 200


def _order_line(line: Mapping[str, str]) -> dict[str, str]:
    keys = (
        "line_id", "product_id", "sku", "description", "quantity", "unit_price", "net_amount",
        "tax_rate", "unit_cost",
    )  # fmt: skip
    return {k: line.get(k, "") for k in keys}
