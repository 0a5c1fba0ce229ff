"""`c360 segment ...` and `c360 campaign ...`: live segments and campaigns through the marketing
service's gRPC API."""

from __future__ import annotations

import argparse
import difflib
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.text import Text

from c360.events.v1 import marketing_events_pb2 as mev
from c360.marketing.v1 import marketing_service_pb2 as api
from c360.marketing.v1.marketing_service_pb2_grpc import MarketingServiceStub
from c360_cli.argtypes import whole_in
from c360_cli.client import Client
from c360_cli.commands import PERIOD, Api, Arg, Command, Subparsers, add_commands
from c360_cli.output import JSONValue, Output, iso_field, parse_time, short_time
from c360_cli.words import CliWords
from c360_platform.vocabulary import Words

MARKETING = Api("marketing", MarketingServiceStub, "segment")
CAMPAIGNS = Api("marketing", MarketingServiceStub, "campaign")
CHANNELS = CliWords(Words(mev.MarketingChannel))
CAMPAIGN_ID = Arg("campaign_id", "campaign_id", "the campaign's id", metavar="ID")
REASON = Arg("--reason", "reason", "why (kept with the change)", default="")


def condition_text(text: str) -> str:
    """A condition tree: JSON, or @FILE holding it."""
    if text.startswith("@"):
        try:
            return Path(text[1:]).read_text()
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read {text[1:]}: {exc.strerror}") from None
    return text


CONDITION_HELP = (
    'the condition tree as JSON or @FILE, e.g. \'{"all": [{"field": "country", "value": "LV"},'
    ' {"field": "consent", "channel": "email"}]}\''
)

SEGMENT_COMMANDS = (
    Command(
        "create",
        "define a segment: a named condition tree (everyone is evaluated once)",
        MARKETING,
        "DefineSegment",
        api.DefineSegmentRequest,
        (
            Arg("name", "name", "the segment's name", metavar="NAME"),
            Arg("--condition", "condition", CONDITION_HELP, required=True, type=condition_text),
            Arg("--description", "description", "what it is for", default=""),
        ),
        verb="segment defined",
        shows=("segment_id",),
    ),
    Command(
        "revise",
        "a new version of a segment's condition tree (everyone is evaluated again)",
        MARKETING,
        "ReviseSegment",
        api.ReviseSegmentRequest,
        (
            Arg("segment_id", "segment_id", "the segment's id or name", metavar="SEGMENT"),
            Arg("--condition", "condition", CONDITION_HELP, required=True, type=condition_text),
            Arg("--description", "description", "what it is for", default=""),
        ),
        verb="segment revised",
        expected_version=True,
    ),
)


def _campaign_change(name: str, rpc: str, request: type[Message], verb: str) -> Command:
    return Command(
        name,
        f"{name} a campaign",
        CAMPAIGNS,
        rpc,
        request,
        (CAMPAIGN_ID, REASON),
        verb=verb,
        expected_version=True,
    )


COST_KINDS = ("fixed", "agent_hours", "other")
"""The kinds of a campaign's cost (RecordCampaignCostRequest.kind)."""


def _cost_kind(text: str) -> str:
    """An argparse type: a cost's kind as the CLI writes its words (`agent-hours`), in any case,
    as the request takes it (`agent_hours`)."""
    kind = text.strip().lower().replace("-", "_")
    if kind not in COST_KINDS:
        shown = ", ".join(k.replace("_", "-") for k in COST_KINDS)
        close = difflib.get_close_matches(kind, COST_KINDS, n=1)
        hint = f" (did you mean {close[0].replace('_', '-')}?)" if close else ""
        raise argparse.ArgumentTypeError(f"must be one of {shown}{hint}")
    return kind


