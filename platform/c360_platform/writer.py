"""Group commit: one writer per application saves the commands decided concurrently in as few
transactions as it can.

A command is decided as before (on its own thread: replay check, loads, the aggregate's
command method), and its stored events, idempotency record, metadata and query-table rows
go to the writer (`Writer.write` waits for the answer). The writer thread takes every command
waiting, up to `MAX_BATCH`, and records them with ONE `insert_events` call: one transaction,
one `LOCK TABLE … IN EXCLUSIVE MODE`, one commit flush for the lot. While it commits, the
next batch forms in its queue, so batches grow with the load and a lone command waits for
nobody (no fixed sleep).

One command's conflict must not fail the others: when a batch fails with an integrity error
(a concurrent change of the same aggregate version, a request id recorded already) it is
split in halves and each half retried, down to the command at fault, which alone gets the
error (its caller answers ABORTED, or replays the earlier request). Any other error
(PostgreSQL down) fails the whole batch: each caller answers UNAVAILABLE as it did alone.

A batch waits for the commands taken on but not written yet as it forms (`deciding`), up to
GATHER: with commands in flight, the one whose write arrives first would otherwise go alone
(a transaction is one round trip), and at saturation every command would pay for a
transaction, a commit flush and the relay's and projection's work per transaction of its own.
With none on its way, nothing waits.

Commands on the same aggregate keep their order: the queue is first come, first written,
and events are appended in batch order, so the log order is the order of the writes.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, IntegrityError, StoredEvent

from c360_platform.store import CommandRecorder, SaveContext, check_sizes

MAX_BATCH = 256
"""Commands per transaction at most (a bound on one transaction's size and lock time)."""
GATHER = 0.002
"""Seconds at most a batch waits for the commands on their way as it forms (see above)."""
IDLE_EXIT = 5.0
"""Seconds without work after which the writer thread ends (the next write starts another):
an application that is dropped leaves no thread behind."""


@dataclass
class Write:
    """One command's share of a batch: its events, who asked, its query-table rows."""

    events: Sequence[StoredEvent]
    save: SaveContext | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    done: Future[list[int]] = field(default_factory=Future)
    """Resolved with the notification ids of `events` (in order), or the error."""


@dataclass
class _Expectation:
    """A command a writer's batches wait for until it writes (`Writer.deciding`)."""

    writer: Writer
    settled: bool = False


_EXPECTED: contextvars.ContextVar[_Expectation | None] = contextvars.ContextVar(
    "c360_writer_expected", default=None
)


@dataclass
class WriterStats:
    """What the writer did (for tests, metrics and the bench)."""

    transactions: int = 0
    commands: int = 0
    largest_batch: int = 0
    isolated: int = 0
    """Commands answered with an integrity error of their own after a batch was split."""


class Writer:
    """The group-commit writer of one application's recorder (see the module docstring)."""

    def __init__(
        self,
        recorder: ApplicationRecorder,
        *,
        name: str = "writer",
        max_batch: int = MAX_BATCH,
        gather: float = GATHER,
    ) -> None:
        if not isinstance(recorder, CommandRecorder):
            raise TypeError("the group-commit writer needs a c360 recorder")
        self.recorder: ApplicationRecorder = recorder
        self.name = name
        self.max_batch = max_batch
        self.gather = gather
        self.stats = WriterStats()
        self._queue: deque[Write] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._deciding = 0
        """Commands on their way here (`deciding`) whose writes have not come yet."""

    @contextlib.contextmanager
    def deciding(self) -> Iterator[None]:
        """Around a command from the moment it is taken on (its call's handler, on the event
        loop, or its decision, on a thread) until its write is submitted, or it ends without
        one: a batch forming meanwhile waits for it (up to `gather`). The expectation goes
        with the context (`contextvars`: the command's thread gets the handler's); within
        one, a nested `deciding` adds nothing."""
        if _EXPECTED.get() is not None:
            yield
            return
        expectation = _Expectation(self)
        with self._lock:
            self._deciding += 1
        reset = _EXPECTED.set(expectation)
        try:
            yield
        finally:
            _EXPECTED.reset(reset)
            with self._lock:
                self._settle(expectation)

    def _settle(self, expectation: _Expectation | None) -> None:
        """The command expected wrote, or will not (hold the lock)."""
        if expectation is not None and expectation.writer is self and not expectation.settled:
            expectation.settled = True
            self._deciding -= 1
            self._wake.notify()

    def write(
        self,
        events: Sequence[StoredEvent],
        save: SaveContext | None,
        rows: list[dict[str, Any]] | None = None,
    ) -> list[int]:
        """Record one command's events (blocking until its batch committed); their
        notification ids. Raises the library's IntegrityError if this command conflicts."""
        return self.enqueue(events, save, rows).result()

    def enqueue(
        self,
        events: Sequence[StoredEvent],
        save: SaveContext | None,
        rows: list[dict[str, Any]] | None = None,
    ) -> Future[list[int]]:
        """Queue one command's write (`write` without the wait): a future of its
        notification ids, or of the IntegrityError if this command conflicts."""
        return self.submit(Write(events, save, rows or []))

    def submit(self, item: Write) -> Future[list[int]]:
        """Queue a command's write; its future resolves when its batch has committed. A
        command with an event too large to publish is refused here, alone, before it joins a
        batch (`store.check_sizes`: InvalidArgument)."""
        check_sizes(item.events)
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name} is closed")
            self._queue.append(item)
            self._settle(_EXPECTED.get())
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            else:
                self._wake.notify()
        return item.done

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._wake.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _next_batch(self) -> list[Write] | None:
        with self._lock:
            while not self._queue:
                if self._closed or not self._wake.wait(timeout=IDLE_EXIT):
                    if self._queue:
                        break
                    self._thread = None
                    return None
            gather_until = time.monotonic() + self.gather
            while self._deciding > 0 and len(self._queue) < self.max_batch and not self._closed:
                left = gather_until - time.monotonic()
                if left <= 0:
                    break
                self._wake.wait(left)
            batch: list[Write] = []
            while self._queue and len(batch) < self.max_batch:
                batch.append(self._queue.popleft())
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._write(batch)

    def _write(self, batch: list[Write]) -> None:
        """Record a batch in one transaction; on an integrity error, bisect."""
        try:
            ids = self._insert(batch)
        except IntegrityError as exc:
            if len(batch) == 1:
                self.stats.isolated += 1
                batch[0].done.set_exception(exc)
                return
            middle = len(batch) // 2
            self._write(batch[:middle])
            self._write(batch[middle:])
            return
        except BaseException as exc:  # every caller gets it (PostgreSQL down)
            for item in batch:
                item.done.set_exception(exc)
            return
        self.stats.transactions += 1
        self.stats.commands += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        start = 0
        for item in batch:
            end = start + len(item.events)
            item.done.set_result(list(ids[start:end]))
            start = end

    def _insert(self, batch: list[Write]) -> Sequence[int]:
        events = [e for item in batch for e in item.events]
        rows = [r for item in batch for r in item.rows]
        saves = [(item.save, len(item.events)) for item in batch]
        ids = self.recorder.insert_events(events, c360_batch=saves, c360_rows=rows)
        if ids is None or len(ids) != len(events):
            raise RuntimeError("the recorder did not return a notification id per event")
        return list(ids)
