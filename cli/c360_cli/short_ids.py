"""Short ids typed back: a request's id field holding the beginning of an id ("466108df", as
lists show ids) is completed before the call, by asking the services which of their aggregates
of that kind begin so (EventLogService.ResolveIds). Unique: the full id goes out; none: NOT
FOUND (exit 1); several: the candidates are named (exit 2)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from google.protobuf.message import Message

from c360.events.v1 import event_log_pb2 as log_api
from c360.events.v1 import event_log_pb2_grpc as log_grpc
from c360_cli.errors import EXIT_BAD_INPUT, EXIT_FAILURE, CliError

SHORT = re.compile(r"^[0-9a-fA-F]{4,8}(-[0-9a-fA-F]{0,4}){0,3}$")
"""The beginning of an id, 4 hex digits at least, shorter than a whole one."""

ALIASES = {
    "survivor": "customer",
    "duplicate": "customer",
    "person": "customer",
    "organisation": "customer",
    "contract": "service_contract",
    "survivor_ticket": "ticket",
    "duplicate_ticket": "ticket",
}
"""Id fields whose name is not their aggregate's kind."""

_NOT_CONNECTED = re.compile(r"failed to connect|connection refused|DNS resolution", re.I)
"""gRPC's words for an UNAVAILABLE that no server said (nothing listens there)."""

NOT_AGGREGATES = frozenset({"request", "address", "link", "event", "merge", "line"})
"""`*_id` fields that are not aggregate ids (left as they are)."""


def kind_of_field(name: str) -> str | None:
    """The aggregate kind an id field refers to ("ticket_id" -> "ticket"), None if none."""
    if not name.endswith("_id"):
        return None
    stem = name[: -len("_id")]
    if stem in NOT_AGGREGATES:
        return None
    return ALIASES.get(stem, stem)


def is_short(value: str) -> bool:
    return bool(SHORT.match(value))


Resolve = Callable[[str, str], list[str]]
"""(kind, prefix) -> the full ids of that kind beginning so."""


def complete(request: Message, resolve: Resolve) -> Message:
    """`request` with its short ids completed (a copy; the request itself if none were)."""
    changes: dict[str, str] = {}
    for field, value in request.ListFields():
        if field.type != field.TYPE_STRING or field.is_repeated:
            continue
        kind = kind_of_field(field.name)
        if kind is None or not isinstance(value, str) or not is_short(value):
            continue
        found = resolve(kind, value)
        label = field.name.removesuffix("_id").replace("_", " ")
        if not found:
            raise CliError(
                f"no {label} id begins with {value}",
                EXIT_FAILURE,
                code="NOT_FOUND",
                field=field.name,
            )
        if len(found) > 1:
            raise CliError(
                f"{value} is the beginning of {len(found)} {kind.replace('_', ' ')} ids"
                f" ({', '.join(found[:5])}{', …' if len(found) > 5 else ''}): give more digits",
                EXIT_BAD_INPUT,
                code="AMBIGUOUS",
                field=field.name,
            )
        changes[field.name] = found[0]
    if not changes:
        return request
    completed = type(request)()
    completed.CopyFrom(request)
    for name, value in changes.items():
        setattr(completed, name, value)
    return completed


class Resolver:
    """Asks each service's EventLogService for ids by prefix, on channels of its own. None found
    while a service could not be reached is not "not found": that service may hold the id."""

    def __init__(
        self, channels: Iterable[tuple[str, str, grpc.Channel]], timeout: float | None
    ) -> None:
        """`channels`: (service name, address, channel) of every service."""
        self.stubs = [(n, a, log_grpc.EventLogServiceStub(c)) for n, a, c in channels]
        self.timeout = timeout

    def __call__(self, kind: str, prefix: str) -> list[str]:
        """Every service is asked at once: one after the other, five services that each
        answer UNAVAILABLE within a second or two (their PostgreSQL down) took ten."""
        request = log_api.ResolveIdsRequest(prefix=prefix, kind=kind, limit=10)
        asked = [
            (name, address, stub.ResolveIds.future(request, timeout=self.timeout))
            for name, address, stub in self.stubs
        ]
        found: list[str] = []
        unreachable: list[str] = []
        unavailable: list[str] = []
        for name, address, call in asked:
            try:
                reply = call.result()
            except grpc.RpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    continue  # a service without an event log of its own
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    said = exc.details() or ""
                    if code == grpc.StatusCode.UNAVAILABLE and not _NOT_CONNECTED.search(said):
                        # It answered: unavailable itself (e.g. its database is down).
                        unavailable.append(f"the {name} service at {address}: {said}")
                    else:
                        unreachable.append(f"the {name} service at {address}")
                    continue
                raise
            found += [r.id for r in reply.ids if r.id not in found]
        if not found and (unreachable or unavailable):
            why = [f"cannot reach {', '.join(unreachable)}; is `c360 up` running?"] * bool(
                unreachable
            ) + [f"unavailable: {u}" for u in unavailable]
            raise CliError(
                f"cannot look up which {kind.replace('_', ' ')} id begins with {prefix}:"
                f" {'; '.join(why)} (or give the whole id)",
                EXIT_FAILURE,
                code="UNAVAILABLE",
            )
        return found


class ShortIdInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Completes short ids in every request a CLI channel sends."""

    def __init__(self, resolve: Resolve) -> None:
        self.resolve = resolve

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(details, complete(request, self.resolve))

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(details, complete(request, self.resolve))
