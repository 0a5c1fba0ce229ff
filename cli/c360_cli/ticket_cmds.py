"""`c360 ticket ...`: open, work and read tickets through the service-desk gRPC API."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeAlias

from rich.table import Table
from rich.text import Text

from c360.events.v1 import ticket_events_pb2 as events
from c360.service_desk.v1 import service_desk_service_pb2 as api
from c360.service_desk.v1.service_desk_service_pb2_grpc import ServiceDeskServiceStub
from c360_cli.argtypes import versioned, whole_in
from c360_cli.client import Client
from c360_cli.output import (
    JSONValue,
    Output,
    entry_json,
    enum_label,
    iso_field,
    profile_json,
    short_time,
)

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler = Callable[[argparse.Namespace], int]

CHANNELS = {
    "phone": events.TICKET_CHANNEL_PHONE,
    "ivr": events.TICKET_CHANNEL_IVR,
    "email": events.TICKET_CHANNEL_EMAIL,
    "sms": events.TICKET_CHANNEL_SMS,
    "web-form": events.TICKET_CHANNEL_WEB_FORM,
    "chat": events.TICKET_CHANNEL_CHAT,
    "fax": events.TICKET_CHANNEL_FAX,
    "in-person": events.TICKET_CHANNEL_IN_PERSON,
}
PRIORITIES = {
    "low": events.TICKET_PRIORITY_LOW,
    "normal": events.TICKET_PRIORITY_NORMAL,
    "high": events.TICKET_PRIORITY_HIGH,
    "urgent": events.TICKET_PRIORITY_URGENT,
}
STATES = {
    "open": events.TICKET_STATE_OPEN,
    "resolved": events.TICKET_STATE_RESOLVED,
    "closed": events.TICKET_STATE_CLOSED,
}
KINDS = {
    "note": events.INTERACTION_KIND_INTERNAL_NOTE,
    "inbound-message": events.INTERACTION_KIND_INBOUND_MESSAGE,
    "outbound-message": events.INTERACTION_KIND_OUTBOUND_MESSAGE,
    "inbound-call": events.INTERACTION_KIND_INBOUND_CALL,
    "outbound-call": events.INTERACTION_KIND_OUTBOUND_CALL,
}


def _choice(names: dict[str, Any]) -> Callable[[str], str]:
    """An argparse type accepting a name with - or _ (web-form, web_form)."""

    def parse(text: str) -> str:
        name = text.strip().lower().replace("_", "-")
        if name not in names:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(names)}")
        return name

    return parse


# -- labels and JSON ----------------------------------------------------------------------------


def channel_label(value: int) -> str:
    return enum_label(events.TicketChannel.Name(value), "TICKET_CHANNEL_").replace("_", "-")  # type: ignore[arg-type]


def priority_label(value: int) -> str:
    return enum_label(events.TicketPriority.Name(value), "TICKET_PRIORITY_")  # type: ignore[arg-type]


def state_label(value: int) -> str:
    return enum_label(events.TicketState.Name(value), "TICKET_STATE_")  # type: ignore[arg-type]


def kind_label(value: int) -> str:
    name = enum_label(events.InteractionKind.Name(value), "INTERACTION_KIND_")  # type: ignore[arg-type]
    return "note" if name == "internal_note" else name.replace("_", "-")


def ticket_json(t: api.Ticket) -> dict[str, JSONValue]:
    return {
        "ticket_id": t.ticket_id,
        "version": t.version,
        "customer_id": t.customer_id,
        "state": state_label(t.state),
        "channel": channel_label(t.channel),
        "subject": t.subject,
        "description": t.description,
        "category": t.category,
        "priority": priority_label(t.priority),
        "agent_id": t.agent_id,
        "queue": t.queue,
        "escalation_level": t.escalation_level,
        "interactions": [
            {
                "interaction_id": i.interaction_id,
                "kind": kind_label(i.kind),
                "channel": channel_label(i.channel) if i.channel else None,
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
    }


def summary_json(t: api.TicketSummary) -> dict[str, JSONValue]:
    return {
        "ticket_id": t.ticket_id,
        "version": t.version,
        "customer_id": t.customer_id,
        "state": state_label(t.state),
        "channel": channel_label(t.channel),
        "subject": t.subject,
        "category": t.category,
        "priority": priority_label(t.priority),
        "agent_id": t.agent_id,
        "queue": t.queue,
        "escalation_level": t.escalation_level,
        "opened_at": iso_field(t, "opened_at"),
        "updated_at": iso_field(t, "updated_at"),
    }


def context_json(c: api.CustomerContext) -> dict[str, JSONValue]:
    return {
        "available": c.available,
        "unavailable_reason": c.unavailable_reason,
        "profile": profile_json(c.profile) if c.HasField("profile") else None,
        "recent_entries": [entry_json(e) for e in c.recent_entries],
    }


# -- the command tree ---------------------------------------------------------------------------


def _command(
    subparsers: Subparsers, name: str, handler: Handler, help_text: str
) -> argparse.ArgumentParser:
    """A command on an existing ticket, with the options every such command shares."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("ticket_id", metavar="ID")
    parser.add_argument(
        "--request-id",
        default="",
        metavar="ID",
        help="idempotency key: a retry with the same id changes nothing and gets the same answer",
    )
    parser.add_argument(
        "--expected-version",
        type=whole_in(0, 2**63 - 1),
        metavar="N",
        help="refuse (conflict) unless the ticket is still at version N",
    )
    parser.set_defaults(func=handler)
    return parser


