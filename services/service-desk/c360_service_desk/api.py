"""The service-desk gRPC API: validates requests, maps proto <-> application, returns results."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from uuid import UUID

import grpc

from c360.events.v1 import service_contract_events_pb2 as sev
from c360.service_desk.v1 import service_desk_service_pb2 as api
from c360.service_desk.v1 import service_desk_service_pb2_grpc as api_grpc
from c360_platform import paging
from c360_platform.commands import blocking, expected_version, parse_id
from c360_platform.consistency import ConsistencyToken
from c360_platform.context import ContextReader, CustomerContext
from c360_platform.envelope import timestamp
from c360_platform.errors import InvalidArgument, NotFound
from c360_platform.servicer import CommandServicer, registration
from c360_platform.store import AllOf, Eq, Ne
from c360_platform.validation import Violations
from c360_service_desk import sla
from c360_service_desk.application import ServiceDeskApplication
from c360_service_desk.contract import (
    ALLOWANCE_UNITS,
    ARTICLE_STATES,
    CHANNELS,
    CONSUME_ON,
    DIRECTIONS,
    INTERACTION_KINDS,
    LINK_KINDS,
    OUTCOMES,
    PRIORITIES,
    STATES,
    TARGET_KINDS,
    TARGET_STATUSES,
    WAITING_FOR,
    WORK_ORDER_STATES,
    channel_value,
)
from c360_service_desk.domain import State, Ticket
from c360_service_desk.field_service import WorkOrder
from c360_service_desk.holidays import HolidayCalendar, calendar_id
from c360_service_desk.knowledge import Article
from c360_service_desk.money import money
from c360_service_desk.service_contracts import ServiceContract

Ctx = grpc.aio.ServicerContext[Any, Any]
R = TypeVar("R")
MAX_PAGE = 200
DEFAULT_PAGE = 50
MAX_SEARCH = 50
DEFAULT_SEARCH = 10
MAX_SUGGEST = 20
DEFAULT_SUGGEST = 5
MAX_SEARCH_TEXT = 500
MAX_WORK_MINUTES = 7 * 24 * 60
NO_CONTRACT = "no service contract when it opened"


def sla_views(t: Ticket, now: datetime, calendars: sla.Calendars) -> list[api.SlaTargetView]:
    return [
        api.SlaTargetView(
            kind=TARGET_KINDS.value(v["target"]),
            minutes=v["minutes"],
            due_at=(
                timestamp(v["due_at"])
                if v["due_at"] and v["status"] not in ("met", "cancelled")
                else None
            ),
            remaining_minutes=v["remaining_minutes"],
            status=TARGET_STATUSES.value(v["status"]),
            met_at=timestamp(v["met_at"]) if v["met_at"] else None,
        )
        for v in t.sla_view(now, calendars)
    ]


def ticket_message(
    t: Ticket, now: datetime | None = None, calendars: sla.Calendars = sla.builtin_calendar
) -> api.Ticket:
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
        sla_targets=sla_views(t, now, calendars) if now is not None else [],
        waiting_for=WAITING_FOR.value_or_zero(t.waiting_for),
        time_zone=t.time_zone,
        entitlement=(
            api.TicketEntitlement(
                contract_id=t.entitlement["contract_id"],
                contract_name=t.entitlement["name"],
                consume_on=CONSUME_ON.value(t.entitlement["consume_on"]),
                unit=ALLOWANCE_UNITS.value(t.entitlement["unit"]),
                consumed=t.entitlement["consumed"],
            )
            if t.entitlement
            else None
        ),
        entitlement_note=t.entitlement_note or ("" if t.entitlement else NO_CONTRACT),
        customer_classes=list(t.customer_classes),
        merged_into_ticket_id=t.merged_into,
        merged_ticket_ids=list(t.merged_tickets),
        articles=[
            api.TicketArticle(
                article_id=a["article_id"],
                title=a["title"],
                kind=LINK_KINDS.value(a["kind"]),
                article_version=a["version"],
            )
            for a in t.articles
        ],
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
        waiting_for=WAITING_FOR.value_or_zero(r["waiting_for"]),
    )


def context_message(c: CustomerContext) -> api.CustomerContext:
    return api.CustomerContext(
        available=c.available,
        unavailable_reason=c.reason,
        profile=c.profile,
        recent_entries=c.recent,
    )


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
        # Passed as they came: the domain names every offending field at once (an enum's
        # unknown number too, given as its digits; no priority is NORMAL).
        fields = {
            "customer_id": request.customer_id,
            "channel": CHANNELS.given(request.channel),
            "subject": request.subject,
            "description": request.description,
            "category": request.category,
            "priority": PRIORITIES.given(request.priority),
            "time_zone": request.time_zone,
        }
        # A word, as a contract's services are: anything else could never match one (and
        # was taken as it came, of any length).
        service = ""
        if request.service.strip():
            v = Violations()
            service = v.tag("service", request.service)
            v.check()
        # None: logged for a customer not known (yet), or without the timeline: no classes.
        profile, answered = await self.customer_checked(
            self.context,
            request,
            context,
            api.OpenTicketResponse,
            request.customer_id,
            "a ticket",
            allow_unknown="allow_unknown_customer",
            allowed=request.allow_unknown_customer,
        )
        if answered is not None:
            return answered
        classes = customer_classes(profile)
        return await self.command(
            request,
            context,
            api.OpenTicketResponse,
            lambda ctx: self.app.open_ticket(ctx, service=service, classes=classes, **fields),
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
        article = parse_id("article_id", request.article_id) if request.article_id else None
        if request.work_minutes > MAX_WORK_MINUTES:
            raise InvalidArgument.one("work_minutes", f"must be at most {MAX_WORK_MINUTES}")
        return await self.command(
            request,
            context,
            api.ResolveTicketResponse,
            lambda ctx: self.app.resolve(
                ctx,
                tid,
                version,
                request.resolution,
                request.agent_id,
                article,
                request.work_minutes,
            ),
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

    async def MergeTickets(
        self, request: api.MergeTicketsRequest, context: Ctx
    ) -> api.MergeTicketsResponse:
        survivor = parse_id("survivor_ticket_id", request.survivor_ticket_id)
        duplicate = parse_id("duplicate_ticket_id", request.duplicate_ticket_id)
        version = expected_version(request)
        return await self.command(
            request,
            context,
            api.MergeTicketsResponse,
            lambda ctx: self.app.merge_tickets(ctx, survivor, version, duplicate, request.reason),
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
        _, answered = await self.customer_checked(
            self.context,
            request,
            context,
            api.RecordContactResponse,
            request.customer_id,
            "a contact",
        )
        if answered is not None:
            return answered
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
        _, answered = await self.customer_checked(
            self.context,
            request,
            context,
            api.CreateServiceContractResponse,
            request.customer_id,
            "a service contract",
        )
        if answered is not None:
            return answered
        fields = {
            "customer_id": request.customer_id,
            "name": request.name,
            "services": list(request.services),
            "starts_on": request.starts_on,
            "ends_on": request.ends_on,
            "warning_days": request.warning_days,
            "allowance_unit": ALLOWANCE_UNITS.parse(
                "allowance_unit", request.allowance_unit, optional=True
            ),
            "allowance": request.allowance,
            "consume_on": CONSUME_ON.parse("consume_on", request.consume_on, optional=True),
            "sla_policy": request.sla_policy,
            "value_amount": request.value_amount,
            "value_currency": request.value_currency,
        }
        return await self.command(
            request,
            context,
            api.CreateServiceContractResponse,
            lambda ctx: self.app.create_contract(ctx, **fields),
        )

    async def RenewServiceContract(
        self, request: api.RenewServiceContractRequest, context: Ctx
    ) -> api.RenewServiceContractResponse:
        cid = parse_id("contract_id", request.contract_id)
        version = expected_version(request)
        return await self.command(
            request,
            context,
            api.RenewServiceContractResponse,
            lambda ctx: self.app.renew_contract(ctx, cid, version, request.ends_on),
        )

    async def GetServiceContract(
        self, request: api.GetServiceContractRequest, context: Ctx
    ) -> api.GetServiceContractResponse:
        cid = parse_id("contract_id", request.contract_id)
        c = await blocking(self.app.get_contract, cid)
        return api.GetServiceContractResponse(contract=contract_message(c, self.app.clock().date()))

    async def ImportHolidays(
        self, request: api.ImportHolidaysRequest, context: Ctx
    ) -> api.ImportHolidaysResponse:
        name = request.calendar.strip() or "standard"
        source = " ".join(request.source.split())[:200]

        def reply(result: Any, added: str) -> api.ImportHolidaysResponse:
            return api.ImportHolidaysResponse(result=result, added=int(added or 0))

        return await self.command(
            request,
            context,
            reply,
            lambda ctx: self.app.import_holidays(ctx, name, request.ics, source),
            extra=["added"],
        )

    async def GetCalendar(
        self, request: api.GetCalendarRequest, context: Ctx
    ) -> api.GetCalendarResponse:
        name = request.calendar.strip() or "standard"
        policies = [p.name for p in sla.POLICIES if p.calendar.name == name]
        if not policies:
            raise NotFound(f"no business calendar {name!r}")
        cal = await blocking(self.app.calendars, name)
        stored = await blocking(self.app.find, HolidayCalendar, calendar_id(name))
        names = stored.holidays if stored is not None else {}
        return api.GetCalendarResponse(
            name=cal.name,
            time_zone=cal.time_zone,
            hours=[
                api.WorkingHours(weekday=day + 1, opens=f"{h[0]:%H:%M}", closes=f"{h[1]:%H:%M}")
                for day, h in sorted(cal.hours.items())
            ],
            holidays=[
                sev.Holiday(
                    date=d.isoformat(), name=names.get(d.isoformat()) or cal.names.get(d, "")
                )
                for d in sorted(cal.holidays)
            ],
            policies=policies,
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
        visits = await blocking(
            self.app.list_work_orders, AllOf((Eq("ticket_id", str(ticket_id)),)), None, 20
        )
        return api.GetTicketResponse(
            ticket=ticket_message(ticket, self.app.clock(), self.app.calendars),
            context=context_message(found),
            work_orders=[work_order_summary(r) for r in visits.rows],
        )

    async def ListTickets(
        self, request: api.ListTicketsRequest, context: Ctx
    ) -> api.ListTicketsResponse:
        size = paging.count(request.page_size, maximum=MAX_PAGE, default=DEFAULT_PAGE)
        filters: list[Eq | Ne] = [Eq("kind", "ticket")]
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
        if request.HasField("on_hold"):
            if request.state and request.state != STATES.value(State.OPEN):
                raise InvalidArgument.one(
                    "on_hold",
                    f"only open tickets are on hold or not; state is {STATES.word(request.state)}",
                )
            filters.append(Eq("state", State.OPEN))
            filters.append((Ne if request.on_hold else Eq)("waiting_for", ""))
        after = paging.read_keyset_token(request.page_token, request)
        page = await blocking(self.app.list_tickets, AllOf(tuple(filters)), after, size)
        return api.ListTicketsResponse(
            tickets=[summary_message(r) for r in page.rows],
            next_page_token=paging.keyset_token(page.after, request) if page.after else "",
        )

    # -- the knowledge base -----------------------------------------------------------------

    async def CreateArticle(
        self, request: api.CreateArticleRequest, context: Ctx
    ) -> api.CreateArticleResponse:
        fields = {
            "title": request.title,
            "body": request.body,
            "category": request.category,
            "language": request.language,
            "keywords": list(request.keywords),
            "author_id": request.author_id,
        }
        return await self.command(
            request,
            context,
            api.CreateArticleResponse,
            lambda ctx: self.app.create_article(ctx, **fields),
        )

    async def _on_article(
        self, request: Any, context: Ctx, reply: Callable[..., R], act: Callable[[Article], None]
    ) -> R:
        aid = parse_id("article_id", request.article_id)
        version = expected_version(request)
        return await self.command(
            request, context, reply, lambda ctx: self.app.change_article(ctx, aid, version, act)
        )

    async def ReviseArticle(
        self, request: api.ReviseArticleRequest, context: Ctx
    ) -> api.ReviseArticleResponse:
        keywords = list(request.keywords)
        return await self._on_article(
            request,
            context,
            api.ReviseArticleResponse,
            lambda a: a.revise(request.title, request.body, request.category, keywords),
        )

    async def SubmitArticle(
        self, request: api.SubmitArticleRequest, context: Ctx
    ) -> api.SubmitArticleResponse:
        return await self._on_article(
            request, context, api.SubmitArticleResponse, lambda a: a.submit()
        )

    async def PublishArticle(
        self, request: api.PublishArticleRequest, context: Ctx
    ) -> api.PublishArticleResponse:
        return await self._on_article(
            request, context, api.PublishArticleResponse, lambda a: a.publish(request.reviewer_id)
        )

    async def ArchiveArticle(
        self, request: api.ArchiveArticleRequest, context: Ctx
    ) -> api.ArchiveArticleResponse:
        return await self._on_article(
            request, context, api.ArchiveArticleResponse, lambda a: a.archive(request.reason)
        )

    async def VoteArticle(
        self, request: api.VoteArticleRequest, context: Ctx
    ) -> api.VoteArticleResponse:
        aid = parse_id("article_id", request.article_id)
        ticket = str(parse_id("ticket_id", request.ticket_id)) if request.ticket_id else ""
        # A voter names no version (it cannot know one): the article as it is now.
        return await self.command(
            request,
            context,
            api.VoteArticleResponse,
            lambda ctx: self.app.change_article(
                ctx, aid, None, lambda a: a.vote(request.helpful, ticket)
            ),
        )

    async def LinkArticle(
        self, request: api.LinkArticleRequest, context: Ctx
    ) -> api.LinkArticleResponse:
        tid = parse_id("ticket_id", request.ticket_id)
        aid = parse_id("article_id", request.article_id)
        kind = LINK_KINDS.parse("kind", request.kind)
        return await self.command(
            request,
            context,
            api.LinkArticleResponse,
            lambda ctx: self.app.link_article(ctx, tid, aid, kind),
        )

    async def GetArticle(
        self, request: api.GetArticleRequest, context: Ctx
    ) -> api.GetArticleResponse:
        aid = parse_id("article_id", request.article_id)
        return api.GetArticleResponse(
            article=article_message(await blocking(self.app.get_article, aid))
        )

    async def ListArticles(
        self, request: api.ListArticlesRequest, context: Ctx
    ) -> api.ListArticlesResponse:
        size = paging.count(request.page_size, maximum=MAX_PAGE, default=DEFAULT_PAGE)
        filters: list[Eq] = []
        if request.state:
            filters.append(Eq("state", ARTICLE_STATES.parse("state", request.state)))
        if request.category:
            filters.append(Eq("category", request.category.strip().lower()))
        page = await blocking(
            self.app.list_articles,
            AllOf(tuple(filters)),
            paging.read_keyset_token(request.page_token, request),
            size,
        )
        return api.ListArticlesResponse(
            articles=[article_summary(r) for r in page.rows],
            next_page_token=paging.keyset_token(page.after, request) if page.after else "",
        )

    async def SearchArticles(
        self, request: api.SearchArticlesRequest, context: Ctx
    ) -> api.SearchArticlesResponse:
        v = Violations()
        text = v.text("text", request.text, max_len=MAX_SEARCH_TEXT)
        language = request.language.strip().lower()
        if language and not (len(language) == 2 and language.isascii() and language.isalpha()):
            v.add("language", "must be a two-letter ISO 639-1 code, e.g. en or de")
        if request.limit > MAX_SEARCH:
            v.add("limit", f"must be at most {MAX_SEARCH}")
        v.check()
        rows = await blocking(
            self.app.search_articles, text, language, request.limit or DEFAULT_SEARCH
        )
        return api.SearchArticlesResponse(articles=[article_summary(r) for r in rows])

    async def SuggestArticles(
        self, request: api.SuggestArticlesRequest, context: Ctx
    ) -> api.SuggestArticlesResponse:
        tid = parse_id("ticket_id", request.ticket_id)
        limit = paging.count(
            request.limit, maximum=MAX_SUGGEST, default=DEFAULT_SUGGEST, field="limit"
        )
        rows = await blocking(self.app.suggest_articles, tid, limit)
        return api.SuggestArticlesResponse(articles=[article_summary(r) for r in rows])

    async def GetKnowledgeReport(
        self, request: api.GetKnowledgeReportRequest, context: Ctx
    ) -> api.GetKnowledgeReportResponse:
        start, end = _period(request, "resolved_from", "resolved_to")
        found = await blocking(self.app.knowledge_report, start, end)
        return api.GetKnowledgeReportResponse(
            rows=[api.KnowledgeReportRow(**r) for r in found.rows],
            top_articles=[api.ArticleUsage(**a) for a in found.top_articles],
        )

    # -- field service ----------------------------------------------------------------------

    async def CreateWorkOrder(
        self, request: api.CreateWorkOrderRequest, context: Ctx
    ) -> api.CreateWorkOrderResponse:
        fields = {
            "customer_id": request.customer_id,
            "summary": request.summary,
            "ticket_id": request.ticket_id,
            "contract_id": request.contract_id,
            "region": request.region,
            "currency": request.currency,
        }
        _, answered = await self.customer_checked(
            self.context,
            request,
            context,
            api.CreateWorkOrderResponse,
            request.customer_id,
            "a work order",
            allow_unknown="allow_unknown_customer",
            allowed=request.allow_unknown_customer,
        )
        if answered is not None:
            return answered
        return await self.command(
            request,
            context,
            api.CreateWorkOrderResponse,
            lambda ctx: self.app.create_work_order(ctx, **fields),
        )

    async def _on_work_order(
        self,
        request: Any,
        context: Ctx,
        reply: Callable[..., R],
        act: Callable[[WorkOrder], Any],
        extra: tuple[str, ...] = (),
    ) -> R:
        wid = parse_id("work_order_id", request.work_order_id)
        version = expected_version(request)
        return await self.command(
            request,
            context,
            reply,
            lambda ctx: self.app.change_work_order(ctx, wid, version, act),
            extra=extra,
        )

    async def ScheduleWorkOrder(
        self, request: api.ScheduleWorkOrderRequest, context: Ctx
    ) -> api.ScheduleWorkOrderResponse:
        v = Violations()
        for name in ("window_start", "window_end"):
            if not request.HasField(name):
                v.add(name, "is required")
        v.check()
        start = request.window_start.ToDatetime(tzinfo=UTC)
        end = request.window_end.ToDatetime(tzinfo=UTC)
        wid = parse_id("work_order_id", request.work_order_id)
        version = expected_version(request)
        return await self.command(
            request,
            context,
            api.ScheduleWorkOrderResponse,
            lambda ctx: self.app.schedule_work_order(
                ctx, wid, version, request.technician_id, start, end
            ),
        )

    async def StartWorkOrderTravel(
        self, request: api.StartWorkOrderTravelRequest, context: Ctx
    ) -> api.StartWorkOrderTravelResponse:
        return await self._on_work_order(
            request,
            context,
            api.StartWorkOrderTravelResponse,
            lambda w: w.start_travel(self.app.clock()),
        )

    async def StartWorkOrderWork(
        self, request: api.StartWorkOrderWorkRequest, context: Ctx
    ) -> api.StartWorkOrderWorkResponse:
        return await self._on_work_order(
            request,
            context,
            api.StartWorkOrderWorkResponse,
            lambda w: w.start_work(self.app.clock()),
        )

    async def RecordWorkOrderPart(
        self, request: api.RecordWorkOrderPartRequest, context: Ctx
    ) -> api.RecordWorkOrderPartResponse:
        return await self._on_work_order(
            request,
            context,
            api.RecordWorkOrderPartResponse,
            lambda w: w.use_part(
                request.sku, request.description, request.quantity, request.unit_cost
            ),
            extra=("line_id",),
        )

    async def RecordWorkOrderLabour(
        self, request: api.RecordWorkOrderLabourRequest, context: Ctx
    ) -> api.RecordWorkOrderLabourResponse:
        return await self._on_work_order(
            request,
            context,
            api.RecordWorkOrderLabourResponse,
            lambda w: w.record_labour(request.technician_id, request.minutes, request.hourly_rate),
            extra=("line_id",),
        )

    async def VoidWorkOrderLine(
        self, request: api.VoidWorkOrderLineRequest, context: Ctx
    ) -> api.VoidWorkOrderLineResponse:
        return await self._on_work_order(
            request,
            context,
            api.VoidWorkOrderLineResponse,
            lambda w: w.void_line(request.line_id, request.reason),
            extra=("line_id",),
        )

    async def CompleteWorkOrder(
        self, request: api.CompleteWorkOrderRequest, context: Ctx
    ) -> api.CompleteWorkOrderResponse:
        wid = parse_id("work_order_id", request.work_order_id)
        version = expected_version(request)
        return await self.command(
            request,
            context,
            api.CompleteWorkOrderResponse,
            lambda ctx: self.app.complete_work_order(
                ctx, wid, version, request.fixed, request.note
            ),
        )

    async def CancelWorkOrder(
        self, request: api.CancelWorkOrderRequest, context: Ctx
    ) -> api.CancelWorkOrderResponse:
        return await self._on_work_order(
            request, context, api.CancelWorkOrderResponse, lambda w: w.cancel(request.reason)
        )

    async def RateWorkOrder(
        self, request: api.RateWorkOrderRequest, context: Ctx
    ) -> api.RateWorkOrderResponse:
        return await self._on_work_order(
            request,
            context,
            api.RateWorkOrderResponse,
            lambda w: w.rate(request.score, request.comment),
        )

    async def GetWorkOrder(
        self, request: api.GetWorkOrderRequest, context: Ctx
    ) -> api.GetWorkOrderResponse:
        wid = parse_id("work_order_id", request.work_order_id)
        found = await blocking(self.app.get_work_order, wid)
        return api.GetWorkOrderResponse(work_order=work_order_message(found))

    async def ListWorkOrders(
        self, request: api.ListWorkOrdersRequest, context: Ctx
    ) -> api.ListWorkOrdersResponse:
        size = paging.count(request.page_size, maximum=MAX_PAGE, default=DEFAULT_PAGE)
        filters: list[Eq] = []
        if request.customer_id:
            filters.append(Eq("customer_id", parse_id("customer_id", request.customer_id)))
        if request.technician_id:
            filters.append(Eq("technician_id", request.technician_id.strip()))
        if request.state:
            filters.append(Eq("state", WORK_ORDER_STATES.parse("state", request.state)))
        if request.ticket_id:
            filters.append(Eq("ticket_id", str(parse_id("ticket_id", request.ticket_id))))
        page = await blocking(
            self.app.list_work_orders,
            AllOf(tuple(filters)),
            paging.read_keyset_token(request.page_token, request),
            size,
        )
        return api.ListWorkOrdersResponse(
            work_orders=[work_order_summary(r) for r in page.rows],
            next_page_token=paging.keyset_token(page.after, request) if page.after else "",
        )

    async def GetFieldServiceReport(
        self, request: api.GetFieldServiceReportRequest, context: Ctx
    ) -> api.GetFieldServiceReportResponse:
        start, end = _period(request, "completed_from", "completed_to")
        rows = await blocking(self.app.field_service_report, start, end)
        return api.GetFieldServiceReportResponse(
            rows=[api.FieldServiceReportRow(**r) for r in rows]
        )


def customer_classes(profile: Any) -> list[str]:
    """The classes sales gave the customer, from its profile ("key", "loyal")."""
    if profile is None:
        return []
    sales = profile.attributes.fields.get("sales")
    classes = sales.struct_value.fields.get("classes") if sales is not None else None
    return sorted(classes.struct_value.fields) if classes is not None else []


def contract_message(c: ServiceContract, today: date) -> api.ServiceContract:
    """The contract as of `today`: the period it is in, what that period has used."""
    day = min(max(today, date.fromisoformat(c.starts_on)), date.fromisoformat(c.ends_on))
    period = c.period_on(day)
    left = c.remaining(day)
    return api.ServiceContract(
        contract_id=str(c.id),
        version=c.version,
        customer_id=c.customer_id,
        name=c.name,
        services=c.services,
        starts_on=c.period_start(period),
        period_ends_on=c.period_end(period),
        ends_on=c.ends_on,
        period=period,
        state=(
            "expired"
            if c.expired
            else "expiring"
            if c.warned
            else "upcoming"
            if today < date.fromisoformat(c.starts_on)
            else "active"
        ),
        allowance_unit=ALLOWANCE_UNITS.value(c.allowance_unit),
        allowance=c.allowance,
        used=c.used(day),
        remaining=left,
        consume_on=CONSUME_ON.value(c.consume_on),
        sla_policy=c.sla_policy,
        value_amount=c.value_amount,
        value_currency=c.value_currency,
    )


def _period(request: Any, start_field: str, end_field: str) -> tuple[datetime, datetime]:
    """A report's [start, end) from two required timestamps."""
    missing = [f for f in (start_field, end_field) if not request.HasField(f)]
    if missing:
        raise InvalidArgument.one(missing[0], "is required")
    start = getattr(request, start_field).ToDatetime(tzinfo=UTC)
    end = getattr(request, end_field).ToDatetime(tzinfo=UTC)
    if end <= start:
        raise InvalidArgument.one(end_field, f"must be after {start_field}")
    return start, end


