"""The CLI's tables fit the terminal: short ids, long texts wrapped at word boundaries in
their own column, columns that give way in order, page tokens never wrapped."""

from __future__ import annotations

import io

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from c360.customer.v1 import customer_service_pb2 as capi
from c360.events.v1 import customer_events_pb2 as cev
from c360_cli import display, output
from c360_cli.customer_cmds import show_customer
from c360_cli.output import FLEX_MIN_WIDTH, Output, fit_widths

TICKET = "7e9cf30d-5da9-4215-a0a1-250582093f18"
SUBJECT = "Router keeps dropping the connection every evening since the firmware update"
TOKEN = (
    "WyIyMDI2LTEyLTA0VDAyOjAzOjU1LjMwMDU1MiswMDowMCIsICJkYWIwODk0Ni1mZjA5LTRlYzYtOGFmOS1j"
    "OGRkYmE2ZWE5MWEiXQ=="
)


def _print_table(width: int, *, wide: bool = False) -> list[str]:
    display.wide = wide
    try:
        out = Output(False)
        out.console = Console(file=io.StringIO(), width=width, color_system=None)
        out.table(
            ["id", "opened (UTC)", "state", "customer", "subject", "agent / queue"],
            [
                [
                    TICKET,
                    "2026-12-04 02:03",
                    "resolved",
                    "Joanna Dąbrowska",
                    SUBJECT,
                    "emp-0008 / complaints",
                ]
            ],
            caption=f"{output.PAGE_CAPTION}{TOKEN}",
            no_wrap={"opened (UTC)", "state"},
            drop=["agent / queue", "opened (UTC)"],
        )
        return str(out.console.file.getvalue()).splitlines()  # type: ignore[attr-defined]
    finally:
        display.wide = False


@pytest.mark.parametrize("width", [100, 80])
def test_rows_fit_and_no_word_is_cut(width: int) -> None:
    lines = _print_table(width)
    body = [line for line in lines if not line.startswith("more:")]
    assert all(len(line) <= width for line in body)
    words = {w for line in body for w in line.split()}
    assert set(SUBJECT.split()) <= words
    assert "7e9cf30d" in words  # the short id
    assert TICKET not in " ".join(lines)


def test_the_page_token_is_on_a_line_of_its_own_and_whole() -> None:
    lines = _print_table(80)
    assert lines[-1] == f"more: --page-token {TOKEN}"


def test_wide_shows_whole_ids() -> None:
    assert TICKET in " ".join(_print_table(140, wide=True))


def test_at_80_columns_the_droppable_columns_go_first() -> None:
    header = _print_table(80)[0]
    assert "agent / queue" not in header
    assert "subject" in header
    assert "customer" in header


def test_what_fits_keeps_its_width() -> None:
    assert fit_widths([8, 10, 30], 60, [True, False, False]) == [8, 10, 30]


def test_the_longest_text_gives_way_first_then_the_others() -> None:
    widths = fit_widths([8, 16, 60], 60, [True, False, False])
    assert widths == [8, 16, 36]
    widths = fit_widths([8, 30, 60], 40, [True, False, False])
    assert widths[2] >= FLEX_MIN_WIDTH - 8  # the main text keeps some room
    assert sum(widths) <= 40


def test_a_long_word_is_not_cut_while_another_column_can_give() -> None:
    widths = fit_widths([8, 30, 40], 70, [True, False, False], words=[8, 10, 31])
    assert widths[2] >= 31


@given(
    st.lists(st.integers(1, 80), min_size=1, max_size=8),
    st.integers(20, 200),
    st.data(),
)
def test_widths_never_exceed_the_room_unless_fixed_columns_do(
    longest: list[int], room: int, data: st.DataObject
) -> None:
    fixed = data.draw(st.lists(st.booleans(), min_size=len(longest), max_size=len(longest)))
    widths = fit_widths(longest, room, fixed)
    assert all(0 <= w <= n for w, n in zip(widths, longest, strict=True))
    assert all(w == n for w, n, f in zip(widths, longest, fixed, strict=True) if f)
    floor = sum(n for n, f in zip(longest, fixed, strict=True) if f)
    movable_floor = sum(min(8, n) for n, f in zip(longest, fixed, strict=True) if not f)
    assert sum(widths) <= max(room, floor + movable_floor)


def _result(**extra: str) -> list[str]:
    from c360.common.v1 import command_pb2

    out = Output(False)
    out.console = Console(file=io.StringIO(), width=100, color_system=None)
    token = extra.pop("token", "")
    result = command_pb2.CommandResult(aggregate_id=TICKET, version=2, consistency_token=token)
    out.result("planned", result, "campaign", **extra)
    text = out.console.file.getvalue()  # type: ignore[attr-defined]
    return [line.rstrip() for line in text.splitlines()]


