"""`c360 customer import FILE`: bulk-create customers from CSV or JSON Lines, with progress.

Columns (CSV header, or JSON keys): external_key, kind (person|organisation), name, email,
phone — required except phone — and optionally owner, tags, source, channel, address_line,
postal_code, city, region, country. Several e-mails, phones or tags go in one cell separated
by ";" (or as a JSON list). Row numbers are line numbers in the file (a CSV header is row 1).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

from rich.table import Table

from c360.customer.v1 import customer_service_pb2 as api
from c360.customer.v1.customer_service_pb2_grpc import CustomerServiceStub
from c360.events.v1 import customer_events_pb2 as events
from c360_cli.client import Client
from c360_cli.errors import EXIT_BAD_INPUT, CliError
from c360_cli.output import Output
from c360_cli.words import CUSTOMER_KINDS

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
SPELLINGS = {"organization": "organisation"}
"""Other spellings of kinds that files may use."""
SHOWN_REJECTIONS = 20
ROWS_PER_MESSAGE = 200


def register(subparsers: Subparsers) -> None:
    """Add `customer import`."""
    p = subparsers.add_parser(
        "import",
        help="bulk-create customers from a CSV or JSON Lines file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", type=Path, help="a .csv or .jsonl file")
    p.add_argument("--format", choices=["csv", "jsonl"], help="default: from the file name")
    p.set_defaults(func=run)


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(";") if part.strip()]


def _text(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    return "" if value is None else str(value)


def _kind(record: dict[str, Any]) -> str:
    kind = _text(record, "kind").strip().lower()
    return SPELLINGS.get(kind, kind)


COLUMNS = {
    "display_name": "name",
    "emails": "email",
    "phones": "phone",
    "owner_id": "owner",
    "acquisition_source": "source",
    "acquisition_channel": "channel",
    "lines": "address_line",  # of addresses[0], the row's address
}
"""The file's column of each request field `to_row` fills under another name."""
_FIELD = re.compile(r"(?:^|(?<=; ))([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*): ")
_INDEXED = re.compile(r"^(.*)\[(\d+)\]$")


def in_columns(reason: str) -> str:
    """A row's refusal as the file's columns name what to change: "display_name: is
    required; emails[2]: not a valid address" as "name: is required; email (value 3): not a
    valid address" (the service names the fields of the request the row became)."""

    def column(match: re.Match[str]) -> str:
        field = match.group(1).removeprefix("addresses[0].")
        field = COLUMNS.get(field, field)
        indexed = _INDEXED.match(field)
        if indexed:
            name, n = COLUMNS.get(indexed.group(1), indexed.group(1)), int(indexed.group(2))
            field = name if n == 0 else f"{name} (value {n + 1})"
        return f"{field}: "

    return _FIELD.sub(column, reason)


def to_row(row: int, record: dict[str, Any]) -> api.ImportRow:
    """One file record as an import row; the service validates it."""
    request = api.ImportRow(
        row=row,
        external_key=_text(record, "external_key"),
        kind=CUSTOMER_KINDS.value_or_zero(_kind(record)),
        display_name=_text(record, "name"),
        emails=_list(record.get("email")),
        phones=_list(record.get("phone")),
        acquisition_source=_text(record, "source"),
        acquisition_channel=_text(record, "channel"),
        owner_id=_text(record, "owner"),
        tags=_list(record.get("tags")),
    )
    if _text(record, "address_line") or _text(record, "city"):
        request.addresses.append(
            events.PostalAddress(
                lines=_list(record.get("address_line")),
                postal_code=_text(record, "postal_code"),
                city=_text(record, "city"),
                region=_text(record, "region"),
                country=_text(record, "country"),
            )
        )
    return request


FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
"""A file's format by its name's suffix (`--format` names it for any other name)."""


def read_rows(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(row number, record) for each record; a record that cannot be read is a reason string."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        if fmt == "csv":
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "external_key" not in reader.fieldnames:
                raise CliError(f"{path}: the header row must name at least external_key")
            for record in reader:
                yield reader.line_num, dict(record)
            return
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as bad:
                yield number, f"not valid JSON: {bad.msg}"
                continue
            if not isinstance(record, dict):
                yield number, "not a JSON object"
                continue
            yield number, record


def run(args: argparse.Namespace) -> int:
    path: Path = args.file
    if path.is_dir():
        raise CliError(f"{path}: a directory, not a .csv or .jsonl file", EXIT_BAD_INPUT)
    if not path.is_file():
        raise CliError(f"{path}: no such file", EXIT_BAD_INPUT)
    fmt = args.format or FORMATS.get(path.suffix.lower())
    if fmt is None:  # README.md would be read as JSON Lines: a refusal for every line
        raise CliError(
            f"{path}: not a .csv or .jsonl file; name its format with --format csv or jsonl",
            EXIT_BAD_INPUT,
        )
    with path.open(encoding="utf-8-sig") as handle:
        total = sum(1 for line in handle if line.strip()) - (1 if fmt == "csv" else 0)
    out = Output(args.json)
    unreadable: list[tuple[int, str]] = []
    # Imported here: the other customer commands start faster without it.
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out.err,
        transient=args.json,
    )

    def requests(task: Any) -> Iterator[api.ImportCustomersRequest]:
        chunk: list[api.ImportRow] = []
        for number, record in read_rows(path, fmt):
            progress.advance(task)
            if isinstance(record, str):
                unreadable.append((number, record))
                continue
            chunk.append(to_row(number, record))
            if len(chunk) == ROWS_PER_MESSAGE:
                yield api.ImportCustomersRequest(rows=chunk)
                chunk = []
        if chunk:
            yield api.ImportCustomersRequest(rows=chunk)

    with Client(args) as client, progress:
        task = progress.add_task("rows", total=max(total, 0))
        # No deadline: a large file takes as long as it takes; progress shows it moving.
        reply = client.stub("customer", CustomerServiceStub).ImportCustomers(requests(task))
    rejected = sorted(
        [(r.row, in_columns(r.reason)) for r in reply.rejected] + unreadable,
        key=lambda item: item[0],
    )
    # 0: every row in; 1: rows rejected (some or all: the file was read, rows were refused).
    status = 1 if rejected else 0
    if out.json_mode:
        out.json(
            {
                "created": reply.created,
                "unchanged": reply.unchanged,
                "rejected": [{"row": row, "reason": reason} for row, reason in rejected],
                "consistency_token": reply.consistency_token,
            }
        )
        return status
    out.print(
        f"created {reply.created}, unchanged {reply.unchanged}, rejected {len(rejected)}"
        f" (token {reply.consistency_token})"
    )
    if rejected:
        table = Table("row", "reason", title="rejected rows")
        for row, reason in rejected[:SHOWN_REJECTIONS]:
            table.add_row(str(row), reason)
        out.print(table)
        if len(rejected) > SHOWN_REJECTIONS:
            out.note(f"... and {len(rejected) - SHOWN_REJECTIONS} more (use --json for all)")
    return status
