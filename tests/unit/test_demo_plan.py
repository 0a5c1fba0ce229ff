"""The demo's plan, without servers: what it will do to whom."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from rich.progress import Progress

from c360_cli.demo import BLOCK, CustomerPlan, DemoRun, build_plan


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
    # A technician is never booked on two visits at once: every visit has a window of its own.
    slots = [v.slot for v in visits]
    assert len(set(slots)) == len(slots)
    # Some visits are still to come: a dispatcher's board was all history.
    assert sum(v.upcoming for v in visits) == 3


def _request_ids_on(day: date, plan: CustomerPlan) -> list[str]:
    """The request ids of an organisation's contract and visit commands, run on `day`."""
    return [r.request_id for r in _requests_on(day, plan)]


def _requests_on(day: date, plan: CustomerPlan, first: date | None = None) -> list[Any]:
    """The requests of an organisation's contract and visit commands, run on `day` (of
    which `day` is the yesterday) for an organisation registered by a run whose yesterday
    was `first` (default: this run)."""
    sent: list[Any] = []

    class Stub:
        def __getattr__(self, method: str) -> str:
            return method

    class Client:
        def stub(self, *_: object) -> Stub:
            return Stub()

    async def call(method: object, request: Any, *_: object, **__: object) -> Any:
        sent.append(request)
        return SimpleNamespace(result=SimpleNamespace(aggregate_id=f"id-{len(sent)}"))

    progress = Progress()
    run = DemoRun(Client(), [plan], 42, 1, 5.0, progress, progress.add_task("t"))  # type: ignore[arg-type]
    run.ids[plan.index] = "00000000-0000-4000-8000-000000000001"
    run.day = day

    async def registered_at(index: int) -> datetime:
        # Registered by the run on the day after `first` (whose yesterday `first` is).
        return datetime.combine((first or day) + timedelta(days=1), time(10, 17), UTC)

    run.call = call  # type: ignore[method-assign]
    run.registered_at = registered_at  # type: ignore[method-assign]

    async def contract() -> None:
        await run.contract_script(plan)()

    asyncio.run(contract())
    return sent


def test_a_run_on_a_later_day_replays_the_contract_and_visit_of_the_first() -> None:
    # Their request ids named the day: every day's run gave each organisation one more
    # "Business support" contract and one more visit (the README says: one).
    organisation = build_plan(1, seed=42)[0]
    assert organisation.visit is not None
    monday = _request_ids_on(date(2026, 12, 7), organisation)
    assert len(monday) == 1 + 8  # the contract, the visit's eight steps
    assert _request_ids_on(date(2026, 12, 8), organisation) == monday
    # And the requests themselves: the contract's period and the visit's window came from
    # the day of the run, so Tuesday's run sent Monday's request ids with other dates, and
    # the service desk refused it ("request-id: was already used for a different request").
    # They are dated from the day of the run that registered the organisation.
    first = date(2026, 12, 7)
    assert _requests_on(date(2026, 12, 9), organisation, first) == _requests_on(first, organisation)


def test_a_visit_falls_under_the_contract_only_while_it_is_valid() -> None:
    # The service desk refuses a visit under an expired contract: the demo's organisations
    # whose contract ended before today get their visit without it.
    visited = [p for p in build_plan(125 * BLOCK, seed=42) if p.visit is not None]
    assert visited
    for plan in visited:
        assert plan.contract_end is not None
        sent = _requests_on(date(2026, 12, 7), plan)
        contract, made = sent[0], sent[1]
        assert contract.ends_on == (date(2026, 12, 7) + timedelta(plan.contract_end)).isoformat()
        assert made.contract_id == ("id-1" if plan.contract_end >= 1 else "")
        # Booked for a time to come (the service desk refuses a window that has passed).
        registered = datetime.combine(date(2026, 12, 8), time(10, 17), UTC)
        assert sent[2].window_start.ToDatetime(tzinfo=UTC) > registered
    assert {p.contract_end >= 1 for p in visited if p.contract_end is not None} == {True, False}


def test_the_demos_visits_are_booked_in_working_hours_of_the_days_ahead() -> None:
    from c360_cli.demo import visit_window

    friday = datetime(2026, 12, 11, 16, 40, tzinfo=UTC)
    starts = [visit_window(friday, slot) for slot in range(5)]
    assert [f"{s:%a %d %H:%M}" for s in starts] == [
        "Mon 14 09:00",
        "Mon 14 13:00",
        "Tue 15 09:00",
        "Tue 15 13:00",
        "Wed 16 09:00",
    ]


def test_the_summary_ends_with_how_the_run_went() -> None:
    # The marketing figures came after commands, replayed, retries and seconds.
    from c360_cli.demo import _summary

    plans = build_plan(8, seed=42)
    progress = Progress()
    run = DemoRun(None, plans, 42, 1, 5.0, progress, progress.add_task("t"))  # type: ignore[arg-type]
    run.marketing = SimpleNamespace(summary=lambda: {"segments": 5})  # type: ignore[assignment]
    shown = [k for k, v in _summary(plans, run, 42, 1.0).items() if not isinstance(v, list)]
    assert shown[-4:] == ["commands", "replayed", "retries", "seconds"]
    assert "segments" in shown


def test_the_erp_message_c360_refuses_is_about_the_same_order_in_every_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It was about the order accepted first in the run, which varies with the calls'
    # concurrency: each run sent a message of its own, and `deadletter list` grew by two.
    import nats

    from c360.sales.v1 import sales_service_pb2 as sapi
    from c360_cli import sales_demo

    published: list[str] = []

    class JetStream:
        async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
            published.append(headers["Nats-Msg-Id"])

    class Nats:
        def jetstream(self) -> JetStream:
            return JetStream()

        async def close(self) -> None:
            pass

    async def connect(*_: object, **__: object) -> Nats:
        return Nats()

    async def get_order(method: object, request: Any, *_: object) -> Any:
        order = sapi.Order(order_id=request.order_id, customer_id="c", order_number="SO-1")
        order.lines.add(line_id="l1", quantity="1")
        return sapi.GetOrderResponse(order=order)  # not pending: only the refused one goes

    monkeypatch.setattr(nats, "connect", connect)
    monkeypatch.setattr(sales_demo, "_erp_nats_url", lambda _: "nats://erp@127.0.0.1:1")
    run = SimpleNamespace(
        plans=[],
        seed=42,
        retrying=get_order,
        client=SimpleNamespace(
            endpoints=SimpleNamespace(source="endpoints.json"),
            stub=lambda *_: SimpleNamespace(GetOrder="GetOrder"),
        ),
    )
    orders = ["6b1c0000-0000-4000-8000-000000000001", "0a2d0000-0000-4000-8000-000000000002"]
    for accepted in (orders, orders[::-1]):
        demo = sales_demo.SalesDemo(run)
        demo.orders = [(o, False) for o in accepted]
        asyncio.run(demo.deliver())
    assert len(published) == 2
    assert published[0] == published[1]
