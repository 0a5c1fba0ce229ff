"""The timeline projector: a durable JetStream consumer of c360.> feeding the read model.

Messages are acknowledged only after the transaction that applied them (rows plus tracking)
committed; a crash before the ack means redelivery, which the tracking records turn into a
no-op. One projector is active at a time (advisory lock); standbys take over on its death.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import nats
from google.protobuf.message import DecodeError
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from opentelemetry import trace

from c360.events.v1 import envelope_pb2
from c360_platform import telemetry
from c360_platform.envelope import UnknownEventType, unpack
from c360_platform.errors import PreconditionFailed
from c360_platform.locks import AdvisoryLock
from c360_platform.streams import StreamSettings, ensure_stream
from c360_timeline.readmodel import ReadModel

_log = logging.getLogger(__name__)
DURABLE = "timeline"


class Projector:
    """Pulls envelopes in batches and applies each batch in one transaction."""

    def __init__(
        self,
        view: ReadModel,
        *,
        postgres_url: str,
        nats_url: str,
        stream: StreamSettings | None = None,
        durable: str = DURABLE,
        batch_size: int = 256,
    ) -> None:
        self.view = view
        self.nats_url = nats_url
        self.stream = stream or StreamSettings.from_env()
        self.durable = durable
        self.batch_size = batch_size
        self.lock = AdvisoryLock(postgres_url, f"c360.projector.{durable}")
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.sub: JetStreamContext.PullSubscription | None = None
        self.mutex = asyncio.Lock()
        self.active = asyncio.Event()
        self.applied = 0

    def consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_ack_pending=4 * self.batch_size,
            filter_subject="c360.>",
        )

    async def connect(self) -> JetStreamContext.PullSubscription:
        if self.js is None:
            self.nc = await nats.connect(
                self.nats_url, name=f"c360-projector-{self.durable}", max_reconnect_attempts=-1
            )
            self.js = self.nc.jetstream()
            await ensure_stream(self.js, self.stream)
        if self.sub is None:
            self.sub = await self.js.pull_subscribe(
                "c360.>",
                durable=self.durable,
                stream=self.stream.name,
                config=self.consumer_config(),
            )
        return self.sub

    async def close(self) -> None:
        await self.lock.release()
        if self.nc is not None:
            # Every message we care about was acknowledged already: close, don't drain.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), timeout=2)
        self.nc = self.js = self.sub = None
        self.active.clear()

    async def process_batch(self, timeout: float = 1.0) -> int:
        """Fetch one batch, apply it, then ack it. Returns how many messages were fetched."""
        sub = await self.connect()
        try:
            msgs = await sub.fetch(self.batch_size, timeout=timeout)
        except (TimeoutError, nats.errors.TimeoutError):
            return 0
        envelopes: list[envelope_pb2.Envelope] = []
        good: list[Msg] = []
        for msg in msgs:
            env = envelope_pb2.Envelope()
            try:
                env.ParseFromString(msg.data)
                unpack(env)
            except (DecodeError, UnknownEventType) as exc:
                # Not ours to read; a later issue routes these to a dead-letter subject.
                _log.error(
                    "dropping undecodable message on %s: %s", msg.subject, type(exc).__name__
                )
                await msg.term()
                continue
            envelopes.append(env)
            good.append(msg)
        tracer = telemetry.tracer("c360.projector")
        spans = [
            tracer.start_span(
                "project " + e.event_type,
                context=telemetry.context_from(e.traceparent, e.tracestate),
                kind=trace.SpanKind.CONSUMER,
            )
            for e in envelopes
        ]
        try:
            applied = await asyncio.to_thread(self.view.apply, envelopes)
        finally:
            for span in spans:
                span.end()
        for msg in good:
            await msg.ack()
        self.applied += applied
        return len(msgs)

    async def run(self, stop: asyncio.Event, *, standby_poll: float = 1.0) -> None:
        while not stop.is_set():
            try:
                if not await self.lock.try_acquire():
                    await _sleep_or_stop(stop, standby_poll)
                    continue
                self.active.set()
                while not stop.is_set():
                    async with self.mutex:
                        fetched = await self.process_batch()
                    if fetched == 0 and not await self.lock.still_held():
                        _log.warning("projector lost its lock; standing by")
                        break
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("projector failed; resuming from the durable consumer")
                await self.close()
                await _sleep_or_stop(stop, 1.0)
        await self.close()

    async def rebuild(self) -> AsyncIterator[tuple[int, int]]:
        """Empty the read model and replay the whole stream into it, yielding progress."""
        if not self.active.is_set():
            raise PreconditionFailed("this replica is not the active projector; retry")
        async with self.mutex:
            await self.connect()
            assert self.js is not None
            info = await self.js.stream_info(self.stream.name)
            total = int(info.state.messages)
            self.sub = None
            with contextlib.suppress(NotFoundError):
                await self.js.delete_consumer(self.stream.name, self.durable)
            await asyncio.to_thread(self.view.truncate)
            sub = await self.connect()
            done = 0
            yield done, total
            while True:
                fetched = await self.process_batch(timeout=0.5)
                done += fetched
                if fetched:
                    yield min(done, total), total
                    continue
                consumer = await sub.consumer_info()
                if consumer.num_pending == 0 and consumer.num_ack_pending == 0:
                    break
            yield total, total


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