CAMPAIGN_COMMANDS = (
    Command(
        "plan",
        "plan a campaign: segments, channel, period, budget",
        CAMPAIGNS,
        "PlanCampaign",
        api.PlanCampaignRequest,
        (
            Arg("name", "name", "the campaign's name", metavar="NAME"),
            Arg("--segment", "segments", "a target segment (id or name)", repeated=True),
            Arg("--channel", "channel", ", ".join(CHANNELS.words), required=True, words=CHANNELS),
            *PERIOD,
            Arg("--budget", "budget.amount", "the budget, e.g. 5000", required=True),
            Arg("--currency", "budget.currency", "ISO 4217 (default EUR)", default="EUR"),
            Arg("--cost-per-send", "cost_per_send", "cost of one send", default=""),
            Arg(
                "--expected-responses",
                "expected_responses",
                "responses the plan expects",
                type=whole_in(0, 10**9),
                default=0,
            ),
            Arg("--objective", "objective", "what it should achieve", default=""),
            Arg("--offer", "offer", "the offer it makes", default=""),
            Arg(
                "--frequency-cap",
                "frequency_cap",
                "at most N touches per customer on the channel per period (0: none)",
                type=whole_in(0, 1000),
                default=0,
            ),
            Arg(
                "--frequency-days",
                "frequency_days",
                "the period of the cap in days (default 30)",
                type=whole_in(0, 366),
                default=30,
            ),
            Arg(
                "--trigger",
                "trigger",
                "send by itself: registration_anniversary or overdue_invoice",
                default="",
            ),
            Arg(
                "--purpose",
                "purpose",
                "consent purpose checked: marketing (default) or service (reminders)",
                default="",
            ),
        ),
        verb="campaign planned",
        shows=("campaign_id",),
    ),
    _campaign_change("approve", "ApproveCampaign", api.ApproveCampaignRequest, "approved"),
    _campaign_change("pause", "PauseCampaign", api.PauseCampaignRequest, "paused"),
    _campaign_change("resume", "ResumeCampaign", api.ResumeCampaignRequest, "resumed"),
    _campaign_change("complete", "CompleteCampaign", api.CompleteCampaignRequest, "completed"),
    _campaign_change("cancel", "CancelCampaign", api.CancelCampaignRequest, "cancelled"),
    Command(
        "cost",
        "record a cost against a campaign (fixed, agent-hours, other)",
        CAMPAIGNS,
        "RecordCampaignCost",
        api.RecordCampaignCostRequest,
        (
            CAMPAIGN_ID,
            Arg("--kind", "kind", "fixed, agent-hours or other", default="fixed", type=_cost_kind),
            Arg("--amount", "amount", "in the campaign's currency", required=True),
            Arg("--note", "note", "what it was for", default=""),
        ),
        verb="cost recorded",
        expected_version=True,
    ),
)


LEAD_LIST_COMMANDS = (
    Command(
        "build",
        "a campaign's responders (or a segment's members) as leads for sales",
        Api("marketing", MarketingServiceStub, "lead list"),
        "BuildLeadList",
        api.BuildLeadListRequest,
        (
            Arg("name", "name", "the list's name", metavar="NAME"),
            Arg("--campaign", "campaign_id", "the campaign the leads come from", required=True),
            Arg("--segment", "segment", "its members instead of the responders", default=""),
        ),
        verb="lead list built",
        shows=("lead_list_id",),
    ),
)


CALL_LIST = Api("marketing", MarketingServiceStub, "call list")
CALL_LIST_COMMANDS = (
    Command(
        "build",
        "share a phone campaign's audience (who may be called now) among agents",
        CALL_LIST,
        "BuildCallList",
        api.BuildCallListRequest,
        (
            Arg("name", "name", "the list's name", metavar="NAME"),
            Arg("--campaign", "campaign_id", "the phone campaign", required=True),
            Arg("--agent", "agents", "an agent's employee id (repeatable)", repeated=True),
        ),
        verb="call list built",
        shows=("call_list_id",),
    ),
    Command(
        "record",
        "record a call: reached, no_answer, call_back, not_interested, interested (-> lead)",
        CALL_LIST,
        "RecordCall",
        api.RecordCallRequest,
        (
            Arg("call_list_id", "call_list_id", "the call list's id", metavar="ID"),
            Arg("customer_id", "customer_id", "the customer called", metavar="CUSTOMER"),
            Arg("--agent", "agent_id", "who called (employee id)", required=True),
            Arg(
                "--outcome",
                "outcome",
                "reached, no_answer, call_back, not_interested or interested",
                required=True,
            ),
            Arg("--call-back-at", "call_back_at", "when to call back", type=parse_time),
            Arg("--note", "note", "what was said", default=""),
        ),
        verb="call recorded",
        shows=("lead_id",),
    ),
)


