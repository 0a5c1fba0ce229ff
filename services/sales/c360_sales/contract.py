"""The published contract of sales: domain event -> c360.events.v1 message (sales_*_events)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from c360.events.v1 import sales_activity_events_pb2 as act_pb
from c360.events.v1 import sales_classification_events_pb2 as class_pb
from c360.events.v1 import sales_events_pb2 as lead_pb
from c360.events.v1 import sales_opportunity_events_pb2 as opp_pb
from c360.events.v1 import sales_order_events_pb2 as order_pb
from c360.events.v1 import sales_pipeline_events_pb2 as pipe_pb
from c360.events.v1 import sales_price_list_events_pb2 as price_pb
from c360.events.v1 import sales_product_events_pb2 as product_pb
from c360.events.v1 import sales_quote_events_pb2 as quote_pb
from c360.events.v1 import sales_team_events_pb2 as team_pb
from c360_platform.contract import EventContract, Mapper, Published
from c360_platform.envelope import timestamp
from c360_platform.vocabulary import Words
from c360_sales.domain import (
    Activity,
    CustomerClasses,
    Lead,
    Opportunity,
    Order,
    Pipeline,
    PriceList,
    Product,
    Quote,
    SalesTeam,
    money_text,
    totals,
)

CHANNELS = Words(lead_pb.LeadChannel)
LEAD_STATES = Words(lead_pb.LeadState)
DISQUALIFY_REASONS = Words(lead_pb.DisqualifyReason)
RULES = Words(lead_pb.AssignmentRule)
FORECAST = Words(opp_pb.ForecastCategory)
OPPORTUNITY_STATES = Words(opp_pb.OpportunityState)
LOST_STATUSES = Words(opp_pb.LostStatus)
SCOPES = Words(price_pb.PriceScope)
COMPUTATIONS = Words(price_pb.PriceComputation)
BASES = Words(price_pb.PriceBase)
QUOTE_STATES = Words(quote_pb.QuoteState)
ORDER_STATES = Words(order_pb.OrderState)
ACTIVITY_KINDS = Words(act_pb.ActivityKind)
ACTIVITY_STATES = Words(act_pb.ActivityState)

Money = lead_pb.SalesMoney


def money(currency: str, amount: str) -> Any:
    return Money(currency=currency, amount=amount) if currency else None


def member_message(m: Mapping[str, Any]) -> team_pb.TeamMember:
    return team_pb.TeamMember(
        agent_id=m["agent_id"], territories=m["territories"], capacity=m["capacity"]
    )


def stage_message(s: Mapping[str, Any]) -> pipe_pb.PipelineStage:
    return pipe_pb.PipelineStage(
        key=s["key"], name=s["name"], probability=s["probability"], won=s["won"], lost=s["lost"]
    )


def rule_message(r: Mapping[str, str]) -> price_pb.PriceRule:
    return price_pb.PriceRule(
        rule_id=r["rule_id"],
        scope=SCOPES.value(r["scope"]),
        target=r["target"],
        min_quantity=r["min_quantity"],
        valid_from=r["valid_from"],
        valid_to=r["valid_to"],
        computation=COMPUTATIONS.value(r["computation"]),
        fixed_price=r["fixed_price"],
        discount_percent=r["discount_percent"],
        base=BASES.value_or_zero(r["base"]),
        base_price_list_id=r["base_price_list_id"],
        rounding=r["rounding"],
        surcharge=r["surcharge"],
        min_margin=r["min_margin"],
        max_margin=r["max_margin"],
    )


def quote_line_message(line: Mapping[str, str]) -> quote_pb.QuoteLine:
    return quote_pb.QuoteLine(
        **{k: line[k] for k in quote_pb.QuoteLine.DESCRIPTOR.fields_by_name if k in line}
    )


def order_line_message(line: Mapping[str, str]) -> order_pb.OrderLine:
    return order_pb.OrderLine(
        **{k: line[k] for k in order_pb.OrderLine.DESCRIPTOR.fields_by_name if k in line}
    )


def _lead_captured(e: Any) -> Any:
    return lead_pb.LeadCaptured(
        customer_id=e.customer_id,
        channel=CHANNELS.value(e.channel),
        campaign_id=e.campaign_id,
        source=e.source,
        person_name=e.person_name,
        company_name=e.company_name,
        email=e.email,
        phone=e.phone,
        position=e.position,
        industry=e.industry,
        territory=e.territory,
        interest_products=e.interest_products,
        estimated_value=money(e.estimated_currency, e.estimated_amount),
        description=e.description,
        team=e.team,
    )


_LEADS: dict[type, Mapper] = {
    Lead.Captured: _lead_captured,
    Lead.Assigned: lambda e: lead_pb.LeadAssigned(
        customer_id=e.customer_id,
        agent_id=e.agent_id,
        previous_agent_id=e.previous_agent_id,
        rule=RULES.value(e.rule),
        team=e.team,
    ),
    Lead.Qualified: lambda e: lead_pb.LeadQualified(customer_id=e.customer_id, note=e.note),
    Lead.Converted: lambda e: lead_pb.LeadConverted(
        customer_id=e.customer_id,
        customer_registered=e.customer_registered,
        opportunity_id=e.opportunity_id,
        channel=CHANNELS.value(e.channel),
        agent_id=e.agent_id,
        captured_at=e.captured_at,
        contact_person_id=getattr(e, "contact_person_id", ""),  # absent before it
    ),
    Lead.Disqualified: lambda e: lead_pb.LeadDisqualified(
        customer_id=e.customer_id,
        reason=DISQUALIFY_REASONS.value(e.reason),
        note=e.note,
        competitor=e.competitor,
    ),
    Lead.Reopened: lambda e: lead_pb.LeadReopened(customer_id=e.customer_id, reason=e.reason),
    Lead.Forgotten: lambda e: lead_pb.LeadForgotten(
        customer_id=e.customer_id, forgotten_at=timestamp(e.forgotten_at)
    ),
}

_TEAMS: dict[type, Mapper] = {
    SalesTeam.Defined: lambda e: team_pb.SalesTeamDefined(
        name=e.name, members=[member_message(m) for m in e.members]
    ),
    SalesTeam.Redefined: lambda e: team_pb.SalesTeamDefined(
        name=e.name, members=[member_message(m) for m in e.members]
    ),
    SalesTeam.LeadRouted: lambda e: team_pb.LeadRouted(
        lead_id=e.lead_id, agent_id=e.agent_id, rule=RULES.value(e.rule)
    ),
}

_PIPELINES: dict[type, Mapper] = {
    kind: lambda e: pipe_pb.PipelineDefined(
        name=e.name, team=e.team, stages=[stage_message(s) for s in e.stages]
    )
    for kind in (Pipeline.Defined, Pipeline.Redefined)
}


def _opened(e: Any) -> Any:
    return opp_pb.OpportunityOpened(
        customer_id=e.customer_id,
        name=e.name,
        pipeline_id=e.pipeline_id,
        stage=e.stage,
        owner_id=e.owner_id,
        amount=money(e.currency, e.amount),
        expected_close=e.expected_close,
        probability=e.probability,
        manual_probability=e.manual_probability,
        forecast_category=FORECAST.value(e.forecast_category),
        competitor=e.competitor,
        territory=e.territory,
        partner=e.partner,
        lead_id=e.lead_id,
        campaign_id=getattr(e, "campaign_id", ""),
    )


def _name(e: Any) -> str:
    """The opportunity's name an event repeats ("" in events recorded before they did)."""
    return str(getattr(e, "name", ""))


