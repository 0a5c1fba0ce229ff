"""Marketing's two feeds: the timeline's changed profiles (gRPC ListChangedProfiles, the
published read contract) that drive live segments, and the delivery provider's reports on its
own subjects (delivery.>) that become touch responses and, for unsubscribes and hard bounces,
consent revocations in the customer service (gRPC)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, timedelta
from uuid import UUID

import grpc
import nats
from google.protobuf.field_mask_pb2 import FieldMask
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from c360.customer.v1 import customer_service_pb2 as capi
from c360.customer.v1 import customer_service_pb2_grpc as capi_grpc
from c360.events.v1 import customer_events_pb2 as cev
from c360.marketing.v1 import delivery_pb2
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360.timeline.v1 import timeline_service_pb2_grpc as tapi_grpc
from c360_marketing.application import Marketing, Revocation
from c360_marketing.contract import RESPONSES
from c360_marketing.profiles import FACT_FIELDS, facts_of
from c360_marketing.spec import DELIVERY_REPORTS
from c360_platform import channels, natsauth
from c360_platform.commands import blocking
from c360_platform.errors import C360Error
from c360_platform.leader import sleep_or_stop, unless_stopped
from c360_platform.pull import durable_puller
from c360_platform.registry import Partner
from c360_platform.rpc import settle_long_lived
from c360_platform.streams import StreamSettings, ensure_stream
from c360_platform.vocabulary import Words

_log = logging.getLogger(__name__)
PAGE = 200
IDLE = 0.2
"""Seconds between two asks for changed profiles once a page was not full (caught up)."""
LONG_WAIT = 10.0
"""How long the timeline holds a caught-up follower's ask while nothing changes (it answers
at its next commit): one call in that time, not one every IDLE."""
REEVALUATE_BATCH = 200
"""Customers evaluated for revised segments in one round."""
REFRESH = float(os.environ.get("C360_MARKETING_REFRESH_SECONDS", "3600"))
"""How often every profile is read again (conditions that change with time alone)."""
TRIGGER_CHECK = 60.0
"""How often running campaigns with a trigger (anniversaries, overdue invoices) send, and
campaigns whose last day is over complete."""
DURABLE = DELIVERY_REPORTS.name
FOR_GOOD = frozenset({grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION})
"""RevokeConsent's refusals that no retry changes (the customer forgotten, or unknown)."""
CONSENT_CHANNELS = Words(cev.ConsentChannel)
CONSENT_PURPOSES = Words(cev.ConsentPurpose)


def _channel(address: str, token: str) -> grpc.aio.Channel:
    return channels.aio_channel(address, token, options=[("grpc.enable_http_proxy", 0)])


class ProfileFollower:
    """Follows the timeline's changed profiles from a cursor kept in memory: at start it reads
    every profile once (memberships already stored are not repeated), then the changes; and
    every `refresh` seconds every profile again, for the conditions that change with time
    alone (support contacts in 30 days, the churn signal, days since the last purchase)."""

    def __init__(
        self, marketing: Marketing, timeline_addr: str, refresh: float = REFRESH, token: str = ""
    ) -> None:
        self.marketing = marketing
        self.timeline_addr = timeline_addr
        self.token = token
        self.refresh = refresh
        self.cursor = 0
        self.refreshed = time.monotonic()
        self.triggers_checked = 0.0
        self.mutex = asyncio.Lock()
        self.nudged = asyncio.Event()
        self.settle: Callable[[], None] = settle_long_lived
        """Called when a pass over every profile is done (at start, after each refresh): the
        facts of every customer it read live until they change (then freed by reference
        counting: they hold no cycles), and each full collection walked all of them (up to
        734 ms of CPU at 164,890 customers, a core taken from the other services)."""
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> tapi_grpc.TimelineServiceAsyncStub:
        if self._channel is None:
            self._channel = _channel(self.timeline_addr, self.token)
        return tapi_grpc.TimelineServiceStub(self._channel)

    async def poll(self, wait: float = 0.0, stop: asyncio.Event | None = None) -> int:
        """One page of changes applied; returns how many profiles it held. With `wait` (a
        caught-up follower), the timeline answers at its next commit or after `wait` seconds;
        that ask is made outside the mutex (a send's catch-up does not wait for it) and ends
        early when `stop` is set or the follower is nudged."""
        if wait <= 0:
            async with self.mutex:
                return await self._take(await self._ask(self.cursor, 0.0))
        cursor = self.cursor
        reply = await unless_stopped(stop or asyncio.Event(), self._ask(cursor, wait), self.nudged)
        if reply is None:
            return 0
        async with self.mutex:
            if self.cursor != cursor:
                return 0  # a catch-up read from there meanwhile: the next round asks again
            return await self._take(reply)

    async def _ask(self, cursor: int, wait: float) -> tapi.ListChangedProfilesResponse:
        request = tapi.ListChangedProfilesRequest(
            after_cursor=cursor, limit=PAGE, read_mask=FieldMask(paths=FACT_FIELDS)
        )
        if wait > 0:
            request.max_wait.FromTimedelta(timedelta(seconds=wait))
        reply: tapi.ListChangedProfilesResponse = await self._stub().ListChangedProfiles(
            request, timeout=10 + wait
        )
        return reply

    async def _take(self, reply: tapi.ListChangedProfilesResponse) -> int:
        if reply.profiles:
            facts = [facts_of(p.profile) for p in reply.profiles]
            await blocking(self.marketing.observe, facts)
        self.cursor = reply.cursor
        return len(reply.profiles)

    def nudge(self) -> None:
        """A segment's version waits for its evaluation: end a long wait for changes now."""
        self.nudged.set()

    async def catch_up(self) -> None:
        """Every change the timeline has applied by now (before a send: consent as of now)."""
        while await self.poll() == PAGE:
            pass

    async def run(self, stop: asyncio.Event) -> None:
        caught_up = False
        full_pass = True  # from cursor 0: every profile
        while not stop.is_set():
            if time.monotonic() - self.refreshed > self.refresh:
                async with self.mutex:
                    self.cursor, self.refreshed = 0, time.monotonic()
                caught_up, full_pass = False, True
            try:
                if caught_up:
                    changed = await self.poll(min(LONG_WAIT, self._until_due()), stop)
                else:
                    changed = await self.poll()
                self.nudged.clear()  # what was revised by now is evaluated next; later: nudged
                evaluated = await blocking(self.marketing.reevaluate, REEVALUATE_BATCH)
                if time.monotonic() - self.triggers_checked > TRIGGER_CHECK:
                    self.triggers_checked = time.monotonic()
                    await blocking(self.marketing.complete_ended)
                    await blocking(self.marketing.triggered)
            except grpc.aio.AioRpcError as exc:
                _log.warning("timeline unavailable for changed profiles: %s", exc.code().name)
                changed = evaluated = 0
                await sleep_or_stop(stop, 1.0)
            caught_up = changed < PAGE and evaluated < REEVALUATE_BATCH
            if caught_up and full_pass:
                full_pass = False
                self.settle()
            if caught_up:
                # The next changes are asked for in IDLE, many in one page, not one round (a
                # call, the profiles' keys, an evaluation) per command; that ask waits at the
                # timeline for the next change, rather than asking again every IDLE.
                await sleep_or_stop(stop, IDLE)

    def _until_due(self) -> float:
        """Seconds until the next trigger check or refresh (a long wait ends by then)."""
        now = time.monotonic()
        due = min(self.triggers_checked + TRIGGER_CHECK, self.refreshed + self.refresh)
        return max(IDLE, due - now)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None


