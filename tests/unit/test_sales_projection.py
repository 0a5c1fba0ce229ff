"""Sales events in the timeline and the profile's sales part, without servers: the events an
in-memory sales application stored, packed as its relay packs them, folded by the timeline's
projection; and the part as of a time before the order was fulfilled."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from c360.events.v1 import sales_events_pb2 as lev
from c360.events.v1 import sales_pipeline_events_pb2 as pev
from c360.sales.v1 import sales_service_pb2 as sapi
from c360_platform.envelope import pack
from c360_platform.store import CommandContext
from c360_sales.api import SalesServicer
from c360_sales.application import SalesApplication
from c360_sales.contract import CONTRACT
from c360_timeline.projection import ChurnRule, Entry, empty_profile, entry_for, fold, profile_as_of
from c360_timeline.sources.sales import CLOSED_KEPT

from .support import CALL, Clock


class NoRegistry:
    async def register(self, customer: Any) -> str:
        raise AssertionError("not called")

    async def link_contact(
        self, request_id: str, organisation_id: str, person_id: str, role: str
    ) -> None:
        raise AssertionError("not called")


def entries_of(app: SalesApplication) -> list[Entry]:
    """Every stored event about a customer as the timeline receives it."""
    out = []
    for n in app.recorder.select_notifications(start=1, limit=10_000):
        event: Any = app.mapper.to_domain_event(n)
        publication = CONTRACT.publication(event)
        if not publication.customer_id:
            continue  # about no customer: tracked, no entry
        out.append(
            entry_for(
                pack(
                    source="sales",
                    publication=publication,
                    aggregate_id=event.originator_id,
                    aggregate_version=event.originator_version,
                    position=n.id,
                    occurred_at=event.timestamp,
                )
            )
        )
    return out


async def test_the_profile_sales_part_from_deal_to_fulfilled_order_and_as_of_before() -> None:
    clock = Clock()
    sales = SalesServicer(SalesApplication.in_memory(clock=clock), NoRegistry())
    await sales.DefinePipeline(
        sapi.DefinePipelineRequest(
            name="default",
            stages=[
                pev.PipelineStage(key="open", probability=30),
                pev.PipelineStage(key="won", won=True),
            ],
        ),
        CALL,
    )
    await sales.DefineProduct(
        sapi.DefineProductRequest(
            sku="KIT", name="Kit", list_price=lev.SalesMoney(currency="EUR", amount="50"), cost="10"
        ),
        CALL,
    )
    await sales.DefinePriceList(sapi.DefinePriceListRequest(name="std", currency="EUR"), CALL)
    customer = str(uuid4())
    other = await sales.OpenOpportunity(
        sapi.OpenOpportunityRequest(
            customer_id=customer,
            name="Second deal",
            pipeline="default",
            owner_id="emp-1",
            amount=lev.SalesMoney(currency="EUR", amount="1000"),
        ),
        CALL,
    )
    deal = await sales.OpenOpportunity(
        sapi.OpenOpportunityRequest(
            customer_id=customer,
            name="Kits",
            pipeline="default",
            owner_id="emp-2",
            amount=lev.SalesMoney(currency="EUR", amount="500"),
        ),
        CALL,
    )
    oid = deal.result.aggregate_id
    qid = (
        await sales.DraftQuote(sapi.DraftQuoteRequest(opportunity_id=oid, price_list="std"), CALL)
    ).result.aggregate_id
    await sales.AddQuoteLine(
        sapi.AddQuoteLineRequest(quote_id=qid, product="KIT", quantity="4"), CALL
    )
    await sales.SendQuote(sapi.SendQuoteRequest(quote_id=qid), CALL)
    order_id = (await sales.AcceptQuote(sapi.AcceptQuoteRequest(quote_id=qid), CALL)).order_id
    await sales.WinOpportunity(sapi.WinOpportunityRequest(opportunity_id=oid), CALL)
    before_delivery = datetime.now(UTC)
    sales.app.record_fulfilment(
        CommandContext(command="RecordFulfilment", request_id="erp:1"),
        UUID(order_id),
        erp_event_id="1",
        delivered={"l1": "4"},
        reference="DN-1",
        on=clock().date(),
    )
    entries = entries_of(sales.app)
    profile = empty_profile(customer)
    for entry in entries:
        profile = fold(profile, entry)
    part = profile["sales"]
    assert part["open_opportunity_count"] == 1
    assert part["open_weighted"] == {"EUR": "300.00"}
    assert list(part["opportunities"]) == [other.result.aggregate_id]
    assert part["orders_by_state"] == {"fulfilled": 1}
    assert part["lifetime_value"] == {"EUR": "200.00"}
    assert part["products_bought"] == ["KIT"]
    assert part["last_purchase"]["amount"] == "200.00"
    assert part["quotes"] == {}
    assert profile["provenance"]["sales.lifetime_value.EUR"]["type"] == "order.fulfilled"
    summaries = [e.summary for e in entries]
    assert "Quote line added: 4 x KIT at 50.00" in summaries
    assert "Opportunity “Kits” won: 500.00 EUR" in summaries
    then = profile_as_of(customer, entries, before_delivery, ChurnRule())
    assert then is not None
    assert then["sales"]["orders_by_state"] == {"pending": 1}
    assert then["sales"]["lifetime_value"] == {}


async def test_a_reopened_opportunity_comes_back_to_the_profile_with_its_amount() -> None:
    sales = SalesServicer(SalesApplication.in_memory(clock=Clock()), NoRegistry())
    await sales.DefinePipeline(
        sapi.DefinePipelineRequest(
            name="default",
            stages=[
                pev.PipelineStage(key="open", probability=30),
                pev.PipelineStage(key="proposal", probability=50),
                pev.PipelineStage(key="won", won=True),
                pev.PipelineStage(key="lost", lost=True),
            ],
        ),
        CALL,
    )
    customer = str(uuid4())
    deal = await sales.OpenOpportunity(
        sapi.OpenOpportunityRequest(
            customer_id=customer,
            name="Fleet renewal",
            pipeline="default",
            owner_id="emp-7",
            amount=lev.SalesMoney(currency="CHF", amount="800"),
        ),
        CALL,
    )
    oid = deal.result.aggregate_id
    await sales.HoldOpportunity(
        sapi.HoldOpportunityRequest(opportunity_id=oid, reason="budget in January"), CALL
    )
    held = empty_profile(customer)
    for entry in entries_of(sales.app):
        held = fold(held, entry)
    assert held["sales"]["opportunities"][oid]["on_hold"] is True
    assert "Opportunity “Fleet renewal” put on hold: budget in January" in [
        e.summary for e in entries_of(sales.app)
    ]
    await sales.LoseOpportunity(
        sapi.LoseOpportunityRequest(opportunity_id=oid, reason="no budget"), CALL
    )
    assert "Opportunity “Fleet renewal” lost, canceled: no budget" in [
        e.summary for e in entries_of(sales.app)
    ]
    await sales.ReopenOpportunity(
        sapi.ReopenOpportunityRequest(opportunity_id=oid, stage="proposal"), CALL
    )
    profile = empty_profile(customer)
    for entry in entries_of(sales.app):
        profile = fold(profile, entry)
    part = profile["sales"]
    assert part["opportunities"][oid] == {
        "name": "Fleet renewal",
        "stage": "proposal",
        "owner_id": "emp-7",
        "currency": "CHF",
        "amount": "800.00",
        "probability": 50,
        "forecast_category": "pipeline",
    }
    assert part["open_weighted"] == {"CHF": "400.00"}
    assert part["closed_opportunities"] == {}
    # The reopening says what the deal is: it comes back whole without the copy kept aside
    # (gone once 20 later deals closed, or from a profile folded before it was kept).
    entries = entries_of(sales.app)
    bare = empty_profile(customer)
    for entry in entries[:-1]:
        bare = fold(bare, entry)
    bare["sales"]["closed_opportunities"] = {}
    bare = fold(bare, entries[-1])
    assert bare["sales"]["opportunities"][oid] == part["opportunities"][oid]


async def test_the_profiles_weighted_value_rounds_half_up() -> None:
    sales = SalesServicer(SalesApplication.in_memory(clock=Clock()), NoRegistry())
    await sales.DefinePipeline(
        sapi.DefinePipelineRequest(
            name="default", stages=[pev.PipelineStage(key="open", probability=50)]
        ),
        CALL,
    )
    customer = str(uuid4())
    await sales.OpenOpportunity(
        sapi.OpenOpportunityRequest(
            customer_id=customer,
            name="Sample",
            pipeline="default",
            amount=lev.SalesMoney(currency="EUR", amount="0.25"),
        ),
        CALL,
    )
    profile = empty_profile(customer)
    for entry in entries_of(sales.app):
        profile = fold(profile, entry)
    assert profile["sales"]["open_weighted"] == {"EUR": "0.13"}


async def test_the_profile_keeps_only_the_latest_closed_opportunities_aside() -> None:
    sales = SalesServicer(SalesApplication.in_memory(clock=Clock()), NoRegistry())
    await sales.DefinePipeline(
        sapi.DefinePipelineRequest(
            name="default",
            stages=[
                pev.PipelineStage(key="open", probability=30),
                pev.PipelineStage(key="won", won=True),
                pev.PipelineStage(key="lost", lost=True),
            ],
        ),
        CALL,
    )
    customer = str(uuid4())
    closed = []
    for n in range(CLOSED_KEPT + 5):
        deal = await sales.OpenOpportunity(
            sapi.OpenOpportunityRequest(
                customer_id=customer,
                name=f"Deal {n}",
                pipeline="default",
                amount=lev.SalesMoney(currency="EUR", amount="100"),
            ),
            CALL,
        )
        oid = deal.result.aggregate_id
        await sales.LoseOpportunity(
            sapi.LoseOpportunityRequest(opportunity_id=oid, reason="no budget"), CALL
        )
        closed.append(oid)
    profile = empty_profile(customer)
    for entry in entries_of(sales.app):
        profile = fold(profile, entry)
    assert sorted(profile["sales"]["closed_opportunities"]) == sorted(closed[5:])
