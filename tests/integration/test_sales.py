"""Sales on real PostgreSQL and NATS: a phone lead becomes a new customer (registered through
the customer service's gRPC API), an opportunity, a quote from a price list, an order that an
ERP stand-in fulfils over erp.order.delivered; the timeline shows each step, the profile the
lifetime value; the pipeline as of before the win still shows the opportunity open; verify
finds every stored sales event accounted for."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
import nats
import psycopg
import pytest
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from c360.customer.v1 import customer_service_pb2 as capi
from c360.erp.v1 import erp_events_pb2 as erp
from c360.events.v1 import envelope_pb2
from c360.events.v1 import sales_activity_events_pb2 as aev
from c360.events.v1 import sales_events_pb2 as lev
from c360.events.v1 import sales_order_events_pb2 as oev
from c360.events.v1 import sales_pipeline_events_pb2 as pev
from c360.events.v1 import sales_price_list_events_pb2 as prev
from c360.sales.v1 import sales_service_pb2 as sapi
from c360.sales.v1 import sales_service_pb2_grpc as sapi_grpc
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_cli.verify import compare
from c360_platform.envelope import unpack
from c360_platform.registry import event_sources

from .conftest import Stack
from .helpers import bad_fields, eventually, register

pytestmark = pytest.mark.integration

STAGES = [
    pev.PipelineStage(key="qualification", name="Qualification", probability=10),
    pev.PipelineStage(key="proposal", name="Proposal", probability=40),
    pev.PipelineStage(key="won", name="Won", won=True),
    pev.PipelineStage(key="lost", name="Lost", lost=True),
]


def ts(at: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at)
    return out


async def confirmed_order(js: Any, order_id: str) -> envelope_pb2.Envelope:
    """What ERP receives: the order's confirmation on c360.sales.order.confirmed."""
    sub = await js.subscribe("c360.sales.order.confirmed", ordered_consumer=True)
    try:
        while True:
            msg = await sub.next_msg(timeout=15)
            env = envelope_pb2.Envelope()
            env.ParseFromString(msg.data)
            if env.aggregate_id == order_id:
                return env
    finally:
        await sub.unsubscribe()


