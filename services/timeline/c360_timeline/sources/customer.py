"""The customer service's events (source `customer`): their summaries and the customer's own
fields at the top of the profile (name, kind, contact data, owner, tags, addresses,
acquisition, consent, contact persons), joined on merge by the rules of its combined view.

Provenance paths: "kind", "display_name", "owner_id", "acquisition", "emails[<email>]",
"phones[<phone>]", "tags[<tag>]", "addresses[<address_id>]", "consent.<channel>/<purpose>",
"contact_persons[<link_id>]". Merge and unmerge events have summaries but no fold (the core's
MERGE_TYPES).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from c360.events.v1 import customer_events_pb2 as ev
from c360_platform.pii import FORGOTTEN
from c360_platform.vocabulary import Words
from c360_timeline.projection import (
    Doc,
    Entry,
    Fold,
    SourcePlugin,
    copy_provenance,
    set_by,
    unset,
    with_reason,
)

KINDS = Words(ev.CustomerKind)
CHANNELS = Words(ev.ConsentChannel)
PURPOSES = Words(ev.ConsentPurpose)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _kind(value: str) -> str:
    """CUSTOMER_KIND_PERSON -> person."""
    return KINDS.of_name(value)


# -- summaries ----------------------------------------------------------------------------------


def _registered(d: Doc) -> str:
    via = d.get("acquisition_channel") or d.get("acquisition_source")
    text = f"Registered {_kind(d.get('kind', '')) or 'customer'} “{d.get('display_name', '')}”"
    return f"{text} via {via}" if via else text


def _consent(verb: str) -> Callable[[Doc], str]:
    def summary(d: Doc) -> str:
        channel = CHANNELS.of_name(d.get("channel", ""))
        purpose = PURPOSES.of_name(d.get("purpose", ""))
        # The evidence: how it was captured and who recorded it.
        source, by = d.get("source", ""), d.get("recorded_by", "")
        evidence = ", ".join(part for part in (source, f"recorded by {by}" if by else "") if part)
        text = f"Consent {verb} for {purpose} by {channel}"
        return f"{text} ({evidence})" if evidence else text

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


def _link(d: Doc) -> str:
    """Who is linked to whom (on both the person's and the organisation's timeline), by the
    short ids lists show: "Person 4ab00d20 at organisation e8f967a6"."""
    person, organisation = d.get("person_id", "")[:8], d.get("organisation_id", "")[:8]
    return f"Person {person} at organisation {organisation}"


def _absorbed(d: Doc) -> str:
    text = with_reason(f"Customer {d.get('duplicate_id', '')} merged into this one", d)
    n = len(d.get("conflicts", []))
    return f"{text} ({n} consent conflict{'s' if n != 1 else ''})" if n else text


SUMMARIES: dict[str, Callable[[Doc], str]] = {
    "c360.events.v1.CustomerMergedInto": lambda d: with_reason(
        f"Merged into customer {d.get('survivor_id', '')}", d
    ),
    "c360.events.v1.DuplicateAbsorbed": _absorbed,
    "c360.events.v1.CustomerUnmerged": lambda d: (
        f"Unmerged from customer {d.get('survivor_id', '')}"
    ),
    "c360.events.v1.DuplicateReleased": lambda d: (
        f"Customer {d.get('duplicate_id', '')} unmerged from this one"
    ),
    "c360.events.v1.CustomerForgotten": lambda d: (
        "Customer forgotten on request: personal data erased"
    ),
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
    "c360.events.v1.ContactPersonLinked": lambda d: (
        f"{_link(d)} linked as contact person: {d.get('role', '')}"
    ),
    "c360.events.v1.ContactPersonLinkEnded": lambda d: f"{_link(d)}: contact-person link ended",
}


# -- the customer's fields in the profile -------------------------------------------------------


def own_fields() -> Doc:
    """The customer's fields every profile has besides the core ones (kind, name, e-mails,
    phones, owner, tags)."""
    return {
        "addresses": [],
        "forgotten_at": "",
        "acquisition": {"source": "", "channel": ""},
        "consent": {},
        "contact_persons": {},
    }


def _members(p: Doc, field: str, values: list[str], entry: Entry) -> None:
    """Provenance of a list field replaced as a whole (registration)."""
    prov = p.setdefault("provenance", {})
    for key in [k for k in prov if k.startswith(field + "[")]:
        del prov[key]
    for value in values:
        set_by(p, f"{field}[{value}]", entry)


def _fold_registered(p: Doc, entry: Entry) -> None:
    d = entry.details
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
    for path in ("kind", "display_name", "acquisition"):
        set_by(p, path, entry)
    if p["owner_id"]:
        set_by(p, "owner_id", entry)
    for field in ("emails", "phones", "tags"):
        _members(p, field, p[field], entry)


def _fold_renamed(p: Doc, entry: Entry) -> None:
    p["display_name"] = entry.details.get("display_name", "")
    set_by(p, "display_name", entry)


def _contact_data_added(field: str, key: str) -> Fold:
    """The fold of an e-mail or phone added (`key` of the details) to `field`."""

    def fold(p: Doc, entry: Entry) -> None:
        value = entry.details.get(key)
        if value and value not in p[field]:
            p[field].append(value)
            set_by(p, f"{field}[{value}]", entry)

    return fold


def _contact_data_removed(field: str, key: str) -> Fold:
    """The fold of an e-mail or phone removed (`key` of the details) from `field`."""

    def fold(p: Doc, entry: Entry) -> None:
        value = entry.details.get(key, "")
        if value in p[field]:
            p[field].remove(value)
        unset(p, f"{field}[{value}]")

    return fold


def _fold_address_added(p: Doc, entry: Entry) -> None:
    address = entry.details.get("address", {})
    p["addresses"] = [*p["addresses"], address]
    set_by(p, f"addresses[{address.get('address_id', '')}]", entry)


def _fold_address_removed(p: Doc, entry: Entry) -> None:
    address_id = entry.details.get("address_id")
    p["addresses"] = [a for a in p["addresses"] if a.get("address_id") != address_id]
    unset(p, f"addresses[{entry.details.get('address_id', '')}]")


def _fold_owner_assigned(p: Doc, entry: Entry) -> None:
    p["owner_id"] = entry.details.get("owner_id", "")
    set_by(p, "owner_id", entry)


def _fold_tags_changed(p: Doc, entry: Entry) -> None:
    removed = set(entry.details.get("removed", []))
    p["tags"] = [t for t in p["tags"] if t not in removed]
    for tag in removed:
        unset(p, f"tags[{tag}]")
    for tag in entry.details.get("added", []):
        if tag and tag not in p["tags"]:
            p["tags"].append(tag)
            set_by(p, f"tags[{tag}]", entry)


def _consent_decided(granted: bool) -> Fold:
    """The fold of a consent granted or revoked, per channel and purpose."""

    def fold(p: Doc, entry: Entry) -> None:
        d = entry.details
        key = f"{CHANNELS.of_name(d.get('channel', ''))}/{PURPOSES.of_name(d.get('purpose', ''))}"
        p["consent"][key] = {
            "granted": granted,
            "source": d.get("source", ""),
            "decided_at": d.get("decided_at", entry.occurred_at.isoformat()),
            "recorded_by": d.get("recorded_by", ""),
        }
        set_by(p, f"consent.{key}", entry)

    return fold


def _fold_contact_person_linked(p: Doc, entry: Entry) -> None:
    d = entry.details
    p["contact_persons"][d["link_id"]] = {
        "organisation_id": d.get("organisation_id", ""),
        "person_id": d.get("person_id", ""),
        "role": d.get("role", ""),
        "valid_from": d.get("valid_from", ""),
        "valid_until": "",
    }
    set_by(p, f"contact_persons[{d['link_id']}]", entry)


def _fold_contact_person_link_ended(p: Doc, entry: Entry) -> None:
    d = entry.details
    link = p["contact_persons"].get(d.get("link_id", ""))
    if link is not None:
        link["valid_until"] = d.get("valid_until", "")
        set_by(p, f"contact_persons[{d['link_id']}]", entry)


def _fold_forgotten(p: Doc, entry: Entry) -> None:
    """Erased on request: the personal fields go (what the earlier entries sealed can no
    longer be read either); the rest of the profile stays."""
    p["display_name"] = FORGOTTEN
    for field in ("emails", "phones"):
        for value in p[field]:
            unset(p, f"{field}[{value}]")
        p[field] = []
    for address in p["addresses"]:
        unset(p, f"addresses[{address.get('address_id', '')}]")
    p["addresses"] = []
    p["forgotten_at"] = entry.details.get("forgotten_at", entry.occurred_at.isoformat())
    set_by(p, "display_name", entry)


FOLDS: dict[str, Fold] = {
    "customer.forgotten": _fold_forgotten,
    "customer.registered": _fold_registered,
    "customer.renamed": _fold_renamed,
    "customer.email_added": _contact_data_added("emails", "email"),
    "customer.email_removed": _contact_data_removed("emails", "email"),
    "customer.phone_added": _contact_data_added("phones", "phone"),
    "customer.phone_removed": _contact_data_removed("phones", "phone"),
    "customer.postal_address_added": _fold_address_added,
    "customer.postal_address_removed": _fold_address_removed,
    "customer.owner_assigned": _fold_owner_assigned,
    "customer.tags_changed": _fold_tags_changed,
    "customer.consent_granted": _consent_decided(granted=True),
    "customer.consent_revoked": _consent_decided(granted=False),
    "customer.contact_person_linked": _fold_contact_person_linked,
    "customer.contact_person_link_ended": _fold_contact_person_link_ended,
}


# -- merged customers ---------------------------------------------------------------------------


def _union(p: Doc, other: Doc, field: str) -> None:
    for value in other[field]:
        if value not in p[field]:
            p[field].append(value)
            copy_provenance(p, other, f"{field}[{value}]")


def join(p: Doc, other: Doc) -> None:
    """By the rules of the customer service's combined view: name, kind, owner and
    acquisition stay the survivor's; e-mails, phones, tags, addresses and contact persons are
    the survivor's then the duplicate's not present; per consent channel and purpose the
    more recent decision."""
    for field in ("emails", "phones", "tags"):
        _union(p, other, field)
    known = {a.get("address_id") for a in p["addresses"]}
    for address in other["addresses"]:
        if address.get("address_id") not in known:
            p["addresses"].append(address)
            copy_provenance(p, other, f"addresses[{address.get('address_id', '')}]")
    for key, decision in other["consent"].items():
        mine = p["consent"].get(key)
        if mine is None or _time(decision["decided_at"]) > _time(mine["decided_at"]):
            p["consent"][key] = decision
            copy_provenance(p, other, f"consent.{key}")
    for link_id, link in other["contact_persons"].items():
        if link_id not in p["contact_persons"]:
            p["contact_persons"][link_id] = link
            copy_provenance(p, other, f"contact_persons[{link_id}]")


INTERNAL = frozenset(
    {
        "customer.owner_assigned",
        "customer.tags_changed",
        "customer.contact_person_linked",
        "customer.contact_person_link_ended",
        "customer.merged_into",
        "customer.duplicate_absorbed",
        "customer.unmerged",
        "customer.duplicate_released",
        "customer.forgotten",
    }
)
"""The company's own changes to the record: on the timeline, but no contact with the customer."""


PLUGIN = SourcePlugin(
    name="customer",
    internal=lambda e: e.type in INTERNAL,
    summaries=SUMMARIES,
    folds=FOLDS,
    empty_section=own_fields,
    join=join,
)
