"""A service following a subject of a JetStream stream with a durable pull consumer of its
own: connect, bind (or create) the durable, fetch in batches, hand each message to `handle`,
reconnect a second after a failure, until stopped. What a message means and when it is
acknowledged is the subclass's (`handle` acks, naks or terms it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TypeVar

import nats
from google.protobuf.message import Message
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from c360.events.v1 import envelope_pb2
from c360_platform import natsauth
from c360_platform.envelope import UnknownEventType, unpack
from c360_platform.leader import sleep_or_stop, unless_stopped
from c360_platform.pull import Puller, durable_puller
from c360_platform.streams import RECONNECT_WAIT, StreamSettings, ensure_stream

_log = logging.getLogger(__name__)
M = TypeVar("M", bound=Message)


class DurableFollower:
    """Follows `subject` on `stream` with the durable consumer `durable`."""

    def __init__(
        self,
        nats_url: str,
        stream: StreamSettings,
        subject: str,
        durable: str,
        *,
        name: str,
        batch_size: int = 64,
        ack_wait: float = 30,
    ) -> None:
        self.nats_url = nats_url
        self.stream = stream
        self.subject = subject
        self.durable = durable
        self.name = name
        self.batch_size = batch_size
        self.ack_wait = ack_wait
        self.nc: Client | None = None

    async def handle(self, msg: Msg) -> None:
        """Act on one message, then acknowledge it (or nak it to have it again later)."""
        raise NotImplementedError

    @staticmethod
    async def published(msg: Msg, kind: type[M]) -> tuple[envelope_pb2.Envelope, M] | None:
        """A c360 message's envelope and its payload, if the payload is a `kind`; any other
        message, or one that does not decode, is acknowledged here (not the follower's to
        judge: the timeline dead-letters malformed ones) and gives None."""
        envelope = envelope_pb2.Envelope()
        try:
            envelope.ParseFromString(msg.data)
            payload = unpack(envelope)
        except (ValueError, UnknownEventType):
            payload = None
        if not isinstance(payload, kind):
            await msg.ack()
            return None
        return envelope, payload

    async def _subscribe(self) -> Puller:
        self.nc = await nats.connect(
            self.nats_url,
            name=self.name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=RECONNECT_WAIT,
            **natsauth.client_options(self.nats_url),
        )
        js = self.nc.jetstream()
        await ensure_stream(js, self.stream)
        return await durable_puller(
            js,
            self.stream.name,
            ConsumerConfig(
                durable_name=self.durable,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait,
                max_ack_pending=self.batch_size,
                filter_subject=self.subject,
            ),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Follow until `stop`; reconnect a second after a failure."""
        while not stop.is_set():
            try:
                sub = await self._subscribe()
                while not stop.is_set():
                    msgs = await unless_stopped(stop, sub.fetch(self.batch_size, timeout=1.0))
                    for msg in msgs or []:
                        await self.handle(msg)
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("%s: following %s failed; retrying", self.name, self.subject)
                await sleep_or_stop(stop, 1.0)
            finally:
                await self.close()

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
            self.nc = None
