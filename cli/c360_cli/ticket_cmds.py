"""`c360 ticket ...`: open, work and read tickets through the service-desk gRPC API."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeAlias

from rich.table import Table
from rich.text import Text

from c360.service_desk.v1 import service_desk_service_pb2 as api
from c360.service_desk.v1.service_desk_service_pb2_grpc import ServiceDeskServiceStub
from c360_cli.argtypes import versioned, whole_in
from c360_cli.client import Client
from c360_cli.output import JSONValue, Output, entry_json, iso_field, profile_json, short_time
from c360_cli.words import INTERACTION_KINDS, TICKET_CHANNELS, TICKET_PRIORITIES, TICKET_STATES

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler = Callable[[argparse.Namespace], int]

# -- labels and JSON ----------------------------------------------------------------------------


def ticket_json(t: api.Ticket) -> dict[str, JSONValue]:
    return {
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
    }


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
    p.add_argument(
        "--channel",
        required=True,
        type=TICKET_CHANNELS.parse,
        help=", ".join(TICKET_CHANNELS.words),
    )
    p.add_argument("--subject", required=True)
    p.add_argument("--description", default="")
    p.add_argument("--category", default="", help="e.g. billing, delivery (default general)")
    p.add_argument("--priority", type=TICKET_PRIORITIES.parse, default="normal")
    p.add_argument("--request-id", default="", metavar="ID", help="idempotency key")
    p.set_defaults(func=_open)

    p = _command(sub, "assign", _assign, "give a ticket to an agent and/or a queue")
    p.add_argument("--agent", default="", metavar="EMPLOYEE_ID")
    p.add_argument("--queue", default="", metavar="QUEUE")

    p = _command(sub, "note", _note, "record an internal note, a message or a call")
    p.add_argument("text", nargs="?", default="", metavar="TEXT")
    p.add_argument(
        "--kind",
        type=INTERACTION_KINDS.parse,
        default="note",
        help=", ".join(INTERACTION_KINDS.words),
    )
    p.add_argument("--channel", type=TICKET_CHANNELS.parse, help="of a message or call")
    p.add_argument("--duration", type=whole_in(0, 86_400), default=0, metavar="SECONDS")
    p.add_argument("--agent", default="", metavar="EMPLOYEE_ID")

    p = _command(sub, "priority", _priority, "change a ticket's priority")
    p.add_argument("priority", type=TICKET_PRIORITIES.parse, metavar="PRIORITY")
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
    p.add_argument("--state", type=TICKET_STATES.parse)
    p.add_argument("--agent", default="", metavar="EMPLOYEE_ID")
    p.add_argument("--queue", default="", metavar="QUEUE")
    p.add_argument("--priority", type=TICKET_PRIORITIES.parse)
    p.add_argument("--limit", type=whole_in(1, 200), default=50, metavar="N")
    p.add_argument("--page-token", default="", metavar="TOKEN")
    p.set_defaults(func=_list)


# -- handlers -----------------------------------------------------------------------------------


def _open(args: argparse.Namespace) -> int:
    request = api.OpenTicketRequest(
        request_id=args.request_id,
        customer_id=args.customer,
        channel=TICKET_CHANNELS.value(args.channel),
        subject=args.subject,
        description=args.description,
        category=args.category,
        priority=TICKET_PRIORITIES.value(args.priority),
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
        kind=INTERACTION_KINDS.value(args.kind),
        channel=TICKET_CHANNELS.value_or_zero(args.channel or ""),
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
        priority=TICKET_PRIORITIES.value(args.priority),
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
    extra: list[Any] = []
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
        state=TICKET_STATES.value_or_zero(args.state or ""),
        agent_id=args.agent,
        queue=args.queue,
        priority=TICKET_PRIORITIES.value_or_zero(args.priority or ""),
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
                TICKET_STATES.word(t.state),
                TICKET_PRIORITIES.word(t.priority),
                t.subject,
                " / ".join(x for x in (t.agent_id, t.queue) if x),
            ]
            for t in reply.tickets
        ],
        caption=caption if reply.tickets else "no ticket found",
        no_wrap={"opened (UTC)", "state", "priority"},
    )
    return 0
