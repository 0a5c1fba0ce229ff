"""Marketing end to end on the real stack: a profile change (consent revoked in the customer
service) makes the customer leave a live segment within seconds with `why` naming the
condition; a launched campaign's audience excludes them with the reason; the provider's
reports on its own subjects (delivery.>) come back once each, an unsubscribe revokes consent
in the customer service, and the results count it all with cost and ROI."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import nats
import psycopg
import pytest
from google.protobuf import json_format
from nats.js.errors import NotFoundError
from psycopg import sql

from c360.customer.v1 import customer_service_pb2 as capi
from c360.erp.v1 import erp_events_pb2 as erp
from c360.events.v1 import customer_events_pb2 as cev
from c360.events.v1 import envelope_pb2
from c360.events.v1 import marketing_events_pb2 as mev
from c360.events.v1 import sales_events_pb2 as sev
from c360.events.v1 import sales_team_events_pb2 as steam
from c360.marketing.v1 import delivery_pb2
from c360.marketing.v1 import marketing_service_pb2 as mapi
from c360.marketing.v1 import marketing_service_pb2_grpc as mapi_grpc
from c360.sales.v1 import sales_service_pb2 as sapi
from c360.sales.v1 import sales_service_pb2_grpc as sales_grpc
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_marketing.application import Marketing, PlanningApplication
from c360_marketing.domain import CallList, LeadList
from c360_platform.pgstore import ensure_schema, postgres_env
from c360_platform.pii import FORGOTTEN, reveal
from c360_platform.store import RowQuery, where

from .conftest import Stack
from .helpers import eventually
from .test_permissions import Connection
from .test_permissions import connect as connect  # a fixture
from .test_permissions import users as users  # a fixture

pytestmark = pytest.mark.integration

SEGMENT = {
    "all": [
        {"field": "country", "value": "LV"},
        {"field": "lifetime_value", "op": "gt", "value": 1000, "currency": "EUR"},
        {"field": "consent", "channel": "email", "purpose": "marketing"},
    ]
}

TODAY = datetime.now(UTC).date()
"""A campaign sends only within its period: the tests' campaigns run around today."""


async def latvian(stack: Stack, name: str, email: str) -> str:
    reply = await stack.customer.RegisterCustomer(
        capi.RegisterCustomerRequest(
            kind=cev.CUSTOMER_KIND_PERSON,
            display_name=name,
            emails=[email],
        )
    )
    customer_id = reply.result.aggregate_id
    # (Addresses given at registration are not in the published CustomerRegistered.)
    await stack.customer.AddPostalAddress(
        capi.AddPostalAddressRequest(
            customer_id=customer_id,
            address=cev.PostalAddress(lines=["Brīvības iela 1"], city="Rīga", country="LV"),
        )
    )
    await stack.customer.GrantConsent(
        capi.GrantConsentRequest(
            customer_id=customer_id,
            channel=cev.CONSENT_CHANNEL_EMAIL,
            purpose=cev.CONSENT_PURPOSE_MARKETING,
            source="web form",
        )
    )
    return customer_id


