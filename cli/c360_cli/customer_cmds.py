"""`c360 customer ...`: register, read and change customers through the customer gRPC API."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeAlias

from rich.table import Table
from rich.text import Text

from c360.customer.v1 import customer_service_pb2 as api
from c360.customer.v1.customer_service_pb2_grpc import CustomerServiceStub
from c360.events.v1 import customer_events_pb2 as events
from c360_cli import import_cmd
from c360_cli.argtypes import version_number, versioned
from c360_cli.client import Client
from c360_cli.output import Output, customer_json, iso_field, parse_time, short_time
from c360_cli.words import CONSENT_CHANNELS, CONSENT_PURPOSES, CUSTOMER_KINDS

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler = Callable[[argparse.Namespace], int]


def _command(
    subparsers: Subparsers,
    name: str,
    handler: Handler,
    help_text: str,
    *,
    expected_version: bool = True,
) -> argparse.ArgumentParser:
    """A command parser with the options every customer command shares."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    parser.add_argument(
        "--request-id",
        default="",
        metavar="ID",
        help="idempotency key: a retry with the same id changes nothing and gets the same answer",
    )
    if expected_version:
        parser.add_argument(
            "--expected-version",
            type=version_number,
            metavar="N",
            help="refuse (conflict) unless the customer is still at version N",
        )
    parser.set_defaults(func=handler)
    return parser


def _nested(subparsers: Subparsers, name: str, help_text: str) -> Subparsers:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    nested = parser.add_subparsers(title="commands", dest=f"{name}_command", metavar="COMMAND")
    nested.required = True
    return nested


