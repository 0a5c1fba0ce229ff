"""Amounts of money in the service desk (visit costs, a contract's value): decimal strings
in an ISO 4217 currency's smallest unit (two decimals, none in JPY). Pure: parsing and
formatting, no I/O."""

from __future__ import annotations

import re
from decimal import Decimal

from c360_platform import currencies
from c360_platform.validation import Violations

_PLAIN = re.compile(r"-?[0-9]{1,15}(\.[0-9]+)?")
"""A decimal as written by a person: no exponent ("1e3"), no NaN or infinity."""


def money(amount: Decimal, currency: str) -> str:
    """An amount as text in `currency`'s smallest unit, rounded half up ("12.50", "1250"
    JPY), as sales rounds its amounts."""
    return str(currencies.rounded(amount, currency))


def amount(
    v: Violations, field: str, text: str, limit: Decimal, *, places: int, zero: bool = False
) -> Decimal | None:
    """A positive decimal (or zero when allowed) below `limit`, at most `places` decimals."""
    if not _PLAIN.fullmatch(text.strip()):
        v.add(field, "must be a decimal number such as 12.50")
        return None
    number = Decimal(text.strip())
    if not number.is_finite() or number < 0 or (number == 0 and not zero):
        v.add(field, "must be a positive number" if not zero else "must not be negative")
        return None
    if number >= limit:
        v.add(field, f"must be below {limit}")
        return None
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        v.add(field, f"at most {places} decimals")
        return None
    return number
