"""Price-list rules as pure functions, with hypothesis: which rule applies, what it computes,
and that a quote line's frozen price never changes on replay, whatever the list becomes."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from c360_platform.errors import InvalidArgument
from c360_sales import domain, pricing
from c360_sales.domain import Product, Quote
from c360_sales.pricing import Base, Computation, Rule, Scope

DAY = date(2026, 3, 2)
ROUTER = pricing.Product("p-router", "hardware", "EUR", Decimal("200.00"), Decimal("120.00"))

money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2)
percent = st.decimals(min_value=Decimal("0"), max_value=Decimal("100"), places=2)
steps = st.sampled_from([Decimal("0"), Decimal("0.05"), Decimal("1"), Decimal("10")])


def price_list(*rules: Rule, currency: str = "EUR") -> pricing.PriceList:
    return pricing.PriceList("list-1", currency, rules)


def test_the_most_specific_rule_wins_then_the_higher_minimum_quantity() -> None:
    rules = (
        Rule("all", Scope.ALL, Computation.PERCENT_DISCOUNT, discount_percent=Decimal(5)),
        Rule(
            "hw",
            Scope.CATEGORY,
            Computation.PERCENT_DISCOUNT,
            "hardware",
            discount_percent=Decimal(10),
        ),
        Rule(
            "hw-10",
            Scope.CATEGORY,
            Computation.FIXED,
            "hardware",
            Decimal(10),
            fixed_price=Decimal(150),
        ),
        Rule(
            "router",
            Scope.PRODUCT,
            Computation.FIXED,
            "p-router",
            Decimal(100),
            fixed_price=Decimal(140),
        ),
    )
    found = [
        pricing.resolve(price_list(*rules), ROUTER, Decimal(q), DAY).rule_id for q in (1, 10, 100)
    ]
    assert found == ["hw", "hw-10", "router"]
    other = pricing.Product("p-cable", "accessories", "EUR", Decimal("10"), Decimal("2"))
    assert pricing.resolve(price_list(*rules), other, Decimal(1), DAY).unit_price == Decimal("9.50")


def test_rules_apply_only_within_their_validity_dates() -> None:
    summer = Rule(
        "summer",
        Scope.ALL,
        Computation.FIXED,
        fixed_price=Decimal(99),
        valid_from=date(2026, 6, 1),
        valid_to=date(2026, 8, 31),
    )
    assert pricing.resolve(price_list(summer), ROUTER, Decimal(1), date(2026, 5, 31)).rule_id == ""
    assert (
        pricing.resolve(price_list(summer), ROUTER, Decimal(1), date(2026, 8, 31)).rule_id
        == "summer"
    )


def test_a_formula_discounts_rounds_adds_the_surcharge_and_keeps_the_margin() -> None:
    rule = Rule(
        "f",
        Scope.ALL,
        Computation.FORMULA,
        base=Base.COST,
        discount_percent=Decimal("-25"),  # a markup of 25 % on cost
        rounding=Decimal("10"),
        surcharge=Decimal("-0.10"),
        min_margin=Decimal("20"),
        max_margin=Decimal("100"),
    )
    found = pricing.resolve(price_list(rule), ROUTER, Decimal(1), DAY)
    assert found.unit_price == Decimal("149.90")  # 120 * 1.25 = 150, rounded 150, - 0.10
    assert found.note == "cost 120.00 --25% round 10 +-0.10"
    squeezed = Rule(
        "s", Scope.ALL, Computation.FORMULA, discount_percent=Decimal(50), min_margin=Decimal(30)
    )
    assert pricing.resolve(price_list(squeezed), ROUTER, Decimal(1), DAY).unit_price == Decimal(
        "150.00"
    )


def test_a_formula_from_another_price_list_and_its_refusals() -> None:
    base = pricing.PriceList(
        "base", "EUR", (Rule("b", Scope.ALL, Computation.FIXED, fixed_price=Decimal(180)),)
    )
    rule = Rule(
        "r",
        Scope.ALL,
        Computation.FORMULA,
        base=Base.PRICE_LIST,
        base_price_list_id="base",
        discount_percent=Decimal(10),
    )
    lists = {"base": base}
    assert pricing.resolve(
        price_list(rule), ROUTER, Decimal(1), DAY, lists.get
    ).unit_price == Decimal("162.00")
    with pytest.raises(pricing.CannotPrice, match="does not exist"):
        pricing.resolve(price_list(rule), ROUTER, Decimal(1), DAY)
    loop = pricing.PriceList(
        "base",
        "EUR",
        (
            Rule(
                "r", Scope.ALL, Computation.FORMULA, base=Base.PRICE_LIST, base_price_list_id="base"
            ),
        ),
    )
    with pytest.raises(pricing.CannotPrice, match="cycle"):
        pricing.resolve(loop, ROUTER, Decimal(1), DAY, {"base": loop}.get)
    with pytest.raises(pricing.CannotPrice, match="no rule"):
        pricing.resolve(price_list(currency="USD"), ROUTER, Decimal(1), DAY)


@given(list_price=money, cost=money, discount=percent, step=steps, surcharge=money)
def test_formula_prices_are_whole_cents_never_negative_and_inside_the_margins(
    list_price: Decimal, cost: Decimal, discount: Decimal, step: Decimal, surcharge: Decimal
) -> None:
    product = pricing.Product("p", "c", "EUR", list_price, cost)
    low, high = Decimal(5), Decimal(500)
    rule = Rule(
        "f", Scope.ALL, Computation.FORMULA, discount_percent=discount, rounding=step,
        surcharge=surcharge, min_margin=low, max_margin=high,
    )  # fmt: skip
    found = pricing.resolve(price_list(rule), product, Decimal(1), DAY)
    assert found.unit_price == found.unit_price.quantize(Decimal("0.01"))
    assert found.unit_price >= 0
    assert cost + low - Decimal("0.005") <= found.unit_price <= cost + high + Decimal("0.005")


@given(list_price=money, a=percent, b=percent)
def test_a_larger_discount_never_gives_a_higher_price(
    list_price: Decimal, a: Decimal, b: Decimal
) -> None:
    product = pricing.Product("p", "c", "EUR", list_price, Decimal(0))

    def at(d: Decimal) -> Decimal:
        rule = Rule("d", Scope.ALL, Computation.PERCENT_DISCOUNT, discount_percent=d)
        return pricing.resolve(price_list(rule), product, Decimal(1), DAY).unit_price

    low, high = sorted((a, b))
    assert at(high) <= at(low)


@given(value=st.decimals(min_value=Decimal("0"), max_value=Decimal("10000"), places=4), step=steps)
def test_rounding_gives_a_multiple_of_the_step_within_half_a_step(
    value: Decimal, step: Decimal
) -> None:
    rounded = pricing.round_to(value, step)
    if step == 0:
        assert rounded == value
    else:
        assert rounded % step == 0
        assert abs(rounded - value) <= step / 2


def _product(price: str) -> Product:
    return Product(
        sku="ROUTER-X", name="Router", category="hardware", unit="unit",
        currency="EUR", list_price=price, cost="120.00", active=True,
    )  # fmt: skip


@settings(max_examples=50)
@given(
    first=st.lists(
        st.tuples(percent, st.integers(min_value=1, max_value=50)), min_size=1, max_size=5
    ),
    later=st.lists(percent, min_size=1, max_size=5),
)
def test_a_quote_lines_frozen_price_never_changes_on_replay(
    first: list[tuple[Decimal, int]], later: list[Decimal]
) -> None:
    product = _product("200.00")
    quote = Quote(
        customer_id=str(uuid4()), opportunity_id=str(uuid4()), price_list_id="l",
        currency="EUR", valid_until="", revision=1, revises_quote_id="", lines=[],
    )  # fmt: skip
    for discount, quantity in first:
        rule = Rule("d", Scope.ALL, Computation.PERCENT_DISCOUNT, discount_percent=discount)
        price = pricing.resolve(price_list(rule), product.for_pricing(), Decimal(quantity), DAY)
        quote.add_line(
            product=product, quantity=str(quantity), price=price, discount_percent="0",
            tax_rate="8.1", description="",
        )  # fmt: skip
    priced = [dict(line) for line in quote.lines]
    events = list(quote.collect_events())
    # The price list and the product change afterwards, many times: replay re-prices nothing.
    for discount in later:
        product.redefine(
            name="Router", category="hardware", unit="unit", currency="EUR",
            list_price=str(Decimal("300.00") * (1 - discount / 100)), cost="1", active=True,
        )  # fmt: skip
    replayed: Quote | None = None
    for e in events:
        replayed = e.mutate(replayed)
    assert replayed is not None
    assert replayed.lines == priced
    assert replayed.totals == quote.totals


def test_price_list_rules_are_validated_naming_each_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        domain.price_rules(
            [
                {"computation": "fixed"},
                {
                    "scope": "category",
                    "computation": "formula",
                    "base": "price_list",
                    "rounding": "-1",
                },
                {
                    "scope": "all",
                    "computation": "percent_discount",
                    "valid_from": "2026-05-01",
                    "valid_to": "2026-04-01",
                },
            ]
        )
    assert sorted(v.field for v in caught.value.violations) == [
        "rules[0].fixed_price",
        "rules[0].scope",
        "rules[1].base_price_list_id",
        "rules[1].rounding",
        "rules[1].target",
        "rules[2].valid_to",
    ]


def test_line_nets_taxes_and_totals_round_half_up_as_prices_do() -> None:
    assert domain.line_net("1", "0.25", "50", "EUR") == Decimal("0.13")  # 0.125
    assert domain.line_net("3", "18.99", "10", "EUR") == Decimal("51.27")  # 51.273
    assert domain.totals([{"net_amount": "10.50", "tax_rate": "5"}], "EUR").tax == Decimal("0.53")
    assert domain.money_text(Decimal("0.125"), "EUR") == "0.13"
    assert domain.money_text(Decimal("-0.125"), "EUR") == "-0.13"
    half = Rule("h", Scope.ALL, Computation.PERCENT_DISCOUNT, discount_percent=Decimal("50"))
    kit = pricing.Product("p-kit", "misc", "EUR", Decimal("0.25"), Decimal(0))
    assert pricing.resolve(price_list(half), kit, Decimal(1), DAY).unit_price == Decimal("0.13")


def test_amounts_in_yen_are_whole_yen_as_in_every_other_currency_its_smallest_unit() -> None:
    """JPY has no minor unit (ISO 4217): a price, a line's net, its tax and the totals are
    whole yen, rounded half up, never 98.72 JPY."""
    assert domain.line_net("3", "1234", "5", "JPY") == Decimal("3517")  # 3516.9
    lines = [
        {"net_amount": "1234", "tax_rate": "8"},  # 98.72
        {"net_amount": "3517", "tax_rate": "10"},  # 351.7
    ]
    t = domain.totals(lines, "JPY")
    assert (t.net, t.tax, t.gross) == (Decimal("4751"), Decimal("451"), Decimal("5202"))
    assert domain.money_text(Decimal("98.5"), "JPY") == "99"
    half = Rule("h", Scope.ALL, Computation.PERCENT_DISCOUNT, discount_percent=Decimal("15"))
    box = pricing.Product("p-box", "misc", "JPY", Decimal("1999"), Decimal(0))
    priced = pricing.resolve(price_list(half, currency="JPY"), box, Decimal(1), DAY)
    assert priced.unit_price == Decimal("1699")  # 1699.15
    listed = pricing.resolve(price_list(currency="JPY"), box, Decimal(1), DAY)
    assert (listed.unit_price, listed.note) == (Decimal("1999"), "list price 1999")
