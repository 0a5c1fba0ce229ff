"""End to end through the CLI and the example delivery provider, on a `c360 up` stack with
NATS permissions on: a Latvian customer with a lifetime value over 1,000 EUR (paid through the
example ERP bridge) and e-mail consent is in the segment; a campaign reaches them; the
provider, as the `delivery` user, reports back; the results show it by region with cost."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest

from c360.events.v1 import marketing_events_pb2 as mev
from c360.marketing.v1 import delivery_pb2

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


def _launch(home: Path, name: str, segment: str, *options: str) -> str:
    """An e-mail campaign on `segment` running this month, planned, approved and launched:
    its id (the segment's one member sent to)."""
    today = datetime.now(UTC).date()
    starts, ends = today - timedelta(days=15), today + timedelta(days=15)
    plan = ["--segment", segment, "--channel", "email", "--starts", starts.isoformat()]
    plan += ["--ends", ends.isoformat(), "--budget", "50", "--cost-per-send", "0.10", *options]
    campaign_id = str(c360(home, "campaign", "plan", name, *plan)["campaign_id"])
    c360(home, "campaign", "approve", campaign_id)
    assert c360(home, "campaign", "launch", campaign_id)["round"]["sent"] == "1"
    return campaign_id


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

    campaign_id = _launch(home, "Winter in Rīga", "latvia-ltv", "--expected-responses", "1")

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


async def _report_elsewhere(home: Path, touch_id: str) -> None:
    """Another provider (the demo plays one) reports the touch delivered, with its own id."""
    url = json.loads((home / "endpoints.json").read_text())["nats_users"]["delivery"]
    message = delivery_pb2.DeliveryReport(
        report_id=str(uuid.uuid4()),
        touch_id=touch_id,
        kind=mev.TOUCH_RESPONSE_KIND_DELIVERED,
    )
    message.occurred_at.GetCurrentTime()
    nc = await nats.connect(url, inbox_prefix="_INBOX_delivery")
    try:
        await nc.jetstream().publish(
            "delivery.delivered",
            message.SerializeToString(),
            headers={"Nats-Msg-Id": message.report_id},
        )
    finally:
        await nc.close()


def test_the_provider_reports_only_on_touches_no_provider_reported_on(home: Path) -> None:
    """A touch another provider reported on (the demo reports on its own sends) is not
    reported on again: the campaign's results stay as they were; a new touch is reported."""
    customer_id = c360(
        home, "customer", "register", "--name", "Anna Bērziņa", "--email", "anna@example.lv"
    )["customer_id"]
    c360(home, "customer", "consent", "grant", customer_id, "--channel", "email",
         "--purpose", "marketing", "--source", "web form")  # fmt: skip
    condition = {"field": "consent", "channel": "email", "purpose": "marketing"}
    c360(home, "segment", "create", "mailable", "--condition", json.dumps(condition))
    until(lambda: c360(home, "segment", "members", "mailable")["members"], "the member")

    def entries(kind: str) -> list[Any]:
        shown = c360(home, "timeline", "show", customer_id)["entries"]
        return [e for e in shown if e["type"] == kind]

    first = _launch(home, "Reported elsewhere", "mailable")
    [sent] = until(lambda: entries("touch.sent"), "the touch on the timeline")
    touch_id = sent.get("aggregate_id") or sent["aggregateId"]
    asyncio.run(_report_elsewhere(home, touch_id))
    # On the stream, as the timeline shows it: the provider's consumer reads it from there.
    until(lambda: entries("touch.responded"), "the other provider's report")
    before = c360(home, "campaign", "results", first)["total"]
    assert before["delivered"] == "1"

    assert provider(home, "follow", "--drain") == {"reports": {}}
    assert c360(home, "campaign", "results", first)["total"] == before

    second = _launch(home, "Reported here", "mailable")
    done = provider(home, "follow", "--drain")
    assert sum(done["reports"].values()) >= 1
    until(
        lambda: (
            c360(home, "campaign", "results", second)["total"].get("sent") == "1"
            and len(entries("touch.responded")) >= 2
        ),
        "this provider's reports",
    )
    assert provider(home, "follow", "--drain") == {"reports": {}}
    assert c360(home, "campaign", "results", first)["total"] == before
