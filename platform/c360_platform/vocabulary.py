"""The contract's vocabulary, once: the words of proto enums, derived from their descriptors
(`CONSENT_CHANNEL_EMAIL` <-> "email"), for contracts, APIs, the timeline, the CLI and demo."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Protocol

from google.protobuf.descriptor import EnumDescriptor

from c360_platform.errors import InvalidArgument

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


class _EnumType(Protocol):
    DESCRIPTOR: EnumDescriptor


def prefix_of(descriptor: EnumDescriptor) -> str:
    """The prefix its values carry by the style guide: ConsentChannel -> CONSENT_CHANNEL_."""
    return _CAMEL.sub("_", descriptor.name).upper() + "_"


class Words:
    """The words of one proto enum: each value's name without the type's prefix, lower-cased
    (`TICKET_CHANNEL_WEB_FORM` -> "web_form"). The zero value (UNSPECIFIED) has no word."""

    def __init__(self, enum: _EnumType | EnumDescriptor) -> None:
        descriptor = enum if isinstance(enum, EnumDescriptor) else enum.DESCRIPTOR
        self.descriptor = descriptor
        self.prefix = prefix_of(descriptor)
        self._by_value: dict[int, str] = {}
        for value in descriptor.values:
            if value.number == 0:
                continue
            self._by_value[value.number] = value.name.removeprefix(self.prefix).lower()
        self._by_word = {word: number for number, word in self._by_value.items()}

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_word)

    def __contains__(self, word: object) -> bool:
        return word in self._by_word

    @property
    def words(self) -> list[str]:
        return list(self._by_word)

    def word(self, value: int) -> str:
        """The word of a value; "" for the zero value or one this reader does not know.

        For reading what another program wrote (a reply, an event, a provider's report),
        which may be newer than this reader. A request's field is read with `parse`, or
        `given` where the domain checks it: an unknown number there is the caller's mistake,
        not "unspecified"."""
        return self._by_value.get(value, "")

    def value(self, word: str) -> Any:
        """The value of a word (KeyError naming the words if there is none)."""
        try:
            return self._by_word[word]
        except KeyError:
            raise KeyError(f"{word!r} is not one of {', '.join(self._by_word)}") from None

    def value_or_zero(self, word: str) -> Any:
        """The value of a word; 0 (unspecified) for "" or an unknown word."""
        return self._by_word.get(word, 0)

    def of_name(self, name: str) -> str:
        """The word of a value's name as JSON renders it ("TICKET_CHANNEL_EMAIL" -> "email");
        "" for the zero value or an unknown name."""
        found = self.descriptor.values_by_name.get(name)
        return self.word(found.number) if found is not None else ""

    def parse(self, field: str, value: int, *, optional: bool = False) -> str:
        """The word of a request's enum field; INVALID_ARGUMENT naming the field if it has
        none (the zero value is "" when `optional`)."""
        if optional and value == 0:
            return ""
        word = self._by_value.get(value)
        if word is None:
            raise InvalidArgument.one(field, f"must be one of {', '.join(self._by_word)}")
        return word

    def given(self, value: int) -> str:
        """A request's enum field for the domain to check: the word, "" for the zero value,
        and a number this reader does not know as its digits ("999"), which no word equals,
        so the domain's check refuses it with the other offending fields, by the path it
        knows (`rules[2].base`), where `word` would have made it "unspecified"."""
        if value == 0:
            return ""
        return self._by_value.get(value, str(value))
