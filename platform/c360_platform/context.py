"""A business service's read of the customer's 360 context from the timeline service (gRPC).

The context is a convenience beside a service's own answer, never a reason to fail it: when
the timeline is down, slow or has no profile yet, the context comes back marked unavailable
with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from uuid import UUID

import grpc

from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360.timeline.v1 import timeline_service_pb2_grpc as tapi_grpc
from c360_platform import channels
from c360_platform.errors import NotFound, PreconditionFailed, Unavailable

_log = logging.getLogger(__name__)
RECENT_ENTRIES = 5
KNOWN_GRACE = 2.0
"""How long a customer not (yet) on the timeline is looked for before it counts as unknown."""


@dataclass(frozen=True)
class CustomerContext:
    """The customer's profile and latest timeline entries, or why they are not there."""

    available: bool
    reason: str = ""
    profile: tapi.Profile | None = None
    recent: list[tapi.TimelineEntry] = field(default_factory=list)


class ContextReader:
    """Reads profiles from the timeline query API at `address` (host:port), within `timeout`."""

    def __init__(self, address: str, *, timeout: float = 2.0, token: str = "") -> None:
        self.address = address
        self.token = token
        self.timeout = timeout
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> tapi_grpc.TimelineServiceAsyncStub:
        if self._channel is None:
            # Created lazily, inside the serving event loop.
            self._channel = channels.aio_channel(
                self.address, self.token, options=[("grpc.enable_http_proxy", 0)]
            )
        return tapi_grpc.TimelineServiceStub(self._channel)

    async def read(self, customer_id: str, wait_for: str = "") -> CustomerContext:
        """The context of a customer; with `wait_for` (a consistency token) it includes that
        write if the timeline applies it within half the timeout, else it is read as it is."""
        stub = self._stub()
        try:
            profile = await self._profile(stub, customer_id, wait_for)
            page = await stub.GetTimeline(
                tapi.GetTimelineRequest(customer_id=customer_id, page_size=RECENT_ENTRIES),
                timeout=self.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            return CustomerContext(False, self._reason(exc, customer_id))
        return CustomerContext(True, profile=profile, recent=list(page.entries))

    async def _profile(
        self, stub: tapi_grpc.TimelineServiceAsyncStub, customer_id: str, wait_for: str
    ) -> tapi.Profile:
        if wait_for:
            try:
                reply = await stub.GetProfile(
                    tapi.GetProfileRequest(customer_id=customer_id, wait_for=wait_for),
                    timeout=self.timeout / 2,
                )
                return reply.profile
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
        reply = await stub.GetProfile(
            tapi.GetProfileRequest(customer_id=customer_id), timeout=self.timeout / 2
        )
        return reply.profile

    async def require_customer(
        self,
        customer_id: str,
        what: str,
        *,
        allow_unknown: str = "",
        allowed: bool = False,
        grace: float = KNOWN_GRACE,
    ) -> tapi.Profile | None:
        """The profile of the customer a command records `what` (a ticket, a contract) for.
        NOT_FOUND when the timeline does not know them, unless the request's option
        `allow_unknown` is set (`allowed`; the timeline being down is then no reason to
        refuse either); FAILED_PRECONDITION when they are forgotten, whatever was asked: what
        is recorded for them now would be sealed with a key that is gone, unreadable at once;
        FAILED_PRECONDITION naming the survivor when they were merged into another customer,
        as the customer service refuses commands on a merged customer: the person's record is
        the survivor's, and work recorded on the duplicate would split again at an unmerge.
        None for an id that is no UUID (the domain names it with the other offending fields)
        and for an unknown customer allowed. `grace`: how long one not on the timeline is
        looked for (`known_profile`)."""
        try:
            UUID(customer_id)
        except ValueError:
            return None
        try:
            profile = await self.known_profile(customer_id, grace)
        except Unavailable:
            if allowed:
                return None
            raise
        if profile is None:
            if allowed:
                return None
            option = f", or set {allow_unknown} to record it anyway" if allow_unknown else ""
            raise NotFound(
                f"customer {customer_id} is not known to the timeline; check the id ({what} is"
                f" recorded only for a registered customer){option}"
            )
        if forgotten(profile):
            raise PreconditionFailed(
                f"customer {customer_id} is forgotten (their personal data was erased on"
                f" request): {what} is not recorded for them; if the person comes back,"
                " register them again"
            )
        if profile.merged_into:
            survivor = profile.merged_into
            raise PreconditionFailed(
                f"customer {customer_id} was merged into customer {survivor}: record {what}"
                f" for {survivor} (or unmerge {customer_id} first)"
            )
        return profile

    async def knows(self, customer_id: str, grace: float = KNOWN_GRACE) -> bool:
        """Whether the timeline has a profile of the customer (see `known_profile`)."""
        return await self.known_profile(customer_id, grace) is not None

    async def known_profile(
        self, customer_id: str, grace: float = KNOWN_GRACE
    ) -> tapi.Profile | None:
        """The customer's profile, None if the timeline has none. A customer registered a
        moment ago may not be projected yet: NOT_FOUND is asked again for up to `grace`
        seconds. Unavailable (naming the timeline) when it cannot be asked."""
        stub = self._stub()
        deadline = asyncio.get_running_loop().time() + grace
        pause = 0.02
        while True:
            try:
                reply = await stub.GetProfile(
                    tapi.GetProfileRequest(customer_id=customer_id), timeout=self.timeout
                )
                return reply.profile
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise Unavailable(
                        f"cannot check that customer {customer_id} exists:"
                        f" {self._reason(exc, customer_id)}"
                    ) from None
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return None
            await asyncio.sleep(min(pause, left))
            pause *= 2

    def _reason(self, exc: grpc.aio.AioRpcError, customer_id: str) -> str:
        code = exc.code()
        if code == grpc.StatusCode.NOT_FOUND:
            return f"the timeline has no profile of customer {customer_id} (yet)"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"the timeline service at {self.address} did not answer in time"
        if code == grpc.StatusCode.UNAVAILABLE:
            return f"the timeline service at {self.address} is unavailable"
        _log.warning("timeline context failed: %s", code.name)
        return f"the timeline service answered {code.name}"

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None


def forgotten(profile: tapi.Profile) -> bool:
    """Whether the profile is of a customer forgotten on request (`forgotten_at` is set)."""
    value = profile.attributes.fields.get("forgotten_at")
    return value is not None and bool(value.string_value)
