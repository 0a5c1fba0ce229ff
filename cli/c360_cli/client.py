"""Where the services are, gRPC channels and stubs to them, and the one gRPC-error formatter."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from c360_cli import short_ids
from c360_cli.errors import EXIT_BAD_INPUT, EXIT_FAILURE, CliError
from c360_platform import auth, channels, tls

S = TypeVar("S")
M = TypeVar("M", bound=Message)

CHANNEL_OPTIONS: list[tuple[str, Any]] = [("grpc.enable_http_proxy", 0)]

# Request field paths -> the CLI's names for them, where they differ.
_FIELD_NAMES: dict[str, str] = {
    "display_name": "name",
    "acquisition_source": "source",
    "acquisition_channel": "channel",
    "owner_id": "owner",
    "page_size": "limit",
    "wait_for": "wait-for",
    "page_token": "page-token",
    "request_id": "request-id",
    "address.postal_code": "postal-code",
    "address.lines": "line",
    "address.city": "city",
    "address.country": "country",
    "address.label": "label",
    "address.region": "region",
}
_INDEXED = re.compile(r"^(?P<name>[a-z_.]+)\[(?P<index>\d+)\]$")
_INDEXED_NAMES = {
    "emails": "email",
    "phones": "phone",
    "tags": "tag",
    "add": "add",
    "remove": "remove",
    "address.lines": "line",
}


@dataclass(frozen=True)
class Endpoints:
    """Addresses of the running stack, as `c360 up` wrote them (--addr overrides)."""

    addresses: dict[str, str]
    """Each service's host:port, by its registry name."""
    postgres_url: str | None
    nats_url: str | None
    source: str

    def address(self, service: str) -> str | None:
        """The address of a service by its registered name (see `c360 services`)."""
        return self.addresses.get(service)


def endpoints_path(home: str | Path) -> Path:
    return Path(home) / "endpoints.json"


def load_token(args: argparse.Namespace) -> str:
    """--token, else $C360_TOKEN (a Job in the cluster gets one from its Secret), else an
    operator's token signed with $C360_AUTH_SECRET (a Job of a deployment that has not moved to
    the key pair yet), else the operator's token `c360 up` wrote to HOME/auth."""
    given = getattr(args, "token", "") or os.environ.get("C360_TOKEN", "")
    if given:
        return given
    secret = os.environ.get("C360_AUTH_SECRET", "")
    if secret:  # the old shared secret (auth.MOVE_ON)
        return auth.issue_with_secret(secret, "job:c360-cli", auth.Role.OPERATOR, valid_for=3600)
    return auth.home_token(Path(args.home))


def use_tls(endpoints: dict[str, Any]) -> None:
    """Call with the certificate endpoints.json names (`c360 up` serves TLS), unless the
    environment names one (C360_TLS_*)."""
    if tls.TlsFiles.from_env() is None:
        tls.use(tls.TlsFiles.from_document(endpoints.get("tls")))


def load_endpoints(args: argparse.Namespace) -> Endpoints:
    """Read HOME/endpoints.json (if present) and apply --addr NAME=HOST:PORT."""
    path = endpoints_path(args.home)
    data: dict[str, Any] = {}
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        loaded = {}
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    if isinstance(loaded, dict):
        data = loaded
    use_tls(data)

    def text(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) and value else None

    services = data.get("services")
    addresses = (
        {str(k): str(v) for k, v in services.items() if isinstance(v, str)}
        if isinstance(services, dict)
        else {}
    )
    addresses.update(dict(getattr(args, "addr", None) or ()))
    return Endpoints(
        addresses=addresses,
        postgres_url=text("postgres_url"),
        nats_url=text("nats_url"),
        source=str(path),
    )


def _require(endpoints: Endpoints, service: str, address: str | None) -> str:
    if address:
        return address
    raise CliError(
        f"no address for the {service} service: {endpoints.source} does not exist or lacks it;"
        f" start the stack with `c360 up` or pass --addr {service}=HOST:PORT"
    )


def field_name(path: str) -> str:
    """The CLI's name for a request field path (`emails[0]` -> `email`, `emails[1]` ->
    `email #2`, `display_name` -> `name`); other paths are kept as they are."""
    if path in _FIELD_NAMES:
        return _FIELD_NAMES[path]
    match = _INDEXED.match(path)
    if match and match.group("name") in _INDEXED_NAMES:
        name = _INDEXED_NAMES[match.group("name")]
        index = int(match.group("index"))
        return name if index == 0 else f"{name} #{index + 1}"
    return path


def _trailers(error: grpc.RpcError) -> list[tuple[str, str | bytes]]:
    """The call's trailing metadata as (key, value) pairs (empty if there is none)."""
    method = getattr(error, "trailing_metadata", None)
    metadata: Any = method() if callable(method) else None
    return [(str(key), value) for key, value in metadata or ()]


def _bad_request(error: grpc.RpcError) -> list[tuple[str, str]]:
    """The (field, description) pairs of a google.rpc.BadRequest in the trailers, if any."""
    for key, value in _trailers(error):
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        violations: list[tuple[str, str]] = []
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                violations.extend((v.field, v.description) for v in bad.field_violations)
        return violations
    return []


def _has_status_details(error: grpc.RpcError) -> bool:
    return any(key == "grpc-status-details-bin" for key, _ in _trailers(error))


