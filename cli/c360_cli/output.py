"""Printing: JSON for scripts (`--json`) or rich tables and panels for people."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message
from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from c360.common.v1 import command_pb2
from c360.customer.v1 import customer_service_pb2 as customer_api
from c360.events.v1 import customer_events_pb2 as events
from c360.timeline.v1 import timeline_service_pb2 as timeline_api
from c360_cli import display
from c360_cli.words import CONSENT_CHANNELS, CONSENT_PURPOSES, CUSTOMER_KINDS

ID_COLUMNS = {"customer", "duplicate", "id", "link", "organisation", "person"}
"""Table columns that hold UUIDs."""
SHORT_COLUMN = 20
"""Columns whose longest line is at most this wide stay on one line; longer ones wrap."""
LEAST_WIDTH = 8
"""No column is made narrower than this (or than its own longest line)."""
NARROW = 12
"""Long columns other than the main text give way down to this width (and wrap)."""
FLEX_MIN_WIDTH = 24
"""The least width the wrapping column is given before the others give way."""
PAGE_CAPTION = "more: --page-token "
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

JSONValue = Any
"""Anything json.dumps accepts: dict/list/str/int/float/bool/None."""


# -- conversions to JSON-ready values --------------------------------------------------------


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet reads as text: Excel and LibreOffice run a cell that starts
    with = + - @ (or a tab or carriage return) as a formula, and such a cell may be what an
    agent typed (a lost reason, a product's name), so it gets a leading apostrophe (OWASP's
    advice); numbers such as -12.50 stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.match(value):
        return "'" + value
    return value


class CsvWriter:
    """csv.writer whose cells go through `csv_cell`."""

    def __init__(self, stream: IO[str]) -> None:
        self._writer = csv.writer(stream)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([csv_cell(value) for value in row])


def iso(ts: timestamp_pb2.Timestamp) -> str:
    """ISO-8601 in UTC with a `Z` (e.g. 2025-01-31T09:15:00.123456Z)."""
    return str(ts.ToJsonString())


def parse_time(text: str) -> timestamp_pb2.Timestamp:
    """An argparse type: ISO-8601 date or time (`2025-01-31`, `2025-01-31T09:15Z`); without a
    zone it is read as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO-8601 time: {text!r} (e.g. 2025-01-31 or 2025-01-31T09:15:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment.astimezone(UTC))
    return ts


def iso_field(message: Message, name: str) -> str | None:
    """The timestamp field `name` of `message` in ISO-8601 UTC, or None when unset."""
    if not message.HasField(name):
        return None
    value = getattr(message, name)
    assert isinstance(value, timestamp_pb2.Timestamp)
    return iso(value)


