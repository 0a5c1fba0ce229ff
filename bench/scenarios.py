"""What the load generator sends: echo, RegisterCustomer, GetTimeline, and freshness probes."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from bench.echo import METHOD as ECHO_METHOD
from bench.measure import Measure, rpc_error
from c360.customer.v1 import customer_service_pb2 as customer_api
from c360.customer.v1 import customer_service_pb2_grpc as customer_grpc
from c360.events.v1 import customer_events_pb2 as events
from c360.timeline.v1 import timeline_service_pb2 as timeline_api
from c360.timeline.v1 import timeline_service_pb2_grpc as timeline_grpc
from c360_platform.channels import aio_channel

if TYPE_CHECKING:
    from c360.customer.v1.customer_service_pb2_grpc import CustomerServiceAsyncStub
    from c360.timeline.v1.timeline_service_pb2_grpc import TimelineServiceAsyncStub

CALL_TIMEOUT = 30.0
WATCHERS_SETTLE_S = 3.0
VISIBLE_TIMEOUT = 30.0


class NotVisibleError(Exception):
    """A registered customer did not show up in its timeline in time."""


def register_request(run_id: str, i: int) -> customer_api.RegisterCustomerRequest:
    """A unique registration (request id, name, e-mail) for request number `i`."""
    return customer_api.RegisterCustomerRequest(
        request_id=f"bench-{run_id}-{i}",
        kind=events.CUSTOMER_KIND_PERSON,
        display_name=f"Bench Customer {run_id} {i}",
        emails=[f"bench.{run_id}.{i}@example.com"],
    )


@dataclass
class Clients:
    """gRPC channels and stubs of one run, plus what the run has registered so far."""

    run_id: str
    ids: Iterator[int]
    customer_addr: str
    timeline_addr: str
    echo_addr: str
    customers: list[str] = field(default_factory=list)
    last_position: int = 0
    last_customer: str = ""
    rng: random.Random = field(default_factory=lambda: random.Random(360))
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    token: str = ""

    def __post_init__(self) -> None:
        customer_channel = aio_channel(self.customer_addr, self.token)
        timeline_channel = aio_channel(self.timeline_addr, self.token)
        echo_channel = grpc.aio.insecure_channel(self.echo_addr)
        self.channels = [customer_channel, timeline_channel, echo_channel]
        self.customer: CustomerServiceAsyncStub = customer_grpc.CustomerServiceStub(
            customer_channel
        )
        self.timeline: TimelineServiceAsyncStub = timeline_grpc.TimelineServiceStub(
            timeline_channel
        )
        self.echo_call: Any = echo_channel.unary_unary(
            ECHO_METHOD, request_serializer=None, response_deserializer=None
        )

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close(None)

    def _keep(self, reply: customer_api.RegisterCustomerResponse) -> str:
        customer_id = reply.result.aggregate_id
        self.customers.append(customer_id)
        position = int(reply.result.consistency_token.rpartition(":")[2] or 0)
        if position > self.last_position:
            self.last_position = position
            self.last_customer = customer_id
        return customer_id

    async def echo(self, i: int) -> None:
        """One echo call with a payload the size of a registration."""
        payload = register_request(self.run_id, i).SerializeToString()
        await self.echo_call(payload, timeout=CALL_TIMEOUT)

    async def register(self, i: int) -> customer_api.RegisterCustomerResponse:
        reply = await self.customer.RegisterCustomer(
            register_request(self.run_id, i), timeout=CALL_TIMEOUT
        )
        self._keep(reply)
        return reply

    async def register_op(self, i: int) -> None:
        await self.register(i)

    async def get_timeline(self, i: int) -> None:
        """First page of a random registered customer's timeline; an empty page is an error."""
        customer_id = self.customers[self.rng.randrange(len(self.customers))]
        reply = await self.timeline.GetTimeline(
            timeline_api.GetTimelineRequest(customer_id=customer_id), timeout=CALL_TIMEOUT
        )
        if not reply.entries:
            raise NotVisibleError(f"customer {customer_id} has an empty timeline")

    @contextlib.asynccontextmanager
    async def idle_watchers(self, count: int) -> AsyncIterator[None]:
        """`count` WatchTimeline streams on customers that get no new entries, open (and
        waiting) while the block runs; on a channel of their own, as other clients' would be."""
        channel = aio_channel(self.timeline_addr, self.token)
        stub = timeline_grpc.TimelineServiceStub(channel)
        calls = [
            stub.WatchTimeline(
                timeline_api.WatchTimelineRequest(
                    customer_id=self.customers[i % len(self.customers)], after_cursor=2**62
                )
            )
            for i in range(count)
        ]
        waiting = [asyncio.ensure_future(c.__aiter__().__anext__()) for c in calls]
        try:
            await asyncio.sleep(WATCHERS_SETTLE_S)  # each has looked once and waits now
            yield
        finally:
            for c in calls:
                c.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
            await channel.close(None)

    async def shown(self, request: timeline_api.GetTimelineRequest) -> bool:
        """Whether the customer's timeline has an entry: a read without wait_for, as a client
        polling would make it. A customer the timeline has not projected yet is NOT_FOUND
        (since 3eea58d), which is "not yet" here, not a failure (the polled freshness
        samples were nearly all failures since: 1-3 samples of 35-50 in a quick run)."""
        try:
            reply = await self.timeline.GetTimeline(request, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return bool(reply.entries)

    async def poll_visible(self, customer_id: str, poll: float) -> None:
        """Read the timeline (no wait_for) every `poll` seconds until the customer's entry shows."""
        deadline = time.monotonic() + VISIBLE_TIMEOUT
        request = timeline_api.GetTimelineRequest(customer_id=customer_id, page_size=1)
        while True:
            if await self.shown(request):
                return
            if time.monotonic() > deadline:
                raise NotVisibleError(f"not visible within {VISIBLE_TIMEOUT:.0f} s")
            await asyncio.sleep(poll)

    async def wait_visible(self, customer_id: str, token: str) -> None:
        """One GetTimeline with wait_for=token: the service's read-your-writes path."""
        reply = await self.timeline.GetTimeline(
            timeline_api.GetTimelineRequest(customer_id=customer_id, page_size=1, wait_for=token),
            timeout=CALL_TIMEOUT,
        )
        if not reply.entries:
            raise NotVisibleError("wait_for returned, but without the new entry")

    async def freshness(
        self, visible: Measure, waited: Measure, *, until: float, origin: float, poll: float
    ) -> None:
        """Register one customer at a time and time reply -> visible in the timeline.

        Alternates the two ways to see it: polling GetTimeline (`visible`) and one
        GetTimeline with the reply's consistency token (`waited`). Runs until `until`.
        """
        n = 0
        while time.monotonic() < until:
            by_polling = n % 2 == 0
            n += 1
            into = visible if by_polling else waited
            try:
                reply = await self.register(next(self.ids))
            except grpc.aio.AioRpcError as exc:
                into.fail(f"register {rpc_error(exc)}")
                continue
            replied = time.perf_counter_ns()
            at = time.monotonic() - origin
            customer_id = reply.result.aggregate_id
            if by_polling:
                await self.timed(into, at, replied, self.poll_visible(customer_id, poll))
            else:
                await self.waited(into, at, replied, reply)

    async def waited(
        self,
        into: Measure,
        at: float,
        replied: int,
        reply: customer_api.RegisterCustomerResponse,
    ) -> None:
        """Time reply (at `replied`, perf_counter_ns) -> visible by one wait_for read."""
        result = reply.result
        await self.timed(
            into, at, replied, self.wait_visible(result.aggregate_id, result.consistency_token)
        )

    @staticmethod
    async def timed(into: Measure, at: float, replied: int, seen: Awaitable[None]) -> None:
        """Await `seen`; record the time since `replied` into `into`, or why it failed."""
        try:
            await seen
        except grpc.aio.AioRpcError as exc:
            into.fail(rpc_error(exc))
            return
        except NotVisibleError as exc:
            into.fail(str(exc))
            return
        into.sample(at, time.perf_counter_ns() - replied)

    async def read_each(self, customer_ids: list[str], in_flight: int = 16) -> None:
        """GetProfile of each of these customers once, `in_flight` at a time: the timeline
        then holds their data keys (asked of the customer service at a customer's first read
        and kept a minute)."""
        gate = asyncio.Semaphore(in_flight)

        async def one(customer_id: str) -> None:
            async with gate:
                await self.timeline.GetProfile(
                    timeline_api.GetProfileRequest(customer_id=customer_id), timeout=CALL_TIMEOUT
                )

        await asyncio.gather(*(one(c) for c in customer_ids))

    async def get_profile(self, i: int) -> None:
        """A random registered customer's 360 profile."""
        customer_id = self.customers[self.rng.randrange(len(self.customers))]
        await self.timeline.GetProfile(
            timeline_api.GetProfileRequest(customer_id=customer_id), timeout=CALL_TIMEOUT
        )

    async def visible(self, customer_id: str, token: str, timeout: float) -> None:
        """Wait until the timeline has applied `token` (a customer's entries are visible)."""
        deadline = time.monotonic() + timeout
        request = timeline_api.GetTimelineRequest(
            customer_id=customer_id, page_size=1, wait_for=token
        )
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await self.timeline.GetTimeline(request, timeout=CALL_TIMEOUT)
                if reply.entries:
                    return
            await asyncio.sleep(0.5)
        raise NotVisibleError(f"{customer_id} not visible within {timeout:.0f} s")

    async def catch_up(self, poll: float, timeout: float = 120.0) -> float | None:
        """Seconds until the last registered customer is visible (None: not within timeout)."""
        if not self.last_customer:
            return 0.0
        started = time.monotonic()
        request = timeline_api.GetTimelineRequest(customer_id=self.last_customer, page_size=1)
        while time.monotonic() - started < timeout:
            if await self.shown(request):
                return time.monotonic() - started
            await asyncio.sleep(poll)
        return None
