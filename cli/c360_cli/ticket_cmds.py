"""`c360 ticket ...`: open, work and read tickets through the service-desk gRPC API."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rich.table import Table
from rich.text import Text

from c360.service_desk.v1 import service_desk_service_pb2 as api
from c360.service_desk.v1.service_desk_service_pb2_grpc import ServiceDeskServiceStub
from c360_cli import visit_cmds
from c360_cli.argtypes import whole_in
from c360_cli.client import Client
from c360_cli.commands import Api, Arg, Command, Subparsers, add_commands
from c360_cli.names import customer_names
from c360_cli.output import (
    PAGE_CAPTION,
    JSONValue,
    Output,
    entry_json,
    iso_field,
    parse_time,
    profile_json,
    short_time,
)
from c360_cli.words import (
    ALLOWANCE_UNITS,
    ARTICLE_LINK_KINDS,
    CONSUME_ON,
    INTERACTION_KINDS,
    SLA_TARGET_KINDS,
    SLA_TARGET_STATUSES,
    TICKET_CHANNELS,
    TICKET_PRIORITIES,
    TICKET_STATES,
    WAITING_FOR,
    WORK_ORDER_STATES,
)

SERVICE_DESK = Api("service-desk", ServiceDeskServiceStub, "ticket", whole_in(0, 2**63 - 1))
ID = Arg("ticket_id", "ticket_id", "the ticket's id", metavar="ID")
AGENT = Arg("--agent", "agent_id", "the agent's employee id", metavar="EMPLOYEE_ID")


def _recorded(request: api.RecordInteractionRequest) -> str:
    kind = INTERACTION_KINDS.word(request.kind)
    return "note added" if kind == "note" else f"{kind.replace('-', ' ')} recorded"


COMMANDS = (
    Command(
        "open",
        "open a ticket for a customer",
        SERVICE_DESK,
        "OpenTicket",
        api.OpenTicketRequest,
        (
            Arg("--customer", "customer_id", "the customer's id", metavar="ID", required=True),
            Arg(
                "--channel",
                "channel",
                ", ".join(TICKET_CHANNELS.words),
                required=True,
                words=TICKET_CHANNELS,
            ),
            Arg("--subject", "subject", "what it is about, in one line", required=True),
            Arg("--description", "description", "the details", default=""),
            Arg("--category", "category", "e.g. billing, delivery (default general)", default=""),
            Arg(
                "--priority",
                "priority",
                f"{', '.join(TICKET_PRIORITIES.words)} (default normal)",
                default="normal",
                words=TICKET_PRIORITIES,
            ),
            Arg(
                "--time-zone",
                "time_zone",
                "IANA zone the SLA calendar's hours are read in (default UTC)",
                metavar="ZONE",
                default="",
            ),
            Arg(
                "--allow-unknown-customer",
                "allow_unknown_customer",
                "open it although the timeline does not know the customer (a call logged"
                " before the caller is registered); without it such an id is refused",
                flag=True,
            ),
            Arg(
                "--service",
                "service",
                "the product or service it is about (the contract covering it entitles it)",
                default="",
            ),
            Arg("--request-id", "request_id", "idempotency key", metavar="ID", default=""),
        ),
        verb="ticket opened",
        request_id=False,
        description="Open a ticket.",
    ),
    Command(
        "assign",
        "give a ticket to an agent and/or a queue",
        SERVICE_DESK,
        "AssignTicket",
        api.AssignTicketRequest,
        (ID, AGENT, Arg("--queue", "queue", "the queue, e.g. billing", metavar="QUEUE")),
        verb="ticket assigned",
        expected_version=True,
    ),
    Command(
        "note",
        "record an internal note, a message or a call",
        SERVICE_DESK,
        "RecordInteraction",
        api.RecordInteractionRequest,
        (
            ID,
            Arg(
                "text",
                "body",
                "the note's or the message's text",
                metavar="TEXT",
                default="",
                optional=True,
            ),
            Arg(
                "--kind",
                "kind",
                ", ".join(INTERACTION_KINDS.words),
                default="note",
                words=INTERACTION_KINDS,
            ),
            Arg("--channel", "channel", "of a message or call", words=TICKET_CHANNELS),
            Arg(
                "--duration",
                "duration_seconds",
                "a call's length",
                metavar="SECONDS",
                default=0,
                type=whole_in(0, 86_400),
            ),
            Arg("--agent", "agent_id", "who recorded it (employee id)", metavar="EMPLOYEE_ID"),
        ),
        verb=_recorded,
        shows=("interaction_id",),
        expected_version=True,
    ),
    Command(
        "priority",
        "change a ticket's priority",
        SERVICE_DESK,
        "ChangePriority",
        api.ChangePriorityRequest,
        (
            ID,
            Arg(
                "priority",
                "priority",
                ", ".join(TICKET_PRIORITIES.words),
                metavar="PRIORITY",
                words=TICKET_PRIORITIES,
            ),
            Arg("--reason", "reason", "why", default=""),
        ),
        verb="priority changed",
        expected_version=True,
    ),
    Command(
        "escalate",
        "escalate a ticket one level",
        SERVICE_DESK,
        "EscalateTicket",
        api.EscalateTicketRequest,
        (
            ID,
            Arg("--reason", "reason", "why it needs escalating", required=True),
            Arg("--queue", "queue", "move it to this queue", metavar="QUEUE", default=""),
        ),
        verb="ticket escalated",
        expected_version=True,
    ),
    Command(
        "hold",
        "put a ticket on hold: its SLA clocks stop",
        SERVICE_DESK,
        "HoldTicket",
        api.HoldTicketRequest,
        (
            ID,
            Arg(
                "--waiting-for",
                "waiting_for",
                ", ".join(WAITING_FOR.words),
                default="customer",
                words=WAITING_FOR,
            ),
            Arg("--reason", "reason", "what it waits for", default=""),
        ),
        verb="ticket on hold",
        expected_version=True,
    ),
    Command(
        "resume",
        "end a ticket's wait: its SLA clocks run again",
        SERVICE_DESK,
        "ResumeTicket",
        api.ResumeTicketRequest,
        (ID,),
        verb="ticket resumed",
        expected_version=True,
    ),
    Command(
        "resolve",
        "resolve a ticket",
        SERVICE_DESK,
        "ResolveTicket",
        api.ResolveTicketRequest,
        (
            ID,
            Arg("--resolution", "resolution", "how it was solved", metavar="TEXT", required=True),
            AGENT,
            Arg(
                "--article",
                "article_id",
                "a published knowledge article used to resolve it (linked to the ticket)",
                metavar="ARTICLE_ID",
                default="",
            ),
            Arg(
                "--work-minutes",
                "work_minutes",
                "time spent (for a contract counting hours; default: the ticket's call time)",
                metavar="MINUTES",
                default=0,
                type=whole_in(0, 7 * 24 * 60),
            ),
        ),
        verb="ticket resolved",
        expected_version=True,
    ),
    Command(
        "reopen",
        "reopen a resolved ticket",
        SERVICE_DESK,
        "ReopenTicket",
        api.ReopenTicketRequest,
        (ID, Arg("--reason", "reason", "why it is open again", default="")),
        verb="ticket reopened",
        expected_version=True,
    ),
    Command(
        "close",
        "close a ticket for good",
        SERVICE_DESK,
        "CloseTicket",
        api.CloseTicketRequest,
        (ID, Arg("--reason", "reason", "why it is closed", default="")),
        verb="ticket closed",
        expected_version=True,
    ),
    Command(
        "merge",
        "close a duplicate ticket (the same request again) as merged into an open one",
        SERVICE_DESK,
        "MergeTickets",
        api.MergeTicketsRequest,
        (
            Arg("survivor_ticket_id", "survivor_ticket_id", "the ticket that stays", metavar="ID"),
            Arg(
                "duplicate_ticket_id",
                "duplicate_ticket_id",
                "the duplicate, closed into it",
                metavar="DUPLICATE_ID",
            ),
            Arg("--reason", "reason", "why they are one request", default=""),
        ),
        verb="tickets merged",
        shows=("duplicate_ticket_id",),
        expected_version=True,
    ),
    Command(
        "rate",
        "record the customer's satisfaction, 1 to 5",
        SERVICE_DESK,
        "RateTicket",
        api.RateTicketRequest,
        (
            ID,
            Arg(
                "score", "score", "1 (poor) to 5 (excellent)", metavar="SCORE", type=whole_in(1, 5)
            ),
            Arg("--comment", "comment", "the customer's words", default=""),
        ),
        verb="ticket rated",
        expected_version=True,
    ),
)


# -- labels and JSON ----------------------------------------------------------------------------


def ticket_json(t: api.Ticket) -> dict[str, JSONValue]:
    e = t.entitlement
    return {
        "entitlement": (
            {
                "contract_id": e.contract_id,
                "contract_name": e.contract_name,
                "unit": ALLOWANCE_UNITS.word(e.unit),
                "consume_on": CONSUME_ON.word(e.consume_on),
                "consumed": e.consumed,
            }
            if t.HasField("entitlement")
            else None
        ),
        "entitlement_note": t.entitlement_note,
        "customer_classes": list(t.customer_classes),
        "articles": [
            {
                "article_id": a.article_id,
                "title": a.title,
                "kind": ARTICLE_LINK_KINDS.word(a.kind),
            }
            for a in t.articles
        ],
        "ticket_id": t.ticket_id,
        "version": t.version,
        "customer_id": t.customer_id,
        "state": TICKET_STATES.word(t.state),
        "channel": TICKET_CHANNELS.word(t.channel),
        "subject": t.subject,
        "description": t.description,
        "category": t.category,
        "priority": TICKET_PRIORITIES.word(t.priority),
        "agent_id": t.agent_id,
        "queue": t.queue,
        "escalation_level": t.escalation_level,
        "interactions": [
            {
                "interaction_id": i.interaction_id,
                "kind": INTERACTION_KINDS.word(i.kind),
                "channel": TICKET_CHANNELS.word(i.channel) if i.channel else None,
                "body": i.body,
                "duration_seconds": i.duration_seconds,
                "agent_id": i.agent_id,
                "recorded_at": iso_field(i, "recorded_at"),
            }
            for i in t.interactions
        ],
        "resolution": t.resolution,
        "rating": t.rating if t.HasField("rating") else None,
        "rating_comment": t.rating_comment,
        "reopened_count": t.reopened_count,
        "opened_at": iso_field(t, "opened_at"),
        "resolved_at": iso_field(t, "resolved_at"),
        "closed_at": iso_field(t, "closed_at"),
        "updated_at": iso_field(t, "updated_at"),
        "time_zone": t.time_zone,
        "waiting_for": WAITING_FOR.word(t.waiting_for) if t.waiting_for else None,
        "sla_policy": t.sla_policy,
        "sla_targets": [
            {
                "target": SLA_TARGET_KINDS.word(s.kind),
                "minutes": s.minutes,
                "due_at": iso_field(s, "due_at"),
                "remaining_minutes": (
                    s.remaining_minutes if s.HasField("remaining_minutes") else None
                ),
                "status": SLA_TARGET_STATUSES.word(s.status),
                "met_at": iso_field(s, "met_at"),
            }
            for s in t.sla_targets
        ],
    }


def _business_time(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    return f"{hours}h{rest:02d}"


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name) if name and name != "UTC" else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _sla_table(t: api.Ticket) -> Table:
    """Each SLA target: its business time, due time, what is left of it, its status. Times
    in the ticket's time zone (the one its business hours are kept in), else UTC."""
    zone = _zone(t.time_zone)
    title = f"SLA: policy {t.sla_policy}" + (f" ({t.time_zone})" if t.time_zone else "")
    table = Table(title=title, title_justify="left", expand=False)
    for column in ("target", "of", "due (local)" if zone else "due (UTC)", "left", "status"):
        table.add_column(column, no_wrap=True)

    def when(field: Any, name: str) -> str:
        if not field.HasField(name):
            return ""
        moment: datetime = getattr(field, name).ToDatetime(tzinfo=UTC)
        return (moment.astimezone(zone) if zone else moment).strftime("%Y-%m-%d %H:%M")

    for s in t.sla_targets:
        status = SLA_TARGET_STATUSES.word(s.status)
        style = {"breached": "bold red", "nearing-breach": "yellow", "met": "green"}.get(status)
        if s.HasField("met_at"):
            status += f" {when(s, 'met_at')[5:16]}"
        table.add_row(
            SLA_TARGET_KINDS.word(s.kind),
            _business_time(s.minutes),
            when(s, "due_at"),
            _business_time(s.remaining_minutes) if s.HasField("remaining_minutes") else "",
            Text(status, style=style or ""),
        )
    return table