# -- JSON ---------------------------------------------------------------------------------------


def _message_json(message: Message) -> dict[str, JSONValue]:
    found: dict[str, JSONValue] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return found


def segment_json(s: api.Segment) -> dict[str, JSONValue]:
    doc = _message_json(s)
    doc["condition"] = json.loads(s.condition) if s.condition else None
    return doc


def campaign_json(c: api.Campaign) -> dict[str, JSONValue]:
    doc = _message_json(c)
    doc["channel"] = CHANNELS.word(c.channel)
    return doc


# -- reads and sends ----------------------------------------------------------------------------


def _stub(client: Client) -> Any:
    return client.stub("marketing", MarketingServiceStub)


def _progress(args: argparse.Namespace, client: Client, segment: str) -> api.Segment:
    """Wait until everyone is evaluated on the current version, showing progress."""
    out = Output(args.json)
    deadline = time.monotonic() + args.timeout
    while True:
        s = _stub(client).GetSegment(api.GetSegmentRequest(segment=segment), timeout=args.timeout)
        seg: api.Segment = s.segment
        if not out.json_mode:
            out.note(f"evaluated {seg.evaluated}/{seg.profiles} profiles, {seg.members} members")
        if seg.evaluated >= seg.profiles or time.monotonic() > deadline:
            return seg
        time.sleep(0.25)


def _show_segment(out: Output, s: api.Segment) -> None:
    out.kv_panel(
        f"segment {s.name}",
        [
            ("id", s.segment_id),
            ("version", s.version),
            ("members", s.members),
            ("evaluated", f"{s.evaluated}/{s.profiles} profiles"),
            ("description", s.description),
            ("condition", Text(json.dumps(json.loads(s.condition), ensure_ascii=False, indent=1))),
            ("defined", short_time(iso_field(s, "defined_at"))),
            ("revised", short_time(iso_field(s, "revised_at"))),
        ],
    )


def _segment_show(args: argparse.Namespace) -> int:
    out = Output(args.json)
    with Client(args) as client:
        if args.wait:
            seg = _progress(args, client, args.segment)
        else:
            seg = (
                _stub(client)
                .GetSegment(api.GetSegmentRequest(segment=args.segment), timeout=args.timeout)
                .segment
            )
    if out.json_mode:
        out.json(segment_json(seg))
    else:
        _show_segment(out, seg)
    return 0


def _segment_list(args: argparse.Namespace) -> int:
    out = Output(args.json)
    with Client(args) as client:
        reply = _stub(client).ListSegments(api.ListSegmentsRequest(), timeout=args.timeout)
    if out.json_mode:
        out.json({"segments": [segment_json(s) for s in reply.segments]})
        return 0
    out.table(
        ["id", "name", "version", "members", "evaluated"],
        [
            [s.segment_id, s.name, s.version, s.members, f"{s.evaluated}/{s.profiles}"]
            for s in reply.segments
        ],
        caption=None if reply.segments else "no segment yet",
    )
    return 0


def _segment_preview(args: argparse.Namespace) -> int:
    out = Output(args.json)
    with Client(args) as client:
        reply = _stub(client).PreviewSegment(
            api.PreviewSegmentRequest(condition=args.condition, sample_size=args.sample),
            timeout=args.timeout,
        )
    if out.json_mode:
        out.json(_message_json(reply))
        return 0
    out.table(
        ["id", "name"],
        [[m.customer_id, m.display_name] for m in reply.sample],
        title=f"{reply.size} of {reply.profiles} profiles match"
        + (
            f"; a sample of {len(reply.sample)} (--sample N for more)"
            if len(reply.sample) < reply.size
            else ""
        ),
    )
    return 0