def register(subparsers: Subparsers) -> None:
    """Add `customer` and its subcommands."""
    parser = subparsers.add_parser(
        "customer",
        help="register, show and change customers",
        description="Register, show and change customers (the customer service's commands).",
    )
    sub = parser.add_subparsers(title="commands", dest="customer_command", metavar="COMMAND")
    sub.required = True

    p = _command(sub, "register", _register, "register a new customer", expected_version=False)
    p.add_argument("--name", required=True, help="display name")
    p.add_argument(
        "--email", action="append", default=[], metavar="E", help="e-mail address (repeatable)"
    )
    p.add_argument(
        "--phone", action="append", default=[], metavar="P", help="phone number (repeatable)"
    )
    p.add_argument("--kind", choices=CUSTOMER_KINDS.words, default="person")
    p.add_argument("--owner", default="", metavar="ID", help="responsible employee id")
    p.add_argument("--tag", action="append", default=[], metavar="T", help="tag (repeatable)")
    p.add_argument("--source", default="", metavar="S", help="acquisition source")
    p.add_argument("--channel", default="", metavar="C", help="acquisition channel")

    p = sub.add_parser("get", help="show a customer's current state")
    p.add_argument("customer_id", metavar="ID")
    p.add_argument(
        "--as-of",
        type=parse_time,
        metavar="TIME",
        help="the customer as it was at TIME (e.g. 2026-03-01T12:00:00Z)",
    )

    p.set_defaults(func=_get)
    import_cmd.register(sub)

    p = sub.add_parser(
        "duplicates",
        help="likely duplicates of a customer, or of every customer (a report)",
        description=(
            "With ID: that customer's likely duplicates. Without: every likely duplicate pair"
            " over all customers, best first. Each with its score and the reasons that matched"
            " (same e-mail, same phone, similar or transliterated name)."
        ),
    )
    p.add_argument("customer_id", metavar="ID", nargs="?", help="default: report on everyone")
    p.add_argument("--limit", type=version_number, default=0, metavar="N", help="at most N results")
    p.add_argument(
        "--min-score", type=float, default=0.0, metavar="S", help="report: pairs from S (0..1)"
    )
    p.set_defaults(func=_duplicates)

    p = _command(
        sub,
        "merge",
        _merge,
        "merge a duplicate into a survivor (undo with unmerge; nothing is deleted)",
        expected_version=False,
    )
    p.add_argument("survivor_id", metavar="SURVIVOR")
    p.add_argument("duplicate_id", metavar="DUPLICATE")
    p.add_argument("--reason", required=True, help="why they are one customer")
    p = _command(
        sub,
        "unmerge",
        _unmerge,
        "undo a duplicate's merge: both customers as if it never happened",
        expected_version=False,
    )
    p.add_argument("customer_id", metavar="DUPLICATE")

    p = _command(sub, "rename", _rename, "change the display name")
    p.add_argument("customer_id", metavar="ID")
    p.add_argument("--name", required=True)

    for noun, thing, handlers in (
        ("email", "an e-mail address", {"add": _add_email, "remove": _remove_email}),
        ("phone", "a phone number", {"add": _add_phone, "remove": _remove_phone}),
    ):
        nested = _nested(sub, noun, f"add or remove {thing}")
        for verb, handler in handlers.items():
            p = _command(nested, verb, handler, f"{verb} {thing}")
            p.add_argument("customer_id", metavar="ID")
            p.add_argument("value", metavar=noun.upper())

    nested = _nested(sub, "address", "add or remove a postal address")
    p = _command(nested, "add", _add_address, "add a postal address")
    p.add_argument("customer_id", metavar="ID")
    p.add_argument(
        "--line", action="append", default=[], required=True, metavar="L", help="repeatable"
    )
    p.add_argument("--city", required=True)
    p.add_argument("--country", required=True, metavar="CC", help="ISO 3166-1 alpha-2, e.g. DE")
    p.add_argument("--postal-code", default="")
    p.add_argument("--region", default="")
    p.add_argument("--label", default="", help="e.g. home, billing")
    p = _command(nested, "remove", _remove_address, "remove a postal address")
    p.add_argument("customer_id", metavar="ID")
    p.add_argument("address_id", metavar="ADDRESS_ID")

    p = _command(sub, "owner", _owner, "assign the responsible employee ('' unassigns)")
    p.add_argument("customer_id", metavar="ID")
    p.add_argument("owner_id", metavar="OWNER_ID")

    p = _command(sub, "tag", _tag, "add and remove tags")
    p.add_argument("customer_id", metavar="ID")
    p.add_argument("--add", action="append", default=[], metavar="T", help="repeatable")
    p.add_argument("--remove", action="append", default=[], metavar="T", help="repeatable")

    nested = _nested(sub, "consent", "record consent or its withdrawal")
    for verb, granted in (("grant", True), ("revoke", False)):
        p = _command(
            nested,
            verb,
            _consent_handler(granted),
            "record consent" if granted else "record the withdrawal of consent",
        )
        p.add_argument("customer_id", metavar="ID")
        p.add_argument("--channel", choices=CONSENT_CHANNELS.words, required=True)
        p.add_argument("--purpose", choices=CONSENT_PURPOSES.words, required=True)
        p.add_argument("--source", required=True, metavar="S", help="where the decision came from")

    nested = _nested(sub, "contact", "link contact persons to organisations")
    p = _command(
        nested,
        "link",
        _link,
        "make a person a contact of an organisation",
        expected_version=False,
    )
    p.add_argument("organisation_id", metavar="ORG_ID")
    p.add_argument("person_id", metavar="PERSON_ID")
    p.add_argument("--role", required=True)
    p.add_argument("--valid-from", type=parse_time, metavar="TIME", help="default: now")
    p = _command(nested, "end", _end, "end a contact-person link", expected_version=False)
    p.add_argument("organisation_id", metavar="ORG_ID")
    p.add_argument("link_id", metavar="LINK_ID")
    p.add_argument("--valid-until", type=parse_time, metavar="TIME", help="default: now")


# -- handlers ---------------------------------------------------------------------------------


