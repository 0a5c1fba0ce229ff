"""`c360 contact ...` (contact-centre records: contacts that need no ticket) and `c360 contract
...` (service contracts with expiry), through the service-desk gRPC API."""

from __future__ import annotations

import argparse
from datetime import date, timedelta

from c360.service_desk.v1 import service_desk_service_pb2 as api
from c360.service_desk.v1.service_desk_service_pb2_grpc import ServiceDeskServiceStub
from c360_cli.argtypes import DAY_HELP, day, whole_in
from c360_cli.client import Client
from c360_cli.commands import PERIOD, Api, Arg, Command, Subparsers, add_commands
from c360_cli.output import JSONValue, Output
from c360_cli.words import (
    ALLOWANCE_UNITS,
    CONSUME_ON,
    CONTACT_DIRECTIONS,
    CONTACT_OUTCOMES,
    TICKET_CHANNELS,
)

CONTACTS = Api("service-desk", ServiceDeskServiceStub, "contact", whole_in(0, 2**63 - 1))
CONTRACTS = Api("service-desk", ServiceDeskServiceStub, "contract", whole_in(0, 2**63 - 1))

COMMANDS = (
    Command(
        "record",
        "record a contact that needs no ticket (IVR session, call, SMS, e-mail)",
        CONTACTS,
        "RecordContact",
        api.RecordContactRequest,
        (
            Arg("--customer", "customer_id", "the customer's id", metavar="ID", required=True),
            Arg(
                "--channel",
                "channel",
                ", ".join(TICKET_CHANNELS.words),
                required=True,
                words=TICKET_CHANNELS,
            ),
            Arg(
                "--direction",
                "direction",
                ", ".join(CONTACT_DIRECTIONS.words),
                default="inbound",
                words=CONTACT_DIRECTIONS,
            ),
            Arg(
                "--outcome",
                "outcome",
                ", ".join(CONTACT_OUTCOMES.words),
                required=True,
                words=CONTACT_OUTCOMES,
            ),
            Arg(
                "--duration",
                "duration_seconds",
                "length of a call or IVR session",
                metavar="SECONDS",
                default=0,
                type=whole_in(0, 86_400),
            ),
            Arg("--agent", "agent_id", "who handled it (employee id)", metavar="EMPLOYEE_ID"),
            Arg(
                "--ivr-step",
                "ivr_path",
                "an IVR menu option chosen, in order (repeat the option)",
                metavar="OPTION",
                repeated=True,
            ),
            Arg("--note", "note", "a short note on the matter", default=""),
            Arg("--request-id", "request_id", "idempotency key", metavar="ID", default=""),
        ),
        verb="contact recorded",
        request_id=False,
        description=(
            "Record a contact with a customer that needed no ticket. It shows on the customer's"
            " timeline and in the profile's contact history, and an inbound one counts as a"
            " support contact for the churn signal."
        ),
    ),
)


CONTRACT_COMMANDS = (
    Command(
        "create",
        "create a service contract for a customer",
        CONTRACTS,
        "CreateServiceContract",
        api.CreateServiceContractRequest,
        (
            Arg("--customer", "customer_id", "the customer's id", metavar="ID", required=True),
            Arg("--name", "name", "what the contract is called", required=True),
            Arg(
                "--service",
                "services",
                "a product or service it covers (repeat the option)",
                metavar="SERVICE",
                repeated=True,
            ),
            *PERIOD,
            Arg(
                "--warning-days",
                "warning_days",
                "days before the end the expiry warning is written (default 30)",
                metavar="DAYS",
                default=0,
                type=whole_in(0, 365),
            ),
            Arg(
                "--allowance",
                "allowance",
                "cases or hours per period (with --unit; default: unlimited)",
                metavar="N",
                default=0,
                type=whole_in(0, 100_000),
            ),
            Arg(
                "--unit",
                "allowance_unit",
                ", ".join(ALLOWANCE_UNITS.words),
                words=ALLOWANCE_UNITS,
            ),
            Arg(
                "--consume-on",
                "consume_on",
                f"{', '.join(CONSUME_ON.words)} (default: open; hours on resolution)",
                words=CONSUME_ON,
            ),
            Arg("--sla-policy", "sla_policy", "an SLA policy it grants (premium)", default=""),
            Arg("--value", "value_amount", "what a period is worth (1200.00)", default=""),
            Arg("--currency", "value_currency", "the value's currency (EUR)", default=""),
            Arg("--request-id", "request_id", "idempotency key", metavar="ID", default=""),
        ),
        verb="service contract created",
        request_id=False,
        description=(
            "Create a service contract. Tickets of the customer opened while it is valid are"
            " served under it until its allowance is used up (cases or hours per period, or"
            " unlimited), with the SLA policy it grants. An expiry warning is written on the"
            " customer's timeline --warning-days before its last day, with a renewal"
            " opportunity for the customer's owner in sales, and its expiry the day after."
        ),
    ),
    Command(
        "renew",
        "renew a contract for its next period",
        CONTRACTS,
        "RenewServiceContract",
        api.RenewServiceContractRequest,
        (
            Arg("contract_id", "contract_id", "the contract's id", metavar="ID"),
            Arg(
                "--ends",
                "ends_on",
                f"the new period's last day: {DAY_HELP}",
                metavar="DAY",
                required=True,
                type=day,
            ),
        ),
        verb="service contract renewed",
        expected_version=True,
        description=(
            "Renew a contract: its next period starts the day after its current end, with the"
            " allowance again; the contract keeps its history."
        ),
    ),
)


