"""Enum words from the proto descriptors: a reply's unknown number reads as no word, a
request's is refused by the field's name."""

from __future__ import annotations

import pytest

from c360.events.v1 import ticket_events_pb2 as ev
from c360_platform.errors import InvalidArgument
from c360_platform.vocabulary import Words

PRIORITIES = Words(ev.TicketPriority)


def test_a_reader_takes_an_unknown_number_as_no_word() -> None:
    assert PRIORITIES.word(ev.TICKET_PRIORITY_HIGH) == "high"
    assert PRIORITIES.word(999) == PRIORITIES.word(0) == ""


def test_a_request_field_with_an_unknown_number_is_refused_by_its_name() -> None:
    assert PRIORITIES.parse("priority", ev.TICKET_PRIORITY_HIGH) == "high"
    assert PRIORITIES.parse("priority", 0, optional=True) == ""
    for value, optional in [(999, True), (-1, True), (0, False)]:
        with pytest.raises(InvalidArgument) as caught:
            PRIORITIES.parse("priority", value, optional=optional)
        assert [(v.field, v.description) for v in caught.value.violations] == [
            ("priority", "must be one of low, normal, high, urgent")
        ]


def test_given_keeps_an_unknown_number_for_the_domain_to_refuse() -> None:
    assert PRIORITIES.given(ev.TICKET_PRIORITY_URGENT) == "urgent"
    assert PRIORITIES.given(0) == ""
    assert PRIORITIES.given(999) == "999"
    assert "999" not in PRIORITIES
