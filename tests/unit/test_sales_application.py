"""The sales application and API in memory: leads from capture to conversion (with a fake of
our own customer-registry port), assignment rules, opportunities, quotes priced from a price
list, orders and ERP deliveries, the pipeline and forecast as of a past time; bad input,
illegal transitions, idempotent replay and nothing stored on a refusal."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID, uuid4

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from c360.erp.v1 import erp_events_pb2 as erp
from c360.events.v1 import sales_activity_events_pb2 as aev
from c360.events.v1 import sales_events_pb2 as lev
from c360.events.v1 import sales_opportunity_events_pb2 as oev
from c360.events.v1 import sales_order_events_pb2 as ordev
from c360.events.v1 import sales_pipeline_events_pb2 as pev
from c360.events.v1 import sales_price_list_events_pb2 as prev
from c360.events.v1 import sales_quote_events_pb2 as qev
from c360.events.v1 import sales_team_events_pb2 as tev
from c360.sales.v1 import sales_service_pb2 as sapi
from c360_platform.errors import InvalidArgument, NotFound, PreconditionFailed, VersionConflict
from c360_platform.store import CommandContext
from c360_sales.api import SalesServicer
from c360_sales.application import SalesApplication
from c360_sales.contract import CONTRACT
from c360_sales.customers import NewCustomer
from c360_sales.domain import named_id
from c360_sales.erp_orders import ErpOrderFollower

from .support import CALL, Clock, bad_fields, outcome_lookups, refused


class FakeCustomers:
    """Our own port, faked: remembers registrations by request id (as the service does)."""

    def __init__(self) -> None:
        self.registered: dict[str, tuple[str, NewCustomer]] = {}
        self.links: dict[str, tuple[str, str, str]] = {}

    async def register(self, customer: NewCustomer) -> str:
        found = self.registered.get(customer.request_id)
        if found is None:
            found = (str(uuid4()), customer)
            self.registered[customer.request_id] = found
        return found[0]

    async def link_contact(
        self, request_id: str, organisation_id: str, person_id: str, role: str
    ) -> None:
        self.links.setdefault(request_id, (organisation_id, person_id, role))


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))


@pytest.fixture
def customers() -> FakeCustomers:
    return FakeCustomers()


@pytest.fixture
def sales(clock: Clock, customers: FakeCustomers) -> SalesServicer:
    return SalesServicer(SalesApplication.in_memory(clock=clock), customers)


STAGES = [
    pev.PipelineStage(key="qualification", name="Qualification", probability=10),
    pev.PipelineStage(key="proposal", name="Proposal", probability=40),
    pev.PipelineStage(key="negotiation", name="Negotiation", probability=70),
    pev.PipelineStage(key="won", name="Won", won=True),
    pev.PipelineStage(key="lost", name="Lost", lost=True),
]


async def setup_catalogue(sales: SalesServicer) -> None:
    await sales.DefinePipeline(sapi.DefinePipelineRequest(name="default", stages=STAGES), CALL)
    for sku, category, price, cost in (
        ("ROUTER-X", "hardware", "200.00", "120.00"),
        ("SUPPORT-Y", "services", "50.00", "20.00"),
    ):
        await sales.DefineProduct(
            sapi.DefineProductRequest(
                sku=sku,
                name=sku.title(),
                category=category,
                list_price=lev.SalesMoney(currency="EUR", amount=price),
                cost=cost,
            ),
            CALL,
        )
    await sales.DefinePriceList(
        sapi.DefinePriceListRequest(
            name="standard",
            currency="EUR",
            rules=[
                prev.PriceRule(
                    rule_id="hw-10",
                    scope=prev.PRICE_SCOPE_CATEGORY,
                    target="hardware",
                    computation=prev.PRICE_COMPUTATION_FORMULA,
                    base=prev.PRICE_BASE_LIST_PRICE,
                    discount_percent="10",
                    rounding="1",
                    surcharge="0.5",
                ),
            ],
        ),
        CALL,
    )


def phone_lead(**extra: Any) -> sapi.CaptureLeadRequest:
    fields: dict[str, Any] = {
        "channel": lev.LEAD_CHANNEL_PHONE,
        "person_name": "Anna Berg",
        "company_name": "Berg Logistics",
        "email": "anna@berg.example",
        "phone": "+41 44 123 45 67",
        "position": "Head of Purchasing",
        "industry": "Logistics",
        "territory": "CH-North",
        "interest_products": ["ROUTER-X"],
        "estimated_value": lev.SalesMoney(currency="EUR", amount="5000"),
    }
    fields.update(extra)
    return sapi.CaptureLeadRequest(**fields)


async def captured(sales: SalesServicer, **extra: Any) -> str:
    return str((await sales.CaptureLead(phone_lead(**extra), CALL)).result.aggregate_id)


def stored(sales: SalesServicer) -> int:
    return sales.app.head()


async def test_a_phone_lead_is_assigned_qualified_and_converted_into_a_new_customer(
    sales: SalesServicer, customers: FakeCustomers
) -> None:
    await setup_catalogue(sales)
    lead_id = await captured(sales)
    lead = (await sales.GetLead(sapi.GetLeadRequest(lead_id=lead_id), CALL)).lead
    assert (lead.state, lead.territory, lead.industry) == (
        lev.LEAD_STATE_NEW,
        "ch-north",
        "logistics",
    )
    assert lead.phone == "+41441234567"
    await sales.AssignLead(sapi.AssignLeadRequest(lead_id=lead_id, agent_id="emp-7"), CALL)
    await sales.QualifyLead(sapi.QualifyLeadRequest(lead_id=lead_id, note="budget ok"), CALL)
    request = sapi.ConvertLeadRequest(
        request_id="conv-1", lead_id=lead_id, register_customer=True, pipeline_id="default"
    )
    reply = await sales.ConvertLead(request, CALL)
    again = await sales.ConvertLead(request, CALL)
    assert again.result.replayed
    assert again.opportunity_id == reply.opportunity_id
    assert again.customer_id == reply.customer_id
    assert reply.customer_registered
    # The company and its contact, the person, linked in the lead's position (as qualifying
    # a lead makes an account and its contact); the e-mail and phone are the person's.
    (customer_id, new), (contact_id, person) = customers.registered.values()
    assert reply.customer_id == customer_id
    assert (new.display_name, new.organisation, new.owner_id) == ("Berg Logistics", True, "emp-7")
    assert (new.emails, new.phones) == ((), ())
    assert new.acquisition_channel == "phone"
    assert (person.display_name, person.organisation, person.owner_id) == (
        "Anna Berg",
        False,
        "emp-7",
    )
    assert (person.emails, person.phones) == (("anna@berg.example",), ("+41441234567",))
    assert list(customers.links.values()) == [(customer_id, contact_id, "Head of Purchasing")]
    assert reply.contact_person_id == again.contact_person_id == contact_id
    converted = CONTRACT.publication(list(sales.app.events.get(UUID(lead_id)))[-1]).payload
    assert isinstance(converted, lev.LeadConverted)
    assert (converted.customer_id, converted.contact_person_id) == (customer_id, contact_id)
    o = (
        await sales.GetOpportunity(
            sapi.GetOpportunityRequest(opportunity_id=reply.opportunity_id), CALL
        )
    ).opportunity
    assert (o.customer_id, o.stage, o.probability, o.owner_id) == (
        customer_id,
        "qualification",
        10,
        "emp-7",
    )
    assert (o.amount.amount, o.weighted_amount, o.lead_id) == ("5000.00", "500.00", lead_id)
    lead = (await sales.GetLead(sapi.GetLeadRequest(lead_id=lead_id), CALL)).lead
    assert (lead.state, lead.customer_id) == (lev.LEAD_STATE_CONVERTED, customer_id)


async def test_an_opportunity_converted_from_a_campaigns_lead_keeps_the_campaign(
    sales: SalesServicer,
) -> None:
    await setup_catalogue(sales)
    campaign = str(uuid4())
    lead_id = await captured(sales, channel=lev.LEAD_CHANNEL_CAMPAIGN, campaign_id=campaign)
    await sales.QualifyLead(sapi.QualifyLeadRequest(lead_id=lead_id), CALL)
    reply = await sales.ConvertLead(
        sapi.ConvertLeadRequest(lead_id=lead_id, customer_id=str(uuid4()), pipeline_id="default"),
        CALL,
    )
    o = (
        await sales.GetOpportunity(
            sapi.GetOpportunityRequest(opportunity_id=reply.opportunity_id), CALL
        )
    ).opportunity
    assert (o.lead_id, o.campaign_id) == (lead_id, campaign)
    published = [
        CONTRACT.publication(e).payload for e in sales.app.events.get(UUID(reply.opportunity_id))
    ]
    assert isinstance(published[0], oev.OpportunityOpened)
    assert published[0].campaign_id == campaign


async def test_a_lead_captured_again_with_its_request_id_replays_the_first_answer(
    sales: SalesServicer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CaptureLead decides from its input alone: no look for its request id first; a retry
    is told when its append meets the recorded id, and answered as the first time."""
    looked_up = outcome_lookups(monkeypatch, sales.app)
    first = await sales.CaptureLead(phone_lead(request_id="lead-1"), CALL)
    assert looked_up == []
    head = stored(sales)
    again = await sales.CaptureLead(phone_lead(request_id="lead-1"), CALL)
    assert looked_up == ["lead-1"]
    assert (again.result.aggregate_id, again.result.replayed) == (first.result.aggregate_id, True)
    assert again.result.consistency_token == first.result.consistency_token
    assert stored(sales) == head


