"""Several server processes of one service on one port (`C360_WORKERS`): the way to use more
than one core with grpc.aio (one interpreter, one event loop per process).

The parent forks the workers before anything of gRPC exists (it has imported modules only:
gRPC's own guidance, forking after a channel or server exists hangs), then only watches
them. Each worker builds the whole service as a single process would: its own application,
group-commit writer, connection pools and grpc.aio server, listening with `SO_REUSEPORT` on
the same port, so the kernel spreads connections over the workers (a connection stays with
one worker: clients need more than one channel to use them all). Background work stays
single-active across workers as it does across replicas: the relay and the projector run
where their advisory lock is held (the others stand by).

SIGTERM or SIGINT to the parent is passed to every worker (each drains). A worker that dies
takes the service down with it (the others are stopped, the parent exits non-zero) so that
whatever runs the service (`c360 up`, Kubernetes) restarts it whole, as it would one process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

from c360_platform.processes import child_preexec

_log = logging.getLogger(__name__)

WORKER_ENV = "C360_WORKER"
"""Set in each worker to its index (0, 1, …); worker 0 also serves /metrics."""


def worker_index() -> int | None:
    """This process's worker index, None if the service runs as one process."""
    text = os.environ.get(WORKER_ENV, "")
    return int(text) if text.isdigit() else None


def run_workers(count: int, serve: Callable[[], int]) -> int:
    """Fork `count` workers, each running `serve()` (its exit code); wait for them all.
    Returns 0 when they were stopped by a signal and ended cleanly, else non-zero."""
    children: dict[int, int] = {}
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    with_parent = child_preexec(signal.SIGTERM)  # made here: it compares with our pid
    for index in range(count):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                with_parent()  # a worker ends with the parent
                os.environ[WORKER_ENV] = str(index)
                code = serve()
            except BaseException:
                logging.getLogger(__name__).exception("worker %d failed", index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index
    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    failed = 0
    try:
        while children:
            pid, status = os.wait()
            if pid not in children:
                continue
            index = children.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if code != 0 or not stopping:
                failed = failed or (code if code > 0 else 1)
                if not stopping:
                    _log.error(
                        "worker %d (pid %d) exited with %d; stopping the others", index, pid, code
                    )
                    forward(signal.SIGTERM, None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return failed
