"""Segment condition trees: parsing with paths, evaluation, and the explanation of a change
(hypothesis: the condition named really is the one that flipped the result)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from c360_marketing import conditions
from c360_marketing.conditions import Facts
from c360_platform.errors import InvalidArgument

LATVIA_LTV_EMAIL = {
    "all": [
        {"field": "country", "op": "eq", "value": "lv"},
        {"field": "lifetime_value", "op": "gt", "value": 1000},
        {"field": "consent", "channel": "email", "purpose": "marketing"},
    ]
}


def ada(**changes: Any) -> Facts:
    base: dict[str, Any] = {
        "customer_id": "c-1",
        "countries": frozenset({"LV"}),
        "lifetime_value": {"EUR": Decimal("1500")},
        "consent": {"email/marketing": True},
    }
    return Facts(**(base | changes))


def violations(raw: Any) -> list[str]:
    with pytest.raises(InvalidArgument) as caught:
        conditions.parse(raw)
    return sorted(v.field for v in caught.value.violations)


def test_the_latvia_segment_holds_and_names_the_failing_condition() -> None:
    tree = conditions.parse(LATVIA_LTV_EMAIL)
    assert conditions.evaluate(tree, ada()) == conditions.Verdict(True, "condition")
    poor = ada(lifetime_value={"EUR": Decimal("900")})
    assert conditions.evaluate(tree, poor) == conditions.Verdict(False, "condition.all[1]")
    revoked = ada(consent={"email/marketing": False})
    assert conditions.evaluate(tree, revoked) == conditions.Verdict(False, "condition.all[2]")
    assert conditions.text_of(tree, "condition.all[2]") == "consent email/marketing granted"
    assert conditions.text_of(tree, "condition.all[0]") == "country = LV"


def test_unknown_fields_and_wrong_types_are_named_by_path() -> None:
    assert violations(
        {
            "all": [
                {"field": "shoe_size", "value": 42},
                {"any": [{"field": "lifetime_value", "op": "gt", "value": "lots"}]},
                {"not": {"field": "consent", "channel": "pigeon"}},
                {"field": "tags", "op": "eq", "value": "vip"},
            ]
        }
    ) == [
        "condition.all[0].field",
        "condition.all[1].any[0].value",
        "condition.all[2].not.channel",
        "condition.all[3].op",
    ]
    assert violations([]) == ["condition"]
    assert violations({"all": []}) == ["condition.all"]
    with pytest.raises(InvalidArgument) as caught:
        conditions.parse_json("{not json")
    assert [v.field for v in caught.value.violations] == ["condition"]


def refused(text: str) -> list[tuple[str, str]]:
    with pytest.raises(InvalidArgument) as caught:
        conditions.parse_json(text)
    return [(v.field, v.description) for v in caught.value.violations]


def nested(levels: int) -> str:
    """A tree whose leaf is `levels` "all" groups deep, as JSON."""
    tree: Any = {"field": "country", "op": "in", "value": ["LV", "EE"]}
    for _ in range(levels):
        tree = {"all": [tree]}
    return json.dumps(tree)


def test_json_nested_too_deep_or_too_long_is_refused_before_it_is_parsed() -> None:
    # Parsed, text this deep exhausted the interpreter's stack (RecursionError).
    assert refused("[" * 5000 + "]" * 5000) == [
        ("condition", "brackets nested deeper than 32; a tree nests at most 12 deep")
    ]
    assert refused('{"all": ' * 3000 + "1" + "}" * 3000)[0][0] == "condition"
    # Brackets inside strings (an escaped quote too) are text, not nesting.
    brackets = json.dumps({"field": "owner", "value": '"' + "[" * 100})
    assert conditions.parse_json(brackets)["value"] == '"' + "[" * 100
    too_long = json.dumps({"field": "owner", "value": "x" * conditions.MAX_JSON_CHARS})
    assert refused(too_long) == [("condition", "must be at most 50000 characters of JSON")]
    # The deepest tree allowed parses; one level more is named by its path, as before.
    assert conditions.parse_json(nested(conditions.MAX_DEPTH))
    too_deep = refused(nested(conditions.MAX_DEPTH + 1))
    assert too_deep == [("condition" + ".all[0]" * 13, "nested deeper than 12")]


def test_every_field_evaluates() -> None:
    facts = Facts(
        customer_id="c-2",
        kind="organisation",
        countries=frozenset({"EE"}),
        regions=frozenset({"HARJU"}),
        tags=frozenset({"vip", "b2b"}),
        owner="emp-1",
        open_tickets=2,
        support_contacts_30d=5,
        at_risk=True,
        segments=frozenset({"s-1"}),
    )
    held = {
        "kind": {"field": "kind", "value": "organisation"},
        "region": {"field": "region", "op": "in", "value": ["harju", "tartu"]},
        "tags": {"field": "tags", "op": "has_all", "value": ["vip", "b2b"]},
        "owner": {"field": "owner", "op": "ne", "value": "emp-2"},
        "open": {"field": "open_tickets", "op": "gte", "value": 2},
        "contacts": {"field": "support_contacts_30d", "op": "gt", "value": 4},
        "risk": {"field": "at_risk", "value": True},
        "segment": {"field": "segment", "value": "s-1"},
        "no_consent": {"field": "consent", "op": "not_granted", "channel": "sms"},
    }
    for name, raw in held.items():
        assert conditions.evaluate(conditions.parse(raw), facts).member, name
    assert not conditions.evaluate(
        conditions.parse({"field": "country", "op": "not_in", "value": ["EE"]}), facts
    ).member


# -- the explanation of a change ----------------------------------------------------------------

LEAVES = [
    {"field": "country", "op": "eq", "value": "LV"},
    {"field": "consent", "channel": "email"},
    {"field": "lifetime_value", "op": "gt", "value": 1000},
    {"field": "tags", "op": "has", "value": "vip"},
    {"field": "at_risk", "value": True},
]


def trees(depth: int = 3) -> st.SearchStrategy[Any]:
    leaf = st.sampled_from(LEAVES)
    return st.recursive(
        leaf,
        lambda children: st.one_of(
            st.lists(children, min_size=1, max_size=3).map(lambda cs: {"all": cs}),
            st.lists(children, min_size=1, max_size=3).map(lambda cs: {"any": cs}),
            children.map(lambda c: {"not": c}),
        ),
        max_leaves=8,
    )


def truth_values(tree: conditions.Tree) -> st.SearchStrategy[dict[str, bool]]:
    paths = [p for p, _ in conditions.leaves(tree)]
    return st.fixed_dictionaries({p: st.booleans() for p in paths})


@given(st.data())
def test_a_single_flipped_condition_is_the_one_named(data: st.DataObject) -> None:
    tree = conditions.parse(data.draw(trees()))
    before = data.draw(truth_values(tree))
    path = data.draw(st.sampled_from(sorted(before)))
    after = dict(before) | {path: not before[path]}
    if conditions.decide(tree, before).member == conditions.decide(tree, after).member:
        return  # that condition did not matter here
    assert conditions.changed_condition(tree, before, after) == path


@given(st.data())
def test_the_named_condition_changed_and_alone_undoes_the_flip_when_one_can(
    data: st.DataObject,
) -> None:
    tree = conditions.parse(data.draw(trees()))
    before = data.draw(truth_values(tree))
    after = data.draw(truth_values(tree))
    was, now = conditions.decide(tree, before).member, conditions.decide(tree, after).member
    if was == now:
        return
    named = conditions.changed_condition(tree, before, after)
    assert before[named] != after[named]
    single = [
        p
        for p in after
        if before[p] != after[p] and conditions.decide(tree, after | {p: before[p]}).member == was
    ]
    if single:
        assert conditions.decide(tree, after | {named: before[named]}).member == was


@given(st.data())
def test_evaluation_over_facts_matches_the_truth_of_each_condition(data: st.DataObject) -> None:
    tree = conditions.parse(data.draw(trees()))
    facts = ada(
        countries=data.draw(st.sampled_from([frozenset(), frozenset({"LV"})])),
        consent=data.draw(st.sampled_from([{}, {"email/marketing": True}])),
        tags=data.draw(st.sampled_from([frozenset(), frozenset({"vip"})])),
        at_risk=data.draw(st.booleans()),
    )
    verdict = conditions.evaluate(tree, facts)
    values = conditions.values(tree, facts)
    assert verdict == conditions.decide(tree, values)
    # The deciding condition of a typed leaf agrees with the verdict (through any nots).
    if verdict.path in values and "not" not in verdict.path:
        assert values[verdict.path] == verdict.member


def test_sales_facts_classes_products_and_purchase_recency() -> None:
    recent = ada(
        classes=frozenset({"loyal"}),
        products=frozenset({"ROUTER-X"}),
        days_since_purchase=12,
    )
    never = ada()
    within_30 = conditions.parse({"field": "days_since_purchase", "op": "lte", "value": 30})
    assert conditions.evaluate(within_30, recent).member
    assert not conditions.evaluate(within_30, never).member
    lapsed = conditions.parse({"field": "days_since_purchase", "op": "gt", "value": 90})
    assert conditions.evaluate(lapsed, never).member
    at_least_90 = conditions.parse({"field": "days_since_purchase", "op": "gte", "value": 90})
    assert conditions.evaluate(at_least_90, never).member
    exactly_90 = conditions.parse({"field": "days_since_purchase", "op": "eq", "value": 90})
    assert not conditions.evaluate(exactly_90, never).member
    bought = conditions.parse({"field": "products_bought", "value": "router-x"})
    assert conditions.evaluate(bought, recent).member
    key_or_loyal = conditions.parse({"field": "class", "op": "has_any", "value": ["key", "loyal"]})
    assert conditions.evaluate(key_or_loyal, recent).member
    assert conditions.actual(conditions.leaves(within_30)[0][1], never) == "never bought"


def test_facts_from_a_profile_take_the_larger_lifetime_value_never_the_sum() -> None:
    from datetime import date

    from google.protobuf import struct_pb2

    from c360.timeline.v1 import timeline_service_pb2 as tapi
    from c360_marketing.profiles import facts_of

    attributes = struct_pb2.Struct()
    attributes.update(
        {
            "addresses": [{"country": "LV", "region": "Riga", "city": "Rīga", "lines": ["A 1"]}],
            "consent": {"email/marketing": {"granted": False}},
            "erp": {"paid_total": {"EUR": "500.00", "USD": "20"}},
            "sales": {
                "lifetime_value": {"EUR": "800.00"},
                "last_purchase": {"on": "2026-11-20"},
                "products_bought": ["ROUTER-X"],
                "classes": {"loyal": "5 orders"},
            },
        }
    )
    facts = facts_of(
        tapi.Profile(customer_id="c", kind="person", attributes=attributes), date(2026, 12, 1)
    )
    assert facts.lifetime_value == {"EUR": Decimal("800.00"), "USD": Decimal("20")}
    assert facts.consent == {"email/marketing": False}
    assert (facts.countries, facts.region, facts.postal) == (
        frozenset({"LV"}),
        "LV / RIGA",
        "A 1, Rīga, LV",
    )
    assert (facts.days_since_purchase, facts.classes) == (11, frozenset({"loyal"}))


def test_results_group_by_country_and_region_never_a_region_beside_a_country() -> None:
    from c360_marketing.profiles import results_region

    # "BY": Bavaria's region code, and Belarus's country code.
    assert results_region({"country": "de", "region": "BY"}) == "DE / BY"
    assert results_region({"country": "BY"}) == "BY"
    assert results_region({"country": "US", "region": " ny "}) == "US / NY"
    assert results_region({"region": "Riga"}) == "RIGA"
    assert results_region({}) == ""


def test_the_facts_need_only_the_fields_marketing_asks_the_timeline_for() -> None:
    from datetime import date

    from google.protobuf import struct_pb2, timestamp_pb2
    from google.protobuf.field_mask_pb2 import FieldMask

    from c360.timeline.v1 import timeline_service_pb2 as tapi
    from c360_marketing.profiles import FACT_FIELDS, facts_of

    attributes = struct_pb2.Struct()
    attributes.update(
        {
            "addresses": [{"country": "DE", "region": "BE", "city": "Berlin", "lines": ["B 2"]}],
            "consent": {"email/marketing": {"granted": True}},
            "erp": {"paid_total": {"EUR": "10"}, "overdue_invoices": ["INV-1"]},
            "sales": {"lifetime_value": {"EUR": "12"}, "last_purchase": {"on": "2026-11-01"}},
        }
    )
    seen = timestamp_pb2.Timestamp(seconds=1_780_000_000)
    full = tapi.Profile(
        customer_id="c",
        kind="person",
        display_name="Ada",
        emails=["ada@example.com"],
        phones=["+4930123456"],
        owner_id="u-1",
        tags=["vip"],
        attributes=attributes,
        service_desk=tapi.ServiceDeskSummary(open_ticket_count=2, tickets_last_30_days=3),
        at_risk=True,
        first_seen_at=seen,
        last_contact_source="service-desk",
        touches=[tapi.SourceTouches(source="customer", count=4, last_at=seen)],
        provenance=[tapi.FieldProvenance(field="display_name", source="customer")],
    )
    masked = tapi.Profile()
    FieldMask(paths=FACT_FIELDS).MergeMessage(full, masked)
    assert not masked.provenance
    assert not masked.touches
    assert not masked.last_contact_source
    today = date(2026, 12, 1)
    assert facts_of(masked, today) == facts_of(full, today)


def test_offers_rank_what_buyers_of_the_same_products_bought_next() -> None:
    from c360_marketing.offers import offers_for, reachable, why_none

    def buyer(i: int, *skus: str) -> Facts:
        return Facts(customer_id=f"c{i}", products=frozenset(skus))

    crowd = [
        buyer(1, "A", "B", "C"),
        buyer(2, "A", "C"),
        buyer(3, "A", "D"),
        buyer(4, "B", "D"),
        buyer(5, "B", "D"),
        buyer(6, "E"),
    ]
    me = Facts(
        customer_id="me",
        products=frozenset({"A", "B"}),
        consent={"email/marketing": True, "sms/marketing": False},
    )
    found = offers_for(me, crowd)
    # D: 2 of the 3 who bought B (67 %) beats 1 of 3 via A; C: 2 of 3 who bought A.
    assert [(o.sku, o.because, o.support) for o in found] == [("C", "A", 3), ("D", "B", 3)]
    assert found[0].reason == "bought A; 67% of the 3 customers who bought A also bought C"
    assert all(o.sku not in me.products for o in found)
    assert offers_for(Facts(customer_id="new"), crowd) == []
    assert reachable(me) == ["email"]
    # No offer: said why, not always "no purchase history" (E's buyer has one).
    assert offers_for(crowd[-1], crowd) == []
    assert why_none(crowd[-1]).startswith("no product they lack was bought by enough")
    assert why_none(Facts(customer_id="new")) == "no purchase of theirs to learn from yet"


def test_customers_alike_share_their_facts_values_and_differ_where_they_differ() -> None:
    from datetime import date

    from c360.timeline.v1 import timeline_service_pb2 as tapi
    from c360_marketing import profiles
    from c360_marketing.profiles import facts_of

    def profile(customer_id: str, granted: bool, value: str) -> tapi.Profile:
        p = tapi.Profile(customer_id=customer_id, kind="person", owner_id="u-7", tags=["vip"])
        p.attributes.update(
            {
                "addresses": [{"country": "de", "region": "be"}],
                "consent": {"email/marketing": {"granted": granted}},
                "sales": {"lifetime_value": {"EUR": value}, "classes": {"loyal": True}},
            }
        )
        return p

    today = date(2026, 12, 1)
    a, b = facts_of(profile("a", True, "1"), today), facts_of(profile("b", True, "1"), today)
    for name in ("kind", "owner", "tags", "countries", "regions", "consent", "classes"):
        assert getattr(a, name) is getattr(b, name), name
    assert a.lifetime_value is b.lifetime_value
    assert (a.countries, a.consent, a.lifetime_value) == (
        frozenset({"DE"}),
        {"email/marketing": True},
        {"EUR": Decimal(1)},
    )
    c = facts_of(profile("c", False, "2"), today)
    assert c.consent == {"email/marketing": False}
    assert c.lifetime_value == {"EUR": Decimal(2)}
    assert c.tags is a.tags
    # A consent and a value equal as items ({"x": True} == {"x": Decimal(1)}) stay apart.
    consent = profiles._shared_map("consent", {"x": True})
    value = profiles._shared_map("lifetime_value", {"x": Decimal(1)})
    assert consent is not value
    assert value["x"].__class__ is Decimal
    written = profiles._shared_map("lifetime_value", {"x": Decimal("1.00")})
    assert str(written["x"]) == "1.00"
    # Past the limit, values are no longer kept to be shared (they stay correct).
    kept = len(profiles._SHARED)
    try:
        profiles.SHARED_LIMIT = kept
        e = facts_of(profile("e", True, "99"), today)
        assert e.lifetime_value == {"EUR": Decimal(99)}
        assert len(profiles._SHARED) == kept
    finally:
        profiles.SHARED_LIMIT = 100_000


def test_a_group_that_decides_is_named_by_its_members() -> None:
    tree = conditions.parse(
        {
            "all": [
                {
                    "any": [
                        {"field": "at_risk", "value": True},
                        {"field": "open_tickets", "op": "gte", "value": 1},
                    ]
                },
                {
                    "not": {
                        "any": [
                            {"field": "country", "value": "LV"},
                            {"field": "tags", "value": "vip"},
                        ]
                    }
                },
            ]
        }
    )
    out = conditions.evaluate(tree, ada())
    assert not out.member
    assert conditions.text_of(tree, out.path) == "any of (at risk = true; open tickets ≥ 1)"
    assert conditions.text_of(tree, "condition.all[1]") == (
        "not any of (country = LV; tags has vip)"
    )
    assert conditions.text_of(tree, "condition") == (
        "all of (any of (at risk = true; open tickets ≥ 1);"
        " not any of (country = LV; tags has vip))"
    )


def test_text_fields_can_ask_for_none_at_all() -> None:
    unowned = conditions.parse({"field": "owner", "op": "empty"})
    regionless = conditions.parse({"field": "region", "op": "not_empty"})
    assert conditions.evaluate(unowned, ada()).member
    assert not conditions.evaluate(unowned, ada(owner="emp-0042")).member
    assert not conditions.evaluate(regionless, ada()).member
    assert conditions.evaluate(regionless, ada(regions=frozenset({"RIGA"}))).member
    assert conditions.describe(conditions.leaves(unowned)[0][1]) == "owner is empty"
    with pytest.raises(InvalidArgument) as caught:
        conditions.parse({"field": "owner", "op": "empty", "value": "emp-1"})
    assert [v.field for v in caught.value.violations] == ["condition.value"]


def test_a_country_is_an_iso_code_as_profiles_hold_it() -> None:
    # `{"field": "country", "value": "Latvia"}` was accepted: a segment nobody could enter.
    code = "must be an ISO 3166-1 alpha-2 code such as DE"
    assert refused('{"field": "country", "value": "Latvia"}') == [("condition.value", code)]
    assert refused('{"field": "country", "op": "in", "value": ["LV", "XX"]}') == [
        ("condition.value[1]", code)
    ]
    assert conditions.parse_json('{"field": "country", "value": "lv"}')["value"] == "LV"
    # Regions are names, as addresses hold them: any text.
    assert conditions.parse_json('{"field": "region", "value": "Bayern"}')["value"] == "BAYERN"


@pytest.mark.parametrize(
    ("condition", "opposite"),
    [
        ({"field": "country", "value": "LV"}, "country ≠ LV"),
        ({"field": "country", "op": "in", "value": ["LV", "EE"]}, "country not in LV, EE"),
        ({"field": "owner", "op": "empty"}, "owner is not empty"),
        ({"field": "lifetime_value", "op": "gt", "value": 1000}, "lifetime value ≤ 1000 EUR"),
        ({"field": "open_tickets", "op": "gte", "value": 2}, "open tickets < 2"),
        ({"field": "consent", "channel": "sms"}, "consent sms/marketing not granted"),
        ({"field": "tags", "value": ["vip", "b2b"]}, "tags has none of b2b, vip"),
        (
            {"field": "class", "op": "has_all", "value": ["key", "loyal"]},
            "not class has all of key, loyal",
        ),
        ({"field": "at_risk", "value": True}, "at risk ≠ true"),
        ({"field": "kind", "value": "person"}, "kind ≠ person"),
    ],
)
def test_a_condition_that_does_not_hold_is_worded_as_what_holds(
    condition: dict[str, Any], opposite: str
) -> None:
    tree = conditions.parse(condition)
    assert conditions.text_of(tree, "condition", holds=False) == opposite


def test_a_group_that_does_not_hold_is_worded_as_what_holds() -> None:
    tree = conditions.parse(
        {
            "all": [
                {"any": [{"field": "at_risk", "value": True}, {"field": "country", "value": "LV"}]},
                {"not": {"field": "tags", "value": "vip"}},
            ]
        }
    )
    truth = conditions.values(tree, ada(tags=frozenset({"vip"}), countries=frozenset()))
    assert not conditions.holds_at(tree, "condition.all[0]", truth)
    assert conditions.text_of(tree, "condition.all[0]", holds=False) == (
        "none of (at risk = true; country = LV)"
    )
    assert conditions.holds_at(tree, "condition.all[1].not", truth)
    assert conditions.text_of(tree, "condition.all[1]", holds=False) == "tags has vip"
    assert conditions.text_of(tree, "condition", holds=False).startswith("not all of (")
