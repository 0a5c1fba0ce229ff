"""End to end: the example ERP bridge against a `c360 up` stack with NATS permissions on."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from .test_cli import running_up

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BRIDGE = ROOT / "examples" / "erp_bridge.py"


@pytest.fixture
def home(tmp_path: Path, database_url: str) -> Iterator[Path]:
    """`c360 up` with its own embedded nats-server (users and permissions generated)."""
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env["C360_POSTGRES_URL"] = database_url
    with running_up(tmp_path / "home", env) as running:
        yield running.home


def run(*command: str) -> Any:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{' '.join(command)}: {done.stderr}"
    return json.loads(done.stdout)


def c360(home: Path, *args: str) -> Any:
    return run(sys.executable, "-m", "c360_cli.main", "--home", str(home), *args, "--json")


def bridge(home: Path, *args: str) -> Any:
    return run(sys.executable, str(BRIDGE), "--home", str(home), *args)


def test_a_registered_customer_becomes_a_debtor_and_its_invoice_reaches_c360(home: Path) -> None:
    endpoints = json.loads((home / "endpoints.json").read_text())
    assert endpoints["nats_users"].keys() >= {"erp", "timeline", "customer", "service-desk"}

    customer = c360(home, "customer", "register", "--name", "Dupont SA", "--email", "ap@dupont.fr")
    customer_id = customer["customer_id"]
    c360(home, "timeline", "show", customer_id, "--wait-for", customer["consistency_token"])

    assert bridge(home, "follow", "--drain") == {"debtors_opened": 1}
    [debtor] = bridge(home, "debtors")
    assert (debtor["customer_id"], debtor["name"]) == (customer_id, "Dupont SA")

    invoice = bridge(home, "invoice", customer_id, "--amount", "1250", "--due-days", "14")
    bridge(home, "pay", invoice["invoice_number"], "--amount", "250")
    # Two of the items come back: credited, not paid.
    note = bridge(home, "credit", invoice["invoice_number"], "--amount", "200")

    deadline = time.monotonic() + 30
    while True:
        shown = c360(home, "timeline", "show", customer_id)
        erp = [e for e in shown["entries"] if e["source"] == "erp"]
        if len(erp) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [e["type"] for e in erp] == ["credit_note.issued", "payment.received", "invoice.issued"]
    assert invoice["invoice_number"] in erp[2]["summary"]
    assert erp[0]["summary"] == (
        f"Credit note {note['credit_note_number']} issued: 200.00 EUR"
        f" for invoice {invoice['invoice_number']}"
    )
    profile = c360(home, "profile", "show", customer_id)
    account = profile["attributes"]["erp"]
    assert account["outstanding"] == {"EUR": "800.00"}
    open_invoice = account["open_invoices"][invoice["invoice_number"]]
    assert (open_invoice["paid"], open_invoice["credited"]) == ("250.00", "200.00")
    assert account["last_payment"]["amount"] == "250.00"
    assert account["paid_total"] == {"EUR": "250.00"}
    [debtor] = bridge(home, "debtors")
    assert debtor["open_amount"] == 800

    # Forgotten on request: the ERP gets CustomerForgotten and keeps the account without the
    # name (its ledger file holds no copy of it either); the invoices stay on the timeline.
    forgot = c360(home, "customer", "forget", customer_id)
    assert forgot["forgotten_ids"] == customer_id
    assert bridge(home, "follow", "--drain") == {"debtors_opened": 0}
    [debtor] = bridge(home, "debtors")
    assert (debtor["customer_id"], debtor["name"]) == (customer_id, "[forgotten]")
    assert b"Dupont SA" not in (home / "erp-bridge.sqlite").read_bytes()
    shown = c360(home, "timeline", "show", customer_id, "--wait-for", forgot["consistency_token"])
    assert {"payment.received", "invoice.issued", "customer.forgotten"} <= {
        e["type"] for e in shown["entries"]
    }

    # A message c360 refuses: the bridge reads the letter of it, with the reason, from the
    # dead letters of its own messages (each once).
    asyncio.run(_publish_as_erp(home, "erp.invoice.issued", b"not an ErpEvent"))
    deadline = time.monotonic() + 30
    letters: list[dict[str, str]] = []
    while not letters and time.monotonic() < deadline:
        letters = bridge(home, "refused")
    [letter] = letters
    assert (letter["subject"], letter["refused_by"]) == ("erp.invoice.issued", "timeline")
    assert "not a c360.erp.v1.ErpEvent" in letter["reason"]
    assert bridge(home, "refused") == []


async def _publish_as_erp(home: Path, subject: str, data: bytes) -> None:
    url = json.loads((home / "endpoints.json").read_text())["nats_users"]["erp"]
    nc = await nats.connect(url, inbox_prefix="_INBOX_erp")
    try:
        await nc.jetstream().publish(subject, data)
    finally:
        await nc.close()
