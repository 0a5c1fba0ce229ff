"""CPU-heavy work off the service's interpreter: a pool of `C360_CPU_PROCESSES` processes.

A service process runs one interpreter; Python code (validating a bulk import's rows,
building its aggregates, encoding their events; decoding and packing a relay's backlog)
holds it and starves the event loop. Work handed to this pool runs on the machine's other
cores (as many as the process may use: its affinity and its cgroup's CPU quota). The
pool's processes are spawned (never forked: the service runs gRPC and threads, and a forked
copy of those can hang), on first use, and kept for the process's life. With
`C360_CPU_PROCESSES=0` (the default on a single core, where a pool cannot pay) there is no
pool and callers do the work themselves.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import Mapper
from eventsourcing.utils import get_topic, resolve_topic

from c360_platform.config import cpu_processes_from_env

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_made = False


def cpu_pool() -> Executor | None:
    """The process pool for CPU-heavy work, or None when there should be none. A pool one of
    whose processes died (killed, out of memory) is broken for good, every submit raising
    BrokenProcessPool: the next caller gets a new one."""
    global _pool, _made
    with _lock:
        if not _made:
            _made = True
            count = cpu_processes_from_env()
            if count > 0:
                _pool = _new_pool(count)
        elif _pool is not None and _broken(_pool):
            _pool.shutdown(wait=False, cancel_futures=True)
            _pool = _new_pool(cpu_processes_from_env())
        return _pool


def _new_pool(count: int) -> ProcessPoolExecutor:
    pool = ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn"))
    atexit.register(pool.shutdown, wait=False, cancel_futures=True)
    return pool


def _broken(pool: ProcessPoolExecutor) -> bool:
    """Whether the pool is broken (CPython's ProcessPoolExecutor keeps it in `_broken`, the
    reason or False, and has no public way to ask)."""
    return bool(getattr(pool, "_broken", False))


MAPPER_SETTINGS = (
    "MAPPER_TOPIC",
    "TRANSCODER_TOPIC",
    "COMPRESSOR_TOPIC",
    "CIPHER_TOPIC",
    "CIPHER_KEY",
)
"""The `eventsourcing` settings that decide how events are encoded (and nothing else: the
pool's processes get no connection settings)."""


@dataclass(frozen=True)
class MapperOf:
    """How a pool process gets an application's mapper (events -> stored events), which does
    not pickle itself: the application class and the settings that shape its encoding."""

    application_topic: str
    """The application class's topic (module:Class)."""
    settings: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, app: Application[Any]) -> MapperOf:
        settings = tuple((k, str(app.env[k])) for k in MAPPER_SETTINGS if app.env.get(k))
        return cls(get_topic(type(app)), settings)

    def application(self) -> Application[Any]:
        """An in-memory instance of the application, made once per process: its mappers
        encode and decode as the service's own do."""
        found = _applications.get(self)
        if found is None:
            kind = resolve_topic(self.application_topic)
            env = {**dict(self.settings), "PERSISTENCE_MODULE": "c360_platform.memstore:Factory"}
            found = _applications[self] = kind(env=env)
        return found

    def get(self) -> Mapper[Any]:
        """The mapper (events -> stored events and back, revealing what it seals)."""
        return self.application().mapper


_applications: dict[MapperOf, Application[Any]] = {}


class Warmed:
    """A process of the CPU pool made ready for one kind of work when a backlog of it first
    shows (a spawned interpreter importing the work's modules costs a second or two of CPU
    and of waiting, which a trickle of that work would never win back), then used for every
    large enough piece of it. Until it is ready, and where there is no pool, the caller does
    the work itself. A pool that breaks (its process killed) is not used again by this
    process's `Warmed`: its work goes on in the caller."""

    def __init__(
        self,
        ready: Callable[..., int],
        *,
        ready_log: str,
        off_log: str,
        pool: Executor | None = None,
    ) -> None:
        self.ready_log = ready_log
        """Logged once a process is ready (%d: its pid)."""
        self.off_log = off_log
        """Logged when the pool fails (%s: why); the work goes on in the caller."""
        self.ready = ready
        """Run by the pool's process once (a module-level function: it pickles by name), with
        `warm`'s arguments: it imports what the work needs and returns the process's pid."""
        self.state = "unused"
        """unused (no backlog yet), warming, ready, or off (no pool, or it failed)."""
        self._pool = pool
        """The pool to warm (None: the CPU pool, `cpu_pool`)."""

    @property
    def pool(self) -> Executor | None:
        """The pool to hand the work to, once it is ready."""
        return self._pool if self.state == "ready" else None

    def warm(self, *args: Any) -> asyncio.Future[int] | None:
        """A backlog showed (on the event loop): get a pool process ready, once. Returns the
        readiness to wait for, if it was started now."""
        if self.state != "unused":
            return None
        pool = self._pool or cpu_pool()
        if pool is None:
            self.state = "off"
            return None
        self._pool, self.state = pool, "warming"
        warming = asyncio.wrap_future(pool.submit(self.ready, *args))
        warming.add_done_callback(self._warmed)
        return warming

    def _warmed(self, done: asyncio.Future[int]) -> None:
        if self.state != "warming":
            return
        if done.cancelled() or done.exception() is not None:
            self.off(repr(done.exception()) if not done.cancelled() else "cancelled")
            return
        self.state = "ready"
        _log.info(self.ready_log, done.result())

    def off(self, why: str = "") -> None:
        """The work is done by the caller from now on: the pool failed (`why`: its process
        ended, logged), or the caller has none of this work for a pool (no `why`)."""
        if why:
            _log.warning(self.off_log, why)
        self.state = "off"
        self._pool = None
