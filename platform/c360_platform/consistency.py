"""Consistency tokens: "<source>:<position>", handed out by commands and awaited by reads."""

from __future__ import annotations

import re
from dataclasses import dataclass

from c360_platform.errors import InvalidArgument

_TOKEN = re.compile(r"^([a-z][a-z0-9-]{0,31}):([0-9]{1,19})$")


@dataclass(frozen=True, order=True)
class ConsistencyToken:
    """A position in one source's notification log."""

    source: str
    position: int

    def __str__(self) -> str:
        return f"{self.source}:{self.position}"

    @classmethod
    def parse(cls, text: str, field: str = "wait_for") -> ConsistencyToken:
        match = _TOKEN.match(text.strip())
        if not match:
            raise InvalidArgument.one(field, "not a consistency token (expected source:position)")
        return cls(match.group(1), int(match.group(2)))
