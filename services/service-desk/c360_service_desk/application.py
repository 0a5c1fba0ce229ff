"""The service-desk application: commands and queries over tickets, contact-centre records,
service contracts, knowledge articles, work orders and the holiday calendars (an
`eventsourcing.Application`, so saves are atomic and the notification log is the outbox).
Its query tables: tickets (contracts share it), articles (with text search), work orders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from c360_platform import pii
from c360_platform.errors import InvalidArgument, NotFound, PreconditionFailed, VersionConflict
from c360_platform.store import (
    ROW_TABLE,
    AllOf,
    AnyOf,
    CommandContext,
    CommandOutcome,
    Condition,
    Decision,
    Eq,
    In,
    Matches,
    Ne,
    QueryTable,
    RowQuery,
    Searchable,
    ServiceApplication,
    schema_for,
)
from c360_service_desk import (
    contacts,
    domain,
    field_service,
    knowledge,
    reports,
    service_contracts,
    sla,
)
from c360_service_desk.contacts import Contact
from c360_service_desk.domain import Ticket
from c360_service_desk.field_service import WorkOrder
from c360_service_desk.holidays import HolidayCalendar, calendar_id, parse_ics
from c360_service_desk.knowledge import Article
from c360_service_desk.service_contracts import ServiceContract
from c360_service_desk.sla import BusinessCalendar

SOURCE = "service-desk"

TICKETS = QueryTable(
    name="tickets",
    columns=(
        ("ticket_id", "uuid"),
        ("customer_id", "uuid NOT NULL"),
        ("state", "text NOT NULL"),
        ("priority", "text NOT NULL"),
        ("channel", "text NOT NULL"),
        ("category", "text NOT NULL"),
        ("subject", "text NOT NULL"),
        ("agent_id", "text NOT NULL"),
        ("queue", "text NOT NULL"),
        ("escalation_level", "integer NOT NULL"),
        ("version", "bigint NOT NULL"),
        ("opened_at", "timestamptz NOT NULL"),
        ("updated_at", "timestamptz NOT NULL"),
        ("sla_policy", "text NOT NULL DEFAULT ''"),
        ("sla_watch", "boolean NOT NULL DEFAULT false"),
        ("sla_next_at", "timestamptz"),
        ("sla_breaches", "integer NOT NULL DEFAULT 0"),
        ("sla_open", "boolean NOT NULL DEFAULT false"),
        ("kind", "text NOT NULL DEFAULT 'ticket'"),
        ("resolved_at", "timestamptz NOT NULL DEFAULT '1970-01-01T00:00:00Z'"),
        ("resolved_with_article", "boolean NOT NULL DEFAULT false"),
        ("waiting_for", "text NOT NULL DEFAULT ''"),
    ),
    indexes=(
        ("resolved_at", "ticket_id"),
        ("opened_at", "ticket_id"),
        ("customer_id", "opened_at", "ticket_id"),
        ("state", "opened_at", "ticket_id"),
        ("agent_id", "opened_at", "ticket_id"),
        ("queue", "opened_at", "ticket_id"),
        ("sla_watch", "ticket_id"),
    ),
    # Only an open ticket can be on hold: those of a table from before the column are
    # written again as the service starts.
    refills=(("waiting_for", AllOf((Eq("kind", "ticket"), Eq("state", "open")))),),
)
"""One row per ticket for ListTickets, kept in the same transaction as the ticket's events.
Service contracts have a row too (kind "service_contract"; ticket_id is the contract's id,
subject its name, opened_at its creation), for the scheduler's sla_watch/sla_next_at: the
platform gives a service one query table."""

LIST_ORDER = ("opened_at", "ticket_id")
NEVER = datetime(1970, 1, 1, tzinfo=UTC)
"""resolved_at/completed_at of a row whose ticket (visit) is not resolved (completed)."""

ARTICLES = QueryTable(
    name="articles",
    columns=(
        ("article_id", "uuid"),
        ("state", "text NOT NULL"),
        ("title", "text NOT NULL"),
        ("category", "text NOT NULL"),
        ("language", "text NOT NULL"),
        ("serving", "boolean NOT NULL"),
        ("published_version", "integer NOT NULL"),
        ("used", "integer NOT NULL"),
        ("helpful", "integer NOT NULL"),
        ("not_helpful", "integer NOT NULL"),
        ("version", "bigint NOT NULL"),
        ("updated_at", "timestamptz NOT NULL"),
        ("search", "tsvector NOT NULL"),
    ),
    indexes=(("updated_at", "article_id"), ("state", "updated_at", "article_id")),
    gin_indexes=("search",),
)
"""One row per knowledge article; `search` holds the published version's title (twice, so
that it weighs more), keywords and body, analysed in the article's language."""