def summary_json(t: api.TicketSummary) -> dict[str, JSONValue]:
    return {
        "ticket_id": t.ticket_id,
        "version": t.version,
        "customer_id": t.customer_id,
        "state": TICKET_STATES.word(t.state),
        "channel": TICKET_CHANNELS.word(t.channel),
        "subject": t.subject,
        "category": t.category,
        "priority": TICKET_PRIORITIES.word(t.priority),
        "agent_id": t.agent_id,
        "queue": t.queue,
        "escalation_level": t.escalation_level,
        "opened_at": iso_field(t, "opened_at"),
        "updated_at": iso_field(t, "updated_at"),
        "waiting_for": WAITING_FOR.word(t.waiting_for) if t.waiting_for else None,
    }


def context_json(c: api.CustomerContext) -> dict[str, JSONValue]:
    return {
        "available": c.available,
        "unavailable_reason": c.unavailable_reason,
        "profile": profile_json(c.profile) if c.HasField("profile") else None,
        "recent_entries": [entry_json(e) for e in c.recent_entries],
    }


# -- the command tree ---------------------------------------------------------------------------


def register(subparsers: Subparsers) -> None:
    """Add `ticket` and its subcommands."""
    parser = subparsers.add_parser(
        "ticket",
        help="open, work and show service-desk tickets",
        description="Open, work and show tickets (the service-desk service's commands).",
    )
    sub = parser.add_subparsers(title="commands", dest="ticket_command", metavar="COMMAND")
    sub.required = True
    add_commands(sub, COMMANDS, {})

    p = sub.add_parser(
        "show",
        help="show a ticket with the customer's 360 context",
        description="Show a ticket and, beside it, the customer's 360 profile and latest entries.",
    )
    p.add_argument("ticket_id", metavar="ID", help="the ticket's id")
    p.set_defaults(func=_show)

    p = sub.add_parser("list", help="list tickets, newest first", description="List tickets.")
    p.add_argument("--customer", default="", metavar="ID", help="only this customer's")
    p.add_argument(
        "--state", type=TICKET_STATES.parse, help=f"only {', '.join(TICKET_STATES.words)} ones"
    )
    p.add_argument("--agent", default="", metavar="EMPLOYEE_ID", help="only this agent's")
    p.add_argument("--queue", default="", metavar="QUEUE", help="only this queue's")
    p.add_argument(
        "--priority",
        type=TICKET_PRIORITIES.parse,
        help=f"only {', '.join(TICKET_PRIORITIES.words)} ones",
    )
    hold = p.add_mutually_exclusive_group()
    hold.add_argument(
        "--on-hold",
        dest="on_hold",
        action="store_const",
        const=True,
        help="only open tickets on hold (waiting for the customer or a third party)",
    )
    hold.add_argument(
        "--not-on-hold",
        dest="on_hold",
        action="store_const",
        const=False,
        help="only open tickets not on hold (those an agent can work on)",
    )
    p.add_argument(
        "--limit", type=whole_in(1, 200), default=50, metavar="N", help="page size (default 50)"
    )
    p.add_argument("--page-token", default="", metavar="TOKEN", help="next_page_token of a page")
    p.add_argument(
        "--all",
        action="store_true",
        help="every page, one after the other (through a pager on a terminal)",
    )
    p.set_defaults(func=_list, on_hold=None)

    p = sub.add_parser(
        "sla-report",
        help="SLA compliance per policy, queue, agent and channel",
        description="SLA compliance of the tickets opened in a period (default: the last 30"
        " days): per policy, queue, agent and channel, how many met every target, how many"
        " breached one, how many still run.",
    )
    p.add_argument(
        "--from",
        dest="opened_from",
        type=parse_time,
        metavar="TIME",
        help="tickets opened at or after TIME (default 30 days ago)",
    )
    p.add_argument(
        "--to",
        dest="opened_to",
        type=parse_time,
        metavar="TIME",
        help="tickets opened before TIME (default now)",
    )
    p.set_defaults(func=_sla_report)