def _segment_members(args: argparse.Namespace) -> int:
    out = Output(args.json)
    request = api.ListMembersRequest(segment=args.segment, limit=args.limit)
    if args.as_of is not None:
        request.as_of.CopyFrom(args.as_of)
    with Client(args) as client:
        reply = _stub(client).ListMembers(request, timeout=args.timeout)
    if out.json_mode:
        out.json(_message_json(reply))
        return 0
    when = f" as of {short_time(iso_field(request, 'as_of'))}" if args.as_of else ""
    out.table(
        ["id", "name", "since (UTC)", "entered on"],
        [
            [m.customer_id, m.display_name, short_time(iso_field(m, "since")), m.condition]
            for m in reply.members
        ],
        # "250 members" over the first 100 read as if those were all of them.
        title=f"{reply.total} members{when}"
        + (
            f", the first {len(reply.members)} listed (--limit)"
            if len(reply.members) < reply.total
            else ""
        ),
        no_wrap={"since (UTC)"},
    )
    return 0


def _segment_why(args: argparse.Namespace) -> int:
    out = Output(args.json)
    request = api.ExplainMembershipRequest(segment=args.segment, customer_id=args.customer_id)
    if args.as_of is not None:
        request.as_of.CopyFrom(args.as_of)
    with Client(args) as client:
        reply = _stub(client).ExplainMembership(request, timeout=args.timeout)
    if out.json_mode:
        out.json(_message_json(reply))
        return 0
    if not reply.evaluated and not reply.conditions and args.as_of is None:
        # Marketing holds no profile of the customer: an id it never saw (a typo), or one
        # registered within the last seconds. An empty table said nothing of this.
        out.print(
            Text(
                f"not evaluated: marketing has no profile of customer {request.customer_id}"
                " (yet: a new customer's comes within seconds; else check the id)",
                style="yellow",
            )
        )
        return 0
    if not reply.evaluated:
        out.print(Text("never evaluated for this segment (then)", style="yellow"))
    elif not reply.HasField("since"):
        out.print(
            Text.assemble(
                ("never a member", "bold red"),
                f": kept out by “{reply.condition}” ({reply.condition_path},"
                f" version {reply.segment_version})",
            )
        )
    else:
        state = "member" if reply.member else "not a member"
        verb = "entered" if reply.member else "left"
        # No path for a customer forgotten or merged away: "(customer forgotten, version 1)".
        how = ", ".join(x for x in (reply.condition_path, reply.cause.replace("_", " ")) if x)
        out.print(
            Text.assemble(
                (state, "bold green" if reply.member else "bold red"),
                f" since {short_time(iso_field(reply, 'since'))}: {verb} on “{reply.condition}”"
                f" ({how}, version {reply.segment_version})",
            )
        )
    out.table(
        ["condition", "holds", "profile has"],
        [[c.condition, c.holds, c.actual] for c in reply.conditions],
        title="each condition on the profile now",
    )
    return 0


def _round_json(r: api.SendRound) -> dict[str, JSONValue]:
    return _message_json(r)


def _print_round(out: Output, r: api.SendRound) -> None:
    excluded = ", ".join(f"{e.reason.replace('_', ' ')} {e.count}" for e in r.exclusions)
    out.print(
        f"audience {r.audience}, sent {r.sent}" + (f"; excluded: {excluded}" if excluded else "")
    )


def _send(args: argparse.Namespace) -> int:
    launch = args.campaign_command == "launch"
    kind = api.LaunchCampaignRequest if launch else api.SendCampaignRequest
    request = kind(request_id=args.request_id, campaign_id=args.campaign_id)
    with Client(args) as client:
        stub = _stub(client)
        method = stub.LaunchCampaign if launch else stub.SendCampaign
        reply = method(request, timeout=args.timeout)
        phone = False
        if launch and not reply.round.audience and not args.json:
            got = stub.GetCampaign(
                api.GetCampaignRequest(campaign_id=args.campaign_id), timeout=args.timeout
            )
            phone = got.campaign.channel == mev.MARKETING_CHANNEL_PHONE
    out = Output(args.json)
    if out.json_mode:
        out.json({"result": _message_json(reply.result), "round": _round_json(reply.round)})
        return 0
    out.result("launched" if launch else "sent", reply.result, "campaign")
    if phone:  # a launch sends nothing: the audience is called
        out.print("a phone campaign: its audience is called from call lists (c360 calllist build)")
    else:
        _print_round(out, reply.round)
    return 0


