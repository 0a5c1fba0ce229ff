"""A server interceptor wraps a method's handler at its first call, and again only when the
server finds another handler for it."""

from __future__ import annotations

from typing import Any

import grpc

from c360_platform.intercept import WrappingInterceptor


class Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


class Counting(WrappingInterceptor):
    def __init__(self) -> None:
        super().__init__()
        self.wrapped: list[tuple[str, Any]] = []

    def wrap(self, method: str, handler: Any) -> Any:
        self.wrapped.append((method, handler))
        return ("wrapped", method, handler)


async def test_a_method_is_wrapped_once_while_its_handler_stays() -> None:
    interceptor = Counting()
    handlers = {"/a.S/One": object(), "/a.S/Two": object()}

    async def find(details: grpc.HandlerCallDetails) -> Any:
        return handlers.get(details.method)

    first = await interceptor.intercept_service(find, Details("/a.S/One"))
    again = await interceptor.intercept_service(find, Details("/a.S/One"))
    other = await interceptor.intercept_service(find, Details("/a.S/Two"))
    assert first is again
    assert first == ("wrapped", "/a.S/One", handlers["/a.S/One"])
    assert other == ("wrapped", "/a.S/Two", handlers["/a.S/Two"])
    assert [m for m, _ in interceptor.wrapped] == ["/a.S/One", "/a.S/Two"]

    # Another handler for the same method (a service added again): wrapped anew.
    handlers["/a.S/One"] = replaced = object()
    renewed = await interceptor.intercept_service(find, Details("/a.S/One"))
    assert renewed == ("wrapped", "/a.S/One", replaced)
    assert len(interceptor.wrapped) == 3

    # A method the server does not have stays unanswered (the server says UNIMPLEMENTED).
    assert await interceptor.intercept_service(find, Details("/a.S/Missing")) is None
    assert len(interceptor.wrapped) == 3
