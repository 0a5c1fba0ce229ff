"""Marketing's follower of the timeline's changed profiles (a timeline stub of the test's own,
no servers): caught up, it asks again after IDLE, many changes in one page, not once per
change; a full page is followed at once; a pass over every profile, once done, settles what it
read out of the collector's sight (once per pass)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_marketing.application import Marketing
from c360_marketing.follower import IDLE, LONG_WAIT, PAGE, ProfileFollower
from tests.unit.support import Clock


class Timeline:
    """ListChangedProfiles as the timeline answers it: `pages` lists how many changed
    profiles each call finds (after them: `then` each)."""

    def __init__(self, pages: list[int], then: int) -> None:
        self.pages = pages
        self.then = then
        self.calls: list[float] = []
        self.waits: list[float] = []
        self.cursor = 0

    async def ListChangedProfiles(
        self, request: tapi.ListChangedProfilesRequest, timeout: float
    ) -> tapi.ListChangedProfilesResponse:
        self.calls.append(time.monotonic())
        self.waits.append(request.max_wait.ToTimedelta().total_seconds())
        n = self.pages.pop(0) if self.pages else self.then
        if n == 0 and self.waits[-1] > 0:
            await asyncio.sleep(self.waits[-1])  # nothing changes while the ask waits
        changed = []
        for _ in range(min(n, request.limit)):
            self.cursor += 1
            profile = tapi.Profile(customer_id=str(uuid.uuid4()), display_name="Ada", kind="person")
            changed.append(tapi.ChangedProfile(profile=profile, cursor=self.cursor))
        return tapi.ListChangedProfilesResponse(profiles=changed, cursor=self.cursor)


class Follower(ProfileFollower):
    def __init__(self, timeline: Timeline) -> None:
        super().__init__(Marketing.in_memory(Clock(datetime.now(UTC))), "unused:0")
        self.timeline = timeline
        self.settled: list[int] = []
        """The cursor at each call of `settle` (the test process's collector is left as is)."""
        self.settle = lambda: self.settled.append(self.cursor)

    def _stub(self) -> Any:
        return self.timeline


async def follow(follower: Follower, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(follower.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, 5)


def test_a_follower_caught_up_asks_once_per_idle_while_changes_keep_coming() -> None:
    timeline = Timeline([], then=1)  # every call finds a change: the stack under load
    follower = Follower(timeline)
    asyncio.run(follow(follower, 5 * IDLE))
    assert 4 <= len(timeline.calls) <= 7, len(timeline.calls)
    assert follower.cursor == timeline.cursor
    assert len(follower.marketing.facts) == timeline.cursor  # every change taken in


def test_a_full_page_is_followed_at_once() -> None:
    timeline = Timeline([PAGE, PAGE, PAGE], then=0)  # a backlog, then nothing
    follower = Follower(timeline)
    asyncio.run(follow(follower, 5 * IDLE))
    assert len(timeline.calls) >= 4
    first, after_backlog = timeline.calls[0], timeline.calls[3]
    # The pages of the backlog one after the other: waiting IDLE after each would take 3 IDLE
    # at least; 2 IDLE leaves room for a loaded machine (0.104 s was seen in CI).
    assert after_backlog - first < 2 * IDLE
    assert len(follower.marketing.facts) == 3 * PAGE


def test_a_caught_up_follower_asks_once_and_waits_at_the_timeline_for_the_next_change() -> None:
    timeline = Timeline([3], then=0)  # three changes, then none
    follower = Follower(timeline)
    asyncio.run(follow(follower, 10 * IDLE))
    # The first ask (at once), then one that waits at the timeline: not one every IDLE.
    assert timeline.waits == [0.0, LONG_WAIT]
    assert timeline.calls[1] - timeline.calls[0] >= IDLE  # changes of IDLE in one page
    assert len(follower.marketing.facts) == 3


def test_a_nudge_ends_the_long_wait_at_once() -> None:
    timeline = Timeline([], then=0)
    follower = Follower(timeline)

    async def nudged() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(follower.run(stop))
        await asyncio.sleep(3 * IDLE)  # in its long wait now
        assert timeline.waits == [0.0, LONG_WAIT]
        follower.nudge()  # a segment was revised
        await asyncio.sleep(2 * IDLE)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(nudged())
    # Woken: it evaluated, paused IDLE and asked again (waiting again), well before LONG_WAIT.
    assert timeline.waits == [0.0, LONG_WAIT, LONG_WAIT]
    assert timeline.calls[2] - timeline.calls[1] < LONG_WAIT / 2


def test_a_pass_over_every_profile_settles_once_it_is_done() -> None:
    timeline = Timeline([PAGE, PAGE, 3, 1, 1], then=0)  # everyone, then a few changes
    follower = Follower(timeline)
    asyncio.run(follow(follower, 5 * IDLE))
    assert follower.settled == [2 * PAGE + 3]  # at the end of the pass, not after the changes
    assert follower.cursor == 2 * PAGE + 5
    follower.refreshed -= follower.refresh  # due: every profile again, a second pass
    timeline.pages = [PAGE, 2]
    asyncio.run(follow(follower, 3 * IDLE))
    assert follower.settled == [2 * PAGE + 3, 2 * PAGE + 5 + PAGE + 2]


def test_settling_freezes_only_in_a_process_that_serves_alone() -> None:
    """What `settle_long_lived` does, in processes of their own (it freezes what it finds):
    nothing where services share the process (the tests' stack); in a service's process
    (`rpc.run` marks it), what is alive leaves the collector's sight."""
    code = (
        "import gc, sys\n"
        "from c360_platform import rpc\n"
        "rpc._serving_alone = sys.argv[1] == 'alone'\n"
        "facts = [{'id': str(i), 'tags': frozenset({'a'})} for i in range(10000)]\n"
        "before = len(gc.get_objects())\n"
        "rpc.settle_long_lived()\n"
        "print(gc.get_freeze_count(), len(gc.get_objects()), before)\n"
    )
    counts = {}
    for mode in ("alone", "shared"):
        done = subprocess.run(
            [sys.executable, "-c", code, mode], capture_output=True, text=True, check=True
        )
        counts[mode] = [int(n) for n in done.stdout.split()]
    frozen, tracked, before = counts["alone"]
    assert frozen >= 20_000  # the facts and their tag sets
    assert tracked < before // 10
    frozen, tracked, before = counts["shared"]
    assert frozen == 0
    assert tracked >= before


def test_a_revocation_asks_the_customer_service_for_the_touchs_purpose() -> None:
    """An unsubscribe from a service reminder revokes the service consent on its channel
    (every revocation asked for marketing's)."""
    from c360.customer.v1 import customer_service_pb2 as capi
    from c360.events.v1 import customer_events_pb2 as cev
    from c360_marketing.application import Revocation
    from c360_marketing.follower import DeliveryReports

    asked: list[capi.RevokeConsentRequest] = []

    class Customers:
        async def RevokeConsent(self, request: capi.RevokeConsentRequest, timeout: float) -> None:
            asked.append(request)

    reports = object.__new__(DeliveryReports)  # revoke reads nothing of its own
    for purpose in ("service", "marketing"):
        revocation = Revocation(str(uuid.uuid4()), "email", f"r-{purpose}", "unsubscribed", purpose)
        asyncio.run(reports.revoke(Customers(), revocation))  # type: ignore[arg-type]
    assert [(r.channel, r.purpose) for r in asked] == [
        (cev.CONSENT_CHANNEL_EMAIL, cev.CONSENT_PURPOSE_SERVICE),
        (cev.CONSENT_CHANNEL_EMAIL, cev.CONSENT_PURPOSE_MARKETING),
    ]
    assert asked[0].request_id == "delivery-report:r-service"
    assert asked[0].source == "marketing: unsubscribed"
    # The consent's evidence names the campaign, within the 64 characters a source has.
    named = Revocation("c", "email", "r", "unsubscribed", campaign_name="Autumn newsletter")
    assert named.source == "marketing: unsubscribed from Autumn newsletter"
    long = Revocation("c", "email", "r", "unsubscribed", campaign_name="Autumn " * 20)
    assert len(long.source) == 64
    assert long.source.endswith("…")


def test_an_unsubscribe_of_a_customer_forgotten_since_is_taken_not_retried_for_ever() -> None:
    """The customer service refuses a forgotten customer's consent change for good: the
    report is taken (the consumer failed on it, and it came back every 30 s for ever, holding
    up the reports fetched after it); a customer service that is away is retried."""
    import grpc

    from c360.events.v1 import marketing_events_pb2 as mev
    from c360.marketing.v1 import delivery_pb2
    from c360_marketing.follower import DeliveryReports
    from c360_platform.store import RowQuery, where
    from tests.unit.test_marketing_application import ADA, ctx, define, person, plan

    mk = Marketing.in_memory(Clock(datetime.now(UTC)))
    mk.observe([person(ADA, "Ada")])
    define(mk)
    cid = plan(mk)
    mk.change_campaign(ctx(), cid, None, lambda c: c.approve(""))
    mk.send(ctx("s"), cid, None, launch=True)
    [touch] = [str(r["row_id"]) for r in mk.people.rows(RowQuery(where(kind="touch")))]

    class Customers:
        def __init__(self, code: grpc.StatusCode) -> None:
            self.code = code

        async def RevokeConsent(self, request: Any, timeout: float) -> None:
            raise grpc.aio.AioRpcError(
                self.code, grpc.aio.Metadata(), grpc.aio.Metadata(), "forgotten", None
            )

    reports = object.__new__(DeliveryReports)
    reports.marketing, reports.applied = mk, 0
    report = delivery_pb2.DeliveryReport(
        report_id="u-1", touch_id=touch, kind=mev.TOUCH_RESPONSE_KIND_UNSUBSCRIBED
    ).SerializeToString()
    forgotten = Customers(grpc.StatusCode.FAILED_PRECONDITION)
    asyncio.run(reports._take(report, forgotten))  # type: ignore[arg-type]
    assert reports.applied == 1
    away = Customers(grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # not acknowledged: comes again
        asyncio.run(reports._take(report, away))  # type: ignore[arg-type]
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
