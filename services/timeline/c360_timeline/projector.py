"""The timeline projector: a durable JetStream consumer of c360.> feeding the read model.

Messages are acknowledged only after the transaction that applied them (rows plus tracking)
committed; a crash before the ack means redelivery, which the tracking records turn into a
no-op. One projector is active at a time (advisory lock); standbys take over on its death.
It reads through the platform's catch-up consumer: whatever the stream no longer holds (the
projector was away longer than the retention; a rebuild) comes from the services' stores.
When it has caught up, the active projector also sweeps: at-risk flags whose window passed (a
settling minute ago, so that late events of that time are in) are cleared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from opentelemetry import trace

from c360.events.v1 import envelope_pb2
from c360_platform import natsauth, telemetry
from c360_platform.catchup import Batch, CatchUpConsumer, SourceDirectory, StartAt
from c360_platform.cpu import Warmed
from c360_platform.envelope import SUBJECT_ROOT, UnknownEventType, payload_class
from c360_platform.errors import PreconditionFailed, Unavailable
from c360_platform.leader import lead, sleep_or_stop, unless_stopped, wait_at_most
from c360_platform.locks import AdvisoryLock
from c360_platform.streams import RECONNECT_WAIT, StreamSettings, ensure_stream
from c360_timeline.inbound import ErpIntake
from c360_timeline.readmodel import (
    Carry,
    ReadModel,
    build_indexes,
    open_shadow,
    ready_for_search,
    take_over,
)
from c360_timeline.spec import PROJECTOR

_log = logging.getLogger(__name__)
DURABLE = PROJECTOR.name
STATE_INTERVAL = 1.0
"""Seconds between saves of the durable's floor (its watermarks live in the tracking table)."""
REINDEX_PAUSE = 1.0
"""How soon the reindexer looks again for stale search columns when it found none."""
REINDEX_GATHER = 0.25
"""Seconds the reindexer lets the stale profiles of the next batches gather after a look
that did not fill a whole page (`REINDEX_LIMIT`): under a stream of new customers each batch
leaves a few, and one transaction for those of a quarter second costs the projection's
PostgreSQL and process less than one per batch (registrations/s at 16 in flight, /tmp/rb:
398 and 377 without it, 433 and 399 with it). A search fills what is stale itself first."""
REINDEX_LIMIT = 500
"""Profiles a look of the reindexer fills at most (a full page: it looks again at once)."""
SWEEP_EVERY = 5.0
"""Seconds between sweeps of expired at-risk flags (only while caught up)."""
SETTLE = timedelta(seconds=60)
"""A flag clears in the read model this long after its window passed."""


REBUILD_BATCH = 1024
"""Events per transaction while a rebuild replays (live projection uses `batch_size`)."""
FILL_PAGE = 1000
"""Profiles per transaction as a rebuild fills the search columns its replay left stale."""
FILL_IN_FLIGHT = 3
"""Pages of that fill under way at once: one's keys asked for while another's columns are
made and a third's written."""


