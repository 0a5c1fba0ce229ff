"""The sales state machines, pure: quotes and orders refuse what their state does not allow,
naming the state; deliveries count once per ERP event; lead routing rules."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from c360_platform.errors import InvalidArgument, PreconditionFailed
from c360_sales import domain, pricing
from c360_sales.domain import Order, Product, Quote, SalesTeam

DAY = date(2026, 3, 2)


def quote(valid_until: str = "2026-03-31") -> Quote:
    return Quote(
        customer_id=str(uuid4()), opportunity_id=str(uuid4()), price_list_id="l",
        currency="EUR", valid_until=valid_until, revision=1, revises_quote_id="", lines=[],
    )  # fmt: skip


def with_line(q: Quote) -> Quote:
    product = Product(
        sku="A", name="A", category="c", unit="unit", currency="EUR",
        list_price="10.00", cost="4.00", active=True,
    )  # fmt: skip
    q.add_line(
        product=product, quantity="2", price=pricing.Price(Decimal("10"), "", "list"),
        discount_percent="10", tax_rate="20", description="",
    )  # fmt: skip
    return q


def test_quote_totals_and_transitions() -> None:
    q = with_line(quote())
    assert (q.totals.net, q.totals.tax, q.totals.gross) == (
        Decimal("18.00"),
        Decimal("3.60"),
        Decimal("21.60"),
    )
    with pytest.raises(PreconditionFailed, match="is draft: cannot decline it"):
        q.decline("no")
    q.send()
    with pytest.raises(PreconditionFailed, match="is sent: cannot remove a line"):
        q.remove_line("l1")
    q.decline("too expensive")
    assert q.state == "declined"
    with pytest.raises(PreconditionFailed, match="is declined: cannot cancel it"):
        q.cancel("x")
    empty = quote()
    with pytest.raises(PreconditionFailed, match="has no lines"):
        empty.send()
    empty.cancel("opportunity lost")
    assert empty.state == "cancelled"


def test_a_quote_past_its_validity_cannot_be_accepted_and_expires() -> None:
    q = with_line(quote("2026-03-01"))
    q.send()
    with pytest.raises(PreconditionFailed, match="valid until 2026-03-01"):
        q.accept(str(uuid4()), DAY)
    assert q.expire_if_due(DAY)
    assert not q.expire_if_due(DAY)
    assert q.state == "expired"


def order() -> Order:
    order_id = uuid4()
    lines = [
        {"line_id": "l1", "product_id": "p", "sku": "A", "description": "A", "quantity": "2",
         "unit_price": "10.00", "net_amount": "20.00", "tax_rate": "0", "unit_cost": "4"},
    ]  # fmt: skip
    return Order(
        order_id=str(order_id), customer_id=str(uuid4()), quote_id="", opportunity_id="",
        currency="EUR", lines=lines, order_number=domain.order_number(order_id, DAY),
    )  # fmt: skip


def test_order_states_follow_confirmation_and_deliveries_once_per_erp_event() -> None:
    o = order()
    assert o.state == "planned"
    with pytest.raises(PreconditionFailed, match="is planned: cannot record a delivery"):
        o.record_fulfilment("e1", {"l1": "1"}, "DN-1", DAY)
    o.confirm()
    with pytest.raises(InvalidArgument):
        o.record_fulfilment("e1", {"l9": "1"}, "DN-1", DAY)
    o.record_fulfilment("e1", {"l1": "1"}, "DN-1", DAY)
    o.record_fulfilment("e1", {"l1": "1"}, "DN-1", DAY)  # the same ERP event again: no effect
    assert (o.state, o.lines[0]["fulfilled_quantity"]) == ("pending", "1")
    o.record_fulfilment("e2", {"l1": "1"}, "DN-2", DAY)
    assert (o.state, o.fulfilled_on) == ("fulfilled", "2026-03-02")
    with pytest.raises(PreconditionFailed, match="is fulfilled: cannot mark it unrealised"):
        o.unrealise("customer cancelled")
    lapsed = order()
    lapsed.unrealise("lapsed")
    assert (lapsed.state, lapsed.reason) == ("unrealised", "lapsed")
    with pytest.raises(PreconditionFailed, match="is unrealised: cannot confirm it"):
        lapsed.confirm()


def test_an_orders_invoices_sum_up_to_its_invoice_status_once_per_erp_event() -> None:
    o = order()  # 20.00 EUR gross
    assert o.invoice_status == "not to invoice"
    with pytest.raises(PreconditionFailed, match="is planned: cannot record an invoice"):
        o.record_invoice("e1", "INV-1", "EUR", "5", DAY)
    o.confirm()
    assert o.invoice_status == "nothing invoiced"
    refusals = [
        (("e1", "INV-1", "USD", "5"), "invoice_issued.amount.currency"),
        (("e1", "INV-1", "EUR", "0"), "invoice_issued.amount.amount"),
        (("e1", "INV-1", "EUR", "-5"), "invoice_issued.amount.amount"),
        (("e1", " ", "EUR", "5"), "invoice_issued.invoice_number"),
    ]
    for (event_id, number, currency, amount), field in refusals:
        with pytest.raises(InvalidArgument) as refused:
            o.record_invoice(event_id, number, currency, amount, DAY)
        assert [x.field for x in refused.value.violations] == [field]
    assert not o.invoices
    o.record_invoice("e1", "INV-1", "EUR", "5", DAY)
    o.record_invoice("e1", "INV-1", "EUR", "5", DAY)  # the same ERP event again: no effect
    assert (o.invoiced_total, o.invoice_status) == (Decimal("5.00"), "partly invoiced")
    with pytest.raises(InvalidArgument, match="INV-1 is recorded on order"):
        o.record_invoice("e2", "INV-1", "EUR", "15", DAY)
    o.record_fulfilment("d1", {"l1": "2"}, "DN-1", DAY)
    o.record_invoice("e2", "INV-2", "EUR", "15", DAY)  # fulfilled orders are invoiced too
    assert o.invoice_status == "invoiced"
    invoiced: Any = o.collect_events()[-1]
    assert (invoiced.invoiced_total, invoiced.invoice_status) == ("20.00", "invoiced")
    lapsed = order()
    lapsed.confirm()
    lapsed.unrealise("cancelled")
    with pytest.raises(PreconditionFailed, match="is unrealised: cannot record an invoice"):
        lapsed.record_invoice("e3", "INV-3", "EUR", "5", DAY)


def test_round_robin_continues_after_the_last_routed_agent_even_when_members_change() -> None:
    team = SalesTeam(
        name="north", members=domain.team_members([{"agent_id": "a"}, {"agent_id": "b"}])
    )
    picked = []
    for i in range(3):
        agent = domain.choose_agent(team, "round_robin", "", {})
        team.route(f"lead-{i}", agent, "round_robin")
        picked.append(agent)
    assert picked == ["a", "b", "a"]
    team.redefine(domain.team_members([{"agent_id": "c"}, {"agent_id": "a"}, {"agent_id": "b"}]))
    assert domain.choose_agent(team, "round_robin", "", {}) == "b"
    with pytest.raises(InvalidArgument):
        domain.team_members([{"agent_id": "a"}, {"agent_id": "a"}])


def test_pipeline_stages_need_an_open_stage_and_closed_stages_force_their_probability() -> None:
    stages = domain.pipeline_stages(
        [{"key": "new", "probability": 20}, {"key": "won", "won": True, "probability": 3}]
    )
    assert [s["probability"] for s in stages] == [20, 100]
    with pytest.raises(InvalidArgument) as caught:
        domain.pipeline_stages(
            [{"key": "won", "won": True}, {"key": "Bad Key", "probability": 120, "lost": True}]
        )
    assert sorted(v.field for v in caught.value.violations) == [
        "stages",
        "stages[1].key",
        "stages[1].probability",
    ]


def fields(refused: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
    return sorted(v.field for v in refused.value.violations)


def test_team_members_territories_are_bounded_in_length_and_number() -> None:
    long = "x" * (domain.MAX_KEY + 1)
    with pytest.raises(InvalidArgument) as refused:
        domain.team_members(
            [
                {"agent_id": "a", "territories": ["north", long]},
                {"agent_id": "b", "territories": ["t"] * (domain.MAX_TERRITORIES + 1)},
                {"agent_id": "c", "territories": ["south\x07"]},
            ]
        )
    assert fields(refused) == [
        "members[0].territories[1]",
        "members[1].territories",
        "members[2].territories[0]",
    ]
    with pytest.raises(InvalidArgument) as refused:
        domain.team_members([{"agent_id": f"a{i}"} for i in range(domain.MAX_MEMBERS + 1)])
    assert fields(refused) == ["members"]
    assert "at most 100" in str(refused.value)
    kept = domain.team_members([{"agent_id": "a", "territories": [" North ", "x" * 64]}])
    assert kept[0]["territories"] == ["north", "x" * 64]


def test_a_leads_products_of_interest_are_named_by_their_place_in_the_list() -> None:
    """A product too long was reported on "interest_products", whichever of them it was."""
    with pytest.raises(InvalidArgument) as refused:
        domain.capture_lead(
            channel="phone", person_name="Ann", interest_products=["ROUTER-Z", "x" * 65]
        )
    assert fields(refused) == ["interest_products[1]"]
    many = ["x" * 65] * (domain.MAX_PRODUCTS + 1)
    with pytest.raises(InvalidArgument) as refused:
        domain.capture_lead(channel="phone", person_name="Ann", interest_products=many)
    assert fields(refused) == ["interest_products"]


def test_a_leads_local_phone_number_is_read_in_the_country_the_request_names() -> None:
    """The refusal told the caller to name default_region, which CaptureLead did not have."""
    lead = domain.capture_lead(
        channel="phone", person_name="Ann", phone="089 1234567", default_region="de"
    )
    assert lead.phone == "+49891234567"
    with pytest.raises(InvalidArgument) as refused:
        domain.capture_lead(channel="phone", person_name="Ann", phone="089 1234567")
    assert fields(refused) == ["phone"]


def test_a_pipeline_has_a_bounded_number_of_stages() -> None:
    with pytest.raises(InvalidArgument) as refused:
        domain.pipeline_stages([{"key": f"s{i}"} for i in range(10_000)])
    assert fields(refused) == ["stages"]  # one violation, not one per stage
    assert len(domain.pipeline_stages([{"key": f"s{i}"} for i in range(domain.MAX_STAGES)])) == 30


def test_price_rules_are_bounded_in_length_and_number() -> None:
    long = "x" * (domain.MAX_KEY + 1)
    with pytest.raises(InvalidArgument) as refused:
        domain.price_rules(
            [
                {"scope": "all", "computation": "percent_discount"},
                {"scope": "all", "computation": "percent_discount"},
                {"scope": "all", "computation": "percent_discount"},
                {"rule_id": long, "scope": "all", "computation": "percent_discount"},
                {"scope": "product", "target": long, "computation": "percent_discount"},
                {"scope": "all", "computation": "percent_discount", "fixed_price": long},
            ]
        )
    assert fields(refused) == ["rules[3].rule_id", "rules[4].target", "rules[5].fixed_price"]
    too_many = [{"scope": "all", "computation": "fixed", "fixed_price": "1"}] * 10_000
    with pytest.raises(InvalidArgument) as refused:
        domain.price_rules(too_many)
    assert fields(refused) == ["rules"]
    assert len(domain.price_rules(too_many[: domain.MAX_RULES])) == domain.MAX_RULES


def test_dates_are_refused_outside_the_years_1900_to_2999() -> None:
    for day in ("0001-01-01", "1899-12-31", "3000-01-01", "9999-12-31"):
        v = domain.Checks()
        v.day("expected_close", day)
        assert [x.field for x in v.items] == ["expected_close"], day
        assert "years 1900 to 2999" in v.items[0].description
    v = domain.Checks()
    assert v.day_text("on", "1900-01-01") == "1900-01-01"
    assert v.day_text("on", "2999-12-31") == "2999-12-31"
    assert v.items == []
    with pytest.raises(InvalidArgument) as refused:
        domain.price_rules([{"scope": "all", "computation": "fixed", "fixed_price": "1",
                             "valid_from": "0001-01-01", "valid_to": "9999-12-31"}])  # fmt: skip
    assert fields(refused) == ["rules[0].valid_from", "rules[0].valid_to"]


def test_a_deals_amount_has_no_more_decimals_than_its_currency() -> None:
    v = domain.Checks()
    assert v.money("amount", "EUR", "1000.50") == domain.Money("EUR", "1000.50")
    assert v.money("amount", "JPY", "1000") == domain.Money("JPY", "1000")
    assert v.items == []
    assert v.money("amount", "EUR", "1000.005").amount == ""
    assert v.money("amount", "JPY", "99.5").amount == ""
    assert [(i.field, i.description) for i in v.items] == [
        ("amount.amount", "at most 2 decimal places in EUR"),
        ("amount.amount", "at most 0 decimal places in JPY"),
    ]


def test_territory_routing_rotates_among_the_members_covering_the_territory() -> None:
    team = SalesTeam(
        name="field",
        members=domain.team_members(
            [
                {"agent_id": "emp-0001", "territories": ["de-south"]},
                {"agent_id": "emp-0002", "territories": ["de-north"]},
                {"agent_id": "emp-0003", "territories": ["de-south"]},
            ]
        ),
    )
    picked = []
    for i, territory in enumerate(["de-south", "de-north"] * 3):
        agent = domain.choose_agent(team, "territory", territory, {})
        team.route(f"lead-{i}", agent, "territory")
        picked.append(agent)
    assert picked == ["emp-0001", "emp-0002", "emp-0003", "emp-0002", "emp-0001", "emp-0002"]
    # The team-wide round robin goes on after the last agent routed anything.
    assert domain.choose_agent(team, "round_robin", "", {}) == "emp-0003"
