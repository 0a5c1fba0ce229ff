"""`c360 visit ...`: field-service work orders (on-site visits: schedule, travel, work, parts
and labour, completion, the customer's rating, the report) through the service-desk API."""

from __future__ import annotations

import argparse
import re
from typing import Any

from google.protobuf import timestamp_pb2
from rich.table import Table
from rich.text import Text

from c360.service_desk.v1 import service_desk_service_pb2 as api
from c360.service_desk.v1.service_desk_service_pb2_grpc import ServiceDeskServiceStub
from c360_cli.argtypes import day, whole_in
from c360_cli.client import Client
from c360_cli.commands import Api, Arg, Command, Subparsers, add_commands
from c360_cli.kb_cmds import hours, period
from c360_cli.names import customer_names
from c360_cli.output import PAGE_CAPTION, JSONValue, Output, iso_field, parse_time, short_time
from c360_cli.words import WORK_ORDER_STATES

WINDOW_HELP = (
    "RFC 3339 (2026-12-09T09:00:00+01:00; without a zone UTC), or a day and a UTC time:"
    " 'tomorrow 09:00', '+3 14:00' (days from today)"
)
_DAY_AND_TIME = re.compile(r"^(\S+)\s+(\d{1,2}):(\d{2})$")


def window_time(text: str) -> timestamp_pb2.Timestamp:
    """An argparse type: a time of a visit's window, in RFC 3339, or written from today as a
    day (`today`, `tomorrow`, `+3`) and a UTC time of day, so that a plan reads the same any
    day: `tomorrow 09:00`."""
    found = _DAY_AND_TIME.match(text.strip())
    if found is not None:
        on = day(found.group(1))
        if on != found.group(1) or on[:4].isdigit():
            return parse_time(f"{on}T{int(found.group(2)):02d}:{found.group(3)}:00Z")
    return parse_time(text)


VISITS = Api("service-desk", ServiceDeskServiceStub, "work order", whole_in(0, 2**63 - 1))
ID = Arg("work_order_id", "work_order_id", "the work order's id", metavar="ID")

