"""The demo's plan, without servers: what it will do to whom."""

from __future__ import annotations

from collections import Counter

from c360_cli.demo import BLOCK, build_plan


def test_visits_go_to_every_other_organisation_across_technicians_and_regions() -> None:
    plans = build_plan(26 * BLOCK, seed=42)
    organisations = [p for p in plans if p.kind == "organisation"]
    visits = [p.visit for p in organisations if p.visit is not None]
    assert len(organisations) == 26
    assert len(visits) == 13
    # Organisations are every BLOCK-th customer: steps taken from the customer's index (a
    # multiple of 8) % 4 sent every visit to emp-1100 in the north.
    technicians = Counter(v.technician for v in visits)
    regions = Counter(v.region for v in visits)
    assert sorted(technicians) == ["emp-1100", "emp-1101", "emp-1102", "emp-1103"]
    assert sorted(regions) == ["east", "north", "south", "west"]
    assert max(technicians.values()) - min(technicians.values()) <= 2
    assert len({v.labour_minutes for v in visits}) == 4
    assert {v.fixed for v in visits} == {True, False}
    assert len({v.score for v in visits}) == 3
