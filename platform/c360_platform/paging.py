"""Pages of a list call, alike in every service: how many rows it asks for (a default for 0,
INVALID_ARGUMENT above the call's maximum) and the opaque token that resumes after a page's
last row (keyset paging: that row's sort key, not an offset, so rows written meanwhile neither
repeat nor go missing). No I/O."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from c360_platform.errors import InvalidArgument


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


def keyset_token(after: tuple[datetime, UUID]) -> str:
    """`token` of a page sorted by a time and an id (the services' lists)."""
    return token(*after)


def read_keyset_token(text: str) -> tuple[datetime, UUID] | None:
    """`keyset_token`'s time and id, None for no token (the first page)."""
    if not text:
        return None
    at, key = read_token(text, datetime.fromisoformat, UUID)
    return at, key
