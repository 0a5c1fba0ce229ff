"""`c360 lead|team|opportunity|product|pricelist|quote|order ...`, `c360 pipeline` and
`c360 forecast`: the sales service's commands and reads through its gRPC API."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from c360.events.v1 import sales_activity_events_pb2 as aev
from c360.events.v1 import sales_events_pb2 as lev
from c360.events.v1 import sales_opportunity_events_pb2 as oev
from c360.events.v1 import sales_order_events_pb2 as ordev
from c360.events.v1 import sales_pipeline_events_pb2 as pev
from c360.events.v1 import sales_price_list_events_pb2 as prev
from c360.events.v1 import sales_quote_events_pb2 as qev
from c360.events.v1 import sales_team_events_pb2 as tev
from c360.sales.v1 import sales_service_pb2 as api
from c360.sales.v1.sales_service_pb2_grpc import SalesServiceStub
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360.timeline.v1.timeline_service_pb2_grpc import TimelineServiceStub
from c360_cli.argtypes import DAY_HELP, day, whole_in
from c360_cli.client import Client
from c360_cli.commands import Api, Arg, Command, Subparsers, add_commands
from c360_cli.output import CsvWriter, JSONValue, Output, parse_time, short_time
from c360_cli.words import CliWords
from c360_platform.vocabulary import Words

SALES = "sales"
CHANNELS = CliWords(Words(lev.LeadChannel))
LEAD_STATES = CliWords(Words(lev.LeadState))
REASONS = CliWords(Words(lev.DisqualifyReason))
RULES = CliWords(Words(lev.AssignmentRule))
FORECAST = CliWords(Words(oev.ForecastCategory))
OPPORTUNITY_STATES = CliWords(Words(oev.OpportunityState))
LOST_STATUSES = CliWords(Words(oev.LostStatus))
SETTABLE_CATEGORIES = ", ".join(w for w in FORECAST.words if w not in ("won", "lost"))
"""The forecast categories an agent sets (won and lost come with winning and losing)."""
QUOTE_STATES = CliWords(Words(qev.QuoteState))
ORDER_STATES = CliWords(Words(ordev.OrderState))
SCOPES = CliWords(Words(prev.PriceScope))
COMPUTATIONS = CliWords(Words(prev.PriceComputation))
BASES = CliWords(Words(prev.PriceBase))
ACTIVITY_KINDS = CliWords(Words(aev.ActivityKind))
ACTIVITY_STATES = CliWords(Words(aev.ActivityState))


def _api(subject: str) -> Api:
    return Api(SALES, SalesServiceStub, subject, whole_in(0, 2**63 - 1))


LEAD, OPPORTUNITY, QUOTE, ORDER = _api("lead"), _api("opportunity"), _api("quote"), _api("order")
PRODUCT, PRICE_LIST = _api("product"), _api("price_list")
ACTIVITY = _api("activity")


class Flag(Arg):
    """An option without a value that sets a bool field."""

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(self.name, action="store_true", help=self.help)

    def value(self, args: argparse.Namespace) -> Any:
        return True if getattr(args, self.dest) else None


def _id(field: str, what: str) -> Arg:
    return Arg(field, field, f"the {what}'s id", metavar="ID")


CURRENCY = "currency (ISO 4217, e.g. EUR)"

LEAD_COMMANDS = (
    Command(
        "capture",
        "capture a lead from any channel",
        LEAD,
        "CaptureLead",
        api.CaptureLeadRequest,
        (
            Arg("--channel", "channel", ", ".join(CHANNELS.words), required=True, words=CHANNELS),
            Arg("--campaign", "campaign_id", "the campaign's id (channel campaign)", metavar="ID"),
            Arg("--source", "source", "where exactly it came from"),
            Arg("--customer", "customer_id", "a known customer's id", metavar="ID"),
            Arg("--person", "person_name", "the person's name"),
            Arg("--company", "company_name", "the company's name"),
            Arg("--email", "email", "e-mail address"),
            Arg("--phone", "phone", "phone number"),
            Arg(
                "--default-region",
                "default_region",
                "country (e.g. DE) of a number written without +country code",
                metavar="CC",
            ),
            Arg("--position", "position", "the person's position"),
            Arg("--industry", "industry", "the industry"),
            Arg("--territory", "territory", "region or territory"),
            Arg("--product", "interest_products", "a product of interest", repeated=True),
            Arg("--value", "estimated_value.amount", "estimated value", metavar="AMOUNT"),
            Arg("--currency", "estimated_value.currency", CURRENCY, metavar="CODE"),
            Arg("--description", "description", "what they asked for"),
            Arg("--team", "team", "the sales team it is for"),
        ),
        verb="lead captured",
    ),
    Command(
        "assign",
        "give a lead to an agent, or let a team's rule choose",
        LEAD,
        "AssignLead",
        api.AssignLeadRequest,
        (
            _id("lead_id", "lead"),
            Arg("--agent", "agent_id", "the agent's employee id", metavar="EMPLOYEE_ID"),
            Arg("--rule", "rule", ", ".join(RULES.words), words=RULES),
            Arg("--team", "team", "the team whose rule applies (default: the lead's)"),
        ),
        verb="lead assigned",
        shows=("agent_id",),
        expected_version=True,
    ),
    Command(
        "qualify",
        "mark a new lead qualified",
        LEAD,
        "QualifyLead",
        api.QualifyLeadRequest,
        (_id("lead_id", "lead"), Arg("--note", "note", "why")),
        verb="lead qualified",
        expected_version=True,
    ),
    Command(
        "convert",
        "convert a qualified lead: a customer and an opportunity",
        LEAD,
        "ConvertLead",
        api.ConvertLeadRequest,
        (
            _id("lead_id", "lead"),
            Arg("--customer", "customer_id", "an existing customer's id", metavar="ID"),
            Flag("--register", "register_customer", "register a new customer from the lead"),
            Arg("--pipeline", "pipeline_id", "the pipeline (name or id)", required=True),
            Arg("--name", "opportunity_name", "the opportunity's name"),
            Arg("--amount", "amount.amount", "the deal's amount", metavar="AMOUNT"),
            Arg("--currency", "amount.currency", CURRENCY, metavar="CODE"),
            Arg(
                "--close", "expected_close", f"expected close: {DAY_HELP}", metavar="DAY", type=day
            ),
            Arg("--owner", "owner_id", "the owner (default: the lead's agent)", metavar="ID"),
        ),
        verb="lead converted",
        shows=("customer_id", "opportunity_id", "contact_person_id"),
        expected_version=True,
    ),
    Command(
        "disqualify",
        "give a lead up, with the reason",
        LEAD,
        "DisqualifyLead",
        api.DisqualifyLeadRequest,
        (
            _id("lead_id", "lead"),
            Arg("--reason", "reason", ", ".join(REASONS.words), required=True, words=REASONS),
            Arg("--note", "note", "details"),
            Arg("--competitor", "competitor", "who won it"),
        ),
        verb="lead disqualified",
        expected_version=True,
    ),
    Command(
        "reopen",
        "make a disqualified lead new again",
        LEAD,
        "ReopenLead",
        api.ReopenLeadRequest,
        (_id("lead_id", "lead"), Arg("--reason", "reason", "why")),
        verb="lead reopened",
        expected_version=True,
    ),
    Command(
        "forget",
        "erase a prospect's lead on request (GDPR): its key is deleted, its personal data"
        " unreadable everywhere; a customer's lead goes with the customer (operators only)",
        LEAD,
        "ForgetLead",
        api.ForgetLeadRequest,
        (_id("lead_id", "lead"),),
        verb="lead forgotten",
    ),
)

OPPORTUNITY_COMMANDS = (
    Command(
        "open",
        "open an opportunity for a customer",
        OPPORTUNITY,
        "OpenOpportunity",
        api.OpenOpportunityRequest,
        (
            Arg("--customer", "customer_id", "the customer's id", metavar="ID", required=True),
            Arg("--name", "name", "what the deal is", required=True),
            Arg("--pipeline", "pipeline", "the pipeline (name or id)", required=True),
            Arg("--stage", "stage", "the stage (default: the first open one)"),
            Arg("--owner", "owner_id", "the owner's employee id", metavar="EMPLOYEE_ID"),
            Arg("--amount", "amount.amount", "the deal's amount", metavar="AMOUNT", required=True),
            Arg("--currency", "amount.currency", CURRENCY, metavar="CODE", required=True),
            Arg(
                "--close", "expected_close", f"expected close: {DAY_HELP}", metavar="DAY", type=day
            ),
            Arg("--probability", "probability", "percent, set by hand", type=whole_in(0, 100)),
            Arg("--category", "forecast_category", SETTABLE_CATEGORIES, words=FORECAST),
            Arg("--competitor", "competitor", "the competitor"),
            Arg("--territory", "territory", "the territory"),
            Arg("--partner", "partner", "the partner or dealer"),
        ),
        verb="opportunity opened",
    ),
    Command(
        "move",
        "move an opportunity to another stage",
        OPPORTUNITY,
        "MoveOpportunityStage",
        api.MoveOpportunityStageRequest,
        (_id("opportunity_id", "opportunity"), Arg("stage", "stage", "the stage's key")),
        verb="stage moved",
        expected_version=True,
    ),
    Command(
        "update",
        "change an opportunity's amount, close date, probability, category, ...",
        OPPORTUNITY,
        "UpdateOpportunity",
        api.UpdateOpportunityRequest,
        (
            _id("opportunity_id", "opportunity"),
            Arg("--amount", "amount.amount", "the deal's amount", metavar="AMOUNT"),
            Arg("--currency", "amount.currency", CURRENCY, metavar="CODE"),
            Arg(
                "--close", "expected_close", f"expected close: {DAY_HELP}", metavar="DAY", type=day
            ),
            Arg("--probability", "probability", "percent, set by hand", type=whole_in(0, 100)),
            Arg("--category", "forecast_category", SETTABLE_CATEGORIES, words=FORECAST),
            Arg("--competitor", "competitor", "the competitor"),
            Arg("--territory", "territory", "the territory"),
            Arg("--partner", "partner", "the partner or dealer"),
            Arg("--owner", "owner_id", "the owner's employee id", metavar="EMPLOYEE_ID"),
        ),
        verb="opportunity updated",
        expected_version=True,
    ),
    Command(
        "win",
        "close an opportunity as won",
        OPPORTUNITY,
        "WinOpportunity",
        api.WinOpportunityRequest,
        (
            _id("opportunity_id", "opportunity"),
            Arg("--amount", "actual_amount", "the actual amount", metavar="AMOUNT"),
            Arg(
                "--closed-on",
                "closed_on",
                "the day it was won (default today, UTC): YYYY-MM-DD, -3 (days ago)",
                metavar="DAY",
                type=day,
            ),
        ),
        verb="opportunity won",
        expected_version=True,
    ),
    Command(
        "lose",
        "close an opportunity as lost",
        OPPORTUNITY,
        "LoseOpportunity",
        api.LoseOpportunityRequest,
        (
            _id("opportunity_id", "opportunity"),
            Arg("--reason", "reason", "why", required=True),
            Arg("--competitor", "competitor", "who won it"),
            Arg(
                "--status",
                "status",
                "canceled or out-sold (default: out-sold when --competitor is given)",
                words=LOST_STATUSES,
            ),
            Arg(
                "--closed-on",
                "closed_on",
                "the day it was lost (default today, UTC): YYYY-MM-DD, -3 (days ago)",
                metavar="DAY",
                type=day,
            ),
        ),
        verb="opportunity lost",
        expected_version=True,
    ),
    Command(
        "reopen",
        "open a won or lost opportunity again",
        OPPORTUNITY,
        "ReopenOpportunity",
        api.ReopenOpportunityRequest,
        (
            _id("opportunity_id", "opportunity"),
            Arg("--stage", "stage", "the stage (default: the first open one)"),
            Arg("--reason", "reason", "why"),
        ),
        verb="opportunity reopened",
        expected_version=True,
    ),
    Command(
        "hold",
        "put an open opportunity on hold, with the reason",
        OPPORTUNITY,
        "HoldOpportunity",
        api.HoldOpportunityRequest,
        (
            _id("opportunity_id", "opportunity"),
            Arg("--reason", "reason", "why it waits", required=True),
        ),
        verb="opportunity on hold",
        expected_version=True,
    ),
    Command(
        "resume",
        "put an opportunity on hold in progress again",
        OPPORTUNITY,
        "ResumeOpportunity",
        api.ResumeOpportunityRequest,
        (_id("opportunity_id", "opportunity"),),
        verb="opportunity resumed",
        expected_version=True,
    ),
)

PRODUCT_COMMANDS = (
    Command(
        "define",
        "add a product to the catalogue or change it",
        PRODUCT,
        "DefineProduct",
        api.DefineProductRequest,
        (
            Arg("sku", "sku", "the SKU", metavar="SKU"),
            Arg("--name", "name", "its name", required=True),
            Arg("--category", "category", "its category (default general)"),
            Arg("--unit", "unit", "unit of measure (default unit)"),
            Arg("--price", "list_price.amount", "list price", metavar="AMOUNT", required=True),
            Arg("--currency", "list_price.currency", CURRENCY, metavar="CODE", required=True),
            Arg("--cost", "cost", "unit cost (for margins)", metavar="AMOUNT"),
        ),
        verb="product defined",
    ),
)

QUOTE_COMMANDS = (
    Command(
        "draft",
        "start a quote for an opportunity from a price list",
        QUOTE,
        "DraftQuote",
        api.DraftQuoteRequest,
        (
            Arg(
                "--opportunity",
                "opportunity_id",
                "the opportunity's id",
                metavar="ID",
                required=True,
            ),
            Arg("--pricelist", "price_list", "the price list (name or id)", required=True),
            Arg("--valid-until", "valid_until", f"validity: {DAY_HELP}", metavar="DAY", type=day),
            Arg("--revises", "revises_quote_id", "the quote this one revises", metavar="ID"),
        ),
        verb="quote drafted",
    ),
    Command(
        "add",
        "add a product line, priced from the quote's price list now",
        QUOTE,
        "AddQuoteLine",
        api.AddQuoteLineRequest,
        (
            _id("quote_id", "quote"),
            Arg("--product", "product", "SKU or product id", required=True),
            Arg("--qty", "quantity", "quantity", metavar="N", required=True),
            Arg("--discount", "discount_percent", "extra line discount, percent", metavar="PCT"),
            Arg("--tax", "tax_rate", "tax rate, percent", metavar="PCT"),
            Arg("--description", "description", "the line's text (default: the product's name)"),
        ),
        verb="line added",
        shows=("line_id",),
        expected_version=True,
    ),
    Command(
        "remove",
        "take a line off a draft quote",
        QUOTE,
        "RemoveQuoteLine",
        api.RemoveQuoteLineRequest,
        (_id("quote_id", "quote"), Arg("line_id", "line_id", "the line's id", metavar="LINE")),
        verb="line removed",
        expected_version=True,
    ),
    Command(
        "send",
        "send a draft quote to the customer",
        QUOTE,
        "SendQuote",
        api.SendQuoteRequest,
        (_id("quote_id", "quote"),),
        verb="quote sent",
        expected_version=True,
    ),
    Command(
        "accept",
        "record the customer's yes: an order is placed (and confirmed for ERP)",
        QUOTE,
        "AcceptQuote",
        api.AcceptQuoteRequest,
        (
            _id("quote_id", "quote"),
            Flag("--hold", "hold", "leave the order planned (confirm it later)"),
        ),
        verb="quote accepted",
        shows=("order_id",),
        expected_version=True,
    ),
    Command(
        "decline",
        "record the customer's no",
        QUOTE,
        "DeclineQuote",
        api.DeclineQuoteRequest,
        (_id("quote_id", "quote"), Arg("--reason", "reason", "why")),
        verb="quote declined",
        expected_version=True,
    ),
    Command(
        "cancel",
        "withdraw a draft or sent quote",
        QUOTE,
        "CancelQuote",
        api.CancelQuoteRequest,
        (_id("quote_id", "quote"), Arg("--reason", "reason", "why")),
        verb="quote cancelled",
        expected_version=True,
    ),
)

ORDER_COMMANDS = (
    Command(
        "confirm",
        "confirm a planned order: it is published for ERP",
        ORDER,
        "ConfirmOrder",
        api.ConfirmOrderRequest,
        (_id("order_id", "order"),),
        verb="order confirmed",
        expected_version=True,
    ),
    Command(
        "unrealise",
        "mark an order cancelled or lapsed",
        ORDER,
        "UnrealiseOrder",
        api.UnrealiseOrderRequest,
        (_id("order_id", "order"), Arg("--reason", "reason", "why", required=True)),
        verb="order unrealised",
        expected_version=True,
    ),
)


ACTIVITY_COMMANDS = (
    Command(
        "schedule",
        "plan a call, meeting, e-mail or task",
        ACTIVITY,
        "ScheduleActivity",
        api.ScheduleActivityRequest,
        (
            Arg(
                "--kind",
                "kind",
                ", ".join(ACTIVITY_KINDS.words),
                required=True,
                words=ACTIVITY_KINDS,
            ),
            Arg("--subject", "subject", "what it is about", required=True),
            Arg("--due", "due_at", "due time (ISO-8601)", metavar="TIME", type=parse_time),
            Arg("--agent", "agent_id", "the agent's employee id", metavar="EMPLOYEE_ID"),
            Arg("--customer", "customer_id", "the customer's id", metavar="ID"),
            Arg("--lead", "lead_id", "the lead's id", metavar="ID"),
            Arg("--opportunity", "opportunity_id", "the opportunity's id", metavar="ID"),
            Arg("--notes", "notes", "details"),
        ),
        verb="activity scheduled",
    ),
    Command(
        "reschedule",
        "move an activity's due time or give it to another agent",
        ACTIVITY,
        "RescheduleActivity",
        api.RescheduleActivityRequest,
        (
            _id("activity_id", "activity"),
            Arg("--due", "due_at", "new due time (ISO-8601)", metavar="TIME", type=parse_time),
            Arg("--agent", "agent_id", "new agent", metavar="EMPLOYEE_ID"),
        ),
        verb="activity rescheduled",
        expected_version=True,
    ),
    Command(
        "done",
        "record that an activity was done, and how it went",
        ACTIVITY,
        "CompleteActivity",
        api.CompleteActivityRequest,
        (_id("activity_id", "activity"), Arg("--outcome", "outcome", "how it went")),
        verb="activity done",
        expected_version=True,
    ),
    Command(
        "cancel",
        "drop an open activity",
        ACTIVITY,
        "CancelActivity",
        api.CancelActivityRequest,
        (_id("activity_id", "activity"), Arg("--reason", "reason", "why")),
        verb="activity cancelled",
        expected_version=True,
    ),
)


# -- JSON and rows ------------------------------------------------------------------------------


def as_json(message: Message) -> dict[str, JSONValue]:
    """A message as JSON with proto field names; enum names shortened to their words (an
    unset enum, its zero value, as "")."""
    doc: dict[str, JSONValue] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return {k: _words(v) for k, v in doc.items()}


_ENUMS = [
    CHANNELS,
    LEAD_STATES,
    REASONS,
    RULES,
    FORECAST,
    OPPORTUNITY_STATES,
    LOST_STATUSES,
    QUOTE_STATES,
    ORDER_STATES,
    SCOPES,
    COMPUTATIONS,
    BASES,
    ACTIVITY_KINDS,
    ACTIVITY_STATES,
]


def _words(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _words(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_words(v) for v in value]
    if isinstance(value, str) and value.isupper() and "_" in value:
        for words in _ENUMS:
            found = words.vocabulary.of_name(value)
            if found:
                return found.replace("_", "-")
            if value in words.vocabulary.descriptor.values_by_name:
                return ""  # the zero value: not set
    return value


def _money(m: Any) -> str:
    return f"{m.amount} {m.currency}".strip() if m.currency else ""


def _stub(client: Client) -> Any:
    return client.stub(SALES, SalesServiceStub)


def _call(args: argparse.Namespace, method: str, request: Message) -> Any:
    with Client(args) as client:
        return getattr(_stub(client), method)(request, timeout=args.timeout)


def _show_message(
    args: argparse.Namespace, title: str, message: Message, skip: tuple[str, ...] = ()
) -> None:
    out = Output(args.json)
    doc = as_json(message)
    if out.json_mode:
        out.json(doc)
        return
    rows = [
        (k.replace("_", " "), _amount(v))
        for k, v in doc.items()
        if k not in skip and v not in ("", [], {}, None)
    ]
    out.kv_panel(title, rows)


def _amount(value: Any) -> Any:
    """A money field ({"currency", "amount"}) as "5000 EUR"; anything else as it is."""
    if isinstance(value, dict) and set(value) == {"currency", "amount"}:
        return f"{value['amount']} {value['currency']}"
    return value


# -- reads --------------------------------------------------------------------------------------


def _lead_show(args: argparse.Namespace) -> int:
    lead = _call(args, "GetLead", api.GetLeadRequest(lead_id=args.lead_id)).lead
    _show_message(args, f"lead {lead.company_name or lead.person_name}", lead)
    return 0


def _lead_matches(args: argparse.Namespace) -> int:
    reply = _call(args, "FindLeadCustomers", api.FindLeadCustomersRequest(lead_id=args.lead_id))
    out = Output(args.json)
    if out.json_mode:
        out.json(as_json(reply))
        return 0
    out.table(
        ["customer", "name", "kind", "matched on"],
        [[m.customer_id, m.display_name, m.kind, _matched_on(m)] for m in reply.matches],
        title=(
            "convert with: c360 lead convert LEAD --customer ID --pipeline P"
            if reply.matches
            else "no customer it may be: c360 lead convert LEAD --register --pipeline P"
        ),
    )
    return 0


def _matched_on(m: api.LeadCustomerMatch) -> str:
    """ "email, name", or for the organisation of a matched person "contact person (their
    role)"."""
    words = [
        f"{w} ({m.contact_role})" if w == "contact person" and m.contact_role else w
        for w in m.matched_on
    ]
    return ", ".join(words)


