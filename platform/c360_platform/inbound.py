"""What every request is checked for before its handler sees it: that it decodes, that its
strings hold no NUL character (PostgreSQL text cannot store one) and that its timestamps are
instants of the years a caller may name (validation.FIRST_YEAR to LAST_YEAR). Each offending
field is named (INVALID_ARGUMENT with google.rpc.BadRequest); the handler, and so the store,
never sees such a request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from c360_platform.errors import FieldViolation, InvalidArgument
from c360_platform.validation import FIRST_YEAR, LAST_YEAR

MIN_SECONDS = -2_208_988_800
"""1900-01-01T00:00:00Z, the first instant a request's timestamp may name (`FIRST_YEAR`;
google.protobuf.Timestamp itself goes back to year 1, where a year's arithmetic overflows)."""
MAX_SECONDS = 32_503_679_999
"""2999-12-31T23:59:59Z, the last (`LAST_YEAR`)."""
MAX_REPORTED = 20


class Undecodable:
    """Stands for a request body that is not a message of the method's request type."""


def tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """The method's request deserializer, answering `Undecodable()` instead of raising (so
    the call ends in INVALID_ARGUMENT rather than in a decoder's traceback)."""
    if deserialize is None:
        return None

    def decode(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except Exception:  # DecodeError, and whatever else a decoder raises
            return Undecodable()

    return decode


def check(request: Any) -> None:
    """Raise InvalidArgument naming every offending field of `request` (see the module)."""
    if isinstance(request, Undecodable):
        raise InvalidArgument.one("request", "not a valid message of this method's request type")
    if not isinstance(request, Message):
        return
    found: list[FieldViolation] = []
    _walk(request, "", found)
    if found:
        raise InvalidArgument(found[:MAX_REPORTED])


def _walk(message: Message, path: str, found: list[FieldViolation]) -> None:
    if message.DESCRIPTOR.full_name == "google.protobuf.Timestamp":
        seconds, nanos = message.seconds, message.nanos  # type: ignore[attr-defined]
        if not (MIN_SECONDS <= seconds <= MAX_SECONDS and 0 <= nanos < 1_000_000_000):
            found.append(
                FieldViolation(
                    path or "timestamp", f"not a valid time (years {FIRST_YEAR} to {LAST_YEAR})"
                )
            )
        return
    for field, value in message.ListFields():
        where = f"{path}.{field.name}" if path else field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                _one(field.message_type.fields_by_name["key"], key, f"{where}[{key!r}]", found)
                _one(value_field, item, f"{where}[{key!r}]", found)
        elif field.is_repeated:
            for i, item in enumerate(value):
                _one(field, item, f"{where}[{i}]", found)
        else:
            _one(field, value, where, found)
        if len(found) >= MAX_REPORTED:
            return


def _one(field: FieldDescriptor, value: Any, path: str, found: list[FieldViolation]) -> None:
    if field.type == FieldDescriptor.TYPE_STRING:
        if "\x00" in value:
            found.append(FieldViolation(path.replace("\x00", "\\0"), "must not contain NUL"))
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        _walk(value, path, found)
