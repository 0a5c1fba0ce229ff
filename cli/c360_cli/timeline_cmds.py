"""`c360 timeline ...`, `c360 profile show` and `c360 search`: reads of the timeline service."""

from __future__ import annotations

import argparse
from typing import Any, TypeAlias, cast

import grpc
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from c360.timeline.v1 import timeline_service_pb2 as api
from c360.timeline.v1.timeline_service_pb2_grpc import TimelineServiceStub
from c360_cli import profile_view
from c360_cli.argtypes import positive_int
from c360_cli.client import Client
from c360_cli.errors import EXIT_FAILURE, CliError
from c360_cli.output import (
    PAGE_CAPTION,
    Output,
    entry_json,
    hit_json,
    iso_field,
    parse_time,
    profile_json,
    short_time,
)

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(subparsers: Subparsers) -> None:
    """Add `timeline show|rebuild`, `profile show` and `search`."""
    timeline = subparsers.add_parser(
        "timeline",
        help="a customer's timeline; rebuild the read model",
        description="Read a customer's unified timeline, or rebuild the read model.",
    )
    sub = timeline.add_subparsers(title="commands", dest="timeline_command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "show",
        help="list a customer's timeline, newest first",
        description="List a customer's timeline entries, newest first.",
    )
    p.add_argument("customer_id", metavar="ID", help="the customer's id")
    p.add_argument(
        "--wait-for",
        default="",
        metavar="TOKEN",
        help="consistency token from a command: wait until the timeline has applied it",
    )
    p.add_argument(
        "--follow",
        action="store_true",
        help="the page oldest first, then new entries below it as they arrive (Ctrl-C ends)",
    )
    p.add_argument(
        "--source", action="append", default=[], metavar="S", help="only this source (repeatable)"
    )
    p.add_argument(
        "--type", action="append", default=[], metavar="T", help="only this type (repeatable)"
    )
    p.add_argument("--since", type=parse_time, metavar="TIME", help="entries at or after TIME")
    p.add_argument("--until", type=parse_time, metavar="TIME", help="entries before TIME")
    p.add_argument(
        "--as-of",
        type=parse_time,
        metavar="TIME",
        help="the timeline as of TIME: entries that occurred at or before it",
    )
    p.add_argument(
        "--limit", type=positive_int, default=50, metavar="N", help="page size (default 50)"
    )
    p.add_argument("--page-token", default="", metavar="TOKEN", help="next_page_token of a page")
    p.add_argument(
        "--all",
        action="store_true",
        help="every page, one after the other (through a pager on a terminal)",
    )
    p.set_defaults(func=_show)

    p = sub.add_parser(
        "rebuild",
        help="drop the read model and replay every event into it",
        description="Drop the timeline read model and replay the event stream into it.",
    )
    p.set_defaults(func=_rebuild)

    profile = subparsers.add_parser(
        "profile", help="a customer's 360 profile", description="Show the 360 profile."
    )
    psub = profile.add_subparsers(title="commands", dest="profile_command", metavar="COMMAND")
    psub.required = True
    p = psub.add_parser(
        "show",
        help="show a customer's 360 profile",
        description=(
            "Show a customer's 360 profile: identity and contact points, consent, owner,"
            " classes, at-risk with reasons, open tickets, the newest timeline entries."
            " 'Last contact' is the last contact with the customer: a ticket opened, a call or"
            " message in or out, a meeting, a campaign response. Internal actions (an owner"
            " assigned, tags, a ticket assigned or closed, SLA clocks) are touches, counted in"
            " 'touches', but not contacts."
        ),
    )
    p.add_argument("customer_id", metavar="ID", help="the customer's id")
    p.add_argument("--wait-for", default="", metavar="TOKEN", help="consistency token to wait for")
    p.add_argument(
        "--as-of",
        type=parse_time,
        metavar="TIME",
        help="the profile as it was at TIME (e.g. 2026-03-01T12:00:00Z)",
    )
    p.add_argument(
        "--provenance",
        action="store_true",
        help="also list which event set each field (always in --json)",
    )
    p.set_defaults(func=_profile)

    p = subparsers.add_parser(
        "search",
        help="find customers by name prefix, e-mail or phone",
        description="Find customers by name prefix, exact e-mail or exact phone number.",
    )
    p.add_argument(
        "text", metavar="TEXT", help="a name's beginning, an e-mail address or a phone number"
    )
    p.add_argument("--limit", type=positive_int, default=20, metavar="N", help="at most N hits")
    p.set_defaults(func=_search)


