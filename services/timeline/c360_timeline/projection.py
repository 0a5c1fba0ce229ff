"""The timeline's core, pure (no I/O): envelope -> entry, the profile fold, provenance, merged
customers' profiles, the churn signal; what each source's events mean is in its plug-in.

The plug-ins are the modules of c360_timeline.sources, found on first use (`registry`); they
know the published contract (c360.events.v1, c360.erp.v1) and nothing of the services' code.
Besides the entry of each event the core derives entries of its own (source `timeline`): the churn
signal, flagged when a customer's support contacts reach a threshold within a window and
cleared when the window passes after the last one. Derived entries depend only on the events
and, for clearing, on the time of the sweep, so a rebuild gives the same rows.
"""

from __future__ import annotations

import copy
import functools
import importlib
import pkgutil
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from google.protobuf import message

from c360.events.v1 import envelope_pb2
from c360_platform import pii
from c360_platform.envelope import moment, short_type, unpack
from c360_timeline.details import details_of

Doc = dict[str, Any]
DERIVED_SOURCE = "timeline"
SOURCES_PACKAGE = "c360_timeline.sources"
_DERIVED_NAMESPACE = uuid.UUID("2c1f4a9e-5d36-4c36-8c36-c360c360a715")


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

    @functools.cached_property
    def provenance(self) -> Doc:
        """What the provenance map records of this entry for each field it set: made once,
        the same for all of them (a registration sets some ten)."""
        return {
            "source": self.source,
            "type": self.type,
            "occurred_at": self.occurred_at.isoformat(),
            "event_id": self.event_id,
        }


# -- source plug-ins ----------------------------------------------------------------------------

Summary = Callable[[Doc], str]
"""An entry's one-line summary, from its details."""
Fold = Callable[[Doc, Entry], None]
"""Folds one entry into the profile, in place, provenance included."""
Join = Callable[[Doc, Doc], None]
"""Joins a merged duplicate's profile (second) into the survivor's (first, in place)."""


class SupportContact(NamedTuple):
    """An entry that is a support contact (for the churn signal): what the customer did
    ("ticket_opened", "inbound_call") and on which channel."""

    contact: str
    channel: str


@dataclass(frozen=True)
class SourcePlugin:
    """What the timeline knows of one source of events. Each module of c360_timeline.sources
    declares one as `PLUGIN`; the core finds them (`registry`)."""

    name: str
    """The envelopes' source ("service-desk")."""
    summaries: Mapping[str, Summary]
    """Payload full name ("c360.events.v1.TicketOpened") -> the summary of its entries."""
    folds: Mapping[str, Fold] = field(default_factory=dict)
    """Entry type ("ticket.opened") -> how it changes the profile."""
    section: str = ""
    """The profile key of this source's part, added with its first folded entry; "" when its
    fields sit at the top of every profile (the customer's own)."""
    empty_section: Callable[[], Doc] = dict
    """That part before any entry (for no section: the fields every profile starts with)."""
    join: Join | None = None
    """How its part joins when customers are merged (called only when the duplicate has it)."""
    support_contact: Callable[[Entry], SupportContact | None] | None = None
    """Which of the entries it folds are support contacts."""
    typed_profile: Callable[[Doc, datetime], message.Message] | None = None
    """The Profile message's typed field named like `section`, from that part (at a time);
    without one the part reaches clients in Profile.attributes."""
    contact: bool = True
    """Whether its entries are contacts with the customer (`last_contact_at`)."""
    internal: Callable[[Entry], bool] | None = None
    """Which of its entries are the company's own bookkeeping (an owner assigned, a ticket
    closed, an SLA clock): not contacts with the customer, though on the timeline."""


@dataclass(frozen=True)
class Registry:
    """The source plug-ins found, indexed for dispatch."""

    plugins: tuple[SourcePlugin, ...]
    summaries: Mapping[str, Summary]
    """Payload full name -> summary, of every plug-in."""
    owners: Mapping[str, SourcePlugin]
    """Entry type -> the plug-in that folds it."""
    sources: Mapping[str, SourcePlugin]
    """Source name -> its plug-in."""


