"""`make bench`: c360 throughput, latency and freshness, and their baselines, in one run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from bench import pgwait, profile, rawsave, readscale, sweeps, targets
from bench.cpu import CpuMeter
from bench.measure import Measure, closed_loop, id_source, paced_loop, rate_info, shown
from bench.report import (
    Ratio,
    cpu_per_call,
    cpu_per_call_table,
    cpu_table,
    plots,
    sweep_plot,
    table,
    write_json,
)
from bench.scenarios import Clients
from bench.stack import Stack
from c360.customer.v1 import customer_service_pb2 as customer_api
from c360.events.v1 import customer_events_pb2 as events

RESULTS = Path(__file__).resolve().parent / "results"
PROBES_UNDER_LOAD = 2
HALF_PEAK_PROBE_EVERY = 8
"""At half of peak, every this many paced RegisterCustomer calls one is followed by a wait_for
read of the timeline (its freshness): some 13-30 samples/s on 2 cores."""
BASELINES = {"echo", "raw_save_1", "raw_save_n", "raw_save_batch"}
IDLE_WATCHERS = 1000
"""WatchTimeline streams left open (and idle) during the second GetTimeline phase."""
LONG_HISTORY = 10_000
"""Entries of the one customer whose first timeline page is measured on its own."""
READ_SCALE = 1_000_000
"""Entries of the full run's read side at scale (issue 12's figure; `--read-scale`)."""
IDLE_SETTLE_S = 2.0
"""After the services report ready, this long before their idle memory is read."""

RATIOS = [
    Ratio("register", "echo"),
    Ratio("register", "raw_save_n"),
    Ratio("register", "raw_save_1"),
    Ratio("get_timeline", "echo"),
    Ratio("get_timeline_watched", "get_timeline"),
    Ratio("import", "raw_save_batch", latency=False, per_item=True),
]
METHOD_NOTES = [
    "Closed loop: `concurrency` calls in flight on one grpc.aio channel per server, from one"
    " load-generator process; throughput = successful calls / wall time of the phase.",
    "Every server (customer, timeline, echo) runs in a process of its own; PostgreSQL (fsync on)"
    " and NATS too. Load generator and servers share the machine's cores.",
    "RegisterCustomer requests are unique (request id, name, e-mail); the request id makes the"
    " service write its idempotency record, as a retrying client would.",
    "Freshness = command reply -> entry visible in GetTimeline. 'polling' reads without wait_for"
    " every poll_ms; 'wait_for' is one read carrying the reply's consistency token."
    f" Under load, {PROBES_UNDER_LOAD} probers each register one customer at a time beside the"
    " load's calls (theirs are not in the RegisterCustomer row); idle, one prober runs alone.",
    "Raw save baselines: CustomerApplication.save() on schema bench_raw of the same database,"
    " run before the services start; customers are created before the timed saves.",
    "catch_up_s: after the RegisterCustomer load stops, time until its last customer is visible.",
]


@dataclass(frozen=True)
class Config:
    """How long and how hard each phase runs."""

    concurrency: int
    seconds: float
    quick: bool
    poll_ms: float
    batch: int
    out: Path
    plots: bool
    import_rows: int = 20_000
    relay_inline: bool = False
    """The relays inside the services' processes (C360_RELAY=inline), to compare."""
    read_scale: int = 0
    """Timeline entries of the read-side phase (0: skipped); measured at a tenth and at all."""
    profile: bool = False
    """Record each server process with py-spy during every phase (profiles/ in `out`)."""

    @property
    def warmup(self) -> float:
        return min(2.0, max(0.5, 0.2 * self.seconds))

    @property
    def register_seconds(self) -> float:
        return 1.5 * self.seconds

    @property
    def idle_seconds(self) -> float:
        return 0.6 * self.seconds

    @property
    def raw_seconds(self) -> float:
        return 0.5 * self.seconds

    @property
    def calibrate_seconds(self) -> float:
        return max(0.3, 0.15 * self.seconds)


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Measure c360 against a bare gRPC echo server and a raw eventsourcing"
        " save loop; print a table, write bench.json and plots.",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight (16)")
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="measured seconds of a load phase (10; RegisterCustomer gets 1.5x)",
    )
    parser.add_argument("--quick", action="store_true", help="short phases, about 20-30 s in all")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="freshness polling period")
    parser.add_argument("--batch", type=int, default=100, help="customers per batched raw save")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--import-rows",
        type=int,
        default=None,
        help="rows of the bulk import (20,000; quick 4,000)",
    )
    parser.add_argument(
        "--read-scale",
        type=int,
        default=None,
        metavar="ENTRIES",
        help="load ENTRIES timeline entries (10 per customer, straight into the customer"
        " store, relayed and projected) and measure GetTimeline/GetProfile at a tenth and at"
        f" all of them ({READ_SCALE:,}; quick: 0, none; the fill takes some 3-6"
        " minutes on 2 cores)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record every c360 server with py-spy during each phase: the frames they spend"
        " their time in (table and bench.json) and a flame graph each (profiles/); sampling"
        " slows the stack a little, so compare figures of unprofiled runs",
    )
    parser.add_argument(
        "--relay-inline",
        action="store_true",
        help="run each service's outbox relay inside its API process (C360_RELAY=inline),"
        " not in a process of its own as `c360 up` does: to compare the two",
    )
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    seconds = args.seconds if args.seconds is not None else (1.5 if args.quick else 10.0)
    default_scale = 0 if args.quick else READ_SCALE
    if seconds <= 0:
        parser.error("--seconds must be positive")
    return Config(
        concurrency=args.concurrency,
        seconds=seconds,
        quick=args.quick,
        poll_ms=args.poll_ms,
        batch=max(1, args.batch),
        out=args.out,
        plots=not args.no_plots,
        import_rows=args.import_rows or (4_000 if args.quick else 20_000),
        read_scale=max(0, args.read_scale if args.read_scale is not None else default_scale),
        relay_inline=args.relay_inline,
        profile=args.profile,
    )


