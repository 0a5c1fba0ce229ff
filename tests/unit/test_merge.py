"""Merge and unmerge rules of the Customer aggregate, and the survivor's joined profile."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf import message

from c360.events.v1 import customer_events_pb2 as ev
from c360_customer.contract import CONTRACT as CUSTOMER_CONTRACT
from c360_customer.domain import (
    Customer,
    combine,
    forget_customers,
    merge_customers,
    register_customer,
    unmerge_customer,
)
from c360_platform.envelope import Publication, pack
from c360_platform.errors import InvalidArgument, PreconditionFailed
from c360_timeline.projection import (
    ChurnRule,
    Entry,
    entry_for,
    fold,
    group_profile,
    profile_as_of,
)

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def person(name: str, email: str, kind: str = "person") -> Customer:
    return register_customer(
        kind=kind, display_name=name, emails=[email], phones=[], addresses=[], tags=["x"]
    )


def test_merge_records_an_event_on_each_and_unmerge_undoes_it() -> None:
    s, d = person("Ada", "ada@example.com"), person("Ada L", "al@example.com")
    s.decide_consent(True, "email", "marketing", "web", T0)
    d.decide_consent(False, "email", "marketing", "call-centre", T0 + timedelta(days=1))
    d.decide_consent(True, "sms", "service", "web", T0)
    merge_id = merge_customers(s, d, "same person")
    assert d.merged_into == str(s.id)
    assert dict(s.absorbed) == {str(d.id): merge_id}
    absorbed: Any = s.collect_events()[-1]
    assert type(absorbed).__name__ == "DuplicateAbsorbed"
    assert [(c["channel"], c["kept"]) for c in absorbed.conflicts] == [("email", "duplicate")]
    # the survivor's own state is untouched; the combined view is computed
    assert s.emails == ["ada@example.com"]
    view = combine(s, [d])
    assert view.emails == ["ada@example.com", "al@example.com"]
    assert view.consents["email/marketing"]["granted"] is False
    assert set(view.consents) == {"email/marketing", "sms/service"}
    with pytest.raises(PreconditionFailed, match=str(s.id)):
        d.refuse_if_merged()

    assert unmerge_customer(d, s) == merge_id
    assert d.merged_into == ""
    assert dict(s.absorbed) == {}
    names = [type(e).__name__ for e in [*s.collect_events(), *d.collect_events()]]
    assert names.count("DuplicateReleased") == 1
    assert names.count("Unmerged") == 1
    # every merge event has a published message
    contract = CUSTOMER_CONTRACT
    for e in [absorbed]:
        assert contract.publication(e).payload.DESCRIPTOR.name == "DuplicateAbsorbed"


def test_refused_merges() -> None:
    a, b, c = (person(n, f"{n}@example.com") for n in ("a", "b", "c"))
    org = person("Org", "org@example.com", kind="organisation")
    with pytest.raises(InvalidArgument):
        merge_customers(a, a, "self")
    with pytest.raises(InvalidArgument):
        merge_customers(a, b, "  ")
    with pytest.raises(PreconditionFailed, match="one kind"):
        merge_customers(org, a, "kinds")
    merge_customers(b, a, "dup")
    with pytest.raises(PreconditionFailed, match=str(b.id)):
        merge_customers(a, c, "into a merged one")
    with pytest.raises(PreconditionFailed, match=str(b.id)):
        merge_customers(c, a, "a merged one")
    with pytest.raises(PreconditionFailed, match="not merged"):
        unmerge_customer(c, b)
    with pytest.raises(PreconditionFailed):
        unmerge_customer(a, c)  # not its survivor


def test_a_survivor_is_forgotten_with_its_duplicates_or_not_at_all() -> None:
    s, d = person("Ada", "ada@example.com"), person("Ada L", "al@example.com")
    merge_customers(s, d, "same person")
    s.collect_events()
    d.collect_events()
    # Alone, the survivor would read "[forgotten]" with the duplicate's e-mail: refused.
    with pytest.raises(PreconditionFailed, match=f"{d.id}.*with_merged"):
        forget_customers(s, [d], T0, with_merged=False)
    assert (s.forgotten_at, d.forgotten_at, s.pending_events, d.pending_events) == (
        None,
        None,
        [],
        [],
    )
    assert combine(s, [d]).emails == ["ada@example.com", "al@example.com"]
    assert forget_customers(s, [d], T0, with_merged=True) == [s, d]
    assert combine(s, [d]).emails == []


def test_forgetting_with_merged_completes_a_survivor_forgotten_alone() -> None:
    s, d = person("Ada", "ada@example.com"), person("Ada L", "al@example.com")
    merge_customers(s, d, "same person")
    s.forget(T0)  # as a survivor could be forgotten alone before
    assert forget_customers(s, [d], T0, with_merged=True) == [d]
    assert combine(s, [d]).emails == []
    with pytest.raises(PreconditionFailed, match="forgotten already"):
        forget_customers(s, [d], T0, with_merged=True)


def test_a_duplicate_forgotten_first_lets_its_survivor_be_forgotten_alone() -> None:
    s, d = person("Ada", "ada@example.com"), person("Ada L", "al@example.com")
    merge_customers(s, d, "same person")
    assert forget_customers(d, [], T0, with_merged=False) == [d]
    assert forget_customers(s, [d], T0, with_merged=False) == [s]


def _entry(customer: uuid.UUID, payload: message.Message, version: int, at: datetime) -> Entry:
    env = pack(
        source="customer",
        publication=Publication("customer", str(customer), payload),
        aggregate_id=customer,
        aggregate_version=version,
        position=int(at.timestamp()) * 10 + version,
        occurred_at=at,
    )
    return entry_for(env)


def test_merge_entries_leave_the_profile_as_it_was() -> None:
    cid = uuid.uuid4()
    registered = _entry(cid, ev.CustomerRegistered(display_name="Ada", emails=["a@x.io"]), 1, T0)
    merged = _entry(cid, ev.DuplicateAbsorbed(duplicate_id="d", merge_id="m"), 2, T0)
    assert merged.type == "customer.duplicate_absorbed"
    profile = fold(profile_as_of(str(cid), [registered], T0, ChurnRule()) or {}, merged)
    assert profile == profile_as_of(str(cid), [registered], T0, ChurnRule())


def test_a_survivors_profile_joins_its_duplicates_by_the_rules() -> None:
    s, d = uuid.uuid4(), uuid.uuid4()
    t = [T0 + timedelta(minutes=i) for i in range(10)]
    entries = [
        _entry(d, ev.CustomerRegistered(display_name="Ada L", emails=["d@x.io"]), 1, t[0]),
        _entry(s, ev.CustomerRegistered(display_name="Ada", emails=["s@x.io"]), 1, t[1]),
        _entry(d, ev.PhoneAdded(phone="+4930123"), 2, t[2]),
        _entry(
            s,
            ev.ConsentGranted(
                channel=ev.CONSENT_CHANNEL_EMAIL, purpose=ev.CONSENT_PURPOSE_MARKETING
            ),
            2,
            t[3],
        ),
        _entry(
            d,
            ev.ConsentRevoked(
                channel=ev.CONSENT_CHANNEL_EMAIL, purpose=ev.CONSENT_PURPOSE_MARKETING
            ),
            3,
            t[4],
        ),
    ]
    joined = group_profile(str(s), [str(s), str(d)], entries, t[9], ChurnRule())
    assert joined is not None
    assert joined["display_name"] == "Ada"
    assert joined["emails"] == ["s@x.io", "d@x.io"]
    assert joined["phones"] == ["+4930123"]
    assert joined["consent"]["email/marketing"]["granted"] is False
    assert joined["first_seen_at"] == t[0].isoformat()
    assert joined["touches"]["customer"]["count"] == 5
    assert joined["provenance"]["phones[+4930123]"]["event_id"] == entries[2].event_id
    assert joined["provenance"]["display_name"]["event_id"] == entries[1].event_id
    # alone, each is its own fold
    assert group_profile(str(s), [str(s)], entries, t[9], ChurnRule()) == profile_as_of(
        str(s), [e for e in entries if e.customer_id == str(s)], t[9], ChurnRule()
    )
