"""Customer classification from sales history, pure: each class with the reason it applies.

key         among the top `key_share` of customers by net revenue of the last 12 months
            (fulfilled orders, per currency; at least one customer)
loyal       fulfilled orders in at least `loyal_quarters` of the last `of_quarters` quarters
low_profit  margin (net - cost) / net of the last 12 months below `low_margin`
trend_alert net value of the last 90 days at or below half of its own baseline (the average
            90-day value of the 270 days before), the baseline being more than zero
debtor      an open follow-up of an invoice ERP reported overdue
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from c360_sales.domain import money_text


@dataclass(frozen=True)
class Purchase:
    """One fulfilled order as classification sees it."""

    customer_id: str
    on: date
    currency: str
    net: Decimal
    cost: Decimal


@dataclass(frozen=True)
class Rules:
    key_share: Decimal = Decimal("0.2")
    loyal_quarters: int = 3
    of_quarters: int = 4
    low_margin: Decimal = Decimal("0.15")


@dataclass
class Classes:
    customer_id: str
    found: dict[str, str] = field(default_factory=dict)
    """class -> reason"""


def _quarter(day: date) -> tuple[int, int]:
    return day.year, (day.month - 1) // 3


def _quarters_back(today: date, n: int) -> list[tuple[int, int]]:
    year, q = _quarter(today)
    out = []
    for _ in range(n):
        out.append((year, q))
        year, q = (year - 1, 3) if q == 0 else (year, q - 1)
    return out


def classify(
    purchases: Sequence[Purchase],
    debts: Mapping[str, list[str]],
    today: date,
    rules: Rules = Rules(),
) -> dict[str, Classes]:
    """The classes of every customer with a purchase or a debt, as of `today`."""
    out: dict[str, Classes] = defaultdict(lambda: Classes(""))

    def of(customer: str) -> Classes:
        found = out[customer]
        found.customer_id = customer
        return found

    year_ago = today - timedelta(days=365)
    revenue: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    costs: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    quarters: dict[str, set[tuple[int, int]]] = defaultdict(set)
    recent: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    before: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for p in purchases:
        if p.on > today:
            continue
        quarters[p.customer_id].add(_quarter(p.on))
        age = (today - p.on).days
        if p.on > year_ago:
            revenue[p.currency][p.customer_id] += p.net
            costs[p.currency][p.customer_id] += p.cost
        if age < 90:
            recent[p.currency][p.customer_id] += p.net
        elif age < 360:
            before[p.currency][p.customer_id] += p.net
    for currency, by_customer in revenue.items():
        ranked = sorted(by_customer.items(), key=lambda item: (-item[1], item[0]))
        top = max(1, int(len(ranked) * rules.key_share))
        for rank, (customer, value) in enumerate(ranked[:top], start=1):
            of(customer).found["key"] = (
                f"#{rank} of {len(ranked)} by 12-month revenue:"
                f" {money_text(value, currency)} {currency}"
            )
        for customer, value in by_customer.items():
            if value <= 0:
                continue
            margin = (value - costs[currency][customer]) / value
            if margin < rules.low_margin:
                of(customer).found["low_profit"] = (
                    f"12-month margin {margin * 100:.1f}% below {rules.low_margin * 100:.0f}%"
                )
    window = set(_quarters_back(today, rules.of_quarters))
    for customer, seen in quarters.items():
        active = len(seen & window)
        if active >= rules.loyal_quarters:
            of(customer).found["loyal"] = (
                f"orders in {active} of the last {rules.of_quarters} quarters"
            )
    for currency, by_customer in before.items():
        for customer, earlier in by_customer.items():
            baseline = earlier / 3
            now = recent[currency].get(customer, Decimal(0))
            if baseline > 0 and now <= baseline / 2:
                of(customer).found["trend_alert"] = (
                    f"{money_text(now, currency)} {currency} in the last 90 days against a"
                    f" baseline of {money_text(baseline, currency)} per 90 days"
                )
    for customer, invoices in debts.items():
        if invoices:
            of(customer).found["debtor"] = f"overdue: {', '.join(sorted(invoices))}"
    return dict(out)
