"""gRPC bootstrap on grpc.aio: health, reflection, error mapping, tracing, graceful drain."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import nats.errors
import psycopg
from eventsourcing.persistence import InterfaceError as StoreInterfaceError
from eventsourcing.persistence import OperationalError as StoreUnavailable
from google.protobuf import any_pb2, descriptor_pool
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as reflection_messages
from grpc_reflection.v1alpha import reflection_pb2_grpc as reflection_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer
from opentelemetry import context as otel_context
from opentelemetry import trace

from c360_platform import audit, auth, config, errors, inbound, metrics, telemetry, tls
from c360_platform.intercept import WrappingInterceptor
from c360_platform.processes import PortHolds

if TYPE_CHECKING:
    from c360_platform.config import Settings

_log = logging.getLogger(__name__)
T = TypeVar("T")

_CODES: list[tuple[type[errors.C360Error], grpc.StatusCode]] = [
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.PreconditionFailed, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.VersionConflict, grpc.StatusCode.ABORTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
]


_STORE_DOWN = (
    StoreUnavailable,  # the library's: connection refused, pool checkout timed out
    StoreInterfaceError,  # the library's: the connection was closed under the call
    psycopg.OperationalError,  # psycopg's own: AdminShutdown, pool timeouts (PoolTimeout)
    psycopg.InterfaceError,
)
_NATS_DOWN = (
    nats.errors.NoServersError,
    nats.errors.ConnectionClosedError,
    nats.errors.StaleConnectionError,
    nats.errors.TimeoutError,
)


MIN_CLIENT_PING_MS = 10_000
"""The shortest keepalive interval a client may ping a service at (grpc.keepalive_time_ms):
what load balancers and NAT that drop idle connections after a minute need."""

MAX_MESSAGE_BYTES = 500
"""The status message at most (UTF-8; sent percent-encoded in `grpc-message`, and again in
`grpc-status-details-bin`). An error's text may echo what the caller sent ("no segment
'…'"): a trailer over gRPC's metadata limits (8 KiB soft, 16 KiB hard) would turn the
answer into RESOURCE_EXHAUSTED, so the trailers of an error stay a few KiB at most."""
MAX_VALUE_CHARS = 64
"""A word of an error's text (an echoed value: nothing but a value is this long without a
space) longer than this is cut to it, with an ellipsis."""
MAX_FIELD_BYTES = 100
MAX_DESCRIPTION_BYTES = 300
MAX_DETAILS_BYTES = 3000
"""The BadRequest's violations at most (and at most inbound.MAX_REPORTED of them)."""
_LONG_WORD = re.compile(rf"\S{{{MAX_VALUE_CHARS + 1},}}")


def _cut(text: str, limit: int) -> str:
    """`text` in at most `limit` bytes of UTF-8, ending in an ellipsis if it was cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "\u2026"


def _cut_word(found: re.Match[str]) -> str:
    word = found.group()
    closing = word[len(word.rstrip("'\")]},.;:")) :][:3]  # the quote around a value stays
    return word[:MAX_VALUE_CHARS] + "\u2026" + closing


def shorten(text: str, limit: int) -> str:
    """An error's text for a trailer: long words (echoed values) and the whole cut to size."""
    return _cut(_LONG_WORD.sub(_cut_word, text), limit)


