"""The service-desk application: commands and queries over the Ticket aggregate (an
`eventsourcing.Application`, so saves are atomic and the notification log is the outbox)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from c360_platform.store import (
    CommandContext,
    CommandOutcome,
    Decision,
    QueryTable,
    ServiceApplication,
    schema_for,
)
from c360_service_desk import domain
from c360_service_desk.domain import Ticket

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
    ),
    indexes=(
        ("opened_at", "ticket_id"),
        ("customer_id", "opened_at", "ticket_id"),
        ("state", "opened_at", "ticket_id"),
        ("agent_id", "opened_at", "ticket_id"),
        ("queue", "opened_at", "ticket_id"),
    ),
)
"""One row per ticket for ListTickets, kept in the same transaction as the ticket's events."""

LIST_ORDER = ("opened_at", "ticket_id")


def _now() -> datetime:
    return datetime.now(UTC)


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
        if not isinstance(aggregate, Ticket):
            return None
        t = aggregate
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
        }

    def open(self, ctx: CommandContext, **fields: Any) -> CommandOutcome:
        def decide() -> Decision[Ticket]:
            ticket = domain.open_ticket(**fields)
            return Decision(ticket, [ticket])

        return self.execute(ctx, decide)

    def update(
        self,
        ctx: CommandContext,
        ticket_id: UUID,
        expected_version: int | None,
        change: str,
        *args: Any,
        **kwargs: Any,
    ) -> CommandOutcome:
        """Apply one of the Ticket's command methods by name (assign, escalate, rate, ...).
        Methods that record a time (interactions, resolve, close) get `at` = now."""

        def decide() -> Decision[Ticket]:
            ticket = self.load(Ticket, ticket_id, expected_version)
            if change in {"record_interaction", "resolve", "close"}:
                kwargs["at"] = _now()
            result = getattr(ticket, change)(*args, **kwargs)
            extra = {"interaction_id": result} if change == "record_interaction" else {}
            return Decision(ticket, [ticket], extra)

        return self.execute(ctx, decide)

    def get_ticket(self, ticket_id: UUID) -> Ticket:
        return self.load(Ticket, ticket_id)

    def position_of(self, ticket_id: UUID) -> int:
        """The log position of the ticket's latest event (for a consistency token)."""
        return self.event_recorder.position_of(ticket_id)

    def list_tickets(
        self, filters: Mapping[str, Any], after: tuple[datetime, UUID] | None, limit: int
    ) -> TicketPage:
        rows = self.event_recorder.select_rows(filters, LIST_ORDER, after, limit + 1)
        page = rows[:limit]
        last = page[-1] if len(rows) > limit else None
        return TicketPage(page, (last["opened_at"], last["ticket_id"]) if last else None)
