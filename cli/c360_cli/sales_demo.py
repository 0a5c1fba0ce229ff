"""The sales part of `c360 demo`: a catalogue, two price lists, a pipeline and a field team,
then leads from every channel for a share of the customers (all organisations, a quarter of
the people), worked through assignment, qualification and conversion into opportunities that
move through the stages and end won (quote, order, ERP delivery), lost, declined or still
open (some of those on hold); and prospects' leads that never became customers. Data in
data/sales_demo.toml.

Like the rest of the demo, the plan is a function of (seed, customer index) and every command
carries a request id made of them, so running the demo again replays instead of doubling.
The demo plays ERP for its own orders: it answers each confirmed order on erp.order.delivered
(some in two deliveries) as the `erp` NATS user of endpoints.json, and invoices it on
erp.invoice.issued naming the order (an order delivered in two parts: its first line only, so
that it stays partly invoiced).
"""

from __future__ import annotations

import json
import random
import tomllib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import nats
from google.protobuf.timestamp_pb2 import Timestamp

from c360.erp.v1 import erp_events_pb2 as erp
from c360.events.v1 import sales_events_pb2 as lev
from c360.events.v1 import sales_order_events_pb2 as oev
from c360.sales.v1 import sales_service_pb2 as sapi
from c360.sales.v1.sales_service_pb2_grpc import SalesServiceStub
from c360_cli.sales_cmds import (
    ACTIVITY_KINDS,
    CHANNELS,
    FORECAST,
    REASONS,
    RULES,
    parse_member,
    parse_rule,
    parse_stage,
)
from c360_platform import natsauth

SALES = "sales"
OUT_SOLD = "chose a competitor"
"""The demo's lost reason (data/sales_demo.toml) of a deal a competitor got: out-sold, with
the competitor; the others are canceled."""
_ERP_NAMESPACE = uuid.UUID("3e1c0d5a-7b6f-4c36-a1e2-c360de30e7b1")


@cache
def data() -> dict[str, Any]:
    text = resources.files("c360_cli").joinpath("data", "sales_demo.toml").read_text("utf-8")
    return tomllib.loads(text)


def _weighted(rng: random.Random, choices: dict[str, float]) -> str:
    return rng.choices(list(choices), weights=list(choices.values()))[0]


CLOSE_FROM = date(2027, 1, 1)
"""Expected close dates fall in the twelve months from here (fixed, so a re-run replays)."""


@dataclass
class DealPlan:
    """One lead of a customer and what becomes of it."""

    index: int
    channel: str
    campaign: str
    territory: str
    industry: str
    position: str
    rule: str
    outcome: str
    products: list[tuple[str, int]]
    stages: list[str]
    close: str
    probability: int | None
    category: str
    competitor: str
    reason: str
    price_list: str
    split_delivery: bool
    disqualify: str = ""


@dataclass
class SalesStats:
    leads: int = 0
    opportunities: int = 0
    won: int = 0
    lost: int = 0
    open: int = 0
    on_hold: int = 0
    orders: int = 0
    deliveries: int = 0
    invoices: int = 0
    prospects: int = 0
    forgotten_leads: int = 0
    activities: int = 0
    examples: dict[str, str] = field(default_factory=dict)