def _campaign_show(args: argparse.Namespace) -> int:
    out = Output(args.json)
    with Client(args) as client:
        c = (
            _stub(client)
            .GetCampaign(api.GetCampaignRequest(campaign_id=args.campaign_id), timeout=args.timeout)
            .campaign
        )
        if out.json_mode:
            out.json(campaign_json(c))
            return 0
        # The segments by name, as `campaign plan --segment` took them (their ids said nothing).
        listed = _stub(client).ListSegments(api.ListSegmentsRequest(), timeout=args.timeout)
    names = {s.segment_id: s.name for s in listed.segments}
    currency = c.budget.currency
    out.kv_panel(
        f"campaign {c.name}",
        [
            ("id", c.campaign_id),
            ("state", f"{c.state} ({c.state_reason})" if c.state_reason else c.state),
            ("channel", CHANNELS.word(c.channel)),
            ("purpose", c.purpose + (f", sent by itself on {c.trigger}" if c.trigger else "")),
            ("objective", c.objective),
            ("segments", ", ".join(names.get(i, i) for i in c.segment_ids)),
            ("period", f"{c.starts_on} to {c.ends_on}"),
            ("budget", f"{c.budget.amount} {currency}; {_budget_left(c)}"),
            ("cost so far", f"{c.actual_cost} {currency} ({c.sent} sends)"),
            ("cost per send", f"{c.cost_per_send or '0'} {currency}"),
            ("frequency cap", _frequency_cap(c)),
            ("expected responses", c.expected_responses),
            ("offer", c.offer),
            ("version", c.version),
        ],
    )
    if c.costs:
        # What "cost so far" holds beside the sends: each cost recorded, as `campaign cost`.
        out.table(
            ["recorded (UTC)", "kind", f"amount ({currency})", "note"],
            [
                [short_time(iso_field(x, "at")), x.kind.replace("_", " "), x.amount, x.note]
                for x in c.costs
            ],
            title="recorded costs",
            no_wrap={"recorded (UTC)"},
        )
    for r in c.rounds:
        out.print(Text(f"round {short_time(iso_field(r, 'at'))}", style="bold"))
        _print_round(out, r)
    return 0


def _budget_left(c: api.Campaign) -> str:
    """ "55.00 EUR left", or "51.90 EUR over" when the costs passed the budget."""
    try:
        left = Decimal(c.budget.amount or "0") - Decimal(c.actual_cost or "0")
    except ArithmeticError:
        return ""
    if left < 0:
        return f"{-left:.2f} {c.budget.currency} over"
    return f"{left:.2f} {c.budget.currency} left"


def _unspent(c: api.Campaign) -> str:
    try:
        return f"{Decimal(c.budget.amount or '0') - Decimal(c.actual_cost or '0'):.2f}"
    except ArithmeticError:
        return ""


def _frequency_cap(c: api.Campaign) -> str:
    if not c.frequency_cap:
        return "none"
    return f"{c.frequency_cap} on {CHANNELS.word(c.channel)} in {c.frequency_days} days"


def _campaign_list(args: argparse.Namespace) -> int:
    out = Output(args.json)
    with Client(args) as client:
        reply = _stub(client).ListCampaigns(api.ListCampaignsRequest(), timeout=args.timeout)
    if out.json_mode:
        out.json({"campaigns": [campaign_json(c) for c in reply.campaigns]})
        return 0
    out.table(
        ["id", "name", "state", "channel", "sent", "cost", "unspent"],
        [
            [
                c.campaign_id,
                c.name,
                c.state,
                CHANNELS.word(c.channel),
                c.sent,
                f"{c.actual_cost} {c.budget.currency}",
                # The budget less the cost ("-51.90": over budget), as campaign show says.
                _unspent(c),
            ]
            for c in reply.campaigns
        ],
        caption=None if reply.campaigns else "no campaign yet",
    )
    return 0


