"""How published events become timeline entries and the 360 profile: pure functions, no I/O.

The projection knows the published contract (c360.events.v1) and nothing of the services' code.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, message

from c360.events.v1 import envelope_pb2
from c360_platform.envelope import short_type, unpack

Doc = dict[str, Any]


@dataclass(frozen=True)
class Entry:
    """One row of the timeline."""

    event_id: str
    customer_id: str
    occurred_at: datetime
    source: str
    position: int
    type: str
    summary: str
    details: Doc
    aggregate_id: str
    aggregate_version: int


def _enum_word(value: str) -> str:
    """CONSENT_CHANNEL_EMAIL -> email."""
    return value.rsplit("_", 1)[-1].lower() if value else ""


def _kind(value: str) -> str:
    return {"CUSTOMER_KIND_PERSON": "person", "CUSTOMER_KIND_ORGANISATION": "organisation"}.get(
        value, ""
    )


def _registered(d: Doc) -> str:
    via = d.get("acquisition_channel") or d.get("acquisition_source")
    text = f"Registered {_kind(d.get('kind', '')) or 'customer'} “{d.get('display_name', '')}”"
    return f"{text} via {via}" if via else text


def _consent(verb: str) -> Callable[[Doc], str]:
    def summary(d: Doc) -> str:
        channel = _enum_word(d.get("channel", ""))
        purpose = _enum_word(d.get("purpose", ""))
        source = d.get("source", "")
        text = f"Consent {verb} for {purpose} by {channel}"
        return f"{text} ({source})" if source else text

    return summary


def _tags(d: Doc) -> str:
    parts = []
    if d.get("added"):
        parts.append("added " + ", ".join(d["added"]))
    if d.get("removed"):
        parts.append("removed " + ", ".join(d["removed"]))
    return "Tags " + "; ".join(parts)


def _owner(d: Doc) -> str:
    return f"Owner set to {d['owner_id']}" if d.get("owner_id") else "Owner unassigned"


def _address(d: Doc) -> str:
    a = d.get("address", {})
    where = ", ".join(x for x in (a.get("city", ""), a.get("country", "")) if x)
    return f"Postal address added ({where})" if where else "Postal address added"


_SUMMARIES: dict[str, Callable[[Doc], str]] = {
    "c360.events.v1.CustomerRegistered": _registered,
    "c360.events.v1.CustomerRenamed": lambda d: f"Renamed to “{d.get('display_name', '')}”",
    "c360.events.v1.EmailAdded": lambda d: f"E-mail {d.get('email', '')} added",
    "c360.events.v1.EmailRemoved": lambda d: f"E-mail {d.get('email', '')} removed",
    "c360.events.v1.PhoneAdded": lambda d: f"Phone {d.get('phone', '')} added",
    "c360.events.v1.PhoneRemoved": lambda d: f"Phone {d.get('phone', '')} removed",
    "c360.events.v1.PostalAddressAdded": _address,
    "c360.events.v1.PostalAddressRemoved": lambda d: "Postal address removed",
    "c360.events.v1.OwnerAssigned": _owner,
    "c360.events.v1.TagsChanged": _tags,
    "c360.events.v1.ConsentGranted": _consent("granted"),
    "c360.events.v1.ConsentRevoked": _consent("revoked"),
    "c360.events.v1.ContactPersonLinked": lambda d: f"Contact person linked as {d.get('role', '')}",
    "c360.events.v1.ContactPersonLinkEnded": lambda d: "Contact-person link ended",
}


def details_of(payload: message.Message) -> Doc:
    return json_format.MessageToDict(
        payload, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def occurred_at(env: envelope_pb2.Envelope) -> datetime:
    return env.occurred_at.ToDatetime(tzinfo=UTC)


def entry_for(env: envelope_pb2.Envelope) -> Entry:
    """The timeline entry for one envelope (raises UnknownEventType for foreign payloads)."""
    payload = unpack(env)
    details = details_of(payload)
    summarise = _SUMMARIES.get(env.event_type)
    summary = summarise(details) if summarise else payload.DESCRIPTOR.name
    return Entry(
        event_id=env.event_id,
        customer_id=env.customer_id,
        occurred_at=occurred_at(env),
        source=env.source,
        position=env.source_position,
        type=short_type(env.aggregate_type, payload.DESCRIPTOR.name),
        summary=summary,
        details=details,
        aggregate_id=env.aggregate_id,
        aggregate_version=env.aggregate_version,
    )


def empty_profile(customer_id: str) -> Doc:
    return {
        "customer_id": customer_id,
        "kind": "",
        "display_name": "",
        "emails": [],
        "phones": [],
        "addresses": [],
        "owner_id": "",
        "tags": [],
        "acquisition": {"source": "", "channel": ""},
        "consent": {},
        "contact_persons": {},
        "touches": {},
        "last_contact_at": "",
        "last_contact_source": "",
        "first_seen_at": "",
        "updated_at": "",
    }


def _add(items: list[str], value: str) -> None:
    if value and value not in items:
        items.append(value)


def _remove(items: list[str], value: str) -> None:
    if value in items:
        items.remove(value)


def fold(profile: Doc, entry: Entry) -> Doc:
    """The profile after one more entry. Times are ISO-8601 strings (UTC)."""
    p = copy.deepcopy(profile)
    d = entry.details
    at = entry.occurred_at.isoformat()
    kind = entry.type
    if kind == "customer.registered":
        p["kind"] = _kind(d.get("kind", ""))
        p["display_name"] = d.get("display_name", "")
        p["emails"] = list(d.get("emails", []))
        p["phones"] = list(d.get("phones", []))
        p["owner_id"] = d.get("owner_id", "")
        p["tags"] = list(d.get("tags", []))
        p["acquisition"] = {
            "source": d.get("acquisition_source", ""),
            "channel": d.get("acquisition_channel", ""),
        }
    elif kind == "customer.renamed":
        p["display_name"] = d.get("display_name", "")
    elif kind == "customer.email_added":
        _add(p["emails"], d.get("email", ""))
    elif kind == "customer.email_removed":
        _remove(p["emails"], d.get("email", ""))
    elif kind == "customer.phone_added":
        _add(p["phones"], d.get("phone", ""))
    elif kind == "customer.phone_removed":
        _remove(p["phones"], d.get("phone", ""))
    elif kind == "customer.postal_address_added":
        p["addresses"] = [*p["addresses"], d.get("address", {})]
    elif kind == "customer.postal_address_removed":
        p["addresses"] = [a for a in p["addresses"] if a.get("address_id") != d.get("address_id")]
    elif kind == "customer.owner_assigned":
        p["owner_id"] = d.get("owner_id", "")
    elif kind == "customer.tags_changed":
        removed = set(d.get("removed", []))
        p["tags"] = [t for t in p["tags"] if t not in removed]
        for tag in d.get("added", []):
            _add(p["tags"], tag)
    elif kind in ("customer.consent_granted", "customer.consent_revoked"):
        channel = _enum_word(d.get("channel", ""))
        purpose = _enum_word(d.get("purpose", ""))
        p["consent"][f"{channel}/{purpose}"] = {
            "granted": kind == "customer.consent_granted",
            "source": d.get("source", ""),
            "decided_at": d.get("decided_at", at),
        }
    elif kind == "customer.contact_person_linked":
        p["contact_persons"][d["link_id"]] = {
            "organisation_id": d.get("organisation_id", ""),
            "person_id": d.get("person_id", ""),
            "role": d.get("role", ""),
            "valid_from": d.get("valid_from", ""),
            "valid_until": "",
        }
    elif kind == "customer.contact_person_link_ended":
        link = p["contact_persons"].get(d.get("link_id", ""))
        if link is not None:
            link["valid_until"] = d.get("valid_until", "")
    touches = p["touches"].setdefault(entry.source, {"count": 0, "last_at": ""})
    touches["count"] += 1
    touches["last_at"] = max(touches["last_at"], at)
    if at >= p["last_contact_at"]:
        p["last_contact_at"] = at
        p["last_contact_source"] = entry.source
    if not p["first_seen_at"] or at < p["first_seen_at"]:
        p["first_seen_at"] = at
    p["updated_at"] = max(p["updated_at"], at)
    return p