def _lead_list(args: argparse.Namespace) -> int:
    request = api.ListLeadsRequest(
        state=LEAD_STATES.value_or_zero(args.state or ""),
        agent_id=args.agent,
        channel=CHANNELS.value_or_zero(args.channel or ""),
        campaign_id=args.campaign,
        territory=args.territory,
        page_size=args.limit,
        page_token=args.page_token,
    )
    reply = _call(args, "ListLeads", request)
    out = Output(args.json)
    if out.json_mode:
        out.json(
            {"leads": [as_json(x) for x in reply.leads], "next_page_token": reply.next_page_token}
        )
        return 0
    out.table(
        ["id", "captured", "state", "channel", "name", "agent"],
        [
            [
                x.lead_id,
                short_time(x.captured_at.ToJsonString()),
                LEAD_STATES.word(x.state),
                CHANNELS.word(x.channel),
                x.company_name or x.person_name,
                x.agent_id,
            ]
            for x in reply.leads
        ],
        caption=f"more: --page-token {reply.next_page_token}" if reply.next_page_token else None,
    )
    return 0


def _on_hold(part: dict[str, Any]) -> int:
    """How many of the profile's open opportunities are on hold."""
    return sum(1 for o in part.get("opportunities", {}).values() if o.get("on_hold"))


