"""Outbox relay: publishes the store's notification log to JetStream without loss.

The stored position advances only past what JetStream acknowledged storing; a crash in
between re-publishes from it with the same Nats-Msg-Id (<service>:<position>), which
JetStream's duplicate window drops and the projector's tracking ignores beyond it. A backlog
goes out as one fast-ingest batch (acknowledged every 250 messages, stored in order without
gaps), pages read ahead (by a process of the CPU pool, once one is ready) and positions
written while the next page is published; on a stream without fast batches, one ack per
message. While events trickle in, the running relay writes its position at most once a
second (`ADVANCE_EVERY`), not after each. One relay per service is active.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import nats
import psycopg
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import IntegrityError, Mapper, Notification, Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from opentelemetry import trace
from psycopg.rows import tuple_row

from c360_platform import envelope, natsauth, registry, telemetry
from c360_platform.cpu import MapperOf, Warmed
from c360_platform.envelope import Envelope
from c360_platform.leader import lead, sleep_or_stop, unless_stopped, wait_at_most
from c360_platform.locks import AdvisoryLock
from c360_platform.pgstore import EventRecorder
from c360_platform.publish import Batches, BatchPublisher, FastBatchPublisher, FastIngestRefused
from c360_platform.store import EventMetadata, ServiceApplication
from c360_platform.streams import RECONNECT_WAIT, StreamSettings, ensure_stream

_log = logging.getLogger(__name__)
RELAY = "relay"


Rows = list[tuple[Notification, EventMetadata]]
"""Stored events with their metadata, in log order."""
Outgoing = tuple[int, str, bytes, str, str]
"""A stored event as the relay publishes it: its position, subject, envelope (serialized),
and the trace context stored with it (traceparent, tracestate). A tuple: a page of them
comes back from a process of the CPU pool."""
Page = list[Outgoing]
LOCK_CHECK_INTERVAL = 1.0
"""Seconds between two looks at the relay's lock session while it keeps being woken."""
ADVANCE_EVERY = 1.0
"""Seconds between two writes of the running relay's position while events trickle in (a
page that is not full at a time): the position is where a successor starts, not a receipt,
and a successor re-publishes at most this much more, which the stream's duplicate window
drops as after any crash. A backlog writes it page by page; a relay with nothing more to
publish, this long after its last write. One write for each command would cost a commit
(a flush) of its own and a thread hop in the relay."""
POOL_AFTER = 20_000
"""A backlog this long (events of one batch, not caught up yet) has a process of the CPU pool
made ready to read pages ahead (`start_pool`): starting one costs 1.4 s of CPU and 1.3 s
(a spawned interpreter importing the service and building its application in memory),
which a shorter backlog, relayed in a couple of seconds, would not win back."""
FAST_FROM = 32
"""A backlog from this many events on goes out as a fast-ingest batch: below it, one ack per
message is sooner (the batch's two round trips cost more than the acks it saves)."""
HEADERS_ALLOWANCE = 1024
"""Bytes kept for a message's headers (its id, the stream expected, the trace context, a
fast batch's own) within the server's max_payload, which counts them with the envelope."""
BLOCKED_RETRY = 60.0
"""Seconds between two tries of a relay stopped at an event too large for the NATS server
(`Unpublishable`): it can only go once an operator has raised the server's max_payload."""


class Unpublishable(Exception):
    """A stored event larger than the NATS server takes (its max_payload): it cannot be
    published, and nothing after it may be (the stream keeps each source in log order, and no
    event is skipped). Stores refuse such events (`store.MAX_EVENT_BYTES`); this is one stored
    before they did, or a server whose max_payload was lowered since."""

    def __init__(self, source: str, position: int, subject: str, size: int, limit: int) -> None:
        self.position = position
        super().__init__(
            f"relay {source}: the event at position {position} ({subject}) is {size} bytes,"
            f" more than the NATS server's max_payload ({limit} bytes with headers): nothing"
            f" from it on is published; raise max_payload (nats.conf) to publish it"
        )


class Contract(Protocol):
    """A service's mapping from its domain events to published messages."""

    def publication(self, event: DomainEventProtocol[UUID]) -> envelope.Publication: ...


class StoredEnvelope:
    """One stored event as it is published: its subject and its envelope.

    The relay and the catch-up read (`c360_platform.eventlog`) both pack through here, so an
    event read from the store is the same message, with the same id, as the one published.
    """

    __slots__ = ("app", "event", "meta", "notification", "publication", "subject")

    def __init__(
        self,
        app: ServiceApplication,
        contract: Contract,
        notification: Notification,
        meta: EventMetadata,
        mapper: Mapper[UUID] | None = None,
    ) -> None:
        """`mapper`: the application's `publishing_mapper`, if the caller holds it already."""
        self.app = app
        self.notification = notification
        self.meta = meta
        self.event = (mapper or app.publishing_mapper).to_domain_event(notification)
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


