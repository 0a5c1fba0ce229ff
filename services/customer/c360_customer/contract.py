"""The published contract of the customer service: domain event -> c360.events.v1 message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol

from c360.events.v1 import customer_events_pb2 as pb
from c360_customer.domain import Customer
from c360_platform.envelope import Publication, timestamp

AGGREGATE = "customer"

KINDS = {"person": pb.CUSTOMER_KIND_PERSON, "organisation": pb.CUSTOMER_KIND_ORGANISATION}
CHANNELS = {
    "email": pb.CONSENT_CHANNEL_EMAIL,
    "sms": pb.CONSENT_CHANNEL_SMS,
    "phone": pb.CONSENT_CHANNEL_PHONE,
    "post": pb.CONSENT_CHANNEL_POST,
}
PURPOSES = {"marketing": pb.CONSENT_PURPOSE_MARKETING, "service": pb.CONSENT_PURPOSE_SERVICE}


def address_message(a: dict[str, Any]) -> pb.PostalAddress:
    return pb.PostalAddress(
        address_id=a["address_id"],
        label=a.get("label", ""),
        lines=a.get("lines", []),
        postal_code=a.get("postal_code", ""),
        city=a.get("city", ""),
        region=a.get("region", ""),
        country=a.get("country", ""),
    )


def _registered(e: Any) -> pb.CustomerRegistered:
    return pb.CustomerRegistered(
        kind=KINDS[e.kind],
        display_name=e.display_name,
        emails=e.emails,
        phones=e.phones,
        acquisition_source=e.acquisition_source,
        acquisition_channel=e.acquisition_channel,
        owner_id=e.owner_id,
        tags=e.tags,
    )


def _conflict(c: dict[str, Any]) -> pb.ConsentConflict:
    return pb.ConsentConflict(
        channel=CHANNELS[c["channel"]],
        purpose=PURPOSES[c["purpose"]],
        survivor_granted=c["survivor_granted"],
        survivor_decided_at=timestamp(c["survivor_decided_at"]),
        duplicate_granted=c["duplicate_granted"],
        duplicate_decided_at=timestamp(c["duplicate_decided_at"]),
        kept=c["kept"],
    )


_MAPPERS: dict[str, Callable[[Any], Any]] = {
    "Registered": _registered,
    "Renamed": lambda e: pb.CustomerRenamed(display_name=e.display_name),
    "EmailAdded": lambda e: pb.EmailAdded(email=e.email),
    "EmailRemoved": lambda e: pb.EmailRemoved(email=e.email),
    "PhoneAdded": lambda e: pb.PhoneAdded(phone=e.phone),
    "PhoneRemoved": lambda e: pb.PhoneRemoved(phone=e.phone),
    "PostalAddressAdded": lambda e: pb.PostalAddressAdded(address=address_message(e.address)),
    "PostalAddressRemoved": lambda e: pb.PostalAddressRemoved(address_id=e.address_id),
    "OwnerAssigned": lambda e: pb.OwnerAssigned(
        owner_id=e.owner_id, previous_owner_id=e.previous_owner_id
    ),
    "TagsChanged": lambda e: pb.TagsChanged(added=e.added, removed=e.removed),
    "ConsentGranted": lambda e: pb.ConsentGranted(
        channel=CHANNELS[e.channel],
        purpose=PURPOSES[e.purpose],
        source=e.source,
        decided_at=timestamp(e.decided_at),
    ),
    "ConsentRevoked": lambda e: pb.ConsentRevoked(
        channel=CHANNELS[e.channel],
        purpose=PURPOSES[e.purpose],
        source=e.source,
        decided_at=timestamp(e.decided_at),
    ),
    "ContactPersonLinked": lambda e: pb.ContactPersonLinked(
        link_id=e.link_id,
        organisation_id=e.organisation_id,
        person_id=e.person_id,
        role=e.role,
        valid_from=timestamp(e.valid_from),
    ),
    "ContactPersonLinkEnded": lambda e: pb.ContactPersonLinkEnded(
        link_id=e.link_id,
        organisation_id=e.organisation_id,
        person_id=e.person_id,
        valid_until=timestamp(e.valid_until),
    ),
    "MergedInto": lambda e: pb.CustomerMergedInto(
        survivor_id=e.survivor_id, merge_id=e.merge_id, reason=e.reason
    ),
    "DuplicateAbsorbed": lambda e: pb.DuplicateAbsorbed(
        duplicate_id=e.duplicate_id,
        merge_id=e.merge_id,
        reason=e.reason,
        conflicts=[_conflict(c) for c in e.conflicts],
    ),
    "Unmerged": lambda e: pb.CustomerUnmerged(survivor_id=e.survivor_id, merge_id=e.merge_id),
    "DuplicateReleased": lambda e: pb.DuplicateReleased(
        duplicate_id=e.duplicate_id, merge_id=e.merge_id
    ),
}


class CustomerContract:
    """Maps each Customer event to its published message; the customer is the aggregate."""

    def publication(self, event: DomainEventProtocol[UUID]) -> Publication:
        owner, _, name = type(event).__qualname__.partition(".")
        mapper = _MAPPERS.get(name) if owner == Customer.__name__ else None
        if mapper is None:
            raise TypeError(f"no published message for {type(event).__qualname__}")
        return Publication(
            aggregate_type=AGGREGATE, customer_id=str(event.originator_id), payload=mapper(event)
        )