async def test_a_lead_of_a_customer_converts_for_that_customer_without_naming_it_again(
    sales: SalesServicer, customers: FakeCustomers
) -> None:
    """A lead a campaign's lead list handed over names its customer: `lead convert` of it was
    refused ("customer_id: is required") unless the customer was named again."""
    await setup_catalogue(sales)
    customer = str(uuid4())
    lead_id = await captured(sales, customer_id=customer)
    await sales.QualifyLead(sapi.QualifyLeadRequest(lead_id=lead_id), CALL)
    reply = await sales.ConvertLead(
        sapi.ConvertLeadRequest(lead_id=lead_id, pipeline_id="default"), CALL
    )
    assert reply.customer_id == customer
    assert customers.registered == {}  # nobody registered
    lead = (await sales.GetLead(sapi.GetLeadRequest(lead_id=lead_id), CALL)).lead
    assert (lead.state, lead.customer_id) == (lev.LEAD_STATE_CONVERTED, customer)
    prospect = await captured(sales, request_id="prospect")
    await sales.QualifyLead(sapi.QualifyLeadRequest(lead_id=prospect), CALL)
    assert await bad_fields(
        sales.ConvertLead(sapi.ConvertLeadRequest(lead_id=prospect, pipeline_id="default"), CALL)
    ) == ["customer_id"]


async def test_lead_state_machine_refuses_illegal_transitions_and_stores_nothing(
    sales: SalesServicer,
) -> None:
    await setup_catalogue(sales)
    lead_id = await captured(sales)
    before = stored(sales)
    error = await refused(
        sales.ConvertLead(
            sapi.ConvertLeadRequest(
                lead_id=lead_id, customer_id=str(uuid4()), pipeline_id="default"
            ),
            CALL,
        ),
        PreconditionFailed,
    )
    assert "is new: cannot convert it (only when qualified)" in str(error)
    await refused(
        sales.ReopenLead(sapi.ReopenLeadRequest(lead_id=lead_id), CALL), PreconditionFailed
    )
    assert stored(sales) == before
    await sales.DisqualifyLead(
        sapi.DisqualifyLeadRequest(
            lead_id=lead_id, reason=lev.DISQUALIFY_REASON_LOST_TO_COMPETITOR, competitor="Acme"
        ),
        CALL,
    )
    error = await refused(sales.QualifyLead(sapi.QualifyLeadRequest(lead_id=lead_id), CALL))
    assert "is disqualified" in str(error)
    await sales.ReopenLead(sapi.ReopenLeadRequest(lead_id=lead_id, reason="called back"), CALL)
    lead = (await sales.GetLead(sapi.GetLeadRequest(lead_id=lead_id), CALL)).lead
    assert lead.state == lev.LEAD_STATE_NEW
    assert await bad_fields(
        sales.DisqualifyLead(sapi.DisqualifyLeadRequest(lead_id=lead_id), CALL)
    ) == ["reason"]
    with pytest.raises(VersionConflict):
        await sales.QualifyLead(sapi.QualifyLeadRequest(lead_id=lead_id, expected_version=1), CALL)


async def test_capture_names_every_bad_field(sales: SalesServicer) -> None:
    before = stored(sales)
    fields = await bad_fields(
        sales.CaptureLead(
            sapi.CaptureLeadRequest(
                channel=lev.LEAD_CHANNEL_CAMPAIGN,
                email="not-an-address",
                estimated_value=lev.SalesMoney(currency="XYZ", amount="-5"),
            ),
            CALL,
        )
    )
    assert fields == [
        "campaign_id",
        "email",
        "estimated_value.amount",
        "estimated_value.currency",
        "person_name",
    ]
    assert await bad_fields(sales.CaptureLead(sapi.CaptureLeadRequest(person_name="x"), CALL)) == [
        "channel"
    ]
    assert stored(sales) == before
    campaign = str(uuid4())
    lead_id = await captured(sales, channel=lev.LEAD_CHANNEL_CAMPAIGN, campaign_id=campaign)
    page = await sales.ListLeads(sapi.ListLeadsRequest(campaign_id=campaign), CALL)
    assert [lead.lead_id for lead in page.leads] == [lead_id]


async def test_a_leads_local_number_is_read_in_the_requests_region_else_the_services(
    sales: SalesServicer,
) -> None:
    """CaptureLead refused "089 1234567" telling the caller to name default_region, a field
    it did not have."""
    for region, service_region, number, phone in [
        ("DE", "", "089 1234567", "+49891234567"),
        ("", "CH", "044 123 45 67", "+41441234567"),
    ]:
        sales.app.default_region = service_region
        lead_id = await captured(sales, phone=number, default_region=region)
        reply = await sales.GetLead(sapi.GetLeadRequest(lead_id=lead_id), CALL)
        assert reply.lead.phone == phone
    sales.app.default_region = ""
    assert await bad_fields(sales.CaptureLead(phone_lead(phone="089 1234567"), CALL)) == ["phone"]


async def test_a_page_token_of_leads_continues_only_the_list_it_came_from(
    sales: SalesServicer,
) -> None:
    for channel in [lev.LEAD_CHANNEL_PHONE] * 2 + [lev.LEAD_CHANNEL_EMAIL] * 2:
        await captured(sales, channel=channel)
    phone = sapi.ListLeadsRequest(channel=lev.LEAD_CHANNEL_PHONE, page_size=1)
    first = await sales.ListLeads(phone, CALL)
    phone.page_token = first.next_page_token
    second = await sales.ListLeads(phone, CALL)
    assert [lead.channel for lead in [*first.leads, *second.leads]] == [lev.LEAD_CHANNEL_PHONE] * 2
    email = sapi.ListLeadsRequest(channel=lev.LEAD_CHANNEL_EMAIL, page_token=first.next_page_token)
    assert await bad_fields(sales.ListLeads(email, CALL)) == ["page_token"]


async def test_leads_are_assigned_round_robin_by_territory_and_by_capacity(
    sales: SalesServicer,
) -> None:
    members = [
        tev.TeamMember(agent_id="emp-1", territories=["ch-north"], capacity=1),
        tev.TeamMember(agent_id="emp-2", territories=["ch-south"], capacity=5),
        tev.TeamMember(agent_id="emp-3", territories=["ch-north"], capacity=5),
    ]
    await sales.DefineSalesTeam(sapi.DefineSalesTeamRequest(name="north", members=members), CALL)

    async def assign(rule: Any, **lead: Any) -> str:
        lead_id = await captured(sales, team="north", **lead)
        reply = await sales.AssignLead(sapi.AssignLeadRequest(lead_id=lead_id, rule=rule), CALL)
        return reply.agent_id

    rr = lev.ASSIGNMENT_RULE_ROUND_ROBIN
    assert [await assign(rr) for _ in range(4)] == ["emp-1", "emp-2", "emp-3", "emp-1"]
    by_territory = lev.ASSIGNMENT_RULE_TERRITORY
    assert [await assign(by_territory, territory="CH-North") for _ in range(2)] == [
        "emp-3",
        "emp-1",
    ]
    error = await refused(
        sales.AssignLead(
            sapi.AssignLeadRequest(
                lead_id=await captured(sales, team="north", territory="at"), rule=by_territory
            ),
            CALL,
        ),
        PreconditionFailed,
    )
    assert "covers territory at" in str(error)
    # emp-1 holds 3 open leads (capacity 1): full; emp-2 holds 1, emp-3 holds 2 of 5.
    assert await assign(lev.ASSIGNMENT_RULE_CAPACITY) == "emp-2"
    lead_id = await captured(sales)
    await refused(
        sales.AssignLead(sapi.AssignLeadRequest(lead_id=lead_id, rule=rr), CALL)
    )  # no team on the lead and none given
    await refused(
        sales.AssignLead(sapi.AssignLeadRequest(lead_id=lead_id, rule=rr, team="south"), CALL),
        NotFound,
    )