async def test_a_revocation_leaves_the_segment_is_excluded_and_reports_show_in_results(
    stack: Stack,
) -> None:
    marketing = stack.stub("marketing", mapi_grpc.MarketingServiceStub)
    ada = await latvian(stack, "Ada Ozola", "ada@example.lv")
    bob = await latvian(stack, "Bob Kalns", "bob@example.lv")
    nc = await nats.connect(stack.nats_url)
    js = nc.jetstream()
    try:

        async def streams_ready() -> bool:
            try:
                await js.stream_info("ERP")
                await js.stream_info("DELIVERY")
            except NotFoundError:
                return False
            return True

        await eventually(streams_ready, what="the ERP and DELIVERY streams")
        for customer_id in (ada, bob):
            payment = erp.ErpEvent(
                event_id=str(uuid.uuid4()),
                customer_id=customer_id,
                payment_received=erp.PaymentReceived(
                    payment_reference=f"PAY-{customer_id[:8]}",
                    amount=erp.Money(currency="EUR", amount="1500.00"),
                    received_on="2026-01-10",
                ),
            )
            payment.occurred_at.GetCurrentTime()
            await js.publish("erp.payment.received", payment.SerializeToString())

        defined = await marketing.DefineSegment(
            mapi.DefineSegmentRequest(name="latvia-ltv", condition=json.dumps(SEGMENT))
        )
        assert defined.segment_id

        async def members(expected: set[str]) -> bool:
            reply = await marketing.ListMembers(mapi.ListMembersRequest(segment="latvia-ltv"))
            return {m.customer_id for m in reply.members} == expected

        await eventually(lambda: members({ada, bob}), what="both customers in the segment")

        # Bob revokes his e-mail consent in the customer service: he leaves within seconds.
        revoked_at = time.monotonic()
        await stack.customer.RevokeConsent(
            capi.RevokeConsentRequest(
                customer_id=bob,
                channel=cev.CONSENT_CHANNEL_EMAIL,
                purpose=cev.CONSENT_PURPOSE_MARKETING,
                source="phone call",
            )
        )
        await eventually(lambda: members({ada}), timeout=10, what="Bob leaving the segment")
        assert time.monotonic() - revoked_at < 10
        why = await marketing.ExplainMembership(
            mapi.ExplainMembershipRequest(segment="latvia-ltv", customer_id=bob)
        )
        assert not why.member
        assert why.condition_path == "condition.all[2]"
        assert why.condition == "consent email/marketing not granted"
        assert [c.actual for c in why.conditions if c.path == "condition.all[2]"] == ["revoked"]

        # A campaign to the segment: Bob is in its audience no more; after Ada's revocation at
        # send time, a second send reaches nobody and says why.
        planned = await marketing.PlanCampaign(
            mapi.PlanCampaignRequest(
                name="Spring in Rīga",
                channel=mev.MARKETING_CHANNEL_EMAIL,
                segments=["latvia-ltv"],
                starts_on=(TODAY - timedelta(days=30)).isoformat(),
                ends_on=(TODAY + timedelta(days=30)).isoformat(),
                budget=mapi.Money(amount="100", currency="EUR"),
                cost_per_send="0.25",
                expected_responses=1,
            )
        )
        cid = planned.campaign_id
        await marketing.ApproveCampaign(mapi.ApproveCampaignRequest(campaign_id=cid))
        launched = await marketing.LaunchCampaign(mapi.LaunchCampaignRequest(campaign_id=cid))
        assert (launched.round.audience, launched.round.sent) == (1, 1)

        # The touch is published on c360.marketing.> for the provider.
        sub = await js.subscribe("c360.marketing.touch.sent", stream="C360", ordered_consumer=True)
        msg = await sub.next_msg(timeout=10)
        envelope = envelope_pb2.Envelope.FromString(msg.data)
        sent = mev.TouchSent()
        envelope.payload.Unpack(sent)
        # Sealed, as the provider receives it; it opens with Ada's key (GetDataKeys).
        assert envelope.customer_id == ada
        assert "ada@example.lv" not in sent.address
        keys = stack.customer_app.data_keys([uuid.UUID(ada)])
        assert reveal(sent.address, keys) == "ada@example.lv"
        touch_id = envelope.aggregate_id

        # The provider reports on its own subjects; a report sent twice counts once.
        reports = [
            ("delivered", mev.TOUCH_RESPONSE_KIND_DELIVERED, "r-1"),
            ("clicked", mev.TOUCH_RESPONSE_KIND_CLICKED, "r-2"),
            ("clicked", mev.TOUCH_RESPONSE_KIND_CLICKED, "r-2"),
            ("unsubscribed", mev.TOUCH_RESPONSE_KIND_UNSUBSCRIBED, "r-3"),
        ]
        for word, kind, report_id in reports:
            report = delivery_pb2.DeliveryReport(report_id=report_id, touch_id=touch_id, kind=kind)
            await js.publish(f"delivery.{word}", report.SerializeToString())

        async def results() -> mapi.CampaignResultsResponse:
            return await marketing.CampaignResults(
                mapi.CampaignResultsRequest(campaign_id=cid, by="region")
            )

        async def counted() -> bool:
            return (await results()).total.unsubscribed == 1

        await eventually(counted, what="the provider's reports in the results")
        found = await results()
        assert (found.total.sent, found.total.delivered, found.total.clicked) == (1, 1, 1)
        assert found.total.responded == 1
        assert found.total.cost == "0.25"
        assert found.total.cost_per_response == "0.25"
        assert (found.total.cost_per_conversion, found.total.conversion_rate) == ("", "0.0000")
        assert found.total.roi == "-1.00"
        assert [r.key for r in found.rows] == ["LV"]
        assert found.forecast_basis == ""  # no completed campaign to learn from yet
        app = stack.hosts["marketing"].part("marketing", Marketing)
        touches = app.people.rows(RowQuery(where(kind="touch")))
        assert [sorted(t["responses"]) for t in touches] == [
            ["clicked", "delivered", "unsubscribed"]
        ]

        # The unsubscribe revoked Ada's consent in the customer service: she leaves too, and
        # the next send excludes her with the reason.
        async def ada_revoked() -> bool:
            customer = await stack.customer.GetCustomer(capi.GetCustomerRequest(customer_id=ada))
            return any(
                not c.granted and c.channel == cev.CONSENT_CHANNEL_EMAIL
                for c in customer.customer.consents
            )

        await eventually(ada_revoked, what="the unsubscribe as a revocation")
        await eventually(lambda: members(set()), what="Ada leaving the segment")
        again = await marketing.SendCampaign(mapi.SendCampaignRequest(campaign_id=cid))
        assert again.round.sent == 0
        assert {e.reason: e.count for e in again.round.exclusions} == {"revoked": 1}
        profile = await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=ada))
        section = json_format.MessageToDict(profile.profile.attributes)["marketing"]
        assert section["last_touch"]["campaign_name"] == "Spring in Rīga"
        assert section["last_response"]["kind"] == "unsubscribed"

        # Ada clicked: a responder, handed to sales as a lead of the campaign (over gRPC).
        sales = stack.stub("sales", sales_grpc.SalesServiceStub)
        await sales.DefineSalesTeam(
            sapi.DefineSalesTeamRequest(
                name="field",
                members=[steam.TeamMember(agent_id="emp-0007", territories=["lv"], capacity=5)],
            )
        )
        built = await marketing.BuildLeadList(
            mapi.BuildLeadListRequest(name="spring responders", campaign_id=cid)
        )
        request = mapi.DistributeLeadListRequest(
            request_id="distribute-1", lead_list_id=built.lead_list_id, team="field"
        )
        distributed = await marketing.DistributeLeadList(request)
        [entry] = distributed.lead_list.entries
        assert (entry.customer_id, entry.agent_id) == (ada, "emp-0007")
        lead = (await sales.GetLead(sapi.GetLeadRequest(lead_id=entry.lead_id))).lead
        assert (lead.channel, lead.campaign_id) == (sev.LEAD_CHANNEL_CAMPAIGN, cid)
        assert (lead.customer_id, lead.person_name, lead.agent_id) == (ada, "Ada Ozola", "emp-0007")
        # A retry hands over nothing twice.
        again_list = await marketing.DistributeLeadList(request)
        assert again_list.result.replayed
        leads = await sales.ListLeads(sapi.ListLeadsRequest(campaign_id=cid))
        assert [x.lead_id for x in leads.leads] == [entry.lead_id]
    finally:
        await nc.close()


