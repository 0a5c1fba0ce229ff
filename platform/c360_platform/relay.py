"""Outbox relay: publishes the store's notification log to JetStream without loss.

The stored position advances only after JetStream acknowledged every message of a batch;
a crash in between re-publishes the batch with the same Nats-Msg-Id (<service>:<position>),
which JetStream's duplicate window drops and the projector's tracking ignores beyond it.
Publishes are pipelined (async with a bounded window). One relay per service is active.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Protocol
from uuid import UUID

import nats
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import IntegrityError, Notification, Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from opentelemetry import trace

from c360_platform import envelope, natsauth, telemetry
from c360_platform.envelope import Envelope
from c360_platform.leader import lead, sleep_or_stop, unless_stopped
from c360_platform.locks import AdvisoryLock
from c360_platform.pgstore import EventRecorder
from c360_platform.publish import BatchPublisher
from c360_platform.store import EventMetadata, ServiceApplication
from c360_platform.streams import RECONNECT_WAIT, StreamSettings, ensure_stream

_log = logging.getLogger(__name__)
RELAY = "relay"


class Contract(Protocol):
    """A service's mapping from its domain events to published messages."""

    def publication(self, event: DomainEventProtocol[UUID]) -> envelope.Publication: ...


class StoredEnvelope:
    """One stored event as it is published: its subject and its envelope.

    The relay and the catch-up read (`c360_platform.eventlog`) both pack through here, so an
    event read from the store is the same message, with the same id, as the one published.
    """

    def __init__(
        self,
        app: ServiceApplication,
        contract: Contract,
        notification: Notification,
        meta: EventMetadata,
    ) -> None:
        self.app = app
        self.notification = notification
        self.meta = meta
        self.event = app.publishing_mapper.to_domain_event(notification)
        self.publication = contract.publication(self.event)
        self.subject = envelope.subject_for(
            app.source, self.publication.aggregate_type, self.publication.payload.DESCRIPTOR.name
        )

    def pack(self, traceparent: str | None = None, tracestate: str | None = None) -> Envelope:
        """The envelope; the trace context defaults to the one stored with the event."""
        event, meta = self.event, self.meta
        return envelope.pack(
            source=self.app.source,
            publication=self.publication,
            aggregate_id=event.originator_id,
            aggregate_version=event.originator_version,
            position=self.notification.id,
            occurred_at=getattr(event, "timestamp"),  # noqa: B009 (not in the protocol)
            correlation_id=meta.correlation_id,
            causation_id=meta.causation_id,
            traceparent=meta.traceparent if traceparent is None else traceparent,
            tracestate=meta.tracestate if tracestate is None else tracestate,
        )