WORK_ORDERS = QueryTable(
    name="work_orders",
    columns=(
        ("work_order_id", "uuid"),
        ("customer_id", "uuid NOT NULL"),
        ("ticket_id", "text NOT NULL"),
        ("state", "text NOT NULL"),
        ("summary", "text NOT NULL"),
        ("technician_id", "text NOT NULL"),
        ("region", "text NOT NULL"),
        ("currency", "text NOT NULL"),
        ("cost", "numeric NOT NULL"),
        ("window_start", "timestamptz"),
        ("window_end", "timestamptz"),
        ("work_started_at", "timestamptz"),
        ("completed_at", "timestamptz NOT NULL"),
        ("fixed", "boolean NOT NULL"),
        ("satisfaction", "integer NOT NULL"),
        ("version", "bigint NOT NULL"),
        ("created_at", "timestamptz NOT NULL"),
    ),
    indexes=(
        ("created_at", "work_order_id"),
        ("customer_id", "created_at", "work_order_id"),
        ("technician_id", "created_at", "work_order_id"),
        ("state", "created_at", "work_order_id"),
        ("ticket_id", "completed_at", "work_order_id"),
        ("completed_at", "work_order_id"),
    ),
    # Rows written before window_end existed: the visits still booked need it (double
    # bookings are checked against it).
    refills=(("window_end", In("state", tuple(s.value for s in field_service.BOOKED))),),
)
"""One row per work order, for lists, the technicians' bookings and the field-service
report."""
WORK_ORDER_ORDER = ("created_at", "work_order_id")


def _article_row(a: Article) -> dict[str, Any]:
    live = a.published if a.serving else None
    text = " ".join([live["title"], live["title"], *live["keywords"], live["body"]]) if live else ""
    return {
        ROW_TABLE: ARTICLES.name,
        "article_id": a.id,
        "state": a.state,
        "title": a.title,
        "category": (a.published or a.working)["category"],
        "language": a.language,
        "serving": a.serving,
        "published_version": a.published_version,
        "used": a.used,
        "helpful": a.helpful,
        "not_helpful": a.not_helpful,
        "version": a.version,
        "updated_at": a.modified_on,
        "search": Searchable(knowledge.text_search_config(a.language), text),
    }


def _work_order_row(w: WorkOrder) -> dict[str, Any]:
    return {
        ROW_TABLE: WORK_ORDERS.name,
        "work_order_id": w.id,
        "customer_id": UUID(w.customer_id),
        "ticket_id": w.ticket_id,
        "state": w.state,
        "summary": w.summary,
        "technician_id": w.technician_id,
        "region": w.region,
        "currency": w.currency,
        "cost": w.cost,
        "window_start": w.window_start,
        "window_end": w.window_end,
        "work_started_at": w.work_started_at,
        "completed_at": w.completed_at or NEVER,
        "fixed": w.fixed,
        "satisfaction": w.satisfaction,
        "version": w.version,
        "created_at": w.created_on,
    }


@dataclass(frozen=True)
class Page:
    """One page of a list: rows newest first, and the keyset of the last row if more."""

    rows: list[dict[str, Any]]
    after: tuple[datetime, UUID] | None


PERSONAL_FIELDS: dict[type, tuple[str, ...]] = {
    Ticket.Opened: ("subject", "description"),
    Ticket.InteractionRecorded: ("body",),
    Ticket.Escalated: ("reason",),
    Ticket.SlaPaused: ("reason",),
    Ticket.Resolved: ("resolution",),
    Ticket.Reopened: ("reason",),
    Ticket.Closed: ("reason",),
    Ticket.Rated: ("comment",),
    Ticket.MergedInto: ("reason",),
    Ticket.DuplicateMerged: ("reason",),
    WorkOrder.Opened: ("summary",),
    WorkOrder.LineVoided: ("reason",),
    WorkOrder.Completed: ("note",),
    WorkOrder.Cancelled: ("reason",),
    WorkOrder.Rated: ("comment",),
    Contact.Recorded: ("note",),
}
"""The free texts of the desk's events, which may name or describe people: sealed with the
key of the customer the event is about (its `customer_id`)."""

SEALER = pii.Sealer(PERSONAL_FIELDS, owner="customer_id")


