"""`c360 profile show`'s screen: everything an agent needs on one 40-line screen at 100
columns, nothing cut, and still readable at 80."""

from __future__ import annotations

import io
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console

from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_cli import output, profile_view

SUBJECT = "Router keeps dropping the connection every evening since the firmware update"


def _doc() -> dict[str, Any]:
    return {
        "customer_id": "466108df-7384-4f33-a901-e967e4aece59",
        "kind": "organisation",
        "display_name": "Liepiņš Kokapstrāde SIA",
        "emails": ["hello@liepins-0.example"],
        "phones": ["+37163124230"],
        "owner_id": "emp-0024",
        "tags": ["b2b"],
        "attributes": {
            "addresses": [
                {
                    "label": "headquarters",
                    "lines": ["Brīvības iela 132"],
                    "postal_code": "LV-1050",
                    "city": "Rīga",
                    "region": "",
                    "country": "LV",
                }
            ],
            "consent": {
                "email/service": {"granted": True},
                "email/marketing": {"granted": True},
                "sms/marketing": {"granted": False},
            },
            "contact_persons": {
                "l1": {"person_id": "4bedc759-de95-47de-bdd6-a5d8e8651dcc", "role": "buyer"},
                "l2": {
                    "person_id": "5bedc759-de95-47de-bdd6-a5d8e8651dcc",
                    "role": "old",
                    "valid_until": "2026-01-01T00:00:00Z",
                },
            },
            "sales": {
                "lifetime_value": {"EUR": "7728.00"},
                "orders_by_state": {"fulfilled": 1},
                "open_opportunity_count": 1,
                "open_weighted": {"EUR": "1200.00"},
                "classes": {"key account": "revenue over 5,000 EUR in 12 months"},
            },
            "marketing": {
                "segments": {"s1": {"name": "vip-or-b2b"}},
                "touches": 3,
                "response_rate": 0.3333,
                "last_response": {
                    "kind": "clicked",
                    "campaign_name": "Winter in Latvia",
                    "at": "2026-12-04T02:04:10Z",
                },
                "last_call": {
                    "outcome": "interested",
                    "campaign_name": "Spring calls",
                    "at": "2026-12-04T02:04:20Z",
                },
            },
        },
        "touches": [{"source": "customer", "count": 5}, {"source": "sales", "count": 22}],
        "first_seen_at": "2026-12-04T02:03:45Z",
        "last_contact_at": "2026-12-04T02:04:33Z",
        "last_contact_source": "service-desk",
        "at_risk": True,
        "at_risk_since": "2026-12-04T02:04:00Z",
        "at_risk_until": "2027-01-03T02:04:00Z",
        "at_risk_reasons": [{"at": "2026-12-04T02:04:00Z", "summary": "4th support contact"}],
        "service_desk": {
            "open_ticket_count": 2,
            "open_tickets": [
                {
                    "ticket_id": "5fe8704c-f2fc-4f72-9c1b-f9114932b557",
                    "subject": SUBJECT,
                    "priority": "high",
                    "agent_id": "emp-0015",
                    "opened_at": "2026-12-04T02:03:51Z",
                },
                {
                    "ticket_id": "6fe8704c-f2fc-4f72-9c1b-f9114932b557",
                    "subject": "Invoice address wrong",
                    "priority": "normal",
                    "agent_id": "",
                    "waiting_for": "customer",
                    "opened_at": "2026-12-03T02:03:51Z",
                },
            ],
            "tickets_last_30_days": 4,
            "tickets_total": 9,
            "mean_satisfaction": 4.5,
            "ratings": 2,
            "sla_breaches": 1,
            "contacts_total": 3,
            "contacts_last_30_days": 1,
            "service_contracts": [
                {
                    "contract_id": "60f94302-3c8e-499f-adfa-76291e1c9d0c",
                    "name": "Business support",
                    "starts_on": "2026-01-05",
                    "ends_on": "2027-01-04",
                    "state": "active",
                    "allowance_unit": "hours",
                    "allowance": 10,
                    "remaining": 90,
                    "period": 1,
                },
                {
                    "contract_id": "3e21a122-68e0-4f8f-aa6e-eb825cd04f3c",
                    "name": "Router care",
                    "starts_on": "2026-01-01",
                    "ends_on": "2026-12-31",
                    "state": "expiring",
                    "allowance_unit": "unlimited",
                    "allowance": 0,
                    "period": 1,
                },
            ],
        },
        "provenance": [{"field": "display_name"}] * 40,
    }


def _entries() -> list[dict[str, Any]]:
    return [
        {"occurred_at": f"2026-12-04T02:0{i}:00Z", "source": "sales", "summary": f"Step {i}"}
        for i in range(8)
    ]


def _render(width: int, doc: dict[str, Any]) -> list[str]:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    names = {"4bedc759-de95-47de-bdd6-a5d8e8651dcc": "Michał Dąbrowski"}
    console.print(profile_view.screen(doc, _entries(), names))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return str(text).splitlines()


@pytest.mark.parametrize("width", [100, 80])
def test_the_screen_fits_and_cuts_nothing(width: int) -> None:
    lines = _render(width, _doc())
    assert all(len(line) <= width for line in lines)
    text = " ".join(" ".join(line.strip("│ ").split()) for line in lines)
    if width == 100:
        assert len(lines) <= 40
    # The whole subject, wrapped at word boundaries: no word cut.
    assert set(SUBJECT.split()) <= set(text.split())
    for words in ("Michał Dąbrowski (4bedc759)", "key account", "4th support contact"):
        assert words in text
    assert "old:" not in text  # an ended contact person is not current
    assert "7,728.00 EUR" in text
    assert "5fe8704c" in text
    assert "5fe8704c-f2fc" not in text


