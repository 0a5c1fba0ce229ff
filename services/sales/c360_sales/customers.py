"""Customers as sales sees them, over gRPC only (never another service's code): registering a
lead's customer with the customer service (its address from the deployment's service
addresses, C360_SERVICES), and finding the customers a lead may already be (the timeline's
SearchCustomers by e-mail, phone and name, at C360_TIMELINE_ADDR)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf import json_format

from c360.customer.v1 import customer_service_pb2 as capi
from c360.customer.v1 import customer_service_pb2_grpc as capi_grpc
from c360.events.v1 import customer_events_pb2 as cev
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360.timeline.v1 import timeline_service_pb2_grpc as tapi_grpc
from c360_platform import channels
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
    """Registers customers and links a person to an organisation as its contact (the port
    ConvertLead uses)."""

    async def register(self, customer: NewCustomer) -> str: ...

    async def link_contact(
        self, request_id: str, organisation_id: str, person_id: str, role: str
    ) -> None: ...


class GrpcCustomerRegistry:
    """The customer service's RegisterCustomer at `address` (host:port)."""

    def __init__(self, address: str, *, timeout: float = 5.0, token: str = "") -> None:
        self.address = address
        self.timeout = timeout
        self.token = token
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> capi_grpc.CustomerServiceAsyncStub:
        if not self.address:
            raise Unavailable("no customer service address (C360_SERVICES has no 'customer')")
        if self._channel is None:
            self._channel = channels.aio_channel(
                self.address, self.token, options=[("grpc.enable_http_proxy", 0)]
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
            raise self._refused(exc) from None
        return str(reply.result.aggregate_id)

    async def link_contact(
        self, request_id: str, organisation_id: str, person_id: str, role: str
    ) -> None:
        request = capi.LinkContactPersonRequest(
            request_id=request_id, organisation_id=organisation_id, person_id=person_id, role=role
        )
        try:
            await self._stub().LinkContactPerson(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._refused(exc) from None

    def _refused(self, exc: grpc.aio.AioRpcError) -> Exception:
        """The customer service's refusal, as this service answers it."""
        code = exc.code()
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return InvalidArgument.one(
                "register_customer",
                f"the customer service refused the lead's data: {exc.details()}",
            )
        if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS):
            return PreconditionFailed(f"the customer service refused: {exc.details()}")
        return Unavailable(f"the customer service at {self.address} answered {code.name}; retry")

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None


@dataclass(frozen=True)
class Match:
    """A customer a lead may already be, and what matched."""

    customer_id: str
    display_name: str
    kind: str
    matched_on: tuple[str, ...]
    contact_person_id: str = ""
    """For a match on "contact person": the matched person who is this organisation's
    contact."""
    contact_role: str = ""


MATCH_ORDER = {"email": 0, "phone": 1, "name": 2, "contact person": 3}
CONTACT_PERSON = "contact person"
"""The evidence of an organisation whose current contact person matched the lead."""


class CustomerSearch(Protocol):
    """Finds customers by an e-mail, a phone or a name prefix, and the organisations a person
    is a contact of (the port lead matching uses)."""

    async def search(self, text: str) -> list[tuple[str, str, str, str]]: ...

    async def organisations_of(self, person_id: str) -> list[tuple[str, str, str]]:
        """(organisation id, its name, the person's role) of the person's current links."""
        ...


class TimelineSearch:
    """The timeline's SearchCustomers at `address` (customer id, name, kind, matched on), and
    a person's organisations from its 360 profile (GetProfile)."""

    def __init__(self, address: str, *, timeout: float = 3.0, token: str = "") -> None:
        self.address = address
        self.timeout = timeout
        self.token = token
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> tapi_grpc.TimelineServiceAsyncStub:
        if self._channel is None:
            self._channel = channels.aio_channel(
                self.address, self.token, options=[("grpc.enable_http_proxy", 0)]
            )
        return tapi_grpc.TimelineServiceStub(self._channel)

    def _unavailable(self, exc: grpc.aio.AioRpcError) -> Unavailable:
        return Unavailable(
            f"the timeline service at {self.address} answered {exc.code().name}; retry"
        )

    async def search(self, text: str) -> list[tuple[str, str, str, str]]:
        try:
            reply = await self._stub().SearchCustomers(
                tapi.SearchCustomersRequest(text=text, limit=20), timeout=self.timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise self._unavailable(exc) from None
        return [(h.customer_id, h.display_name, h.kind, h.matched_on) for h in reply.hits]

    async def organisations_of(self, person_id: str) -> list[tuple[str, str, str]]:
        person = await self._profile(person_id)
        if person is None:
            return []
        attributes: dict[str, Any] = json_format.MessageToDict(person.attributes)
        links: dict[str, dict[str, Any]] = attributes.get("contact_persons", {})
        found = []
        for link in links.values():
            if link["person_id"] != person_id or link["valid_until"]:
                continue  # another's link (a merged duplicate's), or one that ended
            organisation = await self._profile(str(link["organisation_id"]))
            if organisation is not None:
                found.append(
                    (organisation.customer_id, organisation.display_name, str(link["role"]))
                )
        return found

    async def _profile(self, customer_id: str) -> tapi.Profile | None:
        try:
            reply = await self._stub().GetProfile(
                tapi.GetProfileRequest(customer_id=customer_id), timeout=self.timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise self._unavailable(exc) from None
        profile: tapi.Profile = reply.profile
        return profile

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None


async def matches(search: CustomerSearch, texts: list[str]) -> list[Match]:
    """The customers found for any of `texts` (the lead's e-mail, phone, names), the strongest
    evidence first (e-mail, phone, name), then by name; after each person found, the
    organisations it is a current contact person of (the lead's company, most likely), on
    "contact person"."""
    found: dict[str, tuple[str, str, set[str]]] = {}
    for text in texts:
        if not text.strip():
            continue
        for customer_id, name, kind, matched_on in await search.search(text):
            entry = found.setdefault(customer_id, (name, kind, set()))
            entry[2].add(matched_on)
    ranked = sorted(
        found.items(),
        key=lambda item: (min(MATCH_ORDER.get(m, 4) for m in item[1][2]), item[1][0], item[0]),
    )
    direct = [
        Match(cid, name, kind, tuple(sorted(on, key=lambda m: MATCH_ORDER.get(m, 4))))
        for cid, (name, kind, on) in ranked
    ]
    result: list[Match] = []
    taken = {m.customer_id for m in direct}
    for m in direct:
        result.append(m)
        if m.kind != "person":
            continue
        for organisation_id, name, role in await search.organisations_of(m.customer_id):
            if organisation_id in taken:
                continue  # found on its own evidence already
            taken.add(organisation_id)
            result.append(
                Match(organisation_id, name, "organisation", (CONTACT_PERSON,), m.customer_id, role)
            )
    return result
