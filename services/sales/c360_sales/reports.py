"""Sales reports, pure: tables computed from the current leads, opportunities and orders.

leads       leads per period (of capture) by channel, industry, territory and position
conversion  per period: leads, converted to opportunities, won; the rates between them
owners      per owner: opportunities closed, won, win rate, average won deal, average cycle
lost        lost opportunities by reason and competitor: count and amount
revenue     fulfilled orders' net value per product and per territory (of the opportunity)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from c360_sales.domain import Lead, Opportunity, Order, dec, money_text

REPORTS = ("leads", "conversion", "owners", "lost", "revenue")


@dataclass
class Table:
    name: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)


def period_key(at: datetime | str, period: str) -> str:
    day = at if isinstance(at, str) else at.date().isoformat()
    if not day:
        return ""
    if period == "quarter":
        return f"{day[:4]}-Q{(int(day[5:7]) - 1) // 3 + 1}"
    return day[:7]


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}" if whole else ""


def leads_table(leads: Sequence[Lead], period: str) -> Table:
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for lead in leads:
        p = period_key(lead.created_on, period)
        for dimension, value in (
            ("channel", lead.channel),
            ("industry", lead.industry),
            ("territory", lead.territory),
            ("position", lead.position),
        ):
            counts[(p, dimension, value or "(none)")] += 1
    table = Table("leads", ["period", "by", "value", "leads"])
    table.rows = [[p, d, v, str(n)] for (p, d, v), n in sorted(counts.items())]
    return table


def conversion_table(
    leads: Sequence[Lead], opportunities: Sequence[Opportunity], period: str
) -> Table:
    by_lead = {o.lead_id: o for o in opportunities if o.lead_id}
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for lead in leads:
        counts = rows[period_key(lead.created_on, period)]
        counts[0] += 1
        opportunity = by_lead.get(str(lead.id))
        if opportunity is not None:
            counts[1] += 1
            counts[2] += opportunity.state == "won"
    table = Table(
        "conversion",
        ["period", "leads", "opportunities", "won", "lead→opp %", "opp→won %", "lead→won %"],
    )
    for p, (n, o, w) in sorted(rows.items()):
        table.rows.append([p, str(n), str(o), str(w), _pct(o, n), _pct(w, o), _pct(w, n)])
    return table


def owners_table(opportunities: Sequence[Opportunity]) -> Table:
    stats: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 5)
    for o in opportunities:
        if o.state == "open":
            continue
        s = stats[(o.owner_id or "(none)", o.currency)]
        s[0] += 1
        opened_at = datetime.fromisoformat(o.stage_history[0]["entered_at"])
        closed_at = o.closed_at or datetime.fromisoformat(o.stage_history[-1]["entered_at"])
        s[4] += Decimal((closed_at - opened_at).total_seconds()) / 86400
        if o.state == "won":
            s[1] += 1
            s[2] += dec(o.actual_amount or o.amount)
    table = Table(
        "owners",
        ["owner", "closed", "won", "win %", "avg won deal", "avg cycle days", "currency"],
    )
    for (owner, currency), (closed, won, amount, _, days) in sorted(stats.items()):
        table.rows.append(
            [
                owner,
                str(int(closed)),
                str(int(won)),
                _pct(int(won), int(closed)),
                money_text(amount / won, currency) if won else "",
                f"{days / closed:.1f}" if closed else "",
                currency,
            ]
        )
    return table


def lost_table(opportunities: Sequence[Opportunity]) -> Table:
    stats: dict[tuple[str, str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 2)
    for o in opportunities:
        if o.state == "lost":
            s = stats[(o.lost_reason or "(none)", o.competitor or "(none)", o.currency)]
            s[0] += 1
            s[1] += dec(o.amount)
    table = Table("lost", ["reason", "competitor", "lost", "amount", "currency"])
    ranked = sorted(stats.items(), key=lambda item: (-item[1][0], item[0]))
    for (reason, rival, currency), (n, amount) in ranked:
        table.rows.append([reason, rival, str(int(n)), money_text(amount, currency), currency])
    return table


def revenue_table(orders: Sequence[Order], territories: dict[str, str]) -> Table:
    values: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for order in orders:
        if order.state != "fulfilled":
            continue
        region = territories.get(order.opportunity_id, "") or "(none)"
        for line in order.lines:
            net = dec(line["net_amount"])
            values[("product", line["sku"], order.currency)] += net
            values[("territory", region, order.currency)] += net
    table = Table("revenue", ["by", "value", "net revenue", "currency"])
    for (by, value, currency), amount in sorted(values.items()):
        table.rows.append([by, value, money_text(amount, currency), currency])
    return table