def new_measures(cfg: Config) -> dict[str, Measure]:
    """Every measure of a run, in the order the table shows them."""
    n = cfg.concurrency
    items = [
        Measure("echo", "gRPC echo"),
        Measure("raw_save_1", "raw save, 1 thread", unit="save"),
        Measure("raw_save_n", f"raw save, {n} threads", unit="save"),
        Measure(
            "raw_save_batch", f"raw save, {cfg.batch}/save", unit="save", items_per_op=cfg.batch
        ),
        Measure("register", "RegisterCustomer"),
        Measure("register_half", "RegisterCustomer, paced at half of peak"),
        Measure("fresh_waitfor_half", "freshness wait_for, half of peak", unit="sample"),
        Measure("get_timeline", "GetTimeline"),
        Measure("get_timeline_watched", f"GetTimeline, {IDLE_WATCHERS:,} idle watches"),
        Measure("get_timeline_long", f"GetTimeline, a customer of {LONG_HISTORY:,} entries"),
        Measure(
            "get_timeline_long_one",
            f"GetTimeline, {LONG_HISTORY:,} entries, 1 in flight",
        ),
        Measure("fresh_visible_load", "freshness poll, load", unit="sample"),
        Measure("fresh_waitfor_load", "freshness wait_for, load", unit="sample"),
        Measure("fresh_visible_idle", "freshness poll, idle", unit="sample"),
        Measure("fresh_waitfor_idle", "freshness wait_for, idle", unit="sample"),
        Measure("import", "ImportCustomers", unit="import", items_per_op=cfg.import_rows),
    ]
    if cfg.read_scale:
        tenth = f"{cfg.read_scale // 10:,}"
        whole = f"{cfg.read_scale:,}"
        items += [
            Measure("timeline_small", f"GetTimeline at {tenth} entries"),
            Measure("profile_small", f"GetProfile at {tenth} entries"),
            Measure("timeline_large", f"GetTimeline at {whole} entries"),
            Measure("profile_large", f"GetProfile at {whole} entries"),
        ]
    return {m.key: m for m in items}