class ServiceDeskApplication(ServiceApplication):
    """Tickets (opening, assignment, interactions, priority, escalation, resolution, rating,
    SLA clocks), contacts, service contracts, knowledge articles, work orders, calendars."""

    name = schema_for(SOURCE)
    source = SOURCE
    # No snapshots of tickets: they would hold the free texts outside the sealed events.
    sealer = SEALER
    query_table = TICKETS
    more_tables = (ARTICLES, WORK_ORDERS)

    def query_row(self, aggregate: Aggregate) -> dict[str, Any] | None:
        if isinstance(aggregate, ServiceContract):
            return self._contract_row(aggregate)
        if isinstance(aggregate, Article):
            return _article_row(aggregate)
        if isinstance(aggregate, WorkOrder):
            return {
                **_work_order_row(aggregate),
                "summary": self.sealed_text(UUID(aggregate.customer_id), aggregate.summary),
            }
        if not isinstance(aggregate, Ticket):
            return None
        t = aggregate
        next_at = t.next_sla_moment() if t.state == domain.State.OPEN else None
        return {
            "ticket_id": t.id,
            "customer_id": UUID(t.customer_id),
            "state": t.state,
            "priority": t.priority,
            "channel": t.channel,
            "category": t.category,
            "subject": self.sealed_text(UUID(t.customer_id), t.subject),
            "agent_id": t.agent_id,
            "queue": t.queue,
            "escalation_level": t.escalation_level,
            "version": t.version,
            "opened_at": t.created_on,
            "updated_at": t.modified_on,
            "sla_policy": t.sla_policy,
            "sla_watch": next_at is not None,
            "sla_next_at": next_at,
            "sla_breaches": t.breaches(),
            "sla_open": any(x["status"] in domain.OPEN_TARGETS for x in t.sla_targets.values()),
            "kind": "ticket",
            "resolved_at": t.resolved_at
            if t.state != domain.State.OPEN and t.resolved_at
            else NEVER,
            "resolved_with_article": t.resolved_with_article,
            "waiting_for": t.waiting_for,
        }

    def _contract_row(self, c: ServiceContract) -> dict[str, Any]:
        next_at = c.next_moment()
        return {
            "ticket_id": c.id,
            "customer_id": UUID(c.customer_id),
            "state": "expired" if c.expired else "active",
            "priority": "",
            "channel": "",
            "category": "service_contract",
            "subject": c.name,
            "agent_id": "",
            "queue": "",
            "escalation_level": 0,
            "version": c.version,
            "opened_at": c.created_on,
            "updated_at": c.modified_on,
            "sla_policy": "",
            "sla_watch": next_at is not None,
            "sla_next_at": next_at,
            "sla_breaches": 0,
            "sla_open": False,
            "kind": "service_contract",
            "resolved_at": NEVER,
            "resolved_with_article": False,
            "waiting_for": "",
        }

    def create_contract(self, ctx: CommandContext, **fields: Any) -> CommandOutcome:
        policies = tuple(p.name for p in sla.POLICIES)
        return self.create(
            ctx, lambda: service_contracts.create_contract(**fields, known_policies=policies)
        )

    # -- business calendars -----------------------------------------------------------------

    def calendars(self, name: str) -> BusinessCalendar:
        """The business calendar `name` with its imported holidays (what the ticket commands
        compute due times with)."""
        builtin = sla.builtin_calendar(name)
        stored = self.find(HolidayCalendar, calendar_id(name))
        return builtin if stored is None else sla.with_holidays(builtin, stored.days())

    def import_holidays(
        self, ctx: CommandContext, name: str, ics: bytes, source: str
    ) -> CommandOutcome:
        """Add an iCalendar file's holidays (recurring ones for five years from today) to a
        business calendar; `extra["added"]` is how many days were new. The open tickets'
        running SLA targets then get their due times again on the calendar with them."""
        known = {p.calendar.name for p in sla.POLICIES}
        if name not in known:
            raise InvalidArgument.one("calendar", f"must be one of {', '.join(sorted(known))}")
        days = parse_ics(ics, self.clock().date().replace(year=self.clock().year + 5))

        def decide() -> Decision[HolidayCalendar]:
            found = self.find(HolidayCalendar, calendar_id(name))
            cal = found if found is not None else HolidayCalendar(name=name)
            added = cal.import_days(days, source)
            return Decision(cal, [cal], {"added": str(added)})

        outcome = self.execute(ctx, decide)
        if outcome.extra.get("added", "0") != "0" and not outcome.replayed:
            self.recalendar_tickets(f"calendar {name}: holidays imported")
        return outcome

    def recalendar_tickets(self, reason: str, batch: int = 200) -> int:
        """Every open ticket with a running SLA target: its due times on the calendars as
        they are now (a ticket changed concurrently computed its own). Returns how many
        tickets moved."""
        moved = 0
        for row in self._sla_watched(batch):
            if row["kind"] != "ticket":
                continue
            try:
                before = self.load(Ticket, row["ticket_id"]).version
                outcome = self.change(
                    CommandContext(command="RecalendarSla"),
                    Ticket,
                    row["ticket_id"],
                    before,
                    lambda t: t.recalendar(reason, self.calendars),
                )
            except VersionConflict:
                continue
            moved += outcome.version > before
        return moved

    def _sla_watched(self, batch: int) -> Iterator[dict[str, Any]]:
        """The rows of the tickets and service contracts whose SLA clocks or warnings run, read
        in pages of `batch` (each page after the one before has been worked through)."""
        after: tuple[Any, ...] | None = None
        while True:
            rows = self.rows(RowQuery(Eq("sla_watch", True), ("ticket_id",), after, batch))
            yield from rows
            if len(rows) < batch:
                return
            after = (rows[-1]["ticket_id"],)

    def renew_contract(
        self, ctx: CommandContext, contract_id: UUID, version: int | None, ends_on: str
    ) -> CommandOutcome:
        return self.change(ctx, ServiceContract, contract_id, version, lambda c: c.renew(ends_on))

    def contracts_of(self, customer_id: UUID) -> list[ServiceContract]:
        """The customer's service contracts, the one ending first first."""
        rows = self.rows(
            RowQuery(
                AllOf((Eq("kind", "service_contract"), Eq("customer_id", customer_id))),
                LIST_ORDER,
            )
        )
        found = [self.load(ServiceContract, r["ticket_id"]) for r in rows]
        return sorted(found, key=lambda c: (c.ends_on, str(c.id)))

    def _entitlement(
        self, customer_id: str, service: str, day: date
    ) -> tuple[ServiceContract | None, str]:
        """The contract a new ticket is served under, or why there is none."""
        try:
            customer = UUID(customer_id)
        except ValueError:
            return None, ""  # the ticket's validation names the field
        contracts = self.contracts_of(customer)
        if not contracts:
            return None, ""  # the common case: nothing to note (the view says so)
        reasons = []
        pending: dict[str, int] | None = None
        for c in contracts:
            reason = c.refusal(day, service)
            if not reason and (c.consume_on, c.allowance_unit) == (
                service_contracts.ConsumeOn.RESOLUTION,
                service_contracts.AllowanceUnit.CASES,
            ):
                # Cases consumed on resolution: the open tickets served under the contract
                # will each take one; a new ticket is served only if one is left after them.
                pending = self._pending_cases(customer) if pending is None else pending
                taken = pending.get(str(c.id), 0)
                if taken >= (c.remaining(day) or 0):
                    reason = (
                        f"contract “{c.name}”: the allowance of this period is taken by"
                        f" {taken} open ticket{'' if taken == 1 else 's'} (each uses a case"
                        " when it is resolved)"
                    )
            if not reason:
                return c, ""
            reasons.append(reason)
        return None, "; ".join(reasons)

    def _pending_cases(self, customer: UUID) -> dict[str, int]:
        """Contract id -> the customer's open tickets served under it that will use a case
        when they are resolved."""
        rows = self.rows(
            RowQuery(
                AllOf((Eq("kind", "ticket"), Eq("customer_id", customer), Eq("state", "open"))),
                LIST_ORDER,
            )
        )
        found: dict[str, int] = {}
        for r in rows:
            t = self.load(Ticket, r["ticket_id"])
            if t.consumes_on_resolution() and t.entitlement is not None:
                key = str(t.entitlement["contract_id"])
                found[key] = found.get(key, 0) + 1
        return found

    def get_contract(self, contract_id: UUID) -> ServiceContract:
        return self.load(ServiceContract, contract_id)

    def open_ticket(
        self,
        ctx: CommandContext,
        *,
        service: str = "",
        classes: list[str] | None = None,
        **fields: Any,
    ) -> CommandOutcome:
        """A new ticket: served under the customer's valid service contract for `service`
        (consuming its allowance now, if the contract says so) or marked as served without
        one; then the SLA policy it matches (or its contract grants), clocks started now. A
        contract changed concurrently (another ticket's use) is read again."""

        def decide() -> Decision[Ticket]:
            now = self.clock()
            contract, reason = self._entitlement(
                fields.get("customer_id", ""), service.strip().lower(), now.date()
            )
            grant = (
                domain.Grant(
                    str(contract.id),
                    contract.name,
                    contract.consume_on,
                    contract.allowance_unit,
                    contract.sla_policy,
                )
                if contract is not None
                else None
            )
            ticket = domain.open_ticket(
                **fields,
                at=now,
                classes=classes,
                grant=grant,
                no_grant=reason,
                calendars=self.calendars,
            )
            changed: list[Aggregate] = [ticket]
            if contract is not None and contract.consume_on == service_contracts.ConsumeOn.OPEN:
                contract.consume(str(ticket.id), now.date())
                changed.append(contract)
            return Decision(ticket, changed)

        for attempt in range(3):
            try:
                return self.execute(ctx, decide)
            except VersionConflict:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def hold(
        self,
        ctx: CommandContext,
        ticket_id: UUID,
        version: int | None,
        waiting_for: str,
        reason: str,
    ) -> CommandOutcome:
        return self._change(
            ctx,
            ticket_id,
            version,
            lambda t: t.wait(waiting_for, reason, self.clock(), self.calendars),
        )

    def resume(self, ctx: CommandContext, ticket_id: UUID, version: int | None) -> CommandOutcome:
        return self._change(
            ctx, ticket_id, version, lambda t: t.resume(self.clock(), self.calendars)
        )

    def record_contact(self, ctx: CommandContext, **fields: Any) -> CommandOutcome:
        """A contact that needs no ticket; `started_at` None is now."""
        now = self.clock()
        started = fields.pop("started_at", None) or now
        return self.create(
            ctx, lambda: contacts.record_contact(**fields, started_at=started, now=now)
        )

    def get_contact(self, contact_id: UUID) -> contacts.Contact:
        return self.load(contacts.Contact, contact_id)

    def check_slas(self, batch: int = 200) -> int:
        """The scheduler's round: every open ticket with a warning or breach due by now gets
        it written (each at the moment it fell due), every service contract its expiry warning
        or expiry. Returns the events written. A ticket
        changed concurrently is left for the next round."""
        now = self.clock()
        written = 0
        for row in self._sla_watched(batch):
            if row["sla_next_at"] is None or row["sla_next_at"] > now:
                continue
            kind: Any = ServiceContract if row["kind"] == "service_contract" else Ticket
            try:
                before = self.load(kind, row["ticket_id"]).version
                outcome = self.change(
                    CommandContext(command="CheckSla"),
                    kind,
                    row["ticket_id"],
                    before,
                    lambda a: (
                        a.settle(now) if isinstance(a, ServiceContract) else a.settle_sla(now)
                    ),
                )
            except VersionConflict:
                continue
            written += outcome.version - before
        return written

    def _change(
        self,
        ctx: CommandContext,
        ticket_id: UUID,
        version: int | None,
        act: Callable[[Ticket], dict[str, str] | None],
    ) -> CommandOutcome:
        return self.change(ctx, Ticket, ticket_id, version, act)

    def assign(
        self, ctx: CommandContext, ticket_id: UUID, version: int | None, agent_id: str, queue: str
    ) -> CommandOutcome:
        return self._change(ctx, ticket_id, version, lambda t: t.assign(agent_id, queue))

    def record_interaction(
        self,
        ctx: CommandContext,
        ticket_id: UUID,
        version: int | None,
        *,
        kind: str,
        body: str,
        channel: str,
        duration_seconds: int,
        agent_id: str,
    ) -> CommandOutcome:
        """A message, call or note, at the clock's now; its id in `extra["interaction_id"]`."""

        def act(t: Ticket) -> dict[str, str]:
            interaction_id = t.record_interaction(
                kind=kind,
                body=body,
                at=self.clock(),
                channel=channel,
                duration_seconds=duration_seconds,
                agent_id=agent_id,
                calendars=self.calendars,
            )
            return {"interaction_id": interaction_id}

        return self._change(ctx, ticket_id, version, act)

    def change_priority(
        self, ctx: CommandContext, ticket_id: UUID, version: int | None, priority: str, reason: str
    ) -> CommandOutcome:
        """A new priority; the SLA policy and targets follow it."""
        return self._change(
            ctx,
            ticket_id,
            version,
            lambda t: t.change_priority(priority, reason, self.clock(), self.calendars),
        )

    def escalate(
        self, ctx: CommandContext, ticket_id: UUID, version: int | None, reason: str, queue: str
    ) -> CommandOutcome:
        return self._change(ctx, ticket_id, version, lambda t: t.escalate(reason, queue))

    def reopen(
        self, ctx: CommandContext, ticket_id: UUID, version: int | None, reason: str
    ) -> CommandOutcome:
        return self._change(
            ctx, ticket_id, version, lambda t: t.reopen(reason, self.clock(), self.calendars)
        )

    def close_ticket(
        self, ctx: CommandContext, ticket_id: UUID, version: int | None, reason: str
    ) -> CommandOutcome:
        return self._change(ctx, ticket_id, version, lambda t: t.close(reason, self.clock()))

    def merge_tickets(
        self,
        ctx: CommandContext,
        survivor_id: UUID,
        version: int | None,
        duplicate_id: UUID,
        reason: str,
    ) -> CommandOutcome:
        """Merge a duplicate ticket into the survivor (`Ticket.merge_into`): both saved in one
        transaction; `version` is the survivor's."""

        def decide() -> Decision[Ticket]:
            survivor = self.load(Ticket, survivor_id, version)
            duplicate = self.load(Ticket, duplicate_id)
            duplicate.merge_into(survivor, reason, self.clock())
            return Decision(survivor, [survivor, duplicate])

        return self.execute(ctx, decide)

    def rate(
        self, ctx: CommandContext, ticket_id: UUID, version: int | None, score: int, comment: str
    ) -> CommandOutcome:
        return self._change(ctx, ticket_id, version, lambda t: t.rate(score, comment))

    def sla_compliance(
        self, opened_from: datetime, opened_to: datetime, batch: int = 500
    ) -> list[dict[str, Any]]:
        """SLA compliance of the tickets opened in [opened_from, opened_to), per policy, queue,
        agent and channel: tickets under a policy, those with a breach, those whose targets
        were all met, those still running, those closed unresolved without a breach (their
        targets cancelled: neither met nor breached); compliance = met / (met + breached)."""
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        after: tuple[Any, ...] | None = (opened_to, UUID(int=0))
        while after is not None:
            rows = self.rows(RowQuery(AllOf(()), LIST_ORDER, after, batch))
            for r in rows:
                if r["opened_at"] < opened_from:
                    after = None
                    break
                if not r["sla_policy"] or r["kind"] != "ticket":
                    continue
                for dimension, value in (
                    ("policy", r["sla_policy"]),
                    ("queue", r["queue"] or "-"),
                    ("agent", r["agent_id"] or "-"),
                    ("channel", r["channel"]),
                ):
                    g = groups.setdefault(
                        (dimension, value),
                        {
                            "dimension": dimension,
                            "value": value,
                            "tickets": 0,
                            "breached": 0,
                            "met": 0,
                            "running": 0,
                            "cancelled": 0,
                        },
                    )
                    g["tickets"] += 1
                    if r["sla_breaches"]:
                        g["breached"] += 1
                    elif r["sla_open"]:
                        g["running"] += 1
                    elif r["state"] == domain.State.CLOSED and r["resolved_at"] == NEVER:
                        g["cancelled"] += 1  # closed without a resolution: nothing was met
                    else:
                        g["met"] += 1
            else:
                after = (
                    (rows[-1]["opened_at"], rows[-1]["ticket_id"]) if len(rows) == batch else None
                )
        order = {"policy": 0, "queue": 1, "agent": 2, "channel": 3}
        return sorted(groups.values(), key=lambda g: (order[g["dimension"]], g["value"]))

    def get_ticket(self, ticket_id: UUID) -> Ticket:
        return self.load(Ticket, ticket_id)

    def position_of(self, ticket_id: UUID) -> int:
        """The log position of the ticket's latest event (for a consistency token)."""
        return self.event_recorder.position_of(ticket_id)

    def _page(
        self,
        order: tuple[str, str],
        condition: Condition,
        after: tuple[datetime, UUID] | None,
        limit: int,
        table: str = "",
    ) -> Page:
        """One page of a query table's rows in descending `order`, after a keyset."""
        rows = self.rows(RowQuery(condition, order, after, limit + 1, table=table))
        page = self.revealed(rows[:limit])
        last = page[-1] if len(rows) > limit else None
        return Page(page, (last[order[0]], last[order[1]]) if last else None)

    def list_tickets(
        self, condition: Condition, after: tuple[datetime, UUID] | None, limit: int
    ) -> Page:
        return self._page(LIST_ORDER, condition, after, limit)

    # -- the knowledge base -----------------------------------------------------------------

    def create_article(self, ctx: CommandContext, **fields: Any) -> CommandOutcome:
        return self.create(ctx, lambda: knowledge.draft_article(**fields), pure=True)

    def get_article(self, article_id: UUID) -> Article:
        return self.load(Article, article_id)

    def change_article(
        self,
        ctx: CommandContext,
        article_id: UUID,
        version: int | None,
        act: Callable[[Article], None],
    ) -> CommandOutcome:
        return self.change(ctx, Article, article_id, version, act)

    def link_article(
        self, ctx: CommandContext, ticket_id: UUID, article_id: UUID, kind: str
    ) -> CommandOutcome:
        """Link a published article to a ticket: the ticket records the link, the article
        counts the use, in one transaction."""

        def decide() -> Decision[Ticket]:
            ticket = self.load(Ticket, ticket_id)
            article = self.load(Article, article_id)
            self._link(ticket, article, kind)
            return Decision(ticket, [ticket, article])

        return self.execute(ctx, decide)

    def _link(self, ticket: Ticket, article: Article, kind: str) -> None:
        """The ticket records the link, the article counts the use (once per ticket)."""
        k = article.linkable(kind)
        if ticket.link_article(str(article.id), article.title, k, article.published_version):
            article.link(str(ticket.id), k)

    def resolve(
        self,
        ctx: CommandContext,
        ticket_id: UUID,
        version: int | None,
        resolution: str,
        agent_id: str,
        article_id: UUID | None = None,
        work_minutes: int = 0,
    ) -> CommandOutcome:
        """Resolve the ticket; with an article, link it as used to resolve in the same step."""

        def decide() -> Decision[Ticket]:
            ticket = self.load(Ticket, ticket_id, version)
            changed: list[Aggregate] = [ticket]
            if article_id is not None:
                article = self.load(Article, article_id)
                ticket._require("resolve", domain.State.OPEN)
                self._link(ticket, article, knowledge.LinkKind.USED_TO_RESOLVE)
                changed.append(article)
            ticket.resolve(resolution, agent_id, self.clock())
            if ticket.consumes_on_resolution() and ticket.entitlement is not None:
                contract = self.load(ServiceContract, UUID(ticket.entitlement["contract_id"]))
                minutes = work_minutes or ticket.work_minutes()
                day = self.clock().date()
                ticket.record_consumption(contract.consume(str(ticket.id), day, minutes))
                changed.append(contract)
            return Decision(ticket, changed)

        return self.execute(ctx, decide)

    def list_articles(
        self, condition: Condition, after: tuple[datetime, UUID] | None, limit: int
    ) -> Page:
        return self._page(("updated_at", "article_id"), condition, after, limit, "articles")

    def search_articles(
        self, text: str, language: str, limit: int, *, any_word: bool = False
    ) -> list[dict[str, Any]]:
        """Published articles matching `text`, best first. Each language's articles are
        searched with its own analysis (stemming, stop words) of the text."""
        languages = [language] if language else [*knowledge.TEXT_SEARCH_CONFIGS, ""]
        per_language: list[Condition] = []
        for lang in languages:
            config = knowledge.text_search_config(lang)
            match = Matches("search", config, text, any_word=any_word)
            if lang:
                per_language.append(AllOf((Eq("language", lang), match)))
        if not language:
            # Articles in languages without a configuration of their own: "simple".
            simple = Matches("search", "simple", text, any_word=any_word)
            others = tuple(Eq("language", lang) for lang in knowledge.TEXT_SEARCH_CONFIGS)
            per_language.append(AllOf((simple, _none_of(others))))
        rank = Matches("search", "simple", text, any_word=True)
        return self.rows(
            RowQuery(
                AllOf((Eq("serving", True), AnyOf(tuple(per_language)))),
                ("updated_at", "article_id"),
                None,
                limit,
                table="articles",
                rank=rank,
            )
        )

    def suggest_articles(self, ticket_id: UUID, limit: int) -> list[dict[str, Any]]:
        """Published articles sharing words with the ticket's subject and description,
        those sharing the most first; articles linked to the ticket already left out."""
        ticket = self.load(Ticket, ticket_id)
        text = f"{ticket.subject} {ticket.description}"
        linked = {a["article_id"] for a in ticket.articles}
        found = self.search_articles(text, "", limit + len(linked), any_word=True)
        return [r for r in found if str(r["article_id"]) not in linked][:limit]

    def knowledge_report(
        self, resolved_from: datetime, resolved_to: datetime, batch: int = 500
    ) -> reports.KnowledgeReport:
        resolved: list[reports.Resolution] = []
        for r in self._rows_between(
            Eq("kind", "ticket"), ("resolved_at", "ticket_id"), resolved_from, resolved_to, batch
        ):
            articles = []
            if r["resolved_with_article"]:
                articles = [
                    (a["article_id"], a["title"])
                    for a in self.load(Ticket, r["ticket_id"]).articles
                    if a["kind"] == knowledge.LinkKind.USED_TO_RESOLVE
                ]
            resolved.append(reports.Resolution(r["opened_at"], r["resolved_at"], articles))
        return reports.knowledge_report(resolved)

    def _rows_between(
        self,
        condition: Condition,
        order: tuple[str, str],
        start: datetime,
        end: datetime,
        batch: int,
        table: str = "",
    ) -> list[dict[str, Any]]:
        """Rows whose `order[0]` time is in [start, end), newest first, read in pages."""
        found: list[dict[str, Any]] = []
        after: tuple[Any, ...] | None = (end, UUID(int=0))
        while after is not None:
            rows = self.rows(RowQuery(condition, order, after, batch, table=table))
            for r in rows:
                if r[order[0]] < start:
                    return found
                found.append(r)
            after = (rows[-1][order[0]], rows[-1][order[1]]) if len(rows) == batch else None
        return found

    # -- field service ----------------------------------------------------------------------

    def create_work_order(self, ctx: CommandContext, **fields: Any) -> CommandOutcome:
        """A work order; the ticket and the contract it names must be the customer's, the
        ticket not closed, and the contract valid today (a visit does not fall under an
        expired or future contract)."""

        def make() -> WorkOrder:
            order = field_service.create_work_order(**fields)
            named: list[tuple[str, str, Ticket | ServiceContract | None]] = []
            if order.ticket_id:
                named.append(("ticket_id", "ticket", self.find(Ticket, UUID(order.ticket_id))))
            if order.contract_id:
                contract = self.find(ServiceContract, UUID(order.contract_id))
                named.append(("contract_id", "service contract", contract))
            for field, noun, found in named:
                given = getattr(order, field)
                if found is None:
                    raise NotFound(f"{noun} {given} does not exist ({field})")
                if found.customer_id != order.customer_id:
                    raise InvalidArgument.one(
                        field,
                        f"{noun} {given} is customer {found.customer_id}'s,"
                        f" not {order.customer_id}'s",
                    )
            ticket = next((t for _, _, t in named if isinstance(t, Ticket)), None)
            if ticket is not None and ticket.state == domain.State.CLOSED:
                merged = getattr(ticket, "merged_into", "")
                raise PreconditionFailed(
                    f"ticket {ticket.id} is closed"
                    + (
                        f": it was merged into ticket {merged}, name that one"
                        if merged
                        else ": open a new ticket, or create the visit without one"
                    )
                )
            contract = next((c for _, _, c in named if isinstance(c, ServiceContract)), None)
            today = self.clock().date()
            if contract is not None and not contract.valid_on(today):
                ended = contract.expired or today.isoformat() > contract.ends_on
                raise PreconditionFailed(
                    f"service contract {contract.id} “{contract.name}” is"
                    f" {'expired' if ended else 'not yet valid'} (it runs {contract.starts_on}"
                    f" to {contract.ends_on}): renew it, or create the visit without it"
                )
            return order

        # Reads nothing unless it names a ticket or a contract.
        refers = bool(fields.get("ticket_id", "").strip() or fields.get("contract_id", "").strip())
        return self.create(ctx, make, pure=not refers)

    def get_work_order(self, work_order_id: UUID) -> WorkOrder:
        return self.load(WorkOrder, work_order_id)

    def change_work_order(
        self,
        ctx: CommandContext,
        work_order_id: UUID,
        version: int | None,
        act: Callable[[WorkOrder], Any],
    ) -> CommandOutcome:
        """A command on a work order; `act` may return the id of a line it added."""

        def run(w: WorkOrder) -> dict[str, str] | None:
            line_id = act(w)
            return {"line_id": line_id} if isinstance(line_id, str) else None

        return self.change(ctx, WorkOrder, work_order_id, version, run)

    def schedule_work_order(
        self,
        ctx: CommandContext,
        work_order_id: UUID,
        version: int | None,
        technician_id: str,
        window_start: datetime,
        window_end: datetime,
    ) -> CommandOutcome:
        """Book a technician for the visit, unless the window overlaps another of theirs."""

        def act(w: WorkOrder) -> None:
            booked = self.bookings(technician_id)
            w.schedule(technician_id, window_start, window_end, booked, now=self.clock())

        return self.change_work_order(ctx, work_order_id, version, act)

    def bookings(self, technician_id: str) -> list[field_service.Booking]:
        """The visits a technician is booked for (scheduled, travelling, in progress)."""
        if not technician_id.strip():
            return []
        rows = self.rows(
            RowQuery(
                AllOf(
                    (
                        Eq("technician_id", technician_id.strip()),
                        In("state", tuple(s.value for s in field_service.BOOKED)),
                    )
                ),
                table="work_orders",
            )
        )
        return [
            field_service.Booking(str(r["work_order_id"]), r["window_start"], r["window_end"])
            for r in rows
            if r["window_start"] is not None and r["window_end"] is not None
        ]

    def complete_work_order(
        self,
        ctx: CommandContext,
        work_order_id: UUID,
        version: int | None,
        fixed: bool,
        note: str,
    ) -> CommandOutcome:
        """Complete the visit; under a contract with an hours allowance, its labour uses
        that many minutes of it (in the same transaction)."""

        def decide() -> Decision[WorkOrder]:
            order = self.load(WorkOrder, work_order_id, version)
            now = self.clock()
            order.complete(fixed, note, now)
            changed: list[Aggregate] = [order]
            minutes = order.labour_minutes
            if order.contract_id and minutes:
                contract = self.load(ServiceContract, UUID(order.contract_id))
                hours = contract.allowance_unit == service_contracts.AllowanceUnit.HOURS
                if hours and contract.valid_on(now.date()):
                    contract.consume("", now.date(), minutes, work_order_id=str(order.id))
                    changed.append(contract)
            return Decision(order, changed)

        return self.execute(ctx, decide)

    def list_work_orders(
        self, condition: Condition, after: tuple[datetime, UUID] | None, limit: int
    ) -> Page:
        return self._page(WORK_ORDER_ORDER, condition, after, limit, "work_orders")

    def field_service_report(
        self, completed_from: datetime, completed_to: datetime, batch: int = 500
    ) -> list[dict[str, Any]]:
        """The visits completed in [completed_from, completed_to), by technician and region;
        a visit is a first-time fix if it fixed the problem and no visit on the same ticket
        was completed before it."""
        rows = self._rows_between(
            Eq("state", field_service.WorkOrderState.COMPLETED.value),
            ("completed_at", "work_order_id"),
            completed_from,
            completed_to,
            batch,
            table="work_orders",
        )
        first: dict[str, tuple[datetime, UUID]] = {}
        for ticket_id in {r["ticket_id"] for r in rows if r["ticket_id"]}:
            earliest = self.rows(
                RowQuery(
                    AllOf(
                        (
                            Eq("ticket_id", ticket_id),
                            Eq("state", field_service.WorkOrderState.COMPLETED.value),
                        )
                    ),
                    ("completed_at", "work_order_id"),
                    table="work_orders",
                )
            )
            last = earliest[-1]
            first[ticket_id] = (last["completed_at"], last["work_order_id"])
        visits = [
            reports.Visit(
                technician_id=r["technician_id"] or "-",
                region=r["region"],
                currency=r["currency"],
                cost=r["cost"],
                created_at=r["created_at"],
                work_started_at=r["work_started_at"],
                completed_at=r["completed_at"],
                first_time_fix=bool(r["fixed"])
                and (
                    not r["ticket_id"]
                    or first[r["ticket_id"]] == (r["completed_at"], r["work_order_id"])
                ),
                satisfaction=r["satisfaction"],
            )
            for r in rows
        ]
        return reports.field_service_report(visits)


def _none_of(conditions: tuple[Eq, ...]) -> Condition:
    """None of the equalities holds."""
    return AllOf(tuple(Ne(c.column, c.value) for c in conditions))
