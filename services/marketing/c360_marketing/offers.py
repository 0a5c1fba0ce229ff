"""One-to-one offers, pure (no I/O): products a customer does not have yet, ranked by how often
customers who bought what they bought went on to buy them, with the reason in words."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from c360_marketing.conditions import Facts

MIN_SUPPORT = 2
"""A rule needs at least this many customers who bought its first product."""


@dataclass(frozen=True)
class Offer:
    sku: str
    confidence: float
    """Of the customers who bought `because`, the share who also bought `sku`."""
    because: str
    support: int
    """How many customers bought `because`."""
    reason: str


def offers_for(
    customer: Facts, everyone: Iterable[Facts], limit: int = 5, min_support: int = MIN_SUPPORT
) -> list[Offer]:
    """The customer's offers, best first: for each product they lack, the strongest rule
    "bought A -> bought B" over the other customers (ties: more support, then SKU)."""
    mine = set(customer.products)
    if not mine:
        return []
    others = [f for f in everyone if f.customer_id != customer.customer_id and f.products]
    best: dict[str, Offer] = {}
    for a in sorted(mine):
        with_a = [f for f in others if a in f.products]
        if len(with_a) < min_support:
            continue
        counts: dict[str, int] = {}
        for f in with_a:
            for sku in f.products - mine:
                counts[sku] = counts.get(sku, 0) + 1
        for sku, n in counts.items():
            share = n / len(with_a)
            offer = Offer(
                sku,
                share,
                a,
                len(with_a),
                f"bought {a}; {share:.0%} of the {len(with_a)} customers who bought {a}"
                f" also bought {sku}",
            )
            known = best.get(sku)
            if known is None or (offer.confidence, offer.support) > (
                known.confidence,
                known.support,
            ):
                best[sku] = offer
    ranked = sorted(best.values(), key=lambda o: (-o.confidence, -o.support, o.sku))
    return ranked[:limit]


def why_none(customer: Facts, min_support: int = MIN_SUPPORT) -> str:
    """Why a customer has no offer, in words."""
    if not customer.products:
        return "no purchase of theirs to learn from yet"
    return (
        f"no product they lack was bought by enough of the customers who bought what they"
        f" bought (a rule needs {min_support} such customers)"
    )


def reachable(customer: Facts) -> list[str]:
    """The channels on which the customer allows marketing (where an offer may be made)."""
    return sorted(
        key.split("/")[0]
        for key, granted in customer.consent.items()
        if granted and key.endswith("/marketing")
    )
