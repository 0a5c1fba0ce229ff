"""NATS subject patterns: validation and matching (`*` one token, `>` the rest), no I/O."""

from __future__ import annotations


def tokens(subject: str) -> list[str]:
    return subject.split(".")


def check_pattern(pattern: str) -> str:
    """The pattern, if it is a valid NATS subject pattern; else ValueError saying what is wrong."""
    parts = tokens(pattern)
    if not pattern or any(not part for part in parts):
        raise ValueError(
            f"{pattern!r} is not a subject pattern: tokens are separated by single dots"
        )
    for index, part in enumerate(parts):
        if any(ch.isspace() for ch in part):
            raise ValueError(f"{pattern!r} is not a subject pattern: it contains white space")
        if part == ">" and index != len(parts) - 1:
            raise ValueError(f"{pattern!r} is not a subject pattern: '>' must be the last token")
        if part not in ("*", ">") and ("*" in part or ">" in part):
            raise ValueError(
                f"{pattern!r} is not a subject pattern: wildcards must be whole tokens"
            )
    return pattern


def matches(pattern: str, subject: str) -> bool:
    """True if `subject` (no wildcards) matches `pattern`."""
    want, have = tokens(pattern), tokens(subject)
    for index, part in enumerate(want):
        if part == ">":
            return len(have) > index
        if index >= len(have) or (part != "*" and part != have[index]):
            return False
    return len(want) == len(have)


def may_match_prefix(pattern: str, prefix: str) -> bool:
    """True if some subject that starts with the tokens of `prefix` (and has more tokens)
    could match `pattern`: `c360.>` and `c360.*.customer.*` may match below `c360.customer`."""
    want, have = tokens(pattern), tokens(prefix)
    for index, part in enumerate(have):
        if index >= len(want):
            return False
        if want[index] == ">":
            return True
        if want[index] not in ("*", part):
            return False
    return len(want) > len(have)