# -- reads --------------------------------------------------------------------------------------


def _show(args: argparse.Namespace) -> int:
    with Client(args) as client:
        reply = client.stub("service-desk", ServiceDeskServiceStub).GetTicket(
            api.GetTicketRequest(ticket_id=args.ticket_id), timeout=args.timeout
        )
    out = Output(args.json)
    if out.json_mode:
        out.json(
            {
                "ticket": ticket_json(reply.ticket),
                "context": context_json(reply.context),
                "work_orders": [visit_cmds.summary_json(w) for w in reply.work_orders],
            }
        )
        return 0
    t = reply.ticket
    rows: list[tuple[str, Any]] = [
        ("id", t.ticket_id),
        ("customer", t.customer_id),
        ("state", TICKET_STATES.word(t.state)),
        ("channel", TICKET_CHANNELS.word(t.channel)),
        ("category", t.category),
        ("priority", TICKET_PRIORITIES.word(t.priority)),
        ("agent / queue", " / ".join(x for x in (t.agent_id, t.queue) if x)),
        ("escalation level", t.escalation_level),
        ("opened", short_time(iso_field(t, "opened_at"))),
        ("version", t.version),
    ]
    if t.description:
        rows.append(("description", Text(t.description)))
    if t.resolution:
        rows.append(("resolution", Text(t.resolution)))
    if t.HasField("rating"):
        rows.append(("rating", f"{t.rating}/5 {t.rating_comment}".strip()))
    if t.merged_into_ticket_id:
        rows.append(("merged into", Text(t.merged_into_ticket_id, style="yellow")))
    if t.merged_ticket_ids:
        rows.append(("merged tickets", list(t.merged_ticket_ids)))
    if t.waiting_for:
        whom = WAITING_FOR.word(t.waiting_for).replace("-", " ")
        rows.append(("on hold", f"waiting for the {whom}"))
    if t.HasField("entitlement"):
        e = t.entitlement
        use = "used" if e.consumed else f"used on {CONSUME_ON.word(e.consume_on)}"
        rows.append(("entitlement", f"{e.contract_name} ({ALLOWANCE_UNITS.word(e.unit)}, {use})"))
    elif t.entitlement_note:
        rows.append(("entitlement", Text(f"none: {t.entitlement_note}", style="yellow")))
    if t.customer_classes:
        rows.append(("customer classes", list(t.customer_classes)))
    if t.articles:
        rows.append(
            (
                "articles",
                [f"{a.title} ({ARTICLE_LINK_KINDS.word(a.kind)})" for a in t.articles],
            )
        )
    extra: list[Any] = [_sla_table(t)] if t.sla_targets else []
    if t.interactions:
        table = Table(title="interactions", title_justify="left", expand=False)
        for column in ("at", "kind", "channel", "agent", "text"):
            table.add_column(column, overflow="fold")
        for i in t.interactions:
            text = i.body or (f"{i.duration_seconds} s" if i.duration_seconds else "")
            table.add_row(
                short_time(iso_field(i, "recorded_at")),
                INTERACTION_KINDS.word(i.kind),
                TICKET_CHANNELS.word(i.channel) if i.channel else "",
                i.agent_id,
                Text(text),
            )
        extra.append(table)
    if reply.work_orders:
        extra.append(_visits_table(reply.work_orders, wide=args.wide))
    out.kv_panel(t.subject, rows, *extra)
    _show_context(out, reply.context)
    return 0


