"""The README's tour runs as written: every command of it, in order, against `c360 up` after
`c360 demo` (a smaller demo, for time), with the ids it prints filled in where the README
writes <customer_id> and the like. A command whose comment says "refused" must fail with a
message; every other one must succeed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from .test_cli import Up, up  # noqa: F401  (the fixture)
from .tour import ROOT, Step, Tour, steps

pytestmark = pytest.mark.integration

DEMO_AS_WRITTEN = "c360 demo --customers 200"
DEMO_HERE = "c360 demo --customers 60"


def _first(items: list[dict[str, object]], key: str, **match: object) -> str:
    for item in items:
        if all(item.get(k) == v for k, v in match.items()):
            return str(item[key])
    raise AssertionError(f"no {match} among {len(items)}")


def lookups() -> dict[str, object]:
    """How a user finds what the README leaves to them (a lookup, not a step of the tour)."""
    return {
        "time": lambda t: datetime.now(UTC).isoformat(),
        "command": lambda t: "customer",
        "survivor_id": lambda t: _pair(t)["customer_id"],
        "duplicate_id": lambda t: _pair(t)["duplicate_id"],
        "duplicate_email": lambda t: t.c360_json("customer", "get", t.values["duplicate_id"])[
            "emails"
        ][0],
        "id": lambda t: t.c360_json("deadletter", "list")["dead_letters"][0]["id"],
        "lead_id": lambda t: next(
            str(lead["lead_id"])
            for lead in t.c360_json("lead", "list", "--limit", "200")["leads"]
            if "Berg Logistik" in str(lead)
        ),
        "order_id": lambda t: t.c360_json("order", "list")["orders"][0]["order_id"],
        # The customer writes about the ticket's matter again, by e-mail: a second ticket.
        "duplicate_ticket_id": lambda t: t.c360_json(
            "ticket",
            "open",
            "--customer",
            t.values["customer_id"],
            "--channel",
            "email",
            "--subject",
            "Card still blocked",
        )["ticket_id"],
        "member_id": _member,
        "winter_campaign_id": lambda t: _first(
            t.c360_json("campaign", "list")["campaigns"], "campaign_id", name="Winter in Latvia"
        ),
        "campaign_id": lambda t: _first(
            t.c360_json("campaign", "list")["campaigns"], "campaign_id", state="finished"
        ),
        "phone_campaign_id": lambda t: _first(
            t.c360_json("campaign", "list")["campaigns"], "campaign_id", channel="phone"
        ),
        "called_customer_id": lambda t: t.c360_json(
            "calllist", "next", t.values["call_list_id"], "--agent", "emp-0003"
        )["entry"]["customer_id"],
    }


def _member(tour: Tour) -> str:
    """A member of latvia-high-value, as `segment members` lists them (a smaller demo than the
    README's may have none: then one who has marketing e-mail consent)."""
    for segment in ("latvia-high-value", "email-marketing"):
        members = tour.c360_json("segment", "members", segment)["members"]
        if members:
            return str(members[0]["customer_id"])
    raise AssertionError("the demo made no segment members")


def _pair(tour: Tour) -> dict[str, str]:
    pairs = tour.c360_json("customer", "duplicates", "--min-score", "0.8")["pairs"]
    assert pairs, "the demo made no likely duplicates"
    return {k: str(v) for k, v in pairs[0].items()}


# Some 150 commands, each a CLI process of its own: 140-250 s on an idle 2-core machine, more
# beside the rest of `make test`; the suite's 300 s stopped it once half-way (a clean-clone CI
# run on a busy machine). A command that hangs is still stopped by its own 300 s.
@pytest.mark.timeout(900)
def test_every_command_of_the_readme_tour(up: Up, tmp_path: Path) -> None:  # noqa: F811
    written = steps((ROOT / "README.md").read_text())
    assert any(s.command == DEMO_AS_WRITTEN for s in written), "the tour starts with the demo"
    tour = Tour(up.home, tmp_path / "terminal", lookups=lookups())  # type: ignore[arg-type]
    failures: list[str] = []
    demos: dict[str, object] = {}
    for step in written:
        step = step if step.command != DEMO_AS_WRITTEN else Step(step.line, DEMO_HERE, "")
        try:
            code, _, err = tour.run(step)
        except AssertionError as missing:
            failures.append(str(missing))
            continue
        if step.command == DEMO_HERE:
            demos = _demos_definitions(tour)
        command = tour.ran[-1][1]
        if step.refused and (code == 0 or not err.strip()):
            failures.append(f"README line {step.line}: {command!r} was not refused")
        if not step.refused and code != 0:
            failures.append(f"README line {step.line}: {command!r} exit {code}: {err[-500:]}")
        if "Traceback" in err:
            failures.append(f"README line {step.line}: {command!r} printed a traceback")
    # The tour defines sales set-up of its own: the demo's pipeline and price list (its
    # deals stand in their stages) are as the demo left them. (It defined the demo's `default`
    # pipeline with two open stages, stranding the deals in the other two, and the demo's
    # `standard` price list with one of its three rules.)
    if demos and demos != _demos_definitions(tour):
        failures.append("the tour changed the demo's default pipeline or standard price list")
    assert not failures, "\n".join(failures) + f"\n{up.logs()[-3000:]}"


def _demos_definitions(tour: Tour) -> dict[str, object]:
    pipelines = tour.c360_json("pipeline", "list")["pipelines"]
    return {
        "pipeline": [p["stages"] for p in pipelines if p["name"] == "default"],
        "price_list": tour.c360_json("pricelist", "show", "standard")["rules"],
    }
