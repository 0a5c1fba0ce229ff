"""`c360 contact ...` (contact-centre records: contacts that need no ticket) and `c360 contract
...` (service contracts with expiry), through the service-desk gRPC API."""

from __future__ import annotations

from c360.service_desk.v1 import service_desk_service_pb2 as api
from c360.service_desk.v1.service_desk_service_pb2_grpc import ServiceDeskServiceStub
from c360_cli.argtypes import whole_in
from c360_cli.commands import Api, Arg, Command, Subparsers, add_commands
from c360_cli.words import CONTACT_DIRECTIONS, CONTACT_OUTCOMES, TICKET_CHANNELS

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
            Arg("--starts", "starts_on", "first day, YYYY-MM-DD", metavar="DATE", required=True),
            Arg("--ends", "ends_on", "last day, YYYY-MM-DD", metavar="DATE", required=True),
            Arg(
                "--warning-days",
                "warning_days",
                "days before the end the expiry warning is written (default 30)",
                metavar="DAYS",
                default=0,
                type=whole_in(0, 365),
            ),
            Arg("--request-id", "request_id", "idempotency key", metavar="ID", default=""),
        ),
        verb="service contract created",
        request_id=False,
        description=(
            "Create a service contract. An expiry warning is written on the customer's timeline"
            " --warning-days before its last day, and its expiry the day after."
        ),
    ),
)


def register(subparsers: Subparsers) -> None:
    """Add `contact`, `contract` and their subcommands."""
    parser = subparsers.add_parser(
        "contract",
        help="service contracts with expiry",
        description="Service contracts (the service-desk service's commands).",
    )
    sub = parser.add_subparsers(title="commands", dest="contract_command", metavar="COMMAND")
    sub.required = True
    add_commands(sub, CONTRACT_COMMANDS, {})
    parser = subparsers.add_parser(
        "contact",
        help="record contact-centre contacts that need no ticket",
        description="Contact-centre records (the service-desk service's commands).",
    )
    sub = parser.add_subparsers(title="commands", dest="contact_command", metavar="COMMAND")
    sub.required = True
    add_commands(sub, COMMANDS, {})