def _visits_table(orders: Iterable[api.WorkOrderSummary], *, wide: bool) -> Table:
    """The ticket's on-site visits: where each is, who goes when, what it cost."""
    table = Table(title="on-site visits", title_justify="left", expand=False)
    for column in ("id", "state", "technician", "window (UTC)", "cost"):
        table.add_column(column, overflow="fold")
    for w in orders:
        table.add_row(
            w.work_order_id if wide else w.work_order_id[:8],
            WORK_ORDER_STATES.word(w.state),
            w.technician_id,
            short_time(iso_field(w, "window_start"))[:16],
            f"{w.cost} {w.currency}",
        )
    return table


def _show_context(out: Output, c: api.CustomerContext) -> None:
    """The customer's 360 context, beside the ticket."""
    if not c.available:
        out.print(Text(f"customer context unavailable: {c.unavailable_reason}", style="yellow"))
        return
    doc = profile_json(c.profile)
    desk = doc["service_desk"] or {}
    consent = doc["attributes"].get("consent", {})
    rows: list[tuple[str, Any]] = [
        ("kind", doc["kind"]),
        ("e-mails", doc["emails"]),
        ("phones", doc["phones"]),
        ("owner", doc["owner_id"]),
        ("consent", [f"{k}: {'yes' if v.get('granted') else 'no'}" for k, v in consent.items()]),
        (
            "at risk",
            Text(f"YES ({len(doc['at_risk_reasons'])} contacts)", style="bold red")
            if doc["at_risk"]
            else "no",
        ),
        (
            "open tickets",
            [
                f"{x['subject']} ({x['channel']}"
                + (", on hold" if x.get("waiting_for") else "")
                + ")"
                for x in desk.get("open_tickets", [])
            ],
        ),
        (
            "last contact",
            f"{short_time(desk.get('last_contact_at'))} {desk.get('last_contact_channel', '')}",
        ),
        ("satisfaction", desk.get("mean_satisfaction")),
    ]
    recent = Table(title="latest", title_justify="left", expand=False)
    for column in ("at", "source", "summary"):
        recent.add_column(column, overflow="fold")
    for e in c.recent_entries:
        recent.add_row(short_time(iso_field(e, "occurred_at")), e.source, Text(e.summary))
    out.kv_panel(f"customer: {doc['display_name'] or c.profile.customer_id}", rows, recent)


