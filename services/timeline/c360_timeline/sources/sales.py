"""Sales (source `sales`): summaries of lead, opportunity, quote, order and activity events, and the
`sales` part of the profile, which clients read in Profile.attributes["sales"].

The part keeps the customer's open opportunities (with their weighted value, amount x
probability, summed per currency; `on_hold` true on one put on hold; the latest 20 won and
lost ones aside in `closed_opportunities`, for reopenings recorded before their event said
the deal's name, owner and amount), the agents' open activities, open quotes (draft or
sent), every order with its state
(`orders_by_state` counts them), the lifetime value (net value of fulfilled orders, per
currency), the last purchase, the products bought (SKUs), the responsible employee (owner of
the latest opportunity) and how many leads the customer came through. Events about no
customer (products, price lists, teams, pipelines, unlinked leads) never reach a profile.
Provenance paths: "sales.opportunities[<id>]", "sales.quotes[<id>]", "sales.orders[<id>]",
"sales.lifetime_value.<currency>", "sales.last_purchase", "sales.classes". The classes (key,
loyal, low_profit, trend_alert, debtor, each with its reason) are the sales service's
CustomerClassesChanged events, so `profile show --as-of` shows those of that date.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation

# Imported for their payload types: entry_for unpacks them from the envelopes.
from c360.events.v1 import sales_activity_events_pb2 as act_ev
from c360.events.v1 import (
    sales_classification_events_pb2,  # noqa: F401
    sales_pipeline_events_pb2,  # noqa: F401
    sales_price_list_events_pb2,  # noqa: F401
    sales_product_events_pb2,  # noqa: F401
    sales_quote_events_pb2,  # noqa: F401
    sales_team_events_pb2,  # noqa: F401
)
from c360.events.v1 import sales_events_pb2 as lead_ev
from c360.events.v1 import sales_opportunity_events_pb2 as opp_ev
from c360.events.v1 import sales_order_events_pb2 as order_ev
from c360_platform import currencies
from c360_platform.vocabulary import Words
from c360_timeline.projection import (
    Doc,
    Entry,
    Fold,
    SourcePlugin,
    copy_provenance,
    set_by,
    snippet,
    unset,
    with_reason,
)

SECTION = "sales"
CHANNELS = Words(lead_ev.LeadChannel)
REASONS = Words(lead_ev.DisqualifyReason)
RULES = Words(lead_ev.AssignmentRule)
FORECAST = Words(opp_ev.ForecastCategory)
LOST_STATUSES = Words(opp_ev.LostStatus)
ORDER_STATES = Words(order_ev.OrderState)
ACTIVITY_KINDS = Words(act_ev.ActivityKind)


def _money(m: Doc | None) -> str:
    if not m:
        return ""
    return f"{m.get('amount', '')} {m.get('currency', '')}".strip()


def _spoken(word: str) -> str:
    return {"email": "e-mail", "ivr": "IVR", "sms": "SMS"}.get(word, word.replace("_", " "))


def _dec(text: str) -> Decimal:
    try:
        return Decimal(text or "0")
    except InvalidOperation:
        return Decimal(0)


def _add(balances: Doc, currency: str, amount: str) -> None:
    balances[currency] = str(_dec(balances.get(currency, "0")) + _dec(amount))


# -- summaries ----------------------------------------------------------------------------------


def _captured(d: Doc) -> str:
    who = ", ".join(x for x in (d.get("person_name"), d.get("company_name")) if x)
    text = f"Lead captured by {_spoken(CHANNELS.of_name(d.get('channel', '')))}"
    text += f" from {who}" if who else ""
    if d.get("interest_products"):
        text += f", interested in {', '.join(d['interest_products'])}"
    if d.get("estimated_value"):
        text += f" (about {_money(d['estimated_value'])})"
    return text


def _lead_assigned(d: Doc) -> str:
    rule = RULES.of_name(d.get("rule", ""))
    how = f" by {_spoken(rule)}" if rule and rule != "manual" else ""
    return f"Lead assigned to {d.get('agent_id', '')}{how}"


def _converted(d: Doc) -> str:
    start = f"Lead captured by {_spoken(CHANNELS.of_name(d.get('channel', '')))}"
    if d.get("captured_at"):
        start += f" on {d['captured_at'][:10]}"
    if d.get("agent_id"):
        start += f", worked by {d['agent_id']},"
    text = f"{start} converted into an opportunity"
    if d.get("contact_person_id"):
        return text + " (customer registered for it, with its contact person)"
    return text + (" (customer registered for it)" if d.get("customer_registered") else "")


def _disqualified(d: Doc) -> str:
    text = f"Lead disqualified: {_spoken(REASONS.of_name(d.get('reason', '')))}"
    if d.get("competitor"):
        text += f" ({d['competitor']})"
    return text


def _opened(d: Doc) -> str:
    return (
        f"Opportunity “{d.get('name', '')}” opened: {_money(d.get('amount'))}"
        f" in stage {d.get('stage', '')} ({d.get('probability', 0)}%)"
    )


def _deal(d: Doc) -> str:
    """“Fleet renewal” (the opportunity's name the event repeats), or nothing."""
    return f" “{d['name']}”" if d.get("name") else ""


def _lost_status(d: Doc) -> str:
    """ ", canceled" or ", out-sold" (nothing for a loss recorded before the status)."""
    word = LOST_STATUSES.of_name(d.get("status", ""))
    return f", {word.replace('_', '-')}" if word else ""


def _line(d: Doc) -> str:
    line = d.get("line", {})
    return (
        f"Quote line added: {line.get('quantity', '')} x {line.get('sku', '')}"
        f" at {line.get('unit_price', '')}"
    )


SUMMARIES: dict[str, Callable[[Doc], str]] = {
    "c360.events.v1.LeadCaptured": _captured,
    "c360.events.v1.LeadAssigned": _lead_assigned,
    "c360.events.v1.LeadQualified": lambda d: (
        "Lead qualified" + (f": {snippet(d['note'])}" if d.get("note") else "")
    ),
    "c360.events.v1.LeadConverted": _converted,
    "c360.events.v1.LeadDisqualified": _disqualified,
    "c360.events.v1.LeadReopened": lambda d: with_reason("Lead reopened", d),
    "c360.events.v1.LeadForgotten": lambda d: "Lead forgotten with the customer",
    "c360.events.v1.SalesTeamDefined": lambda d: f"Sales team {d.get('name', '')} defined",
    "c360.events.v1.LeadRouted": lambda d: f"Lead routed to {d.get('agent_id', '')}",
    "c360.events.v1.PipelineDefined": lambda d: f"Pipeline {d.get('name', '')} defined",
    "c360.events.v1.OpportunityOpened": _opened,
    "c360.events.v1.OpportunityStageMoved": lambda d: (
        f"Opportunity{_deal(d)} moved from {d.get('previous_stage', '')} to {d.get('stage', '')}"
        f" ({d.get('probability', 0)}%)"
    ),
    "c360.events.v1.OpportunityUpdated": lambda d: (
        f"Opportunity{_deal(d)} updated: {_money(d.get('amount'))}, {d.get('probability', 0)}%,"
        f" {FORECAST.of_name(d.get('forecast_category', '')).replace('_', ' ')}"
    ),
    "c360.events.v1.OpportunityWon": lambda d: (
        f"Opportunity{_deal(d)} won: {_money(d.get('actual_amount'))}"
    ),
    "c360.events.v1.OpportunityLost": lambda d: (
        with_reason(f"Opportunity{_deal(d)} lost{_lost_status(d)}", d)
        + (f" (to {d['competitor']})" if d.get("competitor") else "")
    ),
    "c360.events.v1.OpportunityPutOnHold": lambda d: with_reason(
        f"Opportunity{_deal(d)} put on hold", d
    ),
    "c360.events.v1.OpportunityResumed": lambda d: f"Opportunity{_deal(d)} resumed after its hold",
    "c360.events.v1.OpportunityReopened": lambda d: with_reason(
        f"Opportunity{_deal(d)} reopened in stage {d.get('stage', '')}", d
    ),
    "c360.events.v1.ProductDefined": lambda d: f"Product {d.get('sku', '')} defined",
    "c360.events.v1.PriceListDefined": lambda d: f"Price list {d.get('name', '')} defined",
    "c360.events.v1.QuoteDrafted": lambda d: (
        f"Quote drafted (revision {d.get('revision', 1)}, {d.get('currency', '')})"
    ),
    "c360.events.v1.QuoteLineAdded": _line,
    "c360.events.v1.QuoteLineRemoved": lambda d: f"Quote line {d.get('line_id', '')} removed",
    "c360.events.v1.QuoteSent": lambda d: f"Quote sent: {_money(d.get('gross_total'))}",
    "c360.events.v1.QuoteAccepted": lambda d: (
        f"Quote accepted: {_money(d.get('gross_total'))}; order placed"
    ),
    "c360.events.v1.QuoteDeclined": lambda d: with_reason("Quote declined", d),
    "c360.events.v1.QuoteExpired": lambda d: f"Quote expired (valid until {d.get('valid_until')})",
    "c360.events.v1.QuoteCancelled": lambda d: with_reason("Quote cancelled", d),
    "c360.events.v1.OrderPlaced": lambda d: (
        f"Order {d.get('order_number', '')} placed: {_money(d.get('gross_total'))}"
    ),
    "c360.events.v1.OrderConfirmed": lambda d: (
        f"Order {d.get('order_number', '')} confirmed and sent to ERP"
    ),
    "c360.events.v1.OrderFulfilmentRecorded": lambda d: (
        f"Order {'delivered in full' if d.get('complete') else 'partly delivered'}"
        f" ({d.get('delivery_reference', '')}): {_money(d.get('fulfilled_amount'))} so far"
    ),
    "c360.events.v1.OrderFulfilled": lambda d: f"Order fulfilled: {_money(d.get('gross_total'))}",
    "c360.events.v1.OrderInvoiced": lambda d: (
        f"Order {d.get('invoice_status', 'invoiced')}: invoice {d.get('invoice_number', '')}"
        f" of {_money(d.get('amount'))}, {_money(d.get('invoiced_total'))} in all"
    ),
    "c360.events.v1.OrderUnrealised": lambda d: with_reason("Order unrealised", d),
    "c360.events.v1.ActivityScheduled": lambda d: (
        f"{_spoken(ACTIVITY_KINDS.of_name(d.get('kind', ''))).capitalize()} planned"
        f" for {d.get('agent_id') or 'nobody yet'}, due {str(d.get('due_at', ''))[:16]}:"
        f" {snippet(d.get('subject', ''))}"
    ),
    "c360.events.v1.ActivityRescheduled": lambda d: (
        f"Activity moved to {str(d.get('due_at', ''))[:16]} ({d.get('agent_id', '')})"
    ),
    "c360.events.v1.ActivityCompleted": lambda d: (
        "Activity done" + (f": {snippet(d['outcome'])}" if d.get("outcome") else "")
    ),
    "c360.events.v1.ActivityCancelled": lambda d: with_reason("Activity cancelled", d),
    "c360.events.v1.CustomerClassesChanged": lambda d: "; ".join(
        [
            *(
                f"Became {c['name'].replace('_', ' ')}: {c.get('reason', '')}"
                for c in d.get("started", [])
            ),
            *(f"No longer {c['name'].replace('_', ' ')}" for c in d.get("ended", [])),
        ]
    ),
}


# -- the sales part of the profile --------------------------------------------------------------


def empty_sales() -> Doc:
    return {
        "leads": 0,
        "opportunities": {},
        "closed_opportunities": {},
        "open_opportunity_count": 0,
        "open_weighted": {},
        "quotes": {},
        "orders": {},
        "orders_by_state": {},
        "lifetime_value": {},
        "last_purchase": None,
        "products_bought": [],
        "owner_id": "",
        "open_activities": {},
        "classes": {},
    }


def _recount(part: Doc) -> None:
    """The derived figures: open opportunities and their weighted value, orders by state."""
    weighted: Doc = {}
    for o in part["opportunities"].values():
        value = _dec(o["amount"]) * int(o["probability"]) / 100
        # Rounded to the currency's smallest unit, half up, as the sales service rounds.
        _add(weighted, o["currency"], str(currencies.rounded(value, o["currency"])))
    part["open_opportunity_count"] = len(part["opportunities"])
    part["open_weighted"] = weighted
    states: Doc = {}
    for order in part["orders"].values():
        states[order["state"]] = states.get(order["state"], 0) + 1
    part["orders_by_state"] = states


def _sales(fold: Callable[[Doc, Doc, Entry], None]) -> Fold:
    def run(p: Doc, entry: Entry) -> None:
        part = p[SECTION]
        fold(p, part, entry)
        _recount(part)

    return run


def _lead_captured(p: Doc, part: Doc, entry: Entry) -> None:
    part["leads"] += 1


def _lead_converted(p: Doc, part: Doc, entry: Entry) -> None:
    if not entry.details.get("customer_registered"):
        return
    part["leads"] = max(part["leads"], 1)


def _opportunity(o: Doc, d: Doc) -> None:
    amount = d.get("amount") or {}
    o.update(
        currency=amount.get("currency", o.get("currency", "")),
        amount=amount.get("amount", o.get("amount", "0")),
        probability=int(d.get("probability", o.get("probability", 0)) or 0),
        forecast_category=FORECAST.of_name(d.get("forecast_category", ""))
        or o.get("forecast_category", ""),
    )


def _opp_opened(p: Doc, part: Doc, entry: Entry) -> None:
    d = entry.details
    o = {"name": d.get("name", ""), "stage": d.get("stage", ""), "owner_id": d.get("owner_id", "")}
    _opportunity(o, d)
    part["opportunities"][entry.aggregate_id] = o
    part["owner_id"] = o["owner_id"] or part["owner_id"]
    set_by(p, f"sales.opportunities[{entry.aggregate_id}]", entry)


def _on_opportunity(change: Callable[[Doc, Doc], None]) -> Callable[[Doc, Doc, Entry], None]:
    def fold(p: Doc, part: Doc, entry: Entry) -> None:
        o = part["opportunities"].get(entry.aggregate_id)
        if o is not None:
            change(o, entry.details)
            set_by(p, f"sales.opportunities[{entry.aggregate_id}]", entry)

    return fold


CLOSED_KEPT = 20
"""Closed opportunities kept aside for a reopening, the latest closed: a reopening's event
says what the deal is (name, owner, amount) since it repeats them; kept ones serve those
recorded before, and the profile does not grow with every deal ever closed."""


def _keep_latest_closed(part: Doc) -> None:
    closed = part.setdefault("closed_opportunities", {})
    while len(closed) > CLOSED_KEPT:
        oldest = min(closed, key=lambda i: (closed[i].get("closed_at", ""), i))
        del closed[oldest]


def _opp_closed(p: Doc, part: Doc, entry: Entry) -> None:
    """A won or lost opportunity leaves the open ones; the latest closed are kept aside
    (name, owner, amount) for a reopening recorded before its event repeated them."""
    closed = part["opportunities"].pop(entry.aggregate_id, None)
    if closed is not None:
        closed.pop("on_hold", None)
        closed["closed_at"] = entry.occurred_at.isoformat()
        part.setdefault("closed_opportunities", {})[entry.aggregate_id] = closed
        _keep_latest_closed(part)
        unset(p, f"sales.opportunities[{entry.aggregate_id}]")


def _opp_reopened(p: Doc, part: Doc, entry: Entry) -> None:
    d = entry.details
    kept = part.setdefault("closed_opportunities", {}).pop(entry.aggregate_id, None)
    o = kept or {"name": "", "owner_id": "", "currency": "", "amount": "0"}
    o.pop("closed_at", None)
    for key in ("name", "owner_id"):
        o[key] = d.get(key) or o.get(key, "")
    if d.get("amount"):
        o.update(currency=d["amount"].get("currency", ""), amount=d["amount"].get("amount", "0"))
    o.update(
        stage=d.get("stage", ""),
        probability=int(d.get("probability", 0)),
        forecast_category="pipeline",
    )
    part["opportunities"][entry.aggregate_id] = o
    set_by(p, f"sales.opportunities[{entry.aggregate_id}]", entry)


def _quote_drafted(p: Doc, part: Doc, entry: Entry) -> None:
    part["quotes"][entry.aggregate_id] = {
        "state": "draft",
        "currency": entry.details.get("currency", ""),
        "gross_total": "",
    }
    set_by(p, f"sales.quotes[{entry.aggregate_id}]", entry)


def _quote_sent(p: Doc, part: Doc, entry: Entry) -> None:
    q = part["quotes"].get(entry.aggregate_id)
    if q is not None:
        q.update(
            state="sent", gross_total=(entry.details.get("gross_total") or {}).get("amount", "")
        )
        set_by(p, f"sales.quotes[{entry.aggregate_id}]", entry)


def _quote_closed(p: Doc, part: Doc, entry: Entry) -> None:
    if part["quotes"].pop(entry.aggregate_id, None) is not None:
        unset(p, f"sales.quotes[{entry.aggregate_id}]")


def _order_placed(p: Doc, part: Doc, entry: Entry) -> None:
    d = entry.details
    part["orders"][entry.aggregate_id] = {
        "order_number": d.get("order_number", ""),
        "state": "planned",
        "currency": d.get("currency", ""),
        "gross_total": (d.get("gross_total") or {}).get("amount", ""),
        "net_total": (d.get("net_total") or {}).get("amount", ""),
        "skus": sorted({line.get("sku", "") for line in d.get("lines", []) if line.get("sku")}),
        "placed_at": entry.occurred_at.isoformat(),
    }
    set_by(p, f"sales.orders[{entry.aggregate_id}]", entry)


def _order_state(state: str) -> Callable[[Doc, Doc, Entry], None]:
    def fold(p: Doc, part: Doc, entry: Entry) -> None:
        order = part["orders"].get(entry.aggregate_id)
        if order is not None:
            order["state"] = state
            set_by(p, f"sales.orders[{entry.aggregate_id}]", entry)

    return fold


def _order_fulfilled(p: Doc, part: Doc, entry: Entry) -> None:
    d = entry.details
    order = part["orders"].get(entry.aggregate_id)
    if order is None:
        return
    order["state"] = "fulfilled"
    set_by(p, f"sales.orders[{entry.aggregate_id}]", entry)
    net = d.get("net_total") or {}
    currency = net.get("currency", order["currency"])
    _add(part["lifetime_value"], currency, net.get("amount", order["net_total"]))
    set_by(p, f"sales.lifetime_value.{currency}", entry)
    part["last_purchase"] = {
        "order_id": entry.aggregate_id,
        "order_number": order["order_number"],
        "on": d.get("fulfilled_on", ""),
        "currency": currency,
        "amount": (d.get("gross_total") or {}).get("amount", order["gross_total"]),
    }
    set_by(p, "sales.last_purchase", entry)
    part["products_bought"] = sorted({*part["products_bought"], *order["skus"]})


def _order_invoiced(p: Doc, part: Doc, entry: Entry) -> None:
    order = part["orders"].get(entry.aggregate_id)
    if order is None:
        return
    d = entry.details
    order["invoiced_total"] = (d.get("invoiced_total") or {}).get("amount", "")
    order["invoice_status"] = d.get("invoice_status", "")
    order.setdefault("invoices", []).append(d.get("invoice_number", ""))
    set_by(p, f"sales.orders[{entry.aggregate_id}]", entry)


def _opportunity_updated(o: Doc, d: Doc) -> None:
    _opportunity(o, d)
    o["owner_id"] = d.get("owner_id", "")


def _activity_scheduled(p: Doc, part: Doc, entry: Entry) -> None:
    d = entry.details
    part.setdefault("open_activities", {})[entry.aggregate_id] = {
        "kind": ACTIVITY_KINDS.of_name(d.get("kind", "")),
        "subject": d.get("subject", ""),
        "due_at": d.get("due_at", ""),
        "agent_id": d.get("agent_id", ""),
    }


def _activity_rescheduled(p: Doc, part: Doc, entry: Entry) -> None:
    found = part.setdefault("open_activities", {}).get(entry.aggregate_id)
    if found is not None:
        found.update(
            due_at=entry.details.get("due_at", ""), agent_id=entry.details.get("agent_id", "")
        )


def _activity_closed(p: Doc, part: Doc, entry: Entry) -> None:
    part.setdefault("open_activities", {}).pop(entry.aggregate_id, None)


def _classes(p: Doc, part: Doc, entry: Entry) -> None:
    part["classes"] = {c["name"]: c.get("reason", "") for c in entry.details.get("classes", [])}
    set_by(p, "sales.classes", entry)


FOLDS: dict[str, Fold] = {
    kind: _sales(fold)
    for kind, fold in {
        "lead.captured": _lead_captured,
        "lead.converted": _lead_converted,
        "opportunity.opened": _opp_opened,
        "opportunity.stage_moved": _on_opportunity(
            lambda o, d: o.update(
                stage=d.get("stage", ""), probability=int(d.get("probability", 0))
            )
        ),
        "opportunity.updated": _on_opportunity(_opportunity_updated),
        "opportunity.put_on_hold": _on_opportunity(lambda o, d: o.update(on_hold=True)),
        "opportunity.resumed": _on_opportunity(lambda o, d: o.pop("on_hold", None)),
        "opportunity.won": _opp_closed,
        "opportunity.lost": _opp_closed,
        "opportunity.reopened": _opp_reopened,
        "quote.drafted": _quote_drafted,
        "quote.sent": _quote_sent,
        "quote.accepted": _quote_closed,
        "quote.declined": _quote_closed,
        "quote.expired": _quote_closed,
        "quote.cancelled": _quote_closed,
        "order.placed": _order_placed,
        "order.confirmed": _order_state("pending"),
        "order.fulfilled": _order_fulfilled,
        "order.invoiced": _order_invoiced,
        "order.unrealised": _order_state("unrealised"),
        "activity.scheduled": _activity_scheduled,
        "activity.rescheduled": _activity_rescheduled,
        "activity.completed": _activity_closed,
        "activity.cancelled": _activity_closed,
        "customer_classes.changed": _classes,
    }.items()
}


def join(p: Doc, other: Doc) -> None:
    """Opportunities, quotes and orders of both (the survivor's first); values summed per
    currency; the later last purchase; products bought of both."""
    part, theirs = p[SECTION], other[SECTION]
    part["leads"] += theirs["leads"]
    for key in ("opportunities", "quotes", "orders"):
        for item_id, item in theirs[key].items():
            if item_id not in part[key]:
                part[key][item_id] = item
                copy_provenance(p, other, f"sales.{key}[{item_id}]")
    kept = part.setdefault("closed_opportunities", {})
    for item_id, item in theirs.get("closed_opportunities", {}).items():
        kept.setdefault(item_id, item)
    _keep_latest_closed(part)
    for currency, amount in theirs["lifetime_value"].items():
        if currency not in part["lifetime_value"]:
            copy_provenance(p, other, f"sales.lifetime_value.{currency}")
        _add(part["lifetime_value"], currency, amount)
    mine, their_last = part["last_purchase"], theirs["last_purchase"]
    if their_last and (not mine or their_last["on"] > mine["on"]):
        part["last_purchase"] = their_last
        copy_provenance(p, other, "sales.last_purchase")
    part["products_bought"] = sorted({*part["products_bought"], *theirs["products_bought"]})
    part["owner_id"] = part["owner_id"] or theirs["owner_id"]
    classes = part.setdefault("classes", {})
    for name, reason in theirs.get("classes", {}).items():
        classes.setdefault(name, reason)
    mine = part.setdefault("open_activities", {})
    for activity_id, activity in theirs.get("open_activities", {}).items():
        mine.setdefault(activity_id, activity)
    _recount(part)


PLUGIN = SourcePlugin(
    name="sales",
    summaries=SUMMARIES,
    folds=FOLDS,
    section=SECTION,
    empty_section=empty_sales,
    join=join,
)