def test_marketing_shows_the_last_response_and_call_with_their_campaigns() -> None:
    # The screen said "3 campaign touches, 33% responded": neither what the customer last did,
    # of which campaign, nor the calls made to them.
    text = " ".join(" ".join(line.strip("│ ").split()) for line in _render(100, _doc()))
    assert "last response clicked (“Winter in Latvia”)" in text
    assert "last call interested (“Spring calls”)" in text


def test_the_consent_grid_marks_granted_revoked_and_never_asked() -> None:
    lines = _render(100, _doc())
    header = next(i for i, line in enumerate(lines) if "email" in line and "post" in line)
    marketing, service = (lines[header + k].strip("│ ").split() for k in (1, 2))
    assert marketing[-5:] == ["marketing", "yes", "no", "·", "·"]
    assert service[-5:] == ["service", "yes", "·", "·", "·"]


def test_contracts_show_their_id_and_what_is_left_of_the_allowance() -> None:
    text = " ".join(" ".join(line.strip("│ ").split()) for line in _render(100, _doc()))
    assert (
        "Business support (60f94302): 2026-01-05 to 2027-01-04 (active); 1 h 30 min of 10 h left"
        in text
    )
    assert "Router care (3e21a122): 2026-01-01 to 2026-12-31 (expiring)" in text
    assert "Router care (3e21a122): 2026-01-01 to 2026-12-31 (expiring);" not in text


def test_visits_and_article_use_are_in_the_json_and_on_the_screen() -> None:
    summary = tapi.ServiceDeskSummary(
        open_work_orders=[
            tapi.WorkOrderOverview(
                work_order_id="9c1d7e2a-0000-4000-8000-000000000001",
                summary="Replace the office router",
                state="scheduled",
                technician_id="emp-1100",
                window_start=Timestamp(seconds=1796634000),  # 2026-12-07 09:00 UTC
            )
        ],
        visits_completed=3,
        visit_ratings=2,
        mean_visit_satisfaction=4.5,
        tickets_resolved_with_article=2,
        service_contracts=[
            tapi.ServiceContractOverview(
                name="Care", allowance_unit="cases", allowance=5, remaining=3, period=2
            )
        ],
    )
    shown = output.service_desk_json(summary)
    assert shown["open_work_orders"][0]["state"] == "scheduled"
    assert (shown["visits_completed"], shown["mean_visit_satisfaction"]) == (3, 4.5)
    assert shown["tickets_resolved_with_article"] == 2
    contract = shown["service_contracts"][0]
    assert (contract["remaining"], contract["period"]) == (3, 2)
    doc = _doc()
    doc["service_desk"] |= {k: v for k, v in shown.items() if "visit" in k or "work" in k}
    doc["service_desk"]["tickets_resolved_with_article"] = 2
    text = " ".join(" ".join(line.strip("│ ").split()) for line in _render(100, doc))
    assert "on-site visits Replace the office router (9c1d7e2a): scheduled, emp-1100" in text
    assert "3 visits completed; satisfaction 4.5 (2 ratings)" in text
    assert "2 resolved with an article" in text


def test_an_open_ticket_on_hold_says_whom_it_waits_for() -> None:
    text = " ".join(" ".join(line.strip("│ ").split()) for line in _render(100, _doc()))
    assert "Invoice address wrong (on hold, waiting for the" in text
    assert f"{SUBJECT} (on hold" not in text
    assert "customer)" in text


def test_provenance_is_not_on_the_screen() -> None:
    assert not any("display_name" in line for line in _render(100, _doc()))


def test_a_new_person_without_anything_yet() -> None:
    doc = {"customer_id": "x", "kind": "person", "display_name": "Bob", "attributes": {}}
    text = "\n".join(_render(100, doc))
    assert "none recorded" in text
    assert "Bob" in text


def test_a_person_shows_the_organisations_it_is_a_contact_person_of() -> None:
    org = "466108df-7384-4f33-a901-e967e4aece59"
    person = "4bedc759-de95-47de-bdd6-a5d8e8651dcc"
    link = {"organisation_id": org, "person_id": person, "role": "technical buyer"}
    ended = {**link, "organisation_id": "5" + org[1:], "role": "old", "valid_until": "2026-01-01"}
    doc = {
        "customer_id": person,
        "kind": "person",
        "display_name": "Michał Dąbrowski",
        "attributes": {"contact_persons": {"l1": link, "l2": ended}},
    }
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(profile_view.screen(doc, [], {org: "Liepiņš Kokapstrāde SIA"}))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "contact for" in text
    assert "technical buyer at Liepiņš Kokapstrāde SIA (466108df)" in text
    assert "contact persons" not in text  # the person is not its own contact person
    assert "old at" not in text


def test_counts_agree_with_their_nouns() -> None:
    assert profile_view.counted(1, "lead") == "1 lead"
    assert profile_view.counted(0, "lead") == "0 leads"
    assert profile_view.counted(2, "SLA breach", "SLA breaches") == "2 SLA breaches"
    assert profile_view.counted(1, "SLA breach", "SLA breaches") == "1 SLA breach"
    desk = {"open_ticket_count": 1, "ratings": 1, "sla_breaches": 1, "mean_satisfaction": 5}
    assert profile_view._service(desk).endswith("satisfaction 5.0 (1 rating); 1 SLA breach")


def test_amounts_show_in_their_currencys_smallest_unit() -> None:
    shown = profile_view.money({"EUR": "7728", "JPY": "1250", "KWD": "3.5", "USD": "n/a"})
    assert shown == "7,728.00 EUR, 1,250 JPY, 3.500 KWD, n/a USD"
