"""`c360 calendar ...`: the SLA business calendars: show one (zone, working hours, holidays)
and import public holidays from an iCalendar file, through the service-desk API."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from c360.service_desk.v1 import service_desk_service_pb2 as api
from c360.service_desk.v1.service_desk_service_pb2_grpc import ServiceDeskServiceStub
from c360_cli.client import Client
from c360_cli.commands import Subparsers
from c360_cli.errors import CliError
from c360_cli.output import Output

WEEKDAYS = ("", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def register(subparsers: Subparsers) -> None:
    """Add `calendar` and its subcommands."""
    parser = subparsers.add_parser(
        "calendar",
        help="SLA business calendars: working hours and public holidays (iCalendar import)",
        description="The business calendars SLA clocks run on (the service-desk service's).",
    )
    sub = parser.add_subparsers(title="commands", dest="calendar_command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser(
        "import",
        help="add the public holidays of an iCalendar (.ics) file",
        description="Add the holidays of an iCalendar file (all-day events; recurring ones for"
        " five years) to a business calendar. Due times computed from then on skip them;"
        " importing the same file again adds nothing.",
    )
    p.add_argument("file", type=Path, metavar="FILE.ics", help="the iCalendar file")
    p.add_argument("--calendar", default="standard", help="the business calendar (standard)")
    p.add_argument("--request-id", default="", metavar="ID", help="idempotency key")
    p.set_defaults(func=_import)
    p = sub.add_parser(
        "show",
        help="a calendar's zone, working hours and holidays",
        description="Show a business calendar; holidays from today on unless --all.",
    )
    p.add_argument("calendar", nargs="?", default="standard", help="its name (standard)")
    p.add_argument("--all", action="store_true", help="past holidays too")
    p.set_defaults(func=_show)


def _import(args: argparse.Namespace) -> int:
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}", 2, field="file") from None
    request = api.ImportHolidaysRequest(
        request_id=args.request_id, calendar=args.calendar, ics=data, source=args.file.name
    )
    with Client(args) as client:
        reply = client.stub("service-desk", ServiceDeskServiceStub).ImportHolidays(
            request, timeout=args.timeout
        )
    Output(args.json).result(
        f"{reply.added} new holidays in calendar {args.calendar}",
        reply.result,
        "calendar",
        added=str(reply.added),
    )
    return 0


def working_hours(days: list[tuple[int, str, str]]) -> str:
    """Weekdays in a row with the same hours as one range: 'Mon-Fri 09:00-17:00', not each
    day apart (which wrapped between a day and its hours)."""
    runs: list[tuple[int, int, str]] = []
    for weekday, opens, closes in sorted(days):
        hours = f"{opens}-{closes}"
        if runs and runs[-1][1] == weekday - 1 and runs[-1][2] == hours:
            runs[-1] = (runs[-1][0], weekday, hours)
        else:
            runs.append((weekday, weekday, hours))
    return "; ".join(
        f"{WEEKDAYS[first]}{'' if first == last else '-' + WEEKDAYS[last]} {hours}"
        for first, last, hours in runs
    )


def _show(args: argparse.Namespace) -> int:
    with Client(args) as client:
        c = client.stub("service-desk", ServiceDeskServiceStub).GetCalendar(
            api.GetCalendarRequest(calendar=args.calendar), timeout=args.timeout
        )
    today = datetime.now(UTC).date().isoformat()
    holidays = [h for h in c.holidays if args.all or h.date >= today]
    out = Output(args.json)
    if out.json_mode:
        out.json(
            {
                "name": c.name,
                "time_zone": c.time_zone,
                "hours": [
                    {"weekday": h.weekday, "opens": h.opens, "closes": h.closes} for h in c.hours
                ],
                "holidays": [{"date": h.date, "name": h.name} for h in holidays],
                "policies": list(c.policies),
            }
        )
        return 0
    out.kv_panel(
        f"calendar {c.name}",
        [
            ("time zone", f"{c.time_zone} (a ticket's own zone replaces it)"),
            ("hours", working_hours([(h.weekday, h.opens, h.closes) for h in c.hours])),
            ("policies", list(c.policies)),
        ],
    )
    out.table(
        ["date", "holiday"],
        [[h.date, h.name or "-"] for h in holidays],
        caption=None if holidays else "no holiday ahead",
    )
    return 0
