"""JetStream publishes in batches, their acknowledgements struck off by one callback.

nats-py's `publish_async` gives each message a future with a done-callback, a NUID and a
`token_hex` (an `os.urandom` call) for its reply subject, a slot of a semaphore and a parsed
`PubAck`: more CPU than the rest of the relay's work for the message. The relay needs to
know one thing of a batch: that the stream stored every message of it. A `BatchPublisher`
publishes each message with a reply subject of its own (`<inbox>.<n>`, n counting up) and
one callback on the inbox strikes n off the batch's unacknowledged set; an error for any
message fails the batch (the relay publishes it again from its stored position, and the
stream's duplicate window drops what it already holds).

An acknowledgement for a message of an earlier batch (one that failed or timed out) is not
in the set and is ignored: it can never be counted for another message.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from nats.js.api import Header
from nats.js.errors import APIError

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription


class BatchPublisher:
    """Publishes to JetStream with at most `window` messages unacknowledged."""

    def __init__(self, nc: NATS, *, window: int = 256) -> None:
        self._nc = nc
        self.window = window
        self._inbox = nc.new_inbox()
        self._cut = len(self._inbox) + 1
        self._sub: Subscription | None = None
        self._next = 0
        self._pending: set[int] = set()
        self._error: Exception | None = None
        self._wake: asyncio.Future[None] | None = None
        self._wanted = 0

    async def open(self) -> None:
        self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._acknowledge)

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
        self.reset()

    @property
    def unacknowledged(self) -> int:
        return len(self._pending)

    async def _acknowledge(self, msg: Msg) -> None:
        try:
            n = int(msg.subject[self._cut :])
        except ValueError:
            return
        if n not in self._pending:
            return  # a message of an earlier batch
        if not msg.data or b'"error"' in msg.data:
            self._error = self._error or _failure(msg)
        self._pending.discard(n)
        wake = self._wake
        if wake is None or wake.done():
            return
        if self._error is not None or len(self._pending) <= self._wanted:
            wake.set_result(None)

    async def _until(self, wanted: int) -> None:
        """Wait until at most `wanted` messages are unacknowledged, or an error came."""
        while len(self._pending) > wanted and self._error is None:
            self._wanted = wanted
            self._wake = asyncio.get_running_loop().create_future()
            try:
                await self._wake
            finally:
                self._wake = None
        if self._error is not None:
            error = self._error
            self.reset()  # the batch is over: its other acks do not count
            raise error

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Publish one message of the batch, once fewer than `window` wait for their ack."""
        assert self._sub is not None, "open() first"
        await self._until(self.window - 1)
        self._next += 1
        self._pending.add(self._next)
        await self._nc.publish(
            subject, payload, reply=f"{self._inbox}.{self._next}", headers=headers
        )

    async def acknowledged(self) -> None:
        """Return when the stream acknowledged every message published; raise the first error
        an acknowledgement carried, or the one `fail` was given (the batch is then over)."""
        await self._until(0)

    def reset(self) -> None:
        """Start a new batch: the unacknowledged messages are forgotten (their acks, if they
        come, are ignored), and so is an error not raised yet."""
        self._pending.clear()
        self._error = None

    def fail(self, error: Exception) -> None:
        """End the batch with `error` (the connection dropped: its acks will not come); a
        publish or `acknowledged` waiting now, or called next, raises it."""
        self._error = self._error or error
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)


def _failure(msg: Msg) -> Exception:
    """The error an acknowledgement reports: a status (503: no stream takes the subject) or
    a JetStream API error."""
    status = msg.headers.get(Header.STATUS) if msg.headers else None
    if status:
        description = msg.headers.get(Header.DESCRIPTION, "") if msg.headers else ""
        return APIError(code=int(status), description=description or "no responders")
    try:
        body = json.loads(msg.data)
    except ValueError:
        return APIError(description=f"unreadable acknowledgement {msg.data[:80]!r}")
    error = body.get("error") or {}
    return APIError(
        code=error.get("code"), err_code=error.get("err_code"), description=error.get("description")
    )
