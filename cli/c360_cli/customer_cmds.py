"""`c360 customer ...`: register, read and change customers through the customer gRPC API."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from c360.customer.v1 import customer_service_pb2 as api
from c360.customer.v1.customer_service_pb2_grpc import CustomerServiceStub
from c360.events.v1 import customer_events_pb2 as events
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360.timeline.v1.timeline_service_pb2_grpc import TimelineServiceStub
from c360_cli import display, import_cmd
from c360_cli.argtypes import version_number
from c360_cli.client import Client
from c360_cli.commands import Api, Arg, Command, Subparsers, add_commands
from c360_cli.errors import EXIT_BAD_INPUT, EXIT_FAILURE, CliError
from c360_cli.names import customer_names
from c360_cli.output import (
    JSONValue,
    Output,
    customer_json,
    entry_json,
    iso_field,
    parse_time,
    profile_json,
    result_json,
    short_time,
)
from c360_cli.words import CONSENT_CHANNELS, CONSENT_PURPOSES, CUSTOMER_KINDS

CUSTOMER = Api("customer", CustomerServiceStub, "customer")
ID = Arg("customer_id", "customer_id", "the customer's id", metavar="ID")
EVERY_CHANNEL = "all"
"""--channel of `consent revoke` for every channel at once."""


@dataclass(frozen=True)
class ChannelOrAll(Arg):
    """A consent channel, or `all`."""

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            self.name,
            choices=[*CONSENT_CHANNELS.words, EVERY_CHANNEL],
            required=True,
            help=self.help,
        )


@dataclass(frozen=True)
class EveryChannel(Command):
    """`consent revoke`: with --channel all, one withdrawal per channel (an objection to
    direct marketing covers every channel), each its own decision with its evidence; a
    --request-id is suffixed per channel, --expected-version holds for the first."""

    def run(self, args: argparse.Namespace) -> int:
        if args.channel != EVERY_CHANNEL:
            return super().run(args)
        done: list[tuple[str, Any]] = []
        try:
            with Client(args) as client:
                method = getattr(client.stub(self.api.service, self.api.stub), self.rpc)
                for word in CONSENT_CHANNELS.words:
                    one = argparse.Namespace(**vars(args))
                    one.channel = word
                    if args.request_id:
                        one.request_id = f"{args.request_id}:{word}"
                    if done:
                        one.expected_version = None
                    reply = method(self.build(one), timeout=args.timeout)
                    done.append((word, reply.result))
        except CliError as refused:
            refused.message = self.in_options(refused.message)
            if done:
                refused.message += f" (revoked before: {', '.join(w for w, _ in done)})"
            raise
        out = Output(args.json)
        if out.json_mode:
            out.json(
                {
                    "results": [
                        {"channel": word, **result_json(result, self.api.subject)}
                        for word, result in done
                    ]
                }
            )
            return 0
        for word, result in done:
            out.result(f"consent revoked ({word})", result, self.api.subject)
        return 0


CONSENT = (
    ID,
    Arg(
        "--channel",
        "channel",
        "how the customer may be reached",
        required=True,
        words=CONSENT_CHANNELS,
        choices=True,
    ),
    Arg(
        "--purpose",
        "purpose",
        "what the contact is for",
        required=True,
        words=CONSENT_PURPOSES,
        choices=True,
    ),
    Arg("--source", "source", "where the decision came from", metavar="S", required=True),
    Arg(
        "--decided-at",
        "decided_at",
        "when the customer decided, e.g. the date of a signed form (default now)",
        metavar="TIME",
        type=parse_time,
    ),
)

GROUPS = {
    "email": "add or remove an e-mail address",
    "phone": "add or remove a phone number",
    "address": "add or remove a postal address",
    "consent": "record consent or its withdrawal",
    "contact": "link contact persons to organisations",
}
"""Help of the commands that hold commands."""

REGION = Arg(
    "--default-region",
    "default_region",
    "country (e.g. DE) of numbers written without +country code",
    metavar="CC",
)

COMMANDS = (
    Command(
        "register",
        "register a new customer",
        CUSTOMER,
        "RegisterCustomer",
        api.RegisterCustomerRequest,
        (
            Arg("--name", "display_name", "display name", required=True),
            Arg("--email", "emails", "e-mail address (repeatable)", metavar="E", repeated=True),
            Arg("--phone", "phones", "phone number (repeatable)", metavar="P", repeated=True),
            REGION,
            Arg(
                "--kind",
                "kind",
                "a person or an organisation (default person)",
                default="person",
                words=CUSTOMER_KINDS,
                choices=True,
            ),
            Arg("--owner", "owner_id", "responsible employee id", metavar="ID"),
            Arg("--tag", "tags", "tag (repeatable)", metavar="T", repeated=True),
            Arg("--source", "acquisition_source", "acquisition source", metavar="S"),
            Arg("--channel", "acquisition_channel", "acquisition channel", metavar="C"),
        ),
        verb="registered",
    ),
    Command(
        "merge",
        "merge a duplicate into a survivor (undo with unmerge; nothing is deleted)",
        CUSTOMER,
        "MergeCustomers",
        api.MergeCustomersRequest,
        (
            Arg("survivor_id", "survivor_id", "the customer who stays", metavar="SURVIVOR"),
            Arg(
                "duplicate_id",
                "duplicate_id",
                "the customer merged into the survivor",
                metavar="DUPLICATE",
            ),
            Arg("--reason", "reason", "why they are one customer", required=True),
        ),
        verb="merged",
        shows=("duplicate_id", "merge_id"),
    ),
    Command(
        "unmerge",
        "undo a duplicate's merge: both customers as if it never happened",
        CUSTOMER,
        "UnmergeCustomer",
        api.UnmergeCustomerRequest,
        (Arg("customer_id", "customer_id", "the merged duplicate's id", metavar="DUPLICATE"),),
        verb="unmerged",
        shows=("merge_id",),
    ),
    Command(
        "forget",
        "erase a customer on request (GDPR): its key is deleted, its personal data unreadable"
        " everywhere; the events stay (operators only)",
        CUSTOMER,
        "ForgetCustomer",
        api.ForgetCustomerRequest,
        (
            Arg("customer_id", "customer_id", "the customer to forget", metavar="ID"),
            Arg(
                "--with-merged",
                "with_merged",
                "also forget the duplicates merged into it (a survivor of merges is"
                " refused without them)",
                flag=True,
            ),
        ),
        verb="forgotten",
        shows=("forgotten_ids",),
    ),
    Command(
        "rename",
        "change the display name",
        CUSTOMER,
        "RenameCustomer",
        api.RenameCustomerRequest,
        (ID, Arg("--name", "display_name", "the new display name", required=True)),
        verb="renamed",
        expected_version=True,
    ),
    Command(
        "email add",
        "add an e-mail address",
        CUSTOMER,
        "AddEmail",
        api.AddEmailRequest,
        (ID, Arg("value", "email", "the e-mail address", metavar="EMAIL")),
        verb="e-mail added",
        expected_version=True,
    ),
    Command(
        "email remove",
        "remove an e-mail address",
        CUSTOMER,
        "RemoveEmail",
        api.RemoveEmailRequest,
        (ID, Arg("value", "email", "the e-mail address", metavar="EMAIL")),
        verb="e-mail removed",
        expected_version=True,
    ),
    Command(
        "phone add",
        "add a phone number",
        CUSTOMER,
        "AddPhone",
        api.AddPhoneRequest,
        (ID, Arg("value", "phone", "the phone number", metavar="PHONE"), REGION),
        verb="phone added",
        expected_version=True,
    ),
    Command(
        "phone remove",
        "remove a phone number",
        CUSTOMER,
        "RemovePhone",
        api.RemovePhoneRequest,
        (ID, Arg("value", "phone", "the phone number", metavar="PHONE"), REGION),
        verb="phone removed",
        expected_version=True,
    ),
    Command(
        "address add",
        "add a postal address",
        CUSTOMER,
        "AddPostalAddress",
        api.AddPostalAddressRequest,
        (
            ID,
            Arg("--line", "address.lines", "repeatable", metavar="L", repeated=True, required=True),
            Arg("--city", "address.city", "the city or town", required=True),
            Arg(
                "--country",
                "address.country",
                "ISO 3166-1 alpha-2, e.g. DE",
                metavar="CC",
                required=True,
            ),
            Arg("--postal-code", "address.postal_code", "the postal code", default=""),
            Arg("--region", "address.region", "region, state or province", default=""),
            Arg("--label", "address.label", "e.g. home, billing", default=""),
        ),
        verb="address added",
        shows=("address_id",),
        expected_version=True,
    ),
    Command(
        "address remove",
        "remove a postal address",
        CUSTOMER,
        "RemovePostalAddress",
        api.RemovePostalAddressRequest,
        (
            ID,
            Arg(
                "address_id",
                "address_id",
                "the address's id (customer get shows it)",
                metavar="ADDRESS_ID",
            ),
        ),
        verb="address removed",
        expected_version=True,
    ),
    Command(
        "owner",
        "assign the responsible employee ('' unassigns)",
        CUSTOMER,
        "AssignOwner",
        api.AssignOwnerRequest,
        (ID, Arg("owner_id", "owner_id", "the employee's id, or ''", metavar="OWNER_ID")),
        verb=lambda r: "owner assigned" if r.owner_id else "owner unassigned",
        expected_version=True,
    ),
    Command(
        "tag",
        "add and remove tags",
        CUSTOMER,
        "ChangeTags",
        api.ChangeTagsRequest,
        (
            ID,
            Arg("--add", "add", "repeatable", metavar="T", repeated=True),
            Arg("--remove", "remove", "repeatable", metavar="T", repeated=True),
        ),
        verb="tags changed",
        expected_version=True,
    ),
    Command(
        "consent grant",
        "record consent",
        CUSTOMER,
        "GrantConsent",
        api.GrantConsentRequest,
        CONSENT,
        verb="consent granted",
        expected_version=True,
    ),
    EveryChannel(
        "consent revoke",
        "record the withdrawal of consent (--channel all: on every channel, as an objection"
        " to marketing asks)",
        CUSTOMER,
        "RevokeConsent",
        api.RevokeConsentRequest,
        (
            ID,
            ChannelOrAll(
                "--channel",
                "channel",
                "how the customer may no longer be reached; all: every channel",
                required=True,
                words=CONSENT_CHANNELS,
                choices=True,
            ),
            *CONSENT[2:],
        ),
        verb="consent revoked",
        expected_version=True,
    ),
    Command(
        "contact link",
        "make a person a contact of an organisation",
        CUSTOMER,
        "LinkContactPerson",
        api.LinkContactPersonRequest,
        (
            Arg("organisation_id", "organisation_id", "the organisation's id", metavar="ORG_ID"),
            Arg("person_id", "person_id", "the person's id", metavar="PERSON_ID"),
            Arg("--role", "role", "the person's role there, e.g. purchasing", required=True),
            Arg("--valid-from", "valid_from", "default: now", metavar="TIME", type=parse_time),
        ),
        verb="contact person linked",
        shows=("link_id",),
    ),
    Command(
        "contact end",
        "end a contact-person link",
        CUSTOMER,
        "EndContactPerson",
        api.EndContactPersonRequest,
        (
            Arg("organisation_id", "organisation_id", "the organisation's id", metavar="ORG_ID"),
            Arg("link_id", "link_id", "the link's id (customer get shows it)", metavar="LINK_ID"),
            Arg("--valid-until", "valid_until", "default: now", metavar="TIME", type=parse_time),
        ),
        verb="contact-person link ended",
    ),
)


def register(subparsers: Subparsers) -> None:
    """Add `customer` and its subcommands."""
    parser = subparsers.add_parser(
        "customer",
        help="register, show and change customers",
        description="Register, show and change customers (the customer service's commands).",
    )
    sub = parser.add_subparsers(title="commands", dest="customer_command", metavar="COMMAND")
    sub.required = True
    add_commands(sub, COMMANDS, GROUPS)

    p = sub.add_parser("get", help="show a customer's current state")
    p.add_argument("customer_id", metavar="ID", help="the customer's id")
    p.add_argument(
        "--as-of",
        type=parse_time,
        metavar="TIME",
        help="the customer as it was at TIME (e.g. 2026-03-01T12:00:00Z)",
    )
    p.set_defaults(func=_get)
    import_cmd.register(sub)

    p = sub.add_parser(
        "imported",
        help="the customers imported under external keys",
        description=(
            "The customer each external key was imported as (`customer import`): an imported"
            " customer's id is derived from its key with a secret of the deployment's, so the"
            " system the rows came from cannot compute it. Up to 1,000 keys."
        ),
    )
    p.add_argument("external_keys", nargs="+", metavar="KEY", help="an external key")
    p.set_defaults(func=_imported)

    p = sub.add_parser(
        "export",
        help="everything c360 holds about a customer, as one JSON document (GDPR access)",
        description=(
            "A subject access export (GDPR art. 15, in a form that can be handed over): the"
            " customer's record (a survivor's with the duplicates merged into it, each with"
            " its own record), its consent decisions with their evidence, its 360 profile"
            " and its whole timeline, oldest first: what the customer service, the service"
            " desk, sales, marketing and the ERP recorded about it, with every detail. A"
            " merged customer is exported as the survivor that holds it."
        ),
    )
    p.add_argument("customer_id", metavar="ID", help="the customer's id")
    p.add_argument(
        "--output",
        metavar="FILE",
        help="write the document to FILE (readable by its owner only) instead of stdout",
    )
    p.set_defaults(func=_export)

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


# -- reads ------------------------------------------------------------------------------------


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


def _imported(args: argparse.Namespace) -> int:
    with Client(args) as client:
        reply = client.stub("customer", CustomerServiceStub).FindImported(
            api.FindImportedRequest(external_keys=args.external_keys), timeout=args.timeout
        )
    out = Output(args.json)
    if out.json_mode:
        out.json(
            {
                "customers": [
                    {"external_key": c.external_key, "customer_id": c.customer_id or None}
                    for c in reply.customers
                ]
            }
        )
    else:
        out.table(
            ["external key", "customer"],
            [[c.external_key, c.customer_id or "not imported"] for c in reply.customers],
        )
    missing = sum(1 for c in reply.customers if not c.customer_id)
    return EXIT_FAILURE if missing else 0


EXPORT_PAGE = 500
"""Timeline entries per page of an export (GetTimeline's largest page)."""


def _write_private(path: Path, text: str) -> None:
    """Personal data in a file that is its owner's alone from its first byte: a new file
    (0600) in the target's folder, renamed over the path. Opening the path itself kept an
    existing file's mode (an earlier export's 0644: readable by everyone) and followed a
    symbolic link planted there (in /tmp, another user's) to whatever it points at."""
    if path.is_dir():
        raise CliError(f"--output: {path} is a directory, not a file", EXIT_BAD_INPUT)
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise CliError(f"--output: cannot write in {path.parent}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise CliError(f"--output: cannot write {path}: {exc.strerror}") from None
        raise


def _export(args: argparse.Namespace) -> int:
    """Gather the customer's data from the customer service and the timeline (which holds
    every service's events about it) into one document."""
    out = Output(args.json)
    with Client(args) as client:
        customers = client.stub("customer", CustomerServiceStub)
        customer = customers.GetCustomer(
            api.GetCustomerRequest(customer_id=args.customer_id), timeout=args.timeout
        ).customer
        if customer.merged_into:
            out.note(
                f"customer {customer.customer_id} was merged into {customer.merged_into}:"
                " exporting that customer, which holds both"
            )
            customer = customers.GetCustomer(
                api.GetCustomerRequest(customer_id=customer.merged_into), timeout=args.timeout
            ).customer
        merged = [
            customers.GetCustomer(api.GetCustomerRequest(customer_id=i), timeout=args.timeout)
            for i in customer.absorbed
        ]
        timeline = client.stub("timeline", TimelineServiceStub)
        profile = timeline.GetProfile(
            tapi.GetProfileRequest(customer_id=customer.customer_id), timeout=args.timeout
        ).profile
        entries: list[JSONValue] = []
        token = ""
        while True:
            page = timeline.GetTimeline(
                tapi.GetTimelineRequest(
                    customer_id=customer.customer_id, page_size=EXPORT_PAGE, page_token=token
                ),
                timeout=args.timeout,
            )
            entries.extend(entry_json(e) for e in page.entries)
            token = page.next_page_token
            if not token:
                break
    entries.reverse()  # oldest first, as a history is read
    sources = sorted({str(e["source"]) for e in entries if isinstance(e, dict)})
    document: dict[str, JSONValue] = {
        "export": {
            "kind": "subject access export",
            "customer_id": customer.customer_id,
            "generated_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "sources": sources,
            "forgotten": customer.HasField("forgotten_at"),
        },
        "customer": customer_json(customer),
        "merged_duplicates": [customer_json(m.customer) for m in merged],
        "profile": profile_json(profile),
        "timeline": entries,
    }
    if not args.output:
        out.json(document)
        return 0
    path = Path(args.output)
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    _write_private(path, text)
    summary = {
        "customer_id": customer.customer_id,
        "merged_duplicates": len(merged),
        "timeline_entries": len(entries),
        "sources": sources,
        "output": str(path),
    }
    if out.json_mode:
        out.json(summary)
    else:
        out.note(
            f"exported customer {customer.customer_id}: its record,"
            f" {len(merged)} merged duplicate(s), its profile and {len(entries)} timeline"
            f" entries from {', '.join(sources) or 'no service'} to {path}"
        )
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
                names = customer_names(client, [c["customer_id"] for c in candidates], args.timeout)
                out.table(
                    ("customer", "name", "score", "reasons"),
                    [
                        (
                            c["customer_id"],
                            names.get(c["customer_id"], ""),
                            f"{c['score']:.3f}",
                            "; ".join(c["reasons"]),
                        )
                        for c in candidates
                    ],
                    title=f"likely duplicates of {args.customer_id}",
                    no_wrap={"score"},
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
        names = (
            {}
            if out.json_mode
            else customer_names(
                client,
                [i for p in pairs for i in (p["customer_id"], p["duplicate_id"])],
                args.timeout,
            )
        )
    if out.json_mode:
        out.json({"pairs": pairs})
    elif not pairs:
        out.note("no likely duplicates")
    else:
        out.table(
            ("customer", "name", "duplicate", "its name", "score", "reasons"),
            [
                (
                    p["customer_id"],
                    names.get(p["customer_id"], ""),
                    p["duplicate_id"],
                    names.get(p["duplicate_id"], ""),
                    f"{p['score']:.3f}",
                    "; ".join(p["reasons"]),
                )
                for p in pairs
            ],
            title=f"likely duplicates: {len(pairs)} pairs",
            no_wrap={"customer", "duplicate", "score"},
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
        *(
            [("forgotten", Text(f"erased on request {iso_field(c, 'forgotten_at')}", style="red"))]
            if c.HasField("forgotten_at")
            else []
        ),
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
        # The evidence of each latest decision: when, how (source) and who recorded it.
        for column in ("channel", "purpose", "granted", "source", "decided", "recorded by"):
            consents.add_column(column, overflow="fold")  # evidence is never cut
        for x in c.consents:
            consents.add_row(
                CONSENT_CHANNELS.word(x.channel),
                CONSENT_PURPOSES.word(x.purpose),
                Text("yes", style="green") if x.granted else Text("no", style="red"),
                Text(x.source),
                short_time(iso_field(x, "decided_at")),
                Text(x.recorded_by or "-"),
            )
        extra.append(consents)
    if c.contact_persons:
        is_person = c.kind == events.CUSTOMER_KIND_PERSON
        links = Table(title="contact persons", title_justify="left", expand=False)
        for column in ("link", "organisation" if is_person else "person", "role", "from", "until"):
            links.add_column(column, overflow="fold")
        for link in c.contact_persons:
            other = link.organisation_id if is_person else link.person_id
            links.add_row(
                link.link_id,
                other if display.wide else other[:8],  # the link's id stays whole: `contact end`
                Text(link.role),
                short_time(iso_field(link, "valid_from")),
                short_time(iso_field(link, "valid_until")) or Text("current", style="green"),
            )
        extra.append(links)
    out.kv_panel(c.display_name, rows, *extra)
