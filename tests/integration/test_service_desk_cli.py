"""`c360 ticket ...` end to end, as an agent would use it, against a stack `c360 up` runs.

The commands run in this process (`c360_cli.main.main`), to spare an interpreter start per
command; test_cli runs them as subprocesses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from c360_cli.main import main

from .test_cli import Up, up  # noqa: F401 (up is a fixture)

pytestmark = pytest.mark.integration


class Cli:
    """The CLI against one home, with its output captured."""

    def __init__(self, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.home = home
        self.capsys = capsys

    def run(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["--home", str(self.home), *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str) -> Any:
        code, out, err = self.run(*args, "--json")
        assert code == 0, f"c360 {' '.join(args)}: {err}"
        return json.loads(out)


def test_ticket_commands_show_context_and_four_contacts_flag_the_customer(
    up: Up,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli = Cli(up.home, capsys)
    c360_json = cli.json
    customer = c360_json(
        "customer", "register", "--name", "Kārlis Bērziņš", "--email", "karlis@example.lv"
    )
    cid = customer["customer_id"]
    opened = c360_json(
        "ticket",
        "open",
        "--customer",
        cid,
        "--channel",
        "phone",
        "--subject",
        "Router keeps dropping the connection",
    )
    first = opened["ticket_id"]

    shown = c360_json("ticket", "show", first)
    assert shown["ticket"]["channel"] == "phone"
    assert shown["ticket"]["state"] == "open"
    context = shown["context"]
    assert context["available"] is True
    assert context["profile"]["customer_id"] == cid
    assert context["profile"]["display_name"] == "Kārlis Bērziņš"
    assert context["profile"]["service_desk"]["open_tickets"][0]["ticket_id"] == first

    tickets, token = [first], ""
    for channel in ("email", "web-form", "chat"):
        reply = c360_json(
            "ticket", "open", "--customer", cid, "--channel", channel, "--subject", "Again"
        )
        tickets.append(reply["ticket_id"])
        token = reply["consistency_token"]
    profile = c360_json("profile", "show", cid, "--wait-for", token)
    assert profile["at_risk"] is True
    assert [r["ticket_id"] for r in profile["at_risk_reasons"]] == tickets
    assert profile["service_desk"]["open_ticket_count"] == 4

    c360_json("ticket", "resolve", first, "--resolution", "Replaced the router")
    c360_json("ticket", "close", first)
    code, _, err = cli.run("ticket", "resolve", first, "--resolution", "again")
    assert code == 1
    assert f"not possible: ticket {first} is closed: cannot resolve it" in err
    listed = c360_json("ticket", "list", "--customer", cid, "--state", "open")
    assert [t["ticket_id"] for t in listed["tickets"]] == tickets[:0:-1]

    report = c360_json("verify")
    assert report["ok"] is True, report
    # 4 opened with their SLA policy; 2 targets met, resolved; closed
    assert report["sources"]["service-desk"]["stored_events"] == 12
    assert report["other_entries"] == 1  # the at-risk flag

    # SLA clocks on screen: on hold, resumed; the targets with due time and status
    second = tickets[1]
    held = c360_json("ticket", "hold", second, "--waiting-for", "customer", "--reason", "photo")
    assert held["ticket_id"] == second
    paused = c360_json("ticket", "show", second)["ticket"]
    assert paused["waiting_for"] == "customer"
    assert {t["status"] for t in paused["sla_targets"]} == {"paused"}
    on_hold = c360_json("ticket", "list", "--customer", cid, "--on-hold")["tickets"]
    assert [(t["ticket_id"], t["waiting_for"]) for t in on_hold] == [(second, "customer")]
    to_work = c360_json("ticket", "list", "--customer", cid, "--not-on-hold")["tickets"]
    assert [t["ticket_id"] for t in to_work] == [tickets[3], tickets[2]]
    code, out, _ = cli.run("ticket", "list", "--customer", cid, "--on-hold")
    assert code == 0
    assert "on hold" in out
    c360_json("ticket", "resume", second)
    code, out, _ = cli.run("ticket", "show", second)
    assert code == 0
    assert "SLA: policy normal" in out
    assert "first-response" in out
    code, _, err = cli.run("ticket", "resume", second)
    assert code == 1
    assert "not waiting" in err

    # a contact that needs no ticket, in the profile's contact history
    recorded = c360_json(
        "contact", "record", "--customer", cid, "--channel", "sms", "--direction", "outbound",
        "--outcome", "information", "--note", "Your router ships today",
    )  # fmt: skip
    profile = c360_json("profile", "show", cid, "--wait-for", recorded["consistency_token"])
    assert profile["service_desk"]["contacts_total"] == 1
    assert profile["service_desk"]["recent_contacts"][0]["channel"] == "sms"
    code, out, _ = cli.run("profile", "show", cid)
    assert "contact history" in out
    code, _, err = cli.run(
        "contact", "record", "--customer", cid, "--channel", "sms", "--outcome", "self-service"
    )
    assert code != 0
    assert "outcome" in err

    # SLA compliance of the period: three normal tickets (the chat one has its own policy),
    # one resolved in time
    report = c360_json("ticket", "sla-report")
    rows = {(r["dimension"], r["value"]): r for r in report["rows"]}
    normal = rows[("policy", "normal")]
    assert (normal["tickets"], normal["met"], normal["running"]) == (3, 1, 2)
    assert rows[("policy", "chat")]["tickets"] == 1
    code, out, _ = cli.run("ticket", "sla-report")
    assert "compliance" in out

    # a service contract: created, and in the profile
    contract = c360_json(
        "contract", "create", "--customer", cid, "--name", "Router care", "--service",
        "router-care", "--starts", "2026-01-01", "--ends", "2099-12-31",
    )  # fmt: skip
    profile = c360_json("profile", "show", cid, "--wait-for", contract["consistency_token"])
    assert [
        (c["contract_id"], c["state"]) for c in profile["service_desk"]["service_contracts"]
    ] == [(contract["contract_id"], "active")]
    code, _, err = cli.run(
        "contract", "create", "--customer", cid, "--name", "x", "--starts", "2027-01-01",
        "--ends", "2026-01-01",
    )  # fmt: skip
    assert code != 0
    assert "--ends: must not be before --starts" in err  # the options, not ends_on, starts_on
