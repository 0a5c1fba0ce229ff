"""Baseline: the bare `eventsourcing` save loop on the same PostgreSQL (no gRPC, no outbox
metadata, no idempotency record): what the library and database give by themselves."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from bench.measure import Measure
from c360_customer.application import CustomerApplication
from c360_customer.domain import Customer, register_customer
from c360_platform.pgstore import ensure_schema, postgres_env

SCHEMA = "bench_raw"


def open_app(postgres_url: str, threads: int) -> CustomerApplication:
    """The customer application on a schema of its own, with a pool for `threads` savers."""
    ensure_schema(postgres_url, SCHEMA)
    return CustomerApplication(env=postgres_env(postgres_url, SCHEMA, pool_size=threads))


def customers(run_id: str, ids: Iterator[int], n: int) -> list[Customer]:
    """`n` freshly registered (unsaved) customers with unique names and e-mails."""
    made: list[Customer] = []
    for _ in range(n):
        i = next(ids)
        made.append(
            register_customer(
                kind="person",
                display_name=f"Raw Customer {run_id} {i}",
                emails=[f"raw.{run_id}.{i}@example.com"],
                phones=[],
                addresses=[],
            )
        )
    return made


class SaveLoop:
    """`threads` threads each calling `app.save(*batch)` with `batch` new customers per save.

    `calibrate()` runs the loop for a while (creating customers inline) to learn its rate;
    `measure()` then pre-creates enough customers for about `seconds` and times only the
    saves, so customer creation (validation) is not counted as store time.
    """

    def __init__(
        self, app: CustomerApplication, run_id: str, ids: Iterator[int], threads: int, batch: int
    ) -> None:
        self.app = app
        self.run_id = run_id
        self.ids = ids
        self.ids_lock = threading.Lock()
        self.threads = threads
        self.batch = batch
        self.done = 0  # saves so far, for the progress bar (approximate across threads)

    def _make(self, n: int) -> list[Customer]:
        with self.ids_lock:
            return customers(self.run_id, self.ids, n)

    def calibrate(self, seconds: float) -> float:
        """Saves per second, with customer creation inline (a warm-up as well)."""
        end = time.monotonic() + seconds
        counts = [0] * self.threads

        def loop(slot: int) -> None:
            while time.monotonic() < end:
                self.app.save(*self._make(self.batch))
                counts[slot] += 1

        started = time.monotonic()
        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(loop, range(self.threads)))
        return sum(counts) / max(time.monotonic() - started, 1e-9)

    def prepare(self, saves: int) -> queue.SimpleQueue[list[Customer]]:
        work: queue.SimpleQueue[list[Customer]] = queue.SimpleQueue()
        for _ in range(saves):
            work.put(self._make(self.batch))
        return work

    def measure(self, work: queue.SimpleQueue[list[Customer]], into: Measure) -> None:
        """Save every prepared batch; record each save's latency and the total wall time."""
        latencies: list[list[int]] = [[] for _ in range(self.threads)]
        self.done = 0

        def loop(slot: int) -> None:
            mine = latencies[slot]
            while True:
                try:
                    batch = work.get_nowait()
                except queue.Empty:
                    return
                t0 = time.perf_counter_ns()
                try:
                    self.app.save(*batch)
                except Exception as exc:  # report, keep going: a baseline, not a test
                    into.fail(f"{type(exc).__name__}: {exc}")
                    continue
                mine.append(time.perf_counter_ns() - t0)
                self.done += 1

        started = time.monotonic()
        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(loop, range(self.threads)))
        into.elapsed += time.monotonic() - started
        for slot in latencies:
            for ns in slot:
                into.record_ns(ns)
