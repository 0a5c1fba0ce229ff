"""The CLI's command table and vocabulary, checked against the registry and the contract."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from c360.customer.v1 import customer_service_pb2 as customer_api
from c360.events.v1 import customer_events_pb2 as customer_events
from c360.events.v1 import marketing_events_pb2 as marketing_events
from c360.events.v1 import ticket_events_pb2 as ticket_events
from c360.marketing.v1 import marketing_service_pb2 as marketing_api
from c360.service_desk.v1 import service_desk_service_pb2 as desk_api
from c360_cli import customer_cmds, marketing_cmds, sales_cmds, ticket_cmds, visit_cmds
from c360_cli.commands import Command
from c360_cli.main import build_parser
from c360_cli.words import INTERACTION_KINDS, TICKET_CHANNELS
from c360_platform import registry

COMMANDS = [*customer_cmds.COMMANDS, *ticket_cmds.COMMANDS]


class _Recorder:
    """A channel that only records the method paths a stub asks it for."""

    def __init__(self) -> None:
        self.paths: set[str] = set()

    def _record(self, path: str, *args: Any, **kwargs: Any) -> None:
        self.paths.add(path)

    unary_unary = unary_stream = stream_unary = stream_stream = _record


def _has_path(message: Any, path: str) -> bool:
    *outer, last = path.split(".")
    for name in outer:
        field = message.fields_by_name.get(name)
        if field is None or field.message_type is None:
            return False
        message = field.message_type
    return last in message.fields_by_name


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.path)
def test_each_command_matches_its_service_and_request(command: Command) -> None:
    spec = registry.service(command.api.service)
    channel = _Recorder()
    command.api.stub(channel)  # type: ignore[arg-type]
    assert f"/{spec.api}/{command.rpc}" in channel.paths
    request = command.request.DESCRIPTOR
    for arg in command.args:
        assert _has_path(request, arg.field), f"{request.full_name} has no {arg.field}"
    if command.request_id:
        assert "request_id" in request.fields_by_name
    if command.expected_version:
        assert "expected_version" in request.fields_by_name


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def _command(args: argparse.Namespace) -> Command:
    command = args.func.__self__
    assert isinstance(command, Command)
    return command


def test_every_argument_has_help() -> None:
    def walk(parser: argparse.ArgumentParser, path: str) -> list[str]:
        missing = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    missing += walk(child, f"{path} {name}")
            elif not action.help:
                missing.append(f"{path} {action.option_strings or action.dest}")
        return missing

    assert walk(build_parser(), "c360") == []


def test_a_command_builds_its_request_with_nested_fields_and_versions() -> None:
    args = _parse(
        "customer", "address", "add", "C1", "--line", "Hauptstr. 1", "--line", "Hof",
        "--city", "Köln", "--country", "DE", "--expected-version", "3",
    )  # fmt: skip
    assert _command(args).build(args) == customer_api.AddPostalAddressRequest(
        customer_id="C1",
        expected_version=3,
        address=customer_events.PostalAddress(
            lines=["Hauptstr. 1", "Hof"], city="Köln", country="DE"
        ),
    )


def test_enum_options_take_words() -> None:
    args = _parse(
        "customer", "consent", "grant", "C1", "--channel", "sms", "--purpose", "service",
        "--source", "app", "--request-id", "r1",
    )  # fmt: skip
    assert _command(args).build(args) == customer_api.GrantConsentRequest(
        request_id="r1",
        customer_id="C1",
        channel=customer_events.CONSENT_CHANNEL_SMS,
        purpose=customer_events.CONSENT_PURPOSE_SERVICE,
        source="app",
    )
    args = _parse("ticket", "note", "T1", "--kind", "Inbound_Call", "--duration", "60")
    request = _command(args).build(args)
    assert request == desk_api.RecordInteractionRequest(
        ticket_id="T1", kind=ticket_events.INTERACTION_KIND_INBOUND_CALL, duration_seconds=60
    )
    verb = _command(args).verb
    assert not isinstance(verb, str)
    assert verb(request) == "inbound call recorded"


def test_the_cli_spells_the_platform_words_with_dashes() -> None:
    assert TICKET_CHANNELS.words[4] == "web-form"
    assert TICKET_CHANNELS.word(ticket_events.TICKET_CHANNEL_IN_PERSON) == "in-person"
    assert TICKET_CHANNELS.value("web-form") == ticket_events.TICKET_CHANNEL_WEB_FORM
    assert TICKET_CHANNELS.parse("WEB_FORM") == "web-form"
    assert TICKET_CHANNELS.word(0) == ""
    assert INTERACTION_KINDS.word(ticket_events.INTERACTION_KIND_INTERNAL_NOTE) == "note"
    assert INTERACTION_KINDS.value("note") == ticket_events.INTERACTION_KIND_INTERNAL_NOTE
    with pytest.raises(argparse.ArgumentTypeError, match="must be one of phone, ivr"):
        TICKET_CHANNELS.parse("pigeon")


def test_every_option_of_every_command_has_help() -> None:
    import argparse

    from c360_cli.main import build_parser

    def missing(parser: argparse.ArgumentParser, path: str) -> list[str]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    found += missing(child, f"{path} {name}")
            elif not action.help and action.dest != "help":
                found.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
        return found

    assert missing(build_parser(), "c360") == []


def test_a_refusal_names_the_commands_options_not_their_request_fields() -> None:
    [ticket_open] = [c for c in ticket_cmds.COMMANDS if c.rpc == "OpenTicket"]
    said = (
        "no customer 00000000-0000-4000-8000-00000000abcd: check the id, or set"
        " allow_unknown_customer to open a ticket for a customer not registered yet"
    )
    assert ticket_open.in_options(said) == said.replace(
        "allow_unknown_customer", "--allow-unknown-customer"
    )
    # One-word fields read as words: "email: not a valid address" stays as it is.
    [register] = [c for c in customer_cmds.COMMANDS if c.rpc == "RegisterCustomer"]
    assert register.in_options("email: not a valid address") == "email: not a valid address"


def test_a_refusal_names_the_option_of_a_nested_or_renamed_field() -> None:
    [opportunity_open] = [c for c in sales_cmds.OPPORTUNITY_COMMANDS if c.rpc == "OpenOpportunity"]
    said = "amount.amount: must be a decimal number such as 1250.00\namount.currency: not ISO"
    assert opportunity_open.in_options(said) == (
        "--amount: must be a decimal number such as 1250.00\n--currency: not ISO"
    )
    [quote_add] = [c for c in sales_cmds.QUOTE_COMMANDS if c.rpc == "AddQuoteLine"]
    assert quote_add.in_options("quantity: must be more than zero") == (
        "--qty: must be more than zero"
    )
    [plan] = [c for c in marketing_cmds.CAMPAIGN_COMMANDS if c.rpc == "PlanCampaign"]
    assert plan.in_options("budget.amount: not a number") == "--budget: not a number"
    # A repeated option's value by its index: it read "segments[0]: no such segment".
    assert plan.in_options("segments[1]: no segment 'nosuch' (a segment's name or id)") == (
        "--segment: no segment 'nosuch' (a segment's name or id)"
    )


def test_an_option_a_refusal_recommends_is_one_the_command_has() -> None:
    """The service desk refuses an unknown customer with "set allow_unknown_customer"."""
    for command in (*ticket_cmds.COMMANDS, *visit_cmds.COMMANDS):
        fields = {arg.field for arg in command.args}
        if "customer_id" in fields and command.rpc in ("OpenTicket", "CreateWorkOrder"):
            said = command.in_options("or set allow_unknown_customer to record it anyway")
            assert said == "or set --allow-unknown-customer to record it anyway", command.path
    parser = build_parser(["visit", "create"])
    args = parser.parse_args(
        ["visit", "create", "--customer", "c135", "--summary", "x", "--allow-unknown-customer"]
    )
    assert args.allow_unknown_customer is True


def test_a_campaign_cost_kind_is_written_as_the_cli_writes_words() -> None:
    args = _parse("campaign", "cost", "C1", "--kind", "Agent-Hours", "--amount", "120")
    assert _command(args).build(args) == marketing_api.RecordCampaignCostRequest(
        campaign_id="C1", kind="agent_hours", amount="120", note=""
    )
    with pytest.raises(SystemExit):
        _parse("campaign", "cost", "C1", "--kind", "hours", "--amount", "1")


def test_sales_json_leaves_an_unset_enum_empty_and_a_panel_shows_money_as_an_amount() -> None:
    from c360.events.v1 import sales_events_pb2 as lev
    from c360.events.v1 import sales_price_list_events_pb2 as prev
    from c360.sales.v1 import sales_service_pb2 as sapi

    lead = sapi.Lead(
        lead_id="l-1",
        state=lev.LEAD_STATE_NEW,
        estimated_value=lev.SalesMoney(currency="EUR", amount="5000"),
    )
    doc = sales_cmds.as_json(lead)
    assert (doc["state"], doc["disqualify_reason"]) == ("new", "")
    assert sales_cmds.as_json(prev.PriceRule(scope=prev.PRICE_SCOPE_ALL))["base"] == ""
    assert sales_cmds._amount(doc["estimated_value"]) == "5000 EUR"


def test_the_forecast_categories_offered_are_those_an_agent_may_set() -> None:
    """Won and lost come with winning and losing: UpdateOpportunity refuses them."""
    offered = [
        arg.help
        for command in sales_cmds.OPPORTUNITY_COMMANDS
        for arg in command.args
        if arg.name == "--category"
    ]
    assert offered == ["pipeline, best-case, commit, omitted"] * 2  # open, update


@pytest.mark.parametrize(
    ("matches", "hint"),
    [
        ([], "no customer it may be: c360 lead convert LEAD --register --pipeline P"),
        (["x"], "convert with: c360 lead convert LEAD --customer ID --pipeline P"),
    ],
)
def test_lead_matches_hints_at_the_conversion_that_fits(
    matches: list[str],
    hint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # With no match it still said "convert with ... --customer ID" over an empty table.
    from c360.sales.v1 import sales_service_pb2 as sapi

    reply = sapi.FindLeadCustomersResponse(
        matches=[
            sapi.LeadCustomerMatch(
                customer_id="2b64b40d-0000-4000-8000-000000000001", display_name="Anna Berg"
            )
            for _ in matches
        ]
    )
    monkeypatch.setattr(sales_cmds, "_call", lambda *_: reply)
    monkeypatch.setenv("COLUMNS", "100")
    args = argparse.Namespace(lead_id="l", json=False)
    assert sales_cmds._lead_matches(args) == 0
    assert capsys.readouterr().out.splitlines()[0].rstrip() == hint


def test_an_import_refusal_names_the_files_columns() -> None:
    # It named the request's fields: "display_name: is required; emails[0]: ..." for a row
    # whose columns are name and email.
    from c360_cli.import_cmd import in_columns

    reason = (
        "display_name: is required; emails[0]: not a valid address; emails[2]: not a valid"
        " address; phones[0]: not a valid phone number; addresses[0].country: must be an ISO"
        " 3166-1 alpha-2 code such as DE; addresses[0].lines[1]: is too long; owner_id: must"
        " be an employee id; kind: must be one of person, organisation"
    )
    assert in_columns(reason) == (
        "name: is required; email: not a valid address; email (value 3): not a valid"
        " address; phone: not a valid phone number; country: must be an ISO 3166-1 alpha-2"
        " code such as DE; address_line (value 2): is too long; owner: must be an employee"
        " id; kind: must be one of person, organisation"
    )


def test_segment_why_says_when_marketing_has_no_profile_of_the_customer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A mistyped customer id gave "never evaluated for this segment (then)" over an empty
    # table of conditions.
    import contextlib

    unknown = "00000000-0000-4000-8000-00000000abcd"
    stub = argparse.Namespace(
        ExplainMembership=lambda *_, **__: marketing_api.ExplainMembershipResponse()
    )
    monkeypatch.setattr(marketing_cmds, "Client", lambda _: contextlib.nullcontext())
    monkeypatch.setattr(marketing_cmds, "_stub", lambda _: stub)
    monkeypatch.setenv("COLUMNS", "100")
    args = argparse.Namespace(
        segment="latvia-high-value", customer_id=unknown, as_of=None, json=False, timeout=5.0
    )
    assert marketing_cmds._segment_why(args) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert shown == (
        f"not evaluated: marketing has no profile of customer {unknown} (yet: a new"
        " customer's comes within seconds; else check the id)"
    )


def test_segment_why_of_a_forgotten_customer_has_no_empty_path(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A customer forgotten (or merged away) left with no condition path: it printed
    # "(, customer forgotten, version 1)".
    import contextlib

    reply = marketing_api.ExplainMembershipResponse(
        evaluated=True,
        member=False,
        condition="the customer was forgotten on request",
        cause="customer_forgotten",
        segment_version=1,
    )
    reply.since.FromJsonString("2026-12-07T22:32:02Z")
    stub = argparse.Namespace(ExplainMembership=lambda *_, **__: reply)
    monkeypatch.setattr(marketing_cmds, "Client", lambda _: contextlib.nullcontext())
    monkeypatch.setattr(marketing_cmds, "_stub", lambda _: stub)
    monkeypatch.setenv("COLUMNS", "100")
    args = argparse.Namespace(
        segment="high-value",
        customer_id="00000000-0000-4000-8000-00000000abcd",
        as_of=None,
        json=False,
        timeout=5.0,
    )
    assert marketing_cmds._segment_why(args) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "on request” (customer forgotten, version 1)" in shown


def test_campaign_show_names_its_segments(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # It listed the segments' ids ("9bd320a7-352e-..."), not the names `--segment` took.
    import contextlib

    segment = "9bd320a7-352e-4564-a8e9-7df64d1697a7"
    campaign = marketing_api.Campaign(name="Ski weeks", segment_ids=[segment])
    stub = argparse.Namespace(
        GetCampaign=lambda *_, **__: marketing_api.GetCampaignResponse(campaign=campaign),
        ListSegments=lambda *_, **__: marketing_api.ListSegmentsResponse(
            segments=[marketing_api.Segment(segment_id=segment, name="latvia-high-value")]
        ),
    )
    monkeypatch.setattr(marketing_cmds, "Client", lambda _: contextlib.nullcontext())
    monkeypatch.setattr(marketing_cmds, "_stub", lambda _: stub)
    monkeypatch.setenv("COLUMNS", "100")
    args = argparse.Namespace(campaign_id="c", json=False, timeout=5.0)
    assert marketing_cmds._campaign_show(args) == 0
    rows = [line.strip("│ ").split(None, 1) for line in capsys.readouterr().out.splitlines()]
    assert ["segments", "latvia-high-value"] in rows


def test_campaign_show_says_how_far_the_costs_are_from_the_budget_and_lists_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # It said "budget 200 EUR", "cost so far 251.90 EUR (38 sends)": over budget, and which
    # recorded cost made it so, the user had to work out (the costs were in --json only), nor
    # did it show the cost per send, the frequency cap or the purpose.
    import contextlib

    campaign = marketing_api.Campaign(
        name="Ski weeks",
        channel=marketing_events.MARKETING_CHANNEL_EMAIL,
        budget=marketing_api.Money(amount="200", currency="EUR"),
        actual_cost="251.90",
        sent=38,
        cost_per_send="0.05",
        frequency_cap=3,
        frequency_days=30,
        purpose="marketing",
        costs=[marketing_api.CampaignCost(kind="fixed", amount="250", note="agency")],
    )
    campaign.costs[0].at.FromJsonString("2026-12-07T22:49:30Z")
    stub = argparse.Namespace(
        GetCampaign=lambda *_, **__: marketing_api.GetCampaignResponse(campaign=campaign),
        ListSegments=lambda *_, **__: marketing_api.ListSegmentsResponse(),
    )
    monkeypatch.setattr(marketing_cmds, "Client", lambda _: contextlib.nullcontext())
    monkeypatch.setattr(marketing_cmds, "_stub", lambda _: stub)
    monkeypatch.setenv("COLUMNS", "100")
    args = argparse.Namespace(campaign_id="c", json=False, timeout=5.0)
    assert marketing_cmds._campaign_show(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 100 for line in lines)
    rows = [" ".join(line.strip("│ ").split()) for line in lines]
    assert "budget 200 EUR; 51.90 EUR over" in rows
    assert "cost per send 0.05 EUR" in rows
    assert "frequency cap 3 on email in 30 days" in rows
    assert "2026-12-07 22:49:30Z fixed 250 agency" in rows


def test_segment_preview_says_when_it_lists_a_sample(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # "14 of 268 profiles match" over ten names read as if those were all of them.
    import contextlib

    sample = [
        marketing_api.MemberSample(customer_id=f"{n:08x}-0000-4000-8000-000000000000")
        for n in range(10)
    ]
    stub = argparse.Namespace(
        PreviewSegment=lambda *_, **__: marketing_api.PreviewSegmentResponse(
            size=14, profiles=268, sample=sample
        )
    )
    monkeypatch.setattr(marketing_cmds, "Client", lambda _: contextlib.nullcontext())
    monkeypatch.setattr(marketing_cmds, "_stub", lambda _: stub)
    monkeypatch.setenv("COLUMNS", "100")
    args = argparse.Namespace(condition="{}", sample=10, json=False, timeout=5.0)
    assert marketing_cmds._segment_preview(args) == 0
    first = capsys.readouterr().out.splitlines()[0].rstrip()
    assert first == "14 of 268 profiles match; a sample of 10 (--sample N for more)"


def test_a_lead_or_call_list_built_is_named_by_a_json_key_without_a_space() -> None:
    # `c360 calllist build ... --json` printed {"call list_id": ...}.
    from c360.common.v1 import command_pb2
    from c360_cli.output import result_json

    result = command_pb2.CommandResult(aggregate_id="a0b572fb", version=1)
    assert result_json(result, "call list")["call_list_id"] == "a0b572fb"
    assert result_json(result, "lead list")["lead_list_id"] == "a0b572fb"
    assert not [k for k in result_json(result, "call list") if " " in k]


def test_calllist_show_lists_each_customers_agent_and_latest_outcome(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # There was no way to see a whole call list: only an agent's next call.
    import contextlib

    entries = [
        marketing_api.CallEntry(
            customer_id=f"{n:08x}-0000-4000-8000-000000000000",
            name=name,
            agent_id="emp-0003",
            outcome=outcome,
        )
        for n, (name, outcome) in enumerate(
            [("Līga Žirnovska", "call_back"), ("Aoife O'Brien", ""), ("Ivo Liepa", "interested")]
        )
    ]
    entries[0].call_back_at.FromJsonString("2026-12-08T09:00:00Z")
    reply = marketing_api.GetCallListResponse(
        call_list=marketing_api.CallList(name="winter", entries=entries, calls=3)
    )
    stub = argparse.Namespace(GetCallList=lambda *_, **__: reply)
    monkeypatch.setattr(marketing_cmds, "Client", lambda _: contextlib.nullcontext())
    monkeypatch.setattr(marketing_cmds, "_stub", lambda _: stub)
    monkeypatch.setenv("COLUMNS", "100")
    args = argparse.Namespace(call_list_id="l", json=False, timeout=5.0)
    assert marketing_cmds._call_list_show(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 100 for line in lines)
    rows = [" ".join(line.split()) for line in lines]
    assert rows[0] == "call list winter: 2/3 called, 3 calls"
    assert "00000000 Līga Žirnovska emp-0003 call back 2026-12-08 09:00:00Z" in rows
    assert "00000001 Aoife O'Brien emp-0003 not called yet" in rows


def test_launching_a_phone_campaign_says_it_is_called_not_sent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import contextlib

    campaign = marketing_api.Campaign(channel=marketing_events.MARKETING_CHANNEL_PHONE)
    stub = argparse.Namespace(
        LaunchCampaign=lambda *_, **__: marketing_api.LaunchCampaignResponse(),
        GetCampaign=lambda *_, **__: marketing_api.GetCampaignResponse(campaign=campaign),
    )
    monkeypatch.setattr(marketing_cmds, "Client", lambda _: contextlib.nullcontext())
    monkeypatch.setattr(marketing_cmds, "_stub", lambda _: stub)
    monkeypatch.setenv("COLUMNS", "100")
    args = argparse.Namespace(
        campaign_command="launch", request_id="", campaign_id="c", json=False, timeout=5.0
    )
    assert marketing_cmds._send(args) == 0
    shown = capsys.readouterr().out
    assert "its audience is called from call lists (c360 calllist build)" in shown
    assert "audience 0, sent 0" not in shown


def test_segment_members_says_when_it_lists_the_first_of_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import contextlib

    members = [
        marketing_api.MemberSample(customer_id=f"{n:08x}-0000-4000-8000-000000000000")
        for n in range(3)
    ]
    reply = marketing_api.ListMembersResponse(members=members, total=250)
    stub = argparse.Namespace(ListMembers=lambda *_, **__: reply)
    monkeypatch.setattr(marketing_cmds, "Client", lambda _: contextlib.nullcontext())
    monkeypatch.setattr(marketing_cmds, "_stub", lambda _: stub)
    monkeypatch.setenv("COLUMNS", "100")
    args = argparse.Namespace(segment="s", limit=3, as_of=None, json=False, timeout=5.0)
    assert marketing_cmds._segment_members(args) == 0
    first = capsys.readouterr().out.splitlines()[0].strip()
    assert first == "250 members, the first 3 listed (--limit)"


def test_campaign_list_shows_what_is_left_of_each_budget_or_over(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # It showed the cost alone: a campaign over its budget looked like any other.
    import contextlib

    def campaign(name: str, budget: str, cost: str) -> marketing_api.Campaign:
        return marketing_api.Campaign(
            campaign_id="423b750e-f743-4a1c-abc6-740e475d245f",
            name=name,
            state="running",
            channel=marketing_events.MARKETING_CHANNEL_EMAIL,
            budget=marketing_api.Money(amount=budget, currency="EUR"),
            actual_cost=cost,
            sent=38,
        )

    reply = marketing_api.ListCampaignsResponse(
        campaigns=[campaign("Ski weeks", "200", "251.90"), campaign("VIP preview", "900", "461.44")]
    )
    stub = argparse.Namespace(ListCampaigns=lambda *_, **__: reply)
    monkeypatch.setattr(marketing_cmds, "Client", lambda _: contextlib.nullcontext())
    monkeypatch.setattr(marketing_cmds, "_stub", lambda _: stub)
    monkeypatch.setenv("COLUMNS", "100")
    assert marketing_cmds._campaign_list(argparse.Namespace(json=False, timeout=5.0)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 100 for line in lines)
    rows = [" ".join(line.split()) for line in lines]
    assert rows[0] == "id name state channel sent cost unspent"
    assert "423b750e Ski weeks running email 38 251.90 EUR -51.90" in rows
    assert "423b750e VIP preview running email 38 461.44 EUR 438.56" in rows