class DeliveryReports:
    """A durable consumer of the provider's subjects: each report once on its touch; a
    revocation is asked of the customer service (idempotent by the report's id) before the
    report is acknowledged, so none is lost."""

    def __init__(
        self,
        marketing: Marketing,
        partner: Partner,
        nats_url: str,
        customer_addr: str,
        token: str = "",
    ) -> None:
        self.marketing = marketing
        self.token = token
        self.stream = StreamSettings.partner(partner.stream, partner.subjects)
        self.nats_url = nats_url
        self.customer_addr = customer_addr
        self.applied = 0

    async def revoke(self, stub: capi_grpc.CustomerServiceAsyncStub, r: Revocation) -> None:
        await stub.RevokeConsent(
            capi.RevokeConsentRequest(
                request_id=f"delivery-report:{r.report_id}",
                customer_id=r.customer_id,
                channel=CONSENT_CHANNELS.value(r.channel),
                purpose=CONSENT_PURPOSES.value(r.purpose),
                source=r.source,
            ),
            timeout=10,
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._consume(stop)
            except Exception:  # reconnect: NATS or the customer service went away
                _log.exception("delivery reports: retrying")
                await sleep_or_stop(stop, 1.0)

    async def _consume(self, stop: asyncio.Event) -> None:
        nc = await nats.connect(
            self.nats_url, name="marketing-delivery", **natsauth.client_options(self.nats_url)
        )
        channel = _channel(self.customer_addr, self.token)
        try:
            js = nc.jetstream()
            await ensure_stream(js, self.stream)
            subject = self.stream.subjects[0]
            sub = await durable_puller(
                js,
                self.stream.name,
                ConsumerConfig(
                    durable_name=DURABLE,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=30,
                    filter_subject=subject,
                ),
            )
            customers = capi_grpc.CustomerServiceStub(channel)
            while not stop.is_set():
                for msg in await sub.fetch(64, timeout=0.5):
                    await self._take(msg.data, customers)
                    await msg.ack()
        finally:
            await channel.close(None)
            with contextlib.suppress(Exception):
                await nc.close()

    async def _take(self, data: bytes, customers: capi_grpc.CustomerServiceAsyncStub) -> None:
        try:
            report = delivery_pb2.DeliveryReport.FromString(data)
            kind = RESPONSES.word(report.kind)
            at = (
                report.occurred_at.ToDatetime(tzinfo=UTC)
                if report.HasField("occurred_at")
                else self.marketing.clock()
            )
            touch_id = UUID(report.touch_id)
            revocation = await blocking(
                self.marketing.record_report, touch_id, kind, report.report_id, report.detail, at
            )
        except (ValueError, C360Error) as exc:
            # Not ours to fix: a malformed report or an unknown touch is dropped, logged.
            _log.warning("delivery report dropped: %s", type(exc).__name__)
            return
        self.applied += 1
        if revocation is None:
            return
        try:
            await self.revoke(customers, revocation)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in FOR_GOOD:
                raise  # the customer service is away: the report comes again, and asks again
            # Forgotten (or unknown) since the touch: it takes no change, now or on any retry;
            # the report is kept, and acknowledged (it came back every 30 s, failing, and
            # held up the reports fetched after it).
            _log.warning("delivery report: no consent to revoke (%s)", exc.code().name)