def format_rpc_error(
    error: grpc.RpcError, service: str | None = None, address: str | None = None
) -> tuple[int, str]:
    """The one mapping of a failed call to (exit status, message for stderr)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else None) or ""
    where = f"the {service} service at {address}" if service and address else "the service"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        violations = _bad_request(error)
        if violations:
            lines = [f"{field_name(f)}: {d}" for f, d in violations]
            return EXIT_BAD_INPUT, "\n".join(lines)
        return EXIT_BAD_INPUT, details or "invalid argument"
    if code == grpc.StatusCode.UNAVAILABLE and not _has_status_details(error):
        return EXIT_FAILURE, (
            f"cannot reach {where} ({details or 'unavailable'}); is `c360 up` running?"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        if _has_status_details(error) and details:  # the server said what it waited for
            return EXIT_FAILURE, f"timed out: {details}"
        return EXIT_FAILURE, f"no answer from {where} in time; try a longer --timeout"
    if code == grpc.StatusCode.CANCELLED:
        return EXIT_FAILURE, f"the call to {where} was cancelled"
    label = {
        grpc.StatusCode.NOT_FOUND: "not found",
        grpc.StatusCode.ABORTED: "conflict",
        grpc.StatusCode.FAILED_PRECONDITION: "not possible",
        grpc.StatusCode.ALREADY_EXISTS: "already exists",
        grpc.StatusCode.UNAVAILABLE: "unavailable",
        grpc.StatusCode.INTERNAL: "server error",
    }.get(code, code.name.lower().replace("_", " "))
    return EXIT_FAILURE, f"{label}: {details}" if details else label


def as_cli_error(
    error: grpc.RpcError, service: str | None = None, address: str | None = None
) -> CliError:
    exit_code, message = format_rpc_error(error, service, address)
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    violations = _bad_request(error) if code == grpc.StatusCode.INVALID_ARGUMENT else []
    field = field_name(violations[0][0]) if violations else None
    return CliError(message, exit_code, code=code.name, field=field)


def on_this_machine(address: str) -> bool:
    """Whether a gRPC target (host:port, [v6]:port, unix:…) is this machine."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rsplit(":", 1)[0] if ":" in address else address
    host = host.removeprefix("dns:///").removeprefix("ipv4:").removeprefix("ipv6:")
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Connections:
    """Shared part of the sync and async clients: endpoints and which one was used last."""

    def _guard(self, address: str) -> None:
        """A bearer token goes in clear only to this machine: without a certificate (TLS),
        a call to another host is refused before anything is sent (gRPC sends the token in
        the first bytes, before it learns that the server wanted TLS)."""
        if self.token and tls.current() is None and not on_this_machine(address):
            raise CliError(
                f"{address}: no TLS certificate to call it with (C360_TLS_CA, C360_TLS_CERT,"
                " C360_TLS_KEY, or endpoints.json's tls): the bearer token would cross the"
                " network in clear"
            )

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.endpoints = load_endpoints(args)
        self.token = load_token(args)
        self.timeout: float | None = args.timeout
        self._last: tuple[str, str] | None = None

    def _address(self, service: str) -> str:
        address = _require(self.endpoints, service, self.endpoints.address(service))
        self._last = (service, address)
        return address

    def _translate(self, exc: BaseException | None) -> None:
        if isinstance(exc, grpc.RpcError):
            service, address = self._last or (None, None)
            raise as_cli_error(exc, service, address) from None


class Client(_Connections):
    """Blocking stubs for the CLI's commands; a gRPC error leaving the `with` becomes a
    CliError naming the service that failed."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self._channels: dict[str, grpc.Channel] = {}
        self._raw: dict[str, grpc.Channel] = {}

    def _raw_channel(self, service: str, address: str) -> grpc.Channel:
        if service not in self._raw:
            self._guard(address)
            self._raw[service] = channels.channel(address, self.token, CHANNEL_OPTIONS)
        return self._raw[service]

    def _resolve(self, kind: str, prefix: str) -> list[str]:
        """Full ids of `kind` that begin with `prefix`, from every service's event log."""
        every = [
            (n, a, self._raw_channel(n, a)) for n, a in sorted(self.endpoints.addresses.items())
        ]
        return short_ids.Resolver(every, self.timeout)(kind, prefix)

    def complete(self, request: M) -> M:
        """`request` with the short ids of its *_id fields completed (what every call does
        anyway), for a command that also shows them."""
        return short_ids.complete(request, self._resolve)  # type: ignore[return-value]

    def _channel(self, service: str) -> grpc.Channel:
        address = self._address(service)
        if service not in self._channels:
            self._channels[service] = grpc.intercept_channel(
                self._raw_channel(service, address), short_ids.ShortIdInterceptor(self._resolve)
            )
        return self._channels[service]

    def stub(self, service: str, kind: Callable[[grpc.Channel], S]) -> S:
        """A stub of `kind` (a generated `...Stub` class) for the service of that name."""
        return kind(self._channel(service))

    def channel(self, service: str) -> grpc.Channel:
        """The channel to a service by name (for calls without a generated stub)."""
        return self._channel(service)

    def close(self) -> None:
        for channel in self._raw.values():
            channel.close()
        self._channels.clear()
        self._raw.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        self._translate(exc)


class AsyncClient(_Connections):
    """grpc.aio stubs (for `c360 demo`); errors translate like Client's."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _channel(self, service: str) -> grpc.aio.Channel:
        address = self._address(service)
        if service not in self._channels:
            self._guard(address)
            self._channels[service] = channels.aio_channel(address, self.token, CHANNEL_OPTIONS)
        return self._channels[service]

    def stub(self, service: str, kind: Callable[[grpc.aio.Channel], S]) -> S:
        """An asyncio stub of `kind` (a generated `...Stub` class) for the named service."""
        return kind(self._channel(service))

    def failure(self, exc: grpc.RpcError, service: str) -> CliError:
        """The CliError for a failed call to `service`."""
        return as_cli_error(exc, service, self.endpoints.address(service))

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
        self._translate(exc)
