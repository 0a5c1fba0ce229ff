"""The customer service as sales sees it: registering a lead's customer over gRPC (the
customer service's published API, never its code). Its address comes from the deployment's
service addresses (C360_SERVICES), as the timeline's does for the service desk."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import grpc

from c360.customer.v1 import customer_service_pb2 as capi
from c360.customer.v1 import customer_service_pb2_grpc as capi_grpc
from c360.events.v1 import customer_events_pb2 as cev
from c360_platform.errors import InvalidArgument, PreconditionFailed, Unavailable

CUSTOMER_SERVICE = "customer"


@dataclass(frozen=True)
class NewCustomer:
    """What a lead tells about the customer to register."""

    request_id: str
    """Derived from the lead, so a retried conversion registers the same customer."""
    organisation: bool
    display_name: str
    emails: tuple[str, ...]
    phones: tuple[str, ...]
    owner_id: str
    acquisition_source: str
    acquisition_channel: str


class CustomerRegistry(Protocol):
    """Registers customers (the port ConvertLead uses)."""

    async def register(self, customer: NewCustomer) -> str: ...


class GrpcCustomerRegistry:
    """The customer service's RegisterCustomer at `address` (host:port)."""

    def __init__(self, address: str, *, timeout: float = 5.0) -> None:
        self.address = address
        self.timeout = timeout
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> capi_grpc.CustomerServiceAsyncStub:
        if not self.address:
            raise Unavailable("no customer service address (C360_SERVICES has no 'customer')")
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(
                self.address, options=[("grpc.enable_http_proxy", 0)]
            )
        return capi_grpc.CustomerServiceStub(self._channel)

    async def register(self, customer: NewCustomer) -> str:
        kind = (
            cev.CustomerKind.CUSTOMER_KIND_ORGANISATION
            if customer.organisation
            else cev.CustomerKind.CUSTOMER_KIND_PERSON
        )
        request = capi.RegisterCustomerRequest(
            request_id=customer.request_id,
            kind=kind,
            display_name=customer.display_name,
            emails=customer.emails,
            phones=customer.phones,
            owner_id=customer.owner_id,
            acquisition_source=customer.acquisition_source,
            acquisition_channel=customer.acquisition_channel,
        )
        try:
            reply = await self._stub().RegisterCustomer(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument.one(
                    "register_customer",
                    f"the customer service refused the lead's data: {exc.details()}",
                ) from None
            if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS):
                raise PreconditionFailed(f"the customer service refused: {exc.details()}") from None
            raise Unavailable(
                f"the customer service at {self.address} answered {code.name}; retry"
            ) from None
        return str(reply.result.aggregate_id)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
