"""The example ERP bridge delivers a confirmed sales order against a `c360 up` stack with
NATS permissions on: ERP reads c360.sales.order.confirmed as the `erp` user, answers on
erp.order.delivered, the sales service (its own user, reading the ERP stream) fulfils the
order, and the customer's profile shows the lifetime value."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import nats
import pytest

from c360.erp.v1 import erp_events_pb2 as erp

from .test_erp_bridge import bridge, c360
from .test_erp_bridge import home as home  # a fixture: `c360 up` in a home of its own

pytestmark = pytest.mark.integration


def _until(check: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            assert found, f"timed out waiting for {what}"
            return found
        time.sleep(0.2)


def test_a_confirmed_order_goes_to_the_erp_bridge_and_its_delivery_fulfils_it(
    home: Path,
) -> None:
    c360(home, "product", "define", "SUPPORT-YEAR", "--name", "Support", "--category", "services",
         "--price", "1200", "--currency", "EUR", "--cost", "300")  # fmt: skip
    c360(home, "pricelist", "define", "standard", "--currency", "EUR")
    c360(home, "pipeline", "define", "default", "--stage", "new:20", "--stage", "won:won")
    lead = c360(home, "lead", "capture", "--channel", "web-form", "--company", "Dupont SA",
                "--email", "achats@dupont.fr")  # fmt: skip
    lead_id = lead["lead_id"]
    c360(home, "lead", "qualify", lead_id)
    converted = c360(home, "lead", "convert", lead_id, "--register", "--pipeline", "default",
                     "--amount", "2400", "--currency", "EUR")  # fmt: skip
    customer_id = converted["customer_id"]
    quote = c360(home, "quote", "draft", "--opportunity", converted["opportunity_id"],
                 "--pricelist", "standard")  # fmt: skip
    c360(home, "quote", "add", quote["quote_id"], "--product", "SUPPORT-YEAR", "--qty", "2")
    c360(home, "quote", "send", quote["quote_id"])
    order_id = c360(home, "quote", "accept", quote["quote_id"])["order_id"]

    assert bridge(home, "deliver", "--drain") == {"orders_delivered": 1}
    order = _until(
        lambda: (o := c360(home, "order", "show", order_id))["state"] == "fulfilled" and o,
        "the order to be fulfilled",
    )
    assert order["lines"][0]["fulfilled_quantity"] == "2"
    profile = _until(
        lambda: (
            (p := c360(home, "profile", "show", customer_id))["attributes"]
            .get("sales", {})
            .get("lifetime_value")
            and p
        ),
        "the profile's lifetime value",
    )
    assert profile["attributes"]["sales"]["lifetime_value"] == {"EUR": "2400.00"}
    assert c360(home, "verify")["ok"] is True


def _order(home: Path, company: str, email: str) -> tuple[str, str]:
    """A customer's confirmed order of two SUPPORT-YEAR: (customer id, order id)."""
    lead_id = c360(home, "lead", "capture", "--channel", "web-form", "--company", company,
                   "--email", email)["lead_id"]  # fmt: skip
    c360(home, "lead", "qualify", lead_id)
    converted = c360(home, "lead", "convert", lead_id, "--register", "--pipeline", "default",
                     "--amount", "2400", "--currency", "EUR")  # fmt: skip
    quote = c360(home, "quote", "draft", "--opportunity", converted["opportunity_id"],
                 "--pricelist", "standard")  # fmt: skip
    c360(home, "quote", "add", quote["quote_id"], "--product", "SUPPORT-YEAR", "--qty", "2")
    c360(home, "quote", "send", quote["quote_id"])
    return converted["customer_id"], c360(home, "quote", "accept", quote["quote_id"])["order_id"]


async def _deliver_elsewhere(home: Path, order: dict[str, Any], customer_id: str) -> None:
    """Another ERP (the demo plays one) delivers the order: its own event id and reference."""
    url = json.loads((home / "endpoints.json").read_text())["nats_users"]["erp"]
    event = erp.ErpEvent(event_id=str(uuid.uuid4()), customer_id=customer_id, erp_system="other")
    event.occurred_at.GetCurrentTime()
    event.order_delivered.CopyFrom(
        erp.OrderDelivered(
            order_id=order["order_id"],
            order_number=order["order_number"],
            delivery_reference="DN-ELSEWHERE-1",
            delivered_on=date.today().isoformat(),
            lines=[
                erp.DeliveredLine(line_id=x["line_id"], quantity=x["quantity"])
                for x in order["lines"]
            ],
        )
    )
    nc = await nats.connect(url, inbox_prefix="_INBOX_erp")
    try:
        await nc.jetstream().publish(
            "erp.order.delivered",
            event.SerializeToString(),
            headers={"Nats-Msg-Id": event.event_id},
        )
    finally:
        await nc.close()


