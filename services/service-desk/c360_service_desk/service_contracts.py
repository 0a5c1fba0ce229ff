"""Service contracts with expiry, entitlements and renewal: pure domain, no I/O.

A contract is valid from its start date through its end date (UTC days). A warning is
written `warning_days` before the end, and the expiry the day after it; both are events the
desk's scheduler writes when they fall due (each carries the day it concerns, so the result
depends on the dates alone).

A contract entitles its customer to support: an allowance of cases, of hours, or unlimited,
for the services it covers (all of the customer's, when it names none). A ticket opened while
the contract is valid and has allowance left is served under it; the allowance is consumed
when the ticket opens or when it is resolved, as the contract says (hours always on
resolution: they are known then). A contract may grant an SLA policy. Renewing a contract
starts its next period (new dates, the allowance again) on the same contract, so its history
continues; an expired contract can be renewed too.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

from eventsourcing.domain import Aggregate, event

from c360_platform.errors import PreconditionFailed
from c360_platform.validation import Violations
from c360_service_desk.money import amount, money

DEFAULT_WARNING_DAYS = 30
MAX_WARNING_DAYS = 365
MAX_SERVICES = 20
MAX_ALLOWANCE = 100_000
MAX_VALUE = Decimal(1_000_000_000)


class AllowanceUnit(StrEnum):
    UNLIMITED = "unlimited"
    CASES = "cases"
    HOURS = "hours"


class ConsumeOn(StrEnum):
    OPEN = "open"
    RESOLUTION = "resolution"


DEFAULT_TERMS = (AllowanceUnit.UNLIMITED.value, 0, ConsumeOn.OPEN.value, "", "", "")
"""Unlimited, consumed on opening, no policy, no value: what a contract without TermsSet has."""


_NOTHING_USED: dict[str, int] = {}
"""(The class default: events replace `used_in`, never change it in place.)"""


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


class ServiceContract(Aggregate):
    """A customer's service contract: what it covers and until when."""

    if TYPE_CHECKING:
        Signed: ClassVar[type[Aggregate.Event]]
        ExpiryNear: ClassVar[type[Aggregate.Event]]
        Expired: ClassVar[type[Aggregate.Event]]
        TermsSet: ClassVar[type[Aggregate.Event]]
        Consumed: ClassVar[type[Aggregate.Event]]
        Renewed: ClassVar[type[Aggregate.Event]]
        RenewalDue: ClassVar[type[Aggregate.Event]]

    # Contracts signed before entitlements existed: unlimited, consumed on opening, no policy.
    allowance_unit = AllowanceUnit.UNLIMITED.value
    allowance = 0
    consume_on = ConsumeOn.OPEN.value
    sla_policy = ""
    value_amount = ""
    value_currency = ""
    period = 1
    """The number of the contract's last period (1 until it is renewed)."""
    renewals: tuple[str, ...] = ()
    """The first days of the periods after the first (one per renewal)."""
    used_in = _NOTHING_USED
    """Cases, or minutes of an hours allowance, consumed per period (its number as text)."""

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

    # -- entitlement ------------------------------------------------------------------------

    def set_terms(
        self,
        allowance_unit: str,
        allowance: int,
        consume_on: str,
        sla_policy: str,
        value_amount: str,
        value_currency: str,
    ) -> None:
        self._terms_set(
            self.customer_id,
            allowance_unit,
            allowance,
            consume_on,
            sla_policy,
            value_amount,
            value_currency,
        )

    @event("TermsSet")
    def _terms_set(
        self,
        customer_id: str,
        allowance_unit: str,
        allowance: int,
        consume_on: str,
        sla_policy: str,
        value_amount: str,
        value_currency: str,
    ) -> None:
        self.allowance_unit = allowance_unit
        self.allowance = allowance
        self.consume_on = consume_on
        self.sla_policy = sla_policy
        self.value_amount = value_amount
        self.value_currency = value_currency

    def period_on(self, day: date) -> int:
        """The number of the period `day` falls in (1 before the first renewal's start)."""
        return 1 + sum(1 for start in self.renewals if date.fromisoformat(start) <= day)

    def period_start(self, period: int) -> str:
        return self.starts_on if period <= 1 else self.renewals[period - 2]

    def period_end(self, period: int) -> str:
        """The last day of `period`: the day before the next one starts (a renewal starts
        the day after the end it extends), the contract's end for the latest."""
        if period >= self.period:
            return self.ends_on
        return (date.fromisoformat(self.renewals[period - 1]) - timedelta(days=1)).isoformat()

    def used(self, day: date) -> int:
        return self.used_in.get(str(self.period_on(day)), 0)

    def remaining(self, day: date) -> int | None:
        """Cases (or minutes) left in the period of `day`; None if unlimited."""
        if self.allowance_unit == AllowanceUnit.UNLIMITED:
            return None
        total = self.allowance * (60 if self.allowance_unit == AllowanceUnit.HOURS else 1)
        return max(total - self.used(day), 0)

    def valid_on(self, day: date) -> bool:
        first, last = date.fromisoformat(self.starts_on), date.fromisoformat(self.ends_on)
        return not self.expired and first <= day <= last

    def covers(self, service: str) -> bool:
        return not service or not self.services or service in self.services

    def refusal(self, day: date, service: str) -> str:
        """Why this contract does not entitle a ticket about `service` on `day` ("" if it
        does)."""
        if not self.valid_on(day):
            return f"contract “{self.name}” is not valid on {day.isoformat()}"
        if not self.covers(service):
            return f"contract “{self.name}” does not cover {service}"
        if self.remaining(day) == 0:
            return f"contract “{self.name}”: the allowance of this period is used up"
        return ""

    def consume(self, ticket_id: str, day: date, minutes: int = 0, work_order_id: str = "") -> int:
        """Record a ticket's (or an on-site visit's) use in the period of `day`: one case, or
        `minutes` of an hours allowance (at least one: a case handled takes time); returns
        the amount."""
        amount = max(minutes, 1) if self.allowance_unit == AllowanceUnit.HOURS else 1
        left = self.remaining(day)
        self._consumed(
            self.customer_id,
            ticket_id,
            self.allowance_unit,
            amount,
            None if left is None else max(left - amount, 0),
            self.period_on(day),
            work_order_id,
        )
        return amount

    @event("Consumed")
    def _consumed(
        self,
        customer_id: str,
        ticket_id: str,
        unit: str,
        amount: int,
        remaining: int | None,
        period: int,
        work_order_id: str = "",
    ) -> None:
        key = str(period)
        self.used_in = {**self.used_in, key: self.used_in.get(key, 0) + amount}

    def renew(self, ends_on: str) -> None:
        """The next period: from the day after the current end through `ends_on`, with the
        allowance again (the current period keeps what it has used until it ends). An
        expired contract is renewed the same way: its history continues."""
        v = Violations()
        end = v.day("ends_on", ends_on)
        v.check()
        assert end is not None
        current = date.fromisoformat(self.ends_on)
        if end <= current:
            raise PreconditionFailed(
                f"contract {self.id} runs until {self.ends_on}: a renewal must end after it"
            )
        # A day: `end` (in LAST_YEAR at the latest, `Violations.day`) is after `current`.
        start = current + timedelta(days=1)
        self._renewed(
            self.customer_id, self.name, start.isoformat(), end.isoformat(), self.period + 1
        )

    @event("Renewed")
    def _renewed(
        self, customer_id: str, name: str, starts_on: str, ends_on: str, period: int
    ) -> None:
        self.renewals = (*self.renewals, starts_on)
        self.ends_on = ends_on
        self.period = period
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
            self._renewal_due(
                self.customer_id,
                self.name,
                self.ends_on,
                self.period,
                list(self.services),
                self.value_amount,
                self.value_currency,
            )
        if not self.expired and self.expires_at <= now:
            self._expired(self.customer_id, self.name, self.ends_on)

    @event("RenewalDue")
    def _renewal_due(
        self,
        customer_id: str,
        name: str,
        ends_on: str,
        period: int,
        services: list[str],
        value_amount: str,
        value_currency: str,
    ) -> None:
        """The contract's renewal is to be sold (what the sales service follows)."""

    @event("ExpiryNear")
    def _expiry_near(self, customer_id: str, name: str, ends_on: str, days_left: int) -> None:
        self.warned = True

    @event("Expired")
    def _expired(self, customer_id: str, name: str, ends_on: str) -> None:
        self.warned = True
        self.expired = True