def test_a_result_names_its_subject_once_and_its_token_only_if_it_has_one() -> None:
    assert _result(campaign_id=TICKET) == [f"planned  campaign {TICKET}  version 2"]
    assert _result(token="marketing:7") == [
        f"planned  campaign {TICKET}  version 2",
        "consistency token marketing:7",
    ]


def test_what_else_a_result_names_goes_on_its_own_lines_within_the_width() -> None:
    lead = "0b5e2f4c-1d2a-4c3b-9e8f-{:012d}"
    others = {f"lead_{n}_id": lead.format(n) for n in range(4)}
    lines = _result(**others, token="sales:3")
    assert lines[0] == f"planned  campaign {TICKET}  version 2"
    assert lines[-1] == "consistency token sales:3"
    assert all(len(line) <= 100 for line in lines)
    said = " ".join(lines[1:-1])
    assert all(f"lead {n} id {lead.format(n)}" in said for n in range(4))


def test_an_empty_table_says_none_under_its_header() -> None:
    out = Output(False)
    out.console = Console(file=io.StringIO(), width=100, color_system=None)
    out.table(["id", "number", "state"], [])
    lines = [line.strip() for line in out.console.file.getvalue().splitlines()]  # type: ignore[attr-defined]
    assert lines[0].split() == ["id", "number", "state"]
    assert lines[-1] == "none"


@pytest.mark.parametrize("width", [100, 80])
def test_campaign_results_show_every_count_under_a_whole_header(width: int) -> None:
    from c360.marketing.v1 import marketing_service_pb2 as mapi
    from c360_cli.marketing_cmds import print_results

    def row(key: str, sent: int) -> mapi.ResultRow:
        return mapi.ResultRow(
            key=key,
            sent=sent,
            failed=1,
            bounced=2,
            delivered=sent - 3,
            opened=5,
            clicked=2,
            responded=2,
            unsubscribed=1,
            converted=1,
            revenue="12345.00",
            cost="1060.56",
            cost_per_response="530.28",
            cost_per_conversion="1060.56",
            conversion_rate="0.0083",
            roi="10.64",
        )

    reply = mapi.CampaignResultsResponse(
        total=row("total", 120), rows=[row("ANDALUCÍA", 60), row("unknown", 60)], currency="EUR"
    )
    out = Output(False)
    out.console = Console(file=io.StringIO(), width=width, color_system=None)
    print_results(out, reply, "region")
    lines = str(out.console.file.getvalue()).splitlines()  # type: ignore[attr-defined]
    assert all(len(line) <= width for line in lines)
    words = [w for line in lines for w in line.split()]
    for header in ("sent", "fail", "bounce", "deliv", "open", "click", "resp", "unsub", "conv"):
        assert header in words
    for whole in ("ANDALUCÍA", "unknown", "cost/resp", "ROI", "12345.00", "530.28"):
        assert whole in words
    # Conversions: what each cost, and their share of the sends.
    for whole in ("cost/conv", "conv %", "1060.56", "0.8"):
        assert whole in " ".join(lines)
    counts = next(line for line in lines if line.startswith("total"))
    assert counts.split()[1:4] == ["120", "1", "2"]  # sent, failed, bounced


@pytest.mark.parametrize("width", [100, 80])
def test_the_field_service_report_shows_every_figure_whole(width: int) -> None:
    from c360_cli.visit_cmds import print_report

    def row(dimension: str, value: str) -> dict[str, object]:
        return {
            "dimension": dimension,
            "value": value,
            "currency": "EUR",
            "visits": 12,
            "cost_per_visit": "1234.56",
            "median_hours_to_complete": 26.5,
            "median_hours_on_site": 1.25,
            "first_time_fix_rate": 0.75,
            "mean_satisfaction": 4.5,
        }

    out = Output(False)
    out.console = Console(file=io.StringIO(), width=width, color_system=None)
    print_report(
        out, [row("all", "-"), row("technician", "emp-1100"), row("region", "de-south-west")]
    )
    lines = str(out.console.file.getvalue()).splitlines()  # type: ignore[attr-defined]
    assert all(len(line) <= width for line in lines)
    words = [w for line in lines for w in line.split()]
    for whole in ("emp-1100", "de-south-west", "1234.56", "EUR", "technician", "satisf."):
        assert whole in words