def _unique(what: str, keys: list[str]) -> None:
    twice = sorted(key for key, n in Counter(keys).items() if n > 1)
    if twice:
        raise ValueError(f"more than one source plug-in claims the {what} {', '.join(twice)}")


def discover(package: str = SOURCES_PACKAGE) -> Registry:
    """Import every module of `package` and index the `PLUGIN` each declares."""
    path = importlib.import_module(package).__path__
    plugins: list[SourcePlugin] = []
    for module in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        plugin = getattr(importlib.import_module(f"{package}.{module.name}"), "PLUGIN", None)
        if not isinstance(plugin, SourcePlugin):
            raise TypeError(f"{package}.{module.name} declares no PLUGIN = SourcePlugin(...)")
        if plugin.typed_profile is not None and not plugin.section:
            raise TypeError(f"{package}.{module.name}: a typed_profile needs a section")
        plugins.append(plugin)
    _unique("source", [p.name for p in plugins])
    _unique("payload", [name for p in plugins for name in p.summaries])
    _unique("entry type", [kind for p in plugins for kind in p.folds])
    _unique("profile section", [p.section for p in plugins if p.section])
    return Registry(
        plugins=tuple(plugins),
        summaries={name: s for p in plugins for name, s in p.summaries.items()},
        owners={kind: p for p in plugins for kind in p.folds},
        sources={p.name: p for p in plugins},
    )


@functools.cache
def registry() -> Registry:
    """The plug-ins of c360_timeline.sources, found on first use."""
    return discover()


# -- for the plug-ins: summaries and provenance -------------------------------------------------


def snippet(text: str, limit: int = 80) -> str:
    """The text on one line, cut to `limit` characters (for summaries); a sealed text is cut
    when it is revealed (`pii.clip`)."""
    if pii.is_sealed(text):
        return pii.clip(text, limit)
    return pii.snippet(text, limit)


def with_reason(text: str, d: Doc) -> str:
    """The summary `text`, with the event's reason if it gives one."""
    return f"{text}: {snippet(d['reason'])}" if d.get("reason") else text


# `provenance` maps a field path of the profile to the entry that last set it. The core's are
# "last_contact_at", "first_seen_at" and "at_risk" (the derived entry that flagged the churn
# signal); each plug-in lists its own ("display_name", "emails[<email>]",
# "service_desk.tickets[<ticket_id>]", "erp.outstanding.<currency>", …). A member that leaves
# the profile (a phone removed, a ticket closed) leaves the map too.


def set_by(p: Doc, path: str, entry: Entry) -> None:
    """Record `entry` as what set the field at `path`."""
    p.setdefault("provenance", {})[path] = entry.provenance


def unset(p: Doc, path: str) -> None:
    """Forget the provenance of a field that left the profile."""
    p.setdefault("provenance", {}).pop(path, None)


def stored_doc(p: Doc) -> Doc:
    """A profile as the read model stores it: each entry its provenance names once, in
    `origins`, and each field path with the index of its entry there (a registration sets
    some ten fields: one entry's reference ten times was half of a new profile's document).
    A shallow copy: `p` is left as it is. `loaded_doc` undoes it."""
    provenance = p.get("provenance")
    if not provenance:
        return p
    origins: list[Doc] = []
    at: dict[object, int] = {}
    paths: dict[str, int] = {}
    # In the paths' order, not the map's: the same profile is stored the same (a rebuild's
    # rows are the live model's), however its map was filled.
    for path, ref in sorted(provenance.items()):
        # An entry's reference is the same wherever it came from (its fold, a load, a merge).
        key = ref.get("event_id") or id(ref)
        i = at.get(key)
        if i is None:
            i = at[key] = len(origins)
            origins.append(ref)
        paths[path] = i
    return {**p, "provenance": paths, "origins": origins}


def loaded_doc(doc: Doc) -> Doc:
    """A stored profile as the fold and the reads use it (`stored_doc` undone), in place; one
    stored before `origins` is as it was."""
    origins = doc.pop("origins", None)
    if origins is not None:
        doc["provenance"] = {path: origins[i] for path, i in doc["provenance"].items()}
    return doc


