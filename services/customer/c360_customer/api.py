"""The customer gRPC API: validates requests, maps proto <-> application, returns results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import grpc
from google.protobuf import timestamp_pb2

from c360.customer.v1 import customer_service_pb2 as api
from c360.customer.v1 import customer_service_pb2_grpc as api_grpc
from c360.events.v1 import customer_events_pb2 as ev
from c360_customer.application import CustomerApplication, CustomerView, ImportReport, ImportRow
from c360_customer.contract import CHANNELS, KINDS, PURPOSES, address_message
from c360_customer.domain import Customer
from c360_platform.commands import (
    blocking,
    command_context,
    command_result,
    expected_version,
    parse_id,
)
from c360_platform.consistency import ConsistencyToken
from c360_platform.envelope import timestamp
from c360_platform.errors import InvalidArgument
from c360_platform.store import CommandOutcome

Ctx = grpc.aio.ServicerContext[Any, Any]
# Rows per transaction of an import: large enough to amortise the commit, small enough to
# keep the events table's lock short.
IMPORT_BATCH = 250
DEFAULT_DUPLICATES = 20
MAX_DUPLICATES = 1000
REPORT_CHUNK = 500
_KIND_NAMES = {v: k for k, v in KINDS.items()}
_CHANNEL_NAMES = {v: k for k, v in CHANNELS.items()}
_PURPOSE_NAMES = {v: k for k, v in PURPOSES.items()}


def _enum_name(field: str, value: int, names: dict[Any, str]) -> str:
    name = names.get(value)
    if name is None:
        raise InvalidArgument.one(field, f"must be one of {', '.join(names.values())}")
    return name


def _address_dict(a: ev.PostalAddress) -> dict[str, Any]:
    return {
        "label": a.label,
        "lines": list(a.lines),
        "postal_code": a.postal_code,
        "city": a.city,
        "region": a.region,
        "country": a.country,
    }


def _time(ts: timestamp_pb2.Timestamp, present: bool) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if present else None


def customer_message(view: CustomerView | Customer) -> api.Customer:
    """The customer's message; a survivor's shows the combined view (see CustomerView)."""
    if isinstance(view, Customer):
        view = CustomerView(view)
    c = view.customer
    combined = view.combined
    return api.Customer(
        customer_id=str(c.id),
        version=c.version,
        kind=KINDS[c.kind],
        display_name=c.display_name,
        emails=combined.emails,
        phones=combined.phones,
        addresses=[address_message(a) for a in combined.addresses],
        acquisition_source=c.acquisition_source,
        acquisition_channel=c.acquisition_channel,
        owner_id=c.owner_id,
        tags=combined.tags,
        consents=[
            api.Consent(
                channel=CHANNELS[d["channel"]],
                purpose=PURPOSES[d["purpose"]],
                granted=d["granted"],
                source=d["source"],
                decided_at=timestamp(d["decided_at"]),
            )
            for d in combined.consents.values()
        ],
        contact_persons=[
            api.ContactPersonLink(
                link_id=link["link_id"],
                organisation_id=link["organisation_id"],
                person_id=link["person_id"],
                role=link["role"],
                valid_from=timestamp(link["valid_from"]),
                valid_until=timestamp(link["valid_until"]) if link["valid_until"] else None,
            )
            for link in combined.links.values()
        ],
        registered_at=timestamp(c.created_on),
        updated_at=timestamp(c.modified_on),
        merged_into=view.merged_into,
        absorbed=[str(d.id) for d in view.absorbed],
    )


class CustomerServicer(api_grpc.CustomerServiceServicer):
    """gRPC servicer for c360.customer.v1.CustomerService."""

    def __init__(self, app: CustomerApplication) -> None:
        self.app = app

    def _result(self, outcome: CommandOutcome) -> Any:
        return command_result(self.app.source, outcome)

    async def _update(self, name: str, request: Any, context: Ctx, change: str, *args: Any) -> Any:
        ctx = command_context(name, request, context)
        customer_id = parse_id("customer_id", request.customer_id)
        return await blocking(
            self.app.update, ctx, customer_id, expected_version(request), change, *args
        )

    async def RegisterCustomer(
        self, request: api.RegisterCustomerRequest, context: Ctx
    ) -> api.RegisterCustomerResponse:
        ctx = command_context("RegisterCustomer", request, context)
        kind = _enum_name("kind", request.kind, _KIND_NAMES)
        outcome = await blocking(
            self.app.register,
            ctx,
            kind=kind,
            display_name=request.display_name,
            emails=list(request.emails),
            phones=list(request.phones),
            addresses=[_address_dict(a) for a in request.addresses],
            acquisition_source=request.acquisition_source,
            acquisition_channel=request.acquisition_channel,
            owner_id=request.owner_id,
            tags=list(request.tags),
        )
        return api.RegisterCustomerResponse(result=self._result(outcome))

    async def RenameCustomer(
        self, request: api.RenameCustomerRequest, context: Ctx
    ) -> api.RenameCustomerResponse:
        outcome = await self._update(
            "RenameCustomer", request, context, "rename", request.display_name
        )
        return api.RenameCustomerResponse(result=self._result(outcome))

    async def AddEmail(self, request: api.AddEmailRequest, context: Ctx) -> api.AddEmailResponse:
        outcome = await self._update("AddEmail", request, context, "add_email", request.email)
        return api.AddEmailResponse(result=self._result(outcome))

    async def RemoveEmail(
        self, request: api.RemoveEmailRequest, context: Ctx
    ) -> api.RemoveEmailResponse:
        outcome = await self._update("RemoveEmail", request, context, "remove_email", request.email)
        return api.RemoveEmailResponse(result=self._result(outcome))

    async def AddPhone(self, request: api.AddPhoneRequest, context: Ctx) -> api.AddPhoneResponse:
        outcome = await self._update("AddPhone", request, context, "add_phone", request.phone)
        return api.AddPhoneResponse(result=self._result(outcome))

    async def RemovePhone(
        self, request: api.RemovePhoneRequest, context: Ctx
    ) -> api.RemovePhoneResponse:
        outcome = await self._update("RemovePhone", request, context, "remove_phone", request.phone)
        return api.RemovePhoneResponse(result=self._result(outcome))

    async def AddPostalAddress(
        self, request: api.AddPostalAddressRequest, context: Ctx
    ) -> api.AddPostalAddressResponse:
        outcome = await self._update(
            "AddPostalAddress",
            request,
            context,
            "add_postal_address",
            _address_dict(request.address),
        )
        return api.AddPostalAddressResponse(
            result=self._result(outcome), address_id=outcome.extra.get("address_id", "")
        )

    async def RemovePostalAddress(
        self, request: api.RemovePostalAddressRequest, context: Ctx
    ) -> api.RemovePostalAddressResponse:
        outcome = await self._update(
            "RemovePostalAddress", request, context, "remove_postal_address", request.address_id
        )
        return api.RemovePostalAddressResponse(result=self._result(outcome))

    async def AssignOwner(
        self, request: api.AssignOwnerRequest, context: Ctx
    ) -> api.AssignOwnerResponse:
        outcome = await self._update(
            "AssignOwner", request, context, "assign_owner", request.owner_id
        )
        return api.AssignOwnerResponse(result=self._result(outcome))

    async def ChangeTags(
        self, request: api.ChangeTagsRequest, context: Ctx
    ) -> api.ChangeTagsResponse:
        outcome = await self._update(
            "ChangeTags", request, context, "change_tags", list(request.add), list(request.remove)
        )
        return api.ChangeTagsResponse(result=self._result(outcome))

    async def _consent(
        self, name: str, granted: bool, request: Any, context: Ctx
    ) -> CommandOutcome:
        ctx = command_context(name, request, context)
        customer_id = parse_id("customer_id", request.customer_id)
        channel = _enum_name("channel", request.channel, _CHANNEL_NAMES)
        purpose = _enum_name("purpose", request.purpose, _PURPOSE_NAMES)
        return await blocking(
            self.app.decide_consent,
            ctx,
            customer_id,
            expected_version(request),
            granted,
            channel,
            purpose,
            request.source,
        )

    async def GrantConsent(
        self, request: api.GrantConsentRequest, context: Ctx
    ) -> api.GrantConsentResponse:
        outcome = await self._consent("GrantConsent", True, request, context)
        return api.GrantConsentResponse(result=self._result(outcome))

    async def RevokeConsent(
        self, request: api.RevokeConsentRequest, context: Ctx
    ) -> api.RevokeConsentResponse:
        outcome = await self._consent("RevokeConsent", False, request, context)
        return api.RevokeConsentResponse(result=self._result(outcome))

    async def LinkContactPerson(
        self, request: api.LinkContactPersonRequest, context: Ctx
    ) -> api.LinkContactPersonResponse:
        ctx = command_context("LinkContactPerson", request, context)
        organisation_id = parse_id("organisation_id", request.organisation_id)
        person_id = parse_id("person_id", request.person_id)
        if organisation_id == person_id:
            raise InvalidArgument.one("person_id", "must differ from organisation_id")
        outcome = await blocking(
            self.app.link_contact_person,
            ctx,
            organisation_id,
            person_id,
            request.role,
            _time(request.valid_from, request.HasField("valid_from")),
        )
        return api.LinkContactPersonResponse(
            result=self._result(outcome), link_id=outcome.extra.get("link_id", "")
        )

    async def EndContactPerson(
        self, request: api.EndContactPersonRequest, context: Ctx
    ) -> api.EndContactPersonResponse:
        ctx = command_context("EndContactPerson", request, context)
        organisation_id = parse_id("organisation_id", request.organisation_id)
        link_id = str(parse_id("link_id", request.link_id))
        outcome = await blocking(
            self.app.end_contact_person,
            ctx,
            organisation_id,
            link_id,
            _time(request.valid_until, request.HasField("valid_until")),
        )
        return api.EndContactPersonResponse(result=self._result(outcome))

    async def ImportCustomers(
        self, request_iterator: AsyncIterator[api.ImportCustomersRequest], context: Ctx
    ) -> api.ImportCustomersResponse:
        total = ImportReport()
        seen: set[UUID] = set()
        batch: list[ImportRow] = []
        # While one batch is being stored, the next is received and validated; stores run
        # one at a time, in order.
        storing: asyncio.Task[ImportReport] | None = None

        async def collect() -> None:
            nonlocal storing
            if storing is not None:
                report = await storing
                storing = None
                total.created += report.created
                total.unchanged += report.unchanged
                total.rejected.extend(report.rejected)
                total.position = max(total.position, report.position)

        async def flush() -> None:
            nonlocal storing, batch
            prepared = await blocking(self.app.prepare_import, batch, seen)
            batch = []
            await collect()
            storing = asyncio.create_task(blocking(self.app.store_import, prepared))

        try:
            async for message in request_iterator:
                for row in message.rows:
                    if row.kind not in _KIND_NAMES:
                        total.rejected.append(
                            (row.row, "kind: must be one of person, organisation")
                        )
                        continue
                    batch.append(
                        ImportRow(
                            row=row.row,
                            external_key=row.external_key,
                            fields={
                                "kind": _KIND_NAMES[row.kind],
                                "display_name": row.display_name,
                                "emails": list(row.emails),
                                "phones": list(row.phones),
                                "addresses": [_address_dict(a) for a in row.addresses],
                                "acquisition_source": row.acquisition_source,
                                "acquisition_channel": row.acquisition_channel,
                                "owner_id": row.owner_id,
                                "tags": list(row.tags),
                            },
                        )
                    )
                    if len(batch) >= IMPORT_BATCH:
                        await flush()
            if batch:
                await flush()
        finally:
            await collect()
        if total.position == 0:
            total.position = await blocking(lambda: self.app.recorder.max_notification_id() or 0)
        return api.ImportCustomersResponse(
            created=total.created,
            unchanged=total.unchanged,
            rejected=[api.ImportRejection(row=r, reason=why) for r, why in sorted(total.rejected)],
            consistency_token=str(ConsistencyToken(self.app.source, total.position)),
        )

    async def GetCustomer(
        self, request: api.GetCustomerRequest, context: Ctx
    ) -> api.GetCustomerResponse:
        customer_id = parse_id("customer_id", request.customer_id)
        as_of = _time(request.as_of, request.HasField("as_of"))
        view = await blocking(self.app.view, customer_id, as_of)
        return api.GetCustomerResponse(customer=customer_message(view))

    async def MergeCustomers(
        self, request: api.MergeCustomersRequest, context: Ctx
    ) -> api.MergeCustomersResponse:
        ctx = command_context("MergeCustomers", request, context)
        survivor_id = parse_id("survivor_id", request.survivor_id)
        duplicate_id = parse_id("duplicate_id", request.duplicate_id)
        if survivor_id == duplicate_id:
            raise InvalidArgument.one("duplicate_id", "must differ from survivor_id")
        outcome = await blocking(self.app.merge, ctx, survivor_id, duplicate_id, request.reason)
        return api.MergeCustomersResponse(
            result=self._result(outcome), merge_id=outcome.extra.get("merge_id", "")
        )

    async def UnmergeCustomer(
        self, request: api.UnmergeCustomerRequest, context: Ctx
    ) -> api.UnmergeCustomerResponse:
        ctx = command_context("UnmergeCustomer", request, context)
        customer_id = parse_id("customer_id", request.customer_id)
        outcome = await blocking(self.app.unmerge, ctx, customer_id)
        return api.UnmergeCustomerResponse(
            result=self._result(outcome), merge_id=outcome.extra.get("merge_id", "")
        )

    async def FindDuplicates(
        self, request: api.FindDuplicatesRequest, context: Ctx
    ) -> api.FindDuplicatesResponse:
        customer_id = parse_id("customer_id", request.customer_id)
        if request.limit > MAX_DUPLICATES:
            raise InvalidArgument.one("limit", f"must be at most {MAX_DUPLICATES}")
        found = await blocking(
            self.app.find_duplicates, customer_id, request.limit or DEFAULT_DUPLICATES
        )
        return api.FindDuplicatesResponse(
            candidates=[
                api.DuplicateCandidate(
                    customer_id=c.customer_id, score=c.score, reasons=list(c.reasons)
                )
                for c in found
            ]
        )

    async def DuplicateReport(
        self, request: api.DuplicateReportRequest, context: Ctx
    ) -> AsyncIterator[api.DuplicateReportResponse]:
        if not 0 <= request.min_score <= 1:
            raise InvalidArgument.one("min_score", "must be between 0 and 1")
        pairs = await blocking(self.app.duplicate_report, request.min_score)
        if request.limit:
            pairs = pairs[: request.limit]
        for start in range(0, len(pairs), REPORT_CHUNK):
            yield api.DuplicateReportResponse(
                pairs=[
                    api.DuplicatePair(
                        customer_id=p.customer_id,
                        duplicate_id=p.duplicate_id,
                        score=p.score,
                        reasons=list(p.reasons),
                    )
                    for p in pairs[start : start + REPORT_CHUNK]
                ]
            )


def register(servicer: CustomerServicer) -> Any:
    def add(server: grpc.aio.Server) -> None:
        api_grpc.add_CustomerServiceServicer_to_server(servicer, server)

    return add


SERVICE_NAME = api.DESCRIPTOR.services_by_name["CustomerService"].full_name
