"""The published contract of the service desk: domain event -> c360.events.v1 message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol

from c360.events.v1 import ticket_events_pb2 as pb
from c360_platform.envelope import Publication
from c360_service_desk.domain import Ticket

AGGREGATE = "ticket"

CHANNELS = {
    "phone": pb.TICKET_CHANNEL_PHONE,
    "ivr": pb.TICKET_CHANNEL_IVR,
    "email": pb.TICKET_CHANNEL_EMAIL,
    "sms": pb.TICKET_CHANNEL_SMS,
    "web_form": pb.TICKET_CHANNEL_WEB_FORM,
    "chat": pb.TICKET_CHANNEL_CHAT,
    "fax": pb.TICKET_CHANNEL_FAX,
    "in_person": pb.TICKET_CHANNEL_IN_PERSON,
}
PRIORITIES = {
    "low": pb.TICKET_PRIORITY_LOW,
    "normal": pb.TICKET_PRIORITY_NORMAL,
    "high": pb.TICKET_PRIORITY_HIGH,
    "urgent": pb.TICKET_PRIORITY_URGENT,
}
STATES = {
    "open": pb.TICKET_STATE_OPEN,
    "resolved": pb.TICKET_STATE_RESOLVED,
    "closed": pb.TICKET_STATE_CLOSED,
}
INTERACTION_KINDS = {
    "inbound_message": pb.INTERACTION_KIND_INBOUND_MESSAGE,
    "outbound_message": pb.INTERACTION_KIND_OUTBOUND_MESSAGE,
    "inbound_call": pb.INTERACTION_KIND_INBOUND_CALL,
    "outbound_call": pb.INTERACTION_KIND_OUTBOUND_CALL,
    "internal_note": pb.INTERACTION_KIND_INTERNAL_NOTE,
}


def channel_value(value: str) -> Any:
    return CHANNELS.get(value, pb.TICKET_CHANNEL_UNSPECIFIED)


_MAPPERS: dict[str, Callable[[Any], Any]] = {
    "Opened": lambda e: pb.TicketOpened(
        customer_id=e.customer_id,
        channel=CHANNELS[e.channel],
        subject=e.subject,
        description=e.description,
        category=e.category,
        priority=PRIORITIES[e.priority],
    ),
    "Assigned": lambda e: pb.TicketAssigned(
        customer_id=e.customer_id,
        agent_id=e.agent_id,
        queue=e.queue,
        previous_agent_id=e.previous_agent_id,
        previous_queue=e.previous_queue,
    ),
    "InteractionRecorded": lambda e: pb.TicketInteractionRecorded(
        customer_id=e.customer_id,
        interaction_id=e.interaction_id,
        kind=INTERACTION_KINDS[e.kind],
        channel=channel_value(e.channel),
        body=e.body,
        duration_seconds=e.duration_seconds,
        agent_id=e.agent_id,
    ),
    "PriorityChanged": lambda e: pb.TicketPriorityChanged(
        customer_id=e.customer_id,
        priority=PRIORITIES[e.priority],
        previous_priority=PRIORITIES[e.previous_priority],
        reason=e.reason,
    ),
    "Escalated": lambda e: pb.TicketEscalated(
        customer_id=e.customer_id, level=e.level, reason=e.reason, queue=e.queue
    ),
    "Resolved": lambda e: pb.TicketResolved(
        customer_id=e.customer_id, resolution=e.resolution, agent_id=e.agent_id
    ),
    "Reopened": lambda e: pb.TicketReopened(customer_id=e.customer_id, reason=e.reason),
    "Closed": lambda e: pb.TicketClosed(
        customer_id=e.customer_id, reason=e.reason, previous_state=STATES[e.previous_state]
    ),
    "Rated": lambda e: pb.TicketRated(customer_id=e.customer_id, score=e.score, comment=e.comment),
}


class TicketContract:
    """Maps each Ticket event to its published message; the envelope's customer is the
    ticket's customer (every ticket event names it)."""

    def publication(self, event: DomainEventProtocol[UUID]) -> Publication:
        owner, _, name = type(event).__qualname__.partition(".")
        mapper = _MAPPERS.get(name) if owner == Ticket.__name__ else None
        if mapper is None:
            raise TypeError(f"no published message for {type(event).__qualname__}")
        return Publication(
            aggregate_type=AGGREGATE,
            customer_id=str(getattr(event, "customer_id")),  # noqa: B009 (not in the protocol)
            payload=mapper(event),
        )