# -- timeline show ----------------------------------------------------------------------------


def _matches(entry: api.TimelineEntry, args: argparse.Namespace) -> bool:
    """The page's filters, applied to entries the watch stream delivers."""
    if args.source and entry.source not in args.source:
        return False
    if args.type and entry.type not in args.type:
        return False
    at = entry.occurred_at.ToNanoseconds()
    if args.since is not None and at < args.since.ToNanoseconds():
        return False
    if args.as_of is not None and at > args.as_of.ToNanoseconds():
        return False
    return not (args.until is not None and at >= args.until.ToNanoseconds())


def _entry_row(e: api.TimelineEntry) -> list[Any]:
    return [short_time(iso_field(e, "occurred_at")), e.source, e.type, e.summary]


def _show(args: argparse.Namespace) -> int:
    out = Output(args.json)
    request = api.GetTimelineRequest(
        customer_id=args.customer_id,
        page_size=args.limit,
        page_token=args.page_token,
        sources=args.source,
        types=args.type,
        since=args.since,
        until=args.until,
        wait_for=args.wait_for,
        as_of=args.as_of,
    )
    with Client(args) as client:
        request = client.complete(request)
        customer_id = request.customer_id
        stub = client.stub("timeline", TimelineServiceStub)
        try:
            page = stub.GetTimeline(request, timeout=args.timeout)
        except grpc.RpcError as error:
            if not (args.follow and error.code() == grpc.StatusCode.NOT_FOUND):
                raise
            # Followed from its first entry: a customer registered a moment ago is watched
            # for (WatchTimeline waits for it a while).
            page = api.GetTimelineResponse()
        entries = list(page.entries)
        while args.all and page.next_page_token:
            request.page_token = page.next_page_token
            page = stub.GetTimeline(request, timeout=args.timeout)
            entries += page.entries
        unfiltered = not (
            args.page_token or args.source or args.type or args.since or args.until or args.as_of
        )
        if unfiltered and not entries and not args.follow:
            # Every customer's timeline starts with its registration: none means no customer.
            raise CliError(
                f"no timeline for {customer_id}: no such customer, or not projected yet"
                " (pass --wait-for with the command's consistency token)",
                EXIT_FAILURE,
                code="NOT_FOUND",
            )
        if out.json_mode:
            out.json(
                {
                    "customer_id": customer_id,
                    "entries": [entry_json(e) for e in entries],
                    "next_page_token": page.next_page_token,
                },
                compact=args.follow,  # one JSON document per line when streaming follows
            )
        else:
            caption = f"{PAGE_CAPTION}{page.next_page_token}" if page.next_page_token else None
            # A survivor's timeline holds its duplicates' entries: show whose each one is.
            merged = any(e.customer_id != customer_id for e in entries)
            # Followed, the page reads oldest first, as the entries that arrive after it
            # (newest last, like `tail -f`); else newest first.
            shown = entries[::-1] if args.follow else entries
            with out.paged(args.all and not args.follow):
                out.table(
                    ["occurred at (UTC)", "source", "type", "summary"]
                    + (["recorded under"] if merged else []),
                    [_entry_row(e) + ([e.customer_id] if merged else []) for e in shown],
                    title=f"timeline of {customer_id[:8]}"
                    + (f" as of {short_time(iso_field(request, 'as_of'))}" if args.as_of else ""),
                    caption=caption,
                    no_wrap={"occurred at (UTC)", "type"},
                    drop=["recorded under", "type"],
                )
        if args.follow:
            after = max((e.cursor for e in page.entries), default=0)
            _follow(client, out, args, after)
    return 0


def _follow(client: Client, out: Output, args: argparse.Namespace, after: int) -> None:
    """Stream entries newer than cursor `after` until Ctrl-C (or the server ends the stream)."""
    stream = client.stub("timeline", TimelineServiceStub).WatchTimeline(
        api.WatchTimelineRequest(customer_id=args.customer_id, after_cursor=after)
    )
    if not out.json_mode:
        out.note("following new entries; Ctrl-C to stop")
    try:
        for reply in stream:
            entry = reply.entry
            if entry.cursor <= after or not _matches(entry, args):
                continue
            if out.json_mode:
                out.json(entry_json(entry), compact=True)
            else:
                out.print(
                    Text.assemble(
                        (short_time(iso_field(entry, "occurred_at")), "dim"),
                        "  ",
                        (entry.source, "cyan"),
                        "  ",
                        (entry.type, "bold"),
                        "  ",
                        entry.summary,
                    )
                )
    except KeyboardInterrupt:
        cast("grpc.Future[Any]", stream).cancel()
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:
            raise


