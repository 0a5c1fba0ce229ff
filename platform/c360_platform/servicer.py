"""What every service's gRPC servicer shares: a command's path (request -> context, the
application off the event loop, outcome -> reply) and its registration on a host."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from c360_platform.commands import (
    command_context,
    command_result,
    in_command_thread,
    run_on_loop,
)
from c360_platform.errors import C360Error, DeadlineExceeded
from c360_platform.rpc import Register
from c360_platform.store import (
    CommandContext,
    CommandOutcome,
    Deferred,
    ServiceApplication,
    on_loop,
)

if TYPE_CHECKING:
    from c360.timeline.v1 import timeline_service_pb2 as tapi
    from c360_platform.context import ContextReader

App = TypeVar("App", bound=ServiceApplication)
R = TypeVar("R")
T = TypeVar("T")
S = TypeVar("S")
Ctx = grpc.aio.ServicerContext[Any, Any]

ANSWER_MARGIN = 0.25
"""Seconds of a call's deadline kept for answering it after a check that may wait (a customer
not on the timeline yet)."""


class CommandServicer(Generic[App]):
    """Base of a service's servicer: `self.app` and the one way commands are answered."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def command(
        self,
        request: Any,
        context: Ctx,
        reply: Callable[..., R],
        run: Callable[[CommandContext], CommandOutcome],
        *,
        extra: Sequence[str] = (),
        decide_on_loop: bool = False,
    ) -> R:
        """Run a command of the application (on a command thread, or with `decide_on_loop` on
        the event loop) and build its reply: the `CommandResult`, plus the reply fields named
        in `extra` from what the command created.
        The command's name (for idempotency) is the request's type without `Request`.

        `decide_on_loop`: `run` is a pure creation (`ServiceApplication.execute`'s `pure`)
        of an application that `decides_on_loop`: it is decided on the event loop and its
        write awaited there, with no command thread (a thread hop and a blocked thread
        less per command); where the application cannot, it runs on a thread as others do."""
        ctx = command_context(type(request).__name__.removesuffix("Request"), request, context)
        if decide_on_loop and self.app.decides_on_loop:
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:  # as on a command thread, below
                raise DeadlineExceeded("the caller's deadline passed before the command ran")
            with self.app.deciding():
                with on_loop():
                    deferred = run(ctx)
                if not isinstance(deferred, Deferred):
                    raise RuntimeError(f"{ctx.command} did not run as a command on the loop")
                outcome = await run_on_loop(deferred.steps)
            return self._reply(reply, outcome, extra)
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining

        def run_in_time() -> CommandOutcome:
            # Checked again on the worker thread: the call may have queued for one.
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceeded("the caller's deadline passed before the command ran")
            return run(ctx)

        # From here until its write, the writer's next batch waits for this command.
        with self.app.deciding():
            outcome = await in_command_thread(run_in_time)
        return self._reply(reply, outcome, extra)

    async def checked(
        self,
        request: Any,
        context: Ctx,
        reply: Callable[..., R],
        check: Awaitable[T],
        *,
        extra: Sequence[str] = (),
    ) -> tuple[T, None] | tuple[None, R]:
        """What a check made before a command gives (`(value, None)`), or, when the check
        refuses and the request was answered before, that first answer (`(None, reply)`):
        a retry gets the answer of its first attempt even if what the check looked at has
        changed since (its customer forgotten in between). The request id is looked up only
        when the check refuses, so the commands that are not retries pay nothing."""
        try:
            return await check, None
        except C360Error:
            ctx = command_context(type(request).__name__.removesuffix("Request"), request, context)
            outcome = await in_command_thread(lambda: self.app.replay(ctx))
            if outcome is None:
                raise
            return None, self._reply(reply, outcome, extra)

    async def customer_checked(
        self,
        timeline: ContextReader | None,
        request: Any,
        context: Ctx,
        reply: Callable[..., R],
        customer_id: str,
        what: str,
        *,
        allow_unknown: str = "",
        allowed: bool = False,
    ) -> tuple[tapi.Profile | None, R | None]:
        """The profile of the customer a command records `what` for
        (`ContextReader.require_customer`: NOT_FOUND, FAILED_PRECONDITION), through `checked`
        (a retry gets its first answer): `(profile, None)` to go on with, `(None, reply)` to
        answer with. Not asked without a `timeline` or a customer id: `(None, None)`."""
        if timeline is None or not customer_id.strip():
            return None, None
        from c360_platform.context import KNOWN_GRACE

        # A customer not on the timeline is looked for a while (one registered a moment ago
        # may not be projected yet), but not past the call's deadline: the caller gets its
        # NOT_FOUND in time, not DEADLINE_EXCEEDED.
        remaining = context.time_remaining()
        grace = KNOWN_GRACE if remaining is None else remaining - ANSWER_MARGIN
        check = timeline.require_customer(
            customer_id.strip(),
            what,
            allow_unknown=allow_unknown,
            allowed=allowed,
            grace=max(0.0, min(KNOWN_GRACE, grace)),
        )
        return await self.checked(request, context, reply, check)

    def _reply(self, reply: Callable[..., R], outcome: CommandOutcome, extra: Sequence[str]) -> R:
        fields = {name: outcome.extra.get(name, "") for name in extra}
        return reply(result=command_result(self.app.source, outcome), **fields)


def registration(
    servicer: S, add: Callable[[S, grpc.aio.Server], None], descriptor: ServiceDescriptor
) -> tuple[str, Register, S]:
    """(full service name, register) for `ServiceHost.add`: the generated `add_…_to_server`
    function applied to the servicer, under the name health and reflection report."""

    def register(server: grpc.aio.Server) -> None:
        add(servicer, server)

    return descriptor.full_name, register, servicer