COMMANDS = (
    Command(
        "create",
        "request an on-site visit for a customer",
        VISITS,
        "CreateWorkOrder",
        api.CreateWorkOrderRequest,
        (
            Arg("--customer", "customer_id", "the customer's id", metavar="ID", required=True),
            Arg("--summary", "summary", "what is to be done", metavar="TEXT", required=True),
            Arg("--ticket", "ticket_id", "the ticket it serves", metavar="ID", default=""),
            Arg("--contract", "contract_id", "the service contract", metavar="ID", default=""),
            Arg("--region", "region", "the service region", default=""),
            Arg("--currency", "currency", "ISO 4217 (default EUR)", default=""),
            Arg(
                "--allow-unknown-customer",
                "allow_unknown_customer",
                "create it although the timeline does not know the customer; without it such"
                " an id is refused",
                flag=True,
            ),
        ),
        verb="work order created",
    ),
    Command(
        "schedule",
        "give a visit a technician and a time window",
        VISITS,
        "ScheduleWorkOrder",
        api.ScheduleWorkOrderRequest,
        (
            ID,
            Arg("--technician", "technician_id", "employee id", metavar="EMPLOYEE_ID"),
            Arg(
                "--from",
                "window_start",
                f"window start: {WINDOW_HELP}",
                metavar="TIME",
                required=True,
                type=window_time,
            ),
            Arg(
                "--to",
                "window_end",
                "window end (the same forms; it must not have passed)",
                metavar="TIME",
                required=True,
                type=window_time,
            ),
        ),
        verb="visit scheduled",
        expected_version=True,
    ),
    Command(
        "travel",
        "the technician is on the way",
        VISITS,
        "StartWorkOrderTravel",
        api.StartWorkOrderTravelRequest,
        (ID,),
        verb="travel started",
        expected_version=True,
    ),
    Command(
        "start",
        "the technician is on site and working",
        VISITS,
        "StartWorkOrderWork",
        api.StartWorkOrderWorkRequest,
        (ID,),
        verb="work started",
        expected_version=True,
    ),
    Command(
        "part",
        "record a part used",
        VISITS,
        "RecordWorkOrderPart",
        api.RecordWorkOrderPartRequest,
        (
            ID,
            Arg("--sku", "sku", "the part's stock-keeping unit", required=True),
            Arg("--description", "description", "what it is", default=""),
            Arg("--quantity", "quantity", "how many (decimal)", default="1"),
            Arg("--unit-cost", "unit_cost", "cost of one (e.g. 12.50)", required=True),
        ),
        verb="part recorded",
        shows=("line_id",),
        expected_version=True,
    ),
    Command(
        "labour",
        "record time worked on site",
        VISITS,
        "RecordWorkOrderLabour",
        api.RecordWorkOrderLabourRequest,
        (
            ID,
            Arg("--minutes", "minutes", "minutes worked", required=True, type=whole_in(1, 1440)),
            Arg("--rate", "hourly_rate", "hourly rate (e.g. 80.00)", required=True),
            Arg("--technician", "technician_id", "who (default: the visit's)", default=""),
        ),
        verb="labour recorded",
        shows=("line_id",),
        expected_version=True,
    ),
    Command(
        "void",
        "take a part or labour line recorded by mistake out of the cost",
        VISITS,
        "VoidWorkOrderLine",
        api.VoidWorkOrderLineRequest,
        (
            ID,
            Arg(
                "--line",
                "line_id",
                "the line's id (its first 8 characters do, as visit show lists them)",
                required=True,
            ),
            Arg("--reason", "reason", "why", required=True),
        ),
        verb="line voided",
        shows=("line_id",),
        expected_version=True,
    ),
    Command(
        "complete",
        "the visit ended",
        VISITS,
        "CompleteWorkOrder",
        api.CompleteWorkOrderRequest,
        (
            ID,
            Arg("--fixed", "fixed", "the problem is solved", flag=True),
            Arg("--note", "note", "what was done", default=""),
        ),
        verb="visit completed",
        expected_version=True,
    ),
    Command(
        "cancel",
        "cancel a visit that has not completed",
        VISITS,
        "CancelWorkOrder",
        api.CancelWorkOrderRequest,
        (ID, Arg("--reason", "reason", "why", required=True)),
        verb="visit cancelled",
        expected_version=True,
    ),
    Command(
        "rate",
        "the customer's satisfaction with a completed visit (1-5)",
        VISITS,
        "RateWorkOrder",
        api.RateWorkOrderRequest,
        (
            ID,
            Arg("--score", "score", "1 to 5", required=True, type=whole_in(1, 5)),
            Arg("--comment", "comment", "what the customer said", default=""),
        ),
        verb="visit rated",
        expected_version=True,
    ),
)


def register(subparsers: Subparsers) -> None:
    """Add `visit` and its subcommands."""
    parser = subparsers.add_parser(
        "visit",
        help="field service: on-site visits, their cost and the report",
        description="Work orders for on-site visits (the service-desk service's commands):"
        " unscheduled -> scheduled -> travelling -> in progress -> completed, or cancelled.",
    )
    sub = parser.add_subparsers(title="commands", dest="visit_command", metavar="COMMAND")
    sub.required = True
    add_commands(sub, COMMANDS, {})

    p = sub.add_parser("show", help="show a work order", description="Show a work order.")
    p.add_argument("work_order_id", metavar="ID", help="the work order's id")
    p.set_defaults(func=_show)

    p = sub.add_parser("list", help="list work orders, newest first", description="List.")
    p.add_argument("--customer", default="", metavar="ID", help="only this customer's")
    p.add_argument("--technician", default="", metavar="EMPLOYEE_ID", help="only theirs")
    p.add_argument("--ticket", default="", metavar="ID", help="only this ticket's visits")
    p.add_argument(
        "--state",
        type=WORK_ORDER_STATES.parse,
        help=f"only {', '.join(WORK_ORDER_STATES.words)} ones",
    )
    p.add_argument("--limit", type=whole_in(1, 200), default=50, metavar="N", help="page size")
    p.add_argument("--page-token", default="", metavar="TOKEN", help="next_page_token of a page")
    p.set_defaults(func=_list)

    p = sub.add_parser(
        "report",
        help="cost, time to complete, first-time fixes, satisfaction",
        description="The visits completed in a period (default: the last 30 days), by"
        " technician and by region: cost per visit, median hours to complete and on site,"
        " first-time fix rate and mean satisfaction.",
    )
    p.add_argument("--from", dest="start", type=parse_time, metavar="TIME", help="from TIME")
    p.add_argument("--to", dest="end", type=parse_time, metavar="TIME", help="before TIME")
    p.set_defaults(func=_report)