async def open_deal(sales: SalesServicer, customer_id: str, amount: str = "10000") -> str:
    reply = await sales.OpenOpportunity(
        sapi.OpenOpportunityRequest(
            customer_id=customer_id,
            name="Routers for Berg",
            pipeline="default",
            owner_id="emp-7",
            amount=lev.SalesMoney(currency="EUR", amount=amount),
            expected_close="2026-04-15",
        ),
        CALL,
    )
    return str(reply.result.aggregate_id)


def ts(at: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at)
    return out


async def test_opportunity_moves_wins_and_the_pipeline_as_of_before_the_win_shows_it_open(
    sales: SalesServicer, clock: Clock
) -> None:
    await setup_catalogue(sales)
    oid = await open_deal(sales, str(uuid4()))
    await sales.MoveOpportunityStage(
        sapi.MoveOpportunityStageRequest(opportunity_id=oid, stage="proposal"), CALL
    )
    o = (
        await sales.GetOpportunity(sapi.GetOpportunityRequest(opportunity_id=oid), CALL)
    ).opportunity
    assert (o.stage, o.probability, o.manual_probability) == ("proposal", 40, False)
    await sales.UpdateOpportunity(
        sapi.UpdateOpportunityRequest(
            opportunity_id=oid, probability=55, forecast_category=oev.FORECAST_CATEGORY_COMMIT
        ),
        CALL,
    )
    await sales.MoveOpportunityStage(
        sapi.MoveOpportunityStageRequest(opportunity_id=oid, stage="negotiation"), CALL
    )
    o = (
        await sales.GetOpportunity(sapi.GetOpportunityRequest(opportunity_id=oid), CALL)
    ).opportunity
    assert (o.probability, o.manual_probability) == (55, True)  # a manual probability stays
    pipeline = await sales.GetPipeline(sapi.GetPipelineRequest(), CALL)
    assert [(r.stage, r.count, r.amount, r.weighted_amount) for r in pipeline.rows] == [
        ("negotiation", 1, "10000.00", "5500.00")
    ]
    forecast = await sales.GetForecast(sapi.GetForecastRequest(period="quarter"), CALL)
    assert [(r.period, r.forecast_category, r.weighted_amount) for r in forecast.rows] == [
        ("2026-Q2", oev.FORECAST_CATEGORY_COMMIT, "5500.00")
    ]
    await asyncio.sleep(0.01)
    before_win = datetime.now(UTC)
    await asyncio.sleep(0.01)
    clock.advance(days=10)
    error = await refused(
        sales.MoveOpportunityStage(
            sapi.MoveOpportunityStageRequest(opportunity_id=oid, stage="won"), CALL
        ),
        PreconditionFailed,
    )
    assert "win or lose it instead" in str(error)
    await sales.WinOpportunity(
        sapi.WinOpportunityRequest(opportunity_id=oid, actual_amount="9500"), CALL
    )
    o = (
        await sales.GetOpportunity(sapi.GetOpportunityRequest(opportunity_id=oid), CALL)
    ).opportunity
    assert (o.state, o.stage, o.forecast_category, o.actual_amount.amount) == (
        oev.OPPORTUNITY_STATE_WON,
        "won",
        oev.FORECAST_CATEGORY_WON,
        "9500.00",
    )
    assert [v.stage for v in o.stage_history] == ["qualification", "proposal", "negotiation", "won"]
    assert o.stage_history[2].seconds == 10 * 24 * 3600
    assert (await sales.GetPipeline(sapi.GetPipelineRequest(), CALL)).rows == []
    then = await sales.GetPipeline(sapi.GetPipelineRequest(as_of=ts(before_win)), CALL)
    assert [(r.stage, r.count, r.weighted_amount) for r in then.rows] == [
        ("negotiation", 1, "5500.00")
    ]
    won = await sales.GetForecast(sapi.GetForecastRequest(), CALL)
    assert [(r.period, r.won_amount) for r in won.rows] == [("2026-03", "9500.00")]
    error = await refused(
        sales.LoseOpportunity(sapi.LoseOpportunityRequest(opportunity_id=oid, reason="x"), CALL)
    )
    assert "is won: cannot lose it" in str(error)
    await sales.ReopenOpportunity(sapi.ReopenOpportunityRequest(opportunity_id=oid), CALL)
    o = (
        await sales.GetOpportunity(sapi.GetOpportunityRequest(opportunity_id=oid), CALL)
    ).opportunity
    assert (o.state, o.stage, o.probability) == (oev.OPPORTUNITY_STATE_OPEN, "qualification", 10)


async def test_quote_lines_are_priced_once_and_an_accepted_quote_orders_and_erp_fulfils(
    sales: SalesServicer, clock: Clock
) -> None:
    await setup_catalogue(sales)
    customer = str(uuid4())
    oid = await open_deal(sales, customer)
    qid = (
        await sales.DraftQuote(
            sapi.DraftQuoteRequest(
                opportunity_id=oid, price_list="standard", valid_until="2026-03-31"
            ),
            CALL,
        )
    ).result.aggregate_id
    line = await sales.AddQuoteLine(
        sapi.AddQuoteLineRequest(quote_id=qid, product="ROUTER-X", quantity="3", tax_rate="8.1"),
        CALL,
    )
    await sales.AddQuoteLine(
        sapi.AddQuoteLineRequest(quote_id=qid, product="SUPPORT-Y", quantity="2"), CALL
    )
    assert line.line_id == "l1"
    # The list changes after the line was added: the line keeps its price.
    await sales.DefinePriceList(sapi.DefinePriceListRequest(name="standard", currency="EUR"), CALL)
    q = (await sales.GetQuote(sapi.GetQuoteRequest(quote_id=qid), CALL)).quote
    router, support = q.lines
    # 200 - 10% = 180, rounded to 1 = 180, + 0.50 = 180.50
    assert (router.unit_price, router.rule_id, router.net_amount) == ("180.50", "hw-10", "541.50")
    assert (support.unit_price, support.rule_id) == ("50.00", "")
    assert (q.net_total.amount, q.tax_total.amount, q.gross_total.amount) == (
        "641.50",
        "43.86",
        "685.36",
    )
    assert await bad_fields(
        sales.AddQuoteLine(
            sapi.AddQuoteLineRequest(quote_id=qid, product="ROUTER-X", quantity="-1"), CALL
        )
    ) == ["quantity"]
    await refused(
        sales.AcceptQuote(sapi.AcceptQuoteRequest(quote_id=qid), CALL), PreconditionFailed
    )
    await sales.SendQuote(sapi.SendQuoteRequest(quote_id=qid), CALL)
    error = await refused(
        sales.AddQuoteLine(
            sapi.AddQuoteLineRequest(quote_id=qid, product="ROUTER-X", quantity="1"), CALL
        )
    )
    assert f"quote {qid} is sent: cannot add a line" in str(error)
    accepted = await sales.AcceptQuote(
        sapi.AcceptQuoteRequest(quote_id=qid, request_id="acc"), CALL
    )
    assert (
        await sales.AcceptQuote(sapi.AcceptQuoteRequest(quote_id=qid, request_id="acc"), CALL)
    ).order_id == accepted.order_id
    order = (await sales.GetOrder(sapi.GetOrderRequest(order_id=accepted.order_id), CALL)).order
    assert (order.state, order.gross_total.amount, len(order.lines)) == (
        ordev.ORDER_STATE_PENDING,
        "685.36",
        2,
    )
    assert order.order_number.startswith("SO-2026-")
    app = sales.app
    first = str(uuid4())
    ctx = CommandContext(command="RecordFulfilment", request_id=f"erp:{first}")
    app.record_fulfilment(
        ctx,
        UUID(order.order_id),
        erp_event_id=first,
        delivered={"l1": "2"},
        reference="DN-1",
        on=clock().date(),
    )
    assert app.get_order(UUID(order.order_id)).state == "pending"
    second = str(uuid4())
    app.record_fulfilment(
        CommandContext(command="RecordFulfilment", request_id=f"erp:{second}"),
        UUID(order.order_id),
        erp_event_id=second,
        delivered={"l1": "1", "l2": "2"},
        reference="DN-2",
        on=clock().date(),
    )
    done = app.get_order(UUID(order.order_id))
    assert done.state == "fulfilled"
    assert [line["fulfilled_quantity"] for line in done.lines] == ["3", "2"]
    error = await refused(
        sales.UnrealiseOrder(sapi.UnrealiseOrderRequest(order_id=order.order_id, reason="x"), CALL)
    )
    assert "is fulfilled" in str(error)


