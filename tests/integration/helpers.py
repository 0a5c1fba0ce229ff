"""Small helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from c360.customer.v1 import customer_service_pb2 as capi
from c360.customer.v1 import customer_service_pb2_grpc as customer_grpc
from c360.events.v1 import customer_events_pb2 as ev


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
