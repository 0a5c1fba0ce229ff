"""End to end through the CLI and the example delivery provider, on a `c360 up` stack with
NATS permissions on: a Latvian customer with a lifetime value over 1,000 EUR (paid through the
example ERP bridge) and e-mail consent is in the segment; a campaign reaches them; the
provider, as the `delivery` user, reports back; the results show it by region with cost."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .test_erp_bridge import ROOT, bridge, c360, run
from .test_erp_bridge import home as home  # a fixture: `c360 up` in a home of its own

pytestmark = pytest.mark.integration
PROVIDER = ROOT / "examples" / "delivery_provider.py"
SEGMENT = {
    "all": [
        {"field": "country", "value": "LV"},
        {"field": "lifetime_value", "op": "gt", "value": 1000},
        {"field": "consent", "channel": "email", "purpose": "marketing"},
    ]
}


def provider(home: Path, *args: str) -> Any:
    return run(sys.executable, str(PROVIDER), "--home", str(home), *args)


def until(check: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.25)
    return found


def test_the_provider_reports_on_a_campaign_and_the_results_show_them(home: Path) -> None:
    endpoints = json.loads((home / "endpoints.json").read_text())
    assert "delivery" in endpoints["nats_users"]
    customer_id = c360(
        home, "customer", "register", "--name", "Līga Ozola", "--email", "liga@example.lv"
    )["customer_id"]
    c360(
        home,
        "customer",
        "address",
        "add",
        customer_id,
        "--line",
        "Brīvības iela 1",
        "--city",
        "Rīga",
        "--country",
        "LV",
    )
    c360(
        home,
        "customer",
        "consent",
        "grant",
        customer_id,
        "--channel",
        "email",
        "--purpose",
        "marketing",
        "--source",
        "web form",
    )
    bridge(home, "follow", "--drain")
    invoice = bridge(home, "invoice", customer_id, "--amount", "1250")
    bridge(home, "pay", invoice["invoice_number"])

    c360(home, "segment", "create", "latvia-ltv", "--condition", json.dumps(SEGMENT))
    members = until(
        lambda: c360(home, "segment", "members", "latvia-ltv")["members"], "the segment member"
    )
    assert [m["customer_id"] for m in members] == [customer_id]
    why = c360(home, "segment", "why", "latvia-ltv", customer_id)
    assert why["member"] is True

    campaign_id = c360(
        home,
        "campaign",
        "plan",
        "Winter in Rīga",
        "--segment",
        "latvia-ltv",
        "--channel",
        "email",
        "--starts",
        "2026-12-01",
        "--ends",
        "2026-12-31",
        "--budget",
        "50",
        "--cost-per-send",
        "0.10",
        "--expected-responses",
        "1",
    )["campaign_id"]
    c360(home, "campaign", "approve", campaign_id)
    launched = c360(home, "campaign", "launch", campaign_id)
    assert launched["round"]["sent"] == "1"

    done = provider(home, "follow", "--drain")
    assert (
        done["reports"].get("delivered", 0)
        + done["reports"].get("hard_bounced", 0)
        + (done["reports"].get("soft_bounced", 0))
        == 1
    )

    def reported() -> Any:
        results = c360(home, "campaign", "results", campaign_id, "--by", "region")
        total = results["total"]
        return results if int(total.get("delivered", 0)) + int(total.get("bounced", 0)) else None

    results = until(reported, "the provider's reports in the results")
    assert results["total"]["sent"] == "1"
    assert results["total"]["cost"] == "0.10"
    assert [r["key"] for r in results["rows"]] == ["LV"]
