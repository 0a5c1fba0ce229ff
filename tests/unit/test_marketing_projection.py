"""Marketing's events in the timeline and the profile's marketing part, without servers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from google.protobuf import message

from c360.events.v1 import marketing_events_pb2 as ev
from c360_platform.envelope import Publication, pack
from c360_timeline.projection import Doc, Entry, empty_profile, entry_for, fold
from c360_timeline.sources.marketing import join

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CUSTOMER = str(uuid.uuid4())
SEGMENT = str(uuid.uuid4())


def entry(aggregate: str, kind: str, payload: message.Message, at: datetime, n: int) -> Entry:
    return entry_for(
        pack(
            source="marketing",
            publication=Publication(kind, CUSTOMER, payload),
            aggregate_id=uuid.UUID(aggregate),
            aggregate_version=n,
            position=n,
            occurred_at=at,
        )
    )


def test_memberships_touches_and_responses_fold_into_the_marketing_part() -> None:
    membership, touch = str(uuid.uuid4()), str(uuid.uuid4())
    entered = entry(
        membership,
        "membership",
        ev.SegmentEntered(
            segment_id=SEGMENT,
            segment_name="latvia-high-value",
            segment_version=1,
            condition_path="condition.all[1]",
            condition="lifetime value > 1000 EUR",
            cause="profile_changed",
        ),
        T0,
        1,
    )
    sent = entry(
        touch,
        "touch",
        ev.TouchSent(
            campaign_id="c-1",
            campaign_name="Winter in Latvia",
            channel=ev.MARKETING_CHANNEL_EMAIL,
            address="ada@example.lv",
            offer="10 % off",
        ),
        T0 + timedelta(hours=1),
        2,
    )
    clicked = entry(
        touch,
        "touch",
        ev.TouchResponded(
            campaign_id="c-1",
            campaign_name="Winter in Latvia",
            kind=ev.TOUCH_RESPONSE_KIND_CLICKED,
            report_id="r",
        ),
        T0 + timedelta(hours=2),
        3,
    )
    left = entry(
        membership,
        "membership",
        ev.SegmentLeft(
            segment_id=SEGMENT,
            segment_name="latvia-high-value",
            condition="consent email/marketing granted",
        ),
        T0 + timedelta(hours=3),
        4,
    )
    assert [e.type for e in (entered, sent, clicked, left)] == [
        "membership.segment_entered",
        "touch.sent",
        "touch.responded",
        "membership.segment_left",
    ]
    assert entered.summary == ("Entered segment “latvia-high-value”: lifetime value > 1000 EUR")
    assert sent.summary == "Campaign “Winter in Latvia” sent by e-mail (offer: 10 % off)"
    # Which campaign: a customer reached by three campaigns had three "Campaign response:
    # delivered" on the timeline, none saying which.
    assert clicked.summary == "Campaign “Winter in Latvia” response: clicked"
    assert left.summary == "Left segment “latvia-high-value”: consent email/marketing granted"

    p: Doc = empty_profile(CUSTOMER)
    for e in (entered, sent, clicked):
        p = fold(p, e)
    part = p["marketing"]
    assert list(part["segments"]) == [SEGMENT]
    assert part["last_touch"]["campaign_name"] == "Winter in Latvia"
    assert (part["last_response"]["kind"], part["response_rate"]) == ("clicked", 1.0)
    assert part["last_response"]["campaign_name"] == "Winter in Latvia"
    assert p["provenance"][f"marketing.segments[{SEGMENT}]"]["event_id"] == entered.event_id
    # Marketing's entries are not contacts by the customer.
    assert p["last_contact_at"] == ""
    p = fold(p, left)
    assert p["marketing"]["segments"] == {}
    assert f"marketing.segments[{SEGMENT}]" not in p["provenance"]

    other = fold(empty_profile(CUSTOMER), entered)
    join(p, other)
    assert list(p["marketing"]["segments"]) == [SEGMENT]
    assert p["marketing"]["touches"] == 1


def test_a_conversion_names_its_campaign_and_older_events_still_read() -> None:
    touch = str(uuid.uuid4())
    converted = entry(
        touch,
        "touch",
        ev.TouchConverted(
            campaign_id="c-1", campaign_name="VIP preview", amount="110.00", currency="EUR"
        ),
        T0,
        4,
    )
    assert converted.summary == "Campaign “VIP preview” conversion: 110.00 EUR attributed"
    # Recorded before the name was carried: as before.
    older = entry(
        touch,
        "touch",
        ev.TouchResponded(campaign_id="c-1", kind=ev.TOUCH_RESPONSE_KIND_OPENED, report_id="o"),
        T0,
        5,
    )
    assert older.summary == "Campaign response: opened"


def test_the_last_response_is_the_customers_not_the_deliverys() -> None:
    """A hard bounce, a delivery or a failure is no response of the customer's: the
    profile's last response stays their click (it became "hard_bounced", "delivered")."""
    touch, other = str(uuid.uuid4()), str(uuid.uuid4())
    p: Doc = empty_profile(CUSTOMER)
    clicked = ev.TouchResponded(
        campaign_id="c-1", kind=ev.TOUCH_RESPONSE_KIND_CLICKED, report_id="c"
    )
    p = fold(p, entry(touch, "touch", clicked, T0, 1))
    for n, kind in enumerate(
        (
            ev.TOUCH_RESPONSE_KIND_DELIVERED,
            ev.TOUCH_RESPONSE_KIND_HARD_BOUNCED,
            ev.TOUCH_RESPONSE_KIND_FAILED,
            ev.TOUCH_RESPONSE_KIND_SOFT_BOUNCED,
        ),
        start=2,
    ):
        report = ev.TouchResponded(campaign_id="c-2", kind=kind, report_id=f"r{n}")
        p = fold(p, entry(other, "touch", report, T0 + timedelta(hours=n), n))
    assert (
        p["marketing"]["last_response"]["kind"],
        p["marketing"]["last_response"]["campaign_id"],
    ) == (
        "clicked",
        "c-1",
    )
    opened = ev.TouchResponded(campaign_id="c-2", kind=ev.TOUCH_RESPONSE_KIND_OPENED, report_id="o")
    p = fold(p, entry(other, "touch", opened, T0 + timedelta(hours=9), 9))
    assert p["marketing"]["last_response"]["kind"] == "opened"