def _stub(client: Client) -> Any:
    return client.stub("service-desk", ServiceDeskServiceStub)


def _window(w: Any) -> str:
    if not w.HasField("window_start"):
        return ""
    start = short_time(iso_field(w, "window_start"))[:16]
    if not w.HasField("window_end"):
        return start
    end = short_time(iso_field(w, "window_end"))[:16]
    return f"{start} to {end[11:] if end[:10] == start[:10] else end}"


def _show(args: argparse.Namespace) -> int:
    with Client(args) as client:
        w = (
            _stub(client)
            .GetWorkOrder(
                api.GetWorkOrderRequest(work_order_id=args.work_order_id), timeout=args.timeout
            )
            .work_order
        )
    out = Output(args.json)
    lines = [
        {
            "line_id": line.line_id,
            "kind": line.kind,
            "what": line.sku or line.technician_id,
            "quantity": line.quantity or f"{line.minutes} min",
            "unit": line.unit_cost or f"{line.hourly_rate}/h",
            "cost": line.cost,
        }
        for line in w.lines
    ]
    if out.json_mode:
        out.json(
            {
                "work_order_id": w.work_order_id,
                "version": w.version,
                "customer_id": w.customer_id,
                "state": WORK_ORDER_STATES.word(w.state),
                "summary": w.summary,
                "ticket_id": w.ticket_id,
                "contract_id": w.contract_id,
                "region": w.region,
                "technician_id": w.technician_id,
                "window_start": iso_field(w, "window_start"),
                "window_end": iso_field(w, "window_end"),
                "created_at": iso_field(w, "created_at"),
                "travel_started_at": iso_field(w, "travel_started_at"),
                "work_started_at": iso_field(w, "work_started_at"),
                "completed_at": iso_field(w, "completed_at"),
                "fixed": w.fixed,
                "note": w.note,
                "cancel_reason": w.cancel_reason,
                "lines": lines,
                "cost": w.cost,
                "currency": w.currency,
                "satisfaction": w.satisfaction or None,
                "satisfaction_comment": w.satisfaction_comment,
            }
        )
        return 0
    rows: list[tuple[str, Any]] = [
        ("id", w.work_order_id),
        ("customer", w.customer_id),
        ("state", WORK_ORDER_STATES.word(w.state)),
        ("technician", w.technician_id),
        ("window (UTC)", _window(w)),
        ("region", w.region),
        ("ticket", w.ticket_id),
        ("contract", w.contract_id),
        ("requested", short_time(iso_field(w, "created_at"))),
        ("on the way", short_time(iso_field(w, "travel_started_at"))),
        ("on site", short_time(iso_field(w, "work_started_at"))),
        ("completed", short_time(iso_field(w, "completed_at"))),
        ("fixed", "yes" if w.fixed else ("no" if w.HasField("completed_at") else "")),
        ("cost", f"{w.cost} {w.currency}"),
        ("satisfaction", f"{w.satisfaction}/5" if w.satisfaction else ""),
        ("version", w.version),
    ]
    for label, text in (
        ("note", w.note),
        ("cancelled", w.cancel_reason),
        ("comment", w.satisfaction_comment),
    ):
        if text:
            rows.append((label, Text(text)))
    extra: list[Any] = []
    if lines:
        table = Table(title="parts and labour", title_justify="left", expand=False)
        for column in ("line", "kind", "what", "quantity", "unit", "cost"):
            table.add_column(column, overflow="fold")
        for line in lines:
            table.add_row(
                str(line["line_id"])[:8],
                line["kind"],
                line["what"],
                line["quantity"],
                line["unit"],
                line["cost"],
            )
        extra.append(table)
    out.kv_panel(w.summary, rows, *extra)
    return 0


def summary_json(w: api.WorkOrderSummary) -> dict[str, JSONValue]:
    """A work order's row (of a list, or of a ticket's visits) as JSON."""
    return {
        "work_order_id": w.work_order_id,
        "version": w.version,
        "customer_id": w.customer_id,
        "state": WORK_ORDER_STATES.word(w.state),
        "summary": w.summary,
        "technician_id": w.technician_id,
        "region": w.region,
        "window_start": iso_field(w, "window_start"),
        "cost": w.cost,
        "currency": w.currency,
        "satisfaction": w.satisfaction or None,
        "created_at": iso_field(w, "created_at"),
    }


