"""Sampling profiles of the stack's processes while a bench phase runs (`--profile`): py-spy
records each c360 server process (its forked workers too) in raw form, the collapsed stacks
of its busy threads; this module reads them back as the frames each process spends its time
in (self: the frame itself runs; total: the frame is on the stack) and draws each one's
flame graph (an icicle: callers above callees, width = share of the samples).

py-spy samples from outside the process, so the profiled code is unchanged; it slows the
stack a little (100 samples/s per process), so a profiled run's figures are not the bench's.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RATE = 100
"""Samples per second and process."""
NOT_PROFILED = frozenset({"postgres", "nats", "bench", "echo"})
"""Processes that are not c360's Python servers (or are the load itself)."""
_LINE = re.compile(r" \([^()]*:\d+\)$")


def py_spy() -> str | None:
    """The py-spy executable (a dev dependency), or None."""
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def frame_name(frame: str) -> str:
    """`save (eventsourcing/application.py:123)` -> `save (eventsourcing/application.py)`."""
    return _LINE.sub(lambda m: m.group(0).rsplit(":", 1)[0] + ")", frame)


@dataclass
class Stacks:
    """One process's collapsed stacks (frame;frame;... -> samples)."""

    counts: Counter[tuple[str, ...]] = field(default_factory=Counter)

    @classmethod
    def read(cls, path: Path) -> Stacks:
        found = cls()
        if not path.exists():
            return found
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = tuple(frame_name(f) for f in stack.split(";") if f)
            # py-spy puts the thread ("process 12:"/"thread 0x…") first: keep the code only.
            while frames and (frames[0].startswith("process ") or frames[0].startswith("thread ")):
                frames = frames[1:]
            if frames:
                found.counts[frames] += int(count)
        return found

    @property
    def samples(self) -> int:
        return sum(self.counts.values())

    def top(self, n: int = 12) -> dict[str, list[tuple[str, float]]]:
        """The `n` frames with the most samples, as a share of all: running themselves
        (self), on the stack at all (total), and c360's own code on the stack (c360)."""
        own: Counter[str] = Counter()
        total: Counter[str] = Counter()
        ours: Counter[str] = Counter()
        for frames, count in self.counts.items():
            own[frames[-1]] += count
            for frame in set(frames):
                total[frame] += count
                if "(c360_" in frame and "/serve.py" not in frame and "rpc.py)" not in frame:
                    ours[frame] += count
        whole = self.samples or 1
        return {
            name: [(f, round(100 * c / whole, 1)) for f, c in counter.most_common(n)]
            for name, counter in (("self", own), ("total", total), ("c360", ours))
        }


class Profiler:
    """py-spy recorders for the processes of one phase."""

    def __init__(self, folder: Path, executable: str) -> None:
        self.folder = folder
        self.executable = executable
        self.found: dict[str, dict[str, Any]] = {}
        """Phase -> process -> {"samples", "self", "total", "raw", "plot"}."""

    @contextlib.contextmanager
    def recording(self, phase: str, pids: dict[str, int]) -> Any:
        where = self.folder / slug(phase)
        where.mkdir(parents=True, exist_ok=True)
        recorders: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        for name, pid in pids.items():
            if name in NOT_PROFILED:
                continue
            raw = where / f"{slug(name)}.txt"
            command = [
                self.executable,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(RATE),
                "--format",
                "raw",
                "--subprocesses",
                # Only the thread holding the GIL: where the interpreter's one core goes (a
                # thread waiting on a socket or a lock is not sampled).
                "--gil",
                "--nonblocking",
                "--output",
                str(raw),
            ]
            recorders[name] = (
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                raw,
            )
        try:
            yield
        finally:
            for process, _ in recorders.values():
                process.send_signal(signal.SIGINT)  # py-spy writes what it has, then exits
            for process, _ in recorders.values():
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
            summary: dict[str, Any] = {}
            for name, (_, raw) in recorders.items():
                stacks = Stacks.read(raw)
                if not stacks.samples:
                    continue
                plot = flame_plot(stacks, where / f"{slug(name)}.png", f"{name}: {phase}")
                summary[name] = {
                    "samples": stacks.samples,
                    **stacks.top(),
                    "raw": str(raw.relative_to(self.folder.parent)),
                    "plot": str(plot.relative_to(self.folder.parent)),
                }
            self.found[phase] = summary


def flame_plot(stacks: Stacks, path: Path, title: str, least: float = 0.005) -> Path:
    """An icicle flame graph of `stacks` (frames narrower than `least` of the whole left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    whole = stacks.samples
    tree: dict[str, Any] = {"n": 0, "kids": {}}
    for frames, count in stacks.counts.items():
        node = tree
        node["n"] += count
        for frame in frames:
            node = node["kids"].setdefault(frame, {"n": 0, "kids": {}})
            node["n"] += count
    boxes: list[tuple[float, int, float, str]] = []

    def lay(node: dict[str, Any], x: float, depth: int) -> None:
        for frame, kid in sorted(node["kids"].items(), key=lambda kv: -kv[1]["n"]):
            width = kid["n"] / whole
            if width < least:
                continue
            boxes.append((x, depth, width, frame))
            lay(kid, x, depth + 1)
            x += width

    lay(tree, 0.0, 0)
    depth = max((d for _, d, _, _ in boxes), default=0) + 1
    fig, ax = plt.subplots(figsize=(16, max(4.0, 0.22 * depth + 1)))
    colours = plt.get_cmap("YlOrRd")
    for x, d, width, frame in boxes:
        ax.add_patch(
            Rectangle(
                (x, d),
                width,
                0.95,
                facecolor=colours(0.25 + 0.6 * ((zlib.crc32(frame.encode()) % 97) / 97)),
                edgecolor="white",
                linewidth=0.3,
            )
        )
        label = frame.split(" (")[0]
        if width > 0.04:
            ax.text(x + 0.002, d + 0.45, label[: int(width * 180)], fontsize=6, va="center")
    ax.set_xlim(0, 1)
    ax.set_ylim(depth, 0)
    ax.set_yticks([])
    ax.set_xlabel(f"share of {whole:,} samples ({RATE}/s; busy threads only)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(found: dict[str, dict[str, Any]], rows: int = 5, least: int = 50) -> Any:
    """Per phase, each process that held the GIL for at least `least` samples: its top frames
    by self time, and c360's own functions by total time (a rich table)."""
    from rich.table import Table

    out = Table(title=f"where the interpreters' time goes (py-spy --gil, {RATE} samples/s)")
    out.add_column("phase")
    out.add_column("process")
    out.add_column("samples", justify="right")
    out.add_column("self %: the frame runs")
    out.add_column("total %: c360's functions on the stack")
    for phase, processes in found.items():
        for name, doc in processes.items():
            if doc["samples"] < least:
                continue
            out.add_row(
                phase,
                name,
                f"{doc['samples']:,}",
                "\n".join(f"{pct:4.0f}  {frame}" for frame, pct in doc["self"][:rows]),
                "\n".join(f"{pct:4.0f}  {frame}" for frame, pct in doc["c360"][:rows]),
            )
    return out
