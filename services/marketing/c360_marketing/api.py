"""The marketing gRPC API: validates requests, maps proto <-> `Marketing`, returns results."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import grpc

from c360.events.v1 import sales_events_pb2 as sev
from c360.marketing.v1 import marketing_service_pb2 as api
from c360.marketing.v1 import marketing_service_pb2_grpc as api_grpc
from c360.sales.v1 import sales_service_pb2 as sapi
from c360.sales.v1 import sales_service_pb2_grpc as sales_grpc
from c360_marketing import offers
from c360_marketing.application import Contact, Marketing, ResultRow
from c360_marketing.contract import CHANNELS
from c360_marketing.domain import (
    Audience,
    CallList,
    Campaign,
    LeadList,
    Membership,
    Segment,
)
from c360_platform import channels, paging
from c360_platform.commands import (
    blocking,
    command_context,
    command_result,
    expected_version,
    parse_id,
)
from c360_platform.consistency import ConsistencyToken
from c360_platform.envelope import timestamp
from c360_platform.errors import InvalidArgument, NotFound, PreconditionFailed
from c360_platform.servicer import CommandServicer, registration
from c360_platform.store import CommandContext, CommandOutcome, RowQuery, where
from c360_platform.vocabulary import Words

Ctx = grpc.aio.ServicerContext[Any, Any]
R = TypeVar("R")
CatchUp = Callable[[], Awaitable[None]]
"""Brings the profile facts up to the timeline's latest (before a send)."""


def _ts(at: datetime | None) -> Any:
    return timestamp(at) if at else None


def _as_of(request: Any) -> datetime | None:
    return request.as_of.ToDatetime(tzinfo=UTC) if request.HasField("as_of") else None


def _decimal_text(value: Any) -> str:
    return f"{value:.2f}"


