"""Field validation and normalisation that collects every violation before failing (no I/O)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable
from datetime import date
from decimal import Decimal
from enum import Enum
from typing import TypeVar

import phonenumbers
import pycountry
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from c360_platform.errors import FieldViolation, InvalidArgument

E = TypeVar("E", bound=Enum)

FIRST_YEAR = 1900
LAST_YEAR = 2999
"""The years a time or date a caller gives may fall in (a request's timestamps, checked by
`inbound`; dates such as an expected close or a price rule's validity): wide enough for any
business date, narrow enough that a computation from it (a year back, a quarter ahead)
stays within the years Python's dates can hold (1 to 9999)."""

_TAG = re.compile(r"^[a-z0-9][a-z0-9_\-:.]{0,63}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CURRENCY = re.compile(r"[A-Z]{3}")
DECIMAL = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,4})?")
"""A decimal number as c360 takes one (amounts of money: prices, budgets, costs, ERP's
invoices; quantities, rates): plain, at most 15 digits before the point and 4 after it, no
exponent."""
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NO_REGION = "must be an ISO 3166-1 alpha-2 code of a country, such as DE"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EMPLOYEE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
"""Zero-width characters and bidirectional controls: in a name they hide or reorder what a
reader sees ("Trojan source"), so two names that look the same differ."""

_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
"""An ASCII address of the everyday kind (letters, digits, _ + - and single dots before the
@; a host name with a letters-only top-level domain after it), which `email_validator` accepts
as it is but spends ~90 us on; `Violations.email` checks the rest of its rules (lengths, no
"--" label, no special-use domain) and leaves every other address to it."""


def plain_email(value: str) -> str | None:
    """An everyday ASCII address lower-cased, as `Violations.email` would normalise it, found
    without `email_validator`; None for any other text (valid or not: it decides those)."""
    address = value.strip()
    if not _PLAIN_EMAIL.fullmatch(address) or len(address) > 254:
        return None
    local, _, domain = address.lower().rpartition("@")
    if len(local) > 64 or len(domain) > 253 or "--" in domain:
        return None
    if any(domain == d or domain.endswith("." + d) for d in SPECIAL_USE_DOMAIN_NAMES):
        return None
    return f"{local}@{domain}"


def phone_region(country: str) -> str:
    """`country` (ISO 3166-1) as a default_region for phone numbers: upper-cased, or "" for
    a country without numbers of its own (Antarctica, "AQ"), whose numbers carry their
    country code."""
    code = country.strip().upper()
    return code if code in phonenumbers.SUPPORTED_REGIONS else ""


