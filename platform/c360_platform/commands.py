"""The gRPC side of commands: request -> CommandContext, outcome -> CommandResult, ids, threads."""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import message

from c360.common.v1 import command_pb2
from c360_platform import telemetry
from c360_platform.consistency import ConsistencyToken
from c360_platform.errors import InvalidArgument
from c360_platform.store import CommandContext, CommandOutcome, Steps, fingerprint

T = TypeVar("T")
MAX_REQUEST_ID = 128


def command_context(
    command: str, request: message.Message, context: grpc.aio.ServicerContext[Any, Any]
) -> CommandContext:
    """Request id (for idempotency), fingerprint, correlation and trace context of a command."""
    request_id = str(getattr(request, "request_id", "")).strip()
    if len(request_id) > MAX_REQUEST_ID:
        raise InvalidArgument.one("request_id", f"must be at most {MAX_REQUEST_ID} characters")
    anonymous = type(request)()
    anonymous.CopyFrom(request)
    if hasattr(anonymous, "request_id"):
        anonymous.request_id = ""
    metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
    traceparent, tracestate = telemetry.current_trace_headers()
    return CommandContext(
        command=command,
        request_id=request_id,
        fingerprint=fingerprint(anonymous.SerializeToString(deterministic=True)),
        correlation_id=metadata.get("x-correlation-id") or request_id or str(uuid.uuid4()),
        causation_id=metadata.get("x-causation-id", ""),
        traceparent=traceparent,
        tracestate=tracestate,
    )


def command_result(source: str, outcome: CommandOutcome) -> command_pb2.CommandResult:
    return command_pb2.CommandResult(
        aggregate_id=str(outcome.aggregate_id),
        version=outcome.version,
        consistency_token=str(ConsistencyToken(source, outcome.position)),
        replayed=outcome.replayed,
    )


def parse_id(field: str, value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise InvalidArgument.one(field, "not a valid id (UUID expected)") from None


def expected_version(request: message.Message) -> int | None:
    if request.HasField("expected_version"):
        return int(request.expected_version)  # type: ignore[attr-defined]
    return None


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking library call (the event store) off the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


COMMAND_THREADS = 32
"""Commands deciding (or waiting for their batch to commit) at once per process: enough for
the group-commit writer to gather batches under load (the event loop's default pool has
cores + 4 threads); most of them wait on PostgreSQL, not on the interpreter."""
_command_pool: ThreadPoolExecutor | None = None


async def in_command_thread(fn: Callable[[], T]) -> T:
    """Run a command (decide, then wait for its write) on a thread of the command pool."""
    global _command_pool
    if _command_pool is None:  # made on first use: after a worker process was forked
        _command_pool = ThreadPoolExecutor(COMMAND_THREADS, thread_name_prefix="command")
    loop = asyncio.get_running_loop()
    call = contextvars.copy_context().run
    return await loop.run_in_executor(_command_pool, call, fn)


_driving: set[asyncio.Task[Any]] = set()
"""Commands being driven on the event loop (held here: a task only the loop knows of may be
collected before it ends)."""


def _resumed(steps: Steps[T], exc: Exception) -> tuple[bool, Any]:
    """`steps.throw(exc)` off the event loop: (True, the outcome) if that ended the steps,
    else (False, the next write). StopIteration cannot cross an asyncio future."""
    try:
        return False, steps.throw(exc)
    except StopIteration as done:
        return True, done.value


async def _drive(steps: Steps[T]) -> T:
    try:
        waiting = next(steps)
        while True:
            try:
                ids = await asyncio.wrap_future(waiting)
            except Exception as exc:
                # What follows a failed write may read the store (a retry's first answer):
                # not on the event loop.
                ended, value = await asyncio.to_thread(_resumed, steps, exc)
                if ended:
                    return cast(T, value)
                waiting = value
            else:
                waiting = steps.send(ids)
    except StopIteration as done:
        return cast(T, done.value)


async def run_on_loop(steps: Steps[T]) -> T:
    """Drive a command's steps on the event loop: it decides here and its caller awaits its
    write with no thread of its own. A call cancelled meanwhile does not stop the command
    (as a command thread would not stop): it finishes, and settles its keys and cache."""
    task = asyncio.ensure_future(_drive(steps))
    _driving.add(task)
    task.add_done_callback(_driving.discard)
    return await asyncio.shield(task)
