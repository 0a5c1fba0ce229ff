"""`store.EventTranscoder` reads a stored state exactly as the library's JSON transcoder does
(it skips only the decoder's whitespace matching), and refuses what that refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex
from hypothesis import given
from hypothesis import strategies as st

from c360_platform.store import EventTranscoder, ServiceApplication


def _pair() -> tuple[JSONTranscoder, EventTranscoder]:
    library, ours = JSONTranscoder(), EventTranscoder()
    for transcoder in (library, ours):
        for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
            transcoder.register(transcoding)
    return library, ours


_states = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(),
        st.uuids(),
        st.datetimes(timezones=st.timezones()),
        st.decimals(allow_nan=False, allow_infinity=False),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(_states, st.sampled_from(["", " ", "\n\t"]), st.sampled_from(["", " ", "\r\n"]))
def test_it_reads_what_the_librarys_transcoder_reads(value: Any, before: str, after: str) -> None:
    library, ours = _pair()
    data = library.encode(value)
    assert ours.decode(data) == library.decode(data)
    spaced = before.encode() + data + after.encode()  # not written so: read all the same
    assert ours.decode(spaced) == library.decode(spaced)


@pytest.mark.parametrize("data", [b"", b"{", b'{"a": 1} x', b"[1,]", b"nope", b'{"a": 1}{}'])
def test_it_refuses_what_the_librarys_transcoder_refuses(data: bytes) -> None:
    library, ours = _pair()
    with pytest.raises(json.JSONDecodeError) as expected:
        library.decode(data)
    with pytest.raises(json.JSONDecodeError) as refused:
        ours.decode(data)
    assert refused.value.msg == expected.value.msg
    assert refused.value.pos == expected.value.pos


def test_every_service_application_reads_its_events_with_it() -> None:
    app = ServiceApplication.in_memory()
    assert isinstance(app.mapper.transcoder, EventTranscoder)