async def test_the_delivery_provider_publishes_only_on_its_own_subjects(
    users: dict[str, str], connect: type[Connection]
) -> None:
    provider = connect()
    await provider.connect(users["delivery"])
    marketing = connect()
    await marketing.connect(users["marketing"])
    assert await provider.publish("delivery.opened") == ""
    assert "permissions violation" in await provider.publish("c360.marketing.touch.sent")
    assert "permissions violation" in await provider.publish("erp.invoice.issued")
    assert "permissions violation" in await provider.publish(
        "$JS.API.CONSUMER.DELETE.C360.timeline"
    )
    assert await marketing.publish("c360.marketing.touch.sent") == ""
    assert "permissions violation" in await marketing.publish("delivery.opened")
    # The provider reads marketing's events only.
    assert provider.nc is not None
    await provider.nc.subscribe("c360.customer.>")
    await provider.nc.flush()
    await asyncio.sleep(0.1)
    assert any("c360.customer.>" in refused for refused in provider.refused)


async def test_an_interested_call_becomes_a_lead_of_the_calling_agent(stack: Stack) -> None:
    marketing = stack.stub("marketing", mapi_grpc.MarketingServiceStub)
    reply = await stack.customer.RegisterCustomer(
        capi.RegisterCustomerRequest(
            kind=cev.CUSTOMER_KIND_PERSON, display_name="Ivo Liepa", phones=["+37120000009"]
        )
    )
    ivo = reply.result.aggregate_id
    await stack.customer.GrantConsent(
        capi.GrantConsentRequest(
            customer_id=ivo,
            channel=cev.CONSENT_CHANNEL_PHONE,
            purpose=cev.CONSENT_PURPOSE_MARKETING,
            source="shop",
        )
    )
    phone_ok = {"field": "consent", "channel": "phone", "purpose": "marketing"}
    await marketing.DefineSegment(
        mapi.DefineSegmentRequest(name="callable", condition=json.dumps(phone_ok))
    )

    async def member() -> bool:
        found = await marketing.ListMembers(mapi.ListMembersRequest(segment="callable"))
        return [m.customer_id for m in found.members] == [ivo]

    await eventually(member, what="Ivo in the segment")
    planned = await marketing.PlanCampaign(
        mapi.PlanCampaignRequest(
            name="Call round",
            channel=mev.MARKETING_CHANNEL_PHONE,
            segments=["callable"],
            starts_on=_today(),
            ends_on=_today(30),
            budget=mapi.Money(amount="500", currency="EUR"),
        )
    )
    await marketing.ApproveCampaign(mapi.ApproveCampaignRequest(campaign_id=planned.campaign_id))
    built = await marketing.BuildCallList(
        mapi.BuildCallListRequest(
            name="december", campaign_id=planned.campaign_id, agents=["emp-0003"]
        )
    )
    nxt = await marketing.NextCall(
        mapi.NextCallRequest(call_list_id=built.call_list_id, agent_id="emp-0003")
    )
    assert (nxt.entry.customer_id, nxt.entry.phone, nxt.remaining) == (ivo, "+37120000009", 1)
    recorded = await marketing.RecordCall(
        mapi.RecordCallRequest(
            call_list_id=built.call_list_id,
            customer_id=ivo,
            agent_id="emp-0003",
            outcome="interested",
            note="wants a quote",
        )
    )
    sales = stack.stub("sales", sales_grpc.SalesServiceStub)
    lead = (await sales.GetLead(sapi.GetLeadRequest(lead_id=recorded.lead_id))).lead
    assert (lead.channel, lead.campaign_id) == (sev.LEAD_CHANNEL_CAMPAIGN, planned.campaign_id)
    assert (lead.customer_id, lead.agent_id) == (ivo, "emp-0003")

    async def called() -> list[str]:
        found = await stack.timeline.GetTimeline(
            tapi.GetTimelineRequest(customer_id=ivo, types=["call.recorded"])
        )
        return [e.summary for e in found.entries]

    async def on_timeline() -> bool:
        return bool(await called())

    await eventually(on_timeline, what="the call on Ivo's timeline")
    shown = (
        await marketing.GetCallList(mapi.GetCallListRequest(call_list_id=built.call_list_id))
    ).call_list
    assert (shown.name, shown.campaign_id, shown.calls) == ("december", planned.campaign_id, 1)
    assert [(e.customer_id, e.name, e.agent_id, e.outcome) for e in shown.entries] == [
        (ivo, "Ivo Liepa", "emp-0003", "interested")
    ]
    results = await marketing.CampaignResults(
        mapi.CampaignResultsRequest(campaign_id=planned.campaign_id)
    )
    assert (results.calls, dict(results.call_outcomes)) == (1, {"interested": 1})
    assert await called() == [
        "Campaign “Call round” call by emp-0003: interested (a sales lead) (“wants a quote”)"
    ]
    done = await marketing.NextCall(
        mapi.NextCallRequest(call_list_id=built.call_list_id, agent_id="emp-0003")
    )
    assert not done.HasField("entry")
    assert done.remaining == 0
    offered = await marketing.GetOffers(mapi.GetOffersRequest(customer_id=ivo))
    assert (list(offered.offers), list(offered.reachable_by)) == ([], ["phone"])
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await marketing.GetOffers(mapi.GetOffersRequest(customer_id=str(uuid.uuid4())))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def _today(days: int = 0) -> str:
    """A day from today (UTC): a campaign whose period is over is not planned."""
    return (datetime.now(UTC).date() + timedelta(days=days)).isoformat()


