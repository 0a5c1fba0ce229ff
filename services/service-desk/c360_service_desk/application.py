"""The service-desk application: commands and queries over the Ticket aggregate (an
`eventsourcing.Application`, so saves are atomic and the notification log is the outbox)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from c360_platform.errors import VersionConflict
from c360_platform.store import (
    AllOf,
    CommandContext,
    CommandOutcome,
    Condition,
    Eq,
    QueryTable,
    RowQuery,
    ServiceApplication,
    schema_for,
)
from c360_service_desk import contacts, domain, service_contracts
from c360_service_desk.domain import Ticket
from c360_service_desk.service_contracts import ServiceContract
from c360_service_desk.sla import TargetStatus

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
    ),
    indexes=(
        ("opened_at", "ticket_id"),
        ("customer_id", "opened_at", "ticket_id"),
        ("state", "opened_at", "ticket_id"),
        ("agent_id", "opened_at", "ticket_id"),
        ("queue", "opened_at", "ticket_id"),
        ("sla_watch", "ticket_id"),
    ),
)
"""One row per ticket for ListTickets, kept in the same transaction as the ticket's events.
Service contracts have a row too (kind "service_contract"; ticket_id is the contract's id,
subject its name, opened_at its creation), for the scheduler's sla_watch/sla_next_at: the
platform gives a service one query table."""

LIST_ORDER = ("opened_at", "ticket_id")


@dataclass(frozen=True)
class TicketPage:
    """One page of ListTickets: rows newest first, and the keyset of the last row if more."""

    rows: list[dict[str, Any]]
    after: tuple[datetime, UUID] | None


class ServiceDeskApplication(ServiceApplication):
    """Tickets: opening, assignment, interactions, priority, escalation, resolution, rating."""

    name = schema_for(SOURCE)
    source = SOURCE
    snapshotting_intervals = {Ticket: 100}
    query_table = TICKETS

    def query_row(self, aggregate: Aggregate) -> dict[str, Any] | None:
        if isinstance(aggregate, ServiceContract):
            return self._contract_row(aggregate)
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
            "subject": t.subject,
            "agent_id": t.agent_id,
            "queue": t.queue,
            "escalation_level": t.escalation_level,
            "version": t.version,
            "opened_at": t.created_on,
            "updated_at": t.modified_on,
            "sla_policy": t.sla_policy,
            "sla_watch": next_at is not None,
            "sla_next_at": next_at,
            "sla_breaches": sum(
                1 for x in t.sla_targets.values() if x["status"] == TargetStatus.BREACHED
            ),
            "sla_open": any(x["status"] in domain.OPEN_TARGETS for x in t.sla_targets.values()),
            "kind": "ticket",
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
        }

    def create_contract(self, ctx: CommandContext, **fields: Any) -> CommandOutcome:
        return self.create(ctx, lambda: service_contracts.create_contract(**fields))

    def get_contract(self, contract_id: UUID) -> ServiceContract:
        return self.load(ServiceContract, contract_id)

    def open_ticket(self, ctx: CommandContext, **fields: Any) -> CommandOutcome:
        """A new ticket, with the SLA policy it matches, its clocks started now."""
        return self.create(ctx, lambda: domain.open_ticket(**fields, at=self.clock()))

    def hold(
        self,
        ctx: CommandContext,
        ticket_id: UUID,
        version: int | None,
        waiting_for: str,
        reason: str,
    ) -> CommandOutcome:
        return self._change(
            ctx, ticket_id, version, lambda t: t.wait(waiting_for, reason, self.clock())
        )

    def resume(self, ctx: CommandContext, ticket_id: UUID, version: int | None) -> CommandOutcome:
        return self._change(ctx, ticket_id, version, lambda t: t.resume(self.clock()))

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
        after: tuple[Any, ...] | None = None
        while True:
            rows = self.rows(RowQuery(Eq("sla_watch", True), ("ticket_id",), after, batch))
            for row in rows:
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
            if len(rows) < batch:
                return written
            after = (rows[-1]["ticket_id"],)

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
            )
            return {"interaction_id": interaction_id}

        return self._change(ctx, ticket_id, version, act)

    def change_priority(
        self, ctx: CommandContext, ticket_id: UUID, version: int | None, priority: str, reason: str
    ) -> CommandOutcome:
        """A new priority; the SLA policy and targets follow it."""
        return self._change(
            ctx, ticket_id, version, lambda t: t.change_priority(priority, reason, self.clock())
        )

    def escalate(
        self, ctx: CommandContext, ticket_id: UUID, version: int | None, reason: str, queue: str
    ) -> CommandOutcome:
        return self._change(ctx, ticket_id, version, lambda t: t.escalate(reason, queue))

    def resolve(
        self,
        ctx: CommandContext,
        ticket_id: UUID,
        version: int | None,
        resolution: str,
        agent_id: str,
    ) -> CommandOutcome:
        return self._change(
            ctx, ticket_id, version, lambda t: t.resolve(resolution, agent_id, self.clock())
        )

    def reopen(
        self, ctx: CommandContext, ticket_id: UUID, version: int | None, reason: str
    ) -> CommandOutcome:
        return self._change(ctx, ticket_id, version, lambda t: t.reopen(reason))

    def close_ticket(
        self, ctx: CommandContext, ticket_id: UUID, version: int | None, reason: str
    ) -> CommandOutcome:
        return self._change(ctx, ticket_id, version, lambda t: t.close(reason, self.clock()))

    def rate(
        self, ctx: CommandContext, ticket_id: UUID, version: int | None, score: int, comment: str
    ) -> CommandOutcome:
        return self._change(ctx, ticket_id, version, lambda t: t.rate(score, comment))

    def sla_compliance(
        self, opened_from: datetime, opened_to: datetime, batch: int = 500
    ) -> list[dict[str, Any]]:
        """SLA compliance of the tickets opened in [opened_from, opened_to), per policy, queue,
        agent and channel: tickets under a policy, those with a breach, those whose targets
        were all met, those still running; compliance = met / settled."""
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
                        },
                    )
                    g["tickets"] += 1
                    if r["sla_breaches"]:
                        g["breached"] += 1
                    elif r["sla_open"]:
                        g["running"] += 1
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

    def list_tickets(
        self, condition: Condition, after: tuple[datetime, UUID] | None, limit: int
    ) -> TicketPage:
        rows = self.rows(RowQuery(condition, LIST_ORDER, after, limit + 1))
        page = rows[:limit]
        last = page[-1] if len(rows) > limit else None
        return TicketPage(page, (last["opened_at"], last["ticket_id"]) if last else None)