def _lost(o: Any) -> str:
    """ "out-sold: price" (the status and the reason of a lost opportunity)."""
    status = LOST_STATUSES.word(o.lost_status) if o.lost_status else ""
    return ": ".join(x for x in (status, o.lost_reason) if x)


def _sources(o: Any) -> tuple[tuple[str, str], ...]:
    """Where an opportunity came from: its lead and that lead's campaign."""
    return (("lead", o.lead_id), ("campaign", o.campaign_id))


def _opportunity_state(o: Any) -> str:
    """open, won or lost; "on hold" for an open one on hold (with the reason in `show`)."""
    return "on hold" if o.on_hold else OPPORTUNITY_STATES.word(o.state)


def _opportunity_show(args: argparse.Namespace) -> int:
    o = _call(
        args, "GetOpportunity", api.GetOpportunityRequest(opportunity_id=args.opportunity_id)
    ).opportunity
    out = Output(args.json)
    if out.json_mode:
        out.json(as_json(o))
        return 0
    rows: list[tuple[str, Any]] = [
        ("id", o.opportunity_id),
        ("customer", o.customer_id),
        ("state", _opportunity_state(o)),
        ("stage", o.stage),
        ("owner", o.owner_id),
        ("amount", _money(o.amount)),
        ("probability", f"{o.probability}%{' (by hand)' if o.manual_probability else ''}"),
        ("weighted", o.weighted_amount),
        ("forecast", FORECAST.word(o.forecast_category)),
        ("expected close", o.expected_close),
        ("on hold", o.hold_reason),
        ("closed", " ".join(x for x in (o.closed_on, _money(o.actual_amount), _lost(o)) if x)),
        ("competitor / partner", " / ".join(x for x in (o.competitor, o.partner) if x)),
        ("territory", o.territory),
        ("from", " / ".join(f"{k} {v}" for k, v in _sources(o) if v)),
        ("cycle", f"{o.cycle_seconds / 86400:.1f} days"),
        ("stages", [f"{v.stage}: {v.seconds / 86400:.1f} d" for v in o.stage_history]),
        ("version", o.version),
    ]
    out.kv_panel(o.name, rows)
    return 0


