"""argparse value types and request options shared by the CLI's commands."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

R = TypeVar("R")


def parse_addr(text: str) -> tuple[str, str]:
    """An argparse type for --addr NAME=HOST:PORT."""
    name, sep, address = text.partition("=")
    if not sep or not name.strip() or ":" not in address:
        raise argparse.ArgumentTypeError(f"not NAME=HOST:PORT: {text!r} (e.g. customer=:50051)")
    host, _, port = address.strip().rpartition(":")
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"not a port number in {text!r}")
    return name.strip(), f"{host or '127.0.0.1'}:{port}"


_DAYS_FROM_TODAY = re.compile(r"^([+-])(\d{1,5})d?$")
NAMED_DAYS = {"yesterday": -1, "today": 0, "tomorrow": 1}
DAY_HELP = "YYYY-MM-DD, or today, tomorrow, +30 (days from today, UTC)"


def day(text: str) -> str:
    """A day as the services take it (YYYY-MM-DD), also written from today: `today`,
    `tomorrow`, `yesterday`, `+30` or `-7` (days, UTC; `+30d` too), so that a plan made
    today reads the same tomorrow. Anything else goes to the service as it is, which names
    the field when it is not a date."""
    word = text.strip().lower()
    offset = NAMED_DAYS.get(word)
    found = _DAYS_FROM_TODAY.match(word)
    if found is not None:
        offset = int(found.group(2)) * (-1 if found.group(1) == "-" else 1)
    if offset is None:
        return text
    return (datetime.now(UTC).date() + timedelta(days=offset)).isoformat()


def whole_number(text: str, minimum: int, why: str) -> int:
    """An int of at least `minimum`; `why` says what the minimum is about."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(why)
    return value


def positive_int(text: str) -> int:
    """1, 2, 3, ..."""
    return whole_number(text, 1, "must be 1 or more")


def whole_in(low: int, high: int) -> Callable[[str], int]:
    """A type for an int from `low` to `high`."""

    def parse(text: str) -> int:
        value = whole_number(text, low, f"must be {low} to {high}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be {low} to {high}")
        return value

    return parse


def version_number(text: str) -> int:
    """An aggregate version for --expected-version: 0, 1, 2, ..."""
    return whole_number(text, 0, "must be 0 or more")


def versioned(request: R, args: argparse.Namespace) -> R:
    """`request` with expected_version set when --expected-version was given."""
    version: Any = getattr(args, "expected_version", None)
    if version is not None:
        request.expected_version = version  # type: ignore[attr-defined]
    return request