_OPPORTUNITIES: dict[type, Mapper] = {
    Opportunity.Opened: _opened,
    Opportunity.StageMoved: lambda e: opp_pb.OpportunityStageMoved(
        customer_id=e.customer_id,
        stage=e.stage,
        previous_stage=e.previous_stage,
        probability=e.probability,
        name=_name(e),
    ),
    Opportunity.Updated: lambda e: opp_pb.OpportunityUpdated(
        customer_id=e.customer_id,
        amount=money(e.currency, e.amount),
        expected_close=e.expected_close,
        probability=e.probability,
        manual_probability=e.manual_probability,
        forecast_category=FORECAST.value(e.forecast_category),
        competitor=e.competitor,
        territory=e.territory,
        partner=e.partner,
        owner_id=e.owner_id,
        name=_name(e),
    ),
    Opportunity.Won: lambda e: opp_pb.OpportunityWon(
        customer_id=e.customer_id,
        actual_amount=money(e.currency, e.actual_amount),
        stage=e.stage,
        closed_on=e.closed_on,
        name=_name(e),
    ),
    Opportunity.Lost: lambda e: opp_pb.OpportunityLost(
        customer_id=e.customer_id,
        reason=e.reason,
        competitor=e.competitor,
        stage=e.stage,
        closed_on=e.closed_on,
        status=LOST_STATUSES.value_or_zero(getattr(e, "status", "")),
        name=_name(e),
    ),
    Opportunity.PutOnHold: lambda e: opp_pb.OpportunityPutOnHold(
        customer_id=e.customer_id, reason=e.reason, name=_name(e)
    ),
    Opportunity.Resumed: lambda e: opp_pb.OpportunityResumed(
        customer_id=e.customer_id, name=_name(e)
    ),
    Opportunity.Reopened: lambda e: opp_pb.OpportunityReopened(
        customer_id=e.customer_id,
        stage=e.stage,
        reason=e.reason,
        probability=e.probability,
        name=_name(e),
        # "" (unset) in events recorded before the reopening repeated them
        owner_id=getattr(e, "owner_id", ""),
        amount=money(e.currency, e.amount) if getattr(e, "currency", "") else None,
        expected_close=getattr(e, "expected_close", ""),
    ),
}


