"""Currencies' smallest units (ISO 4217), for every service that computes amounts: a price,
a tax or a cost is rounded to what the currency can pay (cents, whole yen, fils). Pure."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

MINOR_UNITS = {
    "BHD": 3,
    "CLP": 0,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KRW": 0,
    "KWD": 3,
    "OMR": 3,
    "TND": 3,
    "VND": 0,
}
"""Decimal places of a currency's smallest unit where not 2 (ISO 4217's list, of the
currencies in use)."""


def minor_units(currency: str) -> int:
    """The decimal places of `currency`'s smallest unit (2 unless listed)."""
    return MINOR_UNITS.get(currency.upper(), 2)


def smallest_unit(currency: str) -> Decimal:
    """0.01, or 1 (JPY), or 0.001 (KWD)."""
    return Decimal(1).scaleb(-minor_units(currency))


def rounded(value: Decimal, currency: str) -> Decimal:
    """`value` rounded half up (commercial rounding: 0.125 EUR -> 0.13, 98.5 JPY -> 99) to
    `currency`'s smallest unit."""
    return value.quantize(smallest_unit(currency), rounding=ROUND_HALF_UP)