async def test_lead_to_fulfilled_order_in_the_timeline_profile_pipeline_and_verify(
    stack: Stack,
) -> None:
    sales = stack.stub("sales", sapi_grpc.SalesServiceStub)
    await sales.DefinePipeline(sapi.DefinePipelineRequest(name="default", stages=STAGES))
    await sales.DefineProduct(
        sapi.DefineProductRequest(
            sku="ROUTER-X",
            name="Router X",
            category="hardware",
            list_price=lev.SalesMoney(currency="EUR", amount="200.00"),
            cost="120.00",
        )
    )
    await sales.DefinePriceList(
        sapi.DefinePriceListRequest(
            name="standard",
            currency="EUR",
            rules=[
                prev.PriceRule(
                    scope=prev.PRICE_SCOPE_ALL,
                    computation=prev.PRICE_COMPUTATION_PERCENT_DISCOUNT,
                    discount_percent="10",
                )
            ],
        )
    )
    lead = await sales.CaptureLead(
        sapi.CaptureLeadRequest(
            channel=lev.LEAD_CHANNEL_PHONE,
            person_name="Anna Berg",
            company_name="Berg Logistics AG",
            email="anna@berg.example",
            phone="+41 44 123 45 67",
            position="Head of Purchasing",
            territory="ch-north",
            interest_products=["ROUTER-X"],
            estimated_value=lev.SalesMoney(currency="EUR", amount="1800"),
        )
    )
    lead_id = lead.result.aggregate_id
    await sales.AssignLead(sapi.AssignLeadRequest(lead_id=lead_id, agent_id="emp-7"))
    await sales.QualifyLead(sapi.QualifyLeadRequest(lead_id=lead_id))
    converted = await sales.ConvertLead(
        sapi.ConvertLeadRequest(
            request_id="convert-1",
            lead_id=lead_id,
            register_customer=True,
            pipeline_id="default",
            expected_close="2026-12-15",
        )
    )
    assert converted.customer_registered
    customer_id, oid = converted.customer_id, converted.opportunity_id
    customer = await stack.customer.GetCustomer(_get_customer(customer_id))
    assert customer.customer.display_name == "Berg Logistics AG"
    assert customer.customer.owner_id == "emp-7"
    # Its contact, the person, registered with the lead's e-mail and linked in her position.
    [link] = customer.customer.contact_persons
    assert (link.person_id, link.role) == (converted.contact_person_id, "Head of Purchasing")
    person = (await stack.customer.GetCustomer(_get_customer(link.person_id))).customer
    assert (person.display_name, list(person.emails)) == (
        "Anna Berg",
        ["anna@berg.example"],
    )
    assert list(customer.customer.emails) == []

    await sales.MoveOpportunityStage(
        sapi.MoveOpportunityStageRequest(opportunity_id=oid, stage="proposal")
    )
    quote = await sales.DraftQuote(
        sapi.DraftQuoteRequest(opportunity_id=oid, price_list="standard")
    )
    qid = quote.result.aggregate_id
    await sales.AddQuoteLine(
        sapi.AddQuoteLineRequest(quote_id=qid, product="ROUTER-X", quantity="10", tax_rate="0")
    )
    await sales.SendQuote(sapi.SendQuoteRequest(quote_id=qid))
    await asyncio.sleep(0.05)
    before_win = datetime.now(UTC)
    await asyncio.sleep(0.05)

    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    try:
        accepted = await sales.AcceptQuote(sapi.AcceptQuoteRequest(quote_id=qid))
        await sales.WinOpportunity(sapi.WinOpportunityRequest(opportunity_id=oid))
        order_id = accepted.order_id
        # The ERP stand-in: reads the confirmation, delivers every line, answers on erp.>.
        env = await confirmed_order(js, order_id)
        confirmation = unpack(env)
        assert isinstance(confirmation, oev.OrderConfirmed)
        assert confirmation.gross_total.amount == "1800.00"
        answer = erp.ErpEvent(event_id=str(uuid.uuid4()), customer_id=env.customer_id)
        answer.occurred_at.GetCurrentTime()
        answer.order_delivered.CopyFrom(
            erp.OrderDelivered(
                order_id=order_id,
                order_number=confirmation.order_number,
                delivery_reference="DN-2026-000812",
                delivered_on="2026-12-01",
                lines=[
                    erp.DeliveredLine(line_id=line.line_id, quantity=line.quantity)
                    for line in confirmation.lines
                ],
            )
        )
        await js.publish(
            "erp.order.delivered",
            answer.SerializeToString(),
            headers={"Nats-Msg-Id": answer.event_id},
        )
    finally:
        await nc.close()

    async def fulfilled() -> bool:
        got = await sales.GetOrder(sapi.GetOrderRequest(order_id=order_id))
        return bool(got.order.state == oev.ORDER_STATE_FULFILLED)

    await eventually(fulfilled, what="the sales order to follow ERP's delivery")

    async def profile_with_value() -> bool:
        found = await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=customer_id))
        part = json_format.MessageToDict(found.profile.attributes).get("sales", {})
        return bool(part.get("lifetime_value"))

    await eventually(profile_with_value, what="the profile's lifetime value")
    profile = (
        await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=customer_id))
    ).profile
    part = json_format.MessageToDict(profile.attributes)["sales"]
    assert part["lifetime_value"] == {"EUR": "1800.00"}
    assert part["orders_by_state"] == {"fulfilled": 1.0}
    assert part["products_bought"] == ["ROUTER-X"]
    assert part["last_purchase"]["order_number"] == confirmation.order_number
    assert part["open_opportunity_count"] == 0.0

    timeline = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=customer_id, page_size=100)
    )
    types = [e.type for e in reversed(timeline.entries)]
    for step in (
        "customer.registered",
        "lead.converted",
        "opportunity.opened",
        "opportunity.stage_moved",
        "quote.drafted",
        "quote.line_added",
        "quote.sent",
        "quote.accepted",
        "order.placed",
        "order.confirmed",
        "opportunity.won",
        "order.delivered",
        "order.fulfilment_recorded",
        "order.fulfilled",
    ):
        assert step in types, f"{step} not in the timeline: {types}"
    summaries = {e.type: e.summary for e in timeline.entries}
    assert summaries["order.fulfilled"] == "Order fulfilled: 1800.00 EUR"
    assert summaries["lead.converted"].startswith("Lead captured by phone on ")
    assert "worked by emp-7, converted" in summaries["lead.converted"]
    assert summaries["lead.converted"].endswith(
        "(customer registered for it, with its contact person)"
    )

    # The pipeline as it stood before the win still holds the opportunity, open.
    now = await sales.GetPipeline(sapi.GetPipelineRequest())
    assert oid not in [i for r in now.rows for i in r.opportunity_ids]
    then = await sales.GetPipeline(sapi.GetPipelineRequest(as_of=ts(before_win)))
    assert [(r.stage, r.count, r.amount, r.weighted_amount) for r in then.rows] == [
        ("proposal", 1, "1800.00", "720.00")
    ]
    forecast = await sales.GetForecast(sapi.GetForecastRequest(as_of=ts(before_win)))
    assert [(r.period, r.weighted_amount) for r in forecast.rows] == [("2026-12", "720.00")]

    # ERP reports an invoice overdue: a call lands on the responsible employee's list.
    nc = await nats.connect(stack.nats_url)
    try:
        overdue = erp.ErpEvent(event_id=str(uuid.uuid4()), customer_id=customer_id)
        overdue.occurred_at.GetCurrentTime()
        overdue.invoice_overdue.CopyFrom(
            erp.InvoiceOverdue(
                invoice_number="INV-2026-000981",
                amount_due=erp.Money(currency="EUR", amount="1800.00"),
                due_date="2026-11-01",
                days_overdue=30,
            )
        )
        await nc.jetstream().publish(
            "erp.invoice.overdue",
            overdue.SerializeToString(),
            headers={"Nats-Msg-Id": overdue.event_id},
        )
    finally:
        await nc.close()

    async def on_call_list() -> bool:
        found = await sales.ListActivities(sapi.ListActivitiesRequest(agent_id="emp-7"))
        return any("INV-2026-000981" in a.subject for a in found.activities)

    await eventually(on_call_list, what="the overdue invoice's call on emp-7's list")

    # Classes are recorded when they start: the customer is key (its only revenue) and a
    # debtor (the open call about the overdue invoice); the timeline and profile show them.
    sales_app = stack.hosts["sales"].parts["app"]
    before_classes = datetime.now(UTC)
    await asyncio.sleep(0.05)
    assert await asyncio.to_thread(sales_app.reclassify) == 1

    async def classified() -> bool:
        found = await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=customer_id))
        return "classes" in json_format.MessageToDict(found.profile.attributes)["sales"] and bool(
            json_format.MessageToDict(found.profile.attributes)["sales"]["classes"]
        )

    await eventually(classified, what="the customer's classes in the profile")
    profile = (
        await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=customer_id))
    ).profile
    classes = json_format.MessageToDict(profile.attributes)["sales"]["classes"]
    assert classes == {
        "debtor": "overdue: INV-2026-000981",
        "key": "#1 of 1 by 12-month revenue: 1800.00 EUR",
    }
    then_profile = await stack.timeline.GetProfile(
        tapi.GetProfileRequest(customer_id=customer_id, as_of=ts(before_classes))
    )
    assert json_format.MessageToDict(then_profile.profile.attributes)["sales"]["classes"] == {}
    timeline = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=customer_id, page_size=5)
    )
    assert any(
        e.type == "customer_classes.changed" and "Became key" in e.summary for e in timeline.entries
    )

    # A second lead from the same person: the timeline's search finds her, and then her
    # company, whose contact person she is.
    again = await sales.CaptureLead(
        sapi.CaptureLeadRequest(
            channel=lev.LEAD_CHANNEL_EMAIL, person_name="Anna Berg", email="anna@berg.example"
        )
    )
    found = await sales.FindLeadCustomers(
        sapi.FindLeadCustomersRequest(lead_id=again.result.aggregate_id)
    )
    assert [(m.customer_id, m.matched_on[0], m.contact_role) for m in found.matches] == [
        (converted.contact_person_id, "email", ""),
        (customer_id, "contact person", "Head of Purchasing"),
    ]

    async def verified() -> bool:
        with psycopg.connect(stack.postgres_url, autocommit=True) as conn:
            report = compare(conn, [s.name for s in event_sources()])
        return report.ok and report.per_source["sales"]["stored_events"] > 0

    await eventually(verified, what="verify to account for every sales event")