def test_a_tickets_sla_due_times_read_in_its_time_zone() -> None:
    from datetime import UTC, datetime

    from c360.events.v1 import ticket_events_pb2 as tev
    from c360.service_desk.v1 import service_desk_service_pb2 as dapi
    from c360_cli.ticket_cmds import _sla_table

    def target(kind: int, due: datetime) -> dapi.SlaTargetView:
        view = dapi.SlaTargetView(
            kind=kind,  # type: ignore[arg-type]
            minutes=240,
            remaining_minutes=60,
            status=tev.SLA_TARGET_STATUS_IN_PROGRESS,
        )
        view.due_at.FromDatetime(due)
        return view

    def shown(zone: str) -> str:
        ticket = dapi.Ticket(
            sla_policy="high",
            time_zone=zone,
            sla_targets=[
                # Winter (CET, +1) and after the change to summer time (CEST, +2).
                target(
                    tev.SLA_TARGET_KIND_FIRST_RESPONSE, datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
                ),
                target(tev.SLA_TARGET_KIND_RESOLUTION, datetime(2027, 3, 29, 7, 0, tzinfo=UTC)),
            ],
        )
        console = Console(file=io.StringIO(), width=100, color_system=None)
        console.print(_sla_table(ticket))
        return str(console.file.getvalue())  # type: ignore[attr-defined]

    berlin = shown("Europe/Berlin")
    assert "due (local)" in berlin
    assert "2026-12-08 13:00" in berlin
    assert "2027-03-29 09:00" in berlin
    plain = shown("")
    assert "due (UTC)" in plain
    assert "2026-12-08 12:00" in plain


def test_a_contracts_allowance_shows_what_was_used_and_any_use_beyond_it() -> None:
    from c360_cli.contact_cmds import allowance_text

    assert allowance_text("cases", 10, 3, 7) == "10 cases: 3 used, 7 left"
    # Three tickets entitled while one case was left, each consumed on its resolution.
    assert allowance_text("cases", 1, 3, 0) == "1 case: 3 used, 0 left (over by 2 cases)"
    assert allowance_text("hours", 2, 150, 0) == "2 h: 150 min used, 0 min left (over by 30 min)"
    assert allowance_text("unlimited", 0, 0, 0) == "unlimited"


def test_working_hours_read_as_ranges_of_days() -> None:
    from c360_cli.calendar_cmds import working_hours

    weekdays = [(d, "09:00", "17:00") for d in range(1, 6)]  # 1 = Monday, as the API counts
    assert working_hours(weekdays) == "Mon-Fri 09:00-17:00"
    short_friday = [*weekdays[:4], (5, "09:00", "13:00"), (6, "10:00", "12:00")]
    assert working_hours(short_friday) == "Mon-Thu 09:00-17:00; Fri 09:00-13:00; Sat 10:00-12:00"


@pytest.mark.parametrize("width", [100, 80])
def test_a_customers_consent_evidence_and_links_are_never_cut(width: int) -> None:
    at = Timestamp(seconds=1_796_000_000)
    org = "e8f967a6-7321-44e2-ada1-e895d76da5d7"
    customer = capi.Customer(
        customer_id="4ab00d20-02cf-45e0-854b-273e179807f8",
        kind=cev.CUSTOMER_KIND_PERSON,
        display_name="Michał Dąbrowski",
        consents=[
            capi.Consent(
                channel=cev.CONSENT_CHANNEL_PHONE,
                purpose=cev.CONSENT_PURPOSE_MARKETING,
                granted=True,
                source="signed-contract",
                decided_at=at,
                recorded_by="app:web-shop-eu",
            )
        ],
        contact_persons=[
            capi.ContactPersonLink(
                link_id="3507f8e5-4cd3-460c-8bbe-eeef9b423380",
                organisation_id=org,
                person_id="4ab00d20-02cf-45e0-854b-273e179807f8",
                role="technical buyer",
                valid_from=at,
            )
        ],
    )
    out = Output(False)
    out.console = Console(file=io.StringIO(), width=width, color_system=None)
    show_customer(out, customer)
    text = out.console.file.getvalue()  # type: ignore[attr-defined]
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines)
    assert "…" not in text
    # Each column's text, its wrapped or folded parts joined (cells split on the borders).
    columns: dict[int, str] = {}
    for line in lines:
        for i, cell in enumerate(line.split("│")):
            columns[i] = columns.get(i, "") + cell.strip()
    for whole in ("signed-contract", "app:web-shop-eu", "3507f8e5-4cd3-460c-8bbe-eeef9b423380"):
        assert any(whole in column for column in columns.values()), whole
    assert "recorded" in text
    assert "e8f967a6" in text
    assert not any(org in column for column in columns.values())  # short, as lists show ids


def test_the_json_of_a_customer_keeps_its_consent_evidence() -> None:
    consent = capi.Consent(
        channel=cev.CONSENT_CHANNEL_EMAIL,
        purpose=cev.CONSENT_PURPOSE_MARKETING,
        granted=False,
        source="objection by letter",
        decided_at=Timestamp(seconds=1_796_000_000),
        recorded_by="emp-0042",
    )
    doc = output.customer_json(capi.Customer(customer_id="c", consents=[consent]))
    assert doc["consents"] == [
        {
            "channel": "email",
            "purpose": "marketing",
            "granted": False,
            "source": "objection by letter",
            "decided_at": "2026-11-30T00:53:20Z",
            "recorded_by": "emp-0042",
        }
    ]