class Violations:
    """Collects field violations; `check()` raises them all at once."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def check(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)

    def text(self, field: str, value: str, *, required: bool = True, max_len: int = 200) -> str:
        """A single-line text: trimmed, no control characters, bounded length."""
        cleaned = " ".join(value.split())
        if not cleaned:
            if required:
                self.add(field, "is required")
            return ""
        if _CONTROL.search(value.replace("\n", " ").replace("\t", " ")):
            self.add(field, "must not contain control characters")
        if len(cleaned) > max_len:
            self.add(field, f"must be at most {max_len} characters")
        return cleaned

    def name(self, field: str, value: str, *, required: bool = True, max_len: int = 200) -> str:
        """A person's or organisation's name: a single-line text in Unicode NFC (so that the
        same name is stored the same way however it was typed), without zero-width or
        bidirectional-control characters."""
        cleaned = unicodedata.normalize(
            "NFC", self.text(field, value, required=required, max_len=max_len)
        )
        if _INVISIBLE.search(cleaned):
            self.add(field, "must not contain zero-width or text-direction control characters")
        return cleaned

    def paragraphs(
        self, field: str, value: str, *, required: bool = True, max_len: int = 5000
    ) -> str:
        """A multi-line text: line ends normalised, lines trimmed on the right, blank lines at
        either end dropped; no control characters but newline and tab; bounded length."""
        lines = [line.rstrip() for line in value.replace("\r\n", "\n").split("\n")]
        cleaned = "\n".join(lines).strip("\n")
        if not cleaned.strip():
            if required:
                self.add(field, "is required")
            return ""
        if _CONTROL.search(cleaned.replace("\n", " ").replace("\t", " ")):
            self.add(field, "must not contain control characters")
        if len(cleaned) > max_len:
            self.add(field, f"must be at most {max_len} characters")
        return cleaned

    def employee_id(self, field: str, value: str) -> str:
        """An employee id such as emp-0042 (never a name or e-mail: ids carry no PII)."""
        cleaned = value.strip()
        if cleaned and not _EMPLOYEE_ID.match(cleaned):
            self.add(field, "must be an employee id: 1-64 of A-Z a-z 0-9 . _ - ")
        return cleaned

    def email(self, field: str, value: str) -> str:
        """An e-mail address, normalised (domain lower-cased, Unicode NFC); no DNS look-up."""
        plain = plain_email(value)
        if plain is not None:
            return plain
        try:
            result = validate_email(value.strip(), check_deliverability=False)
        except EmailNotValidError:
            self.add(field, "not a valid address")
            return value
        local, _, domain = result.normalized.rpartition("@")
        # Mailbox names are case-insensitive at every provider that matters to a CRM.
        return f"{local.lower()}@{domain.lower()}"

    def phone(self, field: str, value: str, default_region: str = "") -> str:
        """A phone number in E.164 (+4930123456). A number without its country code is read
        in `default_region` (ISO 3166-1, e.g. "DE"); without one it is refused, because the
        same digits are a different line in every country."""
        text = value.strip()
        if text.startswith("00"):  # the international call prefix of most countries
            text = "+" + text[2:]
        region = default_region.strip().upper()
        if region and region not in phonenumbers.SUPPORTED_REGIONS:
            # Checked whether or not the number needs it ("+49 …" does not): a region that
            # is no country would otherwise be refused as the number's fault ("XX"), or
            # pass unnoticed; named once however many numbers the request has.
            wrong = FieldViolation("default_region", _NO_REGION)
            if wrong not in self.items:
                self.items.append(wrong)
            return value
        if not text.startswith("+") and not region:
            self.add(
                field,
                "has no country code: write it as +<country code> <number>, or say which"
                " country it belongs to (default_region)",
            )
            return value
        try:
            parsed = phonenumbers.parse(text, region or None)
        except phonenumbers.NumberParseException:
            self.add(field, "not a valid phone number")
            return value
        if not phonenumbers.is_valid_number(parsed):
            self.add(field, "not a valid phone number")
            return value
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

    def tag(self, field: str, value: str) -> str:
        tag = value.strip().lower()
        if not _TAG.match(tag):
            self.add(field, "must be 1-64 of a-z 0-9 _ - : . starting with a letter or digit")
        return tag

    def country(self, field: str, value: str) -> str:
        code = value.strip().upper()
        if not _COUNTRY.match(code) or pycountry.countries.get(alpha_2=code) is None:
            self.add(field, "must be an ISO 3166-1 alpha-2 code such as DE")
        return code

    def currency(
        self, field: str, value: str, *, default: str = "", among: Collection[str] = ()
    ) -> str:
        """An ISO 4217 code, upper-cased (`default` when empty); one of `among` if given (the
        currencies a service deals in)."""
        code = value.strip().upper() or default
        if not _CURRENCY.fullmatch(code) or pycountry.currencies.get(alpha_3=code) is None:
            self.add(field, "must be an ISO 4217 code such as EUR")
        elif among and code not in among:
            self.add(field, f"unknown currency; one of {', '.join(sorted(among))}")
        return code

    def decimal(
        self, field: str, value: str, *, required: bool = True, negative: bool = False
    ) -> Decimal | None:
        """A decimal number (`DECIMAL`); None when empty (a violation if `required`) or not
        such a number, or negative where it may not be."""
        text = value.strip()
        if not text:
            if required:
                self.add(field, "is required (a decimal number such as 1250.00)")
            return None
        if not DECIMAL.fullmatch(text):
            self.add(
                field,
                "must be a decimal number such as 1250.00"
                " (at most 15 digits before the point and 4 after it)",
            )
            return None
        number = Decimal(text)
        if number < 0 and not negative:
            self.add(field, "must not be negative")
            return None
        return number

    def choice(self, field: str, value: str, allowed: Iterable[str]) -> str:
        options = list(allowed)
        if value not in options:
            self.add(field, f"must be one of {', '.join(options)}")
        return value

    def enum(self, field: str, value: str, kind: type[E]) -> E | None:
        try:
            return kind(value)
        except ValueError:
            self.add(field, f"must be one of {', '.join(str(m.value) for m in kind)}")
            return None

    def day(self, field: str, value: str, *, required: bool = True) -> date | None:
        """A calendar day written YYYY-MM-DD, in the years FIRST_YEAR to LAST_YEAR; None when
        empty (a violation if `required`) or not such a day."""
        text = value.strip()
        if not text:
            if required:
                self.add(field, "is required (YYYY-MM-DD)")
            return None
        try:
            if not _DAY.fullmatch(text):  # fromisoformat also reads 20270101 and 2027-W01-1
                raise ValueError
            day = date.fromisoformat(text)
        except ValueError:
            self.add(field, "must be a date as YYYY-MM-DD")
            return None
        if not FIRST_YEAR <= day.year <= LAST_YEAR:
            self.add(field, f"must be a date in the years {FIRST_YEAR} to {LAST_YEAR}")
            return None
        return day

    def uuid(self, field: str, value: str) -> str:
        import uuid

        try:
            return str(uuid.UUID(value))
        except ValueError:
            self.add(field, "not a valid id (UUID expected)")
            return value