def _tidy(value: JSONValue) -> JSONValue:
    """Struct numbers come back as floats; show whole numbers as ints."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _tidy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    return value


def struct_json(struct: struct_pb2.Struct) -> dict[str, JSONValue]:
    return dict(_tidy(json_format.MessageToDict(struct)))


def result_json(
    result: command_pb2.CommandResult, subject: str = "customer"
) -> dict[str, JSONValue]:
    return {
        # "call list" -> "call_list_id" (it was "call list_id", a key with a space).
        f"{subject.replace(' ', '_')}_id": result.aggregate_id,
        "version": result.version,
        "consistency_token": result.consistency_token,
        "replayed": result.replayed,
    }


def address_json(a: events.PostalAddress) -> dict[str, JSONValue]:
    return {
        "address_id": a.address_id,
        "label": a.label,
        "lines": list(a.lines),
        "postal_code": a.postal_code,
        "city": a.city,
        "region": a.region,
        "country": a.country,
    }


def customer_json(c: customer_api.Customer) -> dict[str, JSONValue]:
    return {
        "customer_id": c.customer_id,
        "version": c.version,
        "kind": CUSTOMER_KINDS.word(c.kind),
        "display_name": c.display_name,
        "emails": list(c.emails),
        "phones": list(c.phones),
        "addresses": [address_json(a) for a in c.addresses],
        "acquisition_source": c.acquisition_source,
        "acquisition_channel": c.acquisition_channel,
        "owner_id": c.owner_id,
        "tags": list(c.tags),
        "consents": [
            {
                "channel": CONSENT_CHANNELS.word(x.channel),
                "purpose": CONSENT_PURPOSES.word(x.purpose),
                "granted": x.granted,
                "source": x.source,
                "decided_at": iso_field(x, "decided_at"),
                "recorded_by": x.recorded_by,
            }
            for x in c.consents
        ],
        "contact_persons": [
            {
                "link_id": link.link_id,
                "organisation_id": link.organisation_id,
                "person_id": link.person_id,
                "role": link.role,
                "valid_from": iso_field(link, "valid_from"),
                "valid_until": iso_field(link, "valid_until"),
            }
            for link in c.contact_persons
        ],
        "registered_at": iso_field(c, "registered_at"),
        "updated_at": iso_field(c, "updated_at"),
        "merged_into": c.merged_into,
        "absorbed": list(c.absorbed),
        "forgotten_at": iso_field(c, "forgotten_at"),
    }


def entry_json(e: timeline_api.TimelineEntry) -> dict[str, JSONValue]:
    return {
        "event_id": e.event_id,
        "customer_id": e.customer_id,
        "source": e.source,
        "type": e.type,
        "occurred_at": iso_field(e, "occurred_at"),
        "summary": e.summary,
        "details": struct_json(e.details),
        "source_position": e.source_position,
        "aggregate_id": e.aggregate_id,
        "aggregate_version": e.aggregate_version,
        "cursor": e.cursor,
    }


def service_desk_json(d: timeline_api.ServiceDeskSummary) -> dict[str, JSONValue]:
    return {
        "open_ticket_count": d.open_ticket_count,
        "open_tickets": [
            {
                "ticket_id": t.ticket_id,
                "subject": t.subject,
                "channel": t.channel,
                "priority": t.priority,
                "category": t.category,
                "agent_id": t.agent_id,
                "queue": t.queue,
                "escalation_level": t.escalation_level,
                "opened_at": iso_field(t, "opened_at"),
                "sla_policy": t.sla_policy,
                "sla_breaches": t.sla_breaches,
                "waiting_for": t.waiting_for or None,
            }
            for t in d.open_tickets
        ],
        "tickets_last_30_days": d.tickets_last_30_days,
        "tickets_total": d.tickets_total,
        "last_contact_channel": d.last_contact_channel,
        "last_contact_at": iso_field(d, "last_contact_at"),
        "mean_satisfaction": (
            round(d.mean_satisfaction, 2) if d.HasField("mean_satisfaction") else None
        ),
        "ratings": d.ratings,
        "sla_breaches": d.sla_breaches,
        "contacts_total": d.contacts_total,
        "contacts_last_30_days": d.contacts_last_30_days,
        "recent_contacts": [
            {
                "contact_id": c.contact_id,
                "channel": c.channel,
                "direction": c.direction,
                "outcome": c.outcome,
                "at": iso_field(c, "at"),
                "duration_seconds": c.duration_seconds,
                "agent_id": c.agent_id,
            }
            for c in d.recent_contacts
        ],
        "service_contracts": [
            {
                "contract_id": c.contract_id,
                "name": c.name,
                "services": list(c.services),
                "starts_on": c.starts_on,
                "ends_on": c.ends_on,
                "state": c.state,
                "allowance_unit": c.allowance_unit,
                "allowance": c.allowance,
                "remaining": c.remaining if c.HasField("remaining") else None,
                "period": c.period,
            }
            for c in d.service_contracts
        ],
        "open_work_orders": [
            {
                "work_order_id": w.work_order_id,
                "summary": w.summary,
                "state": w.state,
                "technician_id": w.technician_id,
                "window_start": iso_field(w, "window_start"),
                "window_end": iso_field(w, "window_end"),
            }
            for w in d.open_work_orders
        ],
        "visits_completed": d.visits_completed,
        "visit_ratings": d.visit_ratings,
        "mean_visit_satisfaction": (
            round(d.mean_visit_satisfaction, 2) if d.HasField("mean_visit_satisfaction") else None
        ),
        "tickets_resolved_with_article": d.tickets_resolved_with_article,
    }


def at_risk_reason_json(r: timeline_api.AtRiskReason) -> dict[str, JSONValue]:
    return {
        "ticket_id": r.ticket_id,
        "contact": r.contact,
        "channel": r.channel,
        "at": iso_field(r, "at"),
        "summary": r.summary,
        "event_id": r.event_id,
    }


def profile_json(p: timeline_api.Profile) -> dict[str, JSONValue]:
    return {
        "customer_id": p.customer_id,
        "kind": p.kind,
        "display_name": p.display_name,
        "emails": list(p.emails),
        "phones": list(p.phones),
        "owner_id": p.owner_id,
        "tags": list(p.tags),
        "attributes": struct_json(p.attributes),
        "touches": [
            {"source": t.source, "count": t.count, "last_at": iso_field(t, "last_at")}
            for t in p.touches
        ],
        "last_contact_at": iso_field(p, "last_contact_at"),
        "last_contact_source": p.last_contact_source,
        "first_seen_at": iso_field(p, "first_seen_at"),
        "updated_at": iso_field(p, "updated_at"),
        "at_risk": p.at_risk,
        "at_risk_reasons": [at_risk_reason_json(r) for r in p.at_risk_reasons],
        "at_risk_since": iso_field(p, "at_risk_since"),
        "at_risk_until": iso_field(p, "at_risk_until"),
        "service_desk": service_desk_json(p.service_desk) if p.HasField("service_desk") else None,
        "provenance": [
            {
                "field": f.field,
                "source": f.source,
                "type": f.type,
                "occurred_at": iso_field(f, "occurred_at"),
                "event_id": f.event_id,
            }
            for f in p.provenance
        ],
        "merged_into": p.merged_into,
        "absorbed": list(p.absorbed),
    }


def hit_json(h: timeline_api.SearchHit) -> dict[str, JSONValue]:
    return {
        "customer_id": h.customer_id,
        "display_name": h.display_name,
        "kind": h.kind,
        "matched_on": h.matched_on,
        "merged_customer_id": h.merged_customer_id or None,
    }


# -- printing ---------------------------------------------------------------------------------


def short_time(text: str | None) -> str:
    """An ISO-8601 UTC time for a table cell: `2025-01-31 09:15:00Z`."""
    if not text:
        return ""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return text
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


class Output:
    """Where a command's results go: JSON on stdout, or rich renderings for a terminal."""

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.console = Console(highlight=False, soft_wrap=False)
        self.err = Console(stderr=True, highlight=False)

    def json(self, value: JSONValue, *, compact: bool = False) -> None:
        """One JSON document on stdout (indented, or on a single line when compact)."""
        text = json.dumps(
            value,
            ensure_ascii=False,
            indent=None if compact else 2,
            separators=(",", ":") if compact else None,
        )
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def paged(self, enabled: bool = True) -> contextlib.AbstractContextManager[Any]:
        """Print through the pager ($PAGER, else less) when asked and stdout is a terminal
        (a long list, `--all`); otherwise print as usual."""
        if enabled and not self.json_mode and sys.stdout.isatty():
            os.environ.setdefault("LESS", "-FRX")  # no pager for what fits; keep colours
            return self.console.pager(styles=True)
        return contextlib.nullcontext()

    def print(self, *renderables: Any) -> None:
        self.console.print(*renderables)

    def note(self, message: str) -> None:
        """A remark for a person (stderr, so stdout stays clean for pipes)."""
        self.err.print(message, markup=False)

    def result(
        self,
        what: str,
        result: command_pb2.CommandResult,
        subject: str = "customer",
        **extra: str,
    ) -> None:
        """A command's reply: JSON, or a line saying what happened (to which `subject`:
        customer, ticket), what else the reply names on the next (wrapped between words to
        fit the terminal), and the token to wait for, if the command has one (what no
        timeline shows, a campaign's plan, has none)."""
        if self.json_mode:
            self.json({**result_json(result, subject), **extra})
            return
        line = Text()
        line.append(what, style="bold green")
        line.append(f"  {subject} {result.aggregate_id}  version {result.version}")
        if result.replayed:
            line.append("  (replayed: an earlier request with this id)", style="yellow")
        self.console.print(line, soft_wrap=True)
        named = [
            f"{key.replace('_', ' ')} {value}"
            for key, value in extra.items()
            if value and value != result.aggregate_id  # the subject's id is said already
        ]
        # As many as fit on a line, each name with its value: a narrow terminal starts a new
        # line between two of them, never between an id and its name.
        row = ""
        for pair in named:
            if row and len(row) + 2 + len(pair) > self.console.width:
                self.console.print(Text(row), soft_wrap=True)
                row = ""
            row += f"  {pair}"
        if row:
            self.console.print(Text(row), soft_wrap=True)
        if result.consistency_token:
            self.console.print(
                Text.assemble(("consistency token ", "dim"), (result.consistency_token, "cyan"))
            )

    def kv_panel(self, title: str, rows: Iterable[tuple[str, Any]], *extra: Any) -> None:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column(overflow="fold")
        for key, value in rows:
            grid.add_row(Text(key), value if isinstance(value, Table) else _cell(value))
        self.console.print(Panel(Group(grid, *extra), title=Text(title), title_align="left"))

    def table(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        title: str | None = None,
        caption: str | None = None,
        no_wrap: Collection[str] = (),
        drop: Sequence[str] = (),
    ) -> None:
        """A table that fits the terminal: ids shortened to their first 8 digits (unless
        --wide), short columns kept on one line, long texts wrapped at word boundaries in
        their own column. The title goes on a line of its own above, as wide as the terminal
        (not wrapped at a narrow table's width); a caption naming the next page's token goes
        on a line of its own, never wrapped, so that it can be copied; a table without rows
        says "none" (instead of a caption that explains rows: "! overdue")."""
        cells = [[_cell(v, shorten=not display.wide) for v in row] for row in rows]
        longest = [
            max(
                [len(column)]
                + [len(line) for row in cells for line in row[i].plain.splitlines() or [""]]
            )
            for i, column in enumerate(columns)
        ]
        dropped = [columns.index(c) for c in drop if c in columns]
        # Cell padding (none on the outer edges) and one blank between two columns.
        last = len(columns) - 1
        pads = [(i > 0) + (i < last) for i in range(len(columns))]
        words = [
            max((len(w) for row in cells for w in row[i].plain.split()), default=0)
            for i in range(len(columns))
        ]
        widths = fit_widths(
            longest,
            self.console.width - sum(pads) - last,
            fixed=[c in no_wrap or (c in ID_COLUMNS and display.wide) for c in columns],
            drop=dropped,
            words=words,
        )
        shown = [i for i, w in enumerate(widths) if w > 0]
        if len(shown) < len(columns):  # fewer columns, fewer gaps: lay out what is left again
            again = fit_widths(
                [longest[i] for i in shown],
                self.console.width - 3 * (len(shown) - 1),
                fixed=[columns[i] in no_wrap for i in shown],
                words=[words[i] for i in shown],
            )
            widths = [0] * len(columns)
            for i, width in zip(shown, again, strict=True):
                widths[i] = width
        cells = [[row[i] for i in shown] for row in cells]
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for i in shown:
            table.add_column(
                columns[i],
                overflow="fold",
                no_wrap=widths[i] >= longest[i],
                width=widths[i],
            )
        for row in cells:
            table.add_row(*row)
        page = caption is not None and caption.startswith(PAGE_CAPTION)
        if not cells and not page:
            caption = "none"  # an empty table says so, not just its header
        if caption is not None and not page:
            table.caption = caption
        if title is not None:
            self.console.print(Text(title, style="table.title"))
        self.console.print(table)
        if page and caption is not None:
            self.console.print(Text(caption), soft_wrap=True)


