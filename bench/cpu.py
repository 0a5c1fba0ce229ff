"""CPU time of the bench's processes from /proc (Linux), to tell which process saturates."""

from __future__ import annotations

import os
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; everything after its ")" is space separated.
    return text[text.rfind(")") + 2 :].split()


def _own_seconds(fields: list[str], *, with_children: bool) -> float:
    # After the name: state=0, ppid=1, ..., utime=11, stime=12, cutime=13, cstime=14.
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is not None and fields[1] == str(pid):
            found.append(int(entry))
    return found


def cpu_seconds(pid: int, *, tree: bool = False) -> float | None:
    """User+system CPU seconds of a process; with `tree`, plus its live and reaped children."""
    fields = _stat(pid)
    if fields is None:
        return None
    total = _own_seconds(fields, with_children=tree)
    if tree:
        for child in _children(pid):
            child_fields = _stat(child)
            if child_fields is not None:
                total += _own_seconds(child_fields, with_children=False)
    return total


class CpuMeter:
    """Snapshots CPU seconds per named process; `percent()` is the use since the snapshot."""

    def __init__(self, pids: dict[str, int], trees: frozenset[str] = frozenset({"postgres"})):
        self.pids = pids
        self.trees = trees
        self._start: dict[str, float] = {}
        self._t0 = 0.0

    def _read(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for name, pid in self.pids.items():
            seconds = cpu_seconds(pid, tree=name in self.trees)
            if seconds is not None:
                values[name] = seconds
        return values

    def start(self) -> None:
        self._start = self._read()
        self._t0 = time.monotonic()

    def percent(self) -> dict[str, float]:
        """Per process, CPU use since `start()` in % of one core (200% = both of 2 cores)."""
        wall = time.monotonic() - self._t0
        if wall <= 0:
            return {}
        now = self._read()
        return {
            name: round(100.0 * (now[name] - self._start[name]) / wall, 1)
            for name in now
            if name in self._start
        }


def ms_per_call(percent: dict[str, float], per_s: float) -> dict[str, float]:
    """Milliseconds of each process's CPU per call: its CPU (% of one core) over the calls/s
    it served (processes that used none are left out)."""
    return {name: round(used * 10 / per_s, 3) for name, used in percent.items() if used}
