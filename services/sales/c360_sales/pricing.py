"""Price-list rules, pure: which rule applies to a product at a quantity and a date, and the
unit price it computes (fixed, percent discount, or a formula from a base with discount,
rounding, surcharge and a margin over cost kept between a minimum and a maximum).

Amounts are `Decimal`; a resolved price is rounded to its currency's smallest unit (half up:
cents, whole yen) and never negative.
Rules are tried most specific first (product, then category, then all), then the higher
minimum quantity first, then in the list's order; the first that applies wins. No rule: the
product's list price (when the list is in the product's currency).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from c360_platform import currencies

HUNDRED = Decimal(100)
MAX_DEPTH = 5


class Scope(StrEnum):
    ALL = "all"
    CATEGORY = "category"
    PRODUCT = "product"


class Computation(StrEnum):
    FIXED = "fixed"
    PERCENT_DISCOUNT = "percent_discount"
    FORMULA = "formula"


class Base(StrEnum):
    LIST_PRICE = "list_price"
    COST = "cost"
    PRICE_LIST = "price_list"


_SPECIFICITY = {Scope.PRODUCT: 0, Scope.CATEGORY: 1, Scope.ALL: 2}


@dataclass(frozen=True)
class Rule:
    """One rule of a price list (amounts in the list's currency)."""

    rule_id: str
    scope: Scope
    computation: Computation
    target: str = ""
    min_quantity: Decimal = Decimal(0)
    valid_from: date | None = None
    valid_to: date | None = None
    fixed_price: Decimal = Decimal(0)
    discount_percent: Decimal = Decimal(0)
    base: Base = Base.LIST_PRICE
    base_price_list_id: str = ""
    rounding: Decimal = Decimal(0)
    surcharge: Decimal = Decimal(0)
    min_margin: Decimal | None = None
    max_margin: Decimal | None = None

    def applies(self, product: Product, quantity: Decimal, on: date) -> bool:
        if self.scope == Scope.PRODUCT and self.target != product.product_id:
            return False
        if self.scope == Scope.CATEGORY and self.target != product.category:
            return False
        if quantity < self.min_quantity:
            return False
        if self.valid_from is not None and on < self.valid_from:
            return False
        return self.valid_to is None or on <= self.valid_to


@dataclass(frozen=True)
class Product:
    """What pricing needs of a product."""

    product_id: str
    category: str
    currency: str
    list_price: Decimal
    cost: Decimal


@dataclass(frozen=True)
class PriceList:
    price_list_id: str
    currency: str
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Price:
    """A resolved unit price, the rule that produced it ("" = list price) and how."""

    unit_price: Decimal
    rule_id: str
    note: str


class CannotPrice(ValueError):
    """No price can be computed (currency mismatch, a base list missing, a cycle)."""


Lists = Callable[[str], "PriceList | None"]


def ordered(rules: Sequence[Rule]) -> list[Rule]:
    """The order rules are tried in."""
    indexed = list(enumerate(rules))
    indexed.sort(key=lambda ir: (_SPECIFICITY[ir[1].scope], -ir[1].min_quantity, ir[0]))
    return [r for _, r in indexed]


def round_to(value: Decimal, step: Decimal) -> Decimal:
    """`value` rounded (half up) to a multiple of `step`; unchanged when step is 0."""
    if step <= 0:
        return value
    return (value / step).quantize(Decimal(1), rounding=ROUND_HALF_UP) * step


def to_unit(value: Decimal, currency: str) -> Decimal:
    """`value` rounded to `currency`'s smallest unit, half up (`currencies.rounded`), as every
    amount sales computes is: prices, line nets, taxes, totals, weighted values."""
    return currencies.rounded(value, currency)


def _price(value: Decimal, currency: str) -> Decimal:
    return to_unit(max(value, Decimal(0)), currency)


def resolve(
    price_list: PriceList,
    product: Product,
    quantity: Decimal,
    on: date,
    lists: Lists = lambda _id: None,
    _depth: int = 0,
) -> Price:
    """The unit price of `quantity` of `product` on `on` from `price_list`."""
    if _depth > MAX_DEPTH:
        raise CannotPrice(f"price list {price_list.price_list_id}: bases nest too deep (a cycle?)")
    for rule in ordered(price_list.rules):
        if rule.applies(product, quantity, on):
            value, note = _compute(rule, price_list, product, quantity, on, lists, _depth)
            return Price(_price(value, price_list.currency), rule.rule_id, note)
    if product.currency != price_list.currency:
        raise CannotPrice(
            f"price list {price_list.price_list_id} ({price_list.currency}) has no rule for"
            f" product {product.product_id}, whose list price is in {product.currency}"
        )
    listed = _price(product.list_price, price_list.currency)
    return Price(listed, "", f"list price {listed}")


def _compute(
    rule: Rule,
    price_list: PriceList,
    product: Product,
    quantity: Decimal,
    on: date,
    lists: Lists,
    depth: int,
) -> tuple[Decimal, str]:
    if rule.computation == Computation.FIXED:
        return rule.fixed_price, f"fixed {rule.fixed_price}"
    if rule.computation == Computation.PERCENT_DISCOUNT:
        _same_currency(price_list, product, rule)
        price = product.list_price * (1 - rule.discount_percent / HUNDRED)
        return price, f"list {product.list_price} -{rule.discount_percent}%"
    base, base_note = _base(rule, price_list, product, quantity, on, lists, depth)
    price = base * (1 - rule.discount_percent / HUNDRED)
    note = f"{base_note} -{rule.discount_percent}%"
    if rule.rounding > 0:
        price = round_to(price, rule.rounding)
        note += f" round {rule.rounding}"
    if rule.surcharge:
        price += rule.surcharge
        note += f" +{rule.surcharge}"
    return clamp_margin(price, product.cost, rule.min_margin, rule.max_margin, note)


def clamp_margin(
    price: Decimal, cost: Decimal, low: Decimal | None, high: Decimal | None, note: str
) -> tuple[Decimal, str]:
    """Keep the margin over cost (price - cost) between `low` and `high`."""
    if low is not None and price - cost < low:
        price = cost + low
        note += f" (min margin {low})"
    if high is not None and price - cost > high:
        price = cost + high
        note += f" (max margin {high})"
    return price, note


def _same_currency(price_list: PriceList, product: Product, rule: Rule) -> None:
    if product.currency != price_list.currency:
        raise CannotPrice(
            f"rule {rule.rule_id} of price list {price_list.price_list_id} works from the"
            f" product's price in {product.currency}, but the list is in {price_list.currency}"
        )


def _base(
    rule: Rule,
    price_list: PriceList,
    product: Product,
    quantity: Decimal,
    on: date,
    lists: Lists,
    depth: int,
) -> tuple[Decimal, str]:
    if rule.base == Base.PRICE_LIST:
        other = lists(rule.base_price_list_id)
        if other is None:
            raise CannotPrice(
                f"rule {rule.rule_id}: base price list {rule.base_price_list_id} does not exist"
            )
        if other.currency != price_list.currency:
            raise CannotPrice(
                f"rule {rule.rule_id}: base price list is in {other.currency},"
                f" not {price_list.currency}"
            )
        found = resolve(other, product, quantity, on, lists, depth + 1)
        return found.unit_price, f"list {other.price_list_id} {found.unit_price}"
    _same_currency(price_list, product, rule)
    if rule.base == Base.COST:
        return product.cost, f"cost {product.cost}"
    return product.list_price, f"list {product.list_price}"
