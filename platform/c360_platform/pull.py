"""Batches from a durable JetStream pull consumer, read by one callback.

nats-py's `PullSubscription.fetch` waits for each message of a batch in a task of its own
with a timer (a `uuid4`, `create_task` and `wait_for` per message): about 25 us of CPU per
message, more than the projector spends applying one. A `Puller` sends the same pull requests
(`$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>`) and collects the replies with one callback on
its inbox; a batch costs one wake-up.

How a batch is taken (the protocol nats-py's fetch also follows):

1. messages a lingering request delivered after the last batch was handed out come first;
2. then a `no_wait` request for the rest: the server sends what it has at once and ends the
   reply with a status (404 No Messages, 408 Request Timeout);
3. if nothing came, a lingering request that expires with the timeout: the batch is handed
   out as soon as its first messages are in (the request stays open for the rest, which step 1
   takes next time), or empty when the request expires.

Each request replies on an inbox subject of its own (`<inbox>.<n>`), so a status that ends an
older request is told from the one that ends the current one. Messages arrive in the order
the consumer delivers them, whichever request they answer.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import TYPE_CHECKING

from nats.js.api import ConsumerConfig, ConsumerInfo, Header, StatusCode
from nats.js.errors import APIError, NotFoundError

from c360_platform.leader import wait_at_most

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription
    from nats.js import JetStreamContext

_ENDS = frozenset({StatusCode.NO_MESSAGES.value, StatusCode.REQUEST_TIMEOUT.value})
"""Statuses that end a pull request's reply."""
_SKIPPED = frozenset({StatusCode.CONTROL_MESSAGE.value, StatusCode.CONFLICT.value})
"""Heartbeats, and 409s (leadership change, a full waiting list, a batch or byte limit): they
end nothing a later request cannot continue, as nats-py's fetch treats them."""


class Puller:
    """Pull requests for one durable consumer, answered on one inbox."""

    def __init__(self, js: JetStreamContext, stream: str, durable: str) -> None:
        # The connection and API prefix (a domain's, if any) of the context, as nats-py's
        # own pull subscriptions take them.
        self._js = js
        self._stream, self._durable = stream, durable
        self._nc: NATS = js._nc
        prefix: str = js._prefix
        self._next_subject = f"{prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = self._nc.new_inbox()
        self._sub: Subscription | None = None
        self._messages: deque[Msg] = deque()
        self._request = 0
        self._ended = 0
        """The newest request whose reply has ended (its status arrived)."""
        self._error: APIError | None = None
        self._wake: asyncio.Future[None] | None = None

    async def open(self) -> None:
        self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._take)

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()
        self._messages.clear()

    async def consumer_info(self) -> ConsumerInfo:
        """The durable's state (its pending messages), as a pull subscription gives it."""
        info: ConsumerInfo = await self._js.consumer_info(self._stream, self._durable)
        return info

    async def _take(self, msg: Msg) -> None:
        status = msg.headers.get(Header.STATUS) if msg.headers and not msg.data else None
        if status is None:
            self._messages.append(msg)
        elif status in _ENDS:
            request = int(msg.subject.rpartition(".")[2] or 0)
            self._ended = max(self._ended, request)
        elif status not in _SKIPPED:
            self._error = APIError.from_msg(msg)
        else:
            return
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _send(self, batch: int, *, expires: float | None = None) -> int:
        self._request += 1
        request: dict[str, object] = {"batch": batch}
        if expires is None:
            request["no_wait"] = True
        else:
            request["expires"] = max(int(expires * 1e9), 1_000_000)
        await self._nc.publish(
            self._next_subject,
            json.dumps(request).encode(),
            reply=f"{self._inbox}.{self._request}",
        )
        return self._request

    async def _until(self, timeout: float) -> None:
        """Wait for the next reply to arrive, at most `timeout` seconds."""
        self._wake = asyncio.get_running_loop().create_future()
        try:
            # Not asyncio.wait_for: a fetch cancelled as a reply arrives must end (see it).
            await wait_at_most(self._wake, timeout)
        finally:
            self._wake = None

    def _handed(self, batch: int) -> list[Msg]:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        out: list[Msg] = []
        while self._messages and len(out) < batch:
            out.append(self._messages.popleft())
        return out

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to `batch` messages; as soon as some are in, else empty after `timeout`."""
        assert self._sub is not None, "open() first"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if len(self._messages) >= batch:
            return self._handed(batch)
        asked = await self._send(batch - len(self._messages))
        # A reply that fills the batch ends without a status.
        while self._ended < asked and len(self._messages) < batch and self._error is None:
            left = deadline - loop.time()
            if left <= 0:
                break
            await self._until(left)
        if self._messages or self._error is not None:
            return self._handed(batch)
        left = deadline - loop.time()
        if left <= 0.001:
            return []
        asked = await self._send(batch, expires=left)
        while not self._messages and self._ended < asked and self._error is None:
            left = deadline - loop.time()
            if left <= 0:
                break
            await self._until(left)
        return self._handed(batch)


async def durable_puller(js: JetStreamContext, stream: str, config: ConsumerConfig) -> Puller:
    """A `Puller` on the durable `config.durable_name` of `stream`, made from `config` if it
    does not exist yet (an existing one is bound as it is, as nats-py's `pull_subscribe`
    does)."""
    assert config.durable_name, "a durable consumer has a name"
    try:
        await js.consumer_info(stream, config.durable_name)
    except NotFoundError:
        await js.add_consumer(stream, config)
    puller = Puller(js, stream, config.durable_name)
    await puller.open()
    return puller