@dataclass(frozen=True)
class RebuildProgress:
    """How far a rebuild is: its events, then the search columns of its profiles."""

    applied: int
    total: int
    """Events applied, of about how many (the streams' messages; exact at the end)."""
    indexed: int = 0
    to_index: int = 0
    """Profiles whose search columns it filled, of how many its replay left stale (the
    customers whose keys it did not hold): it takes over once they are filled."""


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
        directory: SourceDirectory | None = None,
    ) -> None:
        self.view = view
        self.nats_url = nats_url
        self.stream = stream or StreamSettings.from_env()
        self.durable = durable
        self.batch_size = batch_size
        self.batches_in_flight = 1
        """Two while a rebuild replays: it fetches a batch while it applies the one before."""
        self.idle_wait = 1.0
        """Seconds a fetch waits for new events before the loop looks around (its lock, the
        sweep); a stop or a rebuild ends the wait at once."""
        self.directory = directory or SourceDirectory({})
        self.postgres_url = postgres_url
        self.lock = AdvisoryLock(postgres_url, f"c360.projector.{durable}")
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.consumer: CatchUpConsumer | None = None
        # What ERP systems publish (erp.>), followed beside c360's own events.
        # Both feeds write profiles; one transaction at a time, so that two first events of
        # a customer never both start from an empty profile.
        self.writing = asyncio.Lock()
        self.intake = ErpIntake(view, batch_size=batch_size, writing=self.writing)
        self.mutex = asyncio.Lock()
        self.wanted = asyncio.Event()
        """Set while a rebuild waits for the feeds' mutexes: their idle waits end at once."""
        self.active = asyncio.Event()
        self.applied = 0
        self.search_pool = Warmed(
            ready_for_search,
            ready_log="search columns of stale profiles: made in process %d of the CPU pool",
            off_log="the CPU pool makes no search columns (%s); making them here",
        )
        self.left_stale = asyncio.Event()
        """Set when a batch left search columns stale (wakes the reindexer at once; others
        are found by its look every REINDEX_PAUSE)."""
        self.rebuilding = False
        """A rebuild runs: it fills its model's search columns itself, after its replay (the
        reindexer beside it only took the interpreter from the replay)."""
        self._saved_at = 0.0
        self.next_sweep = 0.0
        self._connecting = asyncio.Lock()
        self._handled = 0
        """Where the next durable starts: after the messages a rebuild applied (0: from the
        start, dropping what the read model's tracking holds)."""

    async def connect(self) -> None:
        # Both feeds' loops connect on their first turn: one connection, not one each.
        async with self._connecting:
            await self._connect()

    async def _connect(self) -> None:
        if self.js is None:
            self.nc = await nats.connect(
                self.nats_url,
                name=f"c360-projector-{self.durable}",
                max_reconnect_attempts=-1,
                reconnect_time_wait=RECONNECT_WAIT,
                **natsauth.client_options(self.nats_url),
            )
            self.js = self.nc.jetstream()
            await ensure_stream(self.js, self.stream)
        if self.intake.js is None:
            await self.intake.open(self.js)
        if self.consumer is None:
            consumer = CatchUpConsumer(
                self.js,
                self.stream,
                self.durable,
                f"{SUBJECT_ROOT}.>",
                self.directory,
                batch_size=self.batch_size,
                batches_in_flight=self.batches_in_flight,
            )
            # The read model's tracking says how far each source is applied.
            marks = await asyncio.to_thread(self.view.applied_positions)
            handled, self._handled = self._handled, 0
            await consumer.open(StartAt.beginning(handled), watermarks=marks)
            self.consumer = consumer

    async def close(self) -> None:
        await self.lock.release()
        if self.consumer is not None:
            await self.consumer.close()
        self.intake.close()
        if self.nc is not None:
            # Every message we care about was acknowledged already: close, don't drain.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), timeout=2)
        self.nc = self.js = self.consumer = None
        self.active.clear()

    async def process_batch(
        self,
        timeout: float = 1.0,
        stop: asyncio.Event | None = None,
        pause: asyncio.Event | None = None,
    ) -> int:
        """Take one batch (from the stream, or from the stores while healing a gap), apply
        it, then ack it. Returns how many events and messages it held. Waiting for a batch
        (not applying one) ends early when `stop` (or `pause`: a rebuild wants the feed) is
        set."""
        await self.connect()
        assert self.consumer is not None
        waiting = self.consumer.next_batch(timeout)
        found = await (unless_stopped(stop, waiting, pause) if stop is not None else waiting)
        if found is None:
            return 0
        return await self.apply_batch(found)

    async def apply_batch(self, batch: Batch, *, traced: bool = True) -> int:
        """Apply a batch the consumer handed out, then ack it; how many it held. Each event
        applied is a span of its command's trace unless `traced` is False (a rebuild's replay
        of the whole history: a span each would flood the tracing backend with old traces)."""
        envelopes = await self._envelopes(batch)
        tracer = telemetry.tracer("c360.projector")
        spans = [
            tracer.start_span(
                "project " + e.event_type,
                context=telemetry.context_from(e.traceparent, e.tracestate),
                kind=trace.SpanKind.CONSUMER,
            )
            for e in (envelopes if traced else ())
        ]
        try:
            applied = 0
            if envelopes:
                async with self.writing:
                    applied = await asyncio.to_thread(self.view.apply, envelopes)
        finally:
            for span in spans:
                span.end()
        await self._committed(batch, applied)
        return len(batch)

    async def _envelopes(self, batch: Batch) -> list[envelope_pb2.Envelope]:
        """The batch's envelopes this timeline can apply (what is not one is dropped)."""
        assert self.consumer is not None
        for msg in batch.undecodable:
            _log.error("dropping a message on %s that is not an envelope", msg.subject)
            await msg.term()
        envelopes: list[envelope_pb2.Envelope] = []
        for event in batch.events:
            try:
                payload_class(event.envelope)
            except UnknownEventType as exc:
                # A newer contract than this timeline knows: upgrade it, then rebuild.
                _log.error(
                    "skipping %s:%d of unknown type %s",
                    event.envelope.source,
                    event.envelope.source_position,
                    exc,
                )
                continue
            envelopes.append(event.envelope)
        return envelopes

    async def _committed(self, batch: Batch, applied: int) -> None:
        """After a batch's transaction committed: ack it (the tracking table holds the
        watermarks; the durable keeps its floor, now and then)."""
        assert self.consumer is not None
        now = time.monotonic()
        save = self.consumer.filling or now - self._saved_at > STATE_INTERVAL
        await self.consumer.commit(batch, save=save)
        if save:
            self._saved_at = now
        self.applied += applied
        if self.view.take_stale_written():
            self.left_stale.set()

    async def run(self, stop: asyncio.Event, *, standby_poll: float = 1.0) -> None:
        """Project until `stop` is set: stand by until the lock is ours, then follow both
        feeds (and sweep while caught up)."""

        async def project() -> None:
            self.active.set()
            done = asyncio.Event()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._follow_inbound(stop, done))
                group.create_task(self._reindex(stop, done))
                try:
                    while not stop.is_set():
                        async with self.mutex:
                            fetched = await self.process_batch(
                                self.idle_wait, stop=stop, pause=self.wanted
                            )
                            if fetched == 0 and time.monotonic() >= self.next_sweep:
                                await self.sweep()
                        if fetched == 0 and not await self.lock.still_held():
                            _log.warning("projector lost its lock; standing by")
                            break
                finally:
                    done.set()

        await lead(
            self.lock,
            stop,
            project,
            self.close,
            name="projector (resumes from the durable consumer)",
            standby_poll=standby_poll,
        )

    async def _reindex(self, stop: asyncio.Event, done: asyncio.Event) -> None:
        """Beside the projection: fill the search columns it left stale (the customers whose
        keys it did not hold), asking for the keys off its path."""
        while not stop.is_set() and not done.is_set():
            if self.rebuilding:
                await sleep_or_stop(stop, REINDEX_PAUSE)
                continue
            # Cleared before the look, not after: a batch that leaves stale columns while
            # the look runs (after its read) wakes the next one.
            self.left_stale.clear()
            try:
                indexed = await asyncio.to_thread(
                    self.view.reindex, REINDEX_LIMIT, pool=self.search_pool.pool
                )
            except BrokenProcessPool as gone:  # its process ended: filled here from now on
                self.search_pool.off(repr(gone))
                continue
            except Exception:  # the key holder or PostgreSQL is away: again shortly
                _log.warning("search columns not filled yet; retrying", exc_info=True)
                indexed = 0
                await sleep_or_stop(stop, 1.0)
            if indexed >= REINDEX_LIMIT:
                # More are stale (a backlog: a rebuild, a bulk import): the next page at once,
                # and a process of the CPU pool made ready to fill the pages after it.
                self.search_pool.warm()
                continue
            if not indexed:
                # Woken by the next batch that left search columns stale (its new customers'
                # keys are fetched at once, usually before the first read of them asks), else
                # a look now and then (a batch whose keys were at hand leaves none: no look).
                await wait_at_most(self.left_stale.wait(), REINDEX_PAUSE)
            # What the batches of the next moment leave, filled together.
            await sleep_or_stop(stop, REINDEX_GATHER)

    async def _follow_inbound(self, stop: asyncio.Event, done: asyncio.Event) -> None:
        """The ERP feed, beside the main one, for as long as this projector is active."""
        while not stop.is_set() and not done.is_set():
            async with self.intake.mutex:
                await self.connect()
                await self.intake.process_batch(self.idle_wait, stop=stop, pause=self.wanted)

    async def sweep(self) -> int:
        """Clear the at-risk flags whose window passed (SETTLE ago); returns how many."""
        self.next_sweep = time.monotonic() + SWEEP_EVERY
        async with self.writing:
            return await asyncio.to_thread(self.view.sweep, datetime.now(UTC) - SETTLE)

    async def rebuild(self) -> AsyncIterator[RebuildProgress]:
        """Replay every event into a new read model beside the live one, fill the search
        columns its replay left stale and build its read path's indexes, then make it the
        live one in one transaction, yielding its progress. Queries answer from the live
        model all along (as it stood when the rebuild began) and from the new one after.

        The same path as any new subscriber from the start: the stream, and before it, what
        only the services' stores still hold. `total` is an estimate (the stream's messages)
        until the end, when it is the number of events applied."""
        if not self.active.is_set():
            raise PreconditionFailed("this replica is not the active projector; retry")
        # The feeds hand over their mutexes as soon as they are idle, not when a wait for
        # the next batch times out.
        self.wanted.set()
        try:
            async with self.mutex, self.intake.mutex:
                self.wanted.clear()
                async with contextlib.aclosing(self._rebuild()) as steps:
                    async for progress in steps:
                        yield progress
        finally:
            self.wanted.clear()
            self.rebuilding = False

    async def _rebuild(self) -> AsyncGenerator[RebuildProgress, None]:
        """The rebuild, the feeds' mutexes held."""
        self.rebuilding = True
        # Where its search columns are made, once its events are applied.
        self.search_pool.warm()
        await self.connect()
        assert self.js is not None
        assert self.consumer is not None
        ours = (await self.js.stream_info(self.stream.name)).state
        erp = (await self.js.stream_info(self.intake.stream.name)).state
        total, head = int(ours.messages) + int(erp.messages), int(ours.last_seq)
        live = self.view
        shadow = await asyncio.to_thread(open_shadow, live, self.postgres_url)
        await self._restart_consumers()
        self.view = self.intake.view = shadow
        # Larger batches while replaying: fewer transactions, fetches and acks per event.
        live_batch, self.batch_size = self.batch_size, REBUILD_BATCH
        self.batches_in_flight = 2
        done = False
        indexed = to_index = 0
        ahead: asyncio.Future[Batch] | None = None
        in_commit: tuple[Batch, asyncio.Future[int]] | None = None
        try:
            await self.connect()
            consumer = self.consumer
            assert consumer is not None
            before = self.applied + self.intake.applied
            yield RebuildProgress(0, total)
            # c360's events up to the stream's head as the rebuild began (what comes after
            # is the live consumer's, from the new model's tracking), then ERP's: a fetch
            # that finds a stream empty costs its whole timeout, so none is made of one
            # that is known to be done. The next batch is fetched while this one is applied
            # (two in flight); any failure ends the rebuild, and the consumers start over.
            # Each batch is read and folded while the writes of the one before run in
            # PostgreSQL (the shadow's `carry`), and acknowledged once they committed.
            shadow.carry = Carry()
            async with self.writing:
                while True:
                    if ahead is None:
                        ahead = asyncio.ensure_future(consumer.next_batch(0.5))
                    batch = await ahead
                    ahead = None
                    reached = consumer.floor
                    if len(batch):
                        ahead = asyncio.ensure_future(consumer.next_batch(0.5))
                        reached = consumer.floor_after(batch)
                        envelopes = await self._envelopes(batch)
                        begun = await asyncio.to_thread(shadow.begin, envelopes)
                        if in_commit is not None:
                            await self._written(in_commit)
                        in_commit = (batch, asyncio.ensure_future(asyncio.to_thread(begun.commit)))
                        applied = self.applied + self.intake.applied - before
                        yield RebuildProgress(applied, max(total, applied))
                    if consumer.filling:
                        continue
                    if reached >= head or not (len(batch) or await consumer.pending()):
                        break
                if in_commit is not None:
                    await self._written(in_commit)
                    in_commit = None
            shadow.carry = None
            while True:
                taken = await self.intake.process_batch(timeout=0.1)
                if taken:
                    applied = self.applied + self.intake.applied - before
                    yield RebuildProgress(applied, max(total, applied))
                elif await self.intake.pending() == 0:
                    break
            await self.sweep()
            applied = self.applied + self.intake.applied - before
            async for indexed, to_index in self._fill_search(shadow):
                yield RebuildProgress(applied, applied, indexed, to_index)
            await asyncio.to_thread(build_indexes, shadow)
            await asyncio.to_thread(take_over, live, shadow)
            done = True
            # The live consumer takes its usual batches again, after what the replay applied
            # (not from the stream's start, dropping all of it again).
            handled = consumer.floor
            await self._restart_consumers()
            self._handled = handled
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(BaseException):
                    await ahead
            if in_commit is not None:
                # Its thread goes on to its end (its transaction commits or rolls back):
                # waited for before the consumers and the views change under it.
                with contextlib.suppress(BaseException):
                    await in_commit[1]
            shadow.carry = None
            self.batch_size, self.batches_in_flight = live_batch, 1
            self.view = self.intake.view = live  # its schema now holds the new tables
            if not done:
                # The consumers moved on with the shadow: the live model resumes from
                # its own tracking (what it applied is skipped, nothing is lost).
                await self._restart_consumers()
        applied = self.applied + self.intake.applied - before
        yield RebuildProgress(applied, applied, indexed, to_index)

    async def _fill_search(self, shadow: ReadModel) -> AsyncIterator[tuple[int, int]]:
        """Fill the search columns the replay left stale (its model is written by no one
        else now), in pages, made by the CPU pool's process once it is ready; yields (filled,
        of how many). A key holder that cannot be asked ends it early: the model takes over
        with those columns stale, and the reindexer fills them once it answers (a rebuild
        does not fail for that)."""
        to_index = await asyncio.to_thread(shadow.count_stale)
        indexed, after = 0, None
        pages: set[asyncio.Future[int]] = set()
        yield indexed, to_index
        try:
            while True:
                docs = await asyncio.to_thread(shadow.stale_after, after, FILL_PAGE)
                if docs:
                    after = str(docs[-1]["customer_id"])
                    pool = self.search_pool.pool
                    pages.add(
                        asyncio.ensure_future(asyncio.to_thread(shadow.index_stale, docs, pool))
                    )
                broken = False
                while pages and (len(pages) >= FILL_IN_FLIGHT or not docs):
                    finished, pages = await asyncio.wait(pages, return_when=asyncio.FIRST_COMPLETED)
                    for page in finished:
                        try:
                            indexed += page.result()
                        except BrokenProcessPool as gone:
                            self.search_pool.off(repr(gone))
                            broken = True
                    yield indexed, to_index
                if broken:
                    # Its process ended: made here from now on, looking again from the first
                    # profile (the pages it failed are still stale, the others are not).
                    after = None
                elif not docs:
                    return
        except Unavailable as away:
            left = str(away)
        finally:
            for page in pages:
                with contextlib.suppress(BaseException):
                    await page
        _log.warning(
            "the rebuilt model takes over with %d profiles' search columns stale (%s): the"
            " reindexer fills them",
            to_index - indexed,
            left,
        )

    async def _written(self, writing: tuple[Batch, asyncio.Future[int]]) -> None:
        """Wait for a replayed batch's writes to commit, then acknowledge it."""
        batch, committing = writing
        await self._committed(batch, await committing)

    async def _restart_consumers(self) -> None:
        """Delete both durable consumers; `connect` makes them again from the read model's
        applied positions."""
        if self.consumer is not None:
            await self.consumer.delete()
            self.consumer = None
        await self.intake.delete()