async def test_a_deal_won_or_lost_on_an_earlier_day_counts_in_that_days_period(
    sales: SalesServicer, clock: Clock
) -> None:
    await setup_catalogue(sales)
    won, lost = await open_deal(sales, str(uuid4()), "700"), await open_deal(sales, str(uuid4()))
    before = stored(sales)
    assert await bad_fields(
        sales.WinOpportunity(
            sapi.WinOpportunityRequest(opportunity_id=won, closed_on="2026-03-04"), CALL
        )
    ) == ["closed_on"]  # today is 2026-03-02
    assert await bad_fields(
        sales.LoseOpportunity(
            sapi.LoseOpportunityRequest(opportunity_id=lost, reason="x", closed_on="2026-3-1"),
            CALL,
        )
    ) == ["closed_on"]
    assert stored(sales) == before
    await sales.WinOpportunity(
        sapi.WinOpportunityRequest(opportunity_id=won, closed_on="2025-12-31"), CALL
    )
    clock.advance(hours=11)  # 20:00 UTC: 2026-03-03 already in Kiritimati (UTC+14)
    await sales.LoseOpportunity(
        sapi.LoseOpportunityRequest(opportunity_id=lost, reason="x", closed_on="2026-03-03"),
        CALL,
    )
    o = (
        await sales.GetOpportunity(sapi.GetOpportunityRequest(opportunity_id=won), CALL)
    ).opportunity
    assert (o.closed_on, o.state) == ("2025-12-31", oev.OPPORTUNITY_STATE_WON)
    o = (
        await sales.GetOpportunity(sapi.GetOpportunityRequest(opportunity_id=lost), CALL)
    ).opportunity
    assert o.closed_on == "2026-03-03"
    forecast = await sales.GetForecast(sapi.GetForecastRequest(period="quarter"), CALL)
    assert [(r.period, r.forecast_category, r.won_amount) for r in forecast.rows] == [
        ("2025-Q4", oev.FORECAST_CATEGORY_WON, "700.00")
    ]


async def test_an_opportunity_on_hold_stays_open_until_resumed_or_closed(
    sales: SalesServicer,
) -> None:
    await setup_catalogue(sales)
    oid = await open_deal(sales, str(uuid4()))

    async def shown() -> Any:
        reply = await sales.GetOpportunity(sapi.GetOpportunityRequest(opportunity_id=oid), CALL)
        return reply.opportunity

    before = stored(sales)
    assert await bad_fields(
        sales.HoldOpportunity(sapi.HoldOpportunityRequest(opportunity_id=oid), CALL)
    ) == ["reason"]
    error = await refused(
        sales.ResumeOpportunity(sapi.ResumeOpportunityRequest(opportunity_id=oid), CALL)
    )
    assert isinstance(error, PreconditionFailed)
    assert "is in progress: cannot resume it (only when on hold)" in str(error)
    assert stored(sales) == before
    await sales.HoldOpportunity(
        sapi.HoldOpportunityRequest(opportunity_id=oid, reason="budget in January"), CALL
    )
    o = await shown()
    assert (o.state, o.on_hold, o.hold_reason) == (
        oev.OPPORTUNITY_STATE_OPEN,
        True,
        "budget in January",
    )
    error = await refused(
        sales.HoldOpportunity(sapi.HoldOpportunityRequest(opportunity_id=oid, reason="x"), CALL)
    )
    assert "is on hold already (budget in January): resume it first" in str(error)
    pipeline = await sales.GetPipeline(sapi.GetPipelineRequest(), CALL)
    assert [r.count for r in pipeline.rows] == [1]  # still in the pipeline
    await sales.ResumeOpportunity(sapi.ResumeOpportunityRequest(opportunity_id=oid), CALL)
    assert ((await shown()).on_hold, (await shown()).hold_reason) == (False, "")
    await sales.HoldOpportunity(
        sapi.HoldOpportunityRequest(opportunity_id=oid, reason="again"), CALL
    )
    await sales.WinOpportunity(sapi.WinOpportunityRequest(opportunity_id=oid), CALL)
    o = await shown()
    assert (o.state, o.on_hold) == (oev.OPPORTUNITY_STATE_WON, False)
    error = await refused(
        sales.HoldOpportunity(sapi.HoldOpportunityRequest(opportunity_id=oid, reason="x"), CALL)
    )
    assert "is won: cannot put it on hold (only when open)" in str(error)


async def test_a_lost_opportunity_is_canceled_or_out_sold(sales: SalesServicer) -> None:
    await setup_catalogue(sales)
    deals = [await open_deal(sales, str(uuid4())) for _ in range(3)]
    before = stored(sales)
    assert await bad_fields(
        sales.LoseOpportunity(
            sapi.LoseOpportunityRequest(
                opportunity_id=deals[0], reason="price", status=cast(Any, 9)
            ),
            CALL,
        )
    ) == ["status"]
    assert stored(sales) == before
    for oid, competitor, status in (
        (deals[0], "Acme", oev.LOST_STATUS_UNSPECIFIED),
        (deals[1], "", oev.LOST_STATUS_UNSPECIFIED),
        (deals[2], "Acme", oev.LOST_STATUS_CANCELED),
    ):
        await sales.LoseOpportunity(
            sapi.LoseOpportunityRequest(
                opportunity_id=oid, reason="price", competitor=competitor, status=status
            ),
            CALL,
        )
    shown = [
        (
            await sales.GetOpportunity(sapi.GetOpportunityRequest(opportunity_id=oid), CALL)
        ).opportunity.lost_status
        for oid in deals
    ]
    assert shown == [oev.LOST_STATUS_OUT_SOLD, oev.LOST_STATUS_CANCELED, oev.LOST_STATUS_CANCELED]
    lost = CONTRACT.publication(list(sales.app.events.get(UUID(deals[0])))[-1]).payload
    assert isinstance(lost, oev.OpportunityLost)
    assert lost.status == oev.LOST_STATUS_OUT_SOLD
    await sales.ReopenOpportunity(sapi.ReopenOpportunityRequest(opportunity_id=deals[0]), CALL)
    o = (
        await sales.GetOpportunity(sapi.GetOpportunityRequest(opportunity_id=deals[0]), CALL)
    ).opportunity
    assert (o.lost_status, o.lost_reason) == (oev.LOST_STATUS_UNSPECIFIED, "")


async def test_deal_amounts_finer_than_the_currencys_cents_are_refused(
    sales: SalesServicer,
) -> None:
    await setup_catalogue(sales)
    before = stored(sales)
    assert await bad_fields(
        sales.OpenOpportunity(
            sapi.OpenOpportunityRequest(
                customer_id=str(uuid4()),
                name="Routers",
                pipeline="default",
                amount=lev.SalesMoney(currency="EUR", amount="1000.005"),
            ),
            CALL,
        )
    ) == ["amount.amount"]
    oid = await open_deal(sales, str(uuid4()), "1000.50")
    assert await bad_fields(
        sales.WinOpportunity(
            sapi.WinOpportunityRequest(opportunity_id=oid, actual_amount="990.125"), CALL
        )
    ) == ["actual_amount"]
    assert stored(sales) == before + 1
    await sales.WinOpportunity(
        sapi.WinOpportunityRequest(opportunity_id=oid, actual_amount="990.10"), CALL
    )


async def test_a_deal_closed_in_a_pipeline_without_closing_stages_ends_its_cycle_then(
    sales: SalesServicer, clock: Clock
) -> None:
    await sales.DefinePipeline(
        sapi.DefinePipelineRequest(
            name="simple", stages=[pev.PipelineStage(key="talks", probability=50)]
        ),
        CALL,
    )
    oid = (
        await sales.OpenOpportunity(
            sapi.OpenOpportunityRequest(
                customer_id=str(uuid4()),
                name="Deal",
                pipeline="simple",
                owner_id="emp-7",
                amount=lev.SalesMoney(currency="EUR", amount="100"),
            ),
            CALL,
        )
    ).result.aggregate_id
    clock.advance(days=3)
    await sales.WinOpportunity(sapi.WinOpportunityRequest(opportunity_id=oid), CALL)
    clock.advance(days=2)
    o = (
        await sales.GetOpportunity(sapi.GetOpportunityRequest(opportunity_id=oid), CALL)
    ).opportunity
    three_days = 3 * 86400
    assert (o.cycle_seconds, [v.seconds for v in o.stage_history]) == (three_days, [three_days])
    report = await sales.GetSalesReport(sapi.GetSalesReportRequest(reports=["owners"]), CALL)
    assert [list(r.cells) for r in report.tables[0].rows] == [
        ["emp-7", "1", "1", "100.0", "100.00", "3.0", "EUR"]
    ]