def print_results(out: Output, reply: api.CampaignResultsResponse, by: str) -> None:
    """What the sends became, then what they cost and earned: two tables, so that every
    count (failed and bounced apart) keeps a readable header in 80 columns."""
    rows = [reply.total, *reply.rows]
    out.table(
        [by or "", "sent", "fail", "bounce", "deliv", "open", "click", "resp", "unsub", "conv"],
        [
            [
                r.key,
                r.sent,
                r.failed,
                r.bounced,
                r.delivered,
                r.opened,
                r.clicked,
                r.responded,
                r.unsubscribed,
                r.converted,
            ]
            for r in rows
        ],
        title=f"budget {reply.budget} {reply.currency}, expected responses"
        f" {reply.expected_responses}",
    )
    out.table(
        [
            by or "",
            f"revenue ({reply.currency})",
            "cost",
            "cost/resp",
            "cost/conv",
            "conv %",
            "ROI",
        ],
        [
            [
                r.key,
                r.revenue,
                r.cost,
                r.cost_per_response,
                r.cost_per_conversion,
                _percent(r.conversion_rate),
                r.roi,
            ]
            for r in rows
        ],
    )


def _percent(rate: str) -> str:
    """ "0.0556" -> "5.6" ("" stays "")."""
    return f"{float(rate) * 100:.1f}" if rate else ""


def _campaign_results(args: argparse.Namespace) -> int:
    out = Output(args.json)
    with Client(args) as client:
        reply = _stub(client).CampaignResults(
            api.CampaignResultsRequest(campaign_id=args.campaign_id, by=args.by),
            timeout=args.timeout,
        )
    if out.json_mode:
        out.json(_message_json(reply))
        return 0
    print_results(out, reply, args.by)
    if reply.calls:  # a phone campaign's calls from its call lists
        outcomes = ", ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in sorted(reply.call_outcomes.items())
        )
        out.print(f"calls {reply.calls}: {outcomes}")
    if reply.forecast_basis:
        out.print(
            f"forecast: {reply.forecast_responses:.1f} responses, {reply.forecast_revenue}"
            f" {reply.currency} revenue ({reply.forecast_basis})"
        )
    return 0


def _print_lead_list(out: Output, x: api.LeadList) -> None:
    handed = sum(1 for e in x.entries if e.lead_id)
    passed = [e for e in x.entries if e.passed_over]
    out.table(
        ["customer", "name", "territory", "lead", "agent"],
        [
            [e.customer_id, e.name, e.territory, e.lead_id or _passed(e), e.agent_id]
            for e in x.entries
        ],
        title=f"lead list {x.name}: {handed}/{len(x.entries)} handed to sales"
        + (f", {len(passed)} passed over" if passed else ""),
    )
    for e in passed:  # sales' refusal, as it gave it
        out.print(Text(f"passed over {e.customer_id}: {e.passed_over}"))


def _passed(e: api.LeadListEntry) -> str:
    return "passed over" if e.passed_over else ""


def _lead_list_distribute(args: argparse.Namespace) -> int:
    request = api.DistributeLeadListRequest(
        request_id=args.request_id,
        lead_list_id=args.lead_list_id,
        team=args.team,
        rule=args.rule.replace("-", "_"),
    )
    with Client(args) as client:
        reply = _stub(client).DistributeLeadList(request, timeout=args.timeout)
    out = Output(args.json)
    if out.json_mode:
        out.json(_message_json(reply))
    else:
        _print_lead_list(out, reply.lead_list)
    return 0


def _call_list_show(args: argparse.Namespace) -> int:
    with Client(args) as client:
        reply = _stub(client).GetCallList(
            api.GetCallListRequest(call_list_id=args.call_list_id), timeout=args.timeout
        )
    out = Output(args.json)
    if out.json_mode:
        out.json(_message_json(reply))
        return 0
    x = reply.call_list
    called = sum(1 for e in x.entries if e.outcome)
    out.table(
        ["customer", "name", "agent", "outcome", "call back (UTC)"],
        [
            [
                e.customer_id,
                e.name,
                e.agent_id,
                e.outcome.replace("_", " ") or "not called yet",
                short_time(iso_field(e, "call_back_at")),
            ]
            for e in x.entries
        ],
        title=f"call list {x.name}: {called}/{len(x.entries)} called, {x.calls} calls",
        no_wrap={"call back (UTC)"},
    )
    return 0


