"""The example ERP bridge delivers a confirmed sales order against a `c360 up` stack with
NATS permissions on: ERP reads c360.sales.order.confirmed as the `erp` user, answers on
erp.order.delivered, the sales service (its own user, reading the ERP stream) fulfils the
order, and the customer's profile shows the lifetime value."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from .test_erp_bridge import bridge, c360, home  # noqa: F401 (home is a fixture)

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
    home: Path,  # noqa: F811
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