def _product(e: Any) -> Any:
    return product_pb.ProductDefined(
        sku=e.sku,
        name=e.name,
        category=e.category,
        unit=e.unit,
        list_price=money(e.currency, e.list_price),
        cost=money(e.currency, e.cost),
        active=e.active,
    )


_PRODUCTS: dict[type, Mapper] = {Product.Defined: _product, Product.Redefined: _product}

_PRICE_LISTS: dict[type, Mapper] = {
    kind: lambda e: price_pb.PriceListDefined(
        name=e.name, currency=e.currency, rules=[rule_message(r) for r in e.rules]
    )
    for kind in (PriceList.Defined, PriceList.Redefined)
}

_QUOTES: dict[type, Mapper] = {
    Quote.Drafted: lambda e: quote_pb.QuoteDrafted(
        customer_id=e.customer_id,
        opportunity_id=e.opportunity_id,
        price_list_id=e.price_list_id,
        currency=e.currency,
        valid_until=e.valid_until,
        revision=e.revision,
        revises_quote_id=e.revises_quote_id,
    ),
    Quote.LineAdded: lambda e: quote_pb.QuoteLineAdded(
        customer_id=e.customer_id, line=quote_line_message(e.line)
    ),
    Quote.LineRemoved: lambda e: quote_pb.QuoteLineRemoved(
        customer_id=e.customer_id, line_id=e.line_id
    ),
    Quote.Sent: lambda e: quote_pb.QuoteSent(
        customer_id=e.customer_id,
        net_total=money(e.currency, e.net_total),
        tax_total=money(e.currency, e.tax_total),
        gross_total=money(e.currency, e.gross_total),
    ),
    Quote.Accepted: lambda e: quote_pb.QuoteAccepted(
        customer_id=e.customer_id,
        order_id=e.order_id,
        gross_total=money(e.currency, e.gross_total),
    ),
    Quote.Declined: lambda e: quote_pb.QuoteDeclined(customer_id=e.customer_id, reason=e.reason),
    Quote.Expired: lambda e: quote_pb.QuoteExpired(
        customer_id=e.customer_id, valid_until=e.valid_until
    ),
    Quote.Cancelled: lambda e: quote_pb.QuoteCancelled(customer_id=e.customer_id, reason=e.reason),
}


def _placed(e: Any) -> Any:
    t = totals(e.lines, e.currency)
    return order_pb.OrderPlaced(
        customer_id=e.customer_id,
        quote_id=e.quote_id,
        opportunity_id=e.opportunity_id,
        currency=e.currency,
        lines=[order_line_message({**line, "fulfilled_quantity": "0"}) for line in e.lines],
        net_total=money(e.currency, money_text(t.net, e.currency)),
        tax_total=money(e.currency, money_text(t.tax, e.currency)),
        gross_total=money(e.currency, money_text(t.gross, e.currency)),
        state=ORDER_STATES.value("planned"),
        order_number=e.order_number,
    )


