"""Public holidays from iCalendar files, and SLA due times that skip them."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from c360.events.v1 import ticket_events_pb2 as tev
from c360.service_desk.v1 import service_desk_service_pb2 as dapi
from c360_platform.context import ContextReader
from c360_platform.errors import InvalidArgument
from c360_service_desk.api import ServiceDeskServicer
from c360_service_desk.application import ServiceDeskApplication
from c360_service_desk.holidays import parse_ics
from c360_service_desk.sla import STANDARD, with_holidays

from .support import CALL, Clock, bad_fields

ICS = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//c360 test//EN\r
BEGIN:VEVENT\r
UID:easter-monday-2027\r
DTSTART;VALUE=DATE:20270329\r
DTEND;VALUE=DATE:20270330\r
SUMMARY:Easter Monday\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:labour-day\r
DTSTART;VALUE=DATE:20270501\r
SUMMARY:Labour Day\r
RRULE:FREQ=YEARLY\r
EXDATE;VALUE=DATE:20280501\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:company-days\r
DTSTART;VALUE=DATE:20271227\r
DTEND;VALUE=DATE:20271230\r
SUMMARY:Company days\r
END:VEVENT\r
END:VCALENDAR\r
"""


def test_all_day_events_recurrences_and_exceptions_are_holidays() -> None:
    days = parse_ics(ICS, until=date(2030, 12, 31))
    assert days["2027-03-29"] == "Easter Monday"
    assert "2027-03-30" not in days  # DTEND is exclusive
    assert [d for d in days if d.endswith("-05-01")] == ["2027-05-01", "2029-05-01", "2030-05-01"]
    assert [d for d in days if d.startswith("2027-12")] == [
        "2027-12-27",
        "2027-12-28",
        "2027-12-29",
    ]


def test_a_timed_event_ending_at_midnight_is_a_holiday_of_its_own_days_only() -> None:
    # Feeds that write a day off as 00:00 to 00:00 the next day (some Outlook exports).
    ics = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//c360 test//EN\r