def outgoing(stored: StoredEnvelope) -> Outgoing:
    """A stored event as the relay publishes it."""
    meta = stored.meta
    return (
        stored.notification.id,
        stored.subject,
        stored.pack().SerializeToString(),
        meta.traceparent,
        meta.tracestate,
    )


@dataclass(frozen=True)
class PageSource:
    """How a process of the CPU pool reads and packs pages of one service's log (see
    `OutboxRelay._read_ahead`): what pickles, no connection and no application. The process
    opens a connection of its own and decodes with an in-memory instance of the service's
    application (`MapperOf`), whose publishing mapper decodes as the service's does."""

    postgres_url: str
    statement: bytes
    """The recorder's notifications-with-metadata statement (after %s, at most %s)."""
    application: MapperOf
    contract: str
    """`module:attribute` of the service's published contract (its `ServiceSpec.contract`)."""
    source: str


_readers: dict[str, psycopg.Connection[Any]] = {}
"""A pool process's connection to each store it reads pages of."""


def _reader(source: PageSource) -> psycopg.Connection[Any]:
    conn = _readers.get(source.postgres_url)
    if conn is None or conn.closed:
        conn = _readers[source.postgres_url] = psycopg.connect(
            source.postgres_url,
            autocommit=True,
            application_name=f"c360 relay {source.source} pages",
            connect_timeout=10,
        )
    return conn


def _contract(reference: str) -> Contract:
    module, _, attribute = reference.partition(":")
    found: Contract = getattr(importlib.import_module(module), attribute)
    return found


def ready_page_source(source: PageSource) -> int:
    """In a pool process: connect and build what `packed_page` needs (the first use imports
    the service's code); returns the process's id."""
    _reader(source)
    source.application.application()
    _contract(source.contract)
    return os.getpid()