def _list(args: argparse.Namespace) -> int:
    request = api.ListWorkOrdersRequest(
        customer_id=args.customer,
        technician_id=args.technician,
        ticket_id=args.ticket,
        state=WORK_ORDER_STATES.value_or_zero(args.state or ""),
        page_size=args.limit,
        page_token=args.page_token,
    )
    out = Output(args.json)
    with Client(args) as client:
        reply = _stub(client).ListWorkOrders(request, timeout=args.timeout)
        orders = list(reply.work_orders)
        names = (
            {}
            if out.json_mode
            else customer_names(client, (w.customer_id for w in orders), args.timeout)
        )
    if out.json_mode:
        out.json(
            {
                "work_orders": [summary_json(w) for w in orders],
                "next_page_token": reply.next_page_token,
            }
        )
        return 0
    print_list(out, orders, names, reply.next_page_token)
    return 0


def print_list(
    out: Output, orders: list[api.WorkOrderSummary], names: dict[str, str], next_token: str
) -> None:
    """Work orders as a dispatcher reads them: who goes when comes before what it cost (a
    narrow terminal leaves out the cost first, then the customer's name, never the
    technician or the window)."""
    caption = f"{PAGE_CAPTION}{next_token}" if next_token else None
    out.table(
        ["id", "state", "technician", "window (UTC)", "customer", "summary", "cost"],
        [
            [
                w.work_order_id,
                WORK_ORDER_STATES.word(w.state),
                w.technician_id,
                short_time(iso_field(w, "window_start"))[:16],
                names.get(w.customer_id) or w.customer_id,
                w.summary,
                f"{w.cost} {w.currency}",
            ]
            for w in orders
        ],
        caption=caption if orders else "no work order found",
        no_wrap={"id", "state", "technician", "window (UTC)", "cost"},
        drop=["cost", "customer"],
    )


def _report(args: argparse.Namespace) -> int:
    start, end = period(args.start, args.end)
    request = api.GetFieldServiceReportRequest(completed_from=start, completed_to=end)
    with Client(args) as client:
        reply = _stub(client).GetFieldServiceReport(request, timeout=args.timeout)

    def optional(r: Any, name: str) -> float | None:
        return float(getattr(r, name)) if r.HasField(name) else None

    rows = [
        {
            "dimension": r.dimension,
            "value": r.value,
            "currency": r.currency,
            "visits": r.visits,
            "total_cost": r.total_cost,
            "cost_per_visit": r.cost_per_visit,
            "median_hours_to_complete": optional(r, "median_hours_to_complete"),
            "median_hours_on_site": optional(r, "median_hours_on_site"),
            "first_time_fixes": r.first_time_fixes,
            "first_time_fix_rate": optional(r, "first_time_fix_rate"),
            "ratings": r.ratings,
            "mean_satisfaction": optional(r, "mean_satisfaction"),
        }
        for r in reply.rows
    ]
    out = Output(args.json)
    if out.json_mode:
        out.json({"rows": rows})
        return 0
    print_report(out, rows)
    return 0


REPORT_COLUMNS = ("visits", "cost/visit", "h to done", "h on site", "1st fix", "satisf.")


def print_report(out: Output, rows: list[dict[str, Any]]) -> None:
    """One table per dimension (all visits, then by technician, by region), its values in
    the first column: every figure whole, with its header, in 80 columns."""
    if not rows:
        out.table(["visits", *REPORT_COLUMNS[1:]], [], caption="no visit completed in the period")
        return
    dimensions = list(dict.fromkeys(r["dimension"] for r in rows))
    for dimension in dimensions:
        out.table(
            ["" if dimension == "all" else dimension, *REPORT_COLUMNS],
            [
                [
                    r["value"] if dimension != "all" else "all visits",
                    r["visits"],
                    f"{r['cost_per_visit']} {r['currency']}",
                    hours(r["median_hours_to_complete"]),
                    hours(r["median_hours_on_site"]),
                    f"{r['first_time_fix_rate']:.0%}"
                    if r["first_time_fix_rate"] is not None
                    else "-",
                    f"{r['mean_satisfaction']:.1f}" if r["mean_satisfaction"] is not None else "-",
                ]
                for r in rows
                if r["dimension"] == dimension
            ],
            no_wrap=set(REPORT_COLUMNS),
        )
