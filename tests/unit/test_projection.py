"""Timeline entries and profile folding from published envelopes, without servers."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from google.protobuf import message

from c360.events.v1 import customer_events_pb2 as ev
from c360_platform.envelope import Publication, pack, subject_for, unpack
from c360_timeline.projection import (
    ChurnRule,
    Entry,
    empty_profile,
    entry_for,
    fold,
    loaded_doc,
    profile_as_of,
    stored_doc,
)
from c360_timeline.readmodel import name_key

CUSTOMER = uuid.uuid4()
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def envelope(payload: message.Message, version: int, at: datetime) -> object:
    return pack(
        source="customer",
        publication=Publication("customer", str(CUSTOMER), payload),
        aggregate_id=CUSTOMER,
        aggregate_version=version,
        position=100 + version,
        occurred_at=at,
    )


def test_envelope_round_trip_and_stable_ids() -> None:
    payload = ev.EmailAdded(email="ada@example.com")
    a = envelope(payload, 2, T0)
    b = envelope(payload, 2, T0)
    assert a.event_id == b.event_id  # type: ignore[attr-defined]
    assert unpack(a) == payload  # type: ignore[arg-type]
    assert a.event_type == "c360.events.v1.EmailAdded"  # type: ignore[attr-defined]


def test_subjects_carry_no_ids_or_personal_data() -> None:
    assert subject_for("customer", "customer", "CustomerRegistered") == (
        "c360.customer.customer.registered"
    )
    assert subject_for("customer", "customer", "EmailAdded") == "c360.customer.customer.email_added"


def test_profile_follows_the_customer_history() -> None:
    history = [
        ev.CustomerRegistered(
            kind=ev.CUSTOMER_KIND_PERSON,
            display_name="Ada Lovelace",
            emails=["ada@example.com"],
            acquisition_channel="web",
        ),
        ev.EmailAdded(email="countess@example.org"),
        ev.EmailRemoved(email="ada@example.com"),
        ev.ConsentGranted(
            channel=ev.CONSENT_CHANNEL_EMAIL, purpose=ev.CONSENT_PURPOSE_MARKETING, source="web"
        ),
        ev.OwnerAssigned(owner_id="emp-7"),
        ev.ConsentRevoked(
            channel=ev.CONSENT_CHANNEL_EMAIL, purpose=ev.CONSENT_PURPOSE_MARKETING, source="phone"
        ),
    ]
    profile = empty_profile(str(CUSTOMER))
    entries = []
    for i, payload in enumerate(history, start=1):
        entry = entry_for(envelope(payload, i, T0 + timedelta(minutes=i)))  # type: ignore[arg-type]
        entries.append(entry)
        profile = fold(profile, entry)
    assert [e.type for e in entries] == [
        "customer.registered",
        "customer.email_added",
        "customer.email_removed",
        "customer.consent_granted",
        "customer.owner_assigned",
        "customer.consent_revoked",
    ]
    assert entries[0].summary == "Registered person “Ada Lovelace” via web"
    assert profile["emails"] == ["countess@example.org"]
    assert profile["owner_id"] == "emp-7"
    assert profile["consent"]["email/marketing"]["granted"] is False
    assert profile["consent"]["email/marketing"]["source"] == "phone"
    assert profile["touches"]["customer"]["count"] == 6
    assert profile["last_contact_at"] == (T0 + timedelta(minutes=6)).isoformat()
    assert profile["first_seen_at"] == (T0 + timedelta(minutes=1)).isoformat()


def test_fold_does_not_mutate_its_input() -> None:
    start = empty_profile(str(CUSTOMER))
    entry = entry_for(envelope(ev.CustomerRenamed(display_name="A. King"), 2, T0))  # type: ignore[arg-type]
    after = fold(start, entry)
    assert start["display_name"] == ""
    assert after["display_name"] == "A. King"


def test_name_key_transliterates() -> None:
    assert name_key("Žirnovskis  Müller") == "zirnovskis muller"
    assert name_key("Zhirnovskis").startswith("zhirnovskis")


def _history(payloads: list[message.Message]) -> list[Entry]:
    return [
        entry_for(envelope(payload, i, T0 + timedelta(minutes=i)))  # type: ignore[arg-type]
        for i, payload in enumerate(payloads, start=1)
    ]


def test_provenance_names_the_event_that_set_each_field() -> None:
    entries = _history(
        [
            ev.CustomerRegistered(
                kind=ev.CUSTOMER_KIND_PERSON,
                display_name="Ada",
                phones=["+4930111"],
                tags=["vip"],
            ),
            ev.PhoneAdded(phone="+4930123"),
            ev.CustomerRenamed(display_name="Ada Lovelace"),
            ev.PhoneRemoved(phone="+4930111"),
            ev.ConsentGranted(
                channel=ev.CONSENT_CHANNEL_EMAIL, purpose=ev.CONSENT_PURPOSE_MARKETING
            ),
            ev.TagsChanged(removed=["vip"], added=["gold"]),
            ev.PhoneAdded(phone="+4930123"),  # already there: the first one set it
        ]
    )
    profile = empty_profile(str(CUSTOMER))
    for entry in entries:
        profile = fold(profile, entry)
    prov = profile["provenance"]
    assert prov["phones[+4930123]"] == {
        "source": "customer",
        "type": "customer.phone_added",
        "occurred_at": entries[1].occurred_at.isoformat(),
        "event_id": entries[1].event_id,
    }
    assert "phones[+4930111]" not in prov  # removed from the profile, and from the map
    assert prov["display_name"]["event_id"] == entries[2].event_id
    assert prov["kind"]["event_id"] == entries[0].event_id
    assert prov["consent.email/marketing"]["type"] == "customer.consent_granted"
    assert "tags[vip]" not in prov
    assert prov["tags[gold]"]["event_id"] == entries[5].event_id
    assert prov["first_seen_at"]["event_id"] == entries[0].event_id
    assert prov["last_contact_at"]["event_id"] == entries[6].event_id
    assert "owner_id" not in prov  # never set


def test_profile_as_of_folds_only_what_had_occurred() -> None:
    entries = _history(
        [
            ev.CustomerRegistered(kind=ev.CUSTOMER_KIND_PERSON, display_name="Ada"),
            ev.PhoneAdded(phone="+4930123"),
            ev.CustomerRenamed(display_name="Ada Lovelace"),
        ]
    )
    rule = ChurnRule()
    assert profile_as_of(str(CUSTOMER), entries, T0, rule) is None
    middle = profile_as_of(str(CUSTOMER), entries, T0 + timedelta(minutes=2, seconds=30), rule)
    assert middle is not None
    assert middle["display_name"] == "Ada"
    assert middle["phones"] == ["+4930123"]
    assert middle["provenance"]["display_name"]["event_id"] == entries[0].event_id
    # As of after the last entry: exactly the profile the live fold keeps.
    live = empty_profile(str(CUSTOMER))
    for entry in entries:
        live = fold(live, entry)
    assert profile_as_of(str(CUSTOMER), entries, T0 + timedelta(days=1), rule) == live


def test_the_companys_own_bookkeeping_is_no_contact_with_the_customer() -> None:
    history = [
        ev.CustomerRegistered(kind=ev.CUSTOMER_KIND_PERSON, display_name="Ada Lovelace"),
        ev.EmailAdded(email="countess@example.org"),  # the customer told us: a contact
        ev.OwnerAssigned(owner_id="emp-7"),  # we decided: none
        ev.TagsChanged(added=["vip"]),
    ]
    profile = empty_profile(str(CUSTOMER))
    for i, payload in enumerate(history, start=1):
        entry = entry_for(envelope(payload, i, T0 + timedelta(minutes=i)))  # type: ignore[arg-type]
        profile = fold(profile, entry)
    assert profile["touches"]["customer"]["count"] == 4  # all on the timeline
    assert profile["last_contact_at"] == (T0 + timedelta(minutes=2)).isoformat()


def test_a_stored_profile_names_each_entry_of_its_provenance_once() -> None:
    entries = _history(
        [
            ev.CustomerRegistered(
                kind=ev.CUSTOMER_KIND_PERSON, display_name="Ada", phones=["+4930111"]
            ),
            ev.CustomerRenamed(display_name="Ada Lovelace"),
        ]
    )
    profile = empty_profile(str(CUSTOMER))
    for entry in entries:
        profile = fold(profile, entry)
    before = json.loads(json.dumps(profile))
    kept = json.loads(json.dumps(stored_doc(profile)))  # as PostgreSQL gives it back
    assert profile == before  # the profile itself is left as it is
    assert sorted(r["event_id"] for r in kept["origins"]) == sorted(e.event_id for e in entries)
    assert set(kept["provenance"]) == set(profile["provenance"])
    assert len(json.dumps(kept)) < len(json.dumps(profile))
    assert loaded_doc(kept) == profile
    # Stored the same whatever the order its map was filled in (a rebuild's rows are the
    # live model's).
    reordered = {**profile, "provenance": dict(reversed(profile["provenance"].items()))}
    assert json.dumps(stored_doc(reordered)) == json.dumps(stored_doc(profile))
    # Folded again after a load and stored: still each entry once.
    again = fold(loaded_doc(json.loads(json.dumps(stored_doc(profile)))), entries[1])
    assert len(stored_doc(again)["origins"]) == 2
    # A profile stored before `origins` is read as it was; one without provenance is as is.
    assert loaded_doc(json.loads(json.dumps(profile))) == profile
    bare = {"customer_id": str(CUSTOMER)}
    assert stored_doc(bare) is bare
