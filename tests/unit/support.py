"""What unit tests of applications and servicers share: a gRPC call context of their own,
a settable clock, and applications on the in-memory recorder (no servers)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_customer.application import CustomerApplication
from c360_platform.context import ContextReader
from c360_platform.errors import C360Error, InvalidArgument
from c360_platform.store import CommandContext, CommandOutcome

T = TypeVar("T")


class Clock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class CallContext:
    """The part of grpc.aio.ServicerContext that servicers read (metadata, deadline)."""

    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def time_remaining(self) -> float | None:
        return None


CALL: Any = CallContext()


class KnownCustomers(ContextReader):
    """A timeline that knows the customers it is told of (every customer when told of none),
    without a server: what the service desk asks before it records for a customer."""

    def __init__(self, *customers: str) -> None:
        super().__init__("127.0.0.1:1")
        self.customers = set(customers)

    def know(self, customer_id: str) -> str:
        self.customers.add(customer_id)
        return customer_id

    async def known_profile(self, customer_id: str, grace: float = 0) -> Any:
        if self.customers and customer_id not in self.customers:
            return None
        return tapi.Profile(customer_id=customer_id)


async def refused(call: Awaitable[T], kind: type[C360Error] = C360Error) -> C360Error:
    """The error a call ends in; fails the test if it succeeds or ends otherwise."""
    with pytest.raises(kind) as caught:
        await call
    return caught.value


async def bad_fields(call: Awaitable[Any]) -> list[str]:
    """The offending fields of an INVALID_ARGUMENT, sorted."""
    error = await refused(call, InvalidArgument)
    assert isinstance(error, InvalidArgument)
    return sorted(v.field for v in error.violations)


Factory = Callable[[], Any]


def loaded_after(code: str, heavy: list[str]) -> list[str]:
    """The modules of `heavy` a fresh interpreter has imported after running `code`."""
    probe = f"import sys\n{code}\nprint(','.join(m for m in {heavy!r} if m in sys.modules))\n"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return [m for m in out.strip().split(",") if m]


def outcome_lookups(monkeypatch: pytest.MonkeyPatch, app: Any) -> list[str]:
    """The request ids `app` looks up for an earlier answer from now on (the list grows)."""
    recorder = app.event_recorder
    looked_up: list[str] = []
    find_outcome = recorder.find_outcome

    def counting(request_id: str) -> Any:
        looked_up.append(request_id)
        return find_outcome(request_id)

    monkeypatch.setattr(recorder, "find_outcome", counting)
    return looked_up


def command_ctx(
    request_id: str = "", command: str = "RegisterCustomer", digest: str = ""
) -> CommandContext:
    """A command's context (its fingerprint the request id, unless given)."""
    return CommandContext(command=command, request_id=request_id, fingerprint=digest or request_id)


def register_named(app: CustomerApplication, name: str, request_id: str = "") -> CommandOutcome:
    """A person registered under `name`, with one e-mail made of it."""
    return app.register(
        command_ctx(request_id),
        kind="person",
        display_name=name,
        emails=[f"{name}@example.com"],
        phones=[],
        addresses=[],
    )