def test_the_bridge_delivers_only_the_orders_still_open(home: Path) -> None:
    """An order another ERP delivered (as the demo does its own) is not delivered again:
    the bridge's order book sees it fulfilled, and the customer's timeline shows one
    delivery of it; the order still open is delivered, once."""
    c360(home, "product", "define", "SUPPORT-YEAR", "--name", "Support", "--category", "services",
         "--price", "1200", "--currency", "EUR", "--cost", "300")  # fmt: skip
    c360(home, "pricelist", "define", "standard", "--currency", "EUR")
    c360(home, "pipeline", "define", "default", "--stage", "new:20", "--stage", "won:won")
    done_customer, done_id = _order(home, "Dupont SA", "achats@dupont.fr")
    open_customer, open_id = _order(home, "Martin SARL", "achats@martin.fr")

    asyncio.run(_deliver_elsewhere(home, c360(home, "order", "show", done_id), done_customer))

    def entries(customer_id: str, kind: str) -> list[Any]:
        shown = c360(home, "timeline", "show", customer_id)["entries"]
        return [e for e in shown if e["type"] == kind]

    # On the stream, as the timeline shows it: the bridge's consumer reads it from there.
    _until(lambda: entries(done_customer, "order.fulfilled"), "the delivered order fulfilled")

    assert bridge(home, "deliver", "--drain") == {"orders_delivered": 1}
    _until(
        lambda: c360(home, "order", "show", open_id)["state"] == "fulfilled",
        "the open order to be fulfilled",
    )
    assert bridge(home, "deliver", "--drain") == {"orders_delivered": 0}
    _until(lambda: entries(open_customer, "order.fulfilled"), "the open order's fulfilment")
    [delivered] = [e for e in entries(done_customer, "order.delivered") if e["source"] == "erp"]
    assert "DN-ELSEWHERE-1" in delivered["summary"]
    assert len([e for e in entries(open_customer, "order.delivered") if e["source"] == "erp"]) == 1
    assert c360(home, "order", "show", done_id)["lines"][0]["fulfilled_quantity"] == "2"


def test_an_orders_invoices_show_on_it_and_one_in_another_currency_is_refused(
    home: Path,
) -> None:
    """ERP invoices a confirmed order in two parts (erp.invoice.issued naming it): the order
    shows what is invoiced and its invoice status, the customer's timeline each invoicing;
    an invoice of the order in another currency is not recorded on it, and the ERP reads
    sales' reason among its refused messages."""
    c360(home, "product", "define", "SUPPORT-YEAR", "--name", "Support", "--category", "services",
         "--price", "1200", "--currency", "EUR", "--cost", "300")  # fmt: skip
    c360(home, "pricelist", "define", "standard", "--currency", "EUR")
    c360(home, "pipeline", "define", "default", "--stage", "new:20", "--stage", "won:won")
    customer_id, order_id = _order(home, "Dupont SA", "achats@dupont.fr")
    assert c360(home, "order", "show", order_id)["invoice_status"] == "nothing invoiced"
    bridge(home, "follow", "--drain")
    first = bridge(home, "invoice", customer_id, "--amount", "1000", "--order", order_id)
    assert first["order_id"] == order_id

    def invoiced(status: str) -> Any:
        return lambda: (
            (o := c360(home, "order", "show", order_id))["invoice_status"] == status and o
        )

    order = _until(invoiced("partly invoiced"), "the first invoice on the order")
    assert order["invoiced_total"] == {"currency": "EUR", "amount": "1000.00"}
    bridge(home, "invoice", customer_id, "--amount", "1400", "--order", order_id)
    order = _until(invoiced("invoiced"), "the second invoice on the order")
    assert order["invoiced_total"]["amount"] == "2400.00"
    assert [i["amount"]["amount"] for i in order["invoices"]] == ["1000.00", "1400.00"]

    bridge(home, "invoice", customer_id, "--amount", "50", "--currency", "USD", "--order", order_id)
    letters = _until(lambda: bridge(home, "refused"), "sales' refusal of the USD invoice")
    [letter] = [x for x in letters if x.get("refused_by") == "sales"]
    assert "is in EUR, not USD" in letter["reason"], letter
    assert c360(home, "order", "show", order_id)["invoiced_total"]["amount"] == "2400.00"
    entries = c360(home, "timeline", "show", customer_id)["entries"]
    summaries = [e["summary"] for e in entries if e["type"] == "order.invoiced"]
    assert len(summaries) == 2
    assert any(s.startswith("Order invoiced: invoice ") for s in summaries), summaries
    assert c360(home, "verify")["ok"] is True
