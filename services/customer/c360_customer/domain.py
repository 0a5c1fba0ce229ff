"""The Customer aggregate and its rules: pure Python on `eventsourcing.domain`, no I/O.

Command methods validate and normalise, then call the decorated event methods, so each
state change is written once and is the same when the aggregate is rebuilt from its events.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.domain import Aggregate, event

from c360_platform.errors import AlreadyExists, InvalidArgument, NotFound, PreconditionFailed
from c360_platform.validation import Violations, phone_region

MAX_CONTACT_POINTS = 10
MAX_ADDRESSES = 10
MAX_TAGS = 50
_EMPLOYEE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")


class Kind(StrEnum):
    PERSON = "person"
    ORGANISATION = "organisation"


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PHONE = "phone"
    POST = "post"


class Purpose(StrEnum):
    MARKETING = "marketing"
    SERVICE = "service"


def consent_key(channel: Channel, purpose: Purpose) -> str:
    return f"{channel.value}/{purpose.value}"


def consent_decision(channel: str, purpose: str, source: str) -> tuple[Channel, Purpose, str]:
    """A consent decision's channel, purpose and source, checked together (INVALID_ARGUMENT
    naming every offending field)."""
    v = Violations()
    ch = v.enum("channel", channel, Channel)
    pu = v.enum("purpose", purpose, Purpose)
    src = v.text("source", source, max_len=64)
    v.check()
    assert ch is not None
    assert pu is not None
    return ch, pu, src


def _owner(v: Violations, field: str, owner_id: str) -> str:
    owner = owner_id.strip()
    if owner and not _EMPLOYEE_ID.match(owner):
        v.add(field, "must be an employee id: 1-64 of A-Z a-z 0-9 . _ - ")
    return owner


def _address(v: Violations, field: str, raw: dict[str, Any]) -> dict[str, Any]:
    lines = [
        v.text(f"{field}.lines[{i}]", str(line), max_len=120)
        for i, line in enumerate(raw.get("lines", []))
    ]
    lines = [line for line in lines if line]
    if not lines:
        v.add(f"{field}.lines", "at least one address line is required")
    if len(lines) > 5:
        v.add(f"{field}.lines", "must be at most 5 lines")
    return {
        "address_id": str(raw.get("address_id") or uuid.uuid4()),
        "label": v.text(f"{field}.label", str(raw.get("label", "")), required=False, max_len=40),
        "lines": lines,
        "postal_code": v.text(
            f"{field}.postal_code", str(raw.get("postal_code", "")), required=False, max_len=20
        ),
        "city": v.text(f"{field}.city", str(raw.get("city", "")), max_len=80),
        "region": v.text(f"{field}.region", str(raw.get("region", "")), required=False, max_len=80),
        "country": v.country(f"{field}.country", str(raw.get("country", ""))),
    }


CLOCK_SKEW = timedelta(minutes=5)
"""How far a time a caller gives (a consent decision's) may be ahead of the service's clock
and still be taken, as now: the two clocks are never quite the same (a contact's start in
the service desk allows as much)."""

_NO_ABSORBED: Mapping[str, str] = MappingProxyType({})
FORGOTTEN_NAME = "[forgotten]"
"""A forgotten customer's name (and what any of its personal data reads as)."""


class Customer(Aggregate):
    """A person or organisation the company does business with."""

    if TYPE_CHECKING:  # the event classes the library makes from the decorated methods
        Registered: ClassVar[type[Aggregate.Event]]
        Renamed: ClassVar[type[Aggregate.Event]]
        EmailAdded: ClassVar[type[Aggregate.Event]]
        EmailRemoved: ClassVar[type[Aggregate.Event]]
        PhoneAdded: ClassVar[type[Aggregate.Event]]
        PhoneRemoved: ClassVar[type[Aggregate.Event]]
        PostalAddressAdded: ClassVar[type[Aggregate.Event]]
        PostalAddressRemoved: ClassVar[type[Aggregate.Event]]
        OwnerAssigned: ClassVar[type[Aggregate.Event]]
        TagsChanged: ClassVar[type[Aggregate.Event]]
        ConsentGranted: ClassVar[type[Aggregate.Event]]
        ConsentRevoked: ClassVar[type[Aggregate.Event]]
        ContactPersonLinked: ClassVar[type[Aggregate.Event]]
        ContactPersonLinkEnded: ClassVar[type[Aggregate.Event]]
        MergedInto: ClassVar[type[Aggregate.Event]]
        DuplicateAbsorbed: ClassVar[type[Aggregate.Event]]
        Unmerged: ClassVar[type[Aggregate.Event]]
        DuplicateReleased: ClassVar[type[Aggregate.Event]]
        Forgotten: ClassVar[type[Aggregate.Event]]

    # Declared so that an id can be given at creation (imports derive it from external keys).
    id: uuid.UUID
    # Merges (class defaults, so customers and snapshots from before merging had them):
    # the survivor this customer is merged into ("" when not merged) and that merge's id;
    # the duplicates merged into this customer (duplicate id -> merge id), replaced on change.
    # (Not annotated: the library would make them dataclass fields of Registered.)
    merged_into = ""
    merge_id = ""
    absorbed = _NO_ABSORBED
    # When the customer was forgotten (erased on request), None while not.
    if TYPE_CHECKING:
        forgotten_at: datetime | None
    forgotten_at = None

    @event("Registered")
    def __init__(
        self,
        kind: str,
        display_name: str,
        emails: list[str],
        phones: list[str],
        addresses: list[dict[str, Any]],
        acquisition_source: str,
        acquisition_channel: str,
        owner_id: str,
        tags: list[str],
    ) -> None:
        self.kind = kind
        self.display_name = display_name
        self.emails = list(emails)
        self.phones = list(phones)
        self.addresses = [dict(a) for a in addresses]
        self.acquisition_source = acquisition_source
        self.acquisition_channel = acquisition_channel
        self.owner_id = owner_id
        self.tags = list(tags)
        self.consents: dict[str, dict[str, Any]] = {}
        self.links: dict[str, dict[str, Any]] = {}

    # -- identity ---------------------------------------------------------------------------

    def rename(self, display_name: str) -> None:
        v = Violations()
        name = v.name("display_name", display_name)
        v.check()
        if name != self.display_name:
            self._renamed(name)

    @event("Renamed")
    def _renamed(self, display_name: str) -> None:
        self.display_name = display_name

    # -- contact points ---------------------------------------------------------------------

    def add_email(self, email: str) -> None:
        v = Violations()
        normalised = v.email("email", email)
        v.check()
        if normalised in self.emails:
            return
        if len(self.emails) >= MAX_CONTACT_POINTS:
            raise PreconditionFailed(f"customer has {MAX_CONTACT_POINTS} e-mail addresses already")
        self._email_added(normalised)

    @event("EmailAdded")
    def _email_added(self, email: str) -> None:
        self.emails.append(email)

    def holds_email(self, email: str) -> bool:
        """Whether the address (as it would be stored) is one of the customer's own."""
        v = Violations()
        normalised = v.email("email", email)
        v.check()
        return normalised in self.emails

    def remove_email(self, email: str) -> None:
        v = Violations()
        normalised = v.email("email", email)
        v.check()
        if normalised not in self.emails:
            raise NotFound("the customer has no such e-mail address")
        self._email_removed(normalised)

    @event("EmailRemoved")
    def _email_removed(self, email: str) -> None:
        self.emails.remove(email)

    def add_phone(self, phone: str, default_region: str = "") -> None:
        v = Violations()
        normalised = v.phone("phone", phone, default_region)
        v.check()
        if normalised in self.phones:
            return
        if len(self.phones) >= MAX_CONTACT_POINTS:
            raise PreconditionFailed(f"customer has {MAX_CONTACT_POINTS} phone numbers already")
        self._phone_added(normalised)

    @event("PhoneAdded")
    def _phone_added(self, phone: str) -> None:
        self.phones.append(phone)

    def holds_phone(self, phone: str, default_region: str = "") -> bool:
        """Whether the number (as it would be stored) is one of the customer's own."""
        v = Violations()
        normalised = v.phone("phone", phone, default_region)
        v.check()
        return normalised in self.phones

    def remove_phone(self, phone: str, default_region: str = "") -> None:
        v = Violations()
        normalised = v.phone("phone", phone, default_region)
        v.check()
        if normalised not in self.phones:
            raise NotFound("the customer has no such phone number")
        self._phone_removed(normalised)

    @event("PhoneRemoved")
    def _phone_removed(self, phone: str) -> None:
        self.phones.remove(phone)

    def add_postal_address(self, address: dict[str, Any]) -> str:
        v = Violations()
        clean = _address(v, "address", {**address, "address_id": ""})
        v.check()
        if len(self.addresses) >= MAX_ADDRESSES:
            raise PreconditionFailed(f"customer has {MAX_ADDRESSES} postal addresses already")
        self._postal_address_added(clean)
        return str(clean["address_id"])

    @event("PostalAddressAdded")
    def _postal_address_added(self, address: dict[str, Any]) -> None:
        self.addresses.append(dict(address))

    def remove_postal_address(self, address_id: str) -> None:
        if not address_id.strip():
            raise InvalidArgument.one("address_id", "is required")
        if not any(a["address_id"] == address_id for a in self.addresses):
            raise NotFound(f"the customer has no postal address {address_id}")
        self._postal_address_removed(address_id)

    @event("PostalAddressRemoved")
    def _postal_address_removed(self, address_id: str) -> None:
        self.addresses = [a for a in self.addresses if a["address_id"] != address_id]

    # -- owner and tags ---------------------------------------------------------------------

    def assign_owner(self, owner_id: str) -> None:
        v = Violations()
        owner = _owner(v, "owner_id", owner_id)
        v.check()
        if owner != self.owner_id:
            self._owner_assigned(owner, self.owner_id)

    @event("OwnerAssigned")
    def _owner_assigned(self, owner_id: str, previous_owner_id: str) -> None:
        self.owner_id = owner_id

    def change_tags(self, add: list[str], remove: list[str]) -> None:
        v = Violations()
        added = [v.tag(f"add[{i}]", t) for i, t in enumerate(add)]
        removed = [v.tag(f"remove[{i}]", t) for i, t in enumerate(remove)]
        for i, t in enumerate(removed):
            if t in added:
                # Which would win depended on whether the customer had it: refused instead.
                v.add(f"remove[{i}]", f"tag {t!r} is also in add: add or remove it, not both")
        v.check()
        added = sorted({t for t in added if t not in self.tags})
        removed = sorted({t for t in removed if t in self.tags and t not in added})
        if len(self.tags) + len(added) - len(removed) > MAX_TAGS:
            raise InvalidArgument.one("add", f"a customer has at most {MAX_TAGS} tags")
        if added or removed:
            self._tags_changed(added, removed)

    @event("TagsChanged")
    def _tags_changed(self, added: list[str], removed: list[str]) -> None:
        self.tags = [t for t in self.tags if t not in removed] + added

    # -- consent ----------------------------------------------------------------------------

    def decide_consent(
        self,
        granted: bool,
        channel: str,
        purpose: str,
        source: str,
        at: datetime,
        recorded_by: str = "",
        now: datetime | None = None,
    ) -> None:
        """Record a consent decision; every decision is kept as evidence, repeats included:
        when (`at`: when the customer decided, `now` unless earlier), how (`source`) and by
        whom (`recorded_by`: the caller's token subject). A decision dated before the latest
        one on the same channel and purpose is refused: the latest is always the newest (as
        every reader of the events takes it)."""
        ch, pu, src = consent_decision(channel, purpose, source)
        if now is not None and at > now:
            if at > now + CLOCK_SKEW:
                raise InvalidArgument.one("decided_at", "must not be in the future")
            # A caller's clock a little ahead of ours: its "now" is ours (never a decision
            # dated after the next one, which would then be refused as older).
            at = now
        latest = self.consents.get(consent_key(ch, pu))
        if latest is not None and at < latest["decided_at"]:
            raise PreconditionFailed(
                f"the customer's latest {ch.value}/{pu.value} decision is from"
                f" {latest['decided_at'].isoformat()}: a decision dated before it cannot"
                " change it"
            )
        if granted:
            self._consent_granted(ch.value, pu.value, src, at, recorded_by)
        else:
            self._consent_revoked(ch.value, pu.value, src, at, recorded_by)

    # `recorded_by` has a default: events recorded before it was read without it.
    @event("ConsentGranted")
    def _consent_granted(
        self, channel: str, purpose: str, source: str, decided_at: datetime, recorded_by: str = ""
    ) -> None:
        self.consents[f"{channel}/{purpose}"] = {
            "channel": channel,
            "purpose": purpose,
            "granted": True,
            "source": source,
            "decided_at": decided_at,
            "recorded_by": recorded_by,
        }

    @event("ConsentRevoked")
    def _consent_revoked(
        self, channel: str, purpose: str, source: str, decided_at: datetime, recorded_by: str = ""
    ) -> None:
        self.consents[f"{channel}/{purpose}"] = {
            "channel": channel,
            "purpose": purpose,
            "granted": False,
            "source": source,
            "decided_at": decided_at,
            "recorded_by": recorded_by,
        }

    def has_consent(self, channel: Channel, purpose: Purpose) -> bool:
        decision = self.consents.get(consent_key(channel, purpose))
        return bool(decision and decision["granted"])

    # -- contact persons --------------------------------------------------------------------

    @event("ContactPersonLinked")
    def _contact_person_linked(
        self, link_id: str, organisation_id: str, person_id: str, role: str, valid_from: datetime
    ) -> None:
        self.links[link_id] = {
            "link_id": link_id,
            "organisation_id": organisation_id,
            "person_id": person_id,
            "role": role,
            "valid_from": valid_from,
            "valid_until": None,
        }

    @event("ContactPersonLinkEnded")
    def _contact_person_link_ended(
        self, link_id: str, organisation_id: str, person_id: str, valid_until: datetime
    ) -> None:
        self.links[link_id] = {**self.links[link_id], "valid_until": valid_until}

    def current_links(self) -> list[dict[str, Any]]:
        return [link for link in self.links.values() if link["valid_until"] is None]

    # -- erasure ----------------------------------------------------------------------------

    def forget(self, at: datetime) -> None:
        """Erase the customer on request: its personal data is gone from now on (the store
        deletes its key with this event); what happened, and when, stays."""
        if self.forgotten_at is not None:
            raise PreconditionFailed(
                f"customer {self.id} is forgotten already (since {self.forgotten_at.isoformat()})"
            )
        self._forgotten(at)

    @event("Forgotten")
    def _forgotten(self, forgotten_at: datetime) -> None:
        self.forgotten_at = forgotten_at
        self.display_name = FORGOTTEN_NAME
        self.emails = []
        self.phones = []
        self.addresses = []

    def refuse_if_forgotten(self) -> None:
        if self.forgotten_at is not None:
            raise PreconditionFailed(f"customer {self.id} is forgotten: it takes no more changes")

    # -- merges -----------------------------------------------------------------------------

    def refuse_if_merged(self) -> None:
        """Commands on a merged customer are refused, naming the survivor it points to."""
        if self.merged_into:
            raise PreconditionFailed(
                f"customer {self.id} was merged into {self.merged_into}; use {self.merged_into}"
            )

    @event("MergedInto")
    def _merged_into(self, survivor_id: str, merge_id: str, reason: str) -> None:
        self.merged_into = survivor_id
        self.merge_id = merge_id

    @event("DuplicateAbsorbed")
    def _duplicate_absorbed(
        self, duplicate_id: str, merge_id: str, reason: str, conflicts: list[dict[str, Any]]
    ) -> None:
        self.absorbed = {**self.absorbed, duplicate_id: merge_id}

    @event("Unmerged")
    def _unmerged(self, survivor_id: str, merge_id: str) -> None:
        self.merged_into = ""
        self.merge_id = ""

    @event("DuplicateReleased")
    def _duplicate_released(self, duplicate_id: str, merge_id: str) -> None:
        self.absorbed = {k: v for k, v in self.absorbed.items() if k != duplicate_id}


def register_customer(
    *,
    kind: str,
    display_name: str,
    emails: list[str],
    phones: list[str],
    addresses: list[dict[str, Any]],
    acquisition_source: str = "",
    acquisition_channel: str = "",
    owner_id: str = "",
    tags: list[str] | None = None,
    customer_id: uuid.UUID | None = None,
    default_region: str = "",
) -> Customer:
    """Validate and normalise a registration, then create the customer (with a given id,
    when the id is derived from an external key)."""
    v = Violations()
    k = v.enum("kind", kind, Kind)
    name = v.name("display_name", display_name)
    # Counts first: a list over its limit is refused before any of its items is looked at
    # (validating thousands of addresses would hold the service for seconds).
    over = {
        name: limit
        for name, items, limit in (
            ("emails", emails, MAX_CONTACT_POINTS),
            ("phones", phones, MAX_CONTACT_POINTS),
            ("addresses", addresses, MAX_ADDRESSES),
            ("tags", tags or [], MAX_TAGS),
        )
        if len(items) > limit
    }
    for name, limit in over.items():
        v.add(name, f"must be at most {limit}")
    clean_emails = (
        []
        if "emails" in over
        else list(dict.fromkeys(v.email(f"emails[{i}]", e) for i, e in enumerate(emails)))
    )
    clean_phones = (
        []
        if "phones" in over
        else list(
            dict.fromkeys(v.phone(f"phones[{i}]", p, default_region) for i, p in enumerate(phones))
        )
    )
    clean_addresses = (
        []
        if "addresses" in over
        else [_address(v, f"addresses[{i}]", a) for i, a in enumerate(addresses)]
    )
    source = v.text("acquisition_source", acquisition_source, required=False, max_len=64)
    channel = v.text("acquisition_channel", acquisition_channel, required=False, max_len=64)
    owner = _owner(v, "owner_id", owner_id)
    clean_tags = (
        [] if "tags" in over else sorted({v.tag(f"tags[{i}]", t) for i, t in enumerate(tags or [])})
    )
    v.check()
    assert k is not None
    return Customer(  # type: ignore[call-arg]  # id is declared on the class
        id=customer_id,
        kind=k.value,
        display_name=name,
        emails=clean_emails,
        phones=clean_phones,
        addresses=clean_addresses,
        acquisition_source=source,
        acquisition_channel=channel,
        owner_id=owner,
        tags=clean_tags,
    )


def link_contact_person(
    organisation: Customer, person: Customer, role: str, valid_from: datetime
) -> str:
    """Make a person a contact of an organisation; recorded on both. Returns the link id."""
    v = Violations()
    clean_role = v.text("role", role, max_len=80)
    v.check()
    if organisation.kind != Kind.ORGANISATION.value:
        raise PreconditionFailed(
            f"customer {organisation.id} is a {organisation.kind}, not an organisation"
        )
    if person.kind != Kind.PERSON.value:
        raise PreconditionFailed(f"customer {person.id} is a {person.kind}, not a person")
    for link in organisation.current_links():
        if link["person_id"] == str(person.id) and link["role"] == clean_role:
            raise AlreadyExists(
                f"the person is already linked in role {clean_role!r} ({link['link_id']})"
            )
    link_id = str(uuid.uuid4())
    for side in (organisation, person):
        side._contact_person_linked(
            link_id, str(organisation.id), str(person.id), clean_role, valid_from
        )
    return link_id


def end_contact_person(
    organisation: Customer, person: Customer, link_id: str, valid_until: datetime
) -> None:
    """End a link on both sides; the link stays in history with its period."""
    link = organisation.links.get(link_id)
    if link is None:
        raise NotFound(f"organisation {organisation.id} has no contact-person link {link_id}")
    if link["valid_until"] is not None:
        raise PreconditionFailed(
            f"link {link_id} ended already at {link['valid_until'].isoformat()}"
        )
    if valid_until < link["valid_from"]:
        raise InvalidArgument.one("valid_until", "must not be before the link's valid_from")
    for side in (organisation, person):
        side._contact_person_link_ended(
            link_id, link["organisation_id"], link["person_id"], valid_until
        )


LEGACY_IMPORT_NAMESPACE = uuid.UUID("0c3600c3-6000-4c36-8c36-000000000001")
MAX_EXTERNAL_KEY = 128


def id_for_external_key(external_key: str, key: bytes) -> uuid.UUID:
    """The customer id an imported record gets: the same key always gives the same id in one
    deployment, and only with the deployment's import key (`key`, secret) can it be computed:
    an external key is often an e-mail address or a national customer number, and an id
    anyone can compute from it would name the person in every event, subject and log that
    carries the id, after an erasure too."""
    digest = hmac.new(key, b"c360 import id\x00" + external_key.encode(), hashlib.sha256)
    return uuid.UUID(bytes=digest.digest()[:16], version=4)


def legacy_id_for_external_key(external_key: str) -> uuid.UUID:
    """The id imports gave before ids were keyed (a name-based UUID anyone could compute): a
    record imported then is found under it, so that importing it again creates nothing."""
    return uuid.uuid5(LEGACY_IMPORT_NAMESPACE, external_key)


def import_customer(external_key: str, id_key: bytes, **fields: Any) -> Customer:
    """Validate one imported row and create its customer under the key's id (`id_key`: the
    deployment's import key, see `id_for_external_key`)."""
    key = external_key.strip()
    if not key:
        raise InvalidArgument.one("external_key", "is required")
    if len(key) > MAX_EXTERNAL_KEY:
        raise InvalidArgument.one("external_key", f"must be at most {MAX_EXTERNAL_KEY} characters")
    if not fields.get("default_region"):
        # A row's local phone numbers are read in the country of its first address.
        # A country without phone numbers of its own (Antarctica, "AQ") gives none: its
        # numbers must then carry their country code.
        countries = [str(a.get("country", "")) for a in fields.get("addresses") or []]
        fields["default_region"] = phone_region(next((c for c in countries if c.strip()), ""))
    return register_customer(customer_id=id_for_external_key(key, id_key), **fields)


# -- merge and unmerge ------------------------------------------------------------------------

MAX_REASON = 500


def consent_conflicts(
    survivor: Mapping[str, dict[str, Any]], duplicate: Mapping[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Channel and purpose pairs on which the two customers' latest decisions differ, with
    both decisions and which one the combined view keeps (the more recent; the survivor's
    on a tie). Sorted by channel/purpose."""
    conflicts = []
    for key in sorted(set(survivor) & set(duplicate)):
        s, d = survivor[key], duplicate[key]
        if s["granted"] == d["granted"]:
            continue
        conflicts.append(
            {
                "channel": s["channel"],
                "purpose": s["purpose"],
                "survivor_granted": s["granted"],
                "survivor_decided_at": s["decided_at"],
                "duplicate_granted": d["granted"],
                "duplicate_decided_at": d["decided_at"],
                "kept": "duplicate" if d["decided_at"] > s["decided_at"] else "survivor",
            }
        )
    return conflicts


def merge_customers(
    survivor: Customer,
    duplicate: Customer,
    reason: str,
    *,
    survivor_consents: Mapping[str, dict[str, Any]] | None = None,
    duplicate_consents: Mapping[str, dict[str, Any]] | None = None,
) -> str:
    """Merge `duplicate` into `survivor`: `MergedInto` on the duplicate, `DuplicateAbsorbed`
    (with the consent conflicts) on the survivor. Nothing else changes: the combined view is
    computed from both histories (`combine`), so an unmerge restores both exactly. The
    consent maps default to the customers' own (pass the combined ones of customers that
    absorbed others). Returns the merge id."""
    v = Violations()
    clean_reason = v.text("reason", reason, max_len=MAX_REASON)
    v.check()
    if survivor.id == duplicate.id:
        raise InvalidArgument.one("duplicate_id", "must differ from survivor_id")
    survivor.refuse_if_forgotten()
    duplicate.refuse_if_forgotten()
    if duplicate.merged_into:
        raise PreconditionFailed(
            f"customer {duplicate.id} was merged into {duplicate.merged_into} already"
        )
    if survivor.merged_into:
        raise PreconditionFailed(
            f"customer {survivor.id} was merged into {survivor.merged_into};"
            f" merge into {survivor.merged_into}"
        )
    if survivor.kind != duplicate.kind:
        raise PreconditionFailed(
            f"customer {survivor.id} is a {survivor.kind} and {duplicate.id} a"
            f" {duplicate.kind}: only customers of one kind can be merged"
        )
    merge_id = str(uuid.uuid4())
    conflicts = consent_conflicts(
        survivor.consents if survivor_consents is None else survivor_consents,
        duplicate.consents if duplicate_consents is None else duplicate_consents,
    )
    duplicate._merged_into(str(survivor.id), merge_id, clean_reason)
    survivor._duplicate_absorbed(str(duplicate.id), merge_id, clean_reason, conflicts)
    return merge_id


def unmerge_customer(duplicate: Customer, survivor: Customer) -> str:
    """Undo the merge of `duplicate` into `survivor` (its direct survivor): `Unmerged` on the
    duplicate, `DuplicateReleased` on the survivor. Returns the merge id undone."""
    if not duplicate.merged_into:
        raise PreconditionFailed(f"customer {duplicate.id} is not merged")
    duplicate.refuse_if_forgotten()
    survivor.refuse_if_forgotten()
    if duplicate.merged_into != str(survivor.id) or str(duplicate.id) not in survivor.absorbed:
        raise PreconditionFailed(
            f"customer {duplicate.id} was merged into {duplicate.merged_into}, not {survivor.id}"
        )
    merge_id = duplicate.merge_id
    duplicate._unmerged(str(survivor.id), merge_id)
    survivor._duplicate_released(str(duplicate.id), merge_id)
    return merge_id


@dataclass(frozen=True)
class Combined:
    """A survivor's combined view: its own state joined with that of the duplicates merged
    into it (transitively), by the documented rules."""

    emails: list[str]
    phones: list[str]
    addresses: list[dict[str, Any]]
    tags: list[str]
    consents: dict[str, dict[str, Any]]
    links: dict[str, dict[str, Any]]


def combine(survivor: Customer, duplicates: Iterable[Customer]) -> Combined:
    """Contact points, addresses, tags and contact-person links: the survivor's, then each
    duplicate's not already present (in merge order). Consent: per channel and purpose the
    most recent decision of any of them (the survivor's on a tie). Name, kind, owner and
    acquisition stay the survivor's."""
    emails, phones, tags = list(survivor.emails), list(survivor.phones), list(survivor.tags)
    addresses = [dict(a) for a in survivor.addresses]
    consents = dict(survivor.consents)
    links = dict(survivor.links)
    for d in duplicates:
        emails += [e for e in d.emails if e not in emails]
        phones += [p for p in d.phones if p not in phones]
        tags += [t for t in d.tags if t not in tags]
        known = {a["address_id"] for a in addresses}
        addresses += [dict(a) for a in d.addresses if a["address_id"] not in known]
        for key, decision in d.consents.items():
            if key not in consents or decision["decided_at"] > consents[key]["decided_at"]:
                consents[key] = decision
        for link_id, link in d.links.items():
            links.setdefault(link_id, link)
    return Combined(emails, phones, addresses, tags, consents, links)


def forget_customers(
    customer: Customer, absorbed: Iterable[Customer], at: datetime, *, with_merged: bool
) -> list[Customer]:
    """Forget a customer and, `with_merged`, the duplicates merged into it (`absorbed`,
    transitively); each records its own Forgotten. Returns those forgotten now.

    A survivor is one person with its duplicates, and reads as their combined data: without
    `with_merged` it is refused while a duplicate merged into it is not forgotten (its data
    would go on showing under the forgotten survivor). With `with_merged` the members not
    forgotten yet are forgotten (a survivor forgotten alone before can be completed); it is
    refused only if every one of them is forgotten already."""
    remaining = [d for d in absorbed if d.forgotten_at is None]
    if not with_merged:
        if remaining:
            ids = ", ".join(str(d.id) for d in remaining)
            raise PreconditionFailed(
                f"customer {customer.id} has duplicates merged into it ({ids}): forget them"
                " with it (with_merged), or unmerge those of another person first"
            )
        customer.forget(at)  # raises if forgotten already
        return [customer]
    group = [customer] if customer.forgotten_at is None else []
    group += remaining
    if not group:
        customer.forget(at)  # raises, naming it
    for member in group:
        member.forget(at)
    return group


PERSONAL_FIELDS: Mapping[type, tuple[str, ...]] = MappingProxyType(
    {
        Customer.Registered: (
            "display_name",
            "emails[]",
            "phones[]",
            "addresses[].label",
            "addresses[].lines[]",
            "addresses[].postal_code",
            "addresses[].city",
            "addresses[].region",
            "acquisition_source",
        ),
        Customer.Renamed: ("display_name",),
        Customer.EmailAdded: ("email",),
        Customer.EmailRemoved: ("email",),
        Customer.PhoneAdded: ("phone",),
        Customer.PhoneRemoved: ("phone",),
        Customer.PostalAddressAdded: (
            "address.label",
            "address.lines[]",
            "address.postal_code",
            "address.city",
            "address.region",
        ),
        Customer.MergedInto: ("reason",),
        Customer.DuplicateAbsorbed: ("reason",),
        # Labels an agent types: "referral from <a name>", "phone call with <a name>", a
        # person's role at an organisation ("CFO" of one company names one person).
        Customer.ConsentGranted: ("source",),
        Customer.ConsentRevoked: ("source",),
        Customer.ContactPersonLinked: ("role",),
    }
)
"""The personal data in each event (free texts included: a merge's reason may name people):
sealed with the customer's key in the store and on the streams."""

PERSONAL_DATA_OF: Mapping[type, str] = MappingProxyType({Customer.ContactPersonLinked: "person_id"})
"""Events whose personal data is another customer's than the aggregate's, by the field that
names that customer: a contact person's role at an organisation is sealed under the person's
key, and is gone with the person's erasure (the organisation's is not needed to read it)."""