def _content(c: dict[str, Any] | None) -> api.ArticleContent | None:
    if c is None:
        return None
    return api.ArticleContent(
        title=c["title"], body=c["body"], category=c["category"], keywords=c["keywords"]
    )


def article_message(a: Article) -> api.Article:
    return api.Article(
        article_id=str(a.id),
        version=a.version,
        state=ARTICLE_STATES.value(a.state),
        language=a.language,
        author_id=a.author_id,
        working_version=a.working_version,
        working=_content(a.working),
        published_version=a.published_version,
        published=_content(a.published),
        used_to_resolve=a.used,
        suggested=a.suggested,
        helpful_votes=a.helpful,
        unhelpful_votes=a.not_helpful,
        created_at=timestamp(a.created_on),
        updated_at=timestamp(a.modified_on),
    )


def article_summary(r: dict[str, Any]) -> api.ArticleSummary:
    return api.ArticleSummary(
        article_id=str(r["article_id"]),
        version=r["version"],
        state=ARTICLE_STATES.value(r["state"]),
        title=r["title"],
        category=r["category"],
        language=r["language"],
        published_version=r["published_version"],
        used_to_resolve=r["used"],
        helpful_votes=r["helpful"],
        unhelpful_votes=r["not_helpful"],
        updated_at=timestamp(r["updated_at"]),
    )