def _list(args: argparse.Namespace) -> int:
    request = api.ListTicketsRequest(
        customer_id=args.customer,
        state=TICKET_STATES.value_or_zero(args.state or ""),
        agent_id=args.agent,
        queue=args.queue,
        priority=TICKET_PRIORITIES.value_or_zero(args.priority or ""),
        page_size=args.limit,
        page_token=args.page_token,
    )
    if args.on_hold is not None:
        request.on_hold = args.on_hold
    out = Output(args.json)
    tickets: list[api.TicketSummary] = []
    with Client(args) as client:
        stub = client.stub("service-desk", ServiceDeskServiceStub)
        while True:
            reply = stub.ListTickets(request, timeout=args.timeout)
            tickets += reply.tickets
            if not (args.all and reply.next_page_token):
                break
            request.page_token = reply.next_page_token
        names = (
            {}
            if out.json_mode
            else customer_names(client, (t.customer_id for t in tickets), args.timeout)
        )
    if out.json_mode:
        out.json(
            {
                "tickets": [summary_json(t) for t in tickets],
                "next_page_token": reply.next_page_token,
            }
        )
        return 0
    caption = f"{PAGE_CAPTION}{reply.next_page_token}" if reply.next_page_token else None
    with out.paged(args.all):
        out.table(
            ["id", "opened (UTC)", "state", "priority", "customer", "subject", "agent / queue"],
            [
                [
                    t.ticket_id,
                    short_time(iso_field(t, "opened_at"))[:16],
                    "on hold" if t.waiting_for else TICKET_STATES.word(t.state),
                    TICKET_PRIORITIES.word(t.priority),
                    names.get(t.customer_id) or t.customer_id,
                    t.subject,
                    " / ".join(x for x in (t.agent_id, t.queue) if x),
                ]
                for t in tickets
            ],
            caption=caption if tickets else "no ticket found",
            no_wrap={"id", "opened (UTC)", "state", "priority"},
            drop=["agent / queue", "opened (UTC)"],
        )
    return 0