def copy_provenance(p: Doc, other: Doc, path: str) -> None:
    """Take the provenance of a field joined from `other` (a merged duplicate's profile)."""
    found = other.get("provenance", {}).get(path)
    if found is not None:
        p.setdefault("provenance", {})[path] = found
    else:
        unset(p, path)


# -- entries ------------------------------------------------------------------------------------


def occurred_at(env: envelope_pb2.Envelope) -> datetime:
    return moment(env.occurred_at)


def entry_for(env: envelope_pb2.Envelope) -> Entry:
    """The timeline entry for one envelope (raises UnknownEventType for foreign payloads)."""
    found = registry()  # before unpacking: the plug-ins import the payload types they know
    payload = unpack(env)
    details = details_of(payload)
    summarise = found.summaries.get(env.event_type)
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


# -- the profile --------------------------------------------------------------------------------


def empty_profile(customer_id: str) -> Doc:
    """A profile before its first entry: the core fields (those the read model indexes and
    Profile carries, and the fold's own), with the fields of the plug-ins that have no section
    (the customer's)."""
    p: Doc = {
        "customer_id": customer_id,
        "kind": "",
        "display_name": "",
        "emails": [],
        "phones": [],
        "owner_id": "",
        "tags": [],
    }
    for plugin in registry().plugins:
        if not plugin.section:
            p.update(plugin.empty_section())
    p.update(
        touches={},
        last_contact_at="",
        last_contact_source="",
        first_seen_at="",
        updated_at="",
        provenance={},
    )
    return p


MERGE_TYPES = frozenset(
    {
        "customer.merged_into",
        "customer.duplicate_absorbed",
        "customer.unmerged",
        "customer.duplicate_released",
    }
)
"""Merge and unmerge entries: on the timeline, but not folded into a customer's own profile
(not a contact, not a touch), so that after an unmerge the profile is what it would be had
the merge never happened. Who is merged into whom is kept in the read model's `merges`."""


def fold(profile: Doc, entry: Entry) -> Doc:
    """The profile after one more entry (a new document; `profile` is left as it was)."""
    return fold_into(copy.deepcopy(profile), entry)


def fold_into(p: Doc, entry: Entry) -> Doc:
    """`p` changed by one more entry, in place (for a caller that owns the document: the
    projection folds a batch into the profiles it read, without a copy per entry): the plug-in
    that folds its type changes its part (the section added first), then the core counts the
    touch and keeps last contact, first seen and updated at. Times are ISO-8601 strings
    (UTC)."""
    if entry.type in MERGE_TYPES:
        return p
    found = registry()
    owner = found.owners.get(entry.type)
    if owner is not None:
        if owner.section:
            p.setdefault(owner.section, owner.empty_section())
        owner.folds[entry.type](p, entry)
    at = entry.occurred_at.isoformat()
    touches = p["touches"].setdefault(entry.source, {"count": 0, "last_at": ""})
    touches["count"] += 1
    touches["last_at"] = max(touches["last_at"], at)
    source = found.sources.get(entry.source)
    contact = source is None or (
        source.contact and not (source.internal is not None and source.internal(entry))
    )
    if contact and at >= p["last_contact_at"]:
        p["last_contact_at"] = at
        p["last_contact_source"] = entry.source
        set_by(p, "last_contact_at", entry)
    if not p["first_seen_at"] or at < p["first_seen_at"]:
        p["first_seen_at"] = at
        set_by(p, "first_seen_at", entry)
    p["updated_at"] = max(p["updated_at"], at)
    return p


# -- the churn signal ---------------------------------------------------------------------------


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class ChurnRule:
    """`threshold` support contacts within `window` flag a customer at risk of churning; the
    flag clears when `window` has passed since the last contact with no new one."""

    threshold: int = 4
    window: timedelta = timedelta(days=30)

    def describe(self) -> str:
        days = self.window / timedelta(days=1)
        return f"{days:g} days"