async def latvia_members(marketing: mapi_grpc.MarketingServiceAsyncStub) -> set[str]:
    reply = await marketing.ListMembers(mapi.ListMembersRequest(segment="latvia"))
    return {m.customer_id for m in reply.members}


async def two_in_latvia(
    stack: Stack, marketing: mapi_grpc.MarketingServiceAsyncStub
) -> tuple[str, str]:
    """Two registrations of one person, both members of the segment "latvia"."""
    ada = await latvian(stack, "Ada Ozola", "ada@example.lv")
    dup = await latvian(stack, "Ada O.", "ada.o@example.lv")
    await marketing.DefineSegment(
        mapi.DefineSegmentRequest(
            name="latvia", condition=json.dumps({"field": "country", "value": "LV"})
        )
    )

    async def both() -> bool:
        return await latvia_members(marketing) == {ada, dup}

    await eventually(both, what="both customers in the segment")
    return ada, dup


async def test_a_customer_merged_into_another_leaves_the_segment_until_unmerged(
    stack: Stack,
) -> None:
    """Through the timeline's changed profiles (marketing's read mask names merged_into): the
    duplicate is reached as its survivor, not twice; unmerged, it is a member again."""
    marketing = stack.stub("marketing", mapi_grpc.MarketingServiceStub)
    ada, dup = await two_in_latvia(stack, marketing)

    async def members(expected: set[str]) -> bool:
        return await latvia_members(marketing) == expected

    await stack.customer.MergeCustomers(
        capi.MergeCustomersRequest(survivor_id=ada, duplicate_id=dup, reason="one person")
    )
    await eventually(lambda: members({ada}), timeout=10, what="the duplicate leaving")
    why = await marketing.ExplainMembership(
        mapi.ExplainMembershipRequest(segment="latvia", customer_id=dup)
    )
    assert (why.member, why.condition) == (False, f"the customer was merged into customer {ada}")
    await stack.customer.UnmergeCustomer(capi.UnmergeCustomerRequest(customer_id=dup))
    await eventually(lambda: members({ada, dup}), timeout=10, what="the duplicate back")


