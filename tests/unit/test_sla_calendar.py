"""Business-time arithmetic of SLA calendars: across weekends, holidays and time zones (with
their daylight-saving changes), with no servers."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from c360_service_desk.sla import (
    STANDARD,
    WEEKDAYS_9_TO_17,
    BusinessCalendar,
    policy_for,
    standard_holidays,
    with_holidays,
)

BERLIN = ZoneInfo("Europe/Berlin")
NINE_TO_FIVE = BusinessCalendar("test", "Europe/Berlin", WEEKDAYS_9_TO_17)


def local(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def test_friday_after_hours_plus_four_business_hours_is_monday_one_pm() -> None:
    # Friday 6 March 2026 17:30: nothing left of Friday; Monday 09:00 + 4 h.
    due = NINE_TO_FIVE.add(local(2026, 3, 6, 17, 30), 240)
    assert due.astimezone(BERLIN) == local(2026, 3, 9, 13, 0)


def test_friday_afternoon_carries_into_monday() -> None:
    # One hour on Friday (16:00-17:00), three on Monday: due 12:00.
    due = NINE_TO_FIVE.add(local(2026, 3, 6, 16, 0), 240)
    assert due.astimezone(BERLIN) == local(2026, 3, 9, 12, 0)


def test_holidays_are_skipped() -> None:
    easter = BusinessCalendar(
        "easter", "Europe/Berlin", WEEKDAYS_9_TO_17, frozenset({date(2026, 4, 3), date(2026, 4, 6)})
    )
    # Thursday 2 April 16:00 + 2 h: Good Friday and Easter Monday are closed.
    due = easter.add(local(2026, 4, 2, 16, 0), 120)
    assert due.astimezone(BERLIN) == local(2026, 4, 7, 10, 0)
    assert easter.minutes_between(local(2026, 4, 2, 16, 0), due) == 120


@pytest.mark.parametrize(
    "easter",
    [
        date(1818, 3, 22),  # the earliest it can be
        date(1943, 4, 25),  # the latest
        date(2000, 4, 23),
        date(2024, 3, 31),
        date(2025, 4, 20),
        date(2026, 4, 5),
        date(2027, 3, 28),
        date(2028, 4, 16),
        date(2029, 4, 1),
        date(2030, 4, 21),
        date(2038, 4, 25),
    ],
)
def test_good_friday_and_easter_monday_are_closed_around_easter_sunday(easter: date) -> None:
    holidays = standard_holidays(range(easter.year, easter.year + 1))
    assert holidays[easter - timedelta(days=2)] == "Good Friday"
    assert holidays[easter + timedelta(days=1)] == "Easter Monday"
    assert easter not in holidays  # a Sunday: closed anyway


def test_the_standard_calendar_closes_on_the_feasts_of_each_year_by_name() -> None:
    # It listed 2027-04-02 and 2027-04-05 (Easter 2027 is 28 March), without names.
    named = {d.isoformat(): n for d, n in STANDARD.names.items() if d.year == 2027}
    assert named == {
        "2027-01-01": "New Year's Day",
        "2027-03-26": "Good Friday",
        "2027-03-29": "Easter Monday",
        "2027-12-25": "Christmas Day",
        "2027-12-26": "Boxing Day",
    }
    assert STANDARD.holidays == frozenset(STANDARD.names)
    assert {d.year for d in STANDARD.holidays} == set(range(2026, 2031))
    assert date(2028, 4, 14) in STANDARD.holidays  # Good Friday 2028
    # Thursday before Easter 2027, 16:00 UTC: two business hours skip Friday to Monday.
    due = STANDARD.add(datetime(2027, 3, 25, 16, 0, tzinfo=UTC), 120)
    assert due == datetime(2027, 3, 30, 10, 0, tzinfo=UTC)
    kept = with_holidays(STANDARD, frozenset({date(2027, 5, 3)})).in_zone("Europe/Berlin")
    assert kept.names[date(2027, 3, 26)] == "Good Friday"


def test_working_hours_are_local_across_a_daylight_saving_change() -> None:
    # Berlin moves to summer time on Sunday 29 March 2026: Friday 09:00 is 08:00 UTC, Monday
    # 09:00 is 07:00 UTC.
    due = NINE_TO_FIVE.add(local(2026, 3, 27, 16, 0), 120)
    assert due == datetime(2026, 3, 30, 8, 0, tzinfo=UTC)
    assert due.astimezone(BERLIN) == local(2026, 3, 30, 10, 0)


def test_the_same_policy_in_another_zone_keeps_local_hours() -> None:
    tokyo = NINE_TO_FIVE.in_zone("Asia/Tokyo")
    start = datetime(2026, 3, 6, 8, 30, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert tokyo.add(start, 60) == datetime(2026, 3, 6, 10, 0, tzinfo=ZoneInfo("Asia/Tokyo"))


def test_a_calendar_without_working_hours_or_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        BusinessCalendar("x", "Mars/Olympus", WEEKDAYS_9_TO_17)
    with pytest.raises(ValueError, match="working hours"):
        BusinessCalendar("x", "UTC", {})
    with pytest.raises(ValueError, match="weekday 2"):
        BusinessCalendar("x", "UTC", {2: (time(17), time(9))})


def test_policies_match_priority_then_channel() -> None:
    high = policy_for("high", "phone")
    chat = policy_for("normal", "chat")
    assert high is not None
    assert high.name == "high"
    assert chat is not None
    assert chat.name == "chat"
    normal = policy_for("normal", "email")
    assert normal is not None
    assert normal.name == "normal"


ZONES = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
STARTS = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)
HOLIDAYS = st.frozensets(
    st.dates(min_value=date(2025, 1, 1), max_value=date(2029, 3, 31)), max_size=40
)


@settings(max_examples=150, deadline=None)
@given(zone=ZONES, start=STARTS, minutes=st.integers(0, 5000), holidays=HOLIDAYS)
def test_adding_business_minutes_is_undone_by_counting_them(
    zone: str, start: datetime, minutes: int, holidays: frozenset[date]
) -> None:
    cal = BusinessCalendar("p", zone, WEEKDAYS_9_TO_17, holidays)
    due = cal.add(start, minutes)
    assert due >= start
    assert cal.minutes_between(start, due) == minutes
    # The moment it falls due is working time, on a working day that is no holiday.
    there = due.astimezone(ZoneInfo(zone))
    assert there.weekday() < 5
    assert there.date() not in holidays
    assert time(9) <= there.time() <= time(17)


@settings(max_examples=150, deadline=None)
@given(zone=ZONES, start=STARTS, a=st.integers(0, 3000), b=st.integers(0, 3000))
def test_business_time_adds_up(zone: str, start: datetime, a: int, b: int) -> None:
    cal = BusinessCalendar("p", zone, WEEKDAYS_9_TO_17)
    assert cal.add(cal.add(start, a), b) == cal.add(start, a + b) or a == 0 or b == 0
    # Never more business minutes than wall-clock minutes.
    end = cal.add(start, a + b)
    assert cal.minutes_between(start, end) <= (end - start) / timedelta(minutes=1)
