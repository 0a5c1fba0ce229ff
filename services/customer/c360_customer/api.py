"""The customer gRPC API: validates requests, maps proto <-> application, returns results."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import grpc
from google.protobuf import timestamp_pb2

from c360.customer.v1 import customer_service_pb2 as api
from c360.customer.v1 import customer_service_pb2_grpc as api_grpc
from c360.events.v1 import customer_events_pb2 as ev
from c360_customer.application import CustomerApplication, CustomerView, ImportRow
from c360_customer.contract import CHANNELS, KINDS, PURPOSES, address_message
from c360_customer.domain import MAX_EXTERNAL_KEY, Customer, consent_decision
from c360_platform import paging
from c360_platform.auth import Role, caller_subject, requires
from c360_platform.commands import blocking, expected_version, parse_id
from c360_platform.consistency import ConsistencyToken
from c360_platform.cpu import cpu_pool
from c360_platform.envelope import timestamp
from c360_platform.errors import FieldViolation, InvalidArgument
from c360_platform.servicer import CommandServicer, registration

Ctx = grpc.aio.ServicerContext[Any, Any]
R = TypeVar("R")
# Rows per transaction of an import: large enough to amortise the commit, small enough to
# keep the events table's lock short.
IMPORT_BATCH = 250
MAX_FIND_IMPORTED = 1000
"""External keys FindImported answers in one call."""
DEFAULT_DUPLICATES = 20
MAX_DUPLICATES = 1000
REPORT_CHUNK = 500
MAX_KEYS = 1000


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
        kind=KINDS.value(c.kind),
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
                channel=CHANNELS.value(d["channel"]),
                purpose=PURPOSES.value(d["purpose"]),
                granted=d["granted"],
                source=d["source"],
                decided_at=timestamp(d["decided_at"]),
                recorded_by=d.get("recorded_by", ""),
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
        forgotten_at=timestamp(c.forgotten_at) if c.forgotten_at else None,
    )


class CustomerServicer(CommandServicer[CustomerApplication], api_grpc.CustomerServiceServicer):
    """gRPC servicer for c360.customer.v1.CustomerService."""

    async def RegisterCustomer(
        self, request: api.RegisterCustomerRequest, context: Ctx
    ) -> api.RegisterCustomerResponse:
        kind = KINDS.parse("kind", request.kind)
        return await self.command(
            request,
            context,
            api.RegisterCustomerResponse,
            lambda ctx: self.app.register(
                ctx,
                kind=kind,
                display_name=request.display_name,
                emails=list(request.emails),
                phones=list(request.phones),
                default_region=request.default_region,
                addresses=[_address_dict(a) for a in request.addresses],
                acquisition_source=request.acquisition_source,
                acquisition_channel=request.acquisition_channel,
                owner_id=request.owner_id,
                tags=list(request.tags),
            ),
            decide_on_loop=True,
        )

    async def RenameCustomer(
        self, request: api.RenameCustomerRequest, context: Ctx
    ) -> api.RenameCustomerResponse:
        cid, version = _target(request)
        return await self.command(
            request,
            context,
            api.RenameCustomerResponse,
            lambda ctx: self.app.rename(ctx, cid, version, request.display_name),
        )

    async def AddEmail(self, request: api.AddEmailRequest, context: Ctx) -> api.AddEmailResponse:
        cid, version = _target(request)
        return await self.command(
            request,
            context,
            api.AddEmailResponse,
            lambda ctx: self.app.add_email(ctx, cid, version, request.email),
        )

    async def RemoveEmail(
        self, request: api.RemoveEmailRequest, context: Ctx
    ) -> api.RemoveEmailResponse:
        cid, version = _target(request)
        return await self.command(
            request,
            context,
            api.RemoveEmailResponse,
            lambda ctx: self.app.remove_email(ctx, cid, version, request.email),
        )

    async def AddPhone(self, request: api.AddPhoneRequest, context: Ctx) -> api.AddPhoneResponse:
        cid, version = _target(request)
        return await self.command(
            request,
            context,
            api.AddPhoneResponse,
            lambda ctx: self.app.add_phone(
                ctx, cid, version, request.phone, request.default_region
            ),
        )

    async def RemovePhone(
        self, request: api.RemovePhoneRequest, context: Ctx
    ) -> api.RemovePhoneResponse:
        cid, version = _target(request)
        return await self.command(
            request,
            context,
            api.RemovePhoneResponse,
            lambda ctx: self.app.remove_phone(
                ctx, cid, version, request.phone, request.default_region
            ),
        )

    async def AddPostalAddress(
        self, request: api.AddPostalAddressRequest, context: Ctx
    ) -> api.AddPostalAddressResponse:
        cid, version = _target(request)
        address = _address_dict(request.address)
        return await self.command(
            request,
            context,
            api.AddPostalAddressResponse,
            lambda ctx: self.app.add_postal_address(ctx, cid, version, address),
            extra=["address_id"],
        )

    async def RemovePostalAddress(
        self, request: api.RemovePostalAddressRequest, context: Ctx
    ) -> api.RemovePostalAddressResponse:
        cid, version = _target(request)
        return await self.command(
            request,
            context,
            api.RemovePostalAddressResponse,
            lambda ctx: self.app.remove_postal_address(ctx, cid, version, request.address_id),
        )

    async def AssignOwner(
        self, request: api.AssignOwnerRequest, context: Ctx
    ) -> api.AssignOwnerResponse:
        cid, version = _target(request)
        return await self.command(
            request,
            context,
            api.AssignOwnerResponse,
            lambda ctx: self.app.assign_owner(ctx, cid, version, request.owner_id),
        )

    async def ChangeTags(
        self, request: api.ChangeTagsRequest, context: Ctx
    ) -> api.ChangeTagsResponse:
        cid, version = _target(request)
        add, remove = list(request.add), list(request.remove)
        return await self.command(
            request,
            context,
            api.ChangeTagsResponse,
            lambda ctx: self.app.change_tags(ctx, cid, version, add, remove),
        )

    async def GrantConsent(
        self, request: api.GrantConsentRequest, context: Ctx
    ) -> api.GrantConsentResponse:
        return await self._consent(True, request, context, api.GrantConsentResponse)

    async def RevokeConsent(
        self, request: api.RevokeConsentRequest, context: Ctx
    ) -> api.RevokeConsentResponse:
        return await self._consent(False, request, context, api.RevokeConsentResponse)

    async def _consent(
        self, granted: bool, request: Any, context: Ctx, reply: Callable[..., R]
    ) -> R:
        cid, version = _target(request)
        # Every offending field at once, before the customer is looked at.
        consent_decision(
            CHANNELS.given(request.channel), PURPOSES.given(request.purpose), request.source
        )
        channel, purpose = CHANNELS.word(request.channel), PURPOSES.word(request.purpose)
        recorded_by = caller_subject()  # the evidence of who recorded the decision
        decided_at = _time(request.decided_at, request.HasField("decided_at"))
        return await self.command(
            request,
            context,
            reply,
            lambda ctx: self.app.decide_consent(
                ctx,
                cid,
                version,
                granted,
                channel,
                purpose,
                request.source,
                recorded_by,
                decided_at,
            ),
        )

    async def LinkContactPerson(
        self, request: api.LinkContactPersonRequest, context: Ctx
    ) -> api.LinkContactPersonResponse:
        organisation_id = parse_id("organisation_id", request.organisation_id)
        person_id = parse_id("person_id", request.person_id)
        if organisation_id == person_id:
            raise InvalidArgument.one("person_id", "must differ from organisation_id")
        valid_from = _time(request.valid_from, request.HasField("valid_from"))
        return await self.command(
            request,
            context,
            api.LinkContactPersonResponse,
            lambda ctx: self.app.link_contact_person(
                ctx, organisation_id, person_id, request.role, valid_from
            ),
            extra=["link_id"],
        )

    async def EndContactPerson(
        self, request: api.EndContactPersonRequest, context: Ctx
    ) -> api.EndContactPersonResponse:
        organisation_id = parse_id("organisation_id", request.organisation_id)
        link_id = str(parse_id("link_id", request.link_id))
        valid_until = _time(request.valid_until, request.HasField("valid_until"))
        return await self.command(
            request,
            context,
            api.EndContactPersonResponse,
            lambda ctx: self.app.end_contact_person(ctx, organisation_id, link_id, valid_until),
        )

    async def ImportCustomers(
        self, request_iterator: AsyncIterator[api.ImportCustomersRequest], context: Ctx
    ) -> api.ImportCustomersResponse:
        importer = self.app.importer(cpu_pool)
        batch: list[ImportRow] = []
        try:
            async for message in request_iterator:
                for row in message.rows:
                    if not KINDS.word(row.kind):
                        importer.reject(row.row, "kind: must be one of person, organisation")
                        continue
                    batch.append(_import_row(row))
                    if len(batch) >= IMPORT_BATCH:
                        # Validated while the batch before is stored (see Importer).
                        await blocking(importer.add, batch)
                        batch = []
            if batch:
                await blocking(importer.add, batch)
        finally:
            report = await blocking(importer.finish)
        return api.ImportCustomersResponse(
            created=report.created,
            unchanged=report.unchanged,
            rejected=[api.ImportRejection(row=r, reason=why) for r, why in report.rejected],
            consistency_token=str(ConsistencyToken(self.app.source, report.position)),
        )

    @requires(Role.AGENT, Role.OPERATOR, Role.SERVICE, Role.INTEGRATION)
    async def FindImported(
        self, request: api.FindImportedRequest, context: Ctx
    ) -> api.FindImportedResponse:
        keys = list(request.external_keys)
        if len(keys) > MAX_FIND_IMPORTED:
            raise InvalidArgument.one(
                "external_keys", f"at most {MAX_FIND_IMPORTED} a call (there are {len(keys)})"
            )
        wrong = [
            FieldViolation(f"external_keys[{i}]", "must be 1-128 characters")
            for i, key in enumerate(keys)
            if not 0 < len(key.strip()) <= MAX_EXTERNAL_KEY
        ]
        if wrong:
            raise InvalidArgument(wrong)
        found = await blocking(self.app.find_imported, keys)
        return api.FindImportedResponse(
            customers=[
                api.ImportedCustomer(external_key=key, customer_id=str(i) if i else "")
                for key, i in zip(keys, found, strict=True)
            ]
        )

    async def GetCustomer(
        self, request: api.GetCustomerRequest, context: Ctx
    ) -> api.GetCustomerResponse:
        customer_id = parse_id("customer_id", request.customer_id)
        as_of = _time(request.as_of, request.HasField("as_of"))
        view = await blocking(self.app.view, customer_id, as_of)
        return api.GetCustomerResponse(customer=customer_message(view))

    @requires(Role.OPERATOR)
    async def MergeCustomers(
        self, request: api.MergeCustomersRequest, context: Ctx
    ) -> api.MergeCustomersResponse:
        survivor_id = parse_id("survivor_id", request.survivor_id)
        duplicate_id = parse_id("duplicate_id", request.duplicate_id)
        if survivor_id == duplicate_id:
            raise InvalidArgument.one("duplicate_id", "must differ from survivor_id")
        return await self.command(
            request,
            context,
            api.MergeCustomersResponse,
            lambda ctx: self.app.merge(ctx, survivor_id, duplicate_id, request.reason),
            extra=["merge_id"],
        )

    @requires(Role.OPERATOR)
    async def UnmergeCustomer(
        self, request: api.UnmergeCustomerRequest, context: Ctx
    ) -> api.UnmergeCustomerResponse:
        customer_id = parse_id("customer_id", request.customer_id)
        return await self.command(
            request,
            context,
            api.UnmergeCustomerResponse,
            lambda ctx: self.app.unmerge(ctx, customer_id),
            extra=["merge_id"],
        )

    @requires(Role.OPERATOR)
    async def ForgetCustomer(
        self, request: api.ForgetCustomerRequest, context: Ctx
    ) -> api.ForgetCustomerResponse:
        customer_id = parse_id("customer_id", request.customer_id)
        return await self.command(
            request,
            context,
            lambda result, forgotten_ids: api.ForgetCustomerResponse(
                result=result, forgotten_ids=[i for i in forgotten_ids.split(",") if i]
            ),
            lambda ctx: self.app.forget(ctx, customer_id, request.with_merged),
            extra=["forgotten_ids"],
        )

    @requires(Role.SERVICE, Role.INTEGRATION, Role.OPERATOR)
    async def GetDataKeys(
        self, request: api.GetDataKeysRequest, context: Ctx
    ) -> api.GetDataKeysResponse:
        if len(request.customer_ids) > MAX_KEYS:
            raise InvalidArgument.one("customer_ids", f"must be at most {MAX_KEYS}")
        ids = [parse_id(f"customer_ids[{i}]", c) for i, c in enumerate(request.customer_ids)]
        held = self.app.keyring.cached(ids)  # the usual ask: customers just made
        found = held if held is not None else await blocking(self.app.data_keys, ids)
        return api.GetDataKeysResponse(
            keys=[
                api.DataKey(customer_id=str(i), key=key or b"", forgotten=key is None)
                for i, key in sorted(found.items())
            ]
        )

    async def FindDuplicates(
        self, request: api.FindDuplicatesRequest, context: Ctx
    ) -> api.FindDuplicatesResponse:
        customer_id = parse_id("customer_id", request.customer_id)
        limit = paging.count(
            request.limit, maximum=MAX_DUPLICATES, default=DEFAULT_DUPLICATES, field="limit"
        )
        found = await blocking(self.app.find_duplicates, customer_id, limit)
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


def _target(request: Any) -> tuple[UUID, int | None]:
    """The customer a command is about, and the version it expects, from its request."""
    return parse_id("customer_id", request.customer_id), expected_version(request)


def _import_row(row: api.ImportRow) -> ImportRow:
    return ImportRow(
        row=row.row,
        external_key=row.external_key,
        fields={
            "kind": KINDS.word(row.kind),
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


def servicer_registration(app: CustomerApplication) -> tuple[str, Any, Any]:
    """The customer API on a host: `host.add(*servicer_registration(app))`."""
    return registration(
        CustomerServicer(app),
        api_grpc.add_CustomerServiceServicer_to_server,
        api.DESCRIPTOR.services_by_name["CustomerService"],
    )