def support_contact(entry: Entry) -> Doc | None:
    """The support contact an entry is, if the plug-in that folds it says it is one."""
    owner = registry().owners.get(entry.type)
    found = owner.support_contact(entry) if owner and owner.support_contact else None
    if found is None:
        return None
    return {
        "ticket_id": entry.aggregate_id,
        "contact": found.contact,
        "channel": found.channel,
        "at": entry.occurred_at.isoformat(),
        "summary": entry.summary,
        "event_id": entry.event_id,
    }


def empty_churn() -> Doc:
    return {"contacts": [], "at_risk": False, "since": "", "until": ""}


DERIVED_TYPES = ("customer.at_risk_flagged", "customer.at_risk_cleared")
"""The types of the entries the projection derives (source `timeline`)."""


def _derived(customer_id: str, kind: str, at: datetime, summary: str, details: Doc) -> Entry:
    """An entry the projection derives: its id and position are functions of what it says."""
    assert f"customer.{kind}" in DERIVED_TYPES
    event_id = uuid.uuid5(_DERIVED_NAMESPACE, f"{customer_id}:{kind}:{at.isoformat()}")
    return Entry(
        event_id=str(event_id),
        customer_id=customer_id,
        occurred_at=at,
        source=DERIVED_SOURCE,
        # Derived entries have no log; a stable 62-bit number keeps (source, position) unique.
        position=event_id.int >> 66,
        type=f"customer.{kind}",
        summary=summary,
        details=details,
        aggregate_id=customer_id,
        aggregate_version=0,
    )


def _clear(p: Doc, rule: ChurnRule) -> Entry:
    churn = p["churn"]
    until = _time(churn["until"])
    entry = _derived(
        p["customer_id"],
        "at_risk_cleared",
        until,
        f"No longer at risk: no support contact for {rule.describe()}",
        {"since": churn["since"], "until": churn["until"]},
    )
    churn.update(at_risk=False, since="", until="")
    unset(p, "at_risk")
    p["updated_at"] = max(p["updated_at"], until.isoformat())
    return entry


def observe(p: Doc, entry: Entry, rule: ChurnRule) -> list[Entry]:
    """Apply the churn rule to a profile just folded with `entry` (in place); returns the
    entries it derives."""
    contact = support_contact(entry)
    if contact is None:
        return []
    churn = p.setdefault("churn", empty_churn())
    derived: list[Entry] = []
    if churn["at_risk"] and _time(churn["until"]) <= entry.occurred_at:
        derived.append(_clear(p, rule))  # the last episode ended before this contact
    contacts = sorted([*churn["contacts"], contact], key=lambda c: (_time(c["at"]), c["event_id"]))
    newest = _time(contacts[-1]["at"])
    churn["contacts"] = [c for c in contacts if _time(c["at"]) > newest - rule.window]
    until = (newest + rule.window).isoformat()
    if churn["at_risk"]:
        churn["until"] = until
    elif len(churn["contacts"]) >= rule.threshold:
        churn.update(at_risk=True, since=newest.isoformat(), until=until)
        count = len(churn["contacts"])
        flagged = _derived(
            p["customer_id"],
            "at_risk_flagged",
            newest,
            f"At risk of churning: {count} support contacts within {rule.describe()}",
            {
                "threshold": rule.threshold,
                "window_days": rule.window / timedelta(days=1),
                "contacts": copy.deepcopy(churn["contacts"]),
            },
        )
        derived.append(flagged)
        set_by(p, "at_risk", flagged)
        p["updated_at"] = max(p["updated_at"], newest.isoformat())
    return derived


def sweep(profile: Doc, now: datetime, rule: ChurnRule) -> tuple[Doc, list[Entry]]:
    """Clear an at-risk flag whose window has passed by `now`."""
    churn = profile.get("churn")
    if not churn or not churn["at_risk"] or _time(churn["until"]) > now:
        return profile, []
    p = copy.deepcopy(profile)
    return p, [_clear(p, rule)]


def at_risk_until(profile: Doc) -> datetime | None:
    """When the profile's at-risk flag clears, if it is set."""
    churn = profile.get("churn")
    return _time(churn["until"]) if churn and churn["at_risk"] else None


# -- the profile as of a time -------------------------------------------------------------------