@dataclass
class Run:
    """State shared by the phases of one run."""

    cfg: Config
    stack: Stack
    progress: Progress
    measures: dict[str, Measure]
    run_id: str
    ids: Iterator[int]
    cpu: dict[str, dict[str, float]]
    waits: dict[str, dict[str, float]]
    facts: dict[str, Any]
    addresses: dict[str, str] = field(default_factory=dict)
    profiler: profile.Profiler | None = None

    @contextlib.asynccontextmanager
    async def observe(self, phase: str) -> AsyncIterator[None]:
        """CPU use per process and PostgreSQL backend states while the block runs."""
        meter = CpuMeter(self.stack.pids())
        self.waits[phase] = {}
        profiling = (
            self.profiler.recording(phase, self.stack.pids())
            if self.profiler is not None
            else contextlib.nullcontext()
        )
        meter.start()
        try:
            with profiling:
                async with pgwait.sampled(self.stack.postgres_url, self.waits[phase]):
                    yield
        finally:
            self.cpu[phase] = meter.percent()


async def raw_phase(run: Run, key: str, threads: int, batch: int) -> None:
    """Calibrate, pre-create the customers, then time the saves."""
    cfg = run.cfg
    measure = run.measures[key]
    app = await asyncio.to_thread(rawsave.open_app, run.stack.postgres_url, threads)
    loop = rawsave.SaveLoop(app, run.run_id, run.ids, threads, batch)
    state = {"step": "warm-up"}

    def info() -> str:
        if state["step"] == "timed":
            return f"{loop.done:,} saves"
        return state["step"]

    total = cfg.calibrate_seconds + cfg.raw_seconds
    try:
        async with shown(run.progress, measure.label, total, info):
            rate = await asyncio.to_thread(loop.calibrate, cfg.calibrate_seconds)
            saves = max(10, min(200_000 // batch, round(rate * cfg.raw_seconds)))
            state["step"] = f"creating {saves * batch:,} customers"
            work = await asyncio.to_thread(loop.prepare, saves)
            state["step"] = "timed"
            async with run.observe(measure.label):
                await asyncio.to_thread(loop.measure, work, measure)
    finally:
        await asyncio.to_thread(app.close)
    measure.notes = {"threads": threads, "customers_per_save": batch, "saves": saves}


async def start_services(run: Run) -> None:
    stack = run.stack
    task = run.progress.add_task("start the services and an echo server", total=None, info="")
    started = time.monotonic()
    run.addresses = await stack.start_services({"echo": ["-m", "bench.echo", "--port", "{port}"]})
    run.facts["services_ready_s"] = round(time.monotonic() - started, 2)
    run.progress.update(task, total=1, completed=1, info=f"{run.facts['services_ready_s']} s")
    await asyncio.sleep(IDLE_SETTLE_S)  # started, nothing asked yet: each service idle
    services = {
        name: pid
        for name, pid in stack.pids().items()
        if name not in ("postgres", "nats", "bench", "echo")
    }
    run.facts["idle_rss_mb"] = {k: round(v, 1) for k, v in targets.rss_mb(services).items()}


async def load_phase(
    run: Run,
    key: str,
    op: Callable[[int], Awaitable[None]],
    seconds: float,
    *,
    during: Callable[[float, float], Awaitable[None]] | None = None,
    concurrency: int | None = None,
) -> None:
    """Warm up, then keep `concurrency` (the run's) calls of `op` in flight for `seconds`."""
    cfg = run.cfg
    in_flight = concurrency or cfg.concurrency
    measure = run.measures[key]
    t0 = time.monotonic()
    phase_start = t0 + cfg.warmup

    async def warm() -> None:
        await closed_loop(None, op, concurrency=in_flight, seconds=cfg.warmup, ids=run.ids)

    info = rate_info(measure, lambda: phase_start)

    def text() -> str:
        return "warm-up" if time.monotonic() < phase_start else info()

    async with shown(run.progress, measure.label, cfg.warmup + seconds, text):
        await warm()
        async with run.observe(measure.label):
            origin = time.monotonic()
            jobs: list[Awaitable[None]] = [
                closed_loop(measure, op, concurrency=in_flight, seconds=seconds, ids=run.ids)
            ]
            if during is not None:
                jobs.append(during(origin, origin + seconds))
            await asyncio.gather(*jobs)


async def phases(run: Run) -> None:
    cfg = run.cfg
    n = cfg.concurrency
    await raw_phase(run, "raw_save_1", 1, 1)
    await raw_phase(run, "raw_save_n", n, 1)
    await raw_phase(run, "raw_save_batch", 1, cfg.batch)
    await relay_phase(run)
    await start_services(run)
    clients = Clients(
        run.run_id,
        run.ids,
        run.addresses["customer"],
        run.addresses["timeline"],
        run.addresses["echo"],
        token=run.stack.token,
    )
    poll = cfg.poll_ms / 1000.0
    m = run.measures
    try:
        await load_phase(run, "echo", clients.echo, cfg.seconds)

        async def probe_under_load(origin: float, until: float) -> None:
            probes = [
                clients.freshness(
                    m["fresh_visible_load"],
                    m["fresh_waitfor_load"],
                    until=until,
                    origin=origin,
                    poll=poll,
                )
                for _ in range(PROBES_UNDER_LOAD)
            ]
            await asyncio.gather(*probes)

        await load_phase(
            run, "register", clients.register_op, cfg.register_seconds, during=probe_under_load
        )
        task = run.progress.add_task("timeline catches up after the load", total=None, info="")
        catch_up = await clients.catch_up(poll)
        run.facts["catch_up_s"] = None if catch_up is None else round(catch_up, 3)
        run.facts["customers_registered"] = len(clients.customers)
        run.facts["last_position"] = clients.last_position
        shown_catch_up = "not within 120 s" if catch_up is None else f"{catch_up * 1000:.0f} ms"
        run.progress.update(task, total=1, completed=1, info=shown_catch_up)

        await half_peak_phase(run, clients)
        with contextlib.suppress(subprocess.CalledProcessError):
            run.facts["cli_read_s"] = round(
                await asyncio.to_thread(
                    targets.cli_seconds,
                    "--addr",
                    f"customer={run.addresses['customer']}",
                    "--token",
                    run.stack.token,
                    "customer",
                    "get",
                    clients.customers[0],
                ),
                3,
            )
        idle_started = time.monotonic()

        def idle_info() -> str:
            done = m["fresh_visible_idle"].count + m["fresh_waitfor_idle"].count
            return f"{done} samples"

        idle = "freshness, idle"
        async with shown(run.progress, idle, cfg.idle_seconds, idle_info), run.observe(idle):
            await clients.freshness(
                m["fresh_visible_idle"],
                m["fresh_waitfor_idle"],
                until=idle_started + cfg.idle_seconds,
                origin=idle_started,
                poll=poll,
            )
        await load_phase(run, "get_timeline", clients.get_timeline, cfg.seconds)
        async with clients.idle_watchers(IDLE_WATCHERS):
            await load_phase(run, "get_timeline_watched", clients.get_timeline, cfg.seconds)
        await long_history_phase(run, clients)
        await sweep_phase(run, "echo", clients.echo)
        await sweep_phase(run, "register", clients.register_op)
        await import_phase(run, clients)
        await rebuild_phase(run)
        if cfg.read_scale:
            await read_scale_phase(run, clients)
        await verify_phase(run)
    finally:
        await clients.close()


async def relay_phase(run: Run) -> None:
    """The outbox relay against raw nats-py publishing of the same messages."""
    limit = 5_000 if run.cfg.quick else 20_000
    task = run.progress.add_task("outbox relay vs raw nats-py publish", total=None, info="")
    async with run.observe("relay vs raw publish"):
        found = await sweeps.relay_vs_raw(run.stack.postgres_url, run.stack.nats_url, limit)
    run.facts["relay"] = found
    run.progress.update(
        task,
        total=1,
        completed=1,
        info=f"{found['relay_per_s']:,.0f} vs {found['raw_publish_per_s']:,.0f} events/s",
    )


async def sweep_phase(run: Run, name: str, op: Callable[[int], Awaitable[None]]) -> None:
    """Closed-loop throughput of `op` at 1 ... 64 calls in flight, and the CPU each call
    costs the stack's processes at each level."""
    seconds = 0.8 if run.cfg.quick else 3.0
    warmup = 0.3 if run.cfg.quick else 1.0
    levels = sweeps.LEVELS
    label = f"{name} at 1-64 in flight"
    task = run.progress.add_task(label, total=len(levels), info="")

    def on_level(level: int) -> None:
        run.progress.update(task, completed=levels.index(level), info=f"{level} in flight")

    async with run.observe(label):
        found = await sweeps.concurrency_sweep(
            op, run.ids, seconds, warmup, on_level, pids=run.stack.pids()
        )
    run.facts.setdefault("by_concurrency", {})[name] = found
    best = max(found, key=lambda r: r["per_s"])
    run.progress.update(
        task,
        completed=len(levels),
        info=f"peak {best['per_s']:,.0f}/s at {best['concurrency']}",
    )


async def verify_phase(run: Run) -> None:
    """`c360 verify` on the bench's stack after everything else: each event stored by the
    run (the loads, the import, the read-scale fill) in the timeline exactly once, the
    rebuilt read model included."""
    task = run.progress.add_task("c360 verify", total=None, info="")
    found = await asyncio.to_thread(
        targets.cli_verify, run.stack.postgres_url, run.stack.workdir / "verify-home"
    )
    run.facts["verify"] = found
    shown = "ok" if found.get("ok") else "NOT ok"
    info = f"{shown}: {found.get('stored_events', 0):,} stored events"
    run.progress.update(task, total=1, completed=1, info=info)


async def rebuild_phase(run: Run) -> None:
    """`c360 timeline rebuild`: the read model dropped and rebuilt from everything stored."""
    task = run.progress.add_task("timeline rebuild", total=None, info="")

    def progress(applied: int, total: int) -> None:
        run.progress.update(task, total=total or None, completed=applied, info=f"{applied:,}")

    async with run.observe("timeline rebuild"):
        found = await sweeps.rebuild(run.addresses["timeline"], run.stack.operator_token, progress)
    run.facts["rebuild"] = found
    run.progress.update(task, info=f"{found['per_s'] or 0:,.0f} events/s")


async def long_history_phase(run: Run, clients: Clients) -> None:
    """GetTimeline's first page for one customer with LONG_HISTORY entries (its events saved
    straight into the customer store, relayed and projected)."""
    task = run.progress.add_task(f"a customer of {LONG_HISTORY:,} entries", total=None, info="")
    app = await asyncio.to_thread(readscale.open_store, run.stack.postgres_url)
    try:
        customer_id, position = await asyncio.to_thread(
            readscale.long_history, app, run.run_id, LONG_HISTORY
        )
    finally:
        await asyncio.to_thread(app.close)
    run.progress.update(task, info="relayed and projected ...")
    await clients.visible(customer_id, f"customer:{position}", timeout=600)
    run.progress.update(task, total=1, completed=1, info="visible")
    saved, clients.customers = clients.customers, [customer_id]
    try:
        await load_phase(run, "get_timeline_long", clients.get_timeline, run.cfg.seconds)
        # Its latency alone (one call at a time): what the read costs, without the queue that
        # the closed loop's calls in flight wait in.
        await load_phase(
            run, "get_timeline_long_one", clients.get_timeline, run.cfg.seconds, concurrency=1
        )
    finally:
        clients.customers = saved


async def read_scale_phase(run: Run, clients: Clients) -> None:
    """Fill the timeline to a tenth of `read_scale` entries, measure GetTimeline's first page
    and GetProfile of random filled customers; fill to all of them, measure again."""
    customers = run.cfg.read_scale // readscale.EVENTS_PER_CUSTOMER
    app = await asyncio.to_thread(readscale.open_store, run.stack.postgres_url)
    filled: list[str] = []
    try:
        for size, part in (("small", customers // 10), ("large", customers - customers // 10)):
            label = f"fill to {(len(filled) + part) * readscale.EVENTS_PER_CUSTOMER:,} entries"
            task = run.progress.add_task(label, total=part, info="")
            t0 = time.monotonic()

            def saved(n: int, task: Any = task) -> None:
                run.progress.update(task, completed=n, info=f"{n:,} customers")

            async with run.observe(label):
                ids, position = await asyncio.to_thread(
                    readscale.fill, app, run.run_id, len(filled), part, saved
                )
                filled += ids
                run.progress.update(task, info="relayed and projected ...")
                await clients.visible(ids[-1], f"customer:{position}", timeout=3600)
            fill_s = run.facts[f"read_scale_{size}_fill_s"] = readscale.elapsed_since(t0)
            clients_pool = readscale.sample(filled, 2_000)
            saved_customers, clients.customers = clients.customers, clients_pool
            # Both sizes are read with the sampled customers' keys in the timeline's cache:
            # the large fill takes longer than the cache keeps a key (60 s), the small one
            # does not, and the large phase would time the customer service's GetDataKeys
            # (a customer's first read in a minute) where the small one does not.
            run.progress.update(task, info="each sampled customer read once ...")
            await clients.read_each(clients_pool)
            run.progress.update(task, info=f"{fill_s} s")
            try:
                await load_phase(run, f"timeline_{size}", clients.get_timeline, run.cfg.seconds)
                await load_phase(run, f"profile_{size}", clients.get_profile, run.cfg.seconds)
            finally:
                clients.customers = saved_customers
    finally:
        await asyncio.to_thread(app.close)
    run.facts["read_scale_entries"] = len(filled) * readscale.EVENTS_PER_CUSTOMER


async def half_peak_phase(run: Run, clients: Clients) -> None:
    """RegisterCustomer paced at half of the peak the closed loop reached (an open loop): the
    latency a service at half load gives, and its freshness, taken from the paced calls
    themselves (every HALF_PEAK_PROBE_EVERY-th one's reply is followed by a GetTimeline with
    its consistency token), so that no command beyond the paced rate loads the stack."""
    peak = run.measures["register"].throughput
    if not peak:
        return
    rate = peak / 2
    measure = run.measures["register_half"]
    waited = run.measures["fresh_waitfor_half"]
    seconds = run.cfg.register_seconds
    origin = time.monotonic()
    info = rate_info(measure, lambda: origin)
    label = f"{measure.label} ({rate:,.0f}/s)"
    probes: set[asyncio.Task[None]] = set()

    async def register(i: int) -> None:
        reply = await clients.register(i)
        if i % HALF_PEAK_PROBE_EVERY == 0:
            # Beside the call, not in it: the call's latency ends with its reply.
            replied, at = time.perf_counter_ns(), time.monotonic() - origin
            task = asyncio.create_task(clients.waited(waited, at, replied, reply))
            probes.add(task)
            task.add_done_callback(probes.discard)

    async with shown(run.progress, label, seconds, info), run.observe(measure.label):
        await paced_loop(measure, register, rate=rate, seconds=seconds, ids=run.ids)
        if probes:
            await asyncio.wait(set(probes))
    measure.notes = {"rate_per_s": round(rate, 1), "probed_every": HALF_PEAK_PROBE_EVERY}


async def import_phase(run: Run, clients: Clients) -> None:
    """Stream `import_rows` new customers through ImportCustomers (batched saves), then the
    same rows again (all unchanged); rows/s compares with the raw batched save."""
    measure = run.measures["import"]
    rows = run.cfg.import_rows
    sent = 0

    async def requests() -> AsyncIterator[customer_api.ImportCustomersRequest]:
        nonlocal sent
        for start in range(0, rows, 200):
            chunk = [
                customer_api.ImportRow(
                    row=i + 1,
                    external_key=f"bench-{run.run_id}-import-{i}",
                    kind=events.CUSTOMER_KIND_PERSON,
                    display_name=f"Imported Customer {i}",
                    emails=[f"import.{run.run_id}.{i}@example.com"],
                )
                for i in range(start, min(rows, start + 200))
            ]
            sent += len(chunk)
            yield customer_api.ImportCustomersRequest(rows=chunk)

    passes: dict[str, float] = {}
    task = run.progress.add_task(measure.label, total=2 * rows, info="")
    for n, name in enumerate(("new", "again")):
        sent = 0

        async def tick(offset: int = n * rows, label: str = name) -> None:
            while True:
                done = sent  # noqa: B023 (read live on purpose: the rows sent so far)
                run.progress.update(task, completed=offset + done, info=f"{label}: {done:,} rows")
                await asyncio.sleep(0.2)

        ticker = asyncio.create_task(tick())
        try:
            async with run.observe(f"{measure.label} ({name})"):
                started = time.monotonic()
                reply = await clients.customer.ImportCustomers(requests(), timeout=600)
                passes[name] = time.monotonic() - started
        finally:
            ticker.cancel()
            if name == "new":
                measure.record_ns(int(passes[name] * 1e9))
                measure.elapsed = passes[name]
                measure.notes["created"] = reply.created
            else:
                measure.notes["unchanged"] = reply.unchanged
    run.progress.update(task, completed=2 * rows, info=f"{rows / passes['new']:,.0f} rows/s")
    measure.notes["rows"] = rows
    measure.notes["rows_per_s_new"] = round(rows / passes["new"], 1)
    measure.notes["rows_per_s_again"] = round(rows / passes["again"], 1)


def machine() -> dict[str, Any]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "?"

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "grpcio": version("grpcio"),
        "eventsourcing": version("eventsourcing"),
        "psycopg": version("psycopg"),
        "nats-py": version("nats-py"),
    }


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a log file: room for the whole table
    cfg.out.mkdir(parents=True, exist_ok=True)
    measures = new_measures(cfg)
    cpu: dict[str, dict[str, float]] = {}
    waits: dict[str, dict[str, float]] = {}
    facts: dict[str, Any] = {"concurrency": cfg.concurrency}
    started_at = datetime.now(UTC)
    t0 = time.monotonic()
    run_id = uuid.uuid4().hex[:8]
    interrupted = False
    failure: BaseException | None = None
    run: Run | None = None
    workdir = tempfile.TemporaryDirectory(prefix="c360-bench-")
    stack = Stack(Path(workdir.name), cfg.out / "logs", relay_apart=not cfg.relay_inline)
    console.print(
        f"[bold]c360 bench[/] run {run_id}: concurrency {cfg.concurrency},"
        f" {cfg.seconds:g} s per load phase{' (quick)' if cfg.quick else ''},"
        f" {os.cpu_count()} CPUs"
    )
    try:
        with console.status("timing `c360 --help`"):
            facts["cli_help_s"] = round(targets.cli_help_seconds(), 3)
        infra_started = time.monotonic()
        with console.status("starting PostgreSQL and NATS"):
            stack.start_infra()
        facts["infra_ready_s"] = round(time.monotonic() - infra_started, 2)
        facts["postgres"] = (
            "C360_POSTGRES_URL (fresh database)"
            if os.environ.get("C360_POSTGRES_URL")
            else "embedded"
        )
        facts["nats"] = "NATS_URL" if stack.shared_nats else "embedded"
        if stack.shared_nats:
            console.print(
                "[yellow]warning:[/] NATS_URL is set: the bench's services share its C360 stream"
                " and 'timeline' consumer with whatever else uses that server; results and that"
                " deployment may both be disturbed."
            )
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description:<42}"),
            BarColumn(bar_width=30),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
        )
        with Progress(*columns, console=console) as progress:
            run = Run(cfg, stack, progress, measures, run_id, id_source(), cpu, waits, facts)
            if cfg.profile:
                executable = profile.py_spy()
                if executable is None:
                    raise RuntimeError("--profile needs py-spy (a dev dependency: make venv)")
                run.profiler = profile.Profiler(cfg.out / "profiles", executable)
            asyncio.run(phases(run))
    except KeyboardInterrupt:
        interrupted = True
        console.print("[yellow]interrupted; reporting what was measured[/]")
    except Exception as exc:
        failure = exc
        console.print(f"[red]bench failed:[/] {type(exc).__name__}: {exc}")
    finally:
        with console.status("stopping servers"):
            stack.stop()
        workdir.cleanup()

    shown_measures = {k: m for k, m in measures.items() if m.count or m.errors}
    subtitle = (
        f"concurrency {cfg.concurrency}, {os.cpu_count()} CPUs, "
        f"{started_at:%Y-%m-%d %H:%M} UTC, run {run_id}"
    )
    console.print()
    console.print(table(shown_measures, RATIOS, BASELINES, f"c360 bench ({subtitle})"))
    facts["stop_s"] = stack.stop_seconds
    if "catch_up_s" in facts:
        value = facts["catch_up_s"]
        shown_value = "not within 120 s" if value is None else f"{value * 1000:.0f} ms"
        console.print(f"timeline caught up {shown_value} after the RegisterCustomer load stopped")
    verified = facts.get("verify")
    if verified is not None:
        missing = (verified.get("missing") or {}).get("count", "?")
        doubled = (verified.get("doubled") or {}).get("count", "?")
        stored = verified.get("stored_events", 0)
        if verified.get("ok"):
            console.print(
                f"c360 verify after the run: ok, {stored:,} stored events, each in the"
                " timeline once"
            )
        else:
            console.print(
                f"[red]c360 verify after the run: NOT ok[/] ({missing} missing, {doubled}"
                f" doubled of {stored:,} stored events) {verified.get('error', '')}"
            )
    slow = {k: v for k, v in stack.stop_seconds.items() if v > 5}
    if slow:
        console.print(f"[yellow]slow graceful stop after SIGTERM (s):[/] {slow}")
    per_call = cpu_per_call(cpu, shown_measures)
    if cpu:
        console.print(cpu_table(cpu, waits))
    if per_call:
        console.print(cpu_per_call_table(per_call))
    profiles = run.profiler.found if run is not None and run.profiler is not None else {}
    if profiles:
        console.print(profile.table(profiles))
    standing = targets.rows(shown_measures, facts)
    console.print(targets.table(standing))
    written = plots(shown_measures, cfg.out, subtitle) if cfg.plots and shown_measures else []
    if cfg.plots and facts.get("by_concurrency"):
        written.append(sweep_plot(facts["by_concurrency"], cfg.out, subtitle))
    doc: dict[str, Any] = {
        "schema": "c360-bench/1",
        "run_id": run_id,
        "started_at": started_at.isoformat(),
        "wall_s": round(time.monotonic() - t0, 1),
        "interrupted": interrupted,
        "failure": None if failure is None else f"{type(failure).__name__}: {failure}",
        "config": {**asdict(cfg), "out": str(cfg.out), "warmup_s": cfg.warmup},
        "machine": machine(),
        "facts": facts,
        "measures": {k: m.summary() for k, m in shown_measures.items()},
        "ratios": {r.name: r.values(shown_measures) for r in RATIOS},
        "targets": standing,
        "cpu_percent_of_one_core": cpu,
        "cpu_ms_per_call": per_call,
        "postgres_backends_by_state": waits,
        "freshness_samples_ms": {
            k: m.samples for k, m in shown_measures.items() if k.startswith("fresh_")
        },
        "plots": [p.name for p in written],
        "profiles": profiles,
        "method": METHOD_NOTES,
    }
    json_path = cfg.out / "bench.json"
    write_json(json_path, doc)
    console.print(f"wrote {json_path}" + "".join(f", {p.name}" for p in written))
    if stack.log_dir.exists():
        console.print(f"server logs: {stack.log_dir}")
    return 1 if failure is not None or interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