# -- profile, search, rebuild -----------------------------------------------------------------


def _profile(args: argparse.Namespace) -> int:
    request = api.GetProfileRequest(
        customer_id=args.customer_id, wait_for=args.wait_for, as_of=args.as_of
    )
    out = Output(args.json)
    with Client(args) as client:
        stub = client.stub("timeline", TimelineServiceStub)
        reply = stub.GetProfile(request, timeout=args.timeout)
        doc = profile_json(reply.profile)
        if out.json_mode:
            out.json(doc)
            return 0
        page = stub.GetTimeline(
            api.GetTimelineRequest(
                customer_id=args.customer_id,
                page_size=profile_view.LATEST_ENTRIES,
                as_of=args.as_of,
            ),
            timeout=args.timeout,
        )
        entries = [entry_json(e) for e in page.entries]
        names = _linked_names(stub, doc, args)
    as_of = iso_field(request, "as_of") if args.as_of else None
    out.print(profile_view.screen(doc, entries, names, as_of))
    if args.provenance:
        out.table(
            ["field", "set by", "occurred at (UTC)", "event"],
            [
                [
                    r["field"],
                    f"{r['source']}: {r['type']}",
                    short_time(r["occurred_at"]),
                    r["event_id"],
                ]
                for r in doc["provenance"]
            ],
            title="where each field came from",
            no_wrap={"occurred at (UTC)", "event"},
        )
    return 0


def _linked_names(
    stub: TimelineServiceStub, doc: dict[str, Any], args: argparse.Namespace
) -> dict[str, str]:
    """The names of the customers on the other side of the current contact-person links (an
    organisation's persons, a person's organisations; their profiles), best effort: one the
    timeline does not know yet is shown by id alone."""
    links = (doc.get("attributes") or {}).get("contact_persons") or {}
    names: dict[str, str] = {}
    for link in list(links.values())[:10]:
        other = link.get("organisation_id" if doc.get("kind") == "person" else "person_id", "")
        if not other or link.get("valid_until") or other in names:
            continue
        try:
            reply = stub.GetProfile(
                api.GetProfileRequest(customer_id=other, as_of=args.as_of),
                timeout=args.timeout,
            )
        except grpc.RpcError:
            continue
        names[other] = reply.profile.display_name
    return names


def _search(args: argparse.Namespace) -> int:
    request = api.SearchCustomersRequest(text=args.text, limit=args.limit)
    with Client(args) as client:
        reply = client.stub("timeline", TimelineServiceStub).SearchCustomers(
            request, timeout=args.timeout
        )
    out = Output(args.json)
    if out.json_mode:
        out.json({"text": args.text, "hits": [hit_json(h) for h in reply.hits]})
    else:
        out.table(
            ["customer", "name", "kind", "matched on"],
            [
                [
                    h.customer_id,
                    h.display_name,
                    h.kind,
                    f"{h.matched_on} of a merged duplicate"
                    if h.merged_customer_id
                    else h.matched_on,
                ]
                for h in reply.hits
            ],
            caption=None if reply.hits else "no customer found",
            no_wrap={"kind", "matched on"},
        )
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    out = Output(args.json)
    last = api.RebuildReadModelResponse()
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out.err,
        transient=args.json,
    )
    with Client(args) as client, progress:
        events = progress.add_task("rebuilding read model", total=None)
        # Once its events are applied: the search columns the replay left to fill.
        search: TaskID | None = None
        for last in client.stub("timeline", TimelineServiceStub).RebuildReadModel(
            api.RebuildReadModelRequest()
        ):
            progress.update(events, completed=last.applied, total=last.total or None)
            if last.profiles_to_index:
                if search is None:
                    search = progress.add_task(
                        "filling search columns", total=last.profiles_to_index
                    )
                progress.update(search, completed=last.profiles_indexed)
            if last.done:
                break
    if out.json_mode:
        out.json(
            {
                "applied": last.applied,
                "total": last.total,
                "profiles_indexed": last.profiles_indexed,
                "profiles_to_index": last.profiles_to_index,
            }
        )
    else:
        filled = (
            f"; search columns of {last.profiles_indexed} of {last.profiles_to_index}"
            " profiles filled"
            if last.profiles_to_index
            else ""
        )
        out.print(f"read model rebuilt: {last.applied} of {last.total} events applied{filled}")
    return 0
