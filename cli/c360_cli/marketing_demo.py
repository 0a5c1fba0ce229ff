"""The marketing part of `c360 demo`: payments on account for a share of the customers (so they
have a lifetime value; played as the `erp` user), segments, two finished campaigns with costs
and the provider's reports (played as the `delivery` user), and a running one; the first
campaign's responders handed to the sales demo's team as leads; a phone campaign whose call
list two agents work, one call per customer. Data in data/marketing_demo.toml.

Deterministic for a seed: payments and reports have ids derived from it (c360 and JetStream
drop repeats) and every command carries a request id, so running the demo again changes
nothing.
"""

from __future__ import annotations

import asyncio
import json
import random
import tomllib
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from c360.customer.v1 import customer_service_pb2 as capi
from c360.customer.v1.customer_service_pb2_grpc import CustomerServiceStub
from c360.erp.v1 import erp_events_pb2 as erp
from c360.events.v1 import customer_events_pb2 as cev
from c360.events.v1 import envelope_pb2
from c360.events.v1 import marketing_events_pb2 as mev
from c360.marketing.v1 import delivery_pb2
from c360.marketing.v1 import marketing_service_pb2 as mapi
from c360.marketing.v1.marketing_service_pb2_grpc import MarketingServiceStub
from c360.timeline.v1.timeline_service_pb2 import GetProfileRequest
from c360.timeline.v1.timeline_service_pb2_grpc import TimelineServiceStub
from c360_cli.errors import CliError
from c360_cli.marketing_cmds import CHANNELS
from c360_platform import natsauth

MARKETING = "marketing"
_IDS = uuid.UUID("0b6e2f1c-7d3a-4c36-8c36-c360c360de12")
KINDS = {
    name.removeprefix("TOUCH_RESPONSE_KIND_").lower(): value
    for name, value in mev.TouchResponseKind.items()
    if value
}


@cache
def data() -> dict[str, Any]:
    text = resources.files("c360_cli").joinpath("data", "marketing_demo.toml").read_text("utf-8")
    return tomllib.loads(text)


def _users(endpoints: Path) -> dict[str, str]:
    try:
        doc = json.loads(endpoints.read_text())
    except (OSError, ValueError):
        return {}
    users = doc.get("nats_users") if isinstance(doc, dict) else None
    found = {k: str(v) for k, v in users.items()} if isinstance(users, dict) else {}
    if isinstance(doc, dict) and isinstance(doc.get("nats_url"), str):
        found.setdefault("erp", doc["nats_url"])
        found.setdefault("delivery", doc["nats_url"])
    return found


def outcomes(rng: random.Random) -> list[tuple[str, str]]:
    """What the provider reports on one touch, in order."""
    roll = rng.random()
    if roll < 0.04:
        return [("hard_bounced", "mailbox does not exist")]
    found = [("delivered", "")]
    if rng.random() < 0.5:
        found.append(("opened", ""))
        if rng.random() < 0.35:
            found.append(("clicked", "https://shop.example/offer"))
        if rng.random() < 0.05:
            found.append(("replied", "Please call me."))
        if rng.random() < 0.04:
            found.append(("unsubscribed", ""))
    return found


