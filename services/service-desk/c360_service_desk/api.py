"""The service-desk gRPC API: validates requests, maps proto <-> application, returns results."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any
from uuid import UUID

import grpc

from c360.service_desk.v1 import service_desk_service_pb2 as api
from c360.service_desk.v1 import service_desk_service_pb2_grpc as api_grpc
from c360_platform.commands import (
    blocking,
    command_context,
    command_result,
    expected_version,
    parse_id,
)
from c360_platform.consistency import ConsistencyToken
from c360_platform.context import ContextReader, CustomerContext
from c360_platform.envelope import timestamp
from c360_platform.errors import InvalidArgument
from c360_platform.store import CommandOutcome
from c360_service_desk.application import ServiceDeskApplication
from c360_service_desk.contract import (
    CHANNELS,
    INTERACTION_KINDS,
    PRIORITIES,
    STATES,
    channel_value,
)
from c360_service_desk.domain import Ticket

Ctx = grpc.aio.ServicerContext[Any, Any]
MAX_PAGE = 200
DEFAULT_PAGE = 50
_CHANNEL_NAMES = {v: k for k, v in CHANNELS.items()}
_PRIORITY_NAMES = {v: k for k, v in PRIORITIES.items()}
_STATE_NAMES = {v: k for k, v in STATES.items()}
_KIND_NAMES = {v: k for k, v in INTERACTION_KINDS.items()}


def _enum_name(field: str, value: int, names: dict[Any, str], *, optional: bool = False) -> str:
    """The domain's name of a proto enum value; 0 (unspecified) is "" when optional."""
    if optional and value == 0:
        return ""
    name = names.get(value)
    if name is None:
        raise InvalidArgument.one(field, f"must be one of {', '.join(names.values())}")
    return name


def ticket_message(t: Ticket) -> api.Ticket:
    return api.Ticket(
        ticket_id=str(t.id),
        version=t.version,
        customer_id=t.customer_id,
        channel=CHANNELS[t.channel],
        subject=t.subject,
        description=t.description,
        category=t.category,
        priority=PRIORITIES[t.priority],
        state=STATES[t.state],
        agent_id=t.agent_id,
        queue=t.queue,
        escalation_level=t.escalation_level,
        interactions=[
            api.Interaction(
                interaction_id=i["interaction_id"],
                kind=INTERACTION_KINDS[i["kind"]],
                channel=channel_value(i["channel"]),
                body=i["body"],
                duration_seconds=i["duration_seconds"],
                agent_id=i["agent_id"],
                recorded_at=timestamp(i["recorded_at"]),
            )
            for i in t.interactions
        ],
        resolution=t.resolution,
        rating=t.rating,
        rating_comment=t.rating_comment,
        reopened_count=t.reopened_count,
        opened_at=timestamp(t.created_on),
        resolved_at=timestamp(t.resolved_at) if t.resolved_at else None,
        closed_at=timestamp(t.closed_at) if t.closed_at else None,
        updated_at=timestamp(t.modified_on),
    )


def summary_message(r: dict[str, Any]) -> api.TicketSummary:
    return api.TicketSummary(
        ticket_id=str(r["ticket_id"]),
        version=r["version"],
        customer_id=str(r["customer_id"]),
        channel=CHANNELS[r["channel"]],
        subject=r["subject"],
        category=r["category"],
        priority=PRIORITIES[r["priority"]],
        state=STATES[r["state"]],
        agent_id=r["agent_id"],
        queue=r["queue"],
        escalation_level=r["escalation_level"],
        opened_at=timestamp(r["opened_at"]),
        updated_at=timestamp(r["updated_at"]),
    )


def context_message(c: CustomerContext) -> api.CustomerContext:
    return api.CustomerContext(
        available=c.available,
        unavailable_reason=c.reason,
        profile=c.profile,
        recent_entries=c.recent,
    )


def _encode_token(after: tuple[datetime, UUID]) -> str:
    return base64.urlsafe_b64encode(
        json.dumps([after[0].isoformat(), str(after[1])]).encode()
    ).decode()


def _decode_token(token: str) -> tuple[datetime, UUID] | None:
    if not token:
        return None
    try:
        at, ticket_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return datetime.fromisoformat(at), UUID(ticket_id)
    except (ValueError, TypeError):
        raise InvalidArgument.one("page_token", "not a token from a previous page") from None