def create_contract(
    *,
    customer_id: str,
    name: str,
    services: list[str],
    starts_on: str,
    ends_on: str,
    warning_days: int = 0,
    allowance_unit: str = "",
    allowance: int = 0,
    consume_on: str = "",
    sla_policy: str = "",
    known_policies: tuple[str, ...] = (),
    value_amount: str = "",
    value_currency: str = "",
) -> ServiceContract:
    """Validate (every offending field at once) and create a contract."""
    v = Violations()
    customer = v.uuid("customer_id", customer_id.strip())
    title = v.text("name", name, max_len=200)
    if len(services) > MAX_SERVICES:  # one violation, not one per item of a long list
        v.add("services", f"at most {MAX_SERVICES}")
        services = []
    covered = [v.tag(f"services[{i}]", s) for i, s in enumerate(services)]
    start = v.day("starts_on", starts_on)
    end = v.day("ends_on", ends_on)
    if start and end and end < start:
        v.add("ends_on", "must not be before starts_on")
    days = warning_days or DEFAULT_WARNING_DAYS
    if not 1 <= days <= MAX_WARNING_DAYS:
        v.add("warning_days", f"must be 1 to {MAX_WARNING_DAYS}")
    unit = v.enum("allowance_unit", allowance_unit or AllowanceUnit.UNLIMITED.value, AllowanceUnit)
    if unit is not None and unit != AllowanceUnit.UNLIMITED and not 1 <= allowance <= MAX_ALLOWANCE:
        v.add("allowance", f"must be 1 to {MAX_ALLOWANCE} {unit.value}")
    if unit == AllowanceUnit.UNLIMITED and allowance:
        v.add("allowance", "an unlimited contract has no allowance")
    default_on = ConsumeOn.RESOLUTION if unit == AllowanceUnit.HOURS else ConsumeOn.OPEN
    on = v.enum("consume_on", consume_on or default_on.value, ConsumeOn)
    if unit == AllowanceUnit.HOURS and on == ConsumeOn.OPEN:
        v.add("consume_on", "hours are consumed on resolution, when they are known")
    policy = sla_policy.strip()
    if policy and policy not in known_policies:
        v.add("sla_policy", f"must be one of {', '.join(known_policies)}")
    amount, currency = _value(v, value_amount, value_currency)
    v.check()
    assert start is not None
    assert end is not None
    assert unit is not None
    assert on is not None
    contract = ServiceContract(
        customer_id=customer,
        name=title,
        services=covered,
        starts_on=start.isoformat(),
        ends_on=end.isoformat(),
        warning_days=days,
    )
    terms = (unit.value, allowance, on.value, policy, amount, currency)
    if terms != DEFAULT_TERMS:  # a plain contract's history stays as it always was
        contract.set_terms(*terms)
    return contract


def _value(v: Violations, text: str, code: str) -> tuple[str, str]:
    """The contract's value per period (what a renewal is worth), optional."""
    if not text.strip() and not code.strip():
        return "", ""
    unit = v.currency("value.currency", code)
    number = amount(v, "value.amount", text, MAX_VALUE, places=6, zero=True)
    return (money(number, unit) if number is not None else ""), unit