def deal_plan(index: int, country: str, organisation: bool, seed: int) -> DealPlan | None:
    """Customer `index`'s lead and deal, or None (most people buy nothing in the demo)."""
    rng = random.Random(f"c360-demo-sales:{seed}:{index}")
    if not organisation and rng.random() >= 0.25:
        return None
    d = data()
    channel = _weighted(rng, d["lead_channels"])
    outcome = _weighted(rng, d["outcomes"])
    products = [
        (p["sku"], rng.choice((1, 2, 5, 10, 12, 20)))
        for p in rng.sample(d["products"], rng.randint(1, 3))
    ]
    open_stages = [s.split(":")[0] for s in d["pipeline"]["stages"] if s.split(":")[1].isdigit()]
    depth = len(open_stages) - 1 if outcome in ("won", "declined") else rng.randint(0, 3)
    month = rng.randint(0, 11)
    return DealPlan(
        index=index,
        channel=channel,
        campaign=rng.choice(d["campaigns"]) if channel == "campaign" else "",
        territory=d["territories"].get(country, "de-south"),
        industry=rng.choice(d["industries"]),
        position=rng.choice(d["positions"]),
        rule="territory" if rng.random() < 0.7 else "round_robin",
        outcome=outcome,
        products=products,
        stages=open_stages[1 : depth + 1],
        close=date(CLOSE_FROM.year + (month // 12), month % 12 + 1, rng.randint(1, 28)).isoformat(),
        probability=rng.choice((None, None, None, 35, 60, 90)),
        category=rng.choice(("", "", "best_case", "commit", "omitted")),
        competitor=rng.choice(d["competitors"]),
        reason=rng.choice(d["lost_reasons"]),
        price_list="partner" if channel == "partner" else "standard",
        split_delivery=rng.random() < 0.3,
        disqualify=rng.choice(d["disqualify_reasons"]),
    )


class SalesDemo:
    """Runs the sales phases on a `c360_cli.demo.DemoRun` (its calls, ids and progress)."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.stats = SalesStats()
        self.orders: list[tuple[str, bool]] = []
        self.deals: list[DealPlan] = []
        for p in run.plans:
            country = p.addresses[0].country if p.addresses else "DE"
            deal = deal_plan(p.index, country, p.kind == "organisation", run.seed)
            if deal is not None:
                self.deals.append(deal)

    def stub(self) -> Any:
        return self.run.client.stub(SALES, SalesServiceStub)

    async def call(self, method: str, request: Any, what: str, index: int, step: str) -> Any:
        request.request_id = self.run.rid(index, f"sales-{step}")
        return await self.run.call(getattr(self.stub(), method), request, what, SALES, of=index)

    async def setup(self) -> None:
        d = data()
        for p in d["products"]:
            await self.call(
                "DefineProduct",
                sapi.DefineProductRequest(
                    sku=p["sku"],
                    name=p["name"],
                    category=p["category"],
                    unit=p["unit"],
                    list_price=lev.SalesMoney(currency=d["currency"], amount=p["price"]),
                    cost=p["cost"],
                ),
                "define a product",
                0,
                f"product-{p['sku']}",
            )
        for name, spec in d["price_lists"].items():
            await self.call(
                "DefinePriceList",
                sapi.DefinePriceListRequest(
                    name=name, currency=d["currency"], rules=[parse_rule(r) for r in spec["rules"]]
                ),
                "define a price list",
                0,
                f"pricelist-{name}",
            )
        pipe = d["pipeline"]
        await self.call(
            "DefinePipeline",
            sapi.DefinePipelineRequest(
                name=pipe["name"],
                team=pipe["team"],
                stages=[parse_stage(s) for s in pipe["stages"]],
            ),
            "define the pipeline",
            0,
            "pipeline",
        )
        team = d["team"]
        await self.call(
            "DefineSalesTeam",
            sapi.DefineSalesTeamRequest(
                name=team["name"], members=[parse_member(m) for m in team["members"]]
            ),
            "define the team",
            0,
            "team",
        )

    def deal_script(self, deal: DealPlan) -> Any:
        async def script() -> None:
            await self.deal(deal)

        return script

    async def deal(self, deal: DealPlan) -> None:
        i, plan = deal.index, self.run.plans[deal.index]
        estimate = sum(
            int(qty) * float(next(p["price"] for p in data()["products"] if p["sku"] == sku))
            for sku, qty in deal.products
        )
        lead = await self.call(
            "CaptureLead",
            sapi.CaptureLeadRequest(
                channel=CHANNELS.value(deal.channel.replace("_", "-")),
                campaign_id=deal.campaign,
                source=f"demo {deal.channel.replace('_', ' ')}",
                customer_id=self.run.ids[i],
                person_name="" if plan.kind == "organisation" else plan.name,
                company_name=plan.name if plan.kind == "organisation" else "",
                email=plan.emails[0] if plan.emails else "",
                position=deal.position,
                industry=deal.industry,
                territory=deal.territory,
                interest_products=[sku for sku, _ in deal.products],
                estimated_value=lev.SalesMoney(
                    currency=data()["currency"], amount=f"{estimate:.2f}"
                ),
                team=data()["team"]["name"],
            ),
            "capture a lead",
            i,
            "lead",
        )
        self.stats.leads += 1
        lead_id = lead.result.aggregate_id
        assigned = await self.call(
            "AssignLead",
            sapi.AssignLeadRequest(lead_id=lead_id, rule=RULES.value(deal.rule.replace("_", "-"))),
            "assign a lead",
            i,
            "assign",
        )
        if deal.outcome == "disqualified":
            await self.call(
                "DisqualifyLead",
                sapi.DisqualifyLeadRequest(
                    lead_id=lead_id,
                    reason=REASONS.value(deal.disqualify.replace("_", "-")),
                    competitor=deal.competitor if deal.disqualify == "lost_to_competitor" else "",
                ),
                "disqualify a lead",
                i,
                "disqualify",
            )
            return
        await self.call(
            "QualifyLead", sapi.QualifyLeadRequest(lead_id=lead_id), "qualify", i, "qualify"
        )
        converted = await self.call(
            "ConvertLead",
            sapi.ConvertLeadRequest(
                lead_id=lead_id,
                customer_id=self.run.ids[i],
                pipeline_id=data()["pipeline"]["name"],
                expected_close=deal.close,
            ),
            "convert a lead",
            i,
            "convert",
        )
        oid = converted.opportunity_id
        self.stats.opportunities += 1
        self.stats.examples.setdefault("opportunity", oid)
        for stage in deal.stages:
            await self.call(
                "MoveOpportunityStage",
                sapi.MoveOpportunityStageRequest(opportunity_id=oid, stage=stage),
                "move a stage",
                i,
                f"stage-{stage}",
            )
        if deal.probability is not None or deal.category:
            update = sapi.UpdateOpportunityRequest(opportunity_id=oid)
            if deal.probability is not None:
                update.probability = deal.probability
            if deal.category:
                update.forecast_category = FORECAST.value(deal.category.replace("_", "-"))
            await self.call("UpdateOpportunity", update, "update an opportunity", i, "update")
        if deal.outcome == "open":
            self.stats.open += 1
            await self.call(
                "ScheduleActivity",
                sapi.ScheduleActivityRequest(
                    kind=ACTIVITY_KINDS.value("call" if deal.split_delivery else "meeting"),
                    subject=f"Next step on {plan.name}",
                    due_at=_due(deal.close),
                    agent_id=assigned.agent_id,
                    opportunity_id=oid,
                    customer_id=self.run.ids[i],
                ),
                "schedule an activity",
                i,
                "activity",
            )
            self.stats.activities += 1
            if deal.split_delivery:  # some of the open deals wait for the customer
                await self.call(
                    "HoldOpportunity",
                    sapi.HoldOpportunityRequest(
                        opportunity_id=oid, reason="the customer's budget is decided in January"
                    ),
                    "put an opportunity on hold",
                    i,
                    "hold",
                )
                self.stats.on_hold += 1
            return
        if deal.outcome == "lost":
            await self.lose(i, oid, deal)
            return
        await self.quote(i, oid, deal)

    async def lose(self, i: int, oid: str, deal: DealPlan) -> None:
        await self.call(
            "LoseOpportunity",
            sapi.LoseOpportunityRequest(  # out-sold only when a competitor got it
                opportunity_id=oid,
                reason=deal.reason,
                competitor=deal.competitor if deal.reason == OUT_SOLD else "",
            ),
            "lose an opportunity",
            i,
            "lose",
        )
        self.stats.lost += 1

    async def quote(self, i: int, oid: str, deal: DealPlan) -> None:
        drafted = await self.call(
            "DraftQuote",
            sapi.DraftQuoteRequest(opportunity_id=oid, price_list=deal.price_list),
            "draft a quote",
            i,
            "quote",
        )
        qid = drafted.result.aggregate_id
        for n, (sku, qty) in enumerate(deal.products):
            await self.call(
                "AddQuoteLine",
                sapi.AddQuoteLineRequest(
                    quote_id=qid, product=sku, quantity=str(qty), tax_rate="19"
                ),
                "add a quote line",
                i,
                f"quote-line-{n}",
            )
        await self.call("SendQuote", sapi.SendQuoteRequest(quote_id=qid), "send a quote", i, "send")
        if deal.outcome == "declined":
            await self.call(
                "DeclineQuote",
                sapi.DeclineQuoteRequest(quote_id=qid, reason=deal.reason),
                "decline a quote",
                i,
                "decline",
            )
            await self.lose(i, oid, deal)
            return
        accepted = await self.call(
            "AcceptQuote", sapi.AcceptQuoteRequest(quote_id=qid), "accept a quote", i, "accept"
        )
        await self.call(
            "WinOpportunity", sapi.WinOpportunityRequest(opportunity_id=oid), "win", i, "win"
        )
        self.stats.won += 1
        self.stats.orders += 1
        self.orders.append((accepted.order_id, deal.split_delivery))
        self.stats.examples.setdefault("order", accepted.order_id)
        self.stats.examples.setdefault("customer", self.run.ids[i])

    def prospect_script(self, n: int) -> Any:
        """A lead from someone who is not a customer: left new, or disqualified; the first
        prospect's contact asks to be forgotten (ForgetLead)."""

        async def script() -> None:
            rng = random.Random(f"c360-demo-prospect:{self.run.seed}:{n}")
            d = data()
            index = len(self.run.plans) + n
            person, email = self.run.contact_person(index, rng)
            lead = await self.call(
                "CaptureLead",
                sapi.CaptureLeadRequest(
                    channel=CHANNELS.value("campaign"),
                    campaign_id=rng.choice(d["campaigns"]),
                    source="demo lead list",
                    company_name=f"Prospect {n + 1} {rng.choice(d['industries']).title()} Ltd",
                    person_name=person,
                    email=email,
                    industry=rng.choice(d["industries"]),
                    position=rng.choice(d["positions"]),
                    territory=rng.choice(list(d["territories"].values())),
                    team=d["team"]["name"],
                ),
                "capture a prospect's lead",
                index,
                "prospect",
            )
            if n == 0:
                await self.call(
                    "ForgetLead",
                    sapi.ForgetLeadRequest(lead_id=lead.result.aggregate_id),
                    "forget a prospect's lead",
                    index,
                    "prospect-forget",
                )
                self.stats.forgotten_leads += 1
                self.stats.examples.setdefault("forgotten_lead", lead.result.aggregate_id)
            elif rng.random() < 0.5:
                await self.call(
                    "DisqualifyLead",
                    sapi.DisqualifyLeadRequest(
                        lead_id=lead.result.aggregate_id,
                        reason=REASONS.value(rng.choice(d["disqualify_reasons"]).replace("_", "-")),
                    ),
                    "disqualify a prospect's lead",
                    index,
                    "prospect-disqualify",
                )
            self.stats.prospects += 1

        return script

    async def deliver(self) -> None:
        """Play ERP: deliver every pending demo order (some in two parts) on erp.order.delivered."""
        url = _erp_nats_url(Path(self.run.client.endpoints.source))
        if not url or not self.orders:
            return
        nc = await nats.connect(url, name="c360-demo-erp", **natsauth.client_options(url))
        try:
            js = nc.jetstream()
            for order_id, split in self.orders:
                reply = await self.run.retrying(
                    self.stub().GetOrder,
                    sapi.GetOrderRequest(order_id=order_id),
                    "get an order",
                    SALES,
                )
                order = reply.order
                if order.state != oev.ORDER_STATE_PENDING:
                    continue
                parts = [[(x.line_id, x.quantity) for x in order.lines]]
                if split and len(order.lines) > 1:
                    parts = [parts[0][:1], parts[0][1:]]
                for n, lines in enumerate(parts):
                    event = _delivery(order, n, lines)
                    await js.publish(
                        "erp.order.delivered",
                        event.SerializeToString(),
                        headers={"Nats-Msg-Id": event.event_id},
                    )
                    self.stats.deliveries += 1
                invoice = _invoice(order, order.lines[:1] if len(parts) > 1 else order.lines)
                await js.publish(
                    "erp.invoice.issued",
                    invoice.SerializeToString(),
                    headers={"Nats-Msg-Id": invoice.event_id},
                )
                self.stats.invoices += 1
            if self.orders:
                # An ERP that writes a date its own way: c360 refuses the message and keeps it
                # as a dead letter with the reason (`c360 deadletter list`, then `replay`).
                # About the same order in every run (its message id too: JetStream drops a
                # repeat), not the first to be accepted this time (which order varied).
                order_id, _ = min(self.orders)
                reply = await self.run.retrying(
                    self.stub().GetOrder,
                    sapi.GetOrderRequest(order_id=order_id),
                    "get an order",
                    SALES,
                )
                lines = [(x.line_id, x.quantity) for x in reply.order.lines]
                bad = _delivery(reply.order, 99, lines)
                bad.order_delivered.delivered_on = date.today().strftime("%d/%m/%Y")
                await js.publish(
                    "erp.order.delivered",
                    bad.SerializeToString(),
                    headers={"Nats-Msg-Id": bad.event_id},
                )
        finally:
            await nc.close()

    async def phases(self) -> None:
        """Every sales phase, after the customers exist."""
        extra = 5 + len(data()["products"]) + sum(9 for _ in self.deals) + len(self.run.plans) // 5
        self.run.progress.update(self.run.task, total=self.run.progress.tasks[0].total + extra)
        await self.run.phase("sales catalogue", [self.setup])
        await self.run.phase("leads and deals", [self.deal_script(d) for d in self.deals])
        prospects = max(1, len(self.run.plans) // 10)
        await self.run.phase(
            "prospects' leads", [self.prospect_script(n) for n in range(prospects)]
        )
        await self.run.phase("ERP delivers orders", [self.deliver])

    def summary(self) -> dict[str, Any]:
        s = self.stats
        return {
            "sales_leads": s.leads + s.prospects,
            "forgotten_leads": s.forgotten_leads,
            "opportunities": s.opportunities,
            "won": s.won,
            "lost": s.lost,
            "still_open": s.open,
            "on_hold": s.on_hold,
            "orders": s.orders,
            "erp_deliveries": s.deliveries,
            "erp_order_invoices": s.invoices,
            "activities": s.activities,
            "sales_examples": dict(s.examples),
        }


def _due(close: str) -> Timestamp:
    """The activity's due time: two weeks before the expected close, at 09:00 UTC."""
    day = date.fromisoformat(close) - timedelta(days=14)
    ts = Timestamp()
    ts.FromDatetime(datetime(day.year, day.month, day.day, 9, tzinfo=UTC))
    return ts


def _delivery(order: Any, n: int, lines: list[tuple[str, str]]) -> erp.ErpEvent:
    event = erp.ErpEvent(
        event_id=str(uuid.uuid5(_ERP_NAMESPACE, f"{order.order_id}:{n}")),
        customer_id=order.customer_id,
        erp_system="c360-demo",
    )
    event.occurred_at.GetCurrentTime()
    event.order_delivered.CopyFrom(
        erp.OrderDelivered(
            order_id=order.order_id,
            order_number=order.order_number,
            delivery_reference=f"DN-{order.order_number.removeprefix('SO-')}-{n + 1}",
            delivered_on=date.today().isoformat(),
            lines=[erp.DeliveredLine(line_id=line_id, quantity=q) for line_id, q in lines],
        )
    )
    return event


def _invoice(order: Any, lines: Any) -> erp.ErpEvent:
    """ERP's invoice of these lines of the order (net plus tax, the tax rounded per line as
    sales rounds it, in the order's currency), due in 30 days."""
    places = Decimal(1).scaleb(-len(order.gross_total.amount.partition(".")[2]))
    amount = sum(
        (
            Decimal(x.net_amount)
            + (Decimal(x.net_amount) * Decimal(x.tax_rate or "0") / 100).quantize(
                places, ROUND_HALF_UP
            )
            for x in lines
        ),
        Decimal(0),
    )
    event = erp.ErpEvent(
        event_id=str(uuid.uuid5(_ERP_NAMESPACE, f"{order.order_id}:invoice")),
        customer_id=order.customer_id,
        erp_system="c360-demo",
    )
    event.occurred_at.GetCurrentTime()
    today = date.today()
    event.invoice_issued.CopyFrom(
        erp.InvoiceIssued(
            invoice_number=f"INV-{order.order_number.removeprefix('SO-')}",
            amount=erp.Money(currency=order.currency, amount=str(amount)),
            issue_date=today.isoformat(),
            due_date=(today + timedelta(days=30)).isoformat(),
            order_id=order.order_id,
        )
    )
    return event


def _erp_nats_url(endpoints: Path) -> str:
    """The `erp` user's NATS URL from endpoints.json (else its nats_url), "" if none."""
    try:
        doc = json.loads(endpoints.read_text())
    except (OSError, ValueError):
        return ""
    users = doc.get("nats_users") if isinstance(doc, dict) else None
    if isinstance(users, dict) and isinstance(users.get("erp"), str):
        return str(users["erp"])
    return str(doc.get("nats_url", "")) if isinstance(doc, dict) else ""
