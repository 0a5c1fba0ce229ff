"""The platform's error mapping over a real gRPC call: an error that echoes a huge input, or
names hundreds of fields, still arrives as its own status code with a short message and a
BadRequest of a few KiB (not RESOURCE_EXHAUSTED for trailers over gRPC's metadata limit)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2, status_pb2

from c360_platform import errors, inbound, rpc
from c360_platform.errors import FieldViolation

SERVICE = "c360.test.v1.Errors"
HUGE = "y" * 20_000


def _raising(errors_by_method: dict[str, Callable[[], Exception]]) -> rpc.Register:
    def register(server: grpc.aio.Server) -> None:
        def handler(make: Callable[[], Exception]) -> Any:
            async def fail(request: bytes, context: Any) -> bytes:
                raise make()

            return grpc.unary_unary_rpc_method_handler(fail)

        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SERVICE, {name: handler(make) for name, make in errors_by_method.items()}
                ),
            )
        )

    return register


@pytest_asyncio.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    host = rpc.ServiceHost("errors-probe", 0)
    host.add(
        SERVICE,
        _raising(
            {
                "Missing": lambda: errors.NotFound(f"no segment '{HUGE}'"),
                "Long": lambda: errors.InvalidArgument.one(
                    "ü" * 20_000, f"no stage 'ü{'ä' * 20_000}' in pipeline 'sales'"
                ),
                "Many": lambda: errors.InvalidArgument(
                    FieldViolation(f"add[{i}]", f"'Bad Tag {i}': must be 1-64 of a-z 0-9 _ - : .")
                    for i in range(300)
                ),
            }
        ),
    )
    port = await host.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as opened:
            yield opened
    finally:
        await host.stop()


async def _failure(channel: grpc.aio.Channel, method: str) -> grpc.aio.AioRpcError:
    call = channel.unary_unary(f"/{SERVICE}/{method}", lambda b: b, lambda b: b)
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call(b"")
    return failed.value


def _trailers(error: grpc.aio.AioRpcError) -> tuple[int, error_details_pb2.BadRequest]:
    """The trailers' size (keys and values, as sent) and the BadRequest in them."""
    size = 0
    bad = error_details_pb2.BadRequest()
    trailers: Any = error.trailing_metadata() or ()
    for key, value in trailers:
        size += len(key) + len(value)
        if key == "grpc-status-details-bin":
            assert isinstance(value, bytes)
            for detail in status_pb2.Status.FromString(value).details:
                detail.Unpack(bad)
    size += len((error.details() or "").encode())
    return size, bad


async def test_an_error_echoing_a_huge_value_keeps_its_code_and_a_short_message(
    channel: grpc.aio.Channel,
) -> None:
    error = await _failure(channel, "Missing")
    assert error.code() == grpc.StatusCode.NOT_FOUND
    message = error.details() or ""
    assert message.startswith("no segment 'yyyy")
    assert message.endswith("\u2026'")  # the value cut, the sentence kept
    assert len(message) < 100


async def test_a_huge_field_and_description_are_cut_to_size(channel: grpc.aio.Channel) -> None:
    error = await _failure(channel, "Long")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    size, bad = _trailers(error)
    assert size < 4096
    [violation] = bad.field_violations
    assert violation.field.startswith("üü")
    assert violation.field.endswith("\u2026")
    assert violation.description.startswith("no stage 'üää")
    assert violation.description.endswith("\u2026' in pipeline 'sales'")


async def test_hundreds_of_violations_are_cut_to_the_first_ones(
    channel: grpc.aio.Channel,
) -> None:
    error = await _failure(channel, "Many")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    size, bad = _trailers(error)
    assert size < 8192
    fields = [v.field for v in bad.field_violations]
    assert fields == [f"add[{i}]" for i in range(inbound.MAX_REPORTED)]
    assert (error.details() or "").startswith("add[0]: 'Bad Tag 0': must be")
    assert len((error.details() or "").encode()) <= rpc.MAX_MESSAGE_BYTES