def _sla_report(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    request = api.GetSlaComplianceRequest()
    if args.opened_to is not None:
        request.opened_to.CopyFrom(args.opened_to)
    else:
        request.opened_to.FromDatetime(now + timedelta(seconds=1))
    if args.opened_from is not None:
        request.opened_from.CopyFrom(args.opened_from)
    else:
        request.opened_from.FromDatetime(now - timedelta(days=30))
    with Client(args) as client:
        reply = client.stub("service-desk", ServiceDeskServiceStub).GetSlaCompliance(
            request, timeout=args.timeout
        )
    rows = sla_rows(reply)
    out = Output(args.json)
    if out.json_mode:
        out.json({"rows": rows})
        return 0
    out.table(
        ["by", "value", "tickets", "met", "breached", "running", "cancelled", "met %"],
        [
            [
                r["dimension"],
                r["value"],
                r["tickets"],
                r["met"],
                r["breached"],
                r["running"],
                r["cancelled"],
                f"{r['compliance']:.0%}" if r["compliance"] is not None else "-",
            ]
            for r in rows
        ],
        title="compliance (met %) = met / (met + breached)" if rows else None,
        caption=None if rows else "no ticket under an SLA policy in the period",
    )
    return 0


def sla_rows(reply: api.GetSlaComplianceResponse) -> list[dict[str, Any]]:
    """The compliance report's rows, a channel spelt as the CLI takes it (`web-form`, not
    the service's `web_form`), so that `ticket open --channel` and `ticket list` agree."""
    return [
        {
            "dimension": r.dimension,
            "value": TICKET_CHANNELS.spelt(r.value) if r.dimension == "channel" else r.value,
            "tickets": r.tickets,
            "met": r.met,
            "breached": r.breached,
            "running": r.running,
            "cancelled": r.cancelled,
            "compliance": round(r.compliance, 4) if r.HasField("compliance") else None,
        }
        for r in reply.rows
    ]
