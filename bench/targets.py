"""Where c360 stands against its targets (issue 12), each figure beside its target.

A benchmark is not a test: nothing here fails the run. A row the bench does not measure yet
says so instead of showing a number.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.measure import Measure

Facts = dict[str, Any]
Measures = dict[str, Measure]


@dataclass(frozen=True)
class Target:
    """One target: what is measured, its goal (`at_least` or at most `limit`), the figure."""

    what: str
    unit: str
    limit: float
    at_least: bool
    figure: Callable[[Measures, Facts], float | None]
    note: Callable[[Measures, Facts], str] = lambda m, f: ""

    def row(self, measures: Measures, facts: Facts) -> dict[str, Any]:
        try:
            value = self.figure(measures, facts)
        except (KeyError, TypeError, ZeroDivisionError):
            value = None
        if value is None:
            status = "not measured"
        elif (value >= self.limit) if self.at_least else (value <= self.limit):
            status = "meets"
        else:
            status = "misses"
        return {
            "what": self.what,
            "value": None if value is None else round(value, 3),
            "target": f"{'≥' if self.at_least else '≤'} {self.limit:,g}{self.unit}",
            "status": status,
            "note": self.note(measures, facts) if value is not None else "",
        }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _items(m: Measure) -> float | None:
    return None if m.throughput is None else m.throughput * m.items_per_op


def _ms(key: str, p: float) -> Callable[[Measures, Facts], float | None]:
    return lambda m, f: m[key].ms(p) if key in m else None


def _echo_p99(f: Facts, level: int) -> str:
    """The bare echo server's p99 at `level` calls in flight (the sweep), as text."""
    for row in f.get("by_concurrency", {}).get("echo", []):
        if row["concurrency"] == level and row.get("p99_ms") is not None:
            return f"{row['p99_ms']:.1f} ms"
    return "not measured"


def _register_cpu(f: Facts) -> str:
    """The stack's CPU per registration at the fewest and the most calls in flight of the
    sweep, as text: with few in flight each call costs more (bench/README)."""
    rows = [
        r for r in f.get("by_concurrency", {}).get("register", []) if r.get("cpu_ms_per_call_all")
    ]
    if not rows:
        return "not measured"
    low, high = rows[0], rows[-1]
    return (
        f"{low['cpu_ms_per_call_all']:.1f} ms at {low['concurrency']} in flight,"
        f" {high['cpu_ms_per_call_all']:.1f} at {high['concurrency']}"
    )


def _missing(m: Measures, f: Facts) -> float | None:
    return None


TARGETS = [
    Target(
        "RegisterCustomer throughput / bare gRPC echo",
        "x",
        0.6,
        True,
        lambda m, f: _ratio(m["register"].throughput, m["echo"].throughput),
    ),
    Target(
        "RegisterCustomer throughput / raw save loop (one save per event, same concurrency)",
        "x",
        3,
        True,
        lambda m, f: _ratio(m["register"].throughput, m["raw_save_n"].throughput),
    ),
    Target(
        "RegisterCustomer p99 at half of peak throughput",
        " ms",
        25,
        False,
        _ms("register_half", 99),
        lambda m, f: (
            f"paced at {m['register_half'].notes.get('rate_per_s', 0):,.0f}/s,"
            " latency from when each call was due; CPU a registration costs the stack:"
            f" {_register_cpu(f)}"
        ),
    ),
    Target(
        "command → visible in GetTimeline at half of peak, p50",
        " ms",
        15,
        False,
        _ms("fresh_waitfor_half", 50),
        lambda m, f: f"at {m['register_half'].notes.get('rate_per_s', 0):,.0f}/s paced, not 500/s",
    ),
    Target(
        "command → visible in GetTimeline at half of peak, p99",
        " ms",
        100,
        False,
        _ms("fresh_waitfor_half", 99),
        lambda m, f: "same samples",
    ),
    Target(
        "command → visible in GetTimeline, p50",
        " ms",
        15,
        False,
        _ms("fresh_waitfor_load", 50),
        lambda m, f: (
            f"under the RegisterCustomer load ({m['register'].throughput or 0:,.0f}/s),"
            " not a paced 500/s"
        ),
    ),
    Target(
        "command → visible in GetTimeline, p99",
        " ms",
        100,
        False,
        _ms("fresh_waitfor_load", 99),
        lambda m, f: "same samples",
    ),
    Target(
        "GetTimeline first page p99, a customer of 10,000 entries",
        " ms",
        5,
        False,
        _ms("get_timeline_long_one", 99),
        lambda m, f: (
            "one call in flight (the read's own latency, no queue);"
            f" at {f.get('concurrency', 16)} in flight {m['get_timeline_long'].ms(99):.1f} ms,"
            f" where echo's p99 is {_echo_p99(f, int(f.get('concurrency', 16)))}"
        ),
    ),
    Target(
        "GetTimeline p99 with 1,000 idle watches / without",
        "x",
        1.2,
        False,
        lambda m, f: _ratio(m["get_timeline_watched"].ms(99), m["get_timeline"].ms(99)),
        lambda m, f: "'nothing measurable': taken as within 20 %",
    ),
    Target(
        "GetTimeline p99 at 1M stored entries / at 100k",
        "x",
        1.2,
        False,
        lambda m, f: _ratio(m["timeline_large"].ms(99), m["timeline_small"].ms(99)),
        lambda m, f: (
            f"{f['read_scale_entries']:,} entries vs a tenth (--read-scale);"
            f" GetProfile {_ratio(m['profile_large'].ms(99), m['profile_small'].ms(99)):.2f}x"
        ),
    ),
    Target("import rows/s", "/s", 10_000, True, lambda m, f: _items(m["import"])),
    Target(
        "import rows/s / raw batched save",
        "x",
        0.8,
        True,
        lambda m, f: _ratio(_items(m["import"]), _items(m["raw_save_batch"])),
    ),
    Target(
        "timeline rebuild events/s",
        "/s",
        20_000,
        True,
        lambda m, f: f["rebuild"]["per_s"],
        lambda m, f: f"{f['rebuild']['events']:,} events in {f['rebuild']['seconds']} s",
    ),
    Target(
        "relay / raw nats-py async publish",
        "x",
        0.8,
        True,
        lambda m, f: _ratio(f["relay"]["relay_per_s"], f["relay"]["raw_publish_per_s"]),
        lambda m, f: (
            f"{f['relay']['relay_per_s']:,.0f} vs {f['relay']['raw_publish_per_s']:,.0f}"
            f" events/s, {f['relay']['events']:,} events, medians of"
            f" {f['relay'].get('rounds', 1)} alternating rounds"
        ),
    ),
    Target(
        "RegisterCustomer peak over 1-64 in flight / echo's peak",
        "x",
        0.6,
        True,
        lambda m, f: _ratio(
            max(r["per_s"] for r in f["by_concurrency"]["register"]),
            max(r["per_s"] for r in f["by_concurrency"]["echo"]),
        ),
        lambda m, f: "each at its best concurrency (throughput_vs_concurrency.png)",
    ),
    Target(
        "whole stack ready (PostgreSQL, NATS, services)",
        " s",
        10,
        False,
        lambda m, f: f["infra_ready_s"] + f["services_ready_s"],
    ),
    Target(
        "idle service RSS, the largest",
        " MB",
        100,
        False,
        lambda m, f: max(f["idle_rss_mb"].values()),
        lambda m, f: ", ".join(f"{k} {v:.0f}" for k, v in sorted(f["idle_rss_mb"].items())),
    ),
    Target(
        "c360 --help",
        " s",
        0.3,
        False,
        lambda m, f: f["cli_help_s"],
        lambda m, f: "median of 5 runs of the console script",
    ),
    Target(
        "c360 customer get ID (a simple read)",
        " s",
        0.5,
        False,
        lambda m, f: f["cli_read_s"],
        lambda m, f: "median of 5, against the bench's stack",
    ),
]