def _opportunity_list(args: argparse.Namespace) -> int:
    request = api.ListOpportunitiesRequest(
        state=OPPORTUNITY_STATES.value_or_zero(args.state or ""),
        owner_id=args.owner,
        customer_id=args.customer,
        page_size=args.limit,
        page_token=args.page_token,
    )
    reply = _call(args, "ListOpportunities", request)
    out = Output(args.json)
    if out.json_mode:
        out.json(
            {
                "opportunities": [as_json(x) for x in reply.opportunities],
                "next_page_token": reply.next_page_token,
            }
        )
        return 0
    out.table(
        ["id", "name", "state", "stage", "amount", "%", "owner"],
        [
            [
                o.opportunity_id,
                o.name,
                _opportunity_state(o),
                o.stage,
                _money(o.amount),
                o.probability,
                o.owner_id,
            ]
            for o in reply.opportunities
        ],
        caption=f"more: --page-token {reply.next_page_token}" if reply.next_page_token else None,
    )
    return 0


def _quote_show(args: argparse.Namespace) -> int:
    q = _call(args, "GetQuote", api.GetQuoteRequest(quote_id=args.quote_id)).quote
    out = Output(args.json)
    if out.json_mode:
        out.json(as_json(q))
        return 0
    out.kv_panel(
        f"quote rev. {q.revision} ({QUOTE_STATES.word(q.state)})",
        [
            ("id", q.quote_id),
            ("customer", q.customer_id),
            ("opportunity", q.opportunity_id),
            ("valid until", q.valid_until),
            (
                "net / tax / gross",
                f"{q.net_total.amount} / {q.tax_total.amount} / {_money(q.gross_total)}",
            ),
            ("order", q.order_id),
        ],
    )
    out.table(
        ["line", "sku", "qty", "unit price", "rule", "disc %", "tax %", "net"],
        [
            [
                x.line_id,
                x.sku,
                x.quantity,
                x.unit_price,
                x.rule_id,
                x.discount_percent,
                x.tax_rate,
                x.net_amount,
            ]
            for x in q.lines
        ],
    )
    return 0


