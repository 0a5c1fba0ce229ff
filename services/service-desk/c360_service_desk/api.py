"""The service-desk gRPC API: validates requests, maps proto <-> application, returns results."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import grpc

from c360.service_desk.v1 import service_desk_service_pb2 as api
from c360.service_desk.v1 import service_desk_service_pb2_grpc as api_grpc
from c360_platform.commands import blocking, expected_version, parse_id
from c360_platform.consistency import ConsistencyToken
from c360_platform.context import ContextReader, CustomerContext
from c360_platform.envelope import timestamp
from c360_platform.errors import InvalidArgument, NotFound
from c360_platform.servicer import CommandServicer, registration
from c360_platform.store import AllOf, Eq
from c360_service_desk.application import ServiceDeskApplication
from c360_service_desk.contract import (
    CHANNELS,
    DIRECTIONS,
    INTERACTION_KINDS,
    OUTCOMES,
    PRIORITIES,
    STATES,
    TARGET_KINDS,
    TARGET_STATUSES,
    WAITING_FOR,
    channel_value,
)
from c360_service_desk.domain import Ticket

Ctx = grpc.aio.ServicerContext[Any, Any]
MAX_PAGE = 200
DEFAULT_PAGE = 50


def sla_views(t: Ticket, now: datetime) -> list[api.SlaTargetView]:
    return [
        api.SlaTargetView(
            kind=TARGET_KINDS.value(v["target"]),
            minutes=v["minutes"],
            due_at=timestamp(v["due_at"]) if v["due_at"] and v["status"] != "met" else None,
            remaining_minutes=v["remaining_minutes"],
            status=TARGET_STATUSES.value(v["status"]),
            met_at=timestamp(v["met_at"]) if v["met_at"] else None,
        )
        for v in t.sla_view(now)
    ]


def ticket_message(t: Ticket, now: datetime | None = None) -> api.Ticket:
    return api.Ticket(
        ticket_id=str(t.id),
        version=t.version,
        customer_id=t.customer_id,
        channel=CHANNELS.value(t.channel),
        subject=t.subject,
        description=t.description,
        category=t.category,
        priority=PRIORITIES.value(t.priority),
        state=STATES.value(t.state),
        agent_id=t.agent_id,
        queue=t.queue,
        escalation_level=t.escalation_level,
        interactions=[
            api.Interaction(
                interaction_id=i["interaction_id"],
                kind=INTERACTION_KINDS.value(i["kind"]),
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
        sla_policy=t.sla_policy,
        sla_targets=sla_views(t, now) if now is not None else [],
        waiting_for=WAITING_FOR.value_or_zero(t.waiting_for),
        time_zone=t.time_zone,
    )


def summary_message(r: dict[str, Any]) -> api.TicketSummary:
    return api.TicketSummary(
        ticket_id=str(r["ticket_id"]),
        version=r["version"],
        customer_id=str(r["customer_id"]),
        channel=CHANNELS.value(r["channel"]),
        subject=r["subject"],
        category=r["category"],
        priority=PRIORITIES.value(r["priority"]),
        state=STATES.value(r["state"]),
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


class ServiceDeskServicer(
    CommandServicer[ServiceDeskApplication], api_grpc.ServiceDeskServiceServicer
):
    """gRPC servicer for c360.service_desk.v1.ServiceDeskService."""

    def __init__(self, app: ServiceDeskApplication, context: ContextReader) -> None:
        super().__init__(app)
        self.context = context

    async def OpenTicket(
        self, request: api.OpenTicketRequest, context: Ctx
    ) -> api.OpenTicketResponse:
        # Passed as they came: the domain names every offending field at once.
        fields = {
            "customer_id": request.customer_id,
            "channel": CHANNELS.word(request.channel),
            "subject": request.subject,
            "description": request.description,
            "category": request.category,
            "priority": PRIORITIES.word(request.priority),
            "time_zone": request.time_zone,
        }
        if (
            not request.allow_unknown_customer
            and _is_uuid(request.customer_id)
            and not await self.context.knows(request.customer_id)
        ):
            raise NotFound(
                f"customer {request.customer_id} is not known to the timeline; check the"
                " id, or set allow_unknown_customer to open a ticket for a customer not"
                " registered yet"
            )
        return await self.command(
            request,
            context,
            api.OpenTicketResponse,
            lambda ctx: self.app.open_ticket(ctx, **fields),
        )

    async def AssignTicket(
        self, request: api.AssignTicketRequest, context: Ctx
    ) -> api.AssignTicketResponse:
        tid, version = _target(request)
        return await self.command(
            request,
            context,
            api.AssignTicketResponse,
            lambda ctx: self.app.assign(ctx, tid, version, request.agent_id, request.queue),
        )

    async def RecordInteraction(
        self, request: api.RecordInteractionRequest, context: Ctx
    ) -> api.RecordInteractionResponse:
        tid, version = _target(request)
        kind = INTERACTION_KINDS.parse("kind", request.kind)
        channel = CHANNELS.parse("channel", request.channel, optional=True)
        return await self.command(
            request,
            context,
            api.RecordInteractionResponse,
            lambda ctx: self.app.record_interaction(
                ctx,
                tid,
                version,
                kind=kind,
                body=request.body,
                channel=channel,
                duration_seconds=request.duration_seconds,
                agent_id=request.agent_id,
            ),
            extra=["interaction_id"],
        )

    async def ChangePriority(
        self, request: api.ChangePriorityRequest, context: Ctx
    ) -> api.ChangePriorityResponse:
        tid, version = _target(request)
        priority = PRIORITIES.parse("priority", request.priority)
        return await self.command(
            request,
            context,
            api.ChangePriorityResponse,
            lambda ctx: self.app.change_priority(ctx, tid, version, priority, request.reason),
        )

    async def EscalateTicket(
        self, request: api.EscalateTicketRequest, context: Ctx
    ) -> api.EscalateTicketResponse:
        tid, version = _target(request)
        return await self.command(
            request,
            context,
            api.EscalateTicketResponse,
            lambda ctx: self.app.escalate(ctx, tid, version, request.reason, request.queue),
        )

    async def ResolveTicket(
        self, request: api.ResolveTicketRequest, context: Ctx
    ) -> api.ResolveTicketResponse:
        tid, version = _target(request)
        return await self.command(
            request,
            context,
            api.ResolveTicketResponse,
            lambda ctx: self.app.resolve(ctx, tid, version, request.resolution, request.agent_id),
        )

    async def ReopenTicket(
        self, request: api.ReopenTicketRequest, context: Ctx
    ) -> api.ReopenTicketResponse:
        tid, version = _target(request)
        return await self.command(
            request,
            context,
            api.ReopenTicketResponse,
            lambda ctx: self.app.reopen(ctx, tid, version, request.reason),
        )

    async def CloseTicket(
        self, request: api.CloseTicketRequest, context: Ctx
    ) -> api.CloseTicketResponse:
        tid, version = _target(request)
        return await self.command(
            request,
            context,
            api.CloseTicketResponse,
            lambda ctx: self.app.close_ticket(ctx, tid, version, request.reason),
        )

    async def RateTicket(
        self, request: api.RateTicketRequest, context: Ctx
    ) -> api.RateTicketResponse:
        tid, version = _target(request)
        return await self.command(
            request,
            context,
            api.RateTicketResponse,
            lambda ctx: self.app.rate(ctx, tid, version, request.score, request.comment),
        )

    async def HoldTicket(
        self, request: api.HoldTicketRequest, context: Ctx
    ) -> api.HoldTicketResponse:
        tid, version = _target(request)
        waiting_for = WAITING_FOR.parse("waiting_for", request.waiting_for)
        return await self.command(
            request,
            context,
            api.HoldTicketResponse,
            lambda ctx: self.app.hold(ctx, tid, version, waiting_for, request.reason),
        )

    async def ResumeTicket(
        self, request: api.ResumeTicketRequest, context: Ctx
    ) -> api.ResumeTicketResponse:
        tid, version = _target(request)
        return await self.command(
            request,
            context,
            api.ResumeTicketResponse,
            lambda ctx: self.app.resume(ctx, tid, version),
        )

    async def RecordContact(
        self, request: api.RecordContactRequest, context: Ctx
    ) -> api.RecordContactResponse:
        fields = {
            "customer_id": request.customer_id,
            "channel": CHANNELS.parse("channel", request.channel),
            "direction": DIRECTIONS.parse("direction", request.direction),
            "outcome": OUTCOMES.parse("outcome", request.outcome),
            "started_at": (
                request.started_at.ToDatetime(tzinfo=UTC)
                if request.HasField("started_at")
                else None
            ),
            "duration_seconds": request.duration_seconds,
            "agent_id": request.agent_id,
            "ivr_path": list(request.ivr_path),
            "note": request.note,
        }
        return await self.command(
            request,
            context,
            api.RecordContactResponse,
            lambda ctx: self.app.record_contact(ctx, **fields),
        )

    async def CreateServiceContract(
        self, request: api.CreateServiceContractRequest, context: Ctx
    ) -> api.CreateServiceContractResponse:
        fields = {
            "customer_id": request.customer_id,
            "name": request.name,
            "services": list(request.services),
            "starts_on": request.starts_on,
            "ends_on": request.ends_on,
            "warning_days": request.warning_days,
        }
        return await self.command(
            request,
            context,
            api.CreateServiceContractResponse,
            lambda ctx: self.app.create_contract(ctx, **fields),
        )

    async def GetSlaCompliance(
        self, request: api.GetSlaComplianceRequest, context: Ctx
    ) -> api.GetSlaComplianceResponse:
        missing = [f for f in ("opened_from", "opened_to") if not request.HasField(f)]
        if missing:
            raise InvalidArgument.one(missing[0], "is required")
        start = request.opened_from.ToDatetime(tzinfo=UTC)
        end = request.opened_to.ToDatetime(tzinfo=UTC)
        if end <= start:
            raise InvalidArgument.one("opened_to", "must be after opened_from")
        rows = await blocking(self.app.sla_compliance, start, end)
        return api.GetSlaComplianceResponse(
            rows=[
                api.SlaComplianceRow(
                    **r,
                    compliance=r["met"] / (r["met"] + r["breached"])
                    if r["met"] + r["breached"]
                    else None,
                )
                for r in rows
            ]
        )

    async def GetTicket(self, request: api.GetTicketRequest, context: Ctx) -> api.GetTicketResponse:
        ticket_id = parse_id("ticket_id", request.ticket_id)
        ticket = await blocking(self.app.get_ticket, ticket_id)
        position = await blocking(self.app.position_of, ticket_id)
        # The context includes this ticket's latest change if the timeline keeps up.
        token = str(ConsistencyToken(self.app.source, position))
        found = await self.context.read(ticket.customer_id, wait_for=token)
        return api.GetTicketResponse(
            ticket=ticket_message(ticket, self.app.clock()), context=context_message(found)
        )

    async def ListTickets(
        self, request: api.ListTicketsRequest, context: Ctx
    ) -> api.ListTicketsResponse:
        if request.page_size > MAX_PAGE:
            raise InvalidArgument.one("page_size", f"must be at most {MAX_PAGE}")
        filters: list[Eq] = [Eq("kind", "ticket")]
        if request.customer_id:
            filters.append(Eq("customer_id", parse_id("customer_id", request.customer_id)))
        if request.state:
            filters.append(Eq("state", STATES.parse("state", request.state)))
        if request.agent_id:
            filters.append(Eq("agent_id", request.agent_id.strip()))
        if request.queue:
            filters.append(Eq("queue", request.queue.strip().lower()))
        if request.priority:
            filters.append(Eq("priority", PRIORITIES.parse("priority", request.priority)))
        after = _decode_token(request.page_token)
        page = await blocking(
            self.app.list_tickets, AllOf(tuple(filters)), after, request.page_size or DEFAULT_PAGE
        )
        return api.ListTicketsResponse(
            tickets=[summary_message(r) for r in page.rows],
            next_page_token=_encode_token(page.after) if page.after else "",
        )


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


def _target(request: Any) -> tuple[UUID, int | None]:
    """The ticket a command is about, and the version it expects, from its request."""
    return parse_id("ticket_id", request.ticket_id), expected_version(request)


def servicer_registration(
    app: ServiceDeskApplication, context: ContextReader
) -> tuple[str, Any, Any]:
    """The service-desk API on a host: `host.add(*servicer_registration(app, context))`."""
    return registration(
        ServiceDeskServicer(app, context),
        api_grpc.add_ServiceDeskServiceServicer_to_server,
        api.DESCRIPTOR.services_by_name["ServiceDeskService"],
    )