class ServiceDeskServicer(api_grpc.ServiceDeskServiceServicer):
    """gRPC servicer for c360.service_desk.v1.ServiceDeskService."""

    def __init__(self, app: ServiceDeskApplication, context: ContextReader) -> None:
        self.app = app
        self.context = context

    def _result(self, outcome: CommandOutcome) -> Any:
        return command_result(self.app.source, outcome)

    async def _update(
        self, name: str, request: Any, context: Ctx, change: str, *args: Any, **kwargs: Any
    ) -> CommandOutcome:
        ctx = command_context(name, request, context)
        ticket_id = parse_id("ticket_id", request.ticket_id)
        return await blocking(
            self.app.update, ctx, ticket_id, expected_version(request), change, *args, **kwargs
        )

    async def OpenTicket(
        self, request: api.OpenTicketRequest, context: Ctx
    ) -> api.OpenTicketResponse:
        ctx = command_context("OpenTicket", request, context)
        outcome = await blocking(
            self.app.open,
            ctx,
            customer_id=str(parse_id("customer_id", request.customer_id)),
            channel=_enum_name("channel", request.channel, _CHANNEL_NAMES),
            subject=request.subject,
            description=request.description,
            category=request.category,
            priority=_enum_name("priority", request.priority, _PRIORITY_NAMES, optional=True),
        )
        return api.OpenTicketResponse(result=self._result(outcome))

    async def AssignTicket(
        self, request: api.AssignTicketRequest, context: Ctx
    ) -> api.AssignTicketResponse:
        outcome = await self._update(
            "AssignTicket", request, context, "assign", request.agent_id, request.queue
        )
        return api.AssignTicketResponse(result=self._result(outcome))

    async def RecordInteraction(
        self, request: api.RecordInteractionRequest, context: Ctx
    ) -> api.RecordInteractionResponse:
        outcome = await self._update(
            "RecordInteraction",
            request,
            context,
            "record_interaction",
            kind=_enum_name("kind", request.kind, _KIND_NAMES),
            body=request.body,
            channel=_enum_name("channel", request.channel, _CHANNEL_NAMES, optional=True),
            duration_seconds=request.duration_seconds,
            agent_id=request.agent_id,
        )
        return api.RecordInteractionResponse(
            result=self._result(outcome), interaction_id=outcome.extra.get("interaction_id", "")
        )

    async def ChangePriority(
        self, request: api.ChangePriorityRequest, context: Ctx
    ) -> api.ChangePriorityResponse:
        outcome = await self._update(
            "ChangePriority",
            request,
            context,
            "change_priority",
            _enum_name("priority", request.priority, _PRIORITY_NAMES),
            request.reason,
        )
        return api.ChangePriorityResponse(result=self._result(outcome))

    async def EscalateTicket(
        self, request: api.EscalateTicketRequest, context: Ctx
    ) -> api.EscalateTicketResponse:
        outcome = await self._update(
            "EscalateTicket", request, context, "escalate", request.reason, request.queue
        )
        return api.EscalateTicketResponse(result=self._result(outcome))

    async def ResolveTicket(
        self, request: api.ResolveTicketRequest, context: Ctx
    ) -> api.ResolveTicketResponse:
        outcome = await self._update(
            "ResolveTicket",
            request,
            context,
            "resolve",
            resolution=request.resolution,
            agent_id=request.agent_id,
        )
        return api.ResolveTicketResponse(result=self._result(outcome))

    async def ReopenTicket(
        self, request: api.ReopenTicketRequest, context: Ctx
    ) -> api.ReopenTicketResponse:
        outcome = await self._update("ReopenTicket", request, context, "reopen", request.reason)
        return api.ReopenTicketResponse(result=self._result(outcome))

    async def CloseTicket(
        self, request: api.CloseTicketRequest, context: Ctx
    ) -> api.CloseTicketResponse:
        outcome = await self._update(
            "CloseTicket", request, context, "close", reason=request.reason
        )
        return api.CloseTicketResponse(result=self._result(outcome))

    async def RateTicket(
        self, request: api.RateTicketRequest, context: Ctx
    ) -> api.RateTicketResponse:
        outcome = await self._update(
            "RateTicket", request, context, "rate", request.score, request.comment
        )
        return api.RateTicketResponse(result=self._result(outcome))

    async def GetTicket(self, request: api.GetTicketRequest, context: Ctx) -> api.GetTicketResponse:
        ticket_id = parse_id("ticket_id", request.ticket_id)
        ticket = await blocking(self.app.get_ticket, ticket_id)
        position = await blocking(self.app.position_of, ticket_id)
        # The context includes this ticket's latest change if the timeline keeps up.
        token = str(ConsistencyToken(self.app.source, position))
        found = await self.context.read(ticket.customer_id, wait_for=token)
        return api.GetTicketResponse(ticket=ticket_message(ticket), context=context_message(found))

    async def ListTickets(
        self, request: api.ListTicketsRequest, context: Ctx
    ) -> api.ListTicketsResponse:
        if request.page_size > MAX_PAGE:
            raise InvalidArgument.one("page_size", f"must be at most {MAX_PAGE}")
        filters: dict[str, Any] = {}
        if request.customer_id:
            filters["customer_id"] = parse_id("customer_id", request.customer_id)
        if request.state:
            filters["state"] = _enum_name("state", request.state, _STATE_NAMES)
        if request.agent_id:
            filters["agent_id"] = request.agent_id.strip()
        if request.queue:
            filters["queue"] = request.queue.strip().lower()
        if request.priority:
            filters["priority"] = _enum_name("priority", request.priority, _PRIORITY_NAMES)
        after = _decode_token(request.page_token)
        page = await blocking(
            self.app.list_tickets, filters, after, request.page_size or DEFAULT_PAGE
        )
        return api.ListTicketsResponse(
            tickets=[summary_message(r) for r in page.rows],
            next_page_token=_encode_token(page.after) if page.after else "",
        )


def register(servicer: ServiceDeskServicer) -> Any:
    def add(server: grpc.aio.Server) -> None:
        api_grpc.add_ServiceDeskServiceServicer_to_server(servicer, server)

    return add


SERVICE_NAME = api.DESCRIPTOR.services_by_name["ServiceDeskService"].full_name