def _bad_request(exc: errors.InvalidArgument) -> tuple[str, error_details_pb2.BadRequest]:
    """The message and BadRequest of an INVALID_ARGUMENT: its first violations, each
    shortened, as many as fit MAX_DETAILS_BYTES (inbound.MAX_REPORTED at most); the message
    says how many more there were."""
    bad = error_details_pb2.BadRequest()
    for v in exc.violations[: inbound.MAX_REPORTED]:
        one = error_details_pb2.BadRequest.FieldViolation(
            field=_cut(v.field, MAX_FIELD_BYTES),
            description=shorten(v.description, MAX_DESCRIPTION_BYTES),
        )
        if bad.field_violations and bad.ByteSize() + one.ByteSize() > MAX_DETAILS_BYTES:
            break
        bad.field_violations.append(one)
    shown = [f"{v.field}: {v.description}" for v in bad.field_violations]
    left = len(exc.violations) - len(shown)
    if left:
        shown.append(f"and {left} more")
    return shorten("; ".join(shown), MAX_MESSAGE_BYTES), bad


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str, status_pb2.Status]:
    """The gRPC status (and google.rpc.Status with details) an exception maps to; its texts
    shortened to keep the trailers small (MAX_MESSAGE_BYTES, MAX_DETAILS_BYTES)."""
    code = grpc.StatusCode.INTERNAL
    message = "internal error; the server log has the details"
    details: list[any_pb2.Any] = []
    if isinstance(exc, errors.C360Error):
        for kind, mapped in _CODES:
            if isinstance(exc, kind):
                code = mapped
                break
        message = shorten(str(exc), MAX_MESSAGE_BYTES)
        if isinstance(exc, errors.InvalidArgument):
            message, bad = _bad_request(exc)
            packed = any_pb2.Any()
            packed.Pack(bad)
            details.append(packed)
    elif isinstance(exc, _STORE_DOWN):
        code = grpc.StatusCode.UNAVAILABLE
        message = "PostgreSQL is unavailable; retry"
    elif isinstance(exc, _NATS_DOWN):
        code = grpc.StatusCode.UNAVAILABLE
        message = "NATS is unavailable; retry"
    status = status_pb2.Status(code=code.value[0], message=message, details=details)
    return code, message, status


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> None:
    code, message, status = status_for(exc)
    if code == grpc.StatusCode.INTERNAL:
        _log.error("unhandled %s", type(exc).__name__, exc_info=exc)
    elif code == grpc.StatusCode.UNAVAILABLE:
        _log.warning("answered UNAVAILABLE: %s: %s", type(exc).__name__, exc)
    await context.abort(
        code, message, trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),)
    )


_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _id_fields(method: str) -> tuple[str, ...]:
    """The request's own string fields that name a record (`…_id`, not `request_id`)."""
    service, _, name = method.lstrip("/").rpartition("/")
    try:
        found = descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]
    except KeyError:
        return ()
    return tuple(
        f.name
        for f in found.input_type.fields
        if f.name.endswith("_id")
        and f.name != "request_id"
        and f.type == f.TYPE_STRING
        and not f.is_repeated
    )


OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
"""Calls that need no token (load balancers and probes check health)."""
REFLECTION_PREFIXES = ("/grpc.reflection.",)