def register(subparsers: Subparsers) -> None:
    """Add `ticket` and its subcommands."""
    parser = subparsers.add_parser(
        "ticket",
        help="open, work and show service-desk tickets",
        description="Open, work and show tickets (the service-desk service's commands).",
    )
    sub = parser.add_subparsers(title="commands", dest="ticket_command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("open", help="open a ticket for a customer", description="Open a ticket.")
    p.add_argument("--customer", required=True, metavar="ID", help="the customer's id")
    p.add_argument("--channel", required=True, type=_choice(CHANNELS), help=", ".join(CHANNELS))
    p.add_argument("--subject", required=True)
    p.add_argument("--description", default="")
    p.add_argument("--category", default="", help="e.g. billing, delivery (default general)")
    p.add_argument("--priority", type=_choice(PRIORITIES), default="normal")
    p.add_argument("--request-id", default="", metavar="ID", help="idempotency key")
    p.set_defaults(func=_open)

    p = _command(sub, "assign", _assign, "give a ticket to an agent and/or a queue")
    p.add_argument("--agent", default="", metavar="EMPLOYEE_ID")
    p.add_argument("--queue", default="", metavar="QUEUE")

    p = _command(sub, "note", _note, "record an internal note, a message or a call")
    p.add_argument("text", nargs="?", default="", metavar="TEXT")
    p.add_argument("--kind", type=_choice(KINDS), default="note", help=", ".join(KINDS))
    p.add_argument("--channel", type=_choice(CHANNELS), help="of a message or call")
    p.add_argument("--duration", type=whole_in(0, 86_400), default=0, metavar="SECONDS")
    p.add_argument("--agent", default="", metavar="EMPLOYEE_ID")

    p = _command(sub, "priority", _priority, "change a ticket's priority")
    p.add_argument("priority", type=_choice(PRIORITIES), metavar="PRIORITY")
    p.add_argument("--reason", default="")

    p = _command(sub, "escalate", _escalate, "escalate a ticket one level")
    p.add_argument("--reason", required=True)
    p.add_argument("--queue", default="", metavar="QUEUE", help="move it to this queue")

    p = _command(sub, "resolve", _resolve, "resolve a ticket")
    p.add_argument("--resolution", required=True, metavar="TEXT")
    p.add_argument("--agent", default="", metavar="EMPLOYEE_ID")

    p = _command(sub, "reopen", _reopen, "reopen a resolved ticket")
    p.add_argument("--reason", default="")

    p = _command(sub, "close", _close, "close a ticket for good")
    p.add_argument("--reason", default="")

    p = _command(sub, "rate", _rate, "record the customer's satisfaction, 1 to 5")
    p.add_argument("score", type=whole_in(1, 5), metavar="SCORE")
    p.add_argument("--comment", default="")

    p = sub.add_parser(
        "show",
        help="show a ticket with the customer's 360 context",
        description="Show a ticket and, beside it, the customer's 360 profile and latest entries.",
    )
    p.add_argument("ticket_id", metavar="ID")
    p.set_defaults(func=_show)

    p = sub.add_parser("list", help="list tickets, newest first", description="List tickets.")
    p.add_argument("--customer", default="", metavar="ID")
    p.add_argument("--state", type=_choice(STATES))
    p.add_argument("--agent", default="", metavar="EMPLOYEE_ID")
    p.add_argument("--queue", default="", metavar="QUEUE")
    p.add_argument("--priority", type=_choice(PRIORITIES))
    p.add_argument("--limit", type=whole_in(1, 200), default=50, metavar="N")
    p.add_argument("--page-token", default="", metavar="TOKEN")
    p.set_defaults(func=_list)


# -- handlers -----------------------------------------------------------------------------------


def _open(args: argparse.Namespace) -> int:
    request = api.OpenTicketRequest(
        request_id=args.request_id,
        customer_id=args.customer,
        channel=CHANNELS[args.channel],
        subject=args.subject,
        description=args.description,
        category=args.category,
        priority=PRIORITIES[args.priority],
    )
    with Client(args) as client:
        reply = client.stub("service-desk", ServiceDeskServiceStub).OpenTicket(
            request, timeout=args.timeout
        )
    Output(args.json).result("ticket opened", reply.result, "ticket")
    return 0


def _assign(args: argparse.Namespace) -> int:
    request = api.AssignTicketRequest(
        request_id=args.request_id,
        ticket_id=args.ticket_id,
        agent_id=args.agent,
        queue=args.queue,
    )
    with Client(args) as client:
        reply = client.stub("service-desk", ServiceDeskServiceStub).AssignTicket(
            versioned(request, args), timeout=args.timeout
        )
    Output(args.json).result("ticket assigned", reply.result, "ticket")
    return 0


def _note(args: argparse.Namespace) -> int:
    request = api.RecordInteractionRequest(
        request_id=args.request_id,
        ticket_id=args.ticket_id,
        kind=KINDS[args.kind],
        channel=CHANNELS[args.channel] if args.channel else events.TICKET_CHANNEL_UNSPECIFIED,
        body=args.text,
        duration_seconds=args.duration,
        agent_id=args.agent,
    )
    with Client(args) as client:
        reply = client.stub("service-desk", ServiceDeskServiceStub).RecordInteraction(
            versioned(request, args), timeout=args.timeout
        )
    what = "note added" if args.kind == "note" else f"{args.kind.replace('-', ' ')} recorded"
    Output(args.json).result(what, reply.result, "ticket", interaction_id=reply.interaction_id)
    return 0


def _priority(args: argparse.Namespace) -> int:
    request = api.ChangePriorityRequest(
        request_id=args.request_id,
        ticket_id=args.ticket_id,
        priority=PRIORITIES[args.priority],
        reason=args.reason,
    )
    with Client(args) as client:
        reply = client.stub("service-desk", ServiceDeskServiceStub).ChangePriority(
            versioned(request, args), timeout=args.timeout
        )
    Output(args.json).result("priority changed", reply.result, "ticket")
    return 0


def _escalate(args: argparse.Namespace) -> int:
    request = api.EscalateTicketRequest(
        request_id=args.request_id, ticket_id=args.ticket_id, reason=args.reason, queue=args.queue
    )
    with Client(args) as client:
        reply = client.stub("service-desk", ServiceDeskServiceStub).EscalateTicket(
            versioned(request, args), timeout=args.timeout
        )
    Output(args.json).result("ticket escalated", reply.result, "ticket")
    return 0


def _resolve(args: argparse.Namespace) -> int:
    request = api.ResolveTicketRequest(
        request_id=args.request_id,
        ticket_id=args.ticket_id,
        resolution=args.resolution,
        agent_id=args.agent,
    )
    with Client(args) as client:
        reply = client.stub("service-desk", ServiceDeskServiceStub).ResolveTicket(
            versioned(request, args), timeout=args.timeout
        )
    Output(args.json).result("ticket resolved", reply.result, "ticket")
    return 0


def _reopen(args: argparse.Namespace) -> int:
    request = api.ReopenTicketRequest(
        request_id=args.request_id, ticket_id=args.ticket_id, reason=args.reason
    )
    with Client(args) as client:
        reply = client.stub("service-desk", ServiceDeskServiceStub).ReopenTicket(
            versioned(request, args), timeout=args.timeout
        )
    Output(args.json).result("ticket reopened", reply.result, "ticket")
    return 0


def _close(args: argparse.Namespace) -> int:
    request = api.CloseTicketRequest(
        request_id=args.request_id, ticket_id=args.ticket_id, reason=args.reason
    )
    with Client(args) as client:
        reply = client.stub("service-desk", ServiceDeskServiceStub).CloseTicket(
            versioned(request, args), timeout=args.timeout
        )
    Output(args.json).result("ticket closed", reply.result, "ticket")
    return 0


def _rate(args: argparse.Namespace) -> int:
    request = api.RateTicketRequest(
        request_id=args.request_id,
        ticket_id=args.ticket_id,
        score=args.score,
        comment=args.comment,
    )
    with Client(args) as client:
        reply = client.stub("service-desk", ServiceDeskServiceStub).RateTicket(
            versioned(request, args), timeout=args.timeout
        )
    Output(args.json).result("ticket rated", reply.result, "ticket")
    return 0


def _show(args: argparse.Namespace) -> int:
    with Client(args) as client:
        reply = client.stub("service-desk", ServiceDeskServiceStub).GetTicket(
            api.GetTicketRequest(ticket_id=args.ticket_id), timeout=args.timeout
        )
    out = Output(args.json)
    if out.json_mode:
        out.json({"ticket": ticket_json(reply.ticket), "context": context_json(reply.context)})
        return 0
    t = reply.ticket
    rows: list[tuple[str, Any]] = [
        ("id", t.ticket_id),
        ("customer", t.customer_id),
        ("state", state_label(t.state)),
        ("channel", channel_label(t.channel)),
        ("category", t.category),
        ("priority", priority_label(t.priority)),
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
    extra: list[Any] = []
    if t.interactions:
        table = Table(title="interactions", title_justify="left", expand=False)
        for column in ("at", "kind", "channel", "agent", "text"):
            table.add_column(column, overflow="fold")
        for i in t.interactions:
            text = i.body or (f"{i.duration_seconds} s" if i.duration_seconds else "")
            table.add_row(
                short_time(iso_field(i, "recorded_at")),
                kind_label(i.kind),
                channel_label(i.channel) if i.channel else "",
                i.agent_id,
                Text(text),
            )
        extra.append(table)
    out.kv_panel(t.subject, rows, *extra)
    _show_context(out, reply.context)
    return 0


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
            [f"{x['subject']} ({x['channel']})" for x in desk.get("open_tickets", [])],
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
        state=STATES[args.state] if args.state else events.TICKET_STATE_UNSPECIFIED,
        agent_id=args.agent,
        queue=args.queue,
        priority=PRIORITIES[args.priority] if args.priority else events.TICKET_PRIORITY_UNSPECIFIED,
        page_size=args.limit,
        page_token=args.page_token,
    )
    with Client(args) as client:
        reply = client.stub("service-desk", ServiceDeskServiceStub).ListTickets(
            request, timeout=args.timeout
        )
    out = Output(args.json)
    if out.json_mode:
        out.json(
            {
                "tickets": [summary_json(t) for t in reply.tickets],
                "next_page_token": reply.next_page_token,
            }
        )
        return 0
    caption = f"more: --page-token {reply.next_page_token}" if reply.next_page_token else None
    out.table(
        ["id", "opened (UTC)", "state", "priority", "subject", "agent / queue"],
        [
            [
                t.ticket_id,
                short_time(iso_field(t, "opened_at")),
                state_label(t.state),
                priority_label(t.priority),
                t.subject,
                " / ".join(x for x in (t.agent_id, t.queue) if x),
            ]
            for t in reply.tickets
        ],
        caption=caption if reply.tickets else "no ticket found",
        no_wrap={"opened (UTC)", "state", "priority"},
    )
    return 0
