"""Public holidays of the SLA calendars: parsed from iCalendar files (RFC 5545) and kept as
events of a `HolidayCalendar` aggregate per business calendar, so that every process of the
desk computes due times with the same holidays, and the history says when they changed.

Pure: the parser takes the file's bytes and the last day to expand recurring holidays to.
A holiday is an all-day event (or the days a timed event touches); an event that recurs
(RRULE) gives one holiday per occurrence up to `until`; EXDATE days are left out.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.domain import Aggregate, event

from c360_platform.errors import InvalidArgument

MAX_FILE_BYTES = 1_000_000
MAX_HOLIDAYS = 2_000
MAX_SPAN_DAYS = 14
"""A holiday longer than two weeks is a mistake (a season, not a holiday)."""
MAX_OCCURRENCES = 5 * MAX_HOLIDAYS
"""Occurrences of one RRULE looked at, at most: a rule that repeats within a day
(FREQ=SECONDLY, or BYHOUR/BYMINUTE/BYSECOND lists) would otherwise be expanded occurrence by
occurrence up to the horizon (five years of seconds: 158 million), holding the desk's
process for hours and its memory to the limit, for one file of a few lines."""
CALENDARS = uuid.UUID("6f1b7c2e-4e0a-5d3b-9c61-0a3c9e5d7f10")


def calendar_id(name: str) -> uuid.UUID:
    """The id of the holiday calendar of business calendar `name`."""
    return uuid.uuid5(CALENDARS, name)


class HolidayCalendar(Aggregate):
    """The dated public holidays of one business calendar, beyond its built-in ones."""

    if TYPE_CHECKING:
        Started: ClassVar[type[Aggregate.Event]]
        Imported: ClassVar[type[Aggregate.Event]]

    @classmethod
    def create_id(cls, name: str) -> uuid.UUID:
        return calendar_id(name)

    @event("Started")
    def __init__(self, name: str) -> None:
        self.name = name
        self.holidays: dict[str, str] = {}
        """ISO day -> the holiday's name."""

    def import_days(self, days: dict[str, str], source: str) -> int:
        """Add the days of an imported file (a day already there keeps its name); returns
        how many were new."""
        new = {day: name for day, name in sorted(days.items()) if day not in self.holidays}
        if new:
            self._imported([[day, name] for day, name in new.items()], source)
        return len(new)

    @event("Imported")
    def _imported(self, holidays: list[list[str]], source: str) -> None:
        self.holidays = {**self.holidays, **{day: name for day, name in holidays}}

    def days(self) -> frozenset[date]:
        return frozenset(date.fromisoformat(d) for d in self.holidays)


def _day(value: Any) -> date:
    return value.date() if isinstance(value, datetime) else value


def parse_ics(data: bytes, until: date) -> dict[str, str]:
    """The holidays of an iCalendar file (ISO day -> name); INVALID_ARGUMENT naming what is
    wrong with the file."""
    # Imported here: the parser and dateutil cost each desk process ~0.3 s of CPU at start,
    # for a call made when an operator imports a calendar.
    from dateutil.rrule import rrulestr
    from icalendar import Calendar

    if len(data) > MAX_FILE_BYTES:
        raise InvalidArgument.one("ics", f"must be at most {MAX_FILE_BYTES} bytes")
    try:
        calendar = Calendar.from_ical(data)
    except Exception as exc:  # the parser's errors are ValueError and its own kinds
        raise InvalidArgument.one("ics", f"not an iCalendar file: {exc}") from None
    found: dict[str, str] = {}
    for n, item in enumerate(calendar.walk("VEVENT")):
        where = f"ics.VEVENT[{n}]"
        if item.get("DTSTART") is None:
            raise InvalidArgument.one(where, "has no DTSTART")
        try:
            first_moment = item.decoded("DTSTART")
            last_moment = item.decoded("DTEND") if item.get("DTEND") is not None else None
            start = _day(first_moment)
            end = _day(last_moment) if last_moment is not None else None
        except Exception:
            raise InvalidArgument.one(where, "DTSTART or DTEND is not a date") from None
        # DTEND is exclusive: an all-day event ends the day before it, a timed one touches
        # the days up to the moment before it (00:00 to 00:00 the next day is one day).
        if isinstance(last_moment, datetime) and end is not None and last_moment.time() == time(0):
            end -= timedelta(days=1)
        timed = isinstance(first_moment, datetime)
        span = ((end - start).days if end else 1) + (1 if timed and end else 0)
        span = max(span, 1)
        if span > MAX_SPAN_DAYS:
            raise InvalidArgument.one(where, f"lasts {span} days; a holiday is at most 14")
        name = " ".join(str(item.get("SUMMARY", "holiday")).split())[:200] or "holiday"
        starts = [start]
        if item.get("RRULE") is not None:
            rule = item.get("RRULE").to_ical().decode()
            try:
                occurrences = rrulestr(rule, dtstart=datetime.combine(start, datetime.min.time()))
                horizon = datetime.combine(until, datetime.min.time())
                starts = []
                # One by one, and no further than MAX_OCCURRENCES: never the whole expansion.
                for looked, occurrence in enumerate(occurrences, start=1):
                    if occurrence > horizon:
                        break
                    if looked > MAX_OCCURRENCES:
                        raise InvalidArgument.one(
                            where,
                            f"RRULE {rule!r} repeats more than {MAX_OCCURRENCES} times up to"
                            f" {until.isoformat()}; a holiday recurs by the day at most",
                        )
                    if not starts or starts[-1] != occurrence.date():
                        starts.append(occurrence.date())
            except (ValueError, TypeError):
                raise InvalidArgument.one(where, f"RRULE {rule!r} is not understood") from None
        excluded = {_day(d.dt) for x in _list(item.get("EXDATE")) for d in x.dts}
        for first in starts:
            if first in excluded or first > until:
                continue
            for offset in range(span):
                found.setdefault((first + timedelta(days=offset)).isoformat(), name)
        if len(found) > MAX_HOLIDAYS:
            raise InvalidArgument.one("ics", f"more than {MAX_HOLIDAYS} holidays")
    if not found:
        raise InvalidArgument.one("ics", "has no holiday (no VEVENT up to the horizon)")
    return found


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
