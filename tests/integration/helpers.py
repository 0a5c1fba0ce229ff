"""Small helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from c360.customer.v1 import customer_service_pb2 as capi
from c360.customer.v1 import customer_service_pb2_grpc as customer_grpc
from c360.events.v1 import customer_events_pb2 as ev

T = TypeVar("T")


def registration(name: str, email: str, request_id: str = "") -> capi.RegisterCustomerRequest:
    return capi.RegisterCustomerRequest(
        request_id=request_id,
        kind=ev.CUSTOMER_KIND_PERSON,
        display_name=name,
        emails=[email],
        acquisition_channel="web",
    )


async def register(
    stub: customer_grpc.CustomerServiceAsyncStub, name: str, email: str, request_id: str = ""
) -> capi.RegisterCustomerResponse:
    return await stub.RegisterCustomer(registration(name, email, request_id))


def bad_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The field paths of the BadRequest carried by an INVALID_ARGUMENT error."""
    metadata: Any = error.trailing_metadata() or ()
    for key, value in metadata:
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                bad = error_details_pb2.BadRequest()
                if detail.Unpack(bad):
                    return [v.field for v in bad.field_violations]
    return []


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 15.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def status_of(call: Awaitable[Any]) -> grpc.StatusCode:
    """The status code a call ends with (OK if it succeeds)."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def _awaits(task: asyncio.Task[Any]) -> list[str]:
    """The chain of awaits a task is suspended in, outermost first (`print_stack` shows only
    a suspended task's own frame)."""
    lines: list[str] = []
    link: Any = task.get_coro()
    while link is not None:
        if type(link).__name__ == "async_generator_asend":
            # `async for` over an async generator awaits this object, which does not name its
            # generator; the garbage collector's view of what it refers to does.
            link = next((r for r in gc.get_referents(link) if hasattr(r, "ag_frame")), link)
        frame = getattr(link, "cr_frame", None) or getattr(link, "ag_frame", None)
        frame = frame or getattr(link, "gi_frame", None)
        if frame is None:
            lines.append(f"    awaiting {link!r:.200}")
            break
        code = frame.f_code
        lines.append(f"    {code.co_filename}:{frame.f_lineno} in {code.co_name}")
        awaited = ("cr_await", "ag_await", "gi_yieldfrom")
        link = next((getattr(link, a) for a in awaited if hasattr(link, a)), None)
    return lines


def where_everything_waits() -> str:
    """Each task of the running event loop and each thread, with where it waits (the tests'
    stack runs its services on the test's loop: what a hang waits for is here)."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}", *_awaits(task), sep="\n", file=out)
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        print(f"--- thread {names.get(ident, ident)}", file=out)
        traceback.print_stack(frame, limit=12, file=out)
    return out.getvalue()


async def within(seconds: float, work: Awaitable[T], what: str) -> T:
    """`work`'s result; if it takes longer than `seconds`, the test fails with where every
    task and thread waits at that moment (a hang that happens once in many runs explains
    itself), rather than with a bare deadline."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        stacks = where_everything_waits()
        task.cancel()
        raise AssertionError(f"{what} took longer than {seconds:.0f} s; waiting:\n{stacks}")
    return task.result()
