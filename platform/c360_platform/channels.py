"""Client channels that carry a bearer token on every call (see `auth`)."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio

from c360_platform import tls
from c360_platform.auth import bearer_metadata


def _with_token(metadata: Any, extra: Sequence[tuple[str, str]]) -> list[tuple[str, Any]]:
    present = list(metadata or ())
    if any(key == "authorization" for key, _ in present):
        return present  # the caller chose its own credentials for this call
    return [*present, *extra]


class _AioToken:
    def __init__(self, token: str) -> None:
        self.extra = bearer_metadata(token)

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=_with_token(details.metadata, self.extra))


# grpc.aio files each interceptor under one kind only (the first it is an instance of), so
# each kind of call gets an interceptor of its own.
class _AioUnaryUnary(_AioToken, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _AioUnaryStream(_AioToken, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _AioStreamUnary(_AioToken, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _AioStreamStream(_AioToken, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _Details(
    collections.namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _Bearer(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    def __init__(self, token: str) -> None:
        self.extra = bearer_metadata(token)

    def _details(self, d: Any) -> _Details:
        return _Details(
            d.method,
            d.timeout,
            _with_token(d.metadata, self.extra),
            d.credentials,
            getattr(d, "wait_for_ready", None),
            getattr(d, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


RECEIVE_LIMIT = 64 << 20
"""The largest reply c360's own clients read (gRPC's default is 4 MiB): a ticket with hundreds
of long notes is more, and was RESOURCE_EXHAUSTED in `c360 ticket show`. Services answer
lists in pages that stay within the default (the timeline's MAX_PAGE_BYTES)."""


def _with_limit(options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    given = {name for name, _ in options}
    limit = [("grpc.max_receive_message_length", RECEIVE_LIMIT)]
    return [*(o for o in limit if o[0] not in given), *options]


def aio_channel(
    address: str, token: str = "", options: Sequence[tuple[str, Any]] = ()
) -> grpc.aio.Channel:
    """An asyncio channel to `address` whose calls carry `token` (none if empty)."""
    options = _with_limit(options)
    kinds = (_AioUnaryUnary, _AioUnaryStream, _AioStreamUnary, _AioStreamStream)
    interceptors: Any = [kind(token) for kind in kinds] if token else None
    files = tls.current()
    if files is not None:
        return grpc.aio.secure_channel(
            address, files.channel_credentials(), options=list(options), interceptors=interceptors
        )
    return grpc.aio.insecure_channel(address, options=list(options), interceptors=interceptors)


def channel(address: str, token: str = "", options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A blocking channel to `address` whose calls carry `token` (none if empty)."""
    options = _with_limit(options)
    files = tls.current()
    plain = (
        grpc.secure_channel(address, files.channel_credentials(), options=list(options))
        if files is not None
        else grpc.insecure_channel(address, options=list(options))
    )
    return grpc.intercept_channel(plain, _Bearer(token)) if token else plain