def _lead_list_show(args: argparse.Namespace) -> int:
    with Client(args) as client:
        reply = _stub(client).GetLeadList(
            api.GetLeadListRequest(lead_list_id=args.lead_list_id), timeout=args.timeout
        )
    out = Output(args.json)
    if out.json_mode:
        out.json(_message_json(reply))
    else:
        _print_lead_list(out, reply.lead_list)
    return 0


def _next_call(args: argparse.Namespace) -> int:
    with Client(args) as client:
        reply = _stub(client).NextCall(
            api.NextCallRequest(call_list_id=args.call_list_id, agent_id=args.agent),
            timeout=args.timeout,
        )
    out = Output(args.json)
    if out.json_mode:
        out.json(_message_json(reply))
        return 0
    withdrawn = (
        f"; {reply.withdrawn} no longer to be called (consent revoked)" if reply.withdrawn else ""
    )
    if not reply.HasField("entry"):
        out.print(f"nothing to call: {reply.remaining} open{withdrawn}")
        return 0
    e = reply.entry
    out.kv_panel(
        f"call {e.name or e.customer_id}",
        [
            ("customer", e.customer_id),
            ("phone", e.phone),
            ("last outcome", e.outcome or "not called yet"),
            ("call back at", short_time(iso_field(e, "call_back_at"))),
            ("still to call", f"{reply.remaining}{withdrawn}"),
        ],
    )
    return 0


def _offers(args: argparse.Namespace) -> int:
    with Client(args) as client:
        reply = _stub(client).GetOffers(
            api.GetOffersRequest(customer_id=args.customer_id, limit=args.limit),
            timeout=args.timeout,
        )
    out = Output(args.json)
    if out.json_mode:
        out.json(_message_json(reply))
        return 0
    channels = ", ".join(reply.reachable_by) or "none: no marketing consent"
    if not reply.offers:  # a line of its own: an empty table's caption wraps to its width
        out.print(f"marketing allowed by: {channels}")
        out.print(f"no offer: {reply.no_offer_reason or 'none found'}")
        return 0
    out.table(
        ["product", "confidence", "why"],
        [[o.sku, f"{o.confidence:.0%}", o.reason] for o in reply.offers],
        title=f"offers (marketing allowed by: {channels})",
    )
    return 0


# -- the command tree ---------------------------------------------------------------------------