async def test_a_segment_is_revised_by_its_name_or_the_beginning_of_its_id(
    stack: Stack,
) -> None:
    """As every other segment command takes it (`segment revise lv` was refused: "segment_id:
    not a valid id (UUID expected)")."""
    marketing = stack.stub("marketing", mapi_grpc.MarketingServiceStub)
    defined = await marketing.DefineSegment(
        mapi.DefineSegmentRequest(
            name="revised-by-name", condition=json.dumps({"field": "country", "value": "LV"})
        )
    )
    estonia = json.dumps({"field": "country", "value": "EE"})
    by_name = await marketing.ReviseSegment(
        mapi.ReviseSegmentRequest(segment_id="revised-by-name", condition=estonia)
    )
    assert (by_name.result.aggregate_id, by_name.result.version) == (defined.segment_id, 2)
    lithuania = json.dumps({"field": "country", "value": "LT"})
    by_prefix = await marketing.ReviseSegment(
        mapi.ReviseSegmentRequest(segment_id=defined.segment_id[:8], condition=lithuania)
    )
    assert by_prefix.result.version == 3
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await marketing.ReviseSegment(
            mapi.ReviseSegmentRequest(segment_id="no-such-segment", condition=estonia)
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


async def latvia_lead_list(
    marketing: mapi_grpc.MarketingServiceAsyncStub, campaign: str
) -> tuple[mapi.PlanCampaignResponse, mapi.BuildLeadListResponse]:
    """An e-mail campaign to the segment "latvia" running now, and a lead list of its members."""
    planned = await marketing.PlanCampaign(
        mapi.PlanCampaignRequest(
            name=campaign,
            channel=mev.MARKETING_CHANNEL_EMAIL,
            segments=["latvia"],
            starts_on=_today(),
            ends_on=_today(30),
            budget=mapi.Money(amount="100", currency="EUR"),
        )
    )
    built = await marketing.BuildLeadList(
        mapi.BuildLeadListRequest(name="latvia", campaign_id=planned.campaign_id, segment="latvia")
    )
    return planned, built


async def test_a_lead_list_passes_over_a_customer_merged_away_since_it_was_built(
    stack: Stack,
) -> None:
    """Sales refuses a lead for a customer merged into another: that entry is passed over
    with the refusal, the others are handed on, and no retry offers it again (it stopped the
    whole distribution, for good, before)."""
    marketing = stack.stub("marketing", mapi_grpc.MarketingServiceStub)
    sales = stack.stub("sales", sales_grpc.SalesServiceStub)
    ada, dup = await two_in_latvia(stack, marketing)
    planned, built = await latvia_lead_list(marketing, "Autumn calls")
    merged = await stack.customer.MergeCustomers(
        capi.MergeCustomersRequest(survivor_id=ada, duplicate_id=dup, reason="one person")
    )
    await stack.timeline.GetProfile(
        tapi.GetProfileRequest(customer_id=dup, wait_for=merged.result.consistency_token)
    )
    await sales.DefineSalesTeam(
        sapi.DefineSalesTeamRequest(
            name="field",
            members=[steam.TeamMember(agent_id="emp-0007", territories=["lv"], capacity=5)],
        )
    )
    distributed = await marketing.DistributeLeadList(
        mapi.DistributeLeadListRequest(lead_list_id=built.lead_list_id, team="field")
    )
    entries = {e.customer_id: e for e in distributed.lead_list.entries}
    assert (entries[ada].agent_id, entries[ada].passed_over) == ("emp-0007", "")
    assert (entries[dup].lead_id, entries[dup].agent_id) == ("", "")
    assert entries[dup].passed_over.startswith(
        f"FAILED_PRECONDITION: customer {dup} was merged into customer {ada}"
    )
    again = await marketing.DistributeLeadList(
        mapi.DistributeLeadListRequest(lead_list_id=built.lead_list_id, team="field")
    )
    assert again.lead_list == distributed.lead_list
    leads = await sales.ListLeads(sapi.ListLeadsRequest(campaign_id=planned.campaign_id))
    assert [x.customer_id for x in leads.leads] == [ada]


async def test_a_lead_list_holds_no_name_or_address_and_shows_a_forgotten_customer_as_such(
    stack: Stack,
) -> None:
    """A lead list's event is about many customers and cannot be sealed with each one's key:
    it names who, and their name, e-mail and phone are read from the profile when shown. The
    list built before an erasure kept the forgotten customer's e-mail in clear, readable for
    ever (`leadlist show`, the plans store's rows)."""
    marketing = stack.stub("marketing", mapi_grpc.MarketingServiceStub)
    ada, dup = await two_in_latvia(stack, marketing)
    _, built = await latvia_lead_list(marketing, "Erasure check")
    shown = await marketing.GetLeadList(mapi.GetLeadListRequest(lead_list_id=built.lead_list_id))
    assert {(e.customer_id, e.email) for e in shown.lead_list.entries} == {
        (ada, "ada@example.lv"),
        (dup, "ada.o@example.lv"),
    }
    forgot = await stack.customer.ForgetCustomer(capi.ForgetCustomerRequest(customer_id=dup))
    await stack.timeline.GetProfile(
        tapi.GetProfileRequest(customer_id=dup, wait_for=forgot.result.consistency_token)
    )

    async def forgotten() -> bool:
        reply = await marketing.GetLeadList(
            mapi.GetLeadListRequest(lead_list_id=built.lead_list_id)
        )
        entry = next(e for e in reply.lead_list.entries if e.customer_id == dup)
        return (entry.name, entry.email, entry.phone) == (FORGOTTEN, "", "")

    await eventually(forgotten, timeout=10, what="the lead list showing her forgotten")
    with psycopg.connect(stack.postgres_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM marketing_plans.marketing_plans_events"
            " WHERE convert_from(state, 'UTF8') LIKE '%%ada.o@example.lv%%'"
        ).fetchone()
    assert row == (0,)


def test_lists_built_before_lose_the_names_and_addresses_they_kept(database_url: str) -> None:
    """Lead and call lists an earlier version stored with each entry's name, e-mail and phone
    in clear: the plans store removes them from those events as it starts (once)."""
    schema = f"plans_{uuid.uuid4().hex[:8]}"
    ensure_schema(database_url, schema)
    env = {**postgres_env(database_url, schema, pool_size=1), "POSTGRES_SCHEMA": schema}
    plans = PlanningApplication(env=env)
    kept = {"customer_id": str(uuid.uuid4()), "kind": "person", "territory": "LV"}
    old = LeadList(
        name="old",
        campaign_id=str(uuid.uuid4()),
        segment_id="",
        entries=[{**kept, "name": "Ada Ozola", "email": "ada@example.lv", "phone": "+371200"}],
    )
    calls = CallList(
        name="old calls",
        campaign_id=old.campaign_id,
        entries=[
            {
                "customer_id": kept["customer_id"],
                "agent_id": "emp-1",
                "name": "Ada Ozola",
                "phone": "+371200",
            }
        ],
    )
    plans.save(old, calls)
    plans.close()

    again = PlanningApplication(env=env)
    try:
        assert again.repository.get(old.id).entries == [kept]
        assert again.repository.get(calls.id).entries == [
            {"customer_id": kept["customer_id"], "agent_id": "emp-1"}
        ]
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                sql.SQL("SELECT convert_from(state, 'UTF8') FROM {}.marketing_plans_events").format(
                    sql.Identifier(schema)
                )
            ).fetchall()
        assert rows
        # The values themselves ("ada" alone is in one id of a few dozen: hex digits).
        gone = ("Ada Ozola", "ada@example.lv", "+371200")
        assert not any(value in r[0] for r in rows for value in gone)
    finally:
        again.close()
