"""Prometheus metrics for operators, on `prometheus_client` (the Prometheus project's own client:
counters, histograms and the /metrics endpoint in one dependency-free library).

    c360_rpc_requests_total{service,method,code}     gRPC calls handled
    c360_rpc_duration_seconds{service,method,code}   their latency (histogram)
    c360_relay_active{source}                        1 where this process holds the relay lock
    c360_relay_lag_events{source}                    stored position - published position
    c360_relay_blocked_position{source}              an event too large to publish (0: none)
    c360_projector_active{consumer}                  1 where it holds the projector lock
    c360_projector_lag_messages{consumer}            stream messages not yet applied
    c360_dead_letters                                messages on the dead-letter stream

`RpcMetrics` is a gRPC server interceptor (every ServiceHost has one); `watch(host)` samples the
host's relay and projector every few seconds; `serve_from_env()` starts the HTTP endpoint on
$C360_METRICS_PORT (nothing is served when it is unset, as in `c360 up` where many services
share one machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from c360_platform.intercept import WrappingInterceptor
from c360_platform.leader import wait_at_most

if TYPE_CHECKING:
    from c360_platform.relay import OutboxRelay
    from c360_platform.rpc import ServiceHost

_log = logging.getLogger(__name__)

RPC_REQUESTS = Counter(
    "c360_rpc_requests",
    "gRPC calls handled, by method and status code.",
    ["service", "method", "code"],
)
RPC_DURATION = Histogram(
    "c360_rpc_duration_seconds",
    "Time to handle a gRPC call (to its last message), by method and status code.",
    ["service", "method", "code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RELAY_ACTIVE = Gauge("c360_relay_active", "1 where this process holds the relay lock.", ["source"])
RELAY_LAG = Gauge(
    "c360_relay_lag_events",
    "Events stored but not yet published (stored - published position).",
    ["source"],
)
RELAY_BLOCKED = Gauge(
    "c360_relay_blocked_position",
    "Position of the stored event the relay is stopped at, too large for the NATS server to"
    " take (0: none).",
    ["source"],
)
PROJECTOR_ACTIVE = Gauge(
    "c360_projector_active", "1 where this process holds the projector lock.", ["consumer"]
)
PROJECTOR_LAG = Gauge(
    "c360_projector_lag_messages",
    "Stream messages the projector has not applied (pending plus unacknowledged).",
    ["consumer"],
)
DEAD_LETTERS = Gauge("c360_dead_letters", "Messages on the dead-letter stream.")

DEAD_LETTER_STREAM = "DEADLETTER"
SAMPLE_EVERY = 5.0


def code_of(exc: BaseException | None, context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The status a call ended with: OK, the code it was aborted with, else the mapped one."""
    if exc is None:
        return "OK"
    if isinstance(exc, asyncio.CancelledError):
        return "CANCELLED"
    with contextlib.suppress(Exception):
        code = context.code()
        if isinstance(code, grpc.StatusCode):
            return code.name
    from c360_platform.rpc import status_for  # rpc imports this module

    return status_for(exc)[0].name


class RpcMetrics(WrappingInterceptor):
    """Counts and times every call of a server, by method and status code."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def _observe(self, method: str, code: str, started: float) -> None:
        # The labelled children, looked up once per method and code (`labels` takes a lock).
        children = self._children.get((method, code))
        if children is None:
            children = self._children[method, code] = (
                RPC_REQUESTS.labels(self.service, method, code),
                RPC_DURATION.labels(self.service, method, code),
            )
        children[0].inc()
        children[1].observe(time.perf_counter() - started)

    def wrap(self, method: str, handler: Any) -> Any:
        observe = self._observe

        def single(inner: Any) -> Any:
            async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                started = time.perf_counter()
                try:
                    reply = await inner(request, context)
                except BaseException as exc:
                    observe(method, code_of(exc, context), started)
                    raise
                observe(method, code_of(None, context), started)
                return reply

            return call

        def stream(inner: Any) -> Any:
            async def call(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                started = time.perf_counter()
                try:
                    async for item in inner(request, context):
                        yield item
                except BaseException as exc:
                    observe(method, code_of(exc, context), started)
                    raise
                observe(method, code_of(None, context), started)

            return call

        kinds = {"request_deserializer": handler.request_deserializer}
        kinds["response_serializer"] = handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(single(handler.unary_unary), **kinds)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(single(handler.stream_unary), **kinds)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), **kinds)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream), **kinds)
        return handler


async def sample_relay(relay: OutboxRelay) -> None:
    """The relay's lock and, where it holds it, its lag."""
    source = relay.source
    active = relay.active.is_set()
    RELAY_ACTIVE.labels(source).set(1 if active else 0)
    stored = await asyncio.to_thread(relay.app.recorder.max_notification_id)
    # The acknowledged position, not only the written one (written at most once a second).
    published = max(relay.acknowledged, await asyncio.to_thread(relay.position))
    RELAY_LAG.labels(source).set(max(0, (stored or 0) - published))
    RELAY_BLOCKED.labels(source).set(relay.blocked or 0)


async def sample_projector(projector: Any) -> None:
    """A JetStream projector (duck-typed: `durable`, `active`, and while active its `consumer`,
    a pull subscription or an object holding one as `sub`, and `js`): its lock, its lag and the
    dead-letter count."""
    consumer_name = str(getattr(projector, "durable", "projector"))
    active = bool(getattr(projector, "active", None) and projector.active.is_set())
    PROJECTOR_ACTIVE.labels(consumer_name).set(1 if active else 0)
    consumer = getattr(projector, "consumer", None)
    subscription = getattr(consumer, "sub", consumer)
    if active and subscription is not None:
        info = await subscription.consumer_info()
        PROJECTOR_LAG.labels(consumer_name).set(
            (info.num_pending or 0) + (info.num_ack_pending or 0)
        )
    js = getattr(projector, "js", None)
    if active and js is not None:
        stream = await js.stream_info(DEAD_LETTER_STREAM)
        DEAD_LETTERS.set(stream.state.messages)


def watch(host: ServiceHost, every: float = SAMPLE_EVERY) -> None:
    """Sample the host's relay and projector in the background while it runs."""

    from c360_platform.relay import OutboxRelay

    async def sampler(stop: asyncio.Event) -> None:
        while not stop.is_set():
            for role, part in list(host.parts.items()):
                try:
                    if isinstance(part, OutboxRelay):
                        await sample_relay(part)
                    elif role == "projector":
                        await sample_projector(part)
                except Exception as exc:  # a metric is never worth a failed service
                    _log.debug("metrics: sampling %s failed: %s", role, exc)
            await wait_at_most(stop.wait(), every)

    host.background.append(sampler)


def serve(port: int, host: str = "0.0.0.0") -> Any:
    """Serve /metrics on a port of its own (a daemon thread); returns the server, whose
    shutdown() stops it."""
    server, _ = start_http_server(port, addr=host)
    _log.info("metrics on %s:%s/metrics", host, port)
    return server


def serve_from_env() -> Any:
    """Serve /metrics on $C360_METRICS_PORT (and $C360_METRICS_HOST), if set."""
    text = os.environ.get("C360_METRICS_PORT", "").strip()
    if not text:
        return None
    try:
        return serve(int(text), os.environ.get("C360_METRICS_HOST", "0.0.0.0"))
    except OSError as exc:  # e.g. several services on one machine given the same port
        _log.warning("metrics: cannot serve on port %s (%s); running without", text, exc)
        return None