def _register(args: argparse.Namespace) -> int:
    request = api.RegisterCustomerRequest(
        request_id=args.request_id,
        kind=CUSTOMER_KINDS.value(args.kind),
        display_name=args.name,
        emails=args.email,
        phones=args.phone,
        owner_id=args.owner,
        tags=args.tag,
        acquisition_source=args.source,
        acquisition_channel=args.channel,
    )
    with Client(args) as client:
        reply = client.stub("customer", CustomerServiceStub).RegisterCustomer(
            request, timeout=args.timeout
        )
    Output(args.json).result("registered", reply.result)
    return 0


def _merge(args: argparse.Namespace) -> int:
    request = api.MergeCustomersRequest(
        request_id=args.request_id,
        survivor_id=args.survivor_id,
        duplicate_id=args.duplicate_id,
        reason=args.reason,
    )
    with Client(args) as client:
        reply = client.stub("customer", CustomerServiceStub).MergeCustomers(
            request, timeout=args.timeout
        )
    Output(args.json).result(
        "merged", reply.result, duplicate_id=args.duplicate_id, merge_id=reply.merge_id
    )
    return 0


def _unmerge(args: argparse.Namespace) -> int:
    request = api.UnmergeCustomerRequest(request_id=args.request_id, customer_id=args.customer_id)
    with Client(args) as client:
        reply = client.stub("customer", CustomerServiceStub).UnmergeCustomer(
            request, timeout=args.timeout
        )
    Output(args.json).result("unmerged", reply.result, merge_id=reply.merge_id)
    return 0


def _rename(args: argparse.Namespace) -> int:
    request = api.RenameCustomerRequest(
        request_id=args.request_id, customer_id=args.customer_id, display_name=args.name
    )
    with Client(args) as client:
        reply = client.stub("customer", CustomerServiceStub).RenameCustomer(
            versioned(request, args), timeout=args.timeout
        )
    Output(args.json).result("renamed", reply.result)
    return 0


def _add_email(args: argparse.Namespace) -> int:
    request = api.AddEmailRequest(
        request_id=args.request_id, customer_id=args.customer_id, email=args.value
    )
    with Client(args) as client:
        reply = client.stub("customer", CustomerServiceStub).AddEmail(
            versioned(request, args), timeout=args.timeout
        )
    Output(args.json).result("e-mail added", reply.result)
    return 0


def _remove_email(args: argparse.Namespace) -> int:
    request = api.RemoveEmailRequest(
        request_id=args.request_id, customer_id=args.customer_id, email=args.value
    )
    with Client(args) as client:
        reply = client.stub("customer", CustomerServiceStub).RemoveEmail(
            versioned(request, args), timeout=args.timeout
        )
    Output(args.json).result("e-mail removed", reply.result)
    return 0


def _add_phone(args: argparse.Namespace) -> int:
    request = api.AddPhoneRequest(
        request_id=args.request_id, customer_id=args.customer_id, phone=args.value
    )
    with Client(args) as client:
        reply = client.stub("customer", CustomerServiceStub).AddPhone(
            versioned(request, args), timeout=args.timeout
        )
    Output(args.json).result("phone added", reply.result)
    return 0


def _remove_phone(args: argparse.Namespace) -> int:
    request = api.RemovePhoneRequest(
        request_id=args.request_id, customer_id=args.customer_id, phone=args.value
    )
    with Client(args) as client:
        reply = client.stub("customer", CustomerServiceStub).RemovePhone(
            versioned(request, args), timeout=args.timeout
        )
    Output(args.json).result("phone removed", reply.result)
    return 0


def _add_address(args: argparse.Namespace) -> int:
    request = api.AddPostalAddressRequest(
        request_id=args.request_id,
        customer_id=args.customer_id,
        address=events.PostalAddress(
            label=args.label,
            lines=args.line,
            postal_code=args.postal_code,
            city=args.city,
            region=args.region,
            country=args.country,
        ),
    )
    with Client(args) as client:
        reply = client.stub("customer", CustomerServiceStub).AddPostalAddress(
            versioned(request, args), timeout=args.timeout
        )
    Output(args.json).result("address added", reply.result, address_id=reply.address_id)
    return 0


