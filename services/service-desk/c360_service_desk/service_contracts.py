"""Service contracts with expiry: pure domain, no I/O.

A contract is valid from its start date through its end date (UTC days). A warning is
written `warning_days` before the end, and the expiry the day after it; both are events the
desk's scheduler writes when they fall due (each carries the day it concerns, so the result
depends on the dates alone).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, ClassVar

from eventsourcing.domain import Aggregate, event

from c360_platform.validation import Violations

DEFAULT_WARNING_DAYS = 30
MAX_WARNING_DAYS = 365
MAX_SERVICES = 20


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


class ServiceContract(Aggregate):
    """A customer's service contract: what it covers and until when."""

    if TYPE_CHECKING:
        Signed: ClassVar[type[Aggregate.Event]]
        ExpiryNear: ClassVar[type[Aggregate.Event]]
        Expired: ClassVar[type[Aggregate.Event]]

    @event("Signed")
    def __init__(
        self,
        customer_id: str,
        name: str,
        services: list[str],
        starts_on: str,
        ends_on: str,
        warning_days: int,
    ) -> None:
        self.customer_id = customer_id
        self.name = name
        self.services = list(services)
        self.starts_on = starts_on
        self.ends_on = ends_on
        self.warning_days = warning_days
        self.warned = False
        self.expired = False

    @property
    def warn_at(self) -> datetime:
        return _midnight(date.fromisoformat(self.ends_on) - timedelta(days=self.warning_days))

    @property
    def expires_at(self) -> datetime:
        return _midnight(date.fromisoformat(self.ends_on) + timedelta(days=1))

    def next_moment(self) -> datetime | None:
        """When the scheduler next has something to write for this contract."""
        if self.expired:
            return None
        return self.expires_at if self.warned else self.warn_at

    def settle(self, now: datetime) -> None:
        """Write the warning and the expiry that fell due by `now`, once each."""
        if not self.warned and not self.expired and self.warn_at <= now < self.expires_at:
            # From the warning day, or from the day it was created if that was later.
            since = max(self.warn_at.date(), self.created_on.astimezone(UTC).date())
            days_left = (date.fromisoformat(self.ends_on) - since).days
            self._expiry_near(self.customer_id, self.name, self.ends_on, days_left)
        if not self.expired and self.expires_at <= now:
            self._expired(self.customer_id, self.name, self.ends_on)

    @event("ExpiryNear")
    def _expiry_near(self, customer_id: str, name: str, ends_on: str, days_left: int) -> None:
        self.warned = True

    @event("Expired")
    def _expired(self, customer_id: str, name: str, ends_on: str) -> None:
        self.warned = True
        self.expired = True


def _date(v: Violations, field: str, text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        v.add(field, "must be a date, YYYY-MM-DD")
        return None


def create_contract(
    *,
    customer_id: str,
    name: str,
    services: list[str],
    starts_on: str,
    ends_on: str,
    warning_days: int = 0,
) -> ServiceContract:
    """Validate (every offending field at once) and create a contract."""
    v = Violations()
    customer = v.uuid("customer_id", customer_id.strip())
    title = v.text("name", name, max_len=200)
    covered = [v.tag("services", s) for s in services]
    if len(covered) > MAX_SERVICES:
        v.add("services", f"at most {MAX_SERVICES}")
    start = _date(v, "starts_on", starts_on)
    end = _date(v, "ends_on", ends_on)
    if start and end and end < start:
        v.add("ends_on", "must not be before starts_on")
    days = warning_days or DEFAULT_WARNING_DAYS
    if not 1 <= days <= MAX_WARNING_DAYS:
        v.add("warning_days", f"must be 1 to {MAX_WARNING_DAYS}")
    v.check()
    assert start is not None
    assert end is not None
    return ServiceContract(
        customer_id=customer,
        name=title,
        services=covered,
        starts_on=start.isoformat(),
        ends_on=end.isoformat(),
        warning_days=days,
    )