def register(subparsers: Subparsers) -> None:
    """Add `contact`, `contract` and their subcommands."""
    parser = subparsers.add_parser(
        "contract",
        help="service contracts: entitlements, expiry and renewal",
        description="Service contracts (the service-desk service's commands).",
    )
    sub = parser.add_subparsers(title="commands", dest="contract_command", metavar="COMMAND")
    sub.required = True
    add_commands(sub, CONTRACT_COMMANDS, {})
    p = sub.add_parser(
        "show",
        help="a contract today: its period, allowance used and left",
        description="Show a service contract as of today.",
    )
    p.add_argument("contract_id", metavar="ID", help="the contract's id")
    p.set_defaults(func=_show_contract)
    parser = subparsers.add_parser(
        "contact",
        help="record contact-centre contacts that need no ticket",
        description="Contact-centre records (the service-desk service's commands).",
    )
    sub = parser.add_subparsers(title="commands", dest="contact_command", metavar="COMMAND")
    sub.required = True
    add_commands(sub, COMMANDS, {})


def _show_contract(args: argparse.Namespace) -> int:
    with Client(args) as client:
        c = (
            client.stub("service-desk", ServiceDeskServiceStub)
            .GetServiceContract(
                api.GetServiceContractRequest(contract_id=args.contract_id), timeout=args.timeout
            )
            .contract
        )
    unit = ALLOWANCE_UNITS.word(c.allowance_unit)
    doc: dict[str, JSONValue] = {
        "contract_id": c.contract_id,
        "version": c.version,
        "customer_id": c.customer_id,
        "name": c.name,
        "services": list(c.services),
        "period": c.period,
        "starts_on": c.starts_on,
        "period_ends_on": c.period_ends_on or c.ends_on,
        "ends_on": c.ends_on,
        "state": c.state,
        "allowance_unit": unit,
        "allowance": c.allowance,
        "used": c.used,
        "remaining": c.remaining if c.HasField("remaining") else None,
        "consume_on": CONSUME_ON.word(c.consume_on),
        "sla_policy": c.sla_policy,
        "value": f"{c.value_amount} {c.value_currency}".strip(),
    }
    out = Output(args.json)
    if out.json_mode:
        out.json(doc)
        return 0
    left = allowance_text(unit, c.allowance, c.used, c.remaining)
    out.kv_panel(
        c.name,
        [
            ("id", c.contract_id),
            ("customer", c.customer_id),
            ("state", c.state),
            ("period", f"{c.period}: {c.starts_on} to {doc['period_ends_on']}"),
            ("renewed", _renewed(c.period, str(doc["period_ends_on"]), c.ends_on)),
            ("covers", list(c.services) or "all services"),
            ("allowance", left),
            ("consumed on", CONSUME_ON.word(c.consume_on)),
            ("SLA policy", c.sla_policy or "by priority"),
            ("value", doc["value"] or "-"),
            ("version", c.version),
        ],
    )
    return 0


def allowance_text(unit: str, allowance: int, used: int, remaining: int) -> str:
    """The period's allowance, what it used and what is left: '10 cases: 3 used, 7 left';
    a use beyond the allowance (tickets entitled while it lasted, consumed on resolution)
    shows as 'over by N'."""
    if unit == "unlimited":
        return f"unlimited: {used} {'case' if used == 1 else 'cases'} used" if used else "unlimited"
    if unit == "hours":
        total = allowance * 60
        text = f"{allowance} h: {used} min used, {remaining} min left"
    else:
        total = allowance
        text = f"{allowance} {'case' if allowance == 1 else 'cases'}: {used} used, {remaining} left"
    over = used - total
    return text + (
        f" (over by {over} {'min' if unit == 'hours' else 'cases' if over > 1 else 'case'})"
        if over > 0
        else ""
    )


def _renewed(period: int, period_ends_on: str, ends_on: str) -> str:
    """The periods after today's, if the contract was renewed beyond it ("-" if not)."""
    if ends_on <= period_ends_on:
        return "-"
    starts = (date.fromisoformat(period_ends_on) + timedelta(days=1)).isoformat()
    return f"until {ends_on} (period {period + 1} from {starts})"
