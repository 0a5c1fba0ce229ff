"""The published contract of the customer service: domain event -> c360.events.v1 message."""

from __future__ import annotations

from typing import Any

from c360.events.v1 import customer_events_pb2 as pb
from c360_customer.domain import Customer
from c360_platform.contract import EventContract, Mapper, Published
from c360_platform.envelope import timestamp
from c360_platform.vocabulary import Words

KINDS = Words(pb.CustomerKind)
CHANNELS = Words(pb.ConsentChannel)
PURPOSES = Words(pb.ConsentPurpose)


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
        kind=KINDS.value(e.kind),
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
        channel=CHANNELS.value(c["channel"]),
        purpose=PURPOSES.value(c["purpose"]),
        survivor_granted=c["survivor_granted"],
        survivor_decided_at=timestamp(c["survivor_decided_at"]),
        duplicate_granted=c["duplicate_granted"],
        duplicate_decided_at=timestamp(c["duplicate_decided_at"]),
        kept=c["kept"],
    )


_MESSAGES: dict[type, Mapper] = {
    Customer.Registered: _registered,
    Customer.Renamed: lambda e: pb.CustomerRenamed(display_name=e.display_name),
    Customer.EmailAdded: lambda e: pb.EmailAdded(email=e.email),
    Customer.EmailRemoved: lambda e: pb.EmailRemoved(email=e.email),
    Customer.PhoneAdded: lambda e: pb.PhoneAdded(phone=e.phone),
    Customer.PhoneRemoved: lambda e: pb.PhoneRemoved(phone=e.phone),
    Customer.PostalAddressAdded: lambda e: pb.PostalAddressAdded(
        address=address_message(e.address)
    ),
    Customer.PostalAddressRemoved: lambda e: pb.PostalAddressRemoved(address_id=e.address_id),
    Customer.OwnerAssigned: lambda e: pb.OwnerAssigned(
        owner_id=e.owner_id, previous_owner_id=e.previous_owner_id
    ),
    Customer.TagsChanged: lambda e: pb.TagsChanged(added=e.added, removed=e.removed),
    Customer.ConsentGranted: lambda e: pb.ConsentGranted(
        channel=CHANNELS.value(e.channel),
        purpose=PURPOSES.value(e.purpose),
        source=e.source,
        decided_at=timestamp(e.decided_at),
        recorded_by=getattr(e, "recorded_by", ""),
    ),
    Customer.ConsentRevoked: lambda e: pb.ConsentRevoked(
        channel=CHANNELS.value(e.channel),
        purpose=PURPOSES.value(e.purpose),
        source=e.source,
        decided_at=timestamp(e.decided_at),
        recorded_by=getattr(e, "recorded_by", ""),
    ),
    Customer.ContactPersonLinked: lambda e: pb.ContactPersonLinked(
        link_id=e.link_id,
        organisation_id=e.organisation_id,
        person_id=e.person_id,
        role=e.role,
        valid_from=timestamp(e.valid_from),
    ),
    Customer.ContactPersonLinkEnded: lambda e: pb.ContactPersonLinkEnded(
        link_id=e.link_id,
        organisation_id=e.organisation_id,
        person_id=e.person_id,
        valid_until=timestamp(e.valid_until),
    ),
    Customer.MergedInto: lambda e: pb.CustomerMergedInto(
        survivor_id=e.survivor_id, merge_id=e.merge_id, reason=e.reason
    ),
    Customer.DuplicateAbsorbed: lambda e: pb.DuplicateAbsorbed(
        duplicate_id=e.duplicate_id,
        merge_id=e.merge_id,
        reason=e.reason,
        conflicts=[_conflict(c) for c in e.conflicts],
    ),
    Customer.Forgotten: lambda e: pb.CustomerForgotten(forgotten_at=timestamp(e.forgotten_at)),
    Customer.Unmerged: lambda e: pb.CustomerUnmerged(
        survivor_id=e.survivor_id, merge_id=e.merge_id
    ),
    Customer.DuplicateReleased: lambda e: pb.DuplicateReleased(
        duplicate_id=e.duplicate_id, merge_id=e.merge_id
    ),
}


CONTRACT = EventContract(Published(Customer, "customer", _MESSAGES))
"""Every Customer event and its published message; the customer is the aggregate."""