def _quote_list(args: argparse.Namespace) -> int:
    request = api.ListQuotesRequest(
        state=QUOTE_STATES.value_or_zero(args.state or ""),
        customer_id=args.customer,
        opportunity_id=args.opportunity,
        page_size=args.limit,
        page_token=args.page_token,
    )
    reply = _call(args, "ListQuotes", request)
    out = Output(args.json)
    if out.json_mode:
        out.json(
            {"quotes": [as_json(x) for x in reply.quotes], "next_page_token": reply.next_page_token}
        )
        return 0
    out.table(
        ["id", "drafted", "state", "rev", "gross", "valid until"],
        [
            [
                q.quote_id,
                short_time(q.drafted_at.ToJsonString()),
                QUOTE_STATES.word(q.state),
                q.revision,
                _money(q.gross_total),
                q.valid_until,
            ]
            for q in reply.quotes
        ],
    )
    return 0


def _order_show(args: argparse.Namespace) -> int:
    o = _call(args, "GetOrder", api.GetOrderRequest(order_id=args.order_id)).order
    out = Output(args.json)
    if out.json_mode:
        out.json(as_json(o))
        return 0
    out.kv_panel(
        f"order {o.order_number} ({ORDER_STATES.word(o.state)})",
        [
            ("id", o.order_id),
            ("customer", o.customer_id),
            ("quote", o.quote_id),
            ("gross", _money(o.gross_total)),
            ("fulfilled on", o.fulfilled_on),
            ("invoiced", f"{_money(o.invoiced_total)} ({o.invoice_status})"),
            ("reason", o.reason),
        ],
    )
    out.table(
        ["line", "sku", "qty", "delivered", "unit price", "net"],
        [
            [x.line_id, x.sku, x.quantity, x.fulfilled_quantity, x.unit_price, x.net_amount]
            for x in o.lines
        ],
    )
    if o.invoices:
        out.table(
            ["invoice", "issued", "amount"],
            [[i.invoice_number, i.issue_date, _money(i.amount)] for i in o.invoices],
        )
    return 0


_INVOICED = {
    "invoiced": "all",
    "partly invoiced": "partly",
    "nothing invoiced": "none",
    "not to invoice": "-",
}
"""An order's invoice status in the list's narrow column."""


def _order_list(args: argparse.Namespace) -> int:
    request = api.ListOrdersRequest(
        state=ORDER_STATES.value_or_zero(args.state or ""),
        customer_id=args.customer,
        page_size=args.limit,
        page_token=args.page_token,
    )
    reply = _call(args, "ListOrders", request)
    out = Output(args.json)
    if out.json_mode:
        out.json(
            {"orders": [as_json(x) for x in reply.orders], "next_page_token": reply.next_page_token}
        )
        return 0
    out.table(
        ["id", "number", "placed", "state", "gross", "invoiced"],
        [
            [
                o.order_id,
                o.order_number,
                short_time(o.placed_at.ToJsonString()),
                ORDER_STATES.word(o.state),
                _money(o.gross_total),
                _INVOICED.get(o.invoice_status, o.invoice_status),
            ]
            for o in reply.orders
        ],
    )
    return 0


def _product_list(args: argparse.Namespace) -> int:
    reply = _call(args, "ListProducts", api.ListProductsRequest(category=args.category))
    out = Output(args.json)
    if out.json_mode:
        out.json({"products": [as_json(p) for p in reply.products]})
        return 0
    out.table(
        ["sku", "name", "category", "unit", "list price", "cost", "active"],
        [
            [
                p.sku,
                p.name,
                p.category,
                p.unit,
                _money(p.list_price),
                p.cost.amount,
                "yes" if p.active else "no",
            ]
            for p in reply.products
        ],
    )
    return 0


def _parse_pairs(text: str, what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"{what}: {part!r} is not key=value")
        pairs[key.strip().replace("-", "_")] = value.strip()
    return pairs


RULE_KEYS = {
    "id": "rule_id",
    "scope": "scope",
    "target": "target",
    "min_qty": "min_quantity",
    "from": "valid_from",
    "to": "valid_to",
    "compute": "computation",
    "price": "fixed_price",
    "discount": "discount_percent",
    "base": "base",
    "base_list": "base_price_list_id",
    "round": "rounding",
    "surcharge": "surcharge",
    "min_margin": "min_margin",
    "max_margin": "max_margin",
}


def parse_rule(text: str) -> prev.PriceRule:
    """An argparse type: `scope=category,target=hardware,compute=formula,base=list-price,
    discount=10,round=1,surcharge=0.5,min-margin=20` (keys: see RULE_KEYS)."""
    fields: dict[str, Any] = {}
    for key, value in _parse_pairs(text, "rule").items():
        if key not in RULE_KEYS:
            raise argparse.ArgumentTypeError(
                f"rule: unknown key {key!r}; keys: {', '.join(RULE_KEYS)}"
            )
        name = RULE_KEYS[key]
        words = {"scope": SCOPES, "computation": COMPUTATIONS, "base": BASES}.get(name)
        fields[name] = words.value(words.parse(value)) if words else value
    return prev.PriceRule(**fields)


def parse_member(text: str) -> tev.TeamMember:
    """An argparse type: `emp-1` or `emp-1:ch-north+ch-east:20` (agent, territories, capacity)."""
    agent, _, rest = text.partition(":")
    territories, _, capacity = rest.partition(":")
    try:
        cap = int(capacity) if capacity else 0
    except ValueError:
        raise argparse.ArgumentTypeError(f"member: capacity {capacity!r} is not a number") from None
    return tev.TeamMember(
        agent_id=agent.strip(), territories=[t for t in territories.split("+") if t], capacity=cap
    )