async def quote_of(sales: SalesServicer, oid: str, *, revises: str = "") -> str:
    """A draft quote of one ROUTER-X for the opportunity (a revision of `revises`)."""
    qid = (
        await sales.DraftQuote(
            sapi.DraftQuoteRequest(
                opportunity_id=oid, price_list="standard", revises_quote_id=revises
            ),
            CALL,
        )
    ).result.aggregate_id
    if not revises:
        await sales.AddQuoteLine(
            sapi.AddQuoteLineRequest(quote_id=qid, product="ROUTER-X", quantity="1"), CALL
        )
    return str(qid)


async def test_a_lost_opportunitys_quotes_are_neither_sent_nor_accepted(
    sales: SalesServicer,
) -> None:
    await setup_catalogue(sales)
    oid = await open_deal(sales, str(uuid4()))
    sent, draft = await quote_of(sales, oid), await quote_of(sales, oid)
    await sales.SendQuote(sapi.SendQuoteRequest(quote_id=sent), CALL)
    await sales.LoseOpportunity(
        sapi.LoseOpportunityRequest(opportunity_id=oid, reason="chose a competitor"), CALL
    )
    before = stored(sales)
    error = await refused(sales.AcceptQuote(sapi.AcceptQuoteRequest(quote_id=sent), CALL))
    assert isinstance(error, PreconditionFailed)
    assert f"opportunity {oid}, which is lost: cannot accept it" in str(error)
    error = await refused(sales.SendQuote(sapi.SendQuoteRequest(quote_id=draft), CALL))
    assert isinstance(error, PreconditionFailed)
    assert "which is lost: cannot send it (reopen the opportunity first)" in str(error)
    assert stored(sales) == before
    await sales.ReopenOpportunity(sapi.ReopenOpportunityRequest(opportunity_id=oid), CALL)
    accepted = await sales.AcceptQuote(sapi.AcceptQuoteRequest(quote_id=sent), CALL)
    assert accepted.order_id


async def test_a_quote_is_in_the_currency_of_its_opportunity(sales: SalesServicer) -> None:
    await setup_catalogue(sales)
    await sales.DefinePriceList(sapi.DefinePriceListRequest(name="usd", currency="USD"), CALL)
    oid = await open_deal(sales, str(uuid4()))  # EUR
    before = stored(sales)
    error = await refused(
        sales.DraftQuote(sapi.DraftQuoteRequest(opportunity_id=oid, price_list="usd"), CALL),
        InvalidArgument,
    )
    assert isinstance(error, InvalidArgument)
    assert [(v.field, v.description) for v in error.violations] == [
        (
            "price_list",
            "is in USD, the opportunity in EUR: quote it from a EUR list"
            " (or change the opportunity's amount first)",
        )
    ]
    assert stored(sales) == before
    await sales.DraftQuote(sapi.DraftQuoteRequest(opportunity_id=oid, price_list="standard"), CALL)


async def test_a_revision_cancels_the_quote_it_revises_and_an_accepted_one_is_not_revised(
    sales: SalesServicer,
) -> None:
    await setup_catalogue(sales)
    oid = await open_deal(sales, str(uuid4()))
    first = await quote_of(sales, oid)
    await sales.SendQuote(sapi.SendQuoteRequest(quote_id=first), CALL)
    second = await quote_of(sales, oid, revises=first)
    q = (await sales.GetQuote(sapi.GetQuoteRequest(quote_id=first), CALL)).quote
    assert (q.state, q.reason) == (
        qev.QUOTE_STATE_CANCELLED,
        f"revised by quote {second} (revision 2)",
    )
    error = await refused(sales.AcceptQuote(sapi.AcceptQuoteRequest(quote_id=first), CALL))
    assert "is cancelled: cannot accept it" in str(error)
    await sales.SendQuote(sapi.SendQuoteRequest(quote_id=second), CALL)
    order = (await sales.AcceptQuote(sapi.AcceptQuoteRequest(quote_id=second), CALL)).order_id
    before = stored(sales)
    error = await refused(
        sales.DraftQuote(
            sapi.DraftQuoteRequest(
                opportunity_id=oid, price_list="standard", revises_quote_id=second
            ),
            CALL,
        )
    )
    assert isinstance(error, PreconditionFailed)
    assert str(error) == f"quote {second} is accepted (order {order}): cannot revise it"
    assert stored(sales) == before


async def quote_valid_until(sales: SalesServicer, oid: str, day: str) -> str:
    """A draft quote of the deal, valid until `day`, with one line of ROUTER-X."""
    qid = (
        await sales.DraftQuote(
            sapi.DraftQuoteRequest(opportunity_id=oid, price_list="standard", valid_until=day),
            CALL,
        )
    ).result.aggregate_id
    await sales.AddQuoteLine(
        sapi.AddQuoteLineRequest(quote_id=qid, product="ROUTER-X", quantity="1"), CALL
    )
    return qid


async def test_sent_quotes_expire_after_their_validity_date(
    sales: SalesServicer, clock: Clock
) -> None:
    await setup_catalogue(sales)
    oid = await open_deal(sales, str(uuid4()))
    qid = await quote_valid_until(sales, oid, "2026-03-05")
    await sales.SendQuote(sapi.SendQuoteRequest(quote_id=qid), CALL)
    assert sales.app.expire_quotes() == 0
    clock.advance(days=4)  # 2026-03-06 09:00 UTC: still the 5th west of UTC-9
    assert sales.app.expire_quotes() == 0
    clock.advance(hours=3)  # the 5th has ended everywhere
    assert sales.app.expire_quotes() == 1
    q = (await sales.GetQuote(sapi.GetQuoteRequest(quote_id=qid), CALL)).quote
    assert q.state == qev.QUOTE_STATE_EXPIRED


async def test_a_quotes_last_valid_day_lasts_until_it_has_ended_everywhere(
    sales: SalesServicer, clock: Clock
) -> None:
    """Valid until 2026-03-05: on 2026-03-06 at 05:00 UTC it is still the 5th in Honolulu
    and on Baker Island (UTC-12, until 12:00 UTC): a customer there may still accept."""
    await setup_catalogue(sales)
    oid = await open_deal(sales, str(uuid4()))
    quotes = [await quote_valid_until(sales, oid, "2026-03-05") for _ in range(2)]
    first, second = quotes
    for qid in quotes:
        await sales.SendQuote(sapi.SendQuoteRequest(quote_id=qid), CALL)
    clock.now = datetime(2026, 3, 6, 5, 0, tzinfo=UTC)
    assert sales.app.expire_quotes() == 0
    await sales.AcceptQuote(sapi.AcceptQuoteRequest(quote_id=first), CALL)
    clock.now = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
    error = await refused(sales.AcceptQuote(sapi.AcceptQuoteRequest(quote_id=second), CALL))
    assert "was valid until 2026-03-05" in str(error)
    assert sales.app.expire_quotes() == 1


async def test_a_draft_past_its_validity_date_is_not_sent(
    sales: SalesServicer, clock: Clock
) -> None:
    await setup_catalogue(sales)
    oid = await open_deal(sales, str(uuid4()))
    qid = await quote_valid_until(sales, oid, "2026-03-05")
    clock.advance(days=4, hours=3)  # 2026-03-06 12:00 UTC: the 5th has ended everywhere
    before = stored(sales)
    error = await refused(sales.SendQuote(sapi.SendQuoteRequest(quote_id=qid), CALL))
    assert isinstance(error, PreconditionFailed)
    assert str(error) == (
        f"quote {qid} was valid until 2026-03-05: draft a revision of it with a later date"
    )
    assert stored(sales) == before
    revision = (
        await sales.DraftQuote(
            sapi.DraftQuoteRequest(
                opportunity_id=oid,
                price_list="standard",
                revises_quote_id=qid,
                valid_until="2026-03-31",
            ),
            CALL,
        )
    ).result.aggregate_id
    await sales.SendQuote(sapi.SendQuoteRequest(quote_id=revision), CALL)


async def test_price_list_document_as_of_an_earlier_version(sales: SalesServicer) -> None:
    await setup_catalogue(sales)
    await asyncio.sleep(0.01)
    before = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await sales.DefinePriceList(sapi.DefinePriceListRequest(name="standard", currency="EUR"), CALL)
    now = await sales.GetPriceList(sapi.GetPriceListRequest(price_list="standard"), CALL)
    then = await sales.GetPriceList(
        sapi.GetPriceListRequest(price_list="standard", as_of=ts(before)), CALL
    )
    assert [(p.sku, p.unit_price) for p in now.prices] == [
        ("ROUTER-X", "200.00"),
        ("SUPPORT-Y", "50.00"),
    ]
    assert [(p.sku, p.unit_price, p.rule_id) for p in then.prices] == [
        ("ROUTER-X", "180.50", "hw-10"),
        ("SUPPORT-Y", "50.00", ""),
    ]
    assert await bad_fields(
        sales.DefinePriceList(
            sapi.DefinePriceListRequest(
                name="bad",
                currency="EUR",
                rules=[prev.PriceRule(computation=prev.PRICE_COMPUTATION_FIXED)],
            ),
            CALL,
        )
    ) == ["rules[0].fixed_price", "rules[0].scope"]
    # A base this contract does not have is refused by the rule's path, not dropped.
    unknown_base = prev.PriceRule(
        scope=prev.PRICE_SCOPE_ALL,
        computation=prev.PRICE_COMPUTATION_PERCENT_DISCOUNT,
        discount_percent="5",
        base=cast(Any, 999),
    )
    assert await bad_fields(
        sales.DefinePriceList(
            sapi.DefinePriceListRequest(
                name="bad", currency="EUR", rules=[prev.PriceRule(), unknown_base]
            ),
            CALL,
        )
    ) == ["rules[0].computation", "rules[0].scope", "rules[1].base"]


