"""The catch-up consumer reads a message's stream sequence from its ack subject itself."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.msg import Msg
from nats.errors import NotJSMessageError

from c360_platform.catchup import _seq

names = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
numbers = st.integers(min_value=0, max_value=2**63 - 1)


def _msg(reply: str) -> Msg:
    return Msg(_client=None, subject="c360.customer.customer.registered", reply=reply)  # type: ignore[arg-type]


@given(names, names, numbers, numbers, numbers)
def test_v1_subject(stream: str, consumer: str, delivered: int, sseq: int, ts: int) -> None:
    cseq, pending = delivered + 1, sseq // 2
    reply = f"$JS.ACK.{stream}.{consumer}.{delivered}.{sseq}.{cseq}.{ts}.{pending}"
    assert _seq(_msg(reply)) == sseq == Msg.Metadata._from_reply(reply).sequence.stream


@given(names, names, names, names, numbers, numbers, st.booleans())
def test_v2_subject(
    domain: str, account: str, stream: str, consumer: str, sseq: int, ts: int, random_token: bool
) -> None:
    reply = f"$JS.ACK.{domain}.{account}.{stream}.{consumer}.1.{sseq}.7.{ts}.0"
    if random_token:
        reply += ".xyz"
    assert _seq(_msg(reply)) == sseq == Msg.Metadata._from_reply(reply).sequence.stream


def test_not_an_ack_subject() -> None:
    with pytest.raises(NotJSMessageError):
        _seq(_msg("_INBOX.abc"))
