"""Errors a command or query can end in, named by what the caller must change (no I/O here)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class C360Error(Exception):
    """Base of the errors c360 maps onto gRPC status codes."""


@dataclass(frozen=True)
class FieldViolation:
    """One offending field and what is wrong with it."""

    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}"


class InvalidArgument(C360Error):
    """The request is malformed; nothing was changed (INVALID_ARGUMENT + BadRequest)."""

    def __init__(self, violations: Iterable[FieldViolation]) -> None:
        self.violations = tuple(violations)
        super().__init__("; ".join(str(v) for v in self.violations))

    @classmethod
    def one(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])


class NotFound(C360Error):
    """The named thing does not exist (NOT_FOUND)."""


class AlreadyExists(C360Error):
    """The thing to create exists already (ALREADY_EXISTS)."""


class PreconditionFailed(C360Error):
    """The thing is not in a state that allows the command (FAILED_PRECONDITION)."""


def require_state(
    kind: str, aggregate_id: object, state: str, action: str, allowed: Iterable[str]
) -> None:
    """FAILED_PRECONDITION naming the state, unless `state` is one of `allowed`: "article … is
    in review: cannot publish it (only when draft)" (states spoken: `in_review` -> in review).
    `action` names the thing as "it" where a verb needs it inside ("put it on hold"), else
    "it" follows it."""
    names = [str(a) for a in allowed]
    if state not in names:
        spoken = " or ".join(n.replace("_", " ") for n in names)
        phrase = action if " it " in f" {action} " else f"{action} it"
        raise PreconditionFailed(
            f"{kind} {aggregate_id} is {state.replace('_', ' ')}: cannot {phrase}"
            f" (only when {spoken})"
        )


class VersionConflict(C360Error):
    """Someone else changed the aggregate first; reload and retry (ABORTED)."""


class Unavailable(C360Error):
    """A dependency is down or the wait for consistency ran out (UNAVAILABLE)."""


class DeadlineExceeded(C360Error):
    """The wait the caller allowed ran out before the answer was ready (DEADLINE_EXCEEDED)."""


class Unauthenticated(C360Error):
    """The call carries no valid credentials (UNAUTHENTICATED)."""


class PermissionDenied(C360Error):
    """The caller's role may not make this call (PERMISSION_DENIED)."""