class MarketingServicer(CommandServicer[Any], api_grpc.MarketingServiceServicer):
    """gRPC servicer for c360.marketing.v1.MarketingService."""

    def __init__(
        self,
        marketing: Marketing,
        catch_up: CatchUp,
        sales_addr: str = "",
        token: str = "",
        nudge: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(marketing.plans)
        self.token = token
        self.marketing = marketing
        self.catch_up = catch_up
        self.nudge = nudge
        """Tells the profile follower that a segment's version waits for its evaluation (the
        follower may be in a long wait for the timeline's next change)."""
        self.sales_addr = sales_addr
        self._sales: grpc.aio.Channel | None = None

    def sales(self) -> sales_grpc.SalesServiceAsyncStub:
        """The sales service's API (its published contract; never its code)."""
        if not self.sales_addr:
            raise PreconditionFailed(
                "no sales service in this deployment: leads cannot be handed over"
            )
        if self._sales is None:
            self._sales = channels.aio_channel(
                self.sales_addr, self.token, options=[("grpc.enable_http_proxy", 0)]
            )
        return sales_grpc.SalesServiceStub(self._sales)

    async def close(self) -> None:
        if self._sales is not None:
            await self._sales.close(None)
            self._sales = None

    async def command(
        self,
        request: Any,
        context: Ctx,
        reply: Callable[..., R],
        run: Callable[[CommandContext], CommandOutcome],
        *,
        extra: Sequence[str] = (),
        decide_on_loop: bool = False,
    ) -> R:
        """A command on the plans (segments, campaigns): they are on no timeline, so the
        reply carries no consistency token."""
        answer = await super().command(
            request, context, reply, run, extra=extra, decide_on_loop=decide_on_loop
        )
        answer.result.consistency_token = ""  # type: ignore[attr-defined]
        return answer

    # -- segments ------------------------------------------------------------------------------

    def segment_message(self, s: Segment) -> api.Segment:
        progress = self.marketing.progress.get(str(s.id))
        current = progress is not None and progress.version == s.version
        members = self.marketing.people.rows(
            _where(kind="membership", segment_id=str(s.id), member=True)
        )
        return api.Segment(
            segment_id=str(s.id),
            name=s.name,
            description=s.description,
            version=s.version,
            condition=_json(s.condition),
            members=len(members),
            evaluated=progress.evaluated if progress and current else 0,
            profiles=progress.total if progress and current else len(self.marketing.facts),
            defined_at=_ts(s.created_on),
            revised_at=_ts(s.modified_on) if s.version > 1 else None,
        )

    async def DefineSegment(
        self, request: api.DefineSegmentRequest, context: Ctx
    ) -> api.DefineSegmentResponse:
        reply = await self.command(
            request,
            context,
            api.DefineSegmentResponse,
            lambda ctx: self.marketing.define_segment(
                ctx,
                name=request.name,
                description=request.description,
                condition=request.condition,
            ),
            extra=["segment_id"],
        )
        self.nudge()
        return reply

    async def ReviseSegment(
        self, request: api.ReviseSegmentRequest, context: Ctx
    ) -> api.ReviseSegmentResponse:
        # An id, its beginning as lists show it, or the name: as every other segment command
        # takes it (it took a whole id alone: `segment revise lv` was "not a valid id").
        sid = (await blocking(self.marketing.segment, request.segment_id)).id
        version = expected_version(request)
        reply = await self.command(
            request,
            context,
            api.ReviseSegmentResponse,
            lambda ctx: self.marketing.revise_segment(
                ctx, sid, version, request.condition, request.description
            ),
        )
        self.nudge()
        return reply

    async def PreviewSegment(
        self, request: api.PreviewSegmentRequest, context: Ctx
    ) -> api.PreviewSegmentResponse:
        wanted = paging.count(request.sample_size, maximum=100, default=10, field="sample_size")
        size, total, sample = await blocking(self.marketing.preview, request.condition, wanted)
        return api.PreviewSegmentResponse(
            size=size,
            profiles=total,
            sample=[
                api.MemberSample(customer_id=f.customer_id, display_name=f.display_name)
                for f in sample
            ],
        )

    async def GetSegment(
        self, request: api.GetSegmentRequest, context: Ctx
    ) -> api.GetSegmentResponse:
        segment = await blocking(self.marketing.segment, request.segment)
        return api.GetSegmentResponse(segment=await blocking(self.segment_message, segment))

    async def ListSegments(
        self, request: api.ListSegmentsRequest, context: Ctx
    ) -> api.ListSegmentsResponse:
        def listed() -> list[api.Segment]:
            return [self.segment_message(s) for s in self.marketing.segments()]

        return api.ListSegmentsResponse(segments=await blocking(listed))

    async def ListMembers(
        self, request: api.ListMembersRequest, context: Ctx
    ) -> api.ListMembersResponse:
        limit = paging.count(request.limit, maximum=1000, default=100, field="limit")
        segment = await blocking(self.marketing.segment, request.segment)
        members: list[Membership] = await blocking(self.marketing.members, segment, _as_of(request))
        facts = self.marketing.facts
        return api.ListMembersResponse(
            members=[
                api.MemberSample(
                    customer_id=m.customer_id,
                    display_name=facts[m.customer_id].display_name
                    if m.customer_id in facts
                    else "",
                    since=_ts(m.modified_on),
                    condition_path=m.condition_path,
                    condition=m.condition,
                )
                for m in members[:limit]
            ],
            total=len(members),
        )

    async def ExplainMembership(
        self, request: api.ExplainMembershipRequest, context: Ctx
    ) -> api.ExplainMembershipResponse:
        customer_id = str(parse_id("customer_id", request.customer_id))
        segment = await blocking(self.marketing.segment, request.segment)
        found = await blocking(self.marketing.explain, segment, customer_id, _as_of(request))
        return api.ExplainMembershipResponse(
            evaluated=found.evaluated,
            member=found.member,
            since=_ts(found.since),
            condition_path=found.condition_path,
            condition=found.condition,
            cause=found.cause,
            segment_version=found.segment_version,
            conditions=[
                api.ConditionValue(path=p, condition=c, holds=h, actual=a)
                for p, c, h, a in found.conditions
            ],
        )

    # -- campaigns -----------------------------------------------------------------------------

    async def PlanCampaign(
        self, request: api.PlanCampaignRequest, context: Ctx
    ) -> api.PlanCampaignResponse:
        plan = {
            "name": request.name,
            "objective": request.objective,
            "channel": CHANNELS.given(request.channel),
            "starts_on": request.starts_on,
            "ends_on": request.ends_on,
            "budget": request.budget.amount,
            "budget_currency": request.budget.currency,
            "cost_per_send": request.cost_per_send,
            "expected_responses": request.expected_responses,
            "offer": request.offer,
            "frequency_cap": request.frequency_cap,
            "frequency_days": request.frequency_days,
            "trigger": request.trigger.strip(),
            "purpose": request.purpose.strip(),
        }
        return await self.command(
            request,
            context,
            api.PlanCampaignResponse,
            lambda ctx: self.marketing.plan_campaign(ctx, list(request.segments), **plan),
            extra=["campaign_id"],
        )

    async def _change(
        self,
        name: str,
        request: Any,
        context: Ctx,
        act: Callable[[Campaign], None],
        reply: Callable[..., R],
    ) -> R:
        """A state change; the command's name (for idempotency) is the RPC's."""
        cid = parse_id("campaign_id", request.campaign_id)
        version = expected_version(request)
        ctx = command_context(name, request, context)
        outcome = await blocking(self.marketing.change_campaign, ctx, cid, version, act)
        result = command_result(self.app.source, outcome)
        result.consistency_token = ""  # the plans are on no timeline
        return reply(result=result)

    async def ApproveCampaign(
        self, request: api.ApproveCampaignRequest, context: Ctx
    ) -> api.ApproveCampaignResponse:
        return await self._change(
            "Approve",
            request,
            context,
            lambda c: c.approve(request.reason),
            api.ApproveCampaignResponse,
        )

    async def PauseCampaign(
        self, request: api.PauseCampaignRequest, context: Ctx
    ) -> api.PauseCampaignResponse:
        return await self._change(
            "Pause", request, context, lambda c: c.pause(request.reason), api.PauseCampaignResponse
        )

    async def ResumeCampaign(
        self, request: api.ResumeCampaignRequest, context: Ctx
    ) -> api.ResumeCampaignResponse:
        return await self._change(
            "Resume",
            request,
            context,
            lambda c: c.resume(request.reason),
            api.ResumeCampaignResponse,
        )

    async def CompleteCampaign(
        self, request: api.CompleteCampaignRequest, context: Ctx
    ) -> api.CompleteCampaignResponse:
        return await self._change(
            "Complete",
            request,
            context,
            lambda c: c.complete(request.reason),
            api.CompleteCampaignResponse,
        )

    async def CancelCampaign(
        self, request: api.CancelCampaignRequest, context: Ctx
    ) -> api.CancelCampaignResponse:
        return await self._change(
            "Cancel",
            request,
            context,
            lambda c: c.cancel(request.reason),
            api.CancelCampaignResponse,
        )

    async def _send(self, request: Any, context: Ctx, launch: bool, reply: Callable[..., R]) -> R:
        cid = parse_id("campaign_id", request.campaign_id)
        version = expected_version(request)
        ctx = command_context("Launch" if launch else "Send", request, context)
        # Consent as of now: the profile facts brought up to the timeline's latest first.
        await self.catch_up()
        outcome, chosen = await blocking(self.marketing.send, ctx, cid, version, launch)
        result = command_result(self.app.source, outcome)
        # The touches are on the customers' timelines: wait for them with this token.
        head = await blocking(self.marketing.people.head)
        result.consistency_token = str(ConsistencyToken(self.marketing.people.source, head))
        return reply(result=result, round=_round(chosen, outcome))

    async def LaunchCampaign(
        self, request: api.LaunchCampaignRequest, context: Ctx
    ) -> api.LaunchCampaignResponse:
        return await self._send(request, context, True, api.LaunchCampaignResponse)

    async def SendCampaign(
        self, request: api.SendCampaignRequest, context: Ctx
    ) -> api.SendCampaignResponse:
        return await self._send(request, context, False, api.SendCampaignResponse)

    async def RecordCampaignCost(
        self, request: api.RecordCampaignCostRequest, context: Ctx
    ) -> api.RecordCampaignCostResponse:
        cid = parse_id("campaign_id", request.campaign_id)
        version = expected_version(request)
        at = self.marketing.clock()
        return await self.command(
            request,
            context,
            api.RecordCampaignCostResponse,
            lambda ctx: self.marketing.change_campaign(
                ctx,
                cid,
                version,
                lambda c: c.record_cost(request.kind, request.amount, request.note, at),
            ),
        )

    async def GetCampaign(
        self, request: api.GetCampaignRequest, context: Ctx
    ) -> api.GetCampaignResponse:
        cid = parse_id("campaign_id", request.campaign_id)
        campaign = await blocking(self.marketing.campaign, cid)
        return api.GetCampaignResponse(campaign=campaign_message(campaign))

    async def ListCampaigns(
        self, request: api.ListCampaignsRequest, context: Ctx
    ) -> api.ListCampaignsResponse:
        found = await blocking(self.marketing.campaigns)
        return api.ListCampaignsResponse(campaigns=[campaign_message(c) for c in found])

    async def CampaignResults(
        self, request: api.CampaignResultsRequest, context: Ctx
    ) -> api.CampaignResultsResponse:
        cid = parse_id("campaign_id", request.campaign_id)
        campaign = await blocking(self.marketing.campaign, cid)
        total, rows = await blocking(self.marketing.results, campaign, request.by.strip())
        responses, revenue, basis = await blocking(self.marketing.forecast, campaign)
        calls = await blocking(self.marketing.call_outcomes, campaign)
        return api.CampaignResultsResponse(
            calls=sum(calls.values()),
            call_outcomes=dict(calls),
            forecast_responses=round(responses, 2),
            forecast_revenue=_decimal_text(revenue),
            forecast_basis=basis,
            total=_result(total),
            rows=[_result(r) for r in rows],
            currency=campaign.plan["currency"],
            budget=campaign.plan["budget"],
            expected_responses=campaign.plan["expected_responses"],
        )

    # -- lead lists ----------------------------------------------------------------------------

    async def BuildLeadList(
        self, request: api.BuildLeadListRequest, context: Ctx
    ) -> api.BuildLeadListResponse:
        cid = parse_id("campaign_id", request.campaign_id)
        return await self.command(
            request,
            context,
            api.BuildLeadListResponse,
            lambda ctx: self.marketing.build_lead_list(
                ctx, name=request.name, campaign_id=cid, segment=request.segment
            ),
            extra=["lead_list_id"],
        )

    async def DistributeLeadList(
        self, request: api.DistributeLeadListRequest, context: Ctx
    ) -> api.DistributeLeadListResponse:
        lid = parse_id("lead_list_id", request.lead_list_id)
        rule = request.rule.strip() or "round_robin"
        if rule not in DISTRIBUTION_RULES:
            raise InvalidArgument.one("rule", f"must be one of {', '.join(DISTRIBUTION_RULES)}")
        team = request.team.strip()
        if not team:
            raise InvalidArgument.one("team", "is required: the sales team whose agents get them")
        ctx = command_context("DistributeLeadList", request, context)
        lead_list = await blocking(self.marketing.lead_list, lid)
        stub = self.sales()
        leads: dict[str, dict[str, str]] = {}
        passed_over: dict[str, str] = {}
        refused: grpc.aio.AioRpcError | None = None
        for entry in lead_list.pending():
            # Request ids from the list and the customer: a retry hands over nothing twice.
            key = f"lead-list:{lid}:{entry['customer_id']}"
            try:
                contact = self.marketing.contact(entry["customer_id"])
                captured = await stub.CaptureLead(
                    _capture(lead_list, entry, contact, team, key), timeout=10
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in FOR_GOOD:
                    refused = exc
                    break
                # This customer is no one's lead any more (forgotten, merged into another
                # since the list was built): passed over, the others handed on.
                passed_over[entry["customer_id"]] = f"{exc.code().name}: {exc.details()}"[:500]
                continue
            try:
                lead_id = captured.result.aggregate_id
                assigned = await stub.AssignLead(
                    sapi.AssignLeadRequest(
                        request_id=f"{key}:assign",
                        lead_id=lead_id,
                        rule=ASSIGNMENT_RULES.value(rule),
                        team=team,
                    ),
                    timeout=10,
                )
            except grpc.aio.AioRpcError as exc:
                refused = exc
                break
            leads[entry["customer_id"]] = {"lead_id": lead_id, "agent_id": assigned.agent_id}
        outcome = await blocking(
            self.marketing.record_distribution, ctx, lid, team, rule, leads, passed_over
        )
        if refused is not None:
            raise PreconditionFailed(
                f"the sales service refused a lead ({refused.code().name}: {refused.details()});"
                f" {len(leads)} handed over now, the rest on a retry"
            )
        result = command_result(self.app.source, outcome)
        result.consistency_token = ""
        found = await blocking(self.marketing.lead_list, lid)
        return api.DistributeLeadListResponse(
            result=result, lead_list=lead_list_message(found, self.marketing.contact)
        )

    async def GetLeadList(
        self, request: api.GetLeadListRequest, context: Ctx
    ) -> api.GetLeadListResponse:
        lid = parse_id("lead_list_id", request.lead_list_id)
        found = await blocking(self.marketing.lead_list, lid)
        return api.GetLeadListResponse(lead_list=lead_list_message(found, self.marketing.contact))

    # -- call lists ----------------------------------------------------------------------------

    async def BuildCallList(
        self, request: api.BuildCallListRequest, context: Ctx
    ) -> api.BuildCallListResponse:
        cid = parse_id("campaign_id", request.campaign_id)
        await self.catch_up()  # consent as of now
        return await self.command(
            request,
            context,
            api.BuildCallListResponse,
            lambda ctx: self.marketing.build_call_list(
                ctx, name=request.name, campaign_id=cid, agents=list(request.agents)
            ),
            extra=["call_list_id"],
        )

    async def GetOffers(self, request: api.GetOffersRequest, context: Ctx) -> api.GetOffersResponse:
        customer = str(parse_id("customer_id", request.customer_id))
        limit = paging.count(request.limit, maximum=20, default=5, field="limit")
        facts = self.marketing.facts.get(customer)
        if facts is None:
            raise NotFound(f"marketing has no profile of customer {customer} (yet)")
        found = await blocking(offers.offers_for, facts, list(self.marketing.facts.values()), limit)
        return api.GetOffersResponse(
            offers=[
                api.ProductOffer(
                    sku=o.sku,
                    confidence=round(o.confidence, 4),
                    because=o.because,
                    support=o.support,
                    reason=o.reason,
                )
                for o in found
            ],
            reachable_by=offers.reachable(facts),
            no_offer_reason="" if found else offers.why_none(facts),
        )

    async def NextCall(self, request: api.NextCallRequest, context: Ctx) -> api.NextCallResponse:
        lid = parse_id("call_list_id", request.call_list_id)
        await self.catch_up()  # consent as of now
        found, entry, remaining, withdrawn = await blocking(
            self.marketing.next_call, lid, request.agent_id.strip()
        )
        return api.NextCallResponse(
            entry=_call_entry(found, entry, self.marketing.contact) if entry else None,
            remaining=remaining,
            withdrawn=withdrawn,
        )

    async def GetCallList(
        self, request: api.GetCallListRequest, context: Ctx
    ) -> api.GetCallListResponse:
        lid = parse_id("call_list_id", request.call_list_id)
        found = await blocking(self.marketing.call_list, lid)
        return api.GetCallListResponse(
            call_list=api.CallList(
                call_list_id=str(found.id),
                name=found.name,
                campaign_id=found.campaign_id,
                version=found.version,
                entries=[_call_entry(found, e, self.marketing.contact) for e in found.entries],
                calls=len(found.calls),
            )
        )

    async def RecordCall(
        self, request: api.RecordCallRequest, context: Ctx
    ) -> api.RecordCallResponse:
        lid = parse_id("call_list_id", request.call_list_id)
        customer = str(parse_id("customer_id", request.customer_id))
        back = (
            request.call_back_at.ToDatetime(tzinfo=UTC)
            if request.HasField("call_back_at")
            else None
        )
        ctx = command_context("RecordCall", request, context)
        outcome = await blocking(
            self.marketing.record_call,
            ctx,
            lid,
            customer,
            request.agent_id.strip(),
            request.outcome.strip(),
            back,
            request.note,
        )
        result = command_result(self.app.source, outcome)
        result.consistency_token = ""
        lead_id = ""
        if request.outcome.strip() == "interested":
            found = await blocking(self.marketing.call_list, lid)
            entry = found.entry(customer)
            contact = self.marketing.contact(customer)
            capture = sapi.CaptureLeadRequest(
                request_id=f"call-list:{lid}:{customer}",
                channel=sev.LEAD_CHANNEL_CAMPAIGN,
                campaign_id=found.campaign_id,
                source=f"call list {found.name}",
                customer_id=customer,
                person_name=contact.name,
                phone=contact.phone,
                description=request.note,
            )
            try:
                stub = self.sales()
                captured = await stub.CaptureLead(capture, timeout=10)
                lead_id = captured.result.aggregate_id
                await stub.AssignLead(
                    sapi.AssignLeadRequest(
                        request_id=f"call-list:{lid}:{customer}:assign",
                        lead_id=lead_id,
                        agent_id=entry["agent_id"],
                        rule=sev.ASSIGNMENT_RULE_MANUAL,
                    ),
                    timeout=10,
                )
            except grpc.aio.AioRpcError as exc:
                raise PreconditionFailed(
                    f"the call is recorded, but the sales service refused the lead"
                    f" ({exc.code().name}: {exc.details()}); retry with the same request id"
                ) from None
        return api.RecordCallResponse(result=result, lead_id=lead_id)


def _call_entry(
    found: CallList, e: dict[str, str], contact: Callable[[str], Contact]
) -> api.CallEntry:
    state = found.state.get(e["customer_id"], {})
    reached = contact(e["customer_id"])
    return api.CallEntry(
        customer_id=e["customer_id"],
        name=reached.name,
        phone=reached.phone,
        agent_id=e["agent_id"],
        outcome=state.get("outcome", ""),
        call_back_at=_ts(state.get("call_back_at")),
    )


DISTRIBUTION_RULES = ("round_robin", "territory", "capacity")
FOR_GOOD = frozenset({grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION})
"""CaptureLead's refusals of one entry's customer, which no retry changes (forgotten, merged
into another, unknown to the timeline): the entry is passed over, the rest are handed on. Any
other (the request refused, sales unavailable, a deadline, AssignLead's team at capacity)
stops the distribution there, for a retry once it is mended."""
ASSIGNMENT_RULES = Words(sev.AssignmentRule)


def _capture(
    lead_list: LeadList, entry: dict[str, str], contact: Contact, team: str, request_id: str
) -> sapi.CaptureLeadRequest:
    organisation = entry["kind"] == "organisation"
    return sapi.CaptureLeadRequest(
        request_id=request_id,
        channel=sev.LEAD_CHANNEL_CAMPAIGN,
        campaign_id=lead_list.campaign_id,
        source=f"lead list {lead_list.name}",
        customer_id=entry["customer_id"],
        person_name="" if organisation else contact.name,
        company_name=contact.name if organisation else "",
        email=contact.email,
        phone=contact.phone,
        territory=entry["territory"].lower(),
        team=team,
    )


def lead_list_message(x: LeadList, contact: Callable[[str], Contact]) -> api.LeadList:
    return api.LeadList(
        lead_list_id=str(x.id),
        name=x.name,
        campaign_id=x.campaign_id,
        segment_id=x.segment_id,
        version=x.version,
        entries=[
            api.LeadListEntry(
                customer_id=e["customer_id"],
                name=(reached := contact(e["customer_id"])).name,
                email=reached.email,
                phone=reached.phone,
                territory=e["territory"],
                lead_id=x.leads.get(e["customer_id"], {}).get("lead_id", ""),
                agent_id=x.leads.get(e["customer_id"], {}).get("agent_id", ""),
                passed_over=x.passed_over.get(e["customer_id"], ""),
            )
            for e in x.entries
        ],
    )


def _where(**equal: Any) -> RowQuery:
    return RowQuery(where(**{k: (UUID(v) if k == "customer_id" else v) for k, v in equal.items()}))


def _json(tree: Any) -> str:
    return json.dumps(tree, ensure_ascii=False)


def _round(chosen: Audience, outcome: Any) -> api.SendRound:
    return api.SendRound(
        audience=chosen.size,
        sent=len(chosen.sends),
        exclusions=[api.Exclusion(reason=k, count=v) for k, v in chosen.exclusions.items()],
    )


def _result(r: ResultRow) -> api.ResultRow:
    responded, converted, sent = r.counts["responded"], r.counts["converted"], r.counts["sent"]
    return api.ResultRow(
        key=r.key,
        **r.counts,
        revenue=_decimal_text(r.revenue),
        cost=_decimal_text(r.cost),
        cost_per_response=_decimal_text(r.cost / responded) if responded else "",
        cost_per_conversion=_decimal_text(r.cost / converted) if converted else "",
        conversion_rate=f"{converted / sent:.4f}" if sent else "",
        roi=f"{(r.revenue - r.cost) / r.cost:.2f}" if r.cost else "",
    )


def campaign_message(c: Campaign) -> api.Campaign:
    p = c.plan
    return api.Campaign(
        campaign_id=str(c.id),
        version=c.version,
        name=p["name"],
        objective=p["objective"],
        channel=CHANNELS.value(p["channel"]),
        segment_ids=p["segment_ids"],
        starts_on=p["starts_on"],
        ends_on=p["ends_on"],
        budget=api.Money(amount=p["budget"], currency=p["currency"]),
        cost_per_send=p["cost_per_send"],
        expected_responses=p["expected_responses"],
        offer=p["offer"],
        frequency_cap=p["frequency_cap"],
        frequency_days=p["frequency_days"],
        state=c.state,
        state_reason=getattr(c, "state_reason", ""),  # "" in a snapshot from before it
        costs=[
            api.CampaignCost(kind=x["kind"], amount=x["amount"], note=x["note"], at=_ts(x["at"]))
            for x in c.costs
        ],
        rounds=[
            api.SendRound(
                at=_ts(r["at"]),
                audience=r["audience"],
                sent=r["sent"],
                exclusions=[api.Exclusion(reason=k, count=v) for k, v in r["exclusions"].items()],
            )
            for r in c.rounds
        ],
        actual_cost=_decimal_text(c.actual_cost),
        sent=c.sent,
        trigger=p.get("trigger", ""),
        purpose=p.get("purpose", "marketing"),
    )


def servicer_registration(servicer: MarketingServicer) -> tuple[str, Any, Any]:
    """The marketing API on a host: `host.add(*servicer_registration(servicer))`."""
    return registration(
        servicer,
        api_grpc.add_MarketingServiceServicer_to_server,
        api.DESCRIPTOR.services_by_name["MarketingService"],
    )
