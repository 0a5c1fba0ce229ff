"""Customer classification from sales history, pure: every class with its reason."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from c360_sales.classes import Purchase, Rules, classify

TODAY = date(2026, 12, 1)


def bought(customer: str, days_ago: int, net: str, cost: str = "0") -> Purchase:
    return Purchase(customer, TODAY - timedelta(days=days_ago), "EUR", Decimal(net), Decimal(cost))


def test_key_loyal_low_profit_trend_and_debtor_each_with_a_reason() -> None:
    purchases = [
        # a big, steady customer: key and loyal
        *(bought("big", d, "10000", "6000") for d in (10, 100, 190, 280)),
        # a small one with thin margins
        bought("thin", 20, "1000", "950"),
        # one that used to buy a lot and now buys little: trend alert
        *(bought("fading", d, "3000", "1000") for d in (120, 200, 300)),
        bought("fading", 30, "500", "100"),
        *(bought(f"c{n}", 40, "100", "10") for n in range(6)),
    ]
    found = classify(purchases, {"late": ["INV-1", "INV-0"]}, TODAY)
    assert found["big"].found.keys() == {"key", "loyal"}
    assert found["big"].found["key"] == "#1 of 9 by 12-month revenue: 40000.00 EUR"
    assert found["big"].found["loyal"] == "orders in 4 of the last 4 quarters"
    assert found["thin"].found == {"low_profit": "12-month margin 5.0% below 15%"}
    assert found["fading"].found["trend_alert"] == (
        "500.00 EUR in the last 90 days against a baseline of 3000.00 per 90 days"
    )
    assert "key" not in found["fading"].found  # top 20 % of 9 customers is one
    assert found["late"].found == {"debtor": "overdue: INV-0, INV-1"}
    assert "c0" not in found


def test_classes_follow_the_day_they_are_judged_on() -> None:
    purchases = [bought("a", d, "100", "10") for d in (5, 95, 185)]
    assert "loyal" in classify(purchases, {}, TODAY)["a"].found
    # judged a year later nothing was bought in the last four quarters
    later = classify(purchases, {}, TODAY + timedelta(days=400))
    assert later.get("a") is None or "loyal" not in later["a"].found
    # a purchase after the day judged on does not count
    early = classify(purchases, {}, TODAY - timedelta(days=100))
    assert early["a"].found.get("key", "").endswith("100.00 EUR")
    strict = classify(purchases, {}, TODAY, Rules(loyal_quarters=4))
    assert "loyal" not in strict["a"].found