def packed_page(source: PageSource, after: int, limit: int) -> Page:
    """In a pool process: the stored events after a position, at most `limit`, packed as the
    relay publishes them (what `OutboxRelay._pack` makes of the same rows)."""
    conn = _reader(source)
    try:
        with conn.cursor(row_factory=tuple_row, binary=True) as cursor:
            cursor.execute(source.statement, (after, limit))
            rows = EventRecorder.with_metadata(cursor.fetchall())
    except psycopg.Error as exc:
        conn.close()
        # psycopg's errors do not all pickle back to the relay's process: the text does.
        raise ConnectionError(f"reading the log after {after}: {exc}") from None
    app = source.application.application()
    assert isinstance(app, ServiceApplication)
    contract, mapper = _contract(source.contract), app.publishing_mapper
    return [outgoing(StoredEnvelope(app, contract, n, meta, mapper)) for n, meta in rows]


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
        pool: Executor | bool = False,
    ) -> None:
        """`pool`: a backlog's pages are read ahead by a process of this pool, or of the CPU
        pool (`True`: `C360_CPU_PROCESSES`), once it is ready (see `_read_ahead`)."""
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
        self.recorder = recorder
        self.channel = recorder.channel_name
        """Where the store NOTIFYs each insert (the relay LISTENs there)."""
        self.tracking: PostgresTrackingRecorder = app.factory.tracking_recorder()  # type: ignore[assignment]
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.publisher: BatchPublisher | None = None
        """One ack per message: for a page of fewer than `FAST_FROM` events (an ack comes
        back one round trip after the message), and where the stream has no fast batches."""
        self.batches: FastBatchPublisher | None = None
        """Fast-ingest batches, where the stream allows them (None for good once a server
        refused one): for a backlog (two round trips, then one ack per 250 messages)."""
        self.fast = True
        self.active = asyncio.Event()
        self.published = 0
        self._ahead: tuple[int, asyncio.Future[Page]] | None = None
        """The page after a position, read while the stream stores the one before it."""
        self._pages: PageSource | None = None
        self._warmed = Warmed(
            ready_page_source,
            ready_log=f"relay {self.source}: pages read ahead in process %d",
            off_log=f"relay {self.source}: the CPU pool reads no pages (%s); reading them here",
            pool=None if isinstance(pool, bool) else pool,
        )
        """The CPU pool's part in reading ahead (a process made ready once a backlog shows)."""
        if pool is False:
            self._warmed.off()
        self.acknowledged = 0
        """The last position the stream acknowledged storing (of this relay's publishing)."""
        self.blocked: int | None = None
        """The position of an event the relay is stopped at (`Unpublishable`), None if none."""
        self._unsaved: int | None = None
        """An acknowledged position not written yet (see ADVANCE_EVERY)."""
        self._saved_at = -ADVANCE_EVERY
        """When (monotonic) the position was last written."""
        self.reader: psycopg.AsyncConnection[Any] | None = None
        """Where pages are read (opened at the first read, closed with the relay)."""

    async def _on_disconnect(self) -> None:
        # The acks in flight will not come: the batch fails now, not at the ack timeout.
        for publisher in (self.publisher, self.batches):
            if publisher is not None:
                publisher.fail(
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
                # Every subject it publishes on is made from its contract's names and every
                # reply subject from its inboxes, none from a caller's text: nats-py's two
                # checks of each message's subjects (against a CRLF in them) are skipped.
                skip_subject_validation=True,
                **natsauth.client_options(self.nats_url),
            )
            self.js = self.nc.jetstream()
            config = await ensure_stream(self.js, self.stream)
            self.publisher = BatchPublisher(self.nc, window=self.window)
            await self.publisher.open()
            if self.fast and config.allow_batched:
                self.batches = FastBatchPublisher(self.nc)
                await self.batches.open()
        return self.js

    async def close(self) -> None:
        if self._ahead is not None:
            await asyncio.gather(self._ahead[1], return_exceptions=True)
            self._ahead = None
        if self._unsaved is not None:  # acknowledged: true whoever holds the lock now
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.advance, self._unsaved)
            self._unsaved = None
        await self.lock.release()
        if self.reader is not None:
            with contextlib.suppress(Exception):
                await self.reader.close()
            self.reader = None
        if self.nc is not None:
            # Every message we care about was acknowledged already: close, don't drain.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), timeout=2)
        self.nc = None
        self.js = None
        self.publisher = None
        self.batches = None
        self.active.clear()

    def position(self) -> int:
        return self.tracking.max_tracking_id(RELAY) or 0

    async def publish_batch(self, after: int) -> int:
        """Publish the page of events after a position and wait for every ack (no position is
        written); returns the last one published."""
        return await self._refusing_fast(self._publish_pages, after, None, 1)

    async def publish_backlog(
        self,
        position: int,
        stop: asyncio.Event | None = None,
        *,
        limit: int | None = None,
        lazy: bool = False,
    ) -> int:
        """Publish page after page from a position until the log has no more (or `stop` is
        set, or about `limit` events were published), writing the position as each page is
        known stored; returns the last position published. `lazy`: the last page's position
        is left to `store_due` if one was written less than ADVANCE_EVERY ago."""
        return await self._refusing_fast(self._publish_pages, position, stop, limit, True, lazy)

    def _due_in(self) -> float:
        """Seconds until an unwritten position is due to be written (0: now)."""
        return max(0.0, self._saved_at + ADVANCE_EVERY - time.monotonic())

    async def store_due(self) -> None:
        """Write the acknowledged position if one is waiting and due."""
        if self._unsaved is not None and self._due_in() == 0:
            position, self._unsaved = self._unsaved, None
            self._saved_at = time.monotonic()
            await asyncio.to_thread(self.advance, position)

    async def _refusing_fast(self, publish: Callable[..., Awaitable[int]], *args: Any) -> int:
        try:
            return await publish(*args)
        except FastIngestRefused:
            # A server that does not take fast batches (the stream's leader may be newer than
            # the server we reach): what it stored is dropped as duplicates the second time.
            _log.warning("relay %s: fast batches refused; one ack per message", self.source)
            self.fast = False
            if self.batches is not None:
                await self.batches.close()
                self.batches = None
            return await publish(*args)

    def _read_ahead(self, after: int) -> asyncio.Future[Page]:
        """The page after a position, read while the one before it is published (a backlog).

        Once a process of the CPU pool is ready, that process reads and packs the page: the
        decoding and packing (some 60 us an event) then run on another core while this one
        publishes (some 25), and a backlog goes out at the pace of the slower of the two,
        not of their sum. Until then (and where there is no pool), the page is read in a
        thread and packed here."""
        pool = self._warmed.pool
        if pool is not None:
            assert self._pages is not None
            try:
                reading = pool.submit(packed_page, self._pages, after, self.batch_size)
            except (BrokenProcessPool, RuntimeError) as gone:  # broken, or shut down
                self._warmed.off(repr(gone))
            else:
                return asyncio.wrap_future(reading)
        return asyncio.ensure_future(self._read_here(after))

    async def _read_here(self, after: int) -> Page:
        rows = await asyncio.to_thread(self.recorder.select_with_metadata, after, self.batch_size)
        return self._pack(rows)

    def _pack(self, rows: Rows) -> Page:
        """Stored events as the relay publishes them, packed in this process."""
        app, contract, mapper = self.app, self.contract, self.app.publishing_mapper
        return [outgoing(StoredEnvelope(app, contract, n, meta, mapper)) for n, meta in rows]

    def _page_source(self) -> PageSource | None:
        """What a pool process needs to read this relay's pages; None where the relay's
        contract is not the one its service declares (nothing a pool process could import)."""
        with contextlib.suppress(KeyError):
            spec = registry.service(self.source)
            if spec.contract and spec.event_contract() is self.contract:
                return PageSource(
                    self.postgres_url,
                    self.recorder.with_metadata_statement(),
                    MapperOf.of(self.app),
                    spec.contract,
                    self.source,
                )
        return None

    def start_pool(self) -> asyncio.Future[int] | None:
        """A long backlog (`POOL_AFTER`): get a process of the CPU pool ready to read pages
        ahead, once (pages go on being read here until it is); the readiness to wait for, if
        it was started now. A relay that only trickles, or catches up soon, never starts one."""
        if self._warmed.state != "unused":
            return None
        source = self._page_source()
        if source is None:
            self._warmed.off()
            return None
        self._pages = source
        return self._warmed.warm(source)

    async def _select(self, after: int) -> Rows:
        """The page after a position, read on the relay's own connection, on its event loop:
        the read after each wake-up (a command or a few), where a thread cost a hop each way
        and its own BEGIN and ROLLBACK."""
        if self.reader is None or self.reader.closed:
            self.reader = await psycopg.AsyncConnection.connect(
                self.postgres_url,
                autocommit=True,
                application_name=f"c360 relay {self.source}",
                connect_timeout=10,
            )
        return await self.recorder.select_with_metadata_async(self.reader, after, self.batch_size)

    async def _page(self, after: int) -> Page:
        """The stored events after a position (read ahead while the page before it was
        published, if it was full)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            position, reading = ahead
            if position == after:
                try:
                    return await reading
                except BrokenProcessPool as gone:  # the pool's process ended: read here
                    self._warmed.off(repr(gone))
            else:
                await asyncio.gather(reading, return_exceptions=True)  # not this page: dropped
        return self._pack(await self._select(after))

    async def _publish_pages(
        self,
        position: int,
        stop: asyncio.Event | None,
        limit: int | None,
        advance: bool = False,
        lazy: bool = False,
    ) -> int:
        """Publish pages after `position` as one batch of the publisher; the batch ends (one
        wait for the stream's acknowledgements) when a page is not full, when `stop` is set
        or when `limit` events were published. With `advance`, the position of each page the
        stream acknowledged is written, in a thread, while the next one is published: one
        write per page, and no wait for the acknowledgements between pages."""
        await self.connect()
        rows, too_large = self._fitting(await self._page(position))
        publisher: Batches | None = self.publisher
        if self.batches is not None and len(rows) >= FAST_FROM:
            publisher = self.batches
        assert publisher is not None
        publisher.reset()  # a drop while idle does not fail this batch
        pages: deque[tuple[int, int, int]] = deque()
        """(messages of the batch through the page, its last position, its events)"""
        writing: asyncio.Future[None] | None = None
        read = 0
        try:
            while True:
                read += len(rows)
                more = len(rows) == self.batch_size and not (stop is not None and stop.is_set())
                if (limit is not None and read >= limit) or too_large is not None:
                    more = False
                if more:
                    # A backlog: the next page is read while this one is published.
                    if read >= POOL_AFTER:
                        self.start_pool()
                    self._ahead = (rows[-1][0], self._read_ahead(rows[-1][0]))
                if rows:
                    await self._publish_rows(publisher, rows)
                    position = rows[-1][0]
                    pages.append((publisher.sent, position, len(rows)))
                if more:
                    stored = publisher.stored
                else:
                    stored = publisher.sent
                    await self._acknowledged(publisher)  # the batch ends: all of it is stored
                through = None
                while pages and pages[0][0] <= stored:
                    _, through, count = pages.popleft()
                    self.published += count
                if through is not None:
                    self.acknowledged = max(self.acknowledged, through)
                if advance and through is not None:
                    if lazy and not more and self._due_in() > 0:
                        self._unsaved = through  # written by `store_due`, within a second
                    else:
                        if writing is not None:
                            await writing
                        self._unsaved, self._saved_at = None, time.monotonic()
                        writing = asyncio.ensure_future(asyncio.to_thread(self.advance, through))
                if too_large is not None:  # what came before it is stored (and advanced)
                    raise too_large
                if not more:
                    return position
                rows, too_large = self._fitting(await self._page(position))
        finally:
            if writing is not None:
                await writing

    def _fitting(self, page: Page) -> tuple[Page, Unpublishable | None]:
        """The page up to its first event the NATS server would refuse as too large, and that
        event's error (None if every event fits)."""
        assert self.nc is not None
        limit = self.nc.max_payload
        for i, (position, subject, data, _, _) in enumerate(page):
            if len(data) + HEADERS_ALLOWANCE > limit:
                return page[:i], Unpublishable(self.source, position, subject, len(data), limit)
        return page, None

    async def _publish_rows(self, publisher: Batches, page: Page) -> None:
        tracing = telemetry.enabled()
        tracer = telemetry.tracer("c360.relay")
        for position, subject, data, traceparent, tracestate in page:
            if not tracing:  # no span to make: the stored trace context travels as it is
                await self._publish(publisher, position, subject, data, traceparent, tracestate)
                continue
            parent = telemetry.context_from(traceparent, tracestate)
            with tracer.start_as_current_span(
                f"publish {subject}", context=parent, kind=trace.SpanKind.PRODUCER
            ) as span:
                span.set_attribute("messaging.system", "nats")
                span.set_attribute("c360.source_position", position)
                producer, state = telemetry.current_trace_headers()
                await self._publish(publisher, position, subject, data, producer, state)

    async def _publish(
        self,
        publisher: Batches,
        position: int,
        subject: str,
        data: bytes,
        traceparent: str,
        tracestate: str,
    ) -> None:
        """Publish one stored event (its ack to come). The envelope is the stored one, byte for
        byte what the catch-up read serves (its trace context the command's); the headers carry
        `traceparent`/`tracestate`, the producer span's when tracing is on, and the stream
        expected to store it."""
        headers = {
            "Nats-Msg-Id": envelope.msg_id(self.source, position),
            "Nats-Expected-Stream": self.stream.name,
        }
        if traceparent:
            headers["traceparent"] = traceparent
            if tracestate:
                headers["tracestate"] = tracestate
        await publisher.publish(subject, data, headers=headers)

    async def _acknowledged(self, publisher: Batches) -> None:
        """Wait for every ack of the batch, but not past a dropped connection (the publisher
        fails the batch then: its acks never come, and it is published again from the stored
        position, de-duplicated by its ids) nor past the ack timeout."""
        if not await wait_at_most(publisher.acknowledged(), self.ack_timeout):
            publisher.reset()
            raise TimeoutError(f"the stream did not acknowledge within {self.ack_timeout:.0f} s")

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

    def _stopped_at(self, blocked: Unpublishable) -> None:
        """An event that cannot be published stops the relay there: said once at ERROR (its
        position, its size, the server's limit), shown as `blocked` (and the metric
        c360_relay_blocked_position), tried again every BLOCKED_RETRY seconds (`run`), never
        skipped: a successor would stop at it too, and a gap is worse than a wait."""
        if self.blocked != blocked.position:
            _log.error("%s", blocked)
        self.blocked = blocked.position

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
            checked = time.monotonic()
            while not stop.is_set():
                try:
                    position = await self.publish_backlog(position, stop, lazy=True)
                    self.blocked = None
                except Unpublishable as blocked:
                    stored = await asyncio.to_thread(self.position)
                    position = max(self.acknowledged, stored)  # everything before it went
                    self._stopped_at(blocked)
                if stop.is_set():
                    break
                # The session holding the lock is looked at once a second, not at every
                # wake-up (one round trip each: at 150 commands/s, a tenth of the relay).
                if time.monotonic() - checked >= LOCK_CHECK_INTERVAL:
                    if not await self.lock.still_held():
                        _log.warning("relay %s lost its lock; standing by", self.source)
                        await self.close()
                        return
                    checked = time.monotonic()
                if self.blocked is not None:
                    await sleep_or_stop(stop, BLOCKED_RETRY)
                else:
                    due = self._due_in() if self._unsaved is not None else 0.5
                    await self._wait_for_news(stop, min(0.5, due))
                await self.store_due()

        await lead(
            self.lock,
            stop,
            relay,
            self.close,
            name=f"relay {self.source} (resumes from the stored position)",
            standby_poll=standby_poll,
        )