def parse_stage(text: str) -> pev.PipelineStage:
    """An argparse type: `proposal:40` or `won:won` / `lost:lost` (key, probability or flag)."""
    key, _, rest = text.partition(":")
    if rest in ("won", "lost"):
        return pev.PipelineStage(key=key, name=key.replace("-", " ").title(), **{rest: True})
    try:
        probability = int(rest or "0")
    except ValueError:
        raise argparse.ArgumentTypeError(f"stage: {rest!r} is not a probability") from None
    return pev.PipelineStage(key=key, name=key.replace("-", " ").title(), probability=probability)


def _define_team(args: argparse.Namespace) -> int:
    request = api.DefineSalesTeamRequest(
        request_id=args.request_id, name=args.name, members=args.member
    )
    reply = _call(args, "DefineSalesTeam", request)
    Output(args.json).result("team defined", reply.result, "team")
    return 0


def _define_pipeline(args: argparse.Namespace) -> int:
    request = api.DefinePipelineRequest(
        request_id=args.request_id, name=args.name, team=args.team, stages=args.stage
    )
    reply = _call(args, "DefinePipeline", request)
    Output(args.json).result("pipeline defined", reply.result, "pipeline")
    return 0


def _pipelines(args: argparse.Namespace) -> int:
    reply = _call(args, "ListPipelines", api.ListPipelinesRequest())
    out = Output(args.json)
    if out.json_mode:
        out.json({"pipelines": [as_json(p) for p in reply.pipelines]})
        return 0
    out.table(
        ["pipeline", "team", "stages"],
        [
            [
                p.name,
                p.team,
                " > ".join(
                    f"{s.key} ({'won' if s.won else 'lost' if s.lost else f'{s.probability}%'})"
                    for s in p.stages
                ),
            ]
            for p in reply.pipelines
        ],
    )
    return 0


def _define_price_list(args: argparse.Namespace) -> int:
    request = api.DefinePriceListRequest(
        request_id=args.request_id, name=args.name, currency=args.currency, rules=args.rule
    )
    reply = _call(args, "DefinePriceList", request)
    Output(args.json).result("price list defined", reply.result, "price_list")
    return 0


def _show_price_list(args: argparse.Namespace) -> int:
    request = api.GetPriceListRequest(
        price_list=args.name, on=args.on or "", quantity=args.qty or "", as_of=args.as_of
    )
    reply = _call(args, "GetPriceList", request)
    out = Output(args.json)
    if args.csv:
        writer = CsvWriter(sys.stdout)
        writer.writerow(
            ["sku", "name", "category", "list_price", "unit_price", "currency", "rule", "note"]
        )
        for p in reply.prices:
            writer.writerow(
                [
                    p.sku,
                    p.name,
                    p.category,
                    p.list_price,
                    p.unit_price,
                    reply.currency,
                    p.rule_id,
                    p.pricing_note or p.error,
                ]
            )
        return 0
    if out.json_mode:
        out.json(as_json(reply))
        return 0
    when = f" as of {short_time(reply_time(request))}" if args.as_of else ""
    out.table(
        ["sku", "name", "list price", "price", "rule", "how"],
        [
            [p.sku, p.name, p.list_price, p.unit_price or "-", p.rule_id, p.pricing_note or p.error]
            for p in reply.prices
        ],
        title=f"price list {reply.name} ({reply.currency}, version {reply.version}){when}",
    )
    return 0


def reply_time(request: api.GetPriceListRequest) -> str:
    return str(request.as_of.ToJsonString())


def _pipeline(args: argparse.Namespace) -> int:
    request = api.GetPipelineRequest(
        group_by=args.by,
        pipeline=args.pipeline,
        owner_id=args.owner,
        territory=args.territory,
        as_of=args.as_of,
    )
    reply = _call(args, "GetPipeline", request)
    out = Output(args.json)
    if out.json_mode:
        out.json(as_json(reply))
        return 0
    first = ["pipeline", "stage"] if args.by == "stage" else [args.by]
    out.table(
        [*first, "open", "amount", "weighted", "cur"],
        [
            [
                *([r.pipeline, r.stage] if args.by == "stage" else [r.group]),
                r.count,
                r.amount,
                r.weighted_amount,
                r.currency,
            ]
            for r in reply.rows
        ],
        title=f"pipeline as of {short_time(reply.as_of.ToJsonString())}",
    )
    return 0


def _forecast(args: argparse.Namespace) -> int:
    request = api.GetForecastRequest(period=args.period, owner_id=args.owner, as_of=args.as_of)
    reply = _call(args, "GetForecast", request)
    out = Output(args.json)
    if out.json_mode:
        out.json(as_json(reply))
        return 0
    out.table(
        ["period", "category", "owner", "n", "amount", "weighted", "won", "cur"],
        [
            [
                r.period,
                FORECAST.word(r.forecast_category),
                r.owner_id,
                r.count,
                r.amount,
                r.weighted_amount,
                r.won_amount,
                r.currency,
            ]
            for r in reply.rows
        ],
        title=f"forecast by {args.period} as of {short_time(reply.as_of.ToJsonString())}",
    )
    return 0


def _activities(args: argparse.Namespace) -> int:
    request = api.ListActivitiesRequest(
        agent_id=args.agent,
        customer_id=args.customer,
        state=ACTIVITY_STATES.value_or_zero(args.state or ""),
        due=args.due or "",
        limit=args.limit,
    )
    reply = _call(args, "ListActivities", request)
    out = Output(args.json)
    if out.json_mode:
        out.json({"activities": [as_json(a) for a in reply.activities]})
        return 0
    out.table(
        ["id", "due (UTC)", "kind", "agent", "state", "subject"],
        [
            [
                a.activity_id,
                short_time(a.due_at.ToJsonString()) + (" !" if a.overdue else ""),
                ACTIVITY_KINDS.word(a.kind),
                a.agent_id,
                ACTIVITY_STATES.word(a.state),
                a.subject,
            ]
            for a in reply.activities
        ],
        caption="! overdue",
    )
    return 0


def _classes(args: argparse.Namespace) -> int:
    request = api.GetCustomerClassesRequest(customer_id=args.customer, as_of=args.as_of)
    reply = _call(args, "GetCustomerClasses", request)
    out = Output(args.json)
    if out.json_mode:
        out.json(as_json(reply))
        return 0
    out.table(
        ["customer", "class", "reason"],
        [[c.customer_id, k.name, k.reason] for c in reply.customers for k in c.classes],
        title=f"customer classes as of {short_time(reply.as_of.ToJsonString())}",
    )
    return 0