class OutboxRelay:
    """Tails one application's notification log and publishes each event once."""

    def __init__(
        self,
        app: ServiceApplication,
        contract: Contract,
        *,
        postgres_url: str,
        nats_url: str,
        stream: StreamSettings | None = None,
        batch_size: int = 500,
        window: int = 256,
        ack_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.source = app.source
        self.contract = contract
        self.postgres_url = postgres_url
        self.nats_url = nats_url
        self.stream = stream or StreamSettings.from_env()
        self.batch_size = batch_size
        self.window = window
        self.ack_timeout = ack_timeout
        self.lock = AdvisoryLock(postgres_url, f"c360.relay.{self.source}")
        recorder = app.recorder
        if not isinstance(recorder, EventRecorder):
            raise TypeError("the outbox relay needs the application on PostgreSQL")
        self.channel = recorder.channel_name
        """Where the store NOTIFYs each insert (the relay LISTENs there)."""
        self.tracking: PostgresTrackingRecorder = app.factory.tracking_recorder()  # type: ignore[assignment]
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.publisher: BatchPublisher | None = None
        self.active = asyncio.Event()
        self.published = 0

    async def _on_disconnect(self) -> None:
        # The acks in flight will not come: the batch fails now, not at the ack timeout.
        if self.publisher is not None:
            self.publisher.fail(
                ConnectionError("the NATS connection dropped before the stream acknowledged")
            )

    async def connect(self) -> JetStreamContext:
        if self.js is None:
            self.nc = await nats.connect(
                self.nats_url,
                name=f"c360-relay-{self.source}",
                max_reconnect_attempts=-1,
                reconnect_time_wait=RECONNECT_WAIT,
                disconnected_cb=self._on_disconnect,
                **natsauth.client_options(self.nats_url),
            )
            self.js = self.nc.jetstream()
            await ensure_stream(self.js, self.stream)
            self.publisher = BatchPublisher(self.nc, window=self.window)
            await self.publisher.open()
        return self.js

    async def close(self) -> None:
        await self.lock.release()
        if self.nc is not None:
            # Every message we care about was acknowledged already: close, don't drain.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), timeout=2)
        self.nc = None
        self.js = None
        self.publisher = None
        self.active.clear()

    def position(self) -> int:
        return self.tracking.max_tracking_id(RELAY) or 0

    async def publish_batch(self, after: int) -> int:
        """Publish the events after a position and wait for every ack; returns the last one."""
        await self.connect()
        rows = await asyncio.to_thread(
            self.app.event_recorder.select_with_metadata, after, self.batch_size
        )
        if not rows:
            return after
        tracing = telemetry.enabled()
        tracer = telemetry.tracer("c360.relay")
        assert self.publisher is not None
        self.publisher.reset()  # a drop while idle does not fail this batch
        for notification, meta in rows:
            stored = StoredEnvelope(self.app, self.contract, notification, meta)
            subject = stored.subject
            if not tracing:  # no span to make: the stored trace context travels as it is
                await self._publish(stored, meta.traceparent, meta.tracestate)
                continue
            parent = telemetry.context_from(meta.traceparent, meta.tracestate)
            with tracer.start_as_current_span(
                f"publish {subject}", context=parent, kind=trace.SpanKind.PRODUCER
            ) as span:
                span.set_attribute("messaging.system", "nats")
                span.set_attribute("c360.source_position", notification.id)
                traceparent, tracestate = telemetry.current_trace_headers()
                await self._publish(stored, traceparent, tracestate)
        await self._acknowledged()
        self.published += len(rows)
        return rows[-1][0].id

    async def _publish(self, stored: StoredEnvelope, traceparent: str, tracestate: str) -> None:
        """Publish one stored event (its ack to come). The envelope is the stored one, byte for
        byte what the catch-up read serves (its trace context the command's); the headers carry
        `traceparent`/`tracestate`, the producer span's when tracing is on, and the stream
        expected to store it."""
        assert self.publisher is not None
        position = stored.notification.id
        headers = {
            "Nats-Msg-Id": envelope.msg_id(self.source, position),
            "Nats-Expected-Stream": self.stream.name,
        }
        if traceparent:
            headers["traceparent"] = traceparent
            if tracestate:
                headers["tracestate"] = tracestate
        await self.publisher.publish(
            stored.subject, stored.pack().SerializeToString(), headers=headers
        )

    async def _acknowledged(self) -> None:
        """Wait for every ack of the batch, but not past a dropped connection (the publisher
        fails the batch then: its acks never come, and it is published again from the stored
        position, de-duplicated by its ids) nor past the ack timeout."""
        assert self.publisher is not None
        try:
            await asyncio.wait_for(self.publisher.acknowledged(), self.ack_timeout)
        except TimeoutError:
            self.publisher.reset()
            raise TimeoutError(
                f"the stream did not acknowledge within {self.ack_timeout:.0f} s"
            ) from None

    def advance(self, position: int) -> None:
        """Record that everything up to this position is in the stream."""
        # IntegrityError: already at or past it (a previous holder got there).
        with contextlib.suppress(IntegrityError):
            self.tracking.insert_tracking(Tracking(RELAY, position))

    async def publish_once(self) -> int:
        """One round: publish the next batch, then advance; returns how many were published."""
        start = await asyncio.to_thread(self.position)
        end = await self.publish_batch(start)
        if end > start:
            await asyncio.to_thread(self.advance, end)
        return self.published

    async def _wait_for_news(self, stop: asyncio.Event, timeout: float) -> None:
        conn = self.lock.conn
        if conn is None:
            await sleep_or_stop(stop, timeout)
            return

        async def notified() -> None:
            async for _ in conn.notifies(timeout=timeout, stop_after=1):
                break

        await unless_stopped(stop, notified())

    async def run(self, stop: asyncio.Event, *, standby_poll: float = 1.0) -> None:
        """Relay until `stop` is set: stand by until the lock is ours, then publish."""

        async def relay() -> None:
            self.active.set()
            assert self.lock.conn is not None
            await self.lock.conn.execute(f'LISTEN "{self.channel}"')
            position = await asyncio.to_thread(self.position)
            _log.info(
                "relay %s active in pid %d from position %d", self.source, os.getpid(), position
            )
            while not stop.is_set():
                end = await self.publish_batch(position)
                if end > position:
                    await asyncio.to_thread(self.advance, end)
                    position = end
                    continue
                if not await self.lock.still_held():
                    _log.warning("relay %s lost its lock; standing by", self.source)
                    await self.close()
                    return
                await self._wait_for_news(stop, 0.5)

        await lead(
            self.lock,
            stop,
            relay,
            self.close,
            name=f"relay {self.source} (resumes from the stored position)",
            standby_poll=standby_poll,
        )