def _maybe(at: datetime | None) -> Any:
    return timestamp(at) if at is not None else None


def work_order_message(w: WorkOrder) -> api.WorkOrder:
    return api.WorkOrder(
        work_order_id=str(w.id),
        version=w.version,
        customer_id=w.customer_id,
        state=WORK_ORDER_STATES.value(w.state),
        summary=w.summary,
        ticket_id=w.ticket_id,
        contract_id=w.contract_id,
        region=w.region,
        currency=w.currency,
        technician_id=w.technician_id,
        window_start=_maybe(w.window_start),
        window_end=_maybe(w.window_end),
        travel_started_at=_maybe(w.travel_started_at),
        work_started_at=_maybe(w.work_started_at),
        completed_at=_maybe(w.completed_at),
        fixed=w.fixed,
        lines=[
            api.WorkOrderLine(**{k: v for k, v in line.items() if k != "kind"}, kind=line["kind"])
            for line in w.lines
        ],
        cost=money(w.cost, w.currency),
        satisfaction=w.satisfaction,
        created_at=timestamp(w.created_on),
        updated_at=timestamp(w.modified_on),
        note=w.note,
        cancel_reason=w.cancel_reason,
        satisfaction_comment=w.satisfaction_comment,
    )


def work_order_summary(r: dict[str, Any]) -> api.WorkOrderSummary:
    return api.WorkOrderSummary(
        work_order_id=str(r["work_order_id"]),
        version=r["version"],
        customer_id=str(r["customer_id"]),
        state=WORK_ORDER_STATES.value(r["state"]),
        summary=r["summary"],
        technician_id=r["technician_id"],
        region=r["region"],
        window_start=_maybe(r["window_start"]),
        cost=money(r["cost"], r["currency"]),
        currency=r["currency"],
        satisfaction=r["satisfaction"],
        created_at=timestamp(r["created_at"]),
    )


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