async def test_a_product_rule_names_its_product_by_sku_or_id(sales: SalesServicer) -> None:
    await setup_catalogue(sales)
    router = str(named_id("product", "ROUTER-X"))

    def fixed(target: str, price: str) -> prev.PriceRule:
        return prev.PriceRule(
            scope=prev.PRICE_SCOPE_PRODUCT,
            target=target,
            min_quantity="10",
            computation=prev.PRICE_COMPUTATION_FIXED,
            fixed_price=price,
        )

    await sales.DefinePriceList(
        sapi.DefinePriceListRequest(
            name="volume", currency="EUR", rules=[fixed("ROUTER-X", "150"), fixed(router, "99")]
        ),
        CALL,
    )
    document = await sales.GetPriceList(
        sapi.GetPriceListRequest(price_list="volume", quantity="10"), CALL
    )
    assert [r.target for r in document.rules] == [router, router]
    assert [(p.sku, p.unit_price, p.rule_id) for p in document.prices] == [
        ("ROUTER-X", "150.00", "r1"),
        ("SUPPORT-Y", "50.00", ""),
    ]
    before = stored(sales)
    assert await bad_fields(
        sales.DefinePriceList(
            sapi.DefinePriceListRequest(
                name="volume", currency="EUR", rules=[fixed("ROUTER-Z", "1"), fixed(router, "2")]
            ),
            CALL,
        )
    ) == ["rules[0].target"]
    assert stored(sales) == before


def test_every_sales_event_has_a_published_message() -> None:
    assert CONTRACT.unmapped() == []


async def test_the_pipeline_and_forecast_as_of_each_past_moment_equal_what_was_read_then(
    sales: SalesServicer,
) -> None:
    await setup_catalogue(sales)
    customers = [str(uuid4()) for _ in range(3)]
    deals = [
        await open_deal(sales, c, amount)
        for c, amount in zip(customers, ("100", "250", "4000"), strict=True)
    ]
    steps: list[tuple[str, Any]] = [
        ("move", (deals[0], "proposal")),
        ("update", sapi.UpdateOpportunityRequest(opportunity_id=deals[1], probability=80)),
        ("move", (deals[1], "negotiation")),
        ("win", deals[0]),
        ("lose", deals[2]),
        ("reopen", deals[2]),
        ("move", (deals[2], "negotiation")),
    ]
    seen: list[tuple[datetime, Any, Any]] = []

    async def read(at: datetime | None = None) -> tuple[Any, Any]:
        pipeline_request, forecast_request = sapi.GetPipelineRequest(), sapi.GetForecastRequest()
        if at is not None:
            pipeline_request.as_of.CopyFrom(ts(at))
            forecast_request.as_of.CopyFrom(ts(at))
        pipeline = await sales.GetPipeline(pipeline_request, CALL)
        forecast = await sales.GetForecast(forecast_request, CALL)
        return list(pipeline.rows), list(forecast.rows)

    for kind, arg in steps:
        await asyncio.sleep(0.002)
        moment = datetime.now(UTC)
        seen.append((moment, *(await read())))
        await asyncio.sleep(0.002)
        if kind == "move":
            await sales.MoveOpportunityStage(
                sapi.MoveOpportunityStageRequest(opportunity_id=arg[0], stage=arg[1]), CALL
            )
        elif kind == "update":
            await sales.UpdateOpportunity(arg, CALL)
        elif kind == "win":
            await sales.WinOpportunity(sapi.WinOpportunityRequest(opportunity_id=arg), CALL)
        elif kind == "lose":
            await sales.LoseOpportunity(
                sapi.LoseOpportunityRequest(opportunity_id=arg, reason="price"), CALL
            )
        else:
            await sales.ReopenOpportunity(sapi.ReopenOpportunityRequest(opportunity_id=arg), CALL)
    assert len({str(rows) for _, rows, _ in seen}) > 3  # the pipeline did change
    for moment, pipeline, forecast in seen:
        assert await read(moment) == (pipeline, forecast)


async def test_sales_reports_count_leads_conversion_owners_lost_reasons_and_revenue(
    sales: SalesServicer, clock: Clock
) -> None:
    await setup_catalogue(sales)
    for n in range(3):
        lead_id = await captured(sales, industry="retail" if n else "logistics")
        await sales.AssignLead(sapi.AssignLeadRequest(lead_id=lead_id, agent_id="emp-7"), CALL)
        if n == 2:
            continue
        await sales.QualifyLead(sapi.QualifyLeadRequest(lead_id=lead_id), CALL)
        converted = await sales.ConvertLead(
            sapi.ConvertLeadRequest(lead_id=lead_id, register_customer=True, pipeline_id="default"),
            CALL,
        )
        oid = converted.opportunity_id
        clock.advance(days=4)
        if n == 0:
            await sales.LoseOpportunity(
                sapi.LoseOpportunityRequest(opportunity_id=oid, reason="price", competitor="Acme"),
                CALL,
            )
            continue
        qid = (
            await sales.DraftQuote(
                sapi.DraftQuoteRequest(opportunity_id=oid, price_list="standard"), CALL
            )
        ).result.aggregate_id
        await sales.AddQuoteLine(
            sapi.AddQuoteLineRequest(quote_id=qid, product="SUPPORT-Y", quantity="4"), CALL
        )
        await sales.SendQuote(sapi.SendQuoteRequest(quote_id=qid), CALL)
        order_id = (await sales.AcceptQuote(sapi.AcceptQuoteRequest(quote_id=qid), CALL)).order_id
        await sales.WinOpportunity(sapi.WinOpportunityRequest(opportunity_id=oid), CALL)
        sales.app.record_fulfilment(
            CommandContext(command="RecordFulfilment", request_id="erp:1"),
            UUID(order_id),
            erp_event_id="1",
            delivered={"l1": "4"},
            reference="DN-1",
            on=clock().date(),
        )
    reply = await sales.GetSalesReport(sapi.GetSalesReportRequest(), CALL)
    tables = {t.name: [list(r.cells) for r in t.rows] for t in reply.tables}
    month = datetime.now(UTC).strftime("%Y-%m")  # leads count in the month they were recorded
    assert [month, "industry", "retail", "2"] in tables["leads"]
    assert [month, "channel", "phone", "3"] in tables["leads"]
    assert tables["conversion"] == [[month, "3", "2", "1", "66.7", "50.0", "33.3"]]
    assert tables["owners"] == [["emp-7", "2", "1", "50.0", "5000.00", "4.0", "EUR"]]
    assert tables["lost"] == [["price", "Acme", "1", "5000.00", "EUR"]]
    assert tables["revenue"] == [
        ["product", "SUPPORT-Y", "200.00", "EUR"],
        ["territory", "ch-north", "200.00", "EUR"],
    ]
    assert await bad_fields(
        sales.GetSalesReport(sapi.GetSalesReportRequest(reports=["nope"]), CALL)
    ) == ["reports"]


