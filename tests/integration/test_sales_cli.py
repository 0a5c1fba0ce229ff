"""`c360 lead|opportunity|quote|order|product|pricelist|pipeline|forecast` end to end against a
stack `c360 up` runs: a phone lead to an accepted quote and a confirmed order, the price list
document (CSV), the pipeline now and as of before the win, the forecast's weighted sum."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from .test_cli import Up, up  # noqa: F401 (up is a fixture)
from .test_service_desk_cli import Cli

pytestmark = pytest.mark.integration


def test_sales_commands_from_lead_to_order_with_pipeline_as_of_and_forecast(
    up: Up,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli = Cli(up.home, capsys)
    c = cli.json
    c("product", "define", "ROUTER-X", "--name", "Router X", "--category", "hardware",
      "--price", "200", "--currency", "EUR", "--cost", "120")  # fmt: skip
    rule = "scope=category,target=hardware,compute=formula,base=list-price,discount=10,round=1"
    c("pricelist", "define", "standard", "--currency", "EUR", "--rule", rule)
    c("pipeline", "define", "default", "--stage", "qualification:10", "--stage", "proposal:40",
      "--stage", "won:won", "--stage", "lost:lost")  # fmt: skip
    code, out, _ = cli.run("pricelist", "show", "standard", "--csv")
    assert code == 0
    assert (
        out.splitlines()[1] == "ROUTER-X,Router X,hardware,200,180.00,EUR,r1,list 200 -10% round 1"
    )
    lead = c("lead", "capture", "--channel", "phone", "--person", "Jonas Weber",
             "--phone", "+49 30 1234567", "--territory", "de-east", "--value", "3600",
             "--currency", "EUR")  # fmt: skip
    lead_id = lead["lead_id"]
    assert c("lead", "assign", lead_id, "--agent", "emp-3")["agent_id"] == "emp-3"
    c("lead", "qualify", lead_id)
    converted = c("lead", "convert", lead_id, "--register", "--pipeline", "default",
                  "--close", "2027-01-20")  # fmt: skip
    oid = converted["opportunity_id"]
    c("opportunity", "move", oid, "proposal")
    quote = c("quote", "draft", "--opportunity", oid, "--pricelist", "standard")
    qid = quote["quote_id"]
    c("quote", "add", qid, "--product", "ROUTER-X", "--qty", "20")
    c("quote", "send", qid)
    shown = c("quote", "show", qid)
    assert shown["lines"][0]["unit_price"] == "180.00"
    assert shown["gross_total"]["amount"] == "3600.00"
    pipeline = c("pipeline")
    assert [(r["stage"], r["weighted_amount"]) for r in pipeline["rows"]] == [
        ("proposal", "1440.00")
    ]
    forecast = c("forecast", "--period", "quarter")
    assert [
        (r["period"], r["forecast_category"], r["weighted_amount"]) for r in forecast["rows"]
    ] == [("2027-Q1", "pipeline", "1440.00")]
    time.sleep(0.05)
    before = datetime.now(UTC).isoformat()
    time.sleep(0.05)
    order_id = c("quote", "accept", qid)["order_id"]
    c("opportunity", "win", oid)
    order = c("order", "show", order_id)
    assert (order["state"], order["gross_total"]["amount"]) == ("pending", "3600.00")
    assert c("pipeline")["rows"] == []
    then = c("pipeline", "--as-of", before)
    assert [(r["stage"], r["count"]) for r in then["rows"]] == [("proposal", 1)]
    assert [o["name"] for o in c("opportunity", "list", "--state", "won")["opportunities"]] == [
        "Jonas Weber"
    ]
    code, out, _ = cli.run("pipeline", "--as-of", before)
    assert code == 0
    assert "proposal" in out
    assert "1440.00" in out
    call = c("activity", "schedule", "--kind", "call", "--subject", "Ask about the rollout",
             "--due", "2026-01-05T09:00:00Z", "--agent", "emp-3",
             "--customer", converted["customer_id"])  # fmt: skip
    listed = c("activity", "list", "--agent", "emp-3", "--due", "overdue")["activities"]
    assert [(a["activity_id"], a["kind"], a["overdue"]) for a in listed] == [
        (call["activity_id"], "call", True)
    ]
    c("activity", "done", call["activity_id"], "--outcome", "rollout in March")
    assert c("activity", "list", "--agent", "emp-3", "--due", "overdue")["activities"] == []
    report = c("sales", "report", "conversion")
    assert report["conversion"][0]["won"] == "1"
    deadline = time.monotonic() + 15
    glance = c("sales", "customer", converted["customer_id"])
    while glance.get("orders_by_state") != {"pending": 1} and time.monotonic() < deadline:
        time.sleep(0.2)  # the timeline applies the latest events a moment later
        glance = c("sales", "customer", converted["customer_id"])
    assert glance["orders_by_state"] == {"pending": 1}
    assert glance["owner_id"] == "emp-3"
    code, out, _ = cli.run("sales", "customer", converted["customer_id"])
    assert code == 0
    assert "lifetime value" in out
    assert "pending 1" in out
