"""Pages of a list call, alike in every service: how many rows it asks for (a default for 0,
INVALID_ARGUMENT above the call's maximum) and the opaque token that resumes after a page's
last row (keyset paging: that row's sort key, not an offset, so rows written meanwhile neither
repeat nor go missing), bound to the request it continues where the call passes it. No I/O."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from google.protobuf.message import Message

from c360_platform.errors import InvalidArgument

PAGE_FIELDS = ("page_token", "page_size")
"""The fields of a list request that page it; the others (filters, ids, as-of times) are
the request a token continues."""


def count(asked: int, *, maximum: int, default: int, field: str = "page_size") -> int:
    """The rows (or items) a call asked for: `default` for 0 (proto's unset), refused above
    `maximum` naming `field`."""
    if asked > maximum:
        raise InvalidArgument.one(field, f"must be at most {maximum}")
    return int(asked or default)


def token(*key: datetime | UUID | str | int) -> str:
    """The token of a page that ends at the row with this sort key."""
    values = [
        k.isoformat() if isinstance(k, datetime) else str(k) if isinstance(k, UUID) else k
        for k in key
    ]
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


def read_token(text: str, *kinds: Callable[[Any], Any]) -> tuple[Any, ...]:
    """The sort key a `token` holds, each part made by its kind (`datetime.fromisoformat`,
    `UUID`, `str`, `int`, ...); INVALID_ARGUMENT on `page_token` for anything else (not
    base64, not JSON, another number of parts, a part its kind refuses)."""
    try:
        values = json.loads(base64.urlsafe_b64decode(text.encode()))
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError(text)
        return tuple(kind(value) for kind, value in zip(kinds, values, strict=True))
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument.one("page_token", "not a token from a previous page") from None


def request_scope(request: Message, ignore: tuple[str, ...] = ()) -> str:
    """What a token of `request`'s pages is bound to: the request's type and every field but
    PAGE_FIELDS and `ignore` (fields that do not choose the rows: a read-your-writes wait),
    as a short digest."""
    rest = type(request)()
    rest.CopyFrom(request)
    for name in (*PAGE_FIELDS, *ignore):
        if name in rest.DESCRIPTOR.fields_by_name:
            rest.ClearField(name)
    digest = hashlib.sha256(rest.DESCRIPTOR.full_name.encode() + b"\0")
    digest.update(rest.SerializeToString(deterministic=True))
    return digest.hexdigest()[:16]


def keyset_token(after: tuple[datetime, UUID], request: Message | None = None) -> str:
    """`token` of a page sorted by a time and an id (the services' lists); with `request`,
    bound to it (`read_keyset_token` refuses it with another)."""
    return token(*after, request_scope(request)) if request is not None else token(*after)


def read_keyset_token(text: str, request: Message | None = None) -> tuple[datetime, UUID] | None:
    """`keyset_token`'s time and id, None for no token (the first page). With `request`, a
    token made for another request (other filters, another list) is INVALID_ARGUMENT: read
    on, it would continue the other list from where its page ended, without an error. A
    token without a request's mark (made before tokens had one) is read as it was."""
    if not text:
        return None
    kinds = (datetime.fromisoformat, UUID)
    at, key = (
        read_token(text, *kinds) if request is None else read_bound_token(text, request, *kinds)
    )
    return at, key


def read_bound_token(
    text: str,
    request: Message,
    *kinds: Callable[[Any], Any],
    ignore: tuple[str, ...] = (),
    other: str = "other filters or list",
) -> tuple[Any, ...]:
    """The sort key of a token bound to `request` (its last part `request_scope(request,
    ignore)`); INVALID_ARGUMENT on page_token for one made for another request (`other` says
    what differs): read on, it would continue the other list from where its page ended,
    without an error. A token without a request's mark (made before tokens had one) is read
    as it was."""
    try:
        *key, scope = read_token(text, *kinds, str)
    except InvalidArgument:
        return read_token(text, *kinds)  # not a bound token
    if scope != request_scope(request, ignore):
        raise InvalidArgument.one(
            "page_token",
            f"is the token of another request ({other}): send it with the request whose"
            " page it ended, or ask again without it",
        )
    return tuple(key)