def register(subparsers: Subparsers) -> None:
    """Add `segment`, `campaign`, `leadlist`, `calllist` and `offers`."""
    p = subparsers.add_parser(
        "offers",
        help="one-to-one offers for a customer, with the reason",
        description="Products the customer lacks, ranked from what similar buyers bought.",
    )
    p.add_argument("customer_id", metavar="CUSTOMER", help="the customer's id")
    p.add_argument("--limit", type=whole_in(1, 20), default=5, metavar="N", help="default 5")
    p.set_defaults(func=_offers)
    parser = subparsers.add_parser(
        "calllist",
        help="telemarketing call lists: build, next call, record the outcome",
        description="Call lists: a phone campaign's audience shared among agents.",
    )
    sub = parser.add_subparsers(title="commands", dest="calllist_command", metavar="COMMAND")
    sub.required = True
    add_commands(sub, CALL_LIST_COMMANDS, {})
    p = sub.add_parser("next", help="an agent's next call", description="An agent's next call.")
    p.add_argument("call_list_id", metavar="ID", help="the call list's id")
    p.add_argument("--agent", required=True, help="the agent's employee id")
    p.set_defaults(func=_next_call)
    p = sub.add_parser(
        "show",
        help="a call list: each customer's agent and latest outcome",
        description="A call list: who is on it, whose list, the latest outcome of each.",
    )
    p.add_argument("call_list_id", metavar="ID", help="the call list's id")
    p.set_defaults(func=_call_list_show)

    parser = subparsers.add_parser(
        "leadlist",
        help="lead lists for sales: build from a campaign, distribute to agents",
        description="Lead lists: a campaign's responders handed to sales agents as leads.",
    )
    sub = parser.add_subparsers(title="commands", dest="leadlist_command", metavar="COMMAND")
    sub.required = True
    add_commands(sub, LEAD_LIST_COMMANDS, {})
    p = sub.add_parser(
        "distribute",
        help="hand every entry to sales as a lead, assigned within a team by a rule",
        description="Each entry becomes a lead in the sales service (channel campaign).",
    )
    p.add_argument("lead_list_id", metavar="ID", help="the lead list's id")
    p.add_argument("--team", required=True, help="the sales team whose agents get the leads")
    p.add_argument(
        "--rule",
        type=lambda text: text.replace("_", "-"),
        choices=("round-robin", "territory", "capacity"),
        default="round-robin",
        help="how sales assigns them (default round-robin)",
    )
    p.add_argument("--request-id", default="", metavar="ID", help="idempotency key")
    p.set_defaults(func=_lead_list_distribute)
    p = sub.add_parser("show", help="a lead list with each entry's lead and agent")
    p.add_argument("lead_list_id", metavar="ID", help="the lead list's id")
    p.set_defaults(func=_lead_list_show)

    parser = subparsers.add_parser(
        "segment",
        help="live segments: define, preview, members, why",
        description="Segments: named, versioned condition trees over the 360 profile.",
    )
    sub = parser.add_subparsers(title="commands", dest="segment_command", metavar="COMMAND")
    sub.required = True
    add_commands(sub, SEGMENT_COMMANDS, {})
    p = sub.add_parser("show", help="show a segment (id or name)", description="Show a segment.")
    p.add_argument("segment", metavar="SEGMENT", help="id or name")
    p.add_argument("--wait", action="store_true", help="until everyone is evaluated (progress)")
    p.set_defaults(func=_segment_show)
    p = sub.add_parser("list", help="list segments", description="List segments.")
    p.set_defaults(func=_segment_list)
    p = sub.add_parser(
        "preview",
        help="size and sample of a condition tree, nothing saved",
        description="Preview a condition tree: how many profiles match, and a sample.",
    )
    p.add_argument("--condition", required=True, type=condition_text, help=CONDITION_HELP)
    p.add_argument("--sample", type=whole_in(0, 100), default=10, metavar="N", help="sample size")
    p.set_defaults(func=_segment_preview)
    p = sub.add_parser("members", help="a segment's members, now or --as-of a time")
    p.add_argument("segment", metavar="SEGMENT", help="id or name")
    p.add_argument("--as-of", type=parse_time, metavar="TIME", help="membership then")
    p.add_argument(
        "--limit", type=whole_in(1, 1000), default=100, metavar="N", help="at most N (default 100)"
    )
    p.set_defaults(func=_segment_members)
    p = sub.add_parser("why", help="why a customer is (not) in a segment")
    p.add_argument("segment", metavar="SEGMENT", help="id or name")
    p.add_argument("customer_id", metavar="CUSTOMER", help="the customer's id")
    p.add_argument("--as-of", type=parse_time, metavar="TIME", help="membership then")
    p.set_defaults(func=_segment_why)

    parser = subparsers.add_parser(
        "campaign",
        help="plan, approve, launch and follow campaigns",
        description="Campaigns: consent checked at each send, budgets, results.",
    )
    sub = parser.add_subparsers(title="commands", dest="campaign_command", metavar="COMMAND")
    sub.required = True
    add_commands(sub, CAMPAIGN_COMMANDS, {})
    for name, help_text in (
        ("launch", "launch an approved campaign: send to its audience now"),
        ("send", "send a running campaign to members not reached yet"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("campaign_id", metavar="ID", help="the campaign's id")
        p.add_argument("--request-id", default="", metavar="ID", help="idempotency key")
        p.set_defaults(func=_send)
    p = sub.add_parser("show", help="show a campaign with its rounds")
    p.add_argument("campaign_id", metavar="ID", help="the campaign's id")
    p.set_defaults(func=_campaign_show)
    p = sub.add_parser("list", help="list campaigns, newest first")
    p.set_defaults(func=_campaign_list)
    p = sub.add_parser(
        "results",
        help="sent, failed (the provider could not send), bounced (refused), delivered,"
        " opened, clicked, responded, unsubscribed, converted; revenue, cost and ROI",
    )
    p.add_argument("campaign_id", metavar="ID", help="the campaign's id")
    p.add_argument(
        "--by",
        choices=("", "segment", "region", "channel", "product"),
        default="",
        help="a breakdown (product: the offer each touch made)",
    )
    p.set_defaults(func=_campaign_results)