def fit_widths(
    longest: Sequence[int],
    room: int,
    fixed: Sequence[bool],
    drop: Sequence[int] = (),
    words: Sequence[int] | None = None,
) -> list[int]:
    """Content widths for a table whose columns' longest lines are `longest`, in `room`
    characters (padding already taken off); 0 for a column left out. What fits keeps its
    width. Otherwise columns give way in this order: the longest text (it wraps) down to
    FLEX_MIN_WIDTH; the other long columns down to NARROW; the columns in `drop` are left out,
    one after the other; last, the longest text down to a few characters. `fixed` columns
    (ids, times, states) never wrap. `words`: each column's longest word, which a column
    does not go below while it can help it (so an e-mail address is not cut)."""
    word = list(words) if words is not None else [0] * len(longest)
    movable = [i for i, f in enumerate(fixed) if not f]
    if sum(longest) <= room or not movable:
        return list(longest)
    flex = max(movable, key=lambda i: longest[i])

    def layout(left_out: set[int]) -> list[int]:
        widths = [0 if i in left_out else n for i, n in enumerate(longest)]

        def shrink(i: int, floor: int) -> None:
            over = sum(widths) - room
            if over > 0 and widths[i] > floor:
                widths[i] = max(floor, widths[i] - over)

        shrink(flex, min(longest[flex], max(FLEX_MIN_WIDTH, word[flex])))
        for i in sorted(movable, key=lambda i: -longest[i]):
            if i != flex:
                shrink(i, min(longest[i], max(NARROW, word[i])))
        return widths

    left_out: set[int] = set()
    widths = layout(left_out)
    for i in drop:
        if sum(widths) <= room:
            break
        if i != flex:
            left_out.add(i)
            widths = layout(left_out)
    if sum(widths) > room:  # still too wide: every column that wraps down to a few characters
        for i in [flex, *sorted(movable, key=lambda i: -widths[i])]:
            over = sum(widths) - room
            if over > 0 and widths[i] > LEAST_WIDTH:
                widths[i] = max(LEAST_WIDTH, widths[i] - over)
    else:  # room left (a column was left out): the main text gets it back first
        for i in [flex, *movable]:
            if i not in left_out:
                widths[i] = min(longest[i], widths[i] + room - sum(widths))
    return widths


def _cell(value: Any, *, shorten: bool = False) -> Text:
    """A table cell; plain text, never rich markup (names may contain brackets). With
    `shorten`, a whole id is its first 8 digits (commands accept those back)."""
    if isinstance(value, Text):
        return value
    if shorten and isinstance(value, str) and _UUID.match(value):
        return Text(value[:8])
    if value is None:
        return Text("")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        return Text(", ".join(str(v) for v in value))
    if isinstance(value, list | tuple | Mapping):
        return Text(json.dumps(value, ensure_ascii=False))
    return Text(str(value))