_ORDERS: dict[type, Mapper] = {
    Order.Placed: _placed,
    Order.Confirmed: lambda e: order_pb.OrderConfirmed(
        customer_id=e.customer_id,
        order_number=e.order_number,
        currency=e.currency,
        lines=[order_line_message(line) for line in e.lines],
        gross_total=money(e.currency, e.gross_total),
    ),
    Order.FulfilmentRecorded: lambda e: order_pb.OrderFulfilmentRecorded(
        customer_id=e.customer_id,
        erp_event_id=e.erp_event_id,
        delivered=[
            order_pb.DeliveredQuantity(line_id=k, quantity=v)
            for k, v in sorted(e.delivered.items())
        ],
        complete=e.complete,
        fulfilled_amount=money(e.currency, e.fulfilled_amount),
        delivery_reference=e.delivery_reference,
    ),
    Order.Fulfilled: lambda e: order_pb.OrderFulfilled(
        customer_id=e.customer_id,
        gross_total=money(e.currency, e.gross_total),
        net_total=money(e.currency, e.net_total),
        product_ids=e.product_ids,
        fulfilled_on=e.fulfilled_on,
    ),
    Order.Invoiced: lambda e: order_pb.OrderInvoiced(
        customer_id=e.customer_id,
        erp_event_id=e.erp_event_id,
        invoice_number=e.invoice_number,
        amount=money(e.currency, e.amount),
        invoiced_total=money(e.currency, e.invoiced_total),
        invoice_status=e.invoice_status,
        issue_date=e.issue_date,
    ),
    Order.Unrealised: lambda e: order_pb.OrderUnrealised(
        customer_id=e.customer_id,
        reason=e.reason,
        previous_state=ORDER_STATES.value(e.previous_state),
    ),
}


_ACTIVITIES: dict[type, Mapper] = {
    Activity.Scheduled: lambda e: act_pb.ActivityScheduled(
        customer_id=e.customer_id,
        kind=ACTIVITY_KINDS.value(e.kind),
        subject=e.subject,
        due_at=timestamp(e.due_at),
        agent_id=e.agent_id,
        lead_id=e.lead_id,
        opportunity_id=e.opportunity_id,
        notes=e.notes,
        origin=e.origin,
    ),
    Activity.Rescheduled: lambda e: act_pb.ActivityRescheduled(
        customer_id=e.customer_id, due_at=timestamp(e.due_at), agent_id=e.agent_id
    ),
    Activity.Completed: lambda e: act_pb.ActivityCompleted(
        customer_id=e.customer_id, outcome=e.outcome
    ),
    Activity.Cancelled: lambda e: act_pb.ActivityCancelled(
        customer_id=e.customer_id, reason=e.reason
    ),
}


def _changes(items: list[dict[str, str]]) -> list[Any]:
    return [class_pb.CustomerClassChange(name=c["name"], reason=c["reason"]) for c in items]


_CLASSES: dict[type, Mapper] = {
    kind: lambda e: class_pb.CustomerClassesChanged(
        customer_id=e.customer_id,
        started=_changes(e.started),
        ended=_changes(e.ended),
        classes=_changes(e.classes),
    )
    for kind in (CustomerClasses.Classified, CustomerClasses.Reclassified)
}


def _customer(e: Any) -> str:
    return str(getattr(e, "customer_id", ""))


CONTRACT = EventContract(
    Published(Lead, "lead", _LEADS, customer=_customer),
    Published(SalesTeam, "sales_team", _TEAMS, customer=lambda e: ""),
    Published(Pipeline, "pipeline", _PIPELINES, customer=lambda e: ""),
    Published(Opportunity, "opportunity", _OPPORTUNITIES, customer=_customer),
    Published(Product, "product", _PRODUCTS, customer=lambda e: ""),
    Published(PriceList, "price_list", _PRICE_LISTS, customer=lambda e: ""),
    Published(Quote, "quote", _QUOTES, customer=_customer),
    Published(Order, "order", _ORDERS, customer=_customer),
    Published(Activity, "activity", _ACTIVITIES, customer=_customer),
    Published(CustomerClasses, "customer_classes", _CLASSES, customer=_customer),
)
"""Every sales event and its published message. Leads not yet linked to a customer, teams,
pipelines, products and price lists are about no customer (empty envelope customer_id)."""