def _customer(args: argparse.Namespace) -> int:
    """The sales part of the customer's 360 profile (the timeline's), now or as of a time."""
    request = tapi.GetProfileRequest(customer_id=args.customer_id, as_of=args.as_of)
    with Client(args) as client:
        reply = client.stub("timeline", TimelineServiceStub).GetProfile(
            request, timeout=args.timeout
        )
    attributes = json_format.MessageToDict(reply.profile.attributes)
    part: dict[str, Any] = attributes.get("sales") or {}
    out = Output(args.json)
    if out.json_mode:
        out.json(part)
        return 0

    def money(values: dict[str, Any]) -> str:
        return ", ".join(f"{v} {c}" for c, v in sorted(values.items())) or "-"

    orders = part.get("orders", {})
    last = part.get("last_purchase") or {}
    rows: list[tuple[str, Any]] = [
        ("responsible", part.get("owner_id", "")),
        (
            "open opportunities",
            f"{int(part.get('open_opportunity_count', 0))}, weighted"
            f" {money(part.get('open_weighted', {}))}"
            + (f"; {held} on hold" if (held := _on_hold(part)) else ""),
        ),
        ("open quotes", len(part.get("quotes", {}))),
        (
            "orders",
            ", ".join(f"{k} {int(v)}" for k, v in sorted(part.get("orders_by_state", {}).items()))
            or "-",
        ),
        ("lifetime value", money(part.get("lifetime_value", {}))),
        (
            "last purchase",
            f"{last.get('order_number', '')} on {last.get('on', '')}:"
            f" {last.get('amount', '')} {last.get('currency', '')}"
            if last
            else "-",
        ),
        ("products bought", ", ".join(part.get("products_bought", [])) or "-"),
        (
            "classes",
            [f"{k}: {v}" for k, v in sorted(part.get("classes", {}).items())] or "-",
        ),
        (
            "open activities",
            [
                f"{a.get('due_at', '')[:16]} {a.get('kind', '')} {a.get('agent_id', '')}:"
                f" {a.get('subject', '')}"
                for a in part.get("open_activities", {}).values()
            ]
            or "-",
        ),
        ("orders (all)", [f"{o['order_number']} {o['state']}" for o in orders.values()] or "-"),
    ]
    title = f"sales: {reply.profile.display_name or args.customer_id}"
    if args.as_of:
        title += f" (as of {short_time(args.as_of.ToJsonString())})"
    out.kv_panel(title, rows)
    return 0


def _report(args: argparse.Namespace) -> int:
    request = api.GetSalesReportRequest(reports=args.reports, period=args.period)
    reply = _call(args, "GetSalesReport", request)
    out = Output(args.json)
    if args.csv:
        writer = CsvWriter(sys.stdout)
        for t in reply.tables:
            writer.writerow(["report", *t.columns])
            for row in t.rows:
                writer.writerow([t.name, *row.cells])
        return 0
    if out.json_mode:
        out.json(
            {
                t.name: [dict(zip(t.columns, row.cells, strict=True)) for row in t.rows]
                for t in reply.tables
            }
        )
        return 0
    for t in reply.tables:
        out.table(list(t.columns), [list(row.cells) for row in t.rows], title=t.name)
    return 0


# -- the command tree ---------------------------------------------------------------------------


def _group(subparsers: Subparsers, name: str, help_text: str) -> Subparsers:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    sub = parser.add_subparsers(title="commands", dest=f"{name}_command", metavar="COMMAND")
    sub.required = True
    return sub


def _paging(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=whole_in(1, 200), default=50, metavar="N", help="page size")
    p.add_argument("--page-token", default="", metavar="TOKEN", help="next_page_token of a page")


def _read(
    sub: Subparsers, name: str, help_text: str, func: Any, *ids: str
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text)
    for field in ids:
        p.add_argument(field, metavar="ID", help=f"the {field.removesuffix('_id')}'s id")
    p.set_defaults(func=func)
    return p


def _request_id(p: argparse.ArgumentParser) -> None:
    p.add_argument("--request-id", default="", metavar="ID", help="idempotency key")