def _get_customer(customer_id: str) -> Any:
    from c360.customer.v1 import customer_service_pb2 as capi

    return capi.GetCustomerRequest(customer_id=customer_id)


async def test_sales_refusals_map_to_grpc_status_codes_and_store_nothing(stack: Stack) -> None:
    sales = stack.stub("sales", sapi_grpc.SalesServiceStub)
    app = stack.hosts["sales"].parts["app"]
    before = app.head()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await sales.CaptureLead(
            sapi.CaptureLeadRequest(
                channel=lev.LEAD_CHANNEL_CAMPAIGN,
                person_name="X",
                estimated_value=lev.SalesMoney(currency="XYZ", amount="-1"),
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(bad_fields(caught.value)) == [
        "campaign_id",
        "estimated_value.amount",
        "estimated_value.currency",
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await sales.GetLead(sapi.GetLeadRequest(lead_id=str(uuid.uuid4())))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert app.head() == before
    lead = await sales.CaptureLead(
        sapi.CaptureLeadRequest(channel=lev.LEAD_CHANNEL_SMS, person_name="Jo")
    )
    lead_id = lead.result.aggregate_id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await sales.ReopenLead(sapi.ReopenLeadRequest(lead_id=lead_id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "is new: cannot reopen it" in (caught.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await sales.QualifyLead(sapi.QualifyLeadRequest(lead_id=lead_id, expected_version=7))
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert app.head() == before + 1
    # Times and dates outside the years 1900 to 2999 are refused, naming the field (a year-1
    # as_of was INTERNAL: a year back from it overflowed).
    for seconds in (-62_135_596_800, 253_402_300_799):  # 0001-01-01, 9999-12-31T23:59:59
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await sales.GetCustomerClasses(
                sapi.GetCustomerClassesRequest(
                    customer_id=str(uuid.uuid4()), as_of=Timestamp(seconds=seconds)
                )
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_fields(caught.value) == ["as_of"]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await sales.ScheduleActivity(
                sapi.ScheduleActivityRequest(
                    kind=aev.ACTIVITY_KIND_CALL,
                    subject="Call back",
                    due_at=Timestamp(seconds=seconds),
                    agent_id="emp-1",
                    lead_id=lead_id,
                )
            )
        assert bad_fields(caught.value) == ["due_at"]
    assert app.head() == before + 1
    # A customer nobody registered (a mistyped id, a ticket's id) gets no lead, opportunity or
    # activity, and neither does a forgotten one.
    nobody = str(uuid.uuid4())
    registered = await register(stack.customer, "Forgotten Person", "gone@example.com")
    forgotten = registered.result.aggregate_id
    forgot = await stack.customer.ForgetCustomer(capi.ForgetCustomerRequest(customer_id=forgotten))
    await stack.timeline.GetProfile(  # the timeline has applied the forget
        tapi.GetProfileRequest(customer_id=forgotten, wait_for=forgot.result.consistency_token)
    )
    # ...nor one merged into another: the refusal names the survivor, the id to use.
    survivor = (await register(stack.customer, "Survivor", "kept@example.com")).result.aggregate_id
    duplicate = (await register(stack.customer, "Duplicate", "dup@example.com")).result.aggregate_id
    merge = await stack.customer.MergeCustomers(
        capi.MergeCustomersRequest(
            survivor_id=survivor, duplicate_id=duplicate, reason="one person, two sign-ups"
        )
    )
    await stack.timeline.GetProfile(
        tapi.GetProfileRequest(customer_id=duplicate, wait_for=merge.result.consistency_token)
    )
    merged_into = f"customer {duplicate} was merged into customer {survivor}"
    for customer_id, code, says in [
        (nobody, grpc.StatusCode.NOT_FOUND, f"customer {nobody} is not known to the timeline"),
        (forgotten, grpc.StatusCode.FAILED_PRECONDITION, f"customer {forgotten} is forgotten"),
        (duplicate, grpc.StatusCode.FAILED_PRECONDITION, merged_into),
    ]:
        for call in (
            sales.CaptureLead(
                sapi.CaptureLeadRequest(channel=lev.LEAD_CHANNEL_SMS, customer_id=customer_id)
            ),
            sales.OpenOpportunity(
                sapi.OpenOpportunityRequest(
                    customer_id=customer_id, pipeline="default", name="Renewal", owner_id="emp-1"
                )
            ),
            sales.ScheduleActivity(
                sapi.ScheduleActivityRequest(
                    kind=aev.ACTIVITY_KIND_CALL,
                    subject="Call back",
                    agent_id="emp-1",
                    customer_id=customer_id,
                )
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == code
            assert says in (caught.value.details() or "")
    assert app.head() == before + 1
