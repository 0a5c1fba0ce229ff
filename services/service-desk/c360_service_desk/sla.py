"""Service-level agreements: business calendars, policies and the clock arithmetic of their
targets. Pure Python, no I/O: every function takes the times it works on.

A business calendar has a time zone, working hours per weekday and dated public holidays.
Business time only passes inside working hours on working days, in the calendar's zone (so a
day's hours are local hours, daylight-saving changes included). A policy matches tickets by
priority, channel and customer class (or is granted by a service contract) and sets targets in
business minutes (first response, resolution, and for some the next update: from each reply
to the customer to the next), each with a warning point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import dateutil.easter

MINUTE = timedelta(minutes=1)
MAX_DAYS = 3 * 366
"""How far arithmetic looks for working time before it gives up (a calendar with no working
hours at all is refused when it is made, so this only bounds holiday-heavy calendars)."""


class TargetKind:
    FIRST_RESPONSE = "first_response"
    RESOLUTION = "resolution"
    NEXT_UPDATE = "next_update"
    """Starts at the first response, and again at every later one (until resolution)."""


TARGET_KINDS = (TargetKind.FIRST_RESPONSE, TargetKind.RESOLUTION, TargetKind.NEXT_UPDATE)


class TargetStatus:
    IN_PROGRESS = "in_progress"
    NEARING_BREACH = "nearing_breach"
    BREACHED = "breached"
    MET = "met"
    PAUSED = "paused"
    CANCELLED = "cancelled"


def zone(name: str) -> ZoneInfo | None:
    """The IANA time zone of that name, None if there is none."""
    if not name or name not in _ZONES:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


_ZONES = frozenset(available_timezones()) | {"UTC"}


@dataclass(frozen=True)
class BusinessCalendar:
    """Working hours per weekday (0 = Monday; (start, end) local times, end after start;
    a weekday absent is a day off) and dated public holidays, in a time zone."""

    name: str
    time_zone: str
    hours: dict[int, tuple[time, time]]
    holidays: frozenset[date] = field(default_factory=frozenset)
    names: dict[date, str] = field(default_factory=dict)
    """The holidays' names, where known ("Good Friday")."""

    def __post_init__(self) -> None:
        if zone(self.time_zone) is None:
            raise ValueError(f"unknown time zone {self.time_zone!r}")
        if not self.hours:
            raise ValueError("a business calendar needs working hours on some weekday")
        for day, (start, end) in self.hours.items():
            if not 0 <= day <= 6 or not start < end:
                raise ValueError(f"weekday {day}: hours {start}-{end} are not a working day")

    def in_zone(self, time_zone: str) -> BusinessCalendar:
        """The same hours and holidays, kept in another zone (a ticket's)."""
        return BusinessCalendar(self.name, time_zone, self.hours, self.holidays, self.names)

    def _windows(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Working windows (UTC) from the local day of `start` on, for at most MAX_DAYS days,
        made as they are asked for."""
        tz = ZoneInfo(self.time_zone)
        day = start.astimezone(tz).date()
        for offset in range(MAX_DAYS):
            d = day + timedelta(days=offset)
            hours = self.hours.get(d.weekday())
            if hours is None or d in self.holidays:
                continue
            opens = datetime.combine(d, hours[0], tz).astimezone(UTC)
            closes = datetime.combine(d, hours[1], tz).astimezone(UTC)
            if closes > opens:
                yield opens, closes

    def add(self, start: datetime, minutes: int) -> datetime:
        """The moment `minutes` business minutes after `start` (UTC). Zero minutes: `start`
        itself if it is working time, else the next opening."""
        start = start.astimezone(UTC)
        left = timedelta(minutes=minutes)
        for opens, closes in self._windows(start):
            if closes <= start:
                continue
            begin = max(opens, start)
            if left == timedelta(0) or begin + left <= closes:
                return begin + left
            left -= closes - begin
        raise ValueError(f"calendar {self.name}: no working time within {MAX_DAYS} days")

    def minutes_between(self, start: datetime, end: datetime) -> int:
        """Whole business minutes from `start` to `end` (0 if end is not after start)."""
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        if end <= start:
            return 0
        total = timedelta(0)
        for opens, closes in self._windows(start):
            if opens >= end:
                break
            begin, finish = max(opens, start), min(closes, end)
            if finish > begin:
                total += finish - begin
        return int(total // MINUTE)


@dataclass(frozen=True)
class Target:
    kind: str
    minutes: int
    warn_at_percent: int = 75

    @property
    def warn_minutes(self) -> int:
        return self.minutes * self.warn_at_percent // 100


@dataclass(frozen=True)
class SlaPolicy:
    """Targets for tickets of some priorities, and of some channels and customer classes
    (empty: every one). A policy `granted_only` applies only to tickets whose service
    contract grants it."""

    name: str
    calendar: BusinessCalendar
    priorities: tuple[str, ...]
    targets: tuple[Target, ...]
    channels: tuple[str, ...] = ()
    customer_classes: tuple[str, ...] = ()
    granted_only: bool = False

    def matches(self, priority: str, channel: str, classes: tuple[str, ...] = ()) -> bool:
        return (
            not self.granted_only
            and priority in self.priorities
            and (not self.channels or channel in self.channels)
            and (not self.customer_classes or not set(self.customer_classes).isdisjoint(classes))
        )


WEEKDAYS_9_TO_17 = {day: (time(9), time(17)) for day in range(5)}


BUILTIN_YEARS = range(2026, 2031)
"""The years the built-in holidays are listed for (more come from iCalendar imports)."""


def standard_holidays(years: range = BUILTIN_YEARS) -> dict[date, str]:
    """New Year, Good Friday, Easter Monday and Christmas (two days) of each year."""
    found: dict[date, str] = {}
    for year in years:
        easter = dateutil.easter.easter(year)  # Gregorian (Western) Easter Sunday
        found[date(year, 1, 1)] = "New Year's Day"
        found[easter - timedelta(days=2)] = "Good Friday"
        found[easter + timedelta(days=1)] = "Easter Monday"
        found[date(year, 12, 25)] = "Christmas Day"
        found[date(year, 12, 26)] = "Boxing Day"
    return found


_STANDARD_HOLIDAYS = standard_holidays()

STANDARD = BusinessCalendar(
    name="standard",
    time_zone="UTC",
    hours=WEEKDAYS_9_TO_17,
    holidays=frozenset(_STANDARD_HOLIDAYS),
    names=_STANDARD_HOLIDAYS,
)
"""Monday to Friday 09:00-17:00 in the ticket's time zone, closed on the built-in holidays."""

ALL_PRIORITIES = ("low", "normal", "high", "urgent")

POLICIES: tuple[SlaPolicy, ...] = (
    SlaPolicy(
        "premium",
        STANDARD,
        ALL_PRIORITIES,
        (
            Target(TargetKind.FIRST_RESPONSE, 30),
            Target(TargetKind.NEXT_UPDATE, 120),
            Target(TargetKind.RESOLUTION, 240),
        ),
        granted_only=True,
    ),
    SlaPolicy(
        "urgent",
        STANDARD,
        ("urgent",),
        (
            Target(TargetKind.FIRST_RESPONSE, 30),
            Target(TargetKind.NEXT_UPDATE, 60),
            Target(TargetKind.RESOLUTION, 120),
        ),
    ),
    SlaPolicy(
        "high",
        STANDARD,
        ("high",),
        (
            Target(TargetKind.FIRST_RESPONSE, 60),
            Target(TargetKind.NEXT_UPDATE, 120),
            Target(TargetKind.RESOLUTION, 240),
        ),
    ),
    SlaPolicy(
        "key-account",
        STANDARD,
        ("low", "normal"),
        (Target(TargetKind.FIRST_RESPONSE, 60), Target(TargetKind.RESOLUTION, 480)),
        customer_classes=("key",),
    ),
    SlaPolicy(
        "chat",
        STANDARD,
        ("low", "normal"),
        (Target(TargetKind.FIRST_RESPONSE, 15), Target(TargetKind.RESOLUTION, 960)),
        channels=("chat",),
    ),
    SlaPolicy(
        "normal",
        STANDARD,
        ("normal",),
        (
            Target(TargetKind.FIRST_RESPONSE, 240),
            Target(TargetKind.NEXT_UPDATE, 480),
            Target(TargetKind.RESOLUTION, 1440),
        ),
    ),
    SlaPolicy(
        "low",
        STANDARD,
        ("low",),
        (Target(TargetKind.FIRST_RESPONSE, 480), Target(TargetKind.RESOLUTION, 2400)),
    ),
)
"""The desk's policies: the first that matches a ticket's priority, channel and customer
classes, unless its service contract grants a faster one."""


def _pace(policy: SlaPolicy) -> tuple[int, int]:
    """(resolution, first response) minutes: the smaller, the faster the policy."""
    minutes = {t.kind: t.minutes for t in policy.targets}
    far = MAX_DAYS * 24 * 60
    return (
        minutes.get(TargetKind.RESOLUTION, far),
        minutes.get(TargetKind.FIRST_RESPONSE, far),
    )


def policy_for(
    priority: str, channel: str, classes: tuple[str, ...] = (), granted: str = ""
) -> SlaPolicy | None:
    """The policy a contract grants, unless the ticket's own is faster (a contract never
    makes service slower: an urgent ticket keeps 'urgent' under a 'premium' contract); else
    the first that matches."""
    own = next((p for p in POLICIES if p.matches(priority, channel, classes)), None)
    found = policy_named(granted) if granted else None
    if found is None:
        return own
    return own if own is not None and _pace(own) < _pace(found) else found


Calendars = Callable[[str], BusinessCalendar]
"""The business calendar of a name, with its holidays (the built-in ones and those imported)."""


def builtin_calendar(name: str) -> BusinessCalendar:
    """The calendar of that name as the code defines it (no imported holidays)."""
    return next(p.calendar for p in POLICIES if p.calendar.name == name)


def with_holidays(calendar: BusinessCalendar, days: frozenset[date]) -> BusinessCalendar:
    return BusinessCalendar(
        calendar.name, calendar.time_zone, calendar.hours, calendar.holidays | days, calendar.names
    )


def policy_named(name: str) -> SlaPolicy | None:
    return next((p for p in POLICIES if p.name == name), None)
