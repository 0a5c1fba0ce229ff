"""A gRPC server interceptor that wraps each method's handler once.

grpc.aio runs a server's interceptors at every call, each asked for the handler the call will
run. Wrapping it anew each time made the wrapper's closures and a new handler tuple per call;
a `WrappingInterceptor` makes them at a method's first call and hands the same one out while
the server finds the same handler for the method. What varies per call (metadata, deadline)
is read from the call's context inside the wrapper."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc


class WrappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Subclasses say how a method's handler is wrapped (`wrap`); this keeps the result."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    def wrap(self, method: str, handler: Any) -> Any:
        """The handler to run for `method` in place of `handler` (an RpcMethodHandler)."""
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler: Any = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        kept = self._wrapped.get(method)
        if kept is not None and kept[0] is handler:
            return kept[1]
        wrapped = self.wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped
