"""The sales gRPC API: validates requests, maps proto <-> application, returns results."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import grpc

from c360.sales.v1 import sales_service_pb2 as api
from c360.sales.v1 import sales_service_pb2_grpc as api_grpc
from c360_platform import paging
from c360_platform.auth import Role, requires
from c360_platform.commands import blocking, expected_version, parse_id
from c360_platform.context import ContextReader
from c360_platform.envelope import timestamp
from c360_platform.errors import InvalidArgument
from c360_platform.servicer import CommandServicer, registration
from c360_platform.store import Condition, Eq, RowQuery
from c360_sales import domain
from c360_sales.application import Bucket, Page, SalesApplication
from c360_sales.contract import (
    ACTIVITY_KINDS,
    ACTIVITY_STATES,
    BASES,
    CHANNELS,
    COMPUTATIONS,
    DISQUALIFY_REASONS,
    FORECAST,
    LEAD_STATES,
    LOST_STATUSES,
    OPPORTUNITY_STATES,
    ORDER_STATES,
    QUOTE_STATES,
    RULES,
    SCOPES,
    money,
    order_line_message,
    quote_line_message,
    rule_message,
    stage_message,
)
from c360_sales.customers import CustomerRegistry, CustomerSearch, NewCustomer, matches
from c360_sales.domain import Activity, Lead, Opportunity, Order, Pipeline, Product, Quote

Ctx = grpc.aio.ServicerContext[Any, Any]
R = TypeVar("R")
MAX_PAGE = 200
DEFAULT_PAGE = 50


def _ts(at: datetime | None) -> Any:
    return timestamp(at) if at else None


def lead_message(lead: Lead) -> api.Lead:
    return api.Lead(
        lead_id=str(lead.id),
        version=lead.version,
        state=LEAD_STATES.value(lead.state),
        channel=CHANNELS.value(lead.channel),
        campaign_id=lead.campaign_id,
        source=lead.source,
        customer_id=lead.customer_id,
        person_name=lead.person_name,
        company_name=lead.company_name,
        email=lead.email,
        phone=lead.phone,
        position=lead.position,
        industry=lead.industry,
        territory=lead.territory,
        interest_products=lead.interest_products,
        estimated_value=money(lead.estimated_currency, lead.estimated_amount),
        description=lead.description,
        team=lead.team,
        agent_id=lead.agent_id,
        disqualify_reason=DISQUALIFY_REASONS.value_or_zero(lead.disqualify_reason),
        opportunity_id=lead.opportunity_id,
        captured_at=_ts(lead.created_on),
        updated_at=_ts(lead.modified_on),
        forgotten_at=_ts(lead.forgotten_at),
    )


def opportunity_message(o: Opportunity, now: datetime) -> api.Opportunity:
    visits = []
    history = o.stage_history
    for i, visit in enumerate(history):
        entered = datetime.fromisoformat(visit["entered_at"])
        left = (
            datetime.fromisoformat(history[i + 1]["entered_at"]) if i + 1 < len(history) else None
        )
        closed = o.state != domain.OpportunityState.OPEN.value and left is None
        end = left or ((o.closed_at or entered) if closed else now)
        visits.append(
            api.StageVisit(
                stage=visit["stage"],
                entered_at=timestamp(entered),
                left_at=_ts(left),
                seconds=max(0, int((end - entered).total_seconds())),
            )
        )
    opened = datetime.fromisoformat(history[0]["entered_at"])
    closed_at = (
        (o.closed_at or datetime.fromisoformat(history[-1]["entered_at"])) if o.closed_on else now
    )
    return api.Opportunity(
        opportunity_id=str(o.id),
        version=o.version,
        customer_id=o.customer_id,
        name=o.name,
        pipeline_id=o.pipeline_id,
        stage=o.stage,
        owner_id=o.owner_id,
        amount=money(o.currency, o.amount),
        expected_close=o.expected_close,
        probability=o.probability,
        manual_probability=o.manual_probability,
        forecast_category=FORECAST.value(o.forecast_category),
        competitor=o.competitor,
        territory=o.territory,
        partner=o.partner,
        lead_id=o.lead_id,
        state=OPPORTUNITY_STATES.value(o.state),
        actual_amount=money(o.currency, o.actual_amount) if o.actual_amount else None,
        closed_on=o.closed_on,
        lost_reason=o.lost_reason,
        weighted_amount=domain.money_text(o.weighted, o.currency),
        stage_history=visits,
        cycle_seconds=max(0, int((closed_at - opened).total_seconds())),
        opened_at=_ts(o.created_on),
        updated_at=_ts(o.modified_on),
        on_hold=o.on_hold,
        hold_reason=o.hold_reason,
        campaign_id=o.campaign_id,
        lost_status=LOST_STATUSES.value_or_zero(o.lost_status),
    )


def quote_message(q: Quote) -> api.Quote:
    t = q.totals
    return api.Quote(
        quote_id=str(q.id),
        version=q.version,
        customer_id=q.customer_id,
        opportunity_id=q.opportunity_id,
        price_list_id=q.price_list_id,
        currency=q.currency,
        valid_until=q.valid_until,
        revision=q.revision,
        revises_quote_id=q.revises_quote_id,
        state=QUOTE_STATES.value(q.state),
        lines=[quote_line_message(line) for line in q.lines],
        net_total=money(q.currency, domain.money_text(t.net, q.currency)),
        tax_total=money(q.currency, domain.money_text(t.tax, q.currency)),
        gross_total=money(q.currency, domain.money_text(t.gross, q.currency)),
        order_id=q.order_id,
        reason=q.reason,
        drafted_at=_ts(q.created_on),
        updated_at=_ts(q.modified_on),
    )


def order_message(o: Order) -> api.Order:
    t = o.totals
    return api.Order(
        order_id=str(o.id),
        version=o.version,
        customer_id=o.customer_id,
        order_number=o.order_number,
        quote_id=o.quote_id,
        opportunity_id=o.opportunity_id,
        currency=o.currency,
        state=ORDER_STATES.value(o.state),
        lines=[order_line_message(line) for line in o.lines],
        net_total=money(o.currency, domain.money_text(t.net, o.currency)),
        tax_total=money(o.currency, domain.money_text(t.tax, o.currency)),
        gross_total=money(o.currency, domain.money_text(t.gross, o.currency)),
        reason=o.reason,
        fulfilled_on=o.fulfilled_on,
        placed_at=_ts(o.created_on),
        updated_at=_ts(o.modified_on),
        invoiced_total=money(o.currency, domain.money_text(o.invoiced_total, o.currency)),
        invoice_status=o.invoice_status,
        invoices=[
            api.OrderInvoice(
                invoice_number=i["invoice_number"],
                amount=money(o.currency, i["amount"]),
                issue_date=i["issue_date"],
            )
            for i in o.invoices
        ],
    )


def pipeline_message(p: Pipeline) -> api.Pipeline:
    return api.Pipeline(
        pipeline_id=str(p.id),
        name=p.name,
        team=p.team,
        stages=[stage_message(s) for s in p.stages],
        version=p.version,
    )


def product_message(p: Product) -> api.Product:
    return api.Product(
        product_id=str(p.id),
        sku=p.sku,
        name=p.name,
        category=p.category,
        unit=p.unit,
        list_price=money(p.currency, p.list_price),
        cost=money(p.currency, p.cost),
        active=p.active,
        version=p.version,
    )


def _as_of(request: Any) -> datetime | None:
    return request.as_of.ToDatetime(tzinfo=UTC) if request.HasField("as_of") else None


def _target(request: Any, field: str) -> tuple[UUID, int | None]:
    return parse_id(field, getattr(request, field)), expected_version(request)


def _money(request: Any, field: str) -> tuple[str, str]:
    if not request.HasField(field):
        return "", ""
    value = getattr(request, field)
    return value.currency, value.amount


def _rule_dict(rule: Any) -> dict[str, str]:
    return {
        "rule_id": rule.rule_id,
        "scope": SCOPES.word(rule.scope),
        "target": rule.target,
        "min_quantity": rule.min_quantity,
        "valid_from": rule.valid_from,
        "valid_to": rule.valid_to,
        "computation": COMPUTATIONS.word(rule.computation),
        "fixed_price": rule.fixed_price,
        "discount_percent": rule.discount_percent,
        "base": BASES.given(rule.base),
        "base_price_list_id": rule.base_price_list_id,
        "rounding": rule.rounding,
        "surcharge": rule.surcharge,
        "min_margin": rule.min_margin,
        "max_margin": rule.max_margin,
    }


def _buckets_amounts(b: Bucket) -> dict[str, str]:
    return {
        "amount": domain.money_text(b.amount, b.currency),
        "weighted_amount": domain.money_text(b.weighted, b.currency),
    }


class SalesServicer(CommandServicer[SalesApplication], api_grpc.SalesServiceServicer):
    """gRPC servicer for c360.sales.v1.SalesService."""

    def __init__(
        self,
        app: SalesApplication,
        customers: CustomerRegistry,
        search: CustomerSearch | None = None,
        context: ContextReader | None = None,
    ) -> None:
        super().__init__(app)
        self.customers = customers
        self.search = search
        self.context = context
        """The timeline, asked whether a customer a command names exists and is not forgotten
        (None: not asked, as in the in-memory tests of sales alone)."""

    async def _customer_checked(
        self, request: Any, context: Ctx, reply: Callable[..., R], customer_id: str, what: str
    ) -> R | None:
        """None when the command may go on: the customer it names for `what` is known to the
        timeline and not forgotten (or it names none); else the first answer to a retry of
        it, or NOT_FOUND / FAILED_PRECONDITION (`CommandServicer.customer_checked`)."""
        _, answered = await self.customer_checked(
            self.context, request, context, reply, customer_id, what
        )
        return answered

    # -- leads -----------------------------------------------------------------------------------

    async def CaptureLead(
        self, request: api.CaptureLeadRequest, context: Ctx
    ) -> api.CaptureLeadResponse:
        currency, amount = _money(request, "estimated_value")
        fields = {
            "channel": CHANNELS.word(request.channel),
            "campaign_id": request.campaign_id,
            "source": request.source,
            "customer_id": request.customer_id,
            "person_name": request.person_name,
            "company_name": request.company_name,
            "email": request.email,
            "phone": request.phone,
            "position": request.position,
            "industry": request.industry,
            "territory": request.territory,
            "interest_products": list(request.interest_products),
            "estimated_currency": currency,
            "estimated_amount": amount,
            "description": request.description,
            "team": request.team,
            "default_region": request.default_region,
        }
        reply = api.CaptureLeadResponse
        answered = await self._customer_checked(
            request, context, reply, request.customer_id, "a lead"
        )
        if answered is not None:
            return answered
        return await self.command(
            request,
            context,
            reply,
            lambda ctx: self.app.capture_lead(ctx, **fields),
        )

    async def AssignLead(
        self, request: api.AssignLeadRequest, context: Ctx
    ) -> api.AssignLeadResponse:
        lid, version = _target(request, "lead_id")
        rule = RULES.parse("rule", request.rule, optional=True)
        return await self.command(
            request,
            context,
            api.AssignLeadResponse,
            lambda ctx: self.app.assign_lead(
                ctx, lid, version, agent_id=request.agent_id, rule=rule, team=request.team
            ),
            extra=["agent_id"],
        )

    async def QualifyLead(
        self, request: api.QualifyLeadRequest, context: Ctx
    ) -> api.QualifyLeadResponse:
        lid, version = _target(request, "lead_id")
        return await self.command(
            request,
            context,
            api.QualifyLeadResponse,
            lambda ctx: self.app.qualify_lead(ctx, lid, version, request.note),
        )

    async def ConvertLead(
        self, request: api.ConvertLeadRequest, context: Ctx
    ) -> api.ConvertLeadResponse:
        lid, version = _target(request, "lead_id")
        if request.customer_id and request.register_customer:
            raise InvalidArgument.one(
                "register_customer", "give a customer_id or register one, not both"
            )
        if not request.pipeline_id.strip():
            raise InvalidArgument.one("pipeline_id", "is required (a pipeline's name or id)")
        currency, amount = _money(request, "amount")
        customer_id = request.customer_id.strip()
        registered = False
        contact_id = ""
        answered = await self._customer_checked(
            request, context, api.ConvertLeadResponse, customer_id, "an opportunity"
        )
        if answered is not None:
            return await self._conversion_replayed(answered, lid)
        if not customer_id:
            lead = await blocking(self.app.get_lead, lid)
            if lead.state == domain.LeadState.CONVERTED.value or lead.customer_id:
                # The lead's own customer (one a campaign's lead list named), or a retry
                # (replayed below) or a second conversion (refused below).
                customer_id = lead.customer_id
            elif not request.register_customer:
                raise InvalidArgument.one(
                    "customer_id", "is required (or register_customer, or a lead with a customer)"
                )
            else:
                lead = await blocking(self.app.check_convertible, lid, version)
                registered = not lead.customer_id
                if registered:
                    customer_id, contact_id = await self._register(lead)
                else:
                    customer_id = lead.customer_id
        return await self._convert(
            request, context, lid, version, customer_id, registered, currency, amount, contact_id
        )

    async def _register(self, lead: Lead) -> tuple[str, str]:
        """The customer registered for a lead, and (a company's lead with a person's name) the
        person registered and linked to it as its contact in the lead's position, as
        qualifying a lead makes an account and its contact in Dynamics. The person's e-mail
        and phone are the person's, not the company's: two customers with one address would
        be offered as duplicates. Each step has a request id of the lead's own, so a retry
        after a failure in between completes it. (organisation or person id, contact id)"""
        if not (lead.company_name and lead.person_name):
            return await self.customers.register(_new_customer(lead)), ""
        organisation = await self.customers.register(
            replace(_new_customer(lead), emails=(), phones=())
        )
        contact = await self.customers.register(
            replace(
                _new_customer(lead),
                request_id=f"sales-lead-{lead.id}-contact",
                organisation=False,
                display_name=lead.person_name,
            )
        )
        await self.customers.link_contact(
            f"sales-lead-{lead.id}-contact-link", organisation, contact, lead.position or "contact"
        )
        return organisation, contact

    async def _convert(
        self,
        request: api.ConvertLeadRequest,
        context: Ctx,
        lid: UUID,
        version: int | None,
        customer_id: str,
        registered: bool,
        currency: str,
        amount: str,
        contact_id: str,
    ) -> api.ConvertLeadResponse:
        reply = await self.command(
            request,
            context,
            api.ConvertLeadResponse,
            lambda ctx: self.app.convert_lead(
                ctx,
                lid,
                version,
                customer_id=customer_id,
                registered=registered,
                pipeline=request.pipeline_id,
                opportunity_name=request.opportunity_name,
                currency=currency,
                amount=amount,
                expected_close=request.expected_close,
                owner_id=request.owner_id,
                contact_person_id=contact_id,
            ),
            extra=["customer_id", "opportunity_id"],
        )
        if reply.result.replayed:
            return await self._conversion_replayed(reply, lid)
        reply.customer_registered = registered
        reply.contact_person_id = contact_id
        return reply

    async def _conversion_replayed(
        self, reply: api.ConvertLeadResponse, lid: UUID
    ) -> api.ConvertLeadResponse:
        """The first answer to a conversion, completed from its lead (the recorded outcome
        holds the lead's id only)."""
        lead = await blocking(self.app.get_lead, lid)
        reply.customer_id, reply.opportunity_id = lead.customer_id, lead.opportunity_id
        reply.customer_registered = lead.customer_registered
        reply.contact_person_id = lead.contact_person_id
        return reply

    async def DisqualifyLead(
        self, request: api.DisqualifyLeadRequest, context: Ctx
    ) -> api.DisqualifyLeadResponse:
        lid, version = _target(request, "lead_id")
        reason = DISQUALIFY_REASONS.parse("reason", request.reason)
        return await self.command(
            request,
            context,
            api.DisqualifyLeadResponse,
            lambda ctx: self.app.disqualify_lead(
                ctx, lid, version, reason, request.note, request.competitor
            ),
        )

    async def ReopenLead(
        self, request: api.ReopenLeadRequest, context: Ctx
    ) -> api.ReopenLeadResponse:
        lid, version = _target(request, "lead_id")
        return await self.command(
            request,
            context,
            api.ReopenLeadResponse,
            lambda ctx: self.app.reopen_lead(ctx, lid, version, request.reason),
        )

    @requires(Role.OPERATOR)
    async def ForgetLead(
        self, request: api.ForgetLeadRequest, context: Ctx
    ) -> api.ForgetLeadResponse:
        lid = parse_id("lead_id", request.lead_id)
        return await self.command(
            request,
            context,
            api.ForgetLeadResponse,
            lambda ctx: self.app.forget_lead(ctx, lid),
        )

    async def FindLeadCustomers(
        self, request: api.FindLeadCustomersRequest, context: Ctx
    ) -> api.FindLeadCustomersResponse:
        lead = await blocking(self.app.get_lead, parse_id("lead_id", request.lead_id))
        if self.search is None:
            return api.FindLeadCustomersResponse()
        texts = [lead.email, lead.phone, lead.company_name, lead.person_name]
        found = await matches(self.search, texts)
        return api.FindLeadCustomersResponse(
            matches=[
                api.LeadCustomerMatch(
                    customer_id=m.customer_id,
                    display_name=m.display_name,
                    kind=m.kind,
                    matched_on=m.matched_on,
                    contact_person_id=m.contact_person_id,
                    contact_role=m.contact_role,
                )
                for m in found
            ]
        )

    async def GetLead(self, request: api.GetLeadRequest, context: Ctx) -> api.GetLeadResponse:
        lead = await blocking(self.app.get_lead, parse_id("lead_id", request.lead_id))
        return api.GetLeadResponse(lead=lead_message(lead))

    async def _page(self, kind: str, filters: Sequence[Condition], request: Any) -> Page:
        """A page of a list `request` (its page_size and page_token, bound to it)."""
        after = paging.read_keyset_token(request.page_token, request)
        size = paging.count(request.page_size, maximum=MAX_PAGE, default=DEFAULT_PAGE)
        return await blocking(self.app.list_rows, kind, list(filters), after, size)

    async def ListLeads(self, request: api.ListLeadsRequest, context: Ctx) -> api.ListLeadsResponse:
        filters: list[Condition] = []
        if request.state:
            filters.append(Eq("state", LEAD_STATES.parse("state", request.state)))
        if request.agent_id:
            filters.append(Eq("agent_id", request.agent_id.strip()))
        if request.channel:
            filters.append(Eq("channel", CHANNELS.parse("channel", request.channel)))
        if request.campaign_id:
            filters.append(Eq("parent_id", str(parse_id("campaign_id", request.campaign_id))))
        if request.territory:
            filters.append(Eq("territory", request.territory.strip().lower()))
        page = await self._page("lead", filters, request)
        leads = await blocking(lambda: [self.app.get_lead(r["id"]) for r in page.rows])
        return api.ListLeadsResponse(
            leads=[lead_message(lead) for lead in leads],
            next_page_token=paging.keyset_token(page.after, request) if page.after else "",
        )

    async def DefineSalesTeam(
        self, request: api.DefineSalesTeamRequest, context: Ctx
    ) -> api.DefineSalesTeamResponse:
        members = [
            {"agent_id": m.agent_id, "territories": list(m.territories), "capacity": m.capacity}
            for m in request.members
        ]
        return await self.command(
            request,
            context,
            api.DefineSalesTeamResponse,
            lambda ctx: self.app.define_team(ctx, request.name, members, expected_version(request)),
        )

    # -- pipelines and opportunities -------------------------------------------------------------

    async def DefinePipeline(
        self, request: api.DefinePipelineRequest, context: Ctx
    ) -> api.DefinePipelineResponse:
        stages = [
            {
                "key": s.key,
                "name": s.name,
                "probability": s.probability,
                "won": s.won,
                "lost": s.lost,
            }
            for s in request.stages
        ]
        return await self.command(
            request,
            context,
            api.DefinePipelineResponse,
            lambda ctx: self.app.define_pipeline(
                ctx, request.name, request.team, stages, expected_version(request)
            ),
        )

    async def ListPipelines(
        self, request: api.ListPipelinesRequest, context: Ctx
    ) -> api.ListPipelinesResponse:
        flows = await blocking(self.app._pipelines)
        return api.ListPipelinesResponse(
            pipelines=[pipeline_message(p) for p in sorted(flows, key=lambda p: p.name)]
        )

    async def OpenOpportunity(
        self, request: api.OpenOpportunityRequest, context: Ctx
    ) -> api.OpenOpportunityResponse:
        currency, amount = _money(request, "amount")
        fields = {
            "customer_id": request.customer_id,
            "name": request.name,
            "stage": request.stage,
            "owner_id": request.owner_id,
            "currency": currency,
            "amount": amount,
            "expected_close": request.expected_close,
            "probability": request.probability if request.HasField("probability") else None,
            "forecast_category": FORECAST.parse(
                "forecast_category", request.forecast_category, optional=True
            ),
            "competitor": request.competitor,
            "territory": request.territory,
            "partner": request.partner,
        }
        if not request.pipeline.strip():
            raise InvalidArgument.one("pipeline", "is required (a pipeline's name or id)")
        reply = api.OpenOpportunityResponse
        answered = await self._customer_checked(
            request, context, reply, request.customer_id, "an opportunity"
        )
        if answered is not None:
            return answered
        return await self.command(
            request,
            context,
            reply,
            lambda ctx: self.app.open_opportunity(ctx, request.pipeline, **fields),
        )

    async def MoveOpportunityStage(
        self, request: api.MoveOpportunityStageRequest, context: Ctx
    ) -> api.MoveOpportunityStageResponse:
        oid, version = _target(request, "opportunity_id")
        if not request.stage.strip():
            raise InvalidArgument.one("stage", "is required")
        return await self.command(
            request,
            context,
            api.MoveOpportunityStageResponse,
            lambda ctx: self.app.move_stage(ctx, oid, version, request.stage.strip().lower()),
        )

    async def UpdateOpportunity(
        self, request: api.UpdateOpportunityRequest, context: Ctx
    ) -> api.UpdateOpportunityResponse:
        oid, version = _target(request, "opportunity_id")
        changes: dict[str, Any] = {}
        if request.HasField("amount"):
            changes["amount"] = (request.amount.currency, request.amount.amount)
        for name in ("expected_close", "competitor", "territory", "partner", "owner_id"):
            if request.HasField(name):
                changes[name] = getattr(request, name)
        if request.HasField("probability") and request.stage_probability:
            raise InvalidArgument.one(
                "stage_probability", "give a probability or ask for the stage's"
            )
        if request.HasField("probability"):
            changes["probability"] = request.probability
        if request.stage_probability:
            changes["probability"] = None
        if request.forecast_category:
            changes["forecast_category"] = FORECAST.parse(
                "forecast_category", request.forecast_category
            )
        return await self.command(
            request,
            context,
            api.UpdateOpportunityResponse,
            lambda ctx: self.app.update_opportunity(ctx, oid, version, changes),
        )

    async def WinOpportunity(
        self, request: api.WinOpportunityRequest, context: Ctx
    ) -> api.WinOpportunityResponse:
        oid, version = _target(request, "opportunity_id")
        return await self.command(
            request,
            context,
            api.WinOpportunityResponse,
            lambda ctx: self.app.win(ctx, oid, version, request.actual_amount, request.closed_on),
        )

    async def LoseOpportunity(
        self, request: api.LoseOpportunityRequest, context: Ctx
    ) -> api.LoseOpportunityResponse:
        oid, version = _target(request, "opportunity_id")
        status = LOST_STATUSES.parse("status", request.status, optional=True)
        return await self.command(
            request,
            context,
            api.LoseOpportunityResponse,
            lambda ctx: self.app.lose(
                ctx, oid, version, request.reason, request.competitor, request.closed_on, status
            ),
        )

    async def HoldOpportunity(
        self, request: api.HoldOpportunityRequest, context: Ctx
    ) -> api.HoldOpportunityResponse:
        oid, version = _target(request, "opportunity_id")
        return await self.command(
            request,
            context,
            api.HoldOpportunityResponse,
            lambda ctx: self.app.hold_opportunity(ctx, oid, version, request.reason),
        )

    async def ResumeOpportunity(
        self, request: api.ResumeOpportunityRequest, context: Ctx
    ) -> api.ResumeOpportunityResponse:
        oid, version = _target(request, "opportunity_id")
        return await self.command(
            request,
            context,
            api.ResumeOpportunityResponse,
            lambda ctx: self.app.resume_opportunity(ctx, oid, version),
        )

    async def ReopenOpportunity(
        self, request: api.ReopenOpportunityRequest, context: Ctx
    ) -> api.ReopenOpportunityResponse:
        oid, version = _target(request, "opportunity_id")
        return await self.command(
            request,
            context,
            api.ReopenOpportunityResponse,
            lambda ctx: self.app.reopen_opportunity(
                ctx, oid, version, request.stage.strip().lower(), request.reason
            ),
        )

    async def GetOpportunity(
        self, request: api.GetOpportunityRequest, context: Ctx
    ) -> api.GetOpportunityResponse:
        o = await blocking(
            self.app.get_opportunity, parse_id("opportunity_id", request.opportunity_id)
        )
        return api.GetOpportunityResponse(opportunity=opportunity_message(o, self.app.clock()))

    async def ListOpportunities(
        self, request: api.ListOpportunitiesRequest, context: Ctx
    ) -> api.ListOpportunitiesResponse:
        filters: list[Condition] = []
        if request.state:
            filters.append(Eq("state", OPPORTUNITY_STATES.parse("state", request.state)))
        if request.owner_id:
            filters.append(Eq("agent_id", request.owner_id.strip()))
        if request.customer_id:
            filters.append(Eq("customer_id", str(parse_id("customer_id", request.customer_id))))
        page = await self._page("opportunity", filters, request)
        found = await blocking(lambda: [self.app.get_opportunity(r["id"]) for r in page.rows])
        now = self.app.clock()
        return api.ListOpportunitiesResponse(
            opportunities=[opportunity_message(o, now) for o in found],
            next_page_token=paging.keyset_token(page.after, request) if page.after else "",
        )

    # -- products and price lists ----------------------------------------------------------------

    async def DefineProduct(
        self, request: api.DefineProductRequest, context: Ctx
    ) -> api.DefineProductResponse:
        currency, amount = _money(request, "list_price")
        return await self.command(
            request,
            context,
            api.DefineProductResponse,
            lambda ctx: self.app.define_product(
                ctx,
                sku=request.sku,
                expected_version=expected_version(request),
                name=request.name,
                category=request.category,
                unit=request.unit,
                currency=currency,
                list_price=amount,
                cost=request.cost,
                active=not request.inactive,
            ),
        )

    async def ListProducts(
        self, request: api.ListProductsRequest, context: Ctx
    ) -> api.ListProductsResponse:
        products = await blocking(self._products, request.category.strip().lower())
        return api.ListProductsResponse(products=[product_message(p) for p in products])

    def _products(self, category: str = "", active_only: bool = False) -> list[Product]:
        rows = self.app.rows(_kind_query("product"))
        found = [p for r in rows if (p := self.app.find(Product, r["id"])) is not None]
        found = [p for p in found if (not category or p.category == category)]
        found = [p for p in found if p.active or not active_only]
        return sorted(found, key=lambda p: p.sku)

    async def DefinePriceList(
        self, request: api.DefinePriceListRequest, context: Ctx
    ) -> api.DefinePriceListResponse:
        rules = [_rule_dict(r) for r in request.rules]
        return await self.command(
            request,
            context,
            api.DefinePriceListResponse,
            lambda ctx: self.app.define_price_list(
                ctx, request.name, request.currency, rules, expected_version(request)
            ),
        )

    async def GetPriceList(
        self, request: api.GetPriceListRequest, context: Ctx
    ) -> api.GetPriceListResponse:
        v = domain.Checks()
        on = v.day_text("on", request.on)
        quantity = v.decimal("quantity", request.quantity or "1")
        if quantity is not None and quantity <= 0:
            v.add("quantity", "must be more than zero")
        v.check()
        at = _as_of(request)
        day = date.fromisoformat(on) if on else (at or self.app.clock()).date()
        assert quantity is not None

        def document() -> api.GetPriceListResponse:
            prices = self.app.price_list_as_of(request.price_list, at)
            priced = []
            for p in self._products(active_only=True):
                item = api.PricedProduct(
                    product_id=str(p.id), sku=p.sku, name=p.name, category=p.category,
                    list_price=p.list_price,
                )  # fmt: skip
                try:
                    price = self.app.price(prices, p, Decimal(quantity), day, at)
                except Exception as exc:  # a product this list cannot price: say why
                    item.error = str(exc)
                else:
                    item.unit_price = domain.money_text(price.unit_price, prices.currency)
                    item.rule_id, item.pricing_note = price.rule_id, price.note
                priced.append(item)
            return api.GetPriceListResponse(
                price_list_id=str(prices.id),
                name=prices.name,
                currency=prices.currency,
                rules=[rule_message(r) for r in prices.rules],
                prices=priced,
                version=prices.version,
            )

        return await blocking(document)

    # -- quotes ----------------------------------------------------------------------------------

    async def DraftQuote(
        self, request: api.DraftQuoteRequest, context: Ctx
    ) -> api.DraftQuoteResponse:
        oid = parse_id("opportunity_id", request.opportunity_id)
        if not request.price_list.strip():
            raise InvalidArgument.one("price_list", "is required (a price list's name or id)")
        return await self.command(
            request,
            context,
            api.DraftQuoteResponse,
            lambda ctx: self.app.draft_quote(
                ctx,
                opportunity_id=oid,
                price_list=request.price_list,
                valid_until=request.valid_until,
                revises_quote_id=request.revises_quote_id,
            ),
        )

    async def AddQuoteLine(
        self, request: api.AddQuoteLineRequest, context: Ctx
    ) -> api.AddQuoteLineResponse:
        qid, version = _target(request, "quote_id")
        if not request.product.strip():
            raise InvalidArgument.one("product", "is required (a SKU or a product id)")
        return await self.command(
            request,
            context,
            api.AddQuoteLineResponse,
            lambda ctx: self.app.add_quote_line(
                ctx,
                qid,
                version,
                product=request.product,
                quantity=request.quantity,
                discount_percent=request.discount_percent,
                tax_rate=request.tax_rate,
                description=request.description,
            ),
            extra=["line_id"],
        )

    async def RemoveQuoteLine(
        self, request: api.RemoveQuoteLineRequest, context: Ctx
    ) -> api.RemoveQuoteLineResponse:
        qid, version = _target(request, "quote_id")
        return await self.command(
            request,
            context,
            api.RemoveQuoteLineResponse,
            lambda ctx: self.app.remove_quote_line(ctx, qid, version, request.line_id),
        )

    async def SendQuote(self, request: api.SendQuoteRequest, context: Ctx) -> api.SendQuoteResponse:
        qid, version = _target(request, "quote_id")
        return await self.command(
            request,
            context,
            api.SendQuoteResponse,
            lambda ctx: self.app.send_quote(ctx, qid, version),
        )

    async def AcceptQuote(
        self, request: api.AcceptQuoteRequest, context: Ctx
    ) -> api.AcceptQuoteResponse:
        qid, version = _target(request, "quote_id")
        reply = await self.command(
            request,
            context,
            api.AcceptQuoteResponse,
            lambda ctx: self.app.accept_quote(ctx, qid, version, hold=request.hold),
            extra=["order_id"],
        )
        if not reply.order_id:
            reply.order_id = (await blocking(self.app.get_quote, qid)).order_id
        return reply

    async def DeclineQuote(
        self, request: api.DeclineQuoteRequest, context: Ctx
    ) -> api.DeclineQuoteResponse:
        qid, version = _target(request, "quote_id")
        return await self.command(
            request,
            context,
            api.DeclineQuoteResponse,
            lambda ctx: self.app.decline_quote(ctx, qid, version, request.reason),
        )

    async def CancelQuote(
        self, request: api.CancelQuoteRequest, context: Ctx
    ) -> api.CancelQuoteResponse:
        qid, version = _target(request, "quote_id")
        return await self.command(
            request,
            context,
            api.CancelQuoteResponse,
            lambda ctx: self.app.cancel_quote(ctx, qid, version, request.reason),
        )

    async def GetQuote(self, request: api.GetQuoteRequest, context: Ctx) -> api.GetQuoteResponse:
        q = await blocking(self.app.get_quote, parse_id("quote_id", request.quote_id))
        return api.GetQuoteResponse(quote=quote_message(q))

    async def ListQuotes(
        self, request: api.ListQuotesRequest, context: Ctx
    ) -> api.ListQuotesResponse:
        filters: list[Condition] = []
        if request.state:
            filters.append(Eq("state", QUOTE_STATES.parse("state", request.state)))
        if request.customer_id:
            filters.append(Eq("customer_id", str(parse_id("customer_id", request.customer_id))))
        if request.opportunity_id:
            filters.append(Eq("parent_id", str(parse_id("opportunity_id", request.opportunity_id))))
        page = await self._page("quote", filters, request)
        found = await blocking(lambda: [self.app.get_quote(r["id"]) for r in page.rows])
        return api.ListQuotesResponse(
            quotes=[quote_message(q) for q in found],
            next_page_token=paging.keyset_token(page.after, request) if page.after else "",
        )

    # -- orders ----------------------------------------------------------------------------------

    async def ConfirmOrder(
        self, request: api.ConfirmOrderRequest, context: Ctx
    ) -> api.ConfirmOrderResponse:
        oid, version = _target(request, "order_id")
        return await self.command(
            request,
            context,
            api.ConfirmOrderResponse,
            lambda ctx: self.app.confirm_order(ctx, oid, version),
        )

    async def UnrealiseOrder(
        self, request: api.UnrealiseOrderRequest, context: Ctx
    ) -> api.UnrealiseOrderResponse:
        oid, version = _target(request, "order_id")
        return await self.command(
            request,
            context,
            api.UnrealiseOrderResponse,
            lambda ctx: self.app.unrealise_order(ctx, oid, version, request.reason),
        )

    async def GetOrder(self, request: api.GetOrderRequest, context: Ctx) -> api.GetOrderResponse:
        o = await blocking(self.app.get_order, parse_id("order_id", request.order_id))
        return api.GetOrderResponse(order=order_message(o))

    async def ListOrders(
        self, request: api.ListOrdersRequest, context: Ctx
    ) -> api.ListOrdersResponse:
        filters: list[Condition] = []
        if request.state:
            filters.append(Eq("state", ORDER_STATES.parse("state", request.state)))
        if request.customer_id:
            filters.append(Eq("customer_id", str(parse_id("customer_id", request.customer_id))))
        page = await self._page("order", filters, request)
        found = await blocking(lambda: [self.app.get_order(r["id"]) for r in page.rows])
        return api.ListOrdersResponse(
            orders=[order_message(o) for o in found],
            next_page_token=paging.keyset_token(page.after, request) if page.after else "",
        )

    # -- reads -----------------------------------------------------------------------------------

    async def GetPipeline(
        self, request: api.GetPipelineRequest, context: Ctx
    ) -> api.GetPipelineResponse:
        by = request.group_by.strip().lower() or "stage"
        if by not in ("stage", "owner", "territory", "team"):
            raise InvalidArgument.one("group_by", "must be one of stage, owner, territory, team")
        at = _as_of(request)
        buckets = await blocking(
            lambda: self.app.pipeline_report(
                at=at,
                by=by,
                pipeline=request.pipeline,
                owner=request.owner_id.strip(),
                territory=request.territory.strip().lower(),
            )
        )
        rows = []
        for b in buckets:
            row = api.PipelineRow(
                currency=b.currency,
                count=b.count,
                opportunity_ids=b.opportunity_ids,
                **_buckets_amounts(b),
            )
            if by == "stage":
                row.pipeline, row.stage = b.key[0], b.key[2]
            else:
                row.group = b.key[0]
            rows.append(row)
        return api.GetPipelineResponse(rows=rows, as_of=_ts(at or self.app.clock()))

    async def GetForecast(
        self, request: api.GetForecastRequest, context: Ctx
    ) -> api.GetForecastResponse:
        period = request.period.strip().lower() or "month"
        if period not in ("month", "quarter"):
            raise InvalidArgument.one("period", "must be month or quarter")
        at = _as_of(request)
        buckets = await blocking(
            lambda: self.app.forecast(at=at, period=period, owner=request.owner_id.strip())
        )
        return api.GetForecastResponse(
            rows=[
                api.ForecastRow(
                    period=b.key[0],
                    forecast_category=FORECAST.value(b.key[1]),
                    owner_id=b.key[2],
                    currency=b.currency,
                    count=b.count,
                    won_amount=domain.money_text(b.won, b.currency),
                    **_buckets_amounts(b),
                )
                for b in buckets
            ],
            as_of=_ts(at or self.app.clock()),
        )

    async def GetSalesReport(
        self, request: api.GetSalesReportRequest, context: Ctx
    ) -> api.GetSalesReportResponse:
        period = request.period.strip().lower() or "month"
        if period not in ("month", "quarter"):
            raise InvalidArgument.one("period", "must be month or quarter")
        tables = await blocking(self.app.reports, list(request.reports), period)
        return api.GetSalesReportResponse(
            tables=[
                api.ReportTable(
                    name=t.name,
                    columns=t.columns,
                    rows=[api.ReportRow(cells=row) for row in t.rows],
                )
                for t in tables
            ]
        )

    # -- activities ------------------------------------------------------------------------

    async def ScheduleActivity(
        self, request: api.ScheduleActivityRequest, context: Ctx
    ) -> api.ScheduleActivityResponse:
        fields = {
            "kind": ACTIVITY_KINDS.word(request.kind),
            "subject": request.subject,
            "due_at": _time(request, "due_at"),
            "agent_id": request.agent_id,
            "customer_id": request.customer_id,
            "lead_id": request.lead_id,
            "opportunity_id": request.opportunity_id,
            "notes": request.notes,
        }
        reply = api.ScheduleActivityResponse
        answered = await self._customer_checked(
            request, context, reply, request.customer_id, "an activity"
        )
        if answered is not None:
            return answered
        return await self.command(
            request,
            context,
            reply,
            lambda ctx: self.app.schedule_activity(ctx, **fields),
        )

    async def RescheduleActivity(
        self, request: api.RescheduleActivityRequest, context: Ctx
    ) -> api.RescheduleActivityResponse:
        aid, version = _target(request, "activity_id")
        due = _time(request, "due_at")
        return await self.command(
            request,
            context,
            api.RescheduleActivityResponse,
            lambda ctx: self.app.reschedule_activity(ctx, aid, version, due, request.agent_id),
        )

    async def CompleteActivity(
        self, request: api.CompleteActivityRequest, context: Ctx
    ) -> api.CompleteActivityResponse:
        aid, version = _target(request, "activity_id")
        return await self.command(
            request,
            context,
            api.CompleteActivityResponse,
            lambda ctx: self.app.complete_activity(ctx, aid, version, request.outcome),
        )

    async def CancelActivity(
        self, request: api.CancelActivityRequest, context: Ctx
    ) -> api.CancelActivityResponse:
        aid, version = _target(request, "activity_id")
        return await self.command(
            request,
            context,
            api.CancelActivityResponse,
            lambda ctx: self.app.cancel_activity(ctx, aid, version, request.reason),
        )

    async def ListActivities(
        self, request: api.ListActivitiesRequest, context: Ctx
    ) -> api.ListActivitiesResponse:
        due = request.due.strip().lower()
        if due not in ("", "overdue", "upcoming"):
            raise InvalidArgument.one("due", "must be overdue or upcoming")
        limit = paging.count(request.limit, maximum=MAX_PAGE, default=DEFAULT_PAGE, field="limit")
        customer = str(parse_id("customer_id", request.customer_id)) if request.customer_id else ""
        found = await blocking(
            lambda: self.app.list_activities(
                agent_id=request.agent_id.strip(),
                customer_id=customer,
                state=ACTIVITY_STATES.parse("state", request.state, optional=True),
                due=due,
                limit=limit,
            )
        )
        now = self.app.clock()
        return api.ListActivitiesResponse(activities=[activity_message(a, now) for a in found])

    async def GetCustomerClasses(
        self, request: api.GetCustomerClassesRequest, context: Ctx
    ) -> api.GetCustomerClassesResponse:
        customer = str(parse_id("customer_id", request.customer_id)) if request.customer_id else ""
        at = _as_of(request)
        found = await blocking(self.app.classify, at)
        chosen = [found[customer]] if customer in found else []
        if not customer:
            chosen = [found[c] for c in sorted(found)]
        return api.GetCustomerClassesResponse(
            customers=[
                api.CustomerClasses(
                    customer_id=c.customer_id,
                    classes=[
                        api.CustomerClass(name=n, reason=r) for n, r in sorted(c.found.items())
                    ],
                )
                for c in chosen
            ]
            if chosen or not customer
            else [api.CustomerClasses(customer_id=customer)],
            as_of=_ts(at or self.app.clock()),
        )


def activity_message(a: Activity, now: datetime) -> api.Activity:
    return api.Activity(
        activity_id=str(a.id),
        version=a.version,
        kind=ACTIVITY_KINDS.value(a.kind),
        state=ACTIVITY_STATES.value(a.state),
        subject=a.subject,
        due_at=timestamp(a.due_at),
        agent_id=a.agent_id,
        customer_id=a.customer_id,
        lead_id=a.lead_id,
        opportunity_id=a.opportunity_id,
        notes=a.notes,
        origin=a.origin,
        outcome=a.outcome,
        overdue=a.overdue(now),
    )


def _time(request: Any, field: str) -> datetime | None:
    return getattr(request, field).ToDatetime(tzinfo=UTC) if request.HasField(field) else None


def _kind_query(kind: str) -> RowQuery:
    return RowQuery(Eq("kind", kind))


def _new_customer(lead: Lead) -> NewCustomer:
    return NewCustomer(
        request_id=f"sales-lead-{lead.id}",
        organisation=bool(lead.company_name),
        display_name=lead.company_name or lead.person_name,
        emails=(lead.email,) if lead.email else (),
        phones=(lead.phone,) if lead.phone else (),
        owner_id=lead.agent_id,
        acquisition_source=lead.source or f"lead {lead.id}",
        acquisition_channel=lead.channel,
    )


def servicer_registration(
    app: SalesApplication,
    customers: CustomerRegistry,
    search: CustomerSearch | None = None,
    context: ContextReader | None = None,
) -> tuple[str, Any, Any]:
    """The sales API on a host: `host.add(*servicer_registration(app, customers, ...))`."""
    return registration(
        SalesServicer(app, customers, search, context),
        api_grpc.add_SalesServiceServicer_to_server,
        api.DESCRIPTOR.services_by_name["SalesService"],
    )