BEGIN:VEVENT\r
UID:christmas-eve\r
DTSTART;TZID=Europe/Berlin:20261224T000000\r
DTEND;TZID=Europe/Berlin:20261225T000000\r
SUMMARY:Christmas Eve\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:works-outing\r
DTSTART:20270610T130000Z\r
DTEND:20270611T120000Z\r
SUMMARY:Works outing\r
END:VEVENT\r
END:VCALENDAR\r
"""
    assert parse_ics(ics, until=date(2030, 12, 31)) == {
        "2026-12-24": "Christmas Eve",
        "2027-06-10": "Works outing",
        "2027-06-11": "Works outing",
    }


def test_bad_files_are_refused_naming_what_is_wrong() -> None:
    for data, field in (
        (b"not a calendar", "ics"),
        (b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "ics"),
        (
            b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20270101\r\n"
            b"DTEND;VALUE=DATE:20270301\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            "ics.VEVENT[0]",
        ),
    ):
        with pytest.raises(InvalidArgument) as caught:
            parse_ics(data, until=date(2030, 1, 1))
        assert [v.field for v in caught.value.violations] == [field]


@given(
    start=st.datetimes(min_value=datetime(2027, 1, 1), max_value=datetime(2027, 12, 20)),
    minutes=st.integers(min_value=0, max_value=5 * 8 * 60),
    holiday=st.dates(min_value=date(2027, 1, 1), max_value=date(2027, 12, 31)),
)
def test_business_time_never_counts_a_holiday(start: datetime, minutes: int, holiday: date) -> None:
    plain = STANDARD.in_zone("Europe/Berlin")
    off = with_holidays(STANDARD, frozenset({holiday})).in_zone("Europe/Berlin")
    begin = start.replace(tzinfo=UTC)
    due = off.add(begin, minutes)
    assert off.minutes_between(begin, due) == minutes
    assert due >= plain.add(begin, minutes)
    # A working day's hours on the holiday are skipped: the clock spends none of them there.
    day_start = datetime.combine(holiday, datetime.min.time(), UTC) - timedelta(hours=2)
    assert off.minutes_between(day_start, day_start + timedelta(hours=26)) <= plain.minutes_between(
        day_start, day_start + timedelta(hours=26)
    )
    assert (
        off.minutes_between(
            datetime.combine(holiday, datetime.min.time(), UTC) + timedelta(hours=6),
            datetime.combine(holiday, datetime.min.time(), UTC) + timedelta(hours=18),
        )
        == 0
    )


async def test_an_imported_holiday_moves_the_due_time() -> None:
    # Friday 2027-04-30 17:30 in Berlin, a high ticket (4 business hours): without holidays it
    # is due Monday 3 May 13:00; 3 May made a holiday, Tuesday 13:00.
    clock = Clock(datetime(2027, 4, 30, 15, 30, tzinfo=UTC))
    desk = ServiceDeskServicer(
        ServiceDeskApplication.in_memory(clock=clock), ContextReader("127.0.0.1:1")
    )

    async def due() -> datetime:
        opened = await desk.OpenTicket(
            dapi.OpenTicketRequest(
                customer_id=str(uuid4()),
                channel=tev.TICKET_CHANNEL_PHONE,
                subject="Card blocked",
                priority=tev.TICKET_PRIORITY_HIGH,
                time_zone="Europe/Berlin",
                allow_unknown_customer=True,
            ),
            CALL,
        )
        got = await desk.GetTicket(
            dapi.GetTicketRequest(ticket_id=opened.result.aggregate_id), CALL
        )
        (resolution,) = [
            t for t in got.ticket.sla_targets if t.kind == tev.SLA_TARGET_KIND_RESOLUTION
        ]
        return resolution.due_at.ToDatetime(tzinfo=UTC)

    assert await due() == datetime(2027, 5, 3, 11, 0, tzinfo=UTC)  # 13:00 in Berlin
    ics = (
        b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20270503\r\n"
        b"SUMMARY:Bridge day\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    imported = await desk.ImportHolidays(dapi.ImportHolidaysRequest(ics=ics, source="x.ics"), CALL)
    assert imported.added == 1
    again = await desk.ImportHolidays(dapi.ImportHolidaysRequest(ics=ics), CALL)
    assert again.added == 0
    assert await due() == datetime(2027, 5, 4, 11, 0, tzinfo=UTC)
    shown = await desk.GetCalendar(dapi.GetCalendarRequest(), CALL)
    assert ("2027-05-03", "Bridge day") in [(h.date, h.name) for h in shown.holidays]
    assert ("2027-03-26", "Good Friday") in [(h.date, h.name) for h in shown.holidays]
    assert await bad_fields(
        desk.ImportHolidays(dapi.ImportHolidaysRequest(calendar="moon", ics=ics), CALL)
    ) == ["calendar"]


async def test_an_imported_holiday_moves_the_due_times_of_open_tickets() -> None:
    # Friday 2027-04-30 17:30 in Berlin, a high ticket opened before the import: due Monday
    # 3 May 13:00 (warning 12:00); 3 May made a holiday afterwards: Tuesday 13:00 (12:00).
    clock = Clock(datetime(2027, 4, 30, 15, 30, tzinfo=UTC))
    desk = ServiceDeskServicer(
        ServiceDeskApplication.in_memory(clock=clock), ContextReader("127.0.0.1:1")
    )
    opened = await desk.OpenTicket(
        dapi.OpenTicketRequest(
            customer_id=str(uuid4()),
            channel=tev.TICKET_CHANNEL_PHONE,
            subject="Card blocked",
            priority=tev.TICKET_PRIORITY_HIGH,
            time_zone="Europe/Berlin",
            allow_unknown_customer=True,
        ),
        CALL,
    )
    tid = opened.result.aggregate_id

    async def due() -> datetime:
        got = await desk.GetTicket(dapi.GetTicketRequest(ticket_id=tid), CALL)
        (resolution,) = [
            t for t in got.ticket.sla_targets if t.kind == tev.SLA_TARGET_KIND_RESOLUTION
        ]
        return resolution.due_at.ToDatetime(tzinfo=UTC)

    assert await due() == datetime(2027, 5, 3, 11, 0, tzinfo=UTC)
    ics = (
        b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20270503\r\n"
        b"SUMMARY:Bridge day\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    await desk.ImportHolidays(dapi.ImportHolidaysRequest(ics=ics, source="x.ics"), CALL)
    assert await due() == datetime(2027, 5, 4, 11, 0, tzinfo=UTC)
    clock.now = datetime(2027, 5, 3, 12, 0, tzinfo=UTC)  # the old due time, on the holiday
    assert desk.app.check_slas() == 0  # no warning, no breach


def test_a_rule_repeating_within_the_day_is_refused_without_expanding_it() -> None:
    """One VEVENT with FREQ=SECONDLY was expanded for five years, 158 million occurrences,
    before anything was checked: the desk's process busy for hours and out of memory."""
    for rule in (b"FREQ=SECONDLY", b"FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11;BYMINUTE=0,30"):
        ics = (
            b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20270101\r\n"
            b"RRULE:" + rule + b"\r\nSUMMARY:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        )
        started = time.monotonic()
        with pytest.raises(InvalidArgument) as caught:
            parse_ics(ics, until=date(2031, 12, 31))
        assert time.monotonic() - started < 5
        assert [v.field for v in caught.value.violations] == ["ics.VEVENT[0]"]
        assert "repeats more than" in caught.value.violations[0].description
    # A yearly holiday from long ago is still every year's.
    yearly = (
        b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:19000501\r\n"
        b"RRULE:FREQ=YEARLY\r\nSUMMARY:Labour Day\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    days = parse_ics(yearly, until=date(2031, 12, 31))
    assert len(days) == 132
    assert days["2031-05-01"] == "Labour Day"
