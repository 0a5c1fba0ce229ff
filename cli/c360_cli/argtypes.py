"""argparse value types shared by the CLI's commands (one message per kind of mistake)."""

from __future__ import annotations

import argparse


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