async def test_activities_make_an_agents_call_list_with_overdue_ones_first(
    sales: SalesServicer, clock: Clock
) -> None:
    customer = str(uuid4())

    async def schedule(subject: str, hours: float, agent: str = "emp-7") -> str:
        due = ts(clock() + timedelta(hours=hours))
        reply = await sales.ScheduleActivity(
            sapi.ScheduleActivityRequest(
                kind=aev.ACTIVITY_KIND_CALL,
                subject=subject,
                due_at=due,
                agent_id=agent,
                customer_id=customer,
            ),
            CALL,
        )
        return str(reply.result.aggregate_id)

    later = await schedule("Talk about the renewal", 48)
    soon = await schedule("Confirm the meeting", 2)
    await schedule("Someone else's", 1, agent="emp-8")
    clock.advance(hours=3)
    listed = await sales.ListActivities(sapi.ListActivitiesRequest(agent_id="emp-7"), CALL)
    assert [(a.activity_id, a.overdue) for a in listed.activities] == [
        (soon, True),
        (later, False),
    ]
    overdue = await sales.ListActivities(
        sapi.ListActivitiesRequest(agent_id="emp-7", due="overdue"), CALL
    )
    assert [a.activity_id for a in overdue.activities] == [soon]
    await sales.CompleteActivity(
        sapi.CompleteActivityRequest(activity_id=soon, outcome="Meeting on Friday"), CALL
    )
    error = await refused(
        sales.CancelActivity(sapi.CancelActivityRequest(activity_id=soon), CALL),
        PreconditionFailed,
    )
    assert "is done: cannot cancel it" in str(error)
    await sales.RescheduleActivity(
        sapi.RescheduleActivityRequest(activity_id=later, agent_id="emp-8"), CALL
    )
    mine = await sales.ListActivities(
        sapi.ListActivitiesRequest(agent_id="emp-7", due="upcoming"), CALL
    )
    assert list(mine.activities) == []
    assert await bad_fields(
        sales.ScheduleActivity(sapi.ScheduleActivityRequest(kind=aev.ACTIVITY_KIND_TASK), CALL)
    ) == ["customer_id", "due_at", "subject"]


async def test_an_overdue_invoice_from_erp_puts_a_call_on_the_owners_list_once(
    sales: SalesServicer,
) -> None:
    owners: dict[str, str] = {}

    async def owner_of(customer_id: str) -> str:
        return owners.get(customer_id, "")

    follower = ErpOrderFollower(sales.app, "nats://unused", owner_of)
    customer = str(uuid4())
    owners[customer] = "emp-9"
    event = erp.ErpEvent(event_id=str(uuid4()), customer_id=customer)
    event.occurred_at.FromDatetime(datetime(2026, 3, 1, tzinfo=UTC))
    event.invoice_overdue.CopyFrom(
        erp.InvoiceOverdue(
            invoice_number="INV-7",
            amount_due=erp.Money(currency="EUR", amount="120.00"),
            due_date="2026-02-01",
            days_overdue=28,
        )
    )
    assert await follower.follow_up(event) is None  # no refusal: called about
    assert await follower.follow_up(event) is None  # a resend: replayed, nothing new
    calls = await sales.ListActivities(sapi.ListActivitiesRequest(agent_id="emp-9"), CALL)
    [call] = calls.activities
    assert (call.kind, call.customer_id, call.overdue) == (aev.ACTIVITY_KIND_CALL, customer, True)
    assert call.subject.startswith("Invoice INV-7 is 28 days overdue (120.00 EUR)")
    assert call.origin == "erp invoice overdue INV-7"


async def test_a_fulfilled_order_makes_its_customer_key_and_not_before(
    sales: SalesServicer, clock: Clock
) -> None:
    await setup_catalogue(sales)
    customer = str(uuid4())
    oid = await open_deal(sales, customer)
    qid = (
        await sales.DraftQuote(
            sapi.DraftQuoteRequest(opportunity_id=oid, price_list="standard"), CALL
        )
    ).result.aggregate_id
    await sales.AddQuoteLine(
        sapi.AddQuoteLineRequest(quote_id=qid, product="SUPPORT-Y", quantity="2"), CALL
    )
    await sales.SendQuote(sapi.SendQuoteRequest(quote_id=qid), CALL)
    order_id = (await sales.AcceptQuote(sapi.AcceptQuoteRequest(quote_id=qid), CALL)).order_id
    await asyncio.sleep(0.01)
    before = datetime.now(UTC)
    await asyncio.sleep(0.01)
    sales.app.record_fulfilment(
        CommandContext(command="RecordFulfilment", request_id="erp:9"),
        UUID(order_id),
        erp_event_id="9",
        delivered={"l1": "2"},
        reference="DN-9",
        on=clock().date(),
    )
    now = await sales.GetCustomerClasses(sapi.GetCustomerClassesRequest(customer_id=customer), CALL)
    assert [(k.name, k.reason) for k in now.customers[0].classes] == [
        ("key", "#1 of 1 by 12-month revenue: 100.00 EUR")
    ]
    then_request = sapi.GetCustomerClassesRequest(customer_id=customer)
    then_request.as_of.CopyFrom(ts(before))
    then = await sales.GetCustomerClasses(then_request, CALL)
    assert list(then.customers[0].classes) == []


async def test_a_revision_keeps_the_lines_as_they_were_priced(sales: SalesServicer) -> None:
    await setup_catalogue(sales)
    oid = await open_deal(sales, str(uuid4()))
    first = (
        await sales.DraftQuote(
            sapi.DraftQuoteRequest(opportunity_id=oid, price_list="standard"), CALL
        )
    ).result.aggregate_id
    await sales.AddQuoteLine(
        sapi.AddQuoteLineRequest(quote_id=first, product="ROUTER-X", quantity="1"), CALL
    )
    await sales.SendQuote(sapi.SendQuoteRequest(quote_id=first), CALL)
    await sales.DeclineQuote(sapi.DeclineQuoteRequest(quote_id=first, reason="too dear"), CALL)
    await sales.DefinePriceList(sapi.DefinePriceListRequest(name="standard", currency="EUR"), CALL)
    second = (
        await sales.DraftQuote(
            sapi.DraftQuoteRequest(
                opportunity_id=oid, price_list="standard", revises_quote_id=first
            ),
            CALL,
        )
    ).result.aggregate_id
    await sales.AddQuoteLine(
        sapi.AddQuoteLineRequest(quote_id=second, product="ROUTER-X", quantity="1"), CALL
    )
    q = (await sales.GetQuote(sapi.GetQuoteRequest(quote_id=second), CALL)).quote
    assert (q.revision, q.revises_quote_id) == (2, first)
    assert [(x.line_id, x.unit_price, x.rule_id) for x in q.lines] == [
        ("l1", "180.50", "hw-10"),  # as priced on the first quote
        ("l2", "200.00", ""),  # priced from the list as it is now
    ]
    other = await open_deal(sales, str(uuid4()))
    assert await bad_fields(
        sales.DraftQuote(
            sapi.DraftQuoteRequest(
                opportunity_id=other, price_list="standard", revises_quote_id=first
            ),
            CALL,
        )
    ) == ["revises_quote_id"]


class FakeSearch:
    """Our own search port, faked: customers by e-mail, phone and name prefix."""

    def __init__(
        self,
        customers: list[tuple[str, str, str, str]],
        links: dict[str, list[tuple[str, str, str]]] | None = None,
    ) -> None:
        self.customers = customers  # (id, name, email, phone)
        self.links = links or {}  # person id -> (organisation id, its name, role)

    async def organisations_of(self, person_id: str) -> list[tuple[str, str, str]]:
        return self.links.get(person_id, [])

    async def search(self, text: str) -> list[tuple[str, str, str, str]]:
        hits = []
        for cid, name, email, phone in self.customers:
            if text == email:
                hits.append((cid, name, "person", "email"))
            elif text == phone:
                hits.append((cid, name, "person", "phone"))
            elif name.lower().startswith(text.lower()):
                hits.append((cid, name, "person", "name"))
        return hits


async def test_a_leads_possible_customers_strongest_evidence_first(
    clock: Clock, customers: FakeCustomers
) -> None:
    search = FakeSearch(
        [
            ("c-name", "Anna Berg", "other@example.com", ""),
            ("c-mail", "A. Berg", "anna@berg.example", ""),
            ("c-both", "Berg Logistics", "", "+41441234567"),
        ]
    )
    sales = SalesServicer(SalesApplication.in_memory(clock=clock), customers, search)
    lead_id = await captured(sales)
    found = await sales.FindLeadCustomers(sapi.FindLeadCustomersRequest(lead_id=lead_id), CALL)
    assert [(m.customer_id, list(m.matched_on)) for m in found.matches] == [
        ("c-mail", ["email"]),
        ("c-both", ["phone", "name"]),
        ("c-name", ["name"]),
    ]


async def test_the_company_of_a_matched_contact_person_is_offered_after_the_person(
    clock: Clock, customers: FakeCustomers
) -> None:
    """Anna's e-mail finds Anna, a person: her company, whose contact she is, comes next
    (a company's lead is converted for the company); one found on its own is not repeated."""
    search = FakeSearch(
        [("c-anna", "A. Berg", "anna@berg.example", ""), ("c-own", "Berg Logistics", "", "")],
        links={
            "c-anna": [
                ("c-org", "Berg Logistik GmbH", "Head of Purchasing"),
                ("c-own", "Berg Logistics", "buyer"),
            ]
        },
    )
    sales = SalesServicer(SalesApplication.in_memory(clock=clock), customers, search)
    lead_id = await captured(sales)
    found = await sales.FindLeadCustomers(sapi.FindLeadCustomersRequest(lead_id=lead_id), CALL)
    assert [
        (m.customer_id, m.kind, list(m.matched_on), m.contact_person_id, m.contact_role)
        for m in found.matches
    ] == [
        ("c-anna", "person", ["email"], "", ""),
        ("c-org", "organisation", ["contact person"], "c-anna", "Head of Purchasing"),
        ("c-own", "person", ["name"], "", ""),
    ]