class ServerInterceptor(WrappingInterceptor):
    """Authentication and the role check, one span per call (parent from the caller's
    traceparent), the request checks of `inbound`, and exception -> status."""

    def __init__(
        self,
        authority: auth.Authority | None = None,
        roles: dict[str, frozenset[auth.Role]] | None = None,
    ) -> None:
        super().__init__()
        self.authority = authority
        self.audit = audit.AuditTrail()
        self.roles = roles if roles is not None else {}
        """Method path -> the roles it admits (filled as services are added to the host)."""
        self._id_fields: dict[str, tuple[str, ...]] = {}

    def authorize(self, method: str, metadata: Any, request: Any = None) -> None:
        """Raise Unauthenticated / PermissionDenied unless the caller may call `method`;
        the audit line names the caller and the ids of the records `request` is about."""
        if self.authority is None or method.startswith(OPEN_PREFIXES):
            return
        if method.startswith(REFLECTION_PREFIXES):
            allowed = auth.ANY_ROLE
        else:
            allowed = self.roles.get(method, auth.DEFAULT_ROLES)
        try:
            principal = self.authority.authenticate(metadata or ())
        except errors.C360Error as exc:
            self.audit.refused(method, exc)
            raise
        try:
            auth.check_role(principal, allowed)
        except errors.C360Error as exc:
            self.audit.refused(method, exc, principal.subject)
            raise
        self.audit.admitted(
            method, principal.subject, principal.role, self._target(method, request)
        )
        # For the handler (a call runs in a task, and so a context, of its own).
        auth.CALLER.set(principal)

    def _target(self, method: str, request: Any) -> str:
        """`customer_id=…, ticket_id=…`: the ids a request names in its own fields (an id
        that is not a UUID, which may be whatever a caller typed, is shown as `?`)."""
        if not isinstance(request, Message):  # none, undecodable, or a stream of requests
            return ""
        fields = self._id_fields.get(method)
        if fields is None:
            fields = self._id_fields[method] = _id_fields(method)
        named = []
        for name in fields:
            value = getattr(request, name, "")
            if value:
                named.append(f"{name}={value if _ID.fullmatch(value) else '?'}")
        return ", ".join(named)

    def wrap(self, method: str, handler: Any) -> Any:
        tracer = telemetry.tracer("c360.grpc")

        def start_span(metadata: Mapping[str, str]) -> trace.Span:
            parent = telemetry.context_from_metadata(metadata)
            span = tracer.start_span(method, context=parent, kind=trace.SpanKind.SERVER)
            span.set_attribute("rpc.system", "grpc")
            span.set_attribute("rpc.method", method)
            return span

        def single_reply(inner: Any) -> Any:
            """Wrap a unary-unary or stream-unary behaviour (one reply)."""

            async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                metadata = context.invocation_metadata()
                span = start_span(text_metadata(metadata))
                token = otel_context.attach(trace.set_span_in_context(span))
                try:
                    self.authorize(method, metadata, request)
                    inbound.check(request)
                    return await inner(request, context)
                except Exception as exc:
                    await _fail(span, context, exc)
                finally:
                    otel_context.detach(token)
                    span.end()

            return call

        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                single_reply(handler.unary_unary),
                request_deserializer=inbound.tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            inner_su = handler.stream_unary

            async def stream_unary(
                requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
            ) -> Any:
                async def checked() -> AsyncIterator[Any]:
                    async for request in requests:
                        inbound.check(request)
                        yield request

                return await inner_su(checked(), context)

            return grpc.stream_unary_rpc_method_handler(
                single_reply(stream_unary),
                request_deserializer=inbound.tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            async def unary_stream(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                metadata = context.invocation_metadata()
                span = start_span(text_metadata(metadata))
                traced = trace.set_span_in_context(span)
                items: AsyncIterator[Any] | None = None
                # The span's context is attached only around each step of the handler, never
                # across a `yield`: a stream the client cancels is closed where it waits to
                # send (GeneratorExit, often from the event loop's finalizer, in another
                # Context), where a token attached before could not be detached.
                try:
                    with _attached(traced):
                        self.authorize(method, metadata, request)
                        inbound.check(request)
                        items = aiter(inner_us(request, context))
                    while True:
                        with _attached(traced):
                            try:
                                item = await anext(items)
                            except StopAsyncIteration:
                                break
                        yield item
                except Exception as exc:
                    with _attached(traced):
                        await _fail(span, context, exc)
                finally:
                    if items is not None and hasattr(items, "aclose"):
                        with _attached(traced):
                            await items.aclose()
                    span.end()

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=inbound.tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:  # reflection
            inner_ss = handler.stream_stream

            async def stream_stream(
                requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                try:
                    self.authorize(method, context.invocation_metadata())
                except errors.C360Error as exc:
                    await _abort(context, exc)
                async for item in inner_ss(requests, context):
                    yield item

            return grpc.stream_stream_rpc_method_handler(
                stream_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


@contextlib.contextmanager
def _attached(context: otel_context.Context) -> Iterator[None]:
    """A trace context made current for a step that does not yield across its end."""
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def text_metadata(metadata: Any) -> dict[str, str]:
    """A call's metadata without its binary (-bin) values."""
    return {k: v for k, v in (metadata or ()) if isinstance(v, str)}


async def _fail(
    span: trace.Span, context: grpc.aio.ServicerContext[Any, Any], exc: Exception
) -> None:
    """End a failed call with its mapped status (an abort already under way passes through)."""
    if _is_abort(exc):
        raise exc
    code = status_for(exc)[0]
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code == grpc.StatusCode.INTERNAL:
        span.record_exception(exc)
    await _abort(context, exc)


def _is_abort(exc: BaseException) -> bool:
    """context.abort() ends a call by raising AbortError: let it (and cancellation) through."""
    return isinstance(exc, (grpc.aio.AbortError, grpc.aio.UsageError, asyncio.CancelledError))


class Health(HealthServicer):  # type: ignore[misc]
    """grpc.health.v1.Health, with List (the asyncio servicer of grpcio-health-checking
    leaves it unimplemented)."""

    async def List(
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthListResponse:
        return health_pb2.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in self._server_status.items()
            }
        )


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def _reflection_v1(servicer: Any) -> grpc.GenericRpcHandler[Any, Any]:
    """Server reflection under its v1 name too (grpcio-reflection serves only v1alpha): the
    v1 messages are the v1alpha ones renamed, field for field, so the same servicer answers."""
    return grpc.method_handlers_generic_handler(
        REFLECTION_V1,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_messages.ServerReflectionRequest.FromString,
                response_serializer=reflection_messages.ServerReflectionResponse.SerializeToString,
            )
        },
    )


Register = Callable[[grpc.aio.Server], None]
Background = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class ServiceHost:
    """A grpc.aio server with health and reflection, plus the service's background tasks."""

    name: str
    port: int
    host: str = "127.0.0.1"
    services: list[tuple[str, Register]] = field(default_factory=list)
    background: list[Background] = field(default_factory=list)
    on_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    grace: float = 10.0
    parts: dict[str, Any] = field(default_factory=dict)
    """What the service is built of (its application, relay, projector), by role, for
    operators' tools and tests."""

    authority: auth.Authority | None = None
    """Checks every call's token; None only where no key is configured (a warning)."""
    reuse_port: bool = False
    """Listen with SO_REUSEPORT (several worker processes on one port, workers.py); off
    otherwise, so that a second server on a port in use fails instead of sharing it."""
    health_port: int | None = None
    """A plain port serving grpc.health.v1 only, for probes that cannot show a client
    certificate where `port` serves mutual TLS (the kubelet's); None: no such port."""

    def __post_init__(self) -> None:
        self.interceptor = ServerInterceptor(self.authority)
        self.server = grpc.aio.server(
            interceptors=[metrics.RpcMetrics(self.name), self.interceptor],
            options=[
                ("grpc.so_reuseport", int(self.reuse_port)),
                ("grpc.max_receive_message_length", 16 << 20),
                # Clients' keepalive pings, with or without a call under way (an idle
                # channel; a quiet WatchTimeline), as often as every MIN_CLIENT_PING_MS:
                # gRPC's default answers a client pinging more often than every 5 minutes
                # with GOAWAY "too_many_pings" after its third ping, dropping its connection.
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_MS),
            ],
        )
        self.health = Health()
        self.stop_event = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.bound_port = 0
        self.health_server: grpc.aio.Server | None = None
        self.health_bound_port = 0

    @classmethod
    def for_settings(cls, settings: Settings) -> ServiceHost:
        """The host of a service on the address its settings name."""
        authority = auth.Authority.of(
            settings.auth_public_key, settings.auth_secret, revocations=auth.revocations_path()
        )
        if authority is None:
            _log.warning("%s: no C360_AUTH_PUBLIC_KEY: every caller is admitted", settings.service)
        elif authority.accepts_secret:
            _log.warning("%s: %s", settings.service, auth.MOVE_ON)
        if authority is not None and not settings.token:
            _log.warning(
                "%s: no C360_TOKEN: its calls to other services carry no token and are"
                " refused; give it its own (role service, e.g. the Secret c360-token-%s)",
                settings.service,
                settings.service,
            )
        return cls(
            settings.service,
            settings.grpc_port,
            settings.grpc_host,
            authority=authority,
            reuse_port=settings.workers > 1,
            health_port=settings.health_port,
        )

    def add(self, full_name: str, register: Register, servicer: object | None = None) -> None:
        """Serve a gRPC service; the roles its methods admit come from `servicer`'s
        `@auth.requires` marks (every method admits auth.DEFAULT_ROLES otherwise)."""
        self.services.append((full_name, register))
        if servicer is not None:
            for method in descriptor_pool.Default().FindServiceByName(full_name).methods:
                path = f"/{full_name}/{method.name}"
                self.interceptor.roles[path] = auth.roles_of(servicer, method.name)

    def part(self, role: str, kind: type[T]) -> T:
        """One of the parts the service was built of, checked to be of `kind`."""
        found = self.parts.get(role)
        if not isinstance(found, kind):
            raise LookupError(f"service {self.name} has no {role} ({kind.__name__})")
        return found

    async def start(self) -> int:
        for opener in self.on_start:
            await opener()
        for _, register in self.services:
            register(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [n for n, _ in self.services]
        reflected = ReflectionServicer(
            [
                *names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
                REFLECTION_V1,
            ]
        )
        reflection_grpc.add_ServerReflectionServicer_to_server(reflected, self.server)
        self.server.add_generic_rpc_handlers((_reflection_v1(reflected),))
        files = tls.served()
        held.release(self.port)
        self.bound_port = (
            self.server.add_secure_port(f"{self.host}:{self.port}", files.server_credentials())
            if files is not None
            else self.server.add_insecure_port(f"{self.host}:{self.port}")
        )
        await self.server.start()
        if self.health_port is not None:
            # Health and nothing else: no reflection, no service, so nothing a token or a
            # certificate would guard is reachable on it.
            self.health_server = grpc.aio.server(
                options=[("grpc.so_reuseport", int(self.reuse_port))]
            )
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
            held.release(self.health_port)
            self.health_bound_port = self.health_server.add_insecure_port(
                f"{self.host}:{self.health_port}"
            )
            await self.health_server.start()
        for task in self.background:
            self.tasks.append(asyncio.create_task(task(self.stop_event)))
        for n in ["", *names]:
            await self.health.set(n, health_pb2.HealthCheckResponse.SERVING)
        loop = type(asyncio.get_running_loop()).__module__.partition(".")[0]
        _log.info(
            "%s serving on %s:%s (event loop: %s)", self.name, self.host, self.bound_port, loop
        )
        return self.bound_port

    async def stop(self) -> None:
        """Drain: report NOT_SERVING, finish calls in flight, stop background work."""
        await self.health.enter_graceful_shutdown()
        self.stop_event.set()
        await self.server.stop(self.grace)
        if self.health_server is not None:
            await self.health_server.stop(0)
        if self.tasks:
            done, pending = await asyncio.wait(self.tasks, timeout=self.grace)
            for task in pending:
                task.cancel()
            for task in done:
                if not task.cancelled() and task.exception():
                    _log.error("background task failed", exc_info=task.exception())
        for close in self.on_close:
            with contextlib.suppress(Exception):
                await close()
        self.interceptor.audit.flush()

    async def serve_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        await stop.wait()
        _log.info("%s draining", self.name)
        await self.stop()


_serving_alone = False
"""Set by `run`: this process serves its service alone (its heap is the service's own)."""

held = PortHolds()
"""The ports this process will serve on, held from its start until its servers bind them
(`reserve_ports`)."""


def reserve_ports(host: str, *ports: int | None, reuse_port: bool = False) -> None:
    """Hold the ports a service process will serve on from its start, before it connects to
    anything (`PortHolds`: a timeline's own pool had taken 50052 before its server bound it,
    and `make run` failed). Each is released just before its server binds it
    (`ServiceHost.start`)."""
    held.hold(host, *ports, reuse_port=reuse_port)


def settle_long_lived() -> None:
    """Collect what is garbage now, then move everything left out of the collector's sight
    (`gc.freeze`), for a service that has just read a large state it keeps (marketing's facts
    of every customer): each full collection walked it otherwise. What is frozen and later
    becomes garbage is still freed by reference counting (not if it is part of a cycle).
    Only in a process that serves one service alone (`run`); elsewhere (the tests' stack of
    every service in one process) the heap is not the service's to freeze."""
    if _serving_alone:
        gc.collect()
        gc.freeze()


def run(build: Callable[[], Awaitable[ServiceHost]]) -> None:
    """Entry point of a service process."""
    global _serving_alone
    _serving_alone = True
    worker = os.environ.get("C360_WORKER", "")
    # With several worker processes (workers.py) each line says which one wrote it.
    where = f" [worker {worker} pid %(process)d]" if worker else ""
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s{where} %(name)s: %(message)s"
    )

    async def main() -> None:
        host = await build()
        # What the process made to serve (its modules, descriptors, application) lives as
        # long as it does: out of the collector's sight, a full collection looks only at what
        # requests made, not at ~60,000 objects more (25 ms of CPU each time, on the path of
        # whichever call it interrupts).
        gc.freeze()
        await host.serve_until_signalled()

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(main())


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes a service process's event loop (`C360_EVENT_LOOP`): uvloop's, unless the
    standard library's is asked for (None: asyncio's default).

    Much of a service's CPU is the loop's own work around every call: grpc.aio's completion
    callbacks, psycopg's waits for its socket (a reader and a timer added and removed per
    wait), timers, the selector. uvloop does that work in C (libuv); grpc.aio, psycopg and
    nats-py run on it unchanged."""
    if config.event_loop_from_env() == "asyncio":
        return None
    import uvloop  # only a process that serves needs it

    return uvloop.new_event_loop