def test_a_title_longer_than_its_table_stays_on_one_line() -> None:
    # `c360 lead matches` titled a three-column table with its hint, which wrapped at the
    # table's width ("convert with: c360 lead convert" / "LEAD --customer ID --pipeline P").
    out = Output(False)
    out.console = Console(file=io.StringIO(), width=100, color_system=None)
    title = "convert with: c360 lead convert LEAD --customer ID --pipeline P"
    out.table(["customer", "name"], [["ab12cd34", "Ada"]], title=title)
    lines = out.console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines[0].rstrip() == title
    assert lines[1].split() == ["customer", "name"]


def test_an_empty_table_says_none_also_when_its_caption_explains_rows() -> None:
    # `c360 activity list --due overdue` with no activity showed its legend, "! overdue".
    out = Output(False)
    out.console = Console(file=io.StringIO(), width=100, color_system=None)
    out.table(["id", "due (UTC)", "subject"], [], caption="! overdue")
    lines = [line.strip() for line in out.console.file.getvalue().splitlines()]  # type: ignore[attr-defined]
    assert lines[-1] == "none"


def test_the_sla_report_spells_channels_as_ticket_open_takes_them() -> None:
    # It showed the service's words, "in_person" and "web_form", beside `--channel in-person`.
    from c360.service_desk.v1 import service_desk_service_pb2 as dapi
    from c360_cli.ticket_cmds import sla_rows

    reply = dapi.GetSlaComplianceResponse(
        rows=[
            dapi.SlaComplianceRow(dimension="channel", value="web_form", tickets=2, met=1),
            dapi.SlaComplianceRow(dimension="queue", value="first_level", tickets=1),
        ]
    )
    assert [(r["dimension"], r["value"]) for r in sla_rows(reply)] == [
        ("channel", "web-form"),
        ("queue", "first_level"),  # a queue is a name, not a word of the CLI's
    ]


def test_campaign_results_of_a_phone_campaign_count_its_calls(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A phone campaign's results were all zeros: it sends nothing, and its calls were not
    # counted anywhere.
    import argparse
    import contextlib

    from c360.marketing.v1 import marketing_service_pb2 as mapi
    from c360_cli import marketing_cmds

    reply = mapi.CampaignResultsResponse(
        total=mapi.ResultRow(key="total"),
        currency="EUR",
        calls=5,
        call_outcomes={"interested": 2, "reached": 1, "no_answer": 2},
    )
    stub = argparse.Namespace(CampaignResults=lambda *_, **__: reply)
    monkeypatch.setattr(marketing_cmds, "Client", lambda _: contextlib.nullcontext())
    monkeypatch.setattr(marketing_cmds, "_stub", lambda _: stub)
    monkeypatch.setenv("COLUMNS", "100")
    args = argparse.Namespace(campaign_id="c", by="", json=False, timeout=5.0)
    assert marketing_cmds._campaign_results(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "calls 5: interested 2, no answer 2, reached 1" in [line.strip() for line in lines]


@pytest.mark.parametrize("width", [100, 80])
def test_the_visit_list_keeps_who_goes_when_on_a_narrow_terminal(width: int) -> None:
    # At 80 columns the list left out the technician and the window, the two things a
    # dispatcher reads it for, and kept the cost.
    from datetime import UTC, datetime

    from c360.events.v1 import field_service_events_pb2 as fev
    from c360.service_desk.v1 import service_desk_service_pb2 as dapi
    from c360_cli.visit_cmds import print_list

    def order(n: int, summary: str) -> dapi.WorkOrderSummary:
        w = dapi.WorkOrderSummary(
            work_order_id=f"{n:08x}-36ac-4177-9507-9c955b64e692",
            customer_id=f"c{n}",
            state=fev.WORK_ORDER_STATE_SCHEDULED,
            summary=summary,
            technician_id="emp-1101",
            cost="1490.00",
            currency="EUR",
        )
        w.window_start.FromDatetime(datetime(2026, 12, 9, 13, tzinfo=UTC))
        return w

    out = Output(False)
    out.console = Console(file=io.StringIO(), width=width, color_system=None)
    orders = [order(1, "Replace the office router"), order(2, "Inspect heat pump fan")]
    print_list(out, orders, {"c1": "Liepiņš Kokapstrāde SIA", "c2": "Brauerei Weiß KG"}, "")
    text = str(out.console.file.getvalue())  # type: ignore[attr-defined]
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines)
    assert lines[0].split()[:4] == ["id", "state", "technician", "window"]
    assert lines[2].split()[2:5] == ["emp-1101", "2026-12-09", "13:00"]
