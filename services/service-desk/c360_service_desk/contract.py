"""The published contract of the service desk: domain event -> c360.events.v1 message."""

from __future__ import annotations

from typing import Any

from c360.events.v1 import ticket_events_pb2 as pb
from c360_platform.contract import EventContract, Mapper, Published
from c360_platform.vocabulary import Words
from c360_service_desk.domain import Ticket

CHANNELS = Words(pb.TicketChannel)
PRIORITIES = Words(pb.TicketPriority)
STATES = Words(pb.TicketState)
INTERACTION_KINDS = Words(pb.InteractionKind)


def channel_value(value: str) -> Any:
    return CHANNELS.value_or_zero(value)


_MESSAGES: dict[type, Mapper] = {
    Ticket.Opened: lambda e: pb.TicketOpened(
        customer_id=e.customer_id,
        channel=CHANNELS.value(e.channel),
        subject=e.subject,
        description=e.description,
        category=e.category,
        priority=PRIORITIES.value(e.priority),
    ),
    Ticket.Assigned: lambda e: pb.TicketAssigned(
        customer_id=e.customer_id,
        agent_id=e.agent_id,
        queue=e.queue,
        previous_agent_id=e.previous_agent_id,
        previous_queue=e.previous_queue,
    ),
    Ticket.InteractionRecorded: lambda e: pb.TicketInteractionRecorded(
        customer_id=e.customer_id,
        interaction_id=e.interaction_id,
        kind=INTERACTION_KINDS.value(e.kind),
        channel=channel_value(e.channel),
        body=e.body,
        duration_seconds=e.duration_seconds,
        agent_id=e.agent_id,
    ),
    Ticket.PriorityChanged: lambda e: pb.TicketPriorityChanged(
        customer_id=e.customer_id,
        priority=PRIORITIES.value(e.priority),
        previous_priority=PRIORITIES.value(e.previous_priority),
        reason=e.reason,
    ),
    Ticket.Escalated: lambda e: pb.TicketEscalated(
        customer_id=e.customer_id, level=e.level, reason=e.reason, queue=e.queue
    ),
    Ticket.Resolved: lambda e: pb.TicketResolved(
        customer_id=e.customer_id, resolution=e.resolution, agent_id=e.agent_id
    ),
    Ticket.Reopened: lambda e: pb.TicketReopened(customer_id=e.customer_id, reason=e.reason),
    Ticket.Closed: lambda e: pb.TicketClosed(
        customer_id=e.customer_id, reason=e.reason, previous_state=STATES.value(e.previous_state)
    ),
    Ticket.Rated: lambda e: pb.TicketRated(
        customer_id=e.customer_id, score=e.score, comment=e.comment
    ),
}


CONTRACT = EventContract(
    Published(Ticket, "ticket", _MESSAGES, customer=lambda e: str(e.customer_id))
)
"""Every Ticket event and its published message; the envelope's customer is the ticket's
customer (every ticket event names it)."""