def profile_as_of(
    customer_id: str, entries: list[Entry], as_of: datetime, rule: ChurnRule
) -> Doc | None:
    """The profile as it was at `as_of`: the customer's entries that occurred by then, folded
    in the order the read model applied them (`entries` in that order), with the churn rule
    observed on each and a final sweep at `as_of`. Entries the projection derived (source
    `timeline`) are not folded: the rule derives them again. None when nothing had occurred.

    Every source's fold reads only what an entry keeps (type, details, time, source,
    aggregate id), so with `as_of` after the last entry this is the stored profile."""
    profile: Doc | None = None
    for entry in entries:
        if entry.source == DERIVED_SOURCE or entry.occurred_at > as_of:
            continue
        profile = fold_into(profile or empty_profile(customer_id), entry)
        observe(profile, entry, rule)
    if profile is None:
        return None
    return sweep(profile, as_of, rule)[0]


# -- a survivor's profile: its own joined with its merged duplicates' ---------------------------


def join_profile(survivor: Doc, duplicate: Doc) -> Doc:
    """The survivor's profile joined with a merged duplicate's: touches add up, last contact
    is the later one, first seen the earlier one, and each plug-in joins its part (the
    customer's by the rules of the customer service's combined view). Provenance follows the
    value kept. The churn signal is not joined here (`group_profile` observes the whole
    group's contacts again)."""
    p = copy.deepcopy(survivor)
    for source, theirs in duplicate["touches"].items():
        mine = p["touches"].setdefault(source, {"count": 0, "last_at": ""})
        mine["count"] += theirs["count"]
        mine["last_at"] = max(mine["last_at"], theirs["last_at"])
    if duplicate["last_contact_at"] > p["last_contact_at"]:
        p["last_contact_at"] = duplicate["last_contact_at"]
        p["last_contact_source"] = duplicate["last_contact_source"]
        copy_provenance(p, duplicate, "last_contact_at")
    if duplicate["first_seen_at"] and (
        not p["first_seen_at"] or duplicate["first_seen_at"] < p["first_seen_at"]
    ):
        p["first_seen_at"] = duplicate["first_seen_at"]
        copy_provenance(p, duplicate, "first_seen_at")
    p["updated_at"] = max(p["updated_at"], duplicate["updated_at"])
    for plugin in registry().plugins:
        if plugin.join is None:
            continue
        if plugin.section:
            if not duplicate.get(plugin.section):
                continue
            p.setdefault(plugin.section, plugin.empty_section())
        plugin.join(p, duplicate)
    return p


def group_profile(
    survivor_id: str, members: list[str], entries: list[Entry], as_of: datetime, rule: ChurnRule
) -> Doc | None:
    """A survivor's profile at `as_of` with the duplicates merged into it then (`members`,
    survivor first): each member's profile folded from its own entries (`entries` holds the
    group's, in the order the read model applied them), joined (`join_profile`), and the churn
    rule observed again over the contacts of the whole group. None when the survivor had no
    entries by then."""
    own = [e for e in entries if e.customer_id == survivor_id]
    profile = profile_as_of(survivor_id, own, as_of, rule)
    if profile is None:
        return None
    for member in members:
        if member == survivor_id:
            continue
        theirs = profile_as_of(member, [e for e in entries if e.customer_id == member], as_of, rule)
        if theirs is not None:
            profile = join_profile(profile, theirs)
    churn: Doc = {"customer_id": survivor_id, "provenance": {}, "updated_at": ""}
    for entry in entries:
        if entry.source != DERIVED_SOURCE and entry.occurred_at <= as_of:
            observe(churn, entry, rule)
    churn = sweep(churn, as_of, rule)[0]
    profile.pop("churn", None)
    unset(profile, "at_risk")
    if "churn" in churn:
        profile["churn"] = churn["churn"]
        if "at_risk" in churn["provenance"]:
            profile["provenance"]["at_risk"] = churn["provenance"]["at_risk"]
    if churn["updated_at"]:
        profile["updated_at"] = max(profile["updated_at"], churn["updated_at"])
    return profile