async def test_classes_are_recorded_when_they_start_and_end(
    sales: SalesServicer, clock: Clock
) -> None:
    owners: dict[str, str] = {}

    async def owner_of(customer_id: str) -> str:
        return owners.get(customer_id, "")

    customer = str(uuid4())
    event = erp.ErpEvent(event_id=str(uuid4()), customer_id=customer)
    event.occurred_at.FromDatetime(datetime(2026, 3, 1, tzinfo=UTC))
    event.invoice_overdue.CopyFrom(
        erp.InvoiceOverdue(
            invoice_number="INV-8",
            amount_due=erp.Money(currency="EUR", amount="10.00"),
            due_date="2026-02-01",
            days_overdue=28,
        )
    )
    await ErpOrderFollower(sales.app, "nats://unused", owner_of).follow_up(event)
    # A forgotten customer (the service asks the timeline) gets nothing new recorded, and
    # the change stays pending, never saved.
    changes = sales.app.class_changes()
    assert list(changes) == [customer]
    assert sales.app.record_classes(changes, skip={customer}) == 0
    assert list(sales.app.class_changes()) == [customer]
    assert sales.app.reclassify() == 1
    assert sales.app.reclassify() == 0  # nothing started or ended since
    [call] = (await sales.ListActivities(sapi.ListActivitiesRequest(), CALL)).activities
    await sales.CompleteActivity(sapi.CompleteActivityRequest(activity_id=call.activity_id), CALL)
    assert sales.app.reclassify() == 1
    published: list[Any] = [
        CONTRACT.publication(e).payload
        for e in sales.app.events.get(named_id("customer_classes", customer))
    ]
    assert [
        ([c.name for c in p.started], [c.name for c in p.ended], [c.name for c in p.classes])
        for p in published
    ] == [(["debtor"], [], ["debtor"]), ([], ["debtor"], [])]
    assert published[0].started[0].reason == "overdue: INV-8"


async def test_defining_again_with_a_stale_expected_version_is_aborted_and_changes_nothing(
    sales: SalesServicer,
) -> None:
    """DefineProduct, DefineSalesTeam, DefinePipeline and DefinePriceList create or change
    what is there; with an expected_version that is not its version (0: nothing defined yet)
    they are ABORTED, as every command on an existing aggregate is."""
    rule = prev.PriceRule(scope=prev.PRICE_SCOPE_ALL, computation=prev.PRICE_COMPUTATION_FIXED)
    rule.fixed_price = "9.00"

    def product(name: str, version: int | None) -> Any:
        request = sapi.DefineProductRequest(
            sku="AUDIT-V", name=name, list_price=lev.SalesMoney(currency="EUR", amount="10")
        )
        if version is not None:
            request.expected_version = version
        return sales.DefineProduct(request, CALL)

    def team(agent: str, version: int | None) -> Any:
        request = sapi.DefineSalesTeamRequest(
            name="north", members=[tev.TeamMember(agent_id=agent)]
        )
        if version is not None:
            request.expected_version = version
        return sales.DefineSalesTeam(request, CALL)

    def pipeline(key: str, version: int | None) -> Any:
        request = sapi.DefinePipelineRequest(
            name="deals", stages=[pev.PipelineStage(key=key, probability=10)]
        )
        if version is not None:
            request.expected_version = version
        return sales.DefinePipeline(request, CALL)

    def price_list(currency: str, version: int | None) -> Any:
        request = sapi.DefinePriceListRequest(name="list", currency=currency, rules=[rule])
        if version is not None:
            request.expected_version = version
        return sales.DefinePriceList(request, CALL)

    for define, first, second in (
        (product, "first", "second"),
        (team, "emp-1", "emp-2"),
        (pipeline, "new", "open"),
        (price_list, "EUR", "USD"),
    ):
        await refused(define(first, 1), VersionConflict)  # nothing there: version 0
        created = await define(first, 0)
        assert created.result.version == 1
        before = stored(sales)
        for stale in (0, 2, 987, 2**64 - 1):
            await refused(define(second, stale), VersionConflict)
        with pytest.raises(VersionConflict):
            await define(first, 5)  # not even a change: still refused
        assert stored(sales) == before
        changed = await define(second, 1)
        assert changed.result.version == 2
        assert (await define(second, None)).result.version == 2  # no version: as before
    products = await sales.ListProducts(sapi.ListProductsRequest(), CALL)
    assert [(p.sku, p.name, p.version) for p in products.products] == [("AUDIT-V", "second", 2)]


async def test_a_renewal_opportunity_takes_the_contracts_value_rounded_to_cents(
    sales: SalesServicer,
) -> None:
    """A service contract's value may have six decimals; a deal's amount has the currency's."""
    from c360.events.v1 import envelope_pb2
    from c360.events.v1 import service_contract_events_pb2 as sev
    from c360_sales.renewals import ContractRenewals

    await setup_catalogue(sales)

    async def owner_of(customer_id: str) -> str:
        return "emp-7"

    renewals = ContractRenewals(sales.app, "nats://127.0.0.1:1", owner_of)
    customer = str(uuid4())
    due = sev.ServiceContractRenewalDue(
        name="Router care",
        ends_on="2026-12-31",
        period=1,
        value_currency="EUR",
        value_amount="1200.125",
    )
    envelope = envelope_pb2.Envelope(
        event_id=str(uuid4()), aggregate_id=str(uuid4()), customer_id=customer
    )
    assert await renewals.open(envelope, due)
    listed = await sales.ListOpportunities(
        sapi.ListOpportunitiesRequest(customer_id=customer), CALL
    )
    [o] = listed.opportunities
    assert (o.amount.amount, o.amount.currency, o.owner_id) == ("1200.13", "EUR", "emp-7")


def test_an_overdue_notice_with_an_amount_or_currency_the_contract_refuses_is_refused() -> None:
    def refusal(amount: str, currency: str = "EUR", number: str = "INV-1") -> str | None:
        notice = erp.InvoiceOverdue(
            invoice_number=number, amount_due=erp.Money(currency=currency, amount=amount)
        )
        return ErpOrderFollower.overdue_refusal(notice)

    assert refusal("120.00") is None
    assert (refusal("1e3") or "").startswith("invoice_overdue.amount_due.amount: must be a")
    assert refusal("0") == "invoice_overdue.amount_due.amount: must be more than zero"
    assert (refusal("5", "eur") or "").startswith("invoice_overdue.amount_due.currency:")
    assert (refusal("5", "XYZ") or "").startswith("invoice_overdue.amount_due.currency:")
    assert refusal("5", number=" ") == "invoice_overdue.invoice_number: is required"


async def test_defining_a_pipeline_again_without_a_stage_open_deals_stand_in_is_refused(
    sales: SalesServicer,
) -> None:
    # It was accepted: `c360 pipeline define default` with two open stages, after the demo,
    # left 14 open opportunities in needs-analysis and negotiation, stages it had no more.
    await setup_catalogue(sales)
    oid = (
        await sales.OpenOpportunity(
            sapi.OpenOpportunityRequest(
                customer_id=str(uuid4()),
                name="Deal",
                pipeline="default",
                owner_id="emp-7",
                amount=lev.SalesMoney(currency="EUR", amount="100"),
            ),
            CALL,
        )
    ).result.aggregate_id
    await sales.MoveOpportunityStage(
        sapi.MoveOpportunityStageRequest(opportunity_id=oid, stage="negotiation"), CALL
    )
    without_negotiation = [s for s in STAGES if s.key != "negotiation"]
    before = stored(sales)
    error = await refused(
        sales.DefinePipeline(
            sapi.DefinePipelineRequest(name="default", stages=without_negotiation), CALL
        ),
        PreconditionFailed,
    )
    assert "1 in negotiation" in str(error)
    assert stored(sales) == before
    # A stage nobody stands in may go; once the deal is won, its stage may go too.
    without_proposal = [s for s in STAGES if s.key != "proposal"]
    await sales.DefinePipeline(
        sapi.DefinePipelineRequest(name="default", stages=without_proposal), CALL
    )
    await sales.WinOpportunity(sapi.WinOpportunityRequest(opportunity_id=oid), CALL)
    changed = await sales.DefinePipeline(
        sapi.DefinePipelineRequest(
            name="default", stages=[s for s in without_proposal if s.key != "negotiation"]
        ),
        CALL,
    )
    assert changed.result.version == 3
