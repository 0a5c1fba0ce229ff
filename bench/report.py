"""The bench report: a rich table on the terminal, bench.json, and PNG plots."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table

from bench.cpu import ms_per_call
from bench.measure import Measure


@dataclass(frozen=True)
class Ratio:
    """How a measure compares with a baseline measure."""

    measure: str
    baseline: str
    latency: bool = True  # also compare p50 / p99 (not only throughput)
    per_item: bool = False  # compare items/s (rows, events) instead of operations/s

    @property
    def name(self) -> str:
        return f"{self.measure}/{self.baseline}"

    def values(self, measures: dict[str, Measure]) -> dict[str, float | None]:
        m, b = measures.get(self.measure), measures.get(self.baseline)
        if m is None or b is None:
            return {}
        if self.per_item:
            return {
                "throughput": _div(
                    m.throughput * m.items_per_op if m.throughput else None,
                    b.throughput * b.items_per_op if b.throughput else None,
                )
            }
        out: dict[str, float | None] = {"throughput": _div(m.throughput, b.throughput)}
        if self.latency:
            out["p50"] = _div(m.ms(50), b.ms(50))
            out["p99"] = _div(m.ms(99), b.ms(99))
        return out


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _x(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}x" if value < 10 else f"{value:,.0f}x"


def _throughput(m: Measure) -> str:
    if m.throughput is None:
        return "-"
    text = f"{m.throughput:,.0f}/s"
    if m.items_per_op != 1:
        text += f"\n({m.throughput * m.items_per_op:,.0f} ev/s)"
    return text


def table(
    measures: dict[str, Measure], ratios: list[Ratio], baselines: set[str], title: str
) -> Table:
    """One row per measure: count, throughput, percentiles, and its ratios to baselines."""
    t = Table(title=title, title_justify="left", show_lines=True)
    t.add_column("measure", no_wrap=True)
    for name in ("count", "err", "throughput", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        t.add_column(name, justify="right", no_wrap=True)
    t.add_column("ratio to baseline", no_wrap=True)
    for name in ("thr", "p50", "p99"):
        t.add_column(name, justify="right", no_wrap=True)
    for key, m in measures.items():
        against: list[list[str]] = []
        for ratio in ratios:
            if ratio.measure != key or ratio.baseline not in measures:
                continue
            v = ratio.values(measures)
            against.append(
                [
                    measures[ratio.baseline].label,
                    _x(v.get("throughput")),
                    _x(v.get("p50")) if ratio.latency else "",
                    _x(v.get("p99")) if ratio.latency else "",
                ]
            )
        columns = (
            ["\n".join(c) for c in zip(*against, strict=True)] if against else ["", "", "", ""]
        )
        t.add_row(
            m.label + (" *" if key in baselines else ""),
            f"{m.count:,}",
            f"{m.error_count:,}" if m.errors else "0",
            _throughput(m),
            _ms(m.ms(50)),
            _ms(m.ms(90)),
            _ms(m.ms(99)),
            _ms(m.max_ms()),
            *columns,
        )
    t.caption = "* baseline.  thr: throughput ratio; p50, p99: latency ratio (lower is better)."
    t.caption_justify = "left"
    return t


def cpu_table(
    cpu: dict[str, dict[str, float]], waits: dict[str, dict[str, float]]
) -> RenderableType:
    """CPU use per phase and process (% of one core), then what PostgreSQL backends did."""
    names: list[str] = []
    for row in cpu.values():
        names.extend(n for n in row if n not in names)
    # The processes that used at least 1 % of a core in some phase (the idle services and
    # relays of a stack would take a column each: thirteen did not fit, every header was cut
    # to its first letter); the others are named below the table.
    busy = [n for n in names if max(row.get(n, 0.0) for row in cpu.values()) >= 1]
    idle = [n for n in names if n not in busy]
    t = Table(
        title="Per phase: CPU in % of one core",
        title_justify="left",
        caption=f"under 1 % of a core in every phase: {', '.join(idle)}" if idle else None,
        caption_justify="left",
    )
    t.add_column("phase", no_wrap=True)
    for name in busy:
        # A header of two short lines ("customer" / "relay"), not one cut short.
        t.add_column(name.replace("-", "\n"), justify="right")
    for phase, row in cpu.items():
        t.add_row(phase, *[f"{row[n]:.0f}" if n in row else "-" for n in busy])
    backends = Table(
        title="Per phase: PostgreSQL backends (average count) by state, the three most common",
        title_justify="left",
    )
    backends.add_column("phase", no_wrap=True)
    backends.add_column("backends")
    for phase in cpu:
        states = waits.get(phase, {})
        top = ", ".join(f"{what} {n:g}" for what, n in list(states.items())[:3] if n >= 0.05)
        backends.add_row(phase, top or "-")
    return Group(t, backends)


def cpu_per_call(
    cpu: dict[str, dict[str, float]], measures: dict[str, Measure]
) -> dict[str, dict[str, float]]:
    """Milliseconds of each process's CPU per successful call, for the phases whose measure is
    a loop of calls (one item each): the phase's CPU (% of one core) over its throughput.
    Where a call's cost goes, process by process (the load generator's own included)."""
    found: dict[str, dict[str, float]] = {}
    for m in measures.values():
        row, throughput = cpu.get(m.label), m.throughput
        if row is None or not throughput or m.items_per_op != 1:
            continue
        found[m.label] = ms_per_call(row, throughput)
    return found


def cpu_per_call_table(per_call: dict[str, dict[str, float]]) -> Table:
    """`cpu_per_call` as a table: the processes that spent at least 0.05 ms a call in some
    phase, and the sum of all of them."""
    names: list[str] = []
    for row in per_call.values():
        names.extend(n for n, ms in row.items() if ms >= 0.05 and n not in names)
    t = Table(
        title="Per call: ms of CPU per successful call (the phase's CPU over its throughput)",
        title_justify="left",
    )
    t.add_column("phase", no_wrap=True)
    t.add_column("all", justify="right")
    for name in names:
        t.add_column(name, justify="right")
    for phase, row in per_call.items():
        cells = [f"{row[n]:.2f}" if n in row else "-" for n in names]
        t.add_row(phase, f"{sum(row.values()):.2f}", *cells)
    return t


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


# --------------------------------------------------------------------------- plots


def plots(measures: dict[str, Measure], out: Path, subtitle: str) -> list[Path]:
    """Latency-by-percentile curves, freshness distribution and timeline, throughputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []

    # 1. latency by percentile, log-log with "nines" on x
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for key in ("echo", "get_timeline", "register", "raw_save_n", "raw_save_1"):
        m = measures.get(key)
        if m is None or m.count == 0:
            continue
        points = m.curve()
        xs = [1.0 / (1.0 - p / 100.0) for p, _ in points]
        ax.plot(xs, [v for _, v in points], label=m.label, linewidth=1.8)
    ticks = [1, 2, 10, 100, 1000, 10000]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%"])
    ax.set_xlim(1, 10000)
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms, log)")
    ax.set_title(f"Latency by percentile\n{subtitle}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path = out / "latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    # 2. freshness: distribution (left) and over the run (right)
    fresh = [
        (k, m) for k, m in measures.items() if k.startswith("fresh_") and m.count > 0 and m.samples
    ]
    if fresh:
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
        for _, m in fresh:
            values = sorted(v for _, v in m.samples)
            ys = [(i + 1) / len(values) * 100 for i in range(len(values))]
            left.step(values, ys, where="post", label=m.label, linewidth=1.6)
        left.set_xscale("log")
        left.set_xlabel("command reply -> visible in timeline (ms, log)")
        left.set_ylabel("% of samples at or below")
        left.set_title("Freshness, cumulative distribution", fontsize=10)
        left.grid(True, which="both", alpha=0.3)
        left.legend(fontsize=8, loc="lower right")
        for _, m in fresh:
            if m.key.endswith("_load"):
                right.plot(
                    [t for t, _ in m.samples],
                    [v for _, v in m.samples],
                    marker=".",
                    linestyle="-",
                    linewidth=0.6,
                    markersize=4,
                    label=m.label,
                )
        right.set_xlabel("seconds into the RegisterCustomer load phase")
        right.set_ylabel("freshness (ms)")
        right.set_title("Freshness during RegisterCustomer load", fontsize=10)
        right.grid(True, alpha=0.3)
        if right.get_legend_handles_labels()[0]:
            right.legend(fontsize=8, loc="upper left")
        fig.suptitle(subtitle, fontsize=9)
        fig.tight_layout()
        path = out / "freshness.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    # 3. throughput bars
    # A batched save counts its customers, so every bar is "customers (or calls) per second".
    bars = [
        (m.label, (m.throughput or 0.0) * m.items_per_op)
        for k, m in measures.items()
        if m.throughput is not None and not k.startswith("fresh_")
    ]
    if bars:
        fig, ax = plt.subplots(figsize=(9, 0.6 * len(bars) + 1.6))
        labels = [b[0] for b in bars]
        values = [b[1] for b in bars]
        ax.barh(labels, values, color="#4C72B0")
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:,.0f}/s", va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("calls per second; for saves, customers stored per second (log)")
        ax.set_title(f"Throughput\n{subtitle}", fontsize=10)
        ax.set_xlim(right=max(values) * 4 if values else 1)
        ax.grid(True, axis="x", which="both", alpha=0.3)
        fig.tight_layout()
        path = out / "throughput.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    # 4. throughput second by second (the last, partial second left out); long phases only
    series = [m for m in measures.values() if m.per_second and int(m.elapsed) >= 4]
    if series:
        fig, axes = plt.subplots(len(series), 1, figsize=(9, 2.2 * len(series) + 0.8))
        for ax, m in zip([axes] if len(series) == 1 else list(axes), series, strict=True):
            full = m.per_second[: max(1, int(m.elapsed))]
            ax.plot(range(len(full)), full, marker=".", linewidth=1.4)
            ax.set_ylabel("per s")
            ax.set_ylim(bottom=0, top=max(full) * 1.15 if max(full) else 1)
            ax.set_title(m.label, fontsize=9, loc="left")
            ax.grid(True, alpha=0.3)
        axes_list = [axes] if len(series) == 1 else list(axes)
        axes_list[-1].set_xlabel("seconds into the measured phase")
        fig.suptitle(f"Throughput second by second\n{subtitle}", fontsize=10)
        fig.tight_layout()
        path = out / "throughput_over_time.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def sweep_plot(by_concurrency: dict[str, list[dict[str, Any]]], out: Path, subtitle: str) -> Path:
    """Throughput (left axis) and p99 latency (right, dashed) against calls in flight; below,
    the CPU a call costs all of the stack's processes at each level (where measured)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_cpu = any(r.get("cpu_ms_per_call_all") for rows in by_concurrency.values() for r in rows)
    fig, axes = plt.subplots(
        2 if with_cpu else 1,
        1,
        figsize=(9, 8.5 if with_cpu else 5.5),
        squeeze=False,
        sharex=True,
        gridspec_kw={"height_ratios": [3, 2]} if with_cpu else None,
    )
    ax = axes[0][0]
    right = ax.twinx()
    ticks = sorted({r["concurrency"] for rows in by_concurrency.values() for r in rows})
    for name, rows in sorted(by_concurrency.items()):
        xs = [r["concurrency"] for r in rows]
        line = ax.plot(xs, [r["per_s"] for r in rows], marker="o", label=f"{name} calls/s")
        right.plot(
            xs,
            [r["p99_ms"] or 0 for r in rows],
            linestyle="--",
            color=line[0].get_color(),
            label=f"{name} p99 ms",
        )
        if with_cpu:
            axes[1][0].plot(
                xs,
                [r.get("cpu_ms_per_call_all") or float("nan") for r in rows],
                marker="o",
                color=line[0].get_color(),
                label=f"{name}: all processes",
            )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_ylabel("calls per second (log)")
    right.set_ylabel("p99 latency (ms), dashed")
    right.set_yscale("log")
    handles = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left", fontsize=8)
    ax.set_title(f"Throughput against concurrency\n{subtitle}", fontsize=10)
    ax.grid(True, alpha=0.3)
    bottom = axes[-1][0]
    if with_cpu:
        bottom.set_ylabel("CPU ms per call")
        bottom.set_ylim(bottom=0)
        bottom.legend(loc="upper right", fontsize=8)
        bottom.grid(True, alpha=0.3)
    bottom.set_xlabel("calls in flight (closed loop)")
    fig.tight_layout()
    path = out / "throughput_vs_concurrency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