def test_a_call_from_a_call_list_is_on_the_timeline_and_in_the_profile() -> None:
    """Calls were on no timeline: an agent's "interested" call, which made a sales lead, showed
    only the lead."""
    call = str(uuid.uuid4())
    recorded = ev.CallRecorded(
        campaign_id="c-9",
        campaign_name="Winter calls",
        call_list_id="l-1",
        agent_id="emp-0003",
        outcome="call_back",
        note="busy",
    )
    recorded.call_back_at.FromJsonString("2026-12-08T09:00:00Z")
    e = entry(call, "call", recorded, T0, 1)
    assert e.type == "call.recorded"
    assert e.summary == (
        "Campaign “Winter calls” call by emp-0003: call back at 2026-12-08 09:00 UTC (“busy”)"
    )
    p = fold(empty_profile(CUSTOMER), e)
    last = p["marketing"]["last_call"]
    assert (last["campaign_name"], last["outcome"], last["agent_id"]) == (
        "Winter calls",
        "call_back",
        "emp-0003",
    )
    interested = ev.CallRecorded(
        campaign_name="Winter calls", agent_id="emp-0003", outcome="interested"
    )
    later = entry(str(uuid.uuid4()), "call", interested, T0 + timedelta(days=1), 2)
    assert later.summary == "Campaign “Winter calls” call by emp-0003: interested (a sales lead)"
    join(p, fold(empty_profile(CUSTOMER), later))  # a duplicate's later call, merged
    assert p["marketing"]["last_call"]["outcome"] == "interested"