class MarketingDemo:
    """Runs the marketing phases on a `c360_cli.demo.DemoRun` (its calls, ids and progress)."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.users = _users(Path(run.client.endpoints.source))
        self.payments = 0
        self.reports = 0
        self.segments: dict[str, str] = {}
        self.campaigns: dict[str, str] = {}
        self.last_paid = ""
        self.responding: dict[str, int] = {}
        """campaign id -> touches this run reported a click or a reply on."""
        self.lead_list = ""
        self.call_list = ""
        self.calls_made = 0
        self.clicked: set[str] = set()
        """customers who clicked a touch this run (some buy again: the campaigns' revenue)."""

    def stub(self) -> Any:
        return self.run.client.stub(MARKETING, MarketingServiceStub)

    async def call(self, method: str, request: Any, what: str, step: str) -> Any:
        request.request_id = self.run.rid(0, f"marketing-{step}")
        # of=-1: no customer's consistency token is replaced by marketing's.
        return await self.run.call(getattr(self.stub(), method), request, what, MARKETING, of=-1)

    async def pay(self) -> None:
        """Play ERP: a payment on account for a share of the customers."""
        url = self.users.get("erp")
        if not url:
            return
        d = data()
        nc = await nats.connect(url, name="c360-demo-erp-payments", **natsauth.client_options(url))
        try:
            js = nc.jetstream()
            for p in self.run.plans:
                rng = random.Random(f"{self.run.seed}:pay:{p.index}")
                if p.index not in self.run.ids or rng.random() >= d["paid_share"]:
                    continue
                country = p.addresses[0].country if p.addresses else ""
                big = country in d["big_spenders"]
                low, high = d["big_range"] if big else d["paid_range"]
                event_id = str(uuid.uuid5(_IDS, f"{self.run.seed}:payment:{p.index}"))
                event = erp.ErpEvent(
                    event_id=event_id,
                    customer_id=self.run.ids[p.index],
                    erp_system="c360-demo",
                    payment_received=erp.PaymentReceived(
                        payment_reference=f"DEMO-{self.run.seed}-{p.index:05d}",
                        amount=erp.Money(currency="EUR", amount=f"{rng.randint(low, high)}.00"),
                        received_on="2026-06-30",
                    ),
                )
                event.occurred_at.FromJsonString("2026-06-30T12:00:00Z")
                await js.publish(
                    "erp.payment.received",
                    event.SerializeToString(),
                    headers={"Nats-Msg-Id": event_id},
                )
                self.payments += 1
                self.last_paid = self.run.ids[p.index]
        finally:
            await nc.close()

    def signup_script(self, p: Any) -> Callable[[], Awaitable[None]]:
        async def script() -> None:
            request = capi.GrantConsentRequest(
                request_id=self.run.rid(p.index, "marketing-newsletter-signup"),
                customer_id=self.run.ids[p.index],
                channel=cev.CONSENT_CHANNEL_EMAIL,
                purpose=cev.CONSENT_PURPOSE_MARKETING,
                source="newsletter-signup",
            )
            stub = self.run.client.stub("customer", CustomerServiceStub)
            await self.run.call(stub.GrantConsent, request, "grant consent", of=p.index)

        return script

    def signups(self) -> list[Any]:
        """Customers who never decided on marketing by e-mail and sign up now."""
        found = []
        for p in self.run.plans:
            decided = any(
                (c.channel, c.purpose) == ("email", "marketing") for c in p.grants + p.revocations
            )
            rng = random.Random(f"{self.run.seed}:signup:{p.index}")
            if (
                not decided
                and p.index in self.run.ids
                and p.emails
                and rng.random() < data()["signup_share"]
            ):
                found.append(p)
        return found

    async def define(self) -> None:
        for s in data()["segments"]:
            # Segments named in a condition are resolved by the service (name -> id).
            text = json.dumps(s["condition"])
            request = mapi.DefineSegmentRequest(
                name=s["name"], description=s["description"], condition=text
            )
            try:
                reply = await self.call(
                    "DefineSegment", request, "define a segment", f"segment-{s['name']}"
                )
            except CliError as exc:
                # Defined by a demo of another seed: the same segment serves this one.
                if "already exists" not in exc.message:
                    raise
                found = await self.stub().GetSegment(mapi.GetSegmentRequest(segment=s["name"]))
                self.segments[s["name"]] = found.segment.segment_id
                continue
            self.segments[s["name"]] = reply.segment_id or reply.result.aggregate_id

    async def evaluated(self) -> None:
        """Until the payments are in the profiles (the ERP feed is applied in order: the last
        one is enough) and every segment has evaluated everyone."""
        timeline = self.run.client.stub("timeline", TimelineServiceStub)
        for _ in range(600):
            if not self.last_paid:
                break
            reply = await timeline.GetProfile(GetProfileRequest(customer_id=self.last_paid))
            if "erp" in reply.profile.attributes:
                break
            await asyncio.sleep(0.1)
        for _ in range(600):
            reply = await self.stub().ListSegments(mapi.ListSegmentsRequest(), timeout=10)
            if all(s.evaluated >= s.profiles >= len(self.run.ids) for s in reply.segments):
                return
            await asyncio.sleep(0.1)

    async def campaign(self, c: dict[str, Any]) -> None:
        name = c["name"]
        today = datetime.now(UTC).date()
        starts_on = (today + timedelta(days=c["starts_in_days"])).isoformat()
        ends_on = (today + timedelta(days=c["ends_in_days"])).isoformat()
        # A run on another day plans that day's campaigns; one on the same day replays these.
        step = f"campaign-{name}-{starts_on}"
        reply = await self.call(
            "PlanCampaign",
            mapi.PlanCampaignRequest(
                name=name,
                channel=CHANNELS.value(c["channel"]),
                segments=c["segments"],
                starts_on=starts_on,
                ends_on=ends_on,
                budget=mapi.Money(amount=c["budget"], currency="EUR"),
                cost_per_send=c["cost_per_send"],
                expected_responses=c["expected_responses"],
                offer=c["offer"],
                frequency_cap=c.get("frequency_cap", 0),
            ),
            "plan a campaign",
            step,
        )
        cid = reply.campaign_id or reply.result.aggregate_id
        self.campaigns[name] = cid
        # Each with its request id: a second run of the demo replays them.
        await self.call(
            "ApproveCampaign",
            mapi.ApproveCampaignRequest(campaign_id=cid),
            "approve a campaign",
            f"{step}-approve",
        )
        await self.call(
            "LaunchCampaign",
            mapi.LaunchCampaignRequest(campaign_id=cid),
            "launch a campaign",
            f"{step}-launch",
        )
        for n, (kind, amount, note) in enumerate(c.get("costs", [])):
            await self.call(
                "RecordCampaignCost",
                mapi.RecordCampaignCostRequest(
                    campaign_id=cid, kind=kind, amount=amount, note=note
                ),
                "record a cost",
                f"{step}-cost-{n}",
            )

    def campaign_script(self, c: dict[str, Any]) -> Callable[[], Awaitable[None]]:
        async def script() -> None:
            await self.campaign(c)

        return script

    async def report(self) -> None:
        """Play the delivery provider: report on every touch of the demo's campaigns."""
        url = self.users.get("delivery")
        if not url:
            return
        nc = await nats.connect(url, name="c360-demo-delivery", **natsauth.client_options(url))
        try:
            js = nc.jetstream()
            subject = "c360.marketing.touch.sent"
            # A durable of the demo's own: a second run reports only on new touches.
            sub = await js.pull_subscribe(
                subject,
                durable="c360-demo-delivery",
                stream=natsauth.feed_of("marketing").name,
                config=ConsumerConfig(
                    durable_name="c360-demo-delivery",
                    deliver_policy=DeliverPolicy.ALL,
                    ack_policy=AckPolicy.EXPLICIT,
                    filter_subject=subject,
                ),
            )
            while True:
                try:
                    msgs = await sub.fetch(64, timeout=1)
                except (TimeoutError, nats.errors.TimeoutError):
                    break
                for msg in msgs:
                    await self._report(js, msg.data)
                    await msg.ack()
        finally:
            await nc.close()

    async def _report(self, js: Any, data: bytes) -> None:
        """The provider's reports on one touch, drawn from the seed."""
        env = envelope_pb2.Envelope.FromString(data)
        sent = mev.TouchSent()
        env.payload.Unpack(sent)
        rng = random.Random(f"{self.run.seed}:touch:{env.aggregate_id}")
        found = outcomes(rng)
        if {"clicked", "replied"} & {kind for kind, _ in found}:
            self.responding[sent.campaign_id] = self.responding.get(sent.campaign_id, 0) + 1
            self.clicked.add(env.customer_id)
        for kind, detail in found:
            report = delivery_pb2.DeliveryReport(
                report_id=str(uuid.uuid5(_IDS, f"{env.aggregate_id}:{kind}")),
                touch_id=env.aggregate_id,
                kind=KINDS[kind],
                detail=detail,
            )
            await js.publish(
                f"delivery.{kind}",
                report.SerializeToString(),
                headers={"Nats-Msg-Id": report.report_id},
            )
            self.reports += 1

    async def buy_again(self) -> None:
        """Play ERP again: half of those who clicked pay for a new order now, which the
        campaigns that touched them within 30 days count as revenue."""
        url = self.users.get("erp")
        if not url or not self.clicked:
            return
        nc = await nats.connect(url, name="c360-demo-erp-repeat", **natsauth.client_options(url))
        try:
            js = nc.jetstream()
            for customer_id in sorted(self.clicked):
                rng = random.Random(f"{self.run.seed}:again:{customer_id}")
                if rng.random() >= 0.5:
                    continue
                event_id = str(uuid.uuid5(_IDS, f"{self.run.seed}:repeat:{customer_id}"))
                event = erp.ErpEvent(
                    event_id=event_id,
                    customer_id=customer_id,
                    erp_system="c360-demo",
                    payment_received=erp.PaymentReceived(
                        payment_reference=f"DEMO-{self.run.seed}-R-{customer_id[:8]}",
                        amount=erp.Money(currency="EUR", amount=f"{rng.randint(80, 900)}.00"),
                        received_on=datetime.now(UTC).date().isoformat(),
                    ),
                )
                event.occurred_at.GetCurrentTime()
                await js.publish(
                    "erp.payment.received",
                    event.SerializeToString(),
                    headers={"Nats-Msg-Id": event_id},
                )
                self.payments += 1
        finally:
            await nc.close()

    async def leads(self) -> None:
        """The first campaign's responders, handed to the sales demo's team as leads."""
        first = data()["campaigns"][0]["name"]
        cid = self.campaigns[first]
        request = mapi.CampaignResultsRequest(campaign_id=cid)
        for _ in range(300):  # until marketing has taken this run's reports
            results = await self.stub().CampaignResults(request, timeout=10)
            if results.total.responded >= self.responding.get(cid, 0):
                break
            await asyncio.sleep(0.1)
        if not results.total.responded or "sales" not in self.run.client.endpoints.addresses:
            return
        built = await self.call(
            "BuildLeadList",
            mapi.BuildLeadListRequest(name=f"{first} responders", campaign_id=cid),
            "build a lead list",
            "lead-list",
        )
        self.lead_list = built.lead_list_id or built.result.aggregate_id
        await self.call(
            "DistributeLeadList",
            mapi.DistributeLeadListRequest(
                lead_list_id=self.lead_list, team="field", rule="round_robin"
            ),
            "distribute a lead list",
            "lead-list-distribute",
        )

    async def calls(self) -> None:
        """Play the telemarketing team: a phone campaign approved, its call list built, and
        one call recorded for every customer on it (each with its own request id: a second
        run replays them)."""
        c = data().get("calls")
        if not c:
            return
        today = datetime.now(UTC).date()
        starts_on = (today + timedelta(days=c["starts_in_days"])).isoformat()
        step = f"calls-{c['name']}-{starts_on}"
        reply = await self.call(
            "PlanCampaign",
            mapi.PlanCampaignRequest(
                name=c["name"],
                channel=CHANNELS.value("phone"),
                segments=c["segments"],
                starts_on=starts_on,
                ends_on=(today + timedelta(days=c["ends_in_days"])).isoformat(),
                budget=mapi.Money(amount=c["budget"], currency="EUR"),
            ),
            "plan a phone campaign",
            step,
        )
        cid = reply.campaign_id or reply.result.aggregate_id
        self.campaigns[c["name"]] = cid
        await self.call(
            "ApproveCampaign",
            mapi.ApproveCampaignRequest(campaign_id=cid),
            "approve a campaign",
            f"{step}-approve",
        )
        try:
            built = await self.call(
                "BuildCallList",
                mapi.BuildCallListRequest(name="spring", campaign_id=cid, agents=c["agents"]),
                "build a call list",
                f"{step}-call-list",
            )
        except CliError as exc:
            if exc.code == "FAILED_PRECONDITION":  # nobody may be called (a small demo)
                return
            raise
        self.call_list = built.call_list_id or built.result.aggregate_id
        found = await self.stub().GetCallList(
            mapi.GetCallListRequest(call_list_id=self.call_list), timeout=10
        )
        self.run.progress.update(
            self.run.task,
            total=self.run.progress.tasks[0].total + len(found.call_list.entries),
        )
        kinds, weights = zip(*c["outcomes"], strict=True)
        sales = "sales" in self.run.client.endpoints.addresses
        for e in found.call_list.entries:
            rng = random.Random(f"{self.run.seed}:call:{e.customer_id}")
            outcome = rng.choices(kinds, weights)[0]
            if outcome == "interested" and not sales:
                outcome = "reached"
            request = mapi.RecordCallRequest(
                call_list_id=self.call_list,
                customer_id=e.customer_id,
                agent_id=e.agent_id,
                outcome=outcome,
                note={"interested": "Wants a quote", "call_back": "Busy, call tomorrow"}.get(
                    outcome, ""
                ),
            )
            if outcome == "call_back":
                request.call_back_at.FromJsonString(f"{today + timedelta(days=1)}T09:00:00Z")
            try:
                await self.call("RecordCall", request, "record a call", f"{step}-{e.customer_id}")
            except CliError as exc:
                # Forgotten by an earlier run since the list was built: sales takes no lead.
                if exc.code != "FAILED_PRECONDITION":
                    raise
            self.calls_made += 1

    async def finish(self) -> None:
        for c in data()["campaigns"]:
            if c.get("finish") != "complete":
                continue
            await self.call(
                "CompleteCampaign",
                mapi.CompleteCampaignRequest(campaign_id=self.campaigns[c["name"]]),
                "complete a campaign",
                f"campaign-{c['name']}-complete",
            )

    async def phases(self) -> None:
        """Every marketing phase, after the customers exist."""
        d = data()
        extra = 2 + len(d["segments"]) + sum(3 + len(c.get("costs", [])) for c in d["campaigns"])
        extra += 3 if d.get("calls") else 0  # the phone campaign, its approval, its call list
        self.run.progress.update(self.run.task, total=self.run.progress.tasks[0].total + extra)
        signups = self.signups()
        self.run.progress.update(
            self.run.task, total=self.run.progress.tasks[0].total + len(signups)
        )
        await self.run.phase("newsletter sign-ups", [self.signup_script(p) for p in signups])
        await self.run.phase("ERP payments", [self.pay])
        await self.run.phase("segments", [self.define])
        await self.run.phase("segments evaluated", [self.evaluated])
        for c in d["campaigns"]:
            await self.run.phase(f"campaign {c['name']}", [self.campaign_script(c)])
        await self.run.phase("provider reports", [self.report])
        await self.run.phase("lead lists for sales", [self.leads])
        await self.run.phase("responders buy again", [self.buy_again])
        await self.run.phase("campaigns finished", [self.finish])
        await self.run.phase("marketing calls", [self.calls])

    def summary(self) -> dict[str, Any]:
        return {
            "erp_payments": self.payments,
            "segments": len(self.segments),
            "campaigns": len(self.campaigns),
            "provider_reports": self.reports,
            "marketing_calls": self.calls_made,
            "marketing_examples": {
                "segment": "latvia-high-value",
                "campaigns": self.campaigns,
                "lead_list": self.lead_list,
                "call_list": self.call_list,
            },
        }