def _remove_address(args: argparse.Namespace) -> int:
    request = api.RemovePostalAddressRequest(
        request_id=args.request_id, customer_id=args.customer_id, address_id=args.address_id
    )
    with Client(args) as client:
        reply = client.stub("customer", CustomerServiceStub).RemovePostalAddress(
            versioned(request, args), timeout=args.timeout
        )
    Output(args.json).result("address removed", reply.result)
    return 0


def _owner(args: argparse.Namespace) -> int:
    request = api.AssignOwnerRequest(
        request_id=args.request_id, customer_id=args.customer_id, owner_id=args.owner_id
    )
    with Client(args) as client:
        reply = client.stub("customer", CustomerServiceStub).AssignOwner(
            versioned(request, args), timeout=args.timeout
        )
    Output(args.json).result(
        "owner assigned" if args.owner_id else "owner unassigned", reply.result
    )
    return 0


def _tag(args: argparse.Namespace) -> int:
    request = api.ChangeTagsRequest(
        request_id=args.request_id,
        customer_id=args.customer_id,
        add=args.add,
        remove=args.remove,
    )
    with Client(args) as client:
        reply = client.stub("customer", CustomerServiceStub).ChangeTags(
            versioned(request, args), timeout=args.timeout
        )
    Output(args.json).result("tags changed", reply.result)
    return 0


def _consent_handler(granted: bool) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        fields: dict[str, Any] = {
            "request_id": args.request_id,
            "customer_id": args.customer_id,
            "channel": CONSENT_CHANNELS.value(args.channel),
            "purpose": CONSENT_PURPOSES.value(args.purpose),
            "source": args.source,
        }
        with Client(args) as client:
            if granted:
                grant = versioned(api.GrantConsentRequest(**fields), args)
                result = (
                    client.stub("customer", CustomerServiceStub)
                    .GrantConsent(grant, timeout=args.timeout)
                    .result
                )
            else:
                revoke = versioned(api.RevokeConsentRequest(**fields), args)
                result = (
                    client.stub("customer", CustomerServiceStub)
                    .RevokeConsent(revoke, timeout=args.timeout)
                    .result
                )
        Output(args.json).result("consent granted" if granted else "consent revoked", result)
        return 0

    return handler


def _link(args: argparse.Namespace) -> int:
    request = api.LinkContactPersonRequest(
        request_id=args.request_id,
        organisation_id=args.organisation_id,
        person_id=args.person_id,
        role=args.role,
        valid_from=args.valid_from,
    )
    with Client(args) as client:
        reply = client.stub("customer", CustomerServiceStub).LinkContactPerson(
            request, timeout=args.timeout
        )
    Output(args.json).result("contact person linked", reply.result, link_id=reply.link_id)
    return 0


def _end(args: argparse.Namespace) -> int:
    request = api.EndContactPersonRequest(
        request_id=args.request_id,
        organisation_id=args.organisation_id,
        link_id=args.link_id,
        valid_until=args.valid_until,
    )
    with Client(args) as client:
        reply = client.stub("customer", CustomerServiceStub).EndContactPerson(
            request, timeout=args.timeout
        )
    Output(args.json).result("contact-person link ended", reply.result)
    return 0


def _get(args: argparse.Namespace) -> int:
    with Client(args) as client:
        reply = client.stub("customer", CustomerServiceStub).GetCustomer(
            api.GetCustomerRequest(customer_id=args.customer_id, as_of=args.as_of),
            timeout=args.timeout,
        )
    out = Output(args.json)
    if out.json_mode:
        out.json(customer_json(reply.customer))
    else:
        show_customer(out, reply.customer)
    return 0