def rows(measures: Measures, facts: Facts) -> list[dict[str, Any]]:
    return [t.row(measures, facts) for t in TARGETS]


def table(found: list[dict[str, Any]]) -> Table:
    t = Table(title="Where it stands (issue 12's targets)", title_justify="left")
    t.add_column("target of", overflow="fold")
    t.add_column("figure", justify="right", no_wrap=True)
    t.add_column("target", justify="right", no_wrap=True)
    t.add_column("", no_wrap=True)
    t.add_column("note", overflow="fold")
    styles = {"meets": "green", "misses": "red", "not measured": "dim"}
    for r in found:
        value = r["value"]
        shown = "-" if value is None else (f"{value:,.3g}" if value < 100 else f"{value:,.0f}")
        t.add_row(
            r["what"],
            shown,
            r["target"],
            f"[{styles[r['status']]}]{r['status']}[/]",
            r["note"],
        )
    return t


def rss_mb(pids: dict[str, int]) -> dict[str, float]:
    """Resident memory of each process, in MB (VmRSS; Linux)."""
    found: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                found[name] = int(line.split()[1]) / 1024
    return found


def cli_command() -> list[str]:
    """The `c360` console script beside this interpreter (or the module, if not installed)."""
    script = Path(sys.executable).parent / "c360"
    return [str(script)] if script.exists() else [sys.executable, "-m", "c360_cli.main"]


def cli_seconds(*args: str, runs: int = 5) -> float:
    """Median wall time of `c360 ARGS` (the console script beside this interpreter), after
    one run that is not counted. Python may write its bytecode cache, as on a user's machine
    (some sandboxes set PYTHONDONTWRITEBYTECODE, and every start then compiles ~0.25 s)."""
    command = cli_command()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["COLUMNS"] = "100"
    times = []
    for n in range(runs + 1):
        started = time.perf_counter()
        subprocess.run([*command, *args], stdout=subprocess.DEVNULL, check=True, env=env)
        if n:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def cli_verify(postgres_url: str, home: Path, wait: float = 120.0) -> dict[str, Any]:
    """`c360 verify --json` against the bench's database (`home`: a state directory of its
    own, so that an endpoints.json of `make run` in the working directory is not read):
    every stored event of every service in the timeline exactly once, as a user checks it
    after a run. What it printed, with its exit status."""
    env = {**os.environ, "C360_POSTGRES_URL": postgres_url}
    done = subprocess.run(
        [*cli_command(), "--home", str(home), "--json", "verify", "--wait", f"{wait:g}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=wait + 120,
    )
    try:
        found: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        found = {"ok": False, "error": (done.stderr or done.stdout).strip()[-500:]}
    found["exit_status"] = done.returncode
    return found


def cli_help_seconds(runs: int = 5) -> float:
    """Median wall time of `c360 --help`."""
    return cli_seconds("--help", runs=runs)
