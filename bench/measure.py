"""Measures (HDR latency histograms, counts, errors) and the closed-loop load generator."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from hdrh.histogram import HdrHistogram
from rich.progress import Progress

LOWEST_US = 1
HIGHEST_US = 120_000_000  # two minutes
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_histogram() -> Any:
    """Latencies in microseconds, 3 significant digits."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, 3)


@dataclass
class Measure:
    """One measured quantity: latencies of successful operations, errors, and wall time."""

    key: str
    label: str
    unit: str = "req"
    items_per_op: int = 1
    hist: Any = field(default_factory=new_histogram)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    samples: list[tuple[float, float]] = field(default_factory=list)
    per_second: list[int] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.hist.get_total_count())

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def throughput(self) -> float | None:
        """Successful operations per second of wall time (None if not a throughput measure)."""
        if self.elapsed <= 0:
            return None
        return self.count / self.elapsed

    def record_ns(self, nanoseconds: int) -> None:
        us = max(LOWEST_US, min(HIGHEST_US, nanoseconds // 1000))
        self.hist.record_value(us)

    def sample(self, at: float, nanoseconds: int) -> None:
        """Record a latency and keep it with its time (seconds since the phase began)."""
        self.record_ns(nanoseconds)
        self.samples.append((round(at, 4), round(nanoseconds / 1e6, 3)))

    def tick(self, at: float) -> None:
        """Count one success in the second `at` (seconds since the phase began) falls in."""
        second = int(at)
        if second >= len(self.per_second):
            self.per_second.extend([0] * (second + 1 - len(self.per_second)))
        self.per_second[second] += 1

    def fail(self, kind: str) -> None:
        self.errors[kind[:160]] += 1

    def ms(self, percentile: float) -> float | None:
        if self.count == 0:
            return None
        return float(self.hist.get_value_at_percentile(percentile)) / 1000.0

    def max_ms(self) -> float | None:
        return float(self.hist.get_max_value()) / 1000.0 if self.count else None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": self.label,
            "unit": self.unit,
            "count": self.count,
            "errors": self.error_count,
            "error_kinds": dict(self.errors),
            "elapsed_s": round(self.elapsed, 3) if self.elapsed else None,
            "throughput_per_s": _round(self.throughput),
            "latency_ms": {
                **{f"p{p:g}": _round(self.ms(p)) for p in PERCENTILES},
                "min": _round(float(self.hist.get_min_value()) / 1000 if self.count else None),
                "mean": _round(float(self.hist.get_mean_value()) / 1000 if self.count else None),
                "max": _round(self.max_ms()),
            },
        }
        if self.items_per_op != 1:
            out["items_per_op"] = self.items_per_op
            out["items_per_s"] = _round(
                self.throughput * self.items_per_op if self.throughput else None
            )
        if self.per_second:
            out["per_second"] = self.per_second
        if self.notes:
            out["notes"] = self.notes
        return out

    def curve(self) -> list[tuple[float, float]]:
        """(percentile, ms) points for a latency-by-percentile plot."""
        if self.count == 0:
            return []
        points: list[tuple[float, float]] = []
        for nines in range(0, 41):
            percentile = 100.0 * (1.0 - 10 ** (-nines / 10.0))
            points.append((percentile, float(self.hist.get_value_at_percentile(percentile)) / 1e3))
        return points


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def rpc_error(exc: grpc.aio.AioRpcError) -> str:
    return f"{exc.code().name}: {exc.details() or ''}"


def describe(exc: Exception) -> str:
    """A short error kind for the report: the gRPC status, else the exception."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return rpc_error(exc)
    return f"{type(exc).__name__}: {exc}"


@contextlib.asynccontextmanager
async def shown(
    progress: Progress, label: str, seconds: float, info: Callable[[], str]
) -> AsyncIterator[None]:
    """A progress bar over `seconds` of wall time whose side text is refreshed from `info`."""
    task = progress.add_task(label, total=max(seconds, 0.001), info="")
    started = time.monotonic()

    async def tick() -> None:
        while True:
            progress.update(task, completed=min(time.monotonic() - started, seconds), info=info())
            await asyncio.sleep(0.2)

    ticker = asyncio.create_task(tick())
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        progress.update(task, total=max(seconds, 0.001), completed=seconds, info=info())


def rate_info(measure: Measure, started: Callable[[], float]) -> Callable[[], str]:
    """Side text for a progress bar: successes, errors and the rate so far."""

    def info() -> str:
        wall = max(time.monotonic() - started(), 1e-3)
        rate = measure.count / wall
        errors = f", {measure.error_count} errors" if measure.errors else ""
        return f"{measure.count} ok{errors}, {rate:,.0f}/s"

    return info


async def closed_loop(
    measure: Measure | None,
    op: Callable[[int], Awaitable[None]],
    *,
    concurrency: int,
    seconds: float,
    ids: Iterator[int],
) -> None:
    """Keep `concurrency` calls in flight for `seconds`; record each into `measure`.

    `measure=None` is a warm-up: calls run, nothing is kept. Each call gets a fresh id.
    """
    started = time.monotonic()
    end = started + seconds

    async def worker() -> None:
        while time.monotonic() < end:
            i = next(ids)
            t0 = time.perf_counter_ns()
            try:
                await op(i)
            except Exception as exc:  # counted and reported: a bench, not a test
                if measure is not None:
                    measure.fail(describe(exc))
                continue
            if measure is not None:
                measure.record_ns(time.perf_counter_ns() - t0)
                measure.tick(time.monotonic() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if measure is not None:
        measure.elapsed += time.monotonic() - started


async def paced_loop(
    measure: Measure,
    op: Callable[[int], Awaitable[None]],
    *,
    rate: float,
    seconds: float,
    ids: Iterator[int],
) -> None:
    """Start a call every 1/`rate` seconds for `seconds` (an open loop: a slow answer does not
    slow the arrivals, as with independent clients); record each into `measure`. Latency is
    taken from the moment a call was due, so falling behind shows in it."""
    started = time.monotonic()
    interval = 1.0 / rate
    pending: set[asyncio.Task[None]] = set()

    async def one(i: int, due_ns: int) -> None:
        try:
            await op(i)
        except Exception as exc:  # counted and reported: a bench, not a test
            measure.fail(describe(exc))
            return
        measure.record_ns(time.perf_counter_ns() - due_ns)
        measure.tick(time.monotonic() - started)

    n = 0
    origin_ns = time.perf_counter_ns()
    while (due := n * interval) < seconds:
        delay = started + due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(next(ids), origin_ns + int(due * 1e9)))
        pending.add(task)
        task.add_done_callback(pending.discard)
        n += 1
    if pending:
        await asyncio.wait(pending)
    measure.elapsed += time.monotonic() - started


def id_source(start: int = 0) -> Iterator[int]:
    """Unique, increasing request numbers shared by every worker of a run."""
    return itertools.count(start)