def _duplicates(args: argparse.Namespace) -> int:
    out = Output(args.json)
    with Client(args) as client:
        if args.customer_id:
            found = client.stub("customer", CustomerServiceStub).FindDuplicates(
                api.FindDuplicatesRequest(customer_id=args.customer_id, limit=args.limit),
                timeout=args.timeout,
            )
            candidates: list[dict[str, Any]] = [
                {"customer_id": c.customer_id, "score": c.score, "reasons": list(c.reasons)}
                for c in found.candidates
            ]
            if out.json_mode:
                out.json({"customer_id": args.customer_id, "candidates": candidates})
            elif not candidates:
                out.note(f"no likely duplicates of {args.customer_id}")
            else:
                out.table(
                    ("customer", "score", "reasons"),
                    [
                        (c["customer_id"], f"{c['score']:.3f}", "; ".join(c["reasons"]))
                        for c in candidates
                    ],
                    title=f"likely duplicates of {args.customer_id}",
                )
            return 0
        request = api.DuplicateReportRequest(min_score=args.min_score, limit=args.limit)
        pairs: list[dict[str, Any]] = [
            {
                "customer_id": p.customer_id,
                "duplicate_id": p.duplicate_id,
                "score": p.score,
                "reasons": list(p.reasons),
            }
            for reply in client.stub("customer", CustomerServiceStub).DuplicateReport(
                request, timeout=args.timeout
            )
            for p in reply.pairs
        ]
    if out.json_mode:
        out.json({"pairs": pairs})
    elif not pairs:
        out.note("no likely duplicates")
    else:
        out.table(
            ("customer", "duplicate", "score", "reasons"),
            [
                (p["customer_id"], p["duplicate_id"], f"{p['score']:.3f}", "; ".join(p["reasons"]))
                for p in pairs
            ],
            title=f"likely duplicates: {len(pairs)} pairs",
        )
    return 0


def show_customer(out: Output, c: api.Customer) -> None:
    """A customer as a panel: identity and contact points, then consent and contact persons."""
    addresses = [
        (f"{a.label}: " if a.label else "")
        + ", ".join(
            part
            for part in [
                *a.lines,
                " ".join(x for x in (a.postal_code, a.city) if x),
                a.region,
                a.country,
            ]
            if part
        )
        + f"  ({a.address_id})"
        for a in c.addresses
    ]
    rows: list[tuple[str, Any]] = [
        ("id", c.customer_id),
        *([("merged into", Text(c.merged_into, style="yellow"))] if c.merged_into else []),
        *([("absorbed", list(c.absorbed))] if c.absorbed else []),
        ("kind", CUSTOMER_KINDS.word(c.kind)),
        ("version", c.version),
        ("e-mails", list(c.emails)),
        ("phones", list(c.phones)),
        ("addresses", Text("\n".join(addresses))),
        ("owner", c.owner_id),
        ("tags", list(c.tags)),
        ("acquisition", " / ".join(x for x in (c.acquisition_source, c.acquisition_channel) if x)),
        ("registered", short_time(iso_field(c, "registered_at"))),
        ("updated", short_time(iso_field(c, "updated_at"))),
    ]
    extra: list[Any] = []
    if c.consents:
        consents = Table(title="consent", title_justify="left", expand=False)
        for column in ("channel", "purpose", "granted", "source", "decided"):
            consents.add_column(column)
        for x in c.consents:
            consents.add_row(
                CONSENT_CHANNELS.word(x.channel),
                CONSENT_PURPOSES.word(x.purpose),
                Text("yes", style="green") if x.granted else Text("no", style="red"),
                Text(x.source),
                short_time(iso_field(x, "decided_at")),
            )
        extra.append(consents)
    if c.contact_persons:
        is_person = c.kind == events.CUSTOMER_KIND_PERSON
        links = Table(title="contact persons", title_justify="left", expand=False)
        for column in ("link", "organisation" if is_person else "person", "role", "from", "until"):
            links.add_column(column, overflow="fold")
        for link in c.contact_persons:
            links.add_row(
                link.link_id,
                link.organisation_id if is_person else link.person_id,
                Text(link.role),
                short_time(iso_field(link, "valid_from")),
                short_time(iso_field(link, "valid_until")) or Text("current", style="green"),
            )
        extra.append(links)
    out.kv_panel(c.display_name, rows, *extra)
