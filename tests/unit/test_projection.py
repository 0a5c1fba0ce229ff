"""Timeline entries and profile folding from published envelopes, without servers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from google.protobuf import message

from c360.events.v1 import customer_events_pb2 as ev
from c360_platform.envelope import Publication, pack, subject_for, unpack
from c360_timeline.projection import empty_profile, entry_for, fold
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