def register(subparsers: Subparsers) -> None:
    """Add the sales commands: lead, team, opportunity, product, pricelist, quote, order,
    pipeline, forecast."""
    sub = _group(subparsers, "lead", "capture, assign, qualify, convert and show leads")
    add_commands(sub, LEAD_COMMANDS, {})
    _read(sub, "show", "show a lead", _lead_show, "lead_id")
    _read(
        sub,
        "matches",
        "customers the lead may already be (by e-mail, phone, name)",
        _lead_matches,
        "lead_id",
    )
    p = _read(sub, "list", "list leads, newest first", _lead_list)
    p.add_argument("--state", type=LEAD_STATES.parse, help=", ".join(LEAD_STATES.words))
    p.add_argument("--agent", default="", metavar="EMPLOYEE_ID", help="only this agent's")
    p.add_argument("--channel", type=CHANNELS.parse, help="only from this channel")
    p.add_argument("--campaign", default="", metavar="ID", help="only this campaign's")
    p.add_argument("--territory", default="", help="only this territory's")
    _paging(p)

    sub = _group(subparsers, "team", "sales teams and their lead routing")
    p = sub.add_parser("define", help="set up a team or replace its members")
    p.add_argument("name", help="the team's name (lower-case)")
    p.add_argument(
        "--member",
        type=parse_member,
        action="append",
        default=[],
        required=True,
        metavar="AGENT[:TERR+TERR[:CAPACITY]]",
        help="a member (repeat)",
    )
    _request_id(p)
    p.set_defaults(func=_define_team)

    sub = _group(subparsers, "opportunity", "open, move, win, lose and show opportunities")
    add_commands(sub, OPPORTUNITY_COMMANDS, {})
    _read(
        sub,
        "show",
        "show an opportunity with its stage history",
        _opportunity_show,
        "opportunity_id",
    )
    p = _read(sub, "list", "list opportunities, newest first", _opportunity_list)
    p.add_argument(
        "--state", type=OPPORTUNITY_STATES.parse, help=", ".join(OPPORTUNITY_STATES.words)
    )
    p.add_argument("--owner", default="", metavar="EMPLOYEE_ID", help="only this owner's")
    p.add_argument("--customer", default="", metavar="ID", help="only this customer's")
    _paging(p)

    sub = _group(subparsers, "product", "the product catalogue")
    add_commands(sub, PRODUCT_COMMANDS, {})
    p = _read(sub, "list", "list the catalogue", _product_list)
    p.add_argument("--category", default="", help="only this category")

    sub = _group(subparsers, "pricelist", "price lists: rules and the price list document")
    p = sub.add_parser("define", help="set up a price list or replace its rules")
    p.add_argument("name", help="the list's name (lower-case)")
    p.add_argument("--currency", required=True, metavar="CODE", help=CURRENCY)
    p.add_argument(
        "--rule",
        type=parse_rule,
        action="append",
        default=[],
        metavar="KEY=VALUE,...",
        help=f"a rule (repeat); keys: {', '.join(RULE_KEYS)}",
    )
    _request_id(p)
    p.set_defaults(func=_define_price_list)
    p = sub.add_parser("show", help="every active product's price from a list")
    p.add_argument("name", help="the list (name or id)")
    p.add_argument("--on", metavar="YYYY-MM-DD", help="the day prices are for (default today)")
    p.add_argument("--qty", metavar="N", help="the quantity (default 1)")
    p.add_argument("--as-of", type=parse_time, metavar="TIME", help="the list as it stood then")
    p.add_argument("--csv", action="store_true", help="CSV on stdout")
    p.set_defaults(func=_show_price_list)

    sub = _group(subparsers, "quote", "draft, price, send and accept quotes")
    add_commands(sub, QUOTE_COMMANDS, {})
    _read(sub, "show", "show a quote with its lines", _quote_show, "quote_id")
    p = _read(sub, "list", "list quotes, newest first", _quote_list)
    p.add_argument("--state", type=QUOTE_STATES.parse, help=", ".join(QUOTE_STATES.words))
    p.add_argument("--customer", default="", metavar="ID", help="only this customer's")
    p.add_argument("--opportunity", default="", metavar="ID", help="only this opportunity's")
    _paging(p)

    sub = _group(subparsers, "order", "orders: confirm for ERP, follow, unrealise")
    add_commands(sub, ORDER_COMMANDS, {})
    _read(sub, "show", "show an order with its deliveries", _order_show, "order_id")
    p = _read(sub, "list", "list orders, newest first", _order_list)
    p.add_argument("--state", type=ORDER_STATES.parse, help=", ".join(ORDER_STATES.words))
    p.add_argument("--customer", default="", metavar="ID", help="only this customer's")
    _paging(p)

    p = subparsers.add_parser(
        "pipeline",
        help="open opportunities by stage, owner, territory or team (now or --as-of)",
        description="The pipeline: open opportunities summed by stage (or owner, territory,"
        " team), now or as they stood at a past time. `c360 pipeline define|list` manage"
        " pipelines.",
    )
    p.add_argument(
        "--by",
        choices=["stage", "owner", "territory", "team"],
        default="stage",
        help="how to group (default stage)",
    )
    p.add_argument("--pipeline", default="", help="only this pipeline")
    p.add_argument("--owner", default="", metavar="EMPLOYEE_ID", help="only this owner's")
    p.add_argument("--territory", default="", help="only this territory")
    p.add_argument("--as-of", type=parse_time, metavar="TIME", help="as it stood then")
    p.set_defaults(func=_pipeline)
    nested = p.add_subparsers(title="commands", dest="pipeline_command", metavar="COMMAND")
    q = nested.add_parser("define", help="set up a pipeline or replace its stages")
    q.add_argument("name", help="the pipeline's name (lower-case)")
    q.add_argument("--team", default="", help="the team it belongs to")
    q.add_argument(
        "--stage",
        type=parse_stage,
        action="append",
        default=[],
        required=True,
        metavar="KEY:PROBABILITY|won|lost",
        help="a stage, in order (repeat)",
    )
    _request_id(q)
    q.set_defaults(func=_define_pipeline)
    nested.add_parser("list", help="list pipelines and their stages").set_defaults(func=_pipelines)

    sub = _group(subparsers, "activity", "agents' calls, meetings, e-mails and tasks")
    add_commands(sub, ACTIVITY_COMMANDS, {})
    p = _read(sub, "list", "an agent's call list: activities by due time", _activities)
    p.add_argument("--agent", default="", metavar="EMPLOYEE_ID", help="only this agent's")
    p.add_argument("--customer", default="", metavar="ID", help="only this customer's")
    p.add_argument("--state", type=ACTIVITY_STATES.parse, help=", ".join(ACTIVITY_STATES.words))
    p.add_argument("--due", choices=["overdue", "upcoming"], help="open ones past or before due")
    p.add_argument("--limit", type=whole_in(1, 200), default=50, metavar="N", help="at most N")

    sub = _group(subparsers, "sales", "sales reports")
    p = sub.add_parser(
        "report",
        help="leads, conversion, owners, lost reasons, revenue (tables, --json, --csv)",
        description="Sales reports from the current state: leads per period by channel,"
        " industry, territory and position; conversion lead -> opportunity -> won; win rate,"
        " average deal and cycle time per owner; lost reasons; revenue per product and"
        " territory.",
    )
    p.add_argument(
        "reports",
        nargs="*",
        metavar="REPORT",
        help="leads, conversion, owners, lost, revenue (default: all)",
    )
    p.add_argument("--period", choices=["month", "quarter"], default="month", help="default month")
    p.add_argument("--csv", action="store_true", help="CSV on stdout (report, columns...)")
    p.set_defaults(func=_report)
    p = sub.add_parser(
        "customer",
        help="a customer's sales at a glance (the 360 profile's sales part)",
        description="Open deals and their weighted value, quotes, orders by state, lifetime"
        " value, last purchase, products bought, classes and open activities of a customer,"
        " from the timeline's 360 profile; now or as of a past time.",
    )
    p.add_argument("customer_id", metavar="ID", help="the customer's id")
    p.add_argument("--as-of", type=parse_time, metavar="TIME", help="as it stood then")
    p.set_defaults(func=_customer)
    p = sub.add_parser(
        "classes",
        help="customer classes: key, loyal, low-profit, trend alert, debtor (with reasons)",
        description="Classify customers from their sales history, each class with its reason;"
        " now or as of a past time.",
    )
    p.add_argument("--customer", default="", metavar="ID", help="only this customer")
    p.add_argument("--as-of", type=parse_time, metavar="TIME", help="as it stood then")
    p.set_defaults(func=_classes)

    p = subparsers.add_parser(
        "forecast",
        help="weighted forecast by period, category and owner (now or --as-of)",
        description="Amount, weighted amount (amount x probability) and won amount per period"
        " of the (expected) close, forecast category and owner; now or as of a past time.",
    )
    p.add_argument("--period", choices=["month", "quarter"], default="month", help="default month")
    p.add_argument("--owner", default="", metavar="EMPLOYEE_ID", help="only this owner's")
    p.add_argument("--as-of", type=parse_time, metavar="TIME", help="as it stood then")
    p.set_defaults(func=_forecast)
