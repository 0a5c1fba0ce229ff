"""Dead letters: messages a consumer could not take, kept with the reason, listed, replayed."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from c360_platform.streams import StreamSettings

ROOT = "deadletter"
REASON = "C360-Reason"
SUBJECT = "C360-Subject"
STREAM = "C360-Stream"
SEQUENCE = "C360-Sequence"
CONSUMER = "C360-Consumer"
FAILED_AT = "C360-Failed-At"
MSG_ID = "C360-Msg-Id"
_MAX_REASON = 2000


class DeadLetterNotFound(LookupError):
    """No dead letter has that id."""


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter: its id (sequence in the dead-letter stream) and what failed, why."""

    id: int
    subject: str
    reason: str
    consumer: str
    failed_at: str
    stream: str
    sequence: int
    data: bytes
    msg_id: str = ""


async def dead_letter(js: JetStreamContext, msg: Msg, reason: str, consumer: str) -> None:
    """Keep `msg` (data unchanged) on deadletter.<consumer>.<subject>, reason in the headers.
    Returns once JetStream stored it; the same message dead-lettered twice by one consumer
    is kept once (within the stream's duplicate window), by two consumers once each."""
    meta = msg.metadata
    stream, seq = meta.stream, int(meta.sequence.stream)
    headers = {
        REASON: " ".join(reason.split())[:_MAX_REASON],
        SUBJECT: msg.subject,
        STREAM: stream,
        SEQUENCE: str(seq),
        CONSUMER: consumer,
        FAILED_AT: datetime.now(UTC).isoformat(timespec="seconds"),
        # One per consumer and message: two consumers that refuse it keep a reason each.
        "Nats-Msg-Id": f"{ROOT}:{consumer}:{stream}:{seq}",
    }
    original = (msg.headers or {}).get("Nats-Msg-Id")
    if original:
        headers[MSG_ID] = original
    settings = StreamSettings.dead_letters()
    await js.publish(
        f"{ROOT}.{consumer}.{msg.subject}", msg.data, headers=headers, stream=settings.name
    )


def _letter(seq: int, headers: dict[str, str], data: bytes | None) -> DeadLetter:
    return DeadLetter(
        id=seq,
        subject=headers.get(SUBJECT, ""),
        reason=headers.get(REASON, ""),
        consumer=headers.get(CONSUMER, ""),
        failed_at=headers.get(FAILED_AT, ""),
        stream=headers.get(STREAM, ""),
        sequence=int(headers.get(SEQUENCE, "0") or 0),
        data=data or b"",
        msg_id=headers.get(MSG_ID, ""),
    )


async def list_dead_letters(js: JetStreamContext, limit: int = 1000) -> list[DeadLetter]:
    """The oldest `limit` dead letters, oldest first."""
    settings = StreamSettings.dead_letters()
    try:
        total = int((await js.stream_info(settings.name)).state.messages)
    except NotFoundError:
        return []
    if total == 0:
        return []
    sub = await js.pull_subscribe(
        f"{ROOT}.>",
        stream=settings.name,
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30
        ),
    )
    letters: list[DeadLetter] = []
    try:
        while len(letters) < min(total, limit):
            try:
                msgs = await sub.fetch(min(256, limit - len(letters)), timeout=2)
            except TimeoutError:
                break
            for m in msgs:
                letters.append(
                    _letter(int(m.metadata.sequence.stream), dict(m.headers or {}), m.data)
                )
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return letters[:limit]


async def get_dead_letter(js: JetStreamContext, letter_id: int) -> DeadLetter:
    settings = StreamSettings.dead_letters()
    try:
        raw = await js.get_msg(settings.name, seq=letter_id)
    except NotFoundError:
        raise DeadLetterNotFound(
            f"no dead letter {letter_id}; `c360 deadletter list` shows the ones there are"
        ) from None
    return _letter(letter_id, dict(raw.headers or {}), raw.data)


async def replay(js: JetStreamContext, letter_id: int) -> DeadLetter:
    """Publish a dead letter's message again on its original subject (after a fix), then
    remove the dead letter. Replaying the same one twice publishes it once."""
    letter = await get_dead_letter(js, letter_id)
    await js.publish(
        letter.subject,
        letter.data,
        headers={"Nats-Msg-Id": f"{ROOT}:replay:{letter_id}:{letter.stream}:{letter.sequence}"},
    )
    with contextlib.suppress(NotFoundError):
        await js.delete_msg(StreamSettings.dead_letters().name, letter_id)
    return letter
