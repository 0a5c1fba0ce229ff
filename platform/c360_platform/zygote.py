"""Service processes forked from one interpreter that has imported the platform already.

A service process spends most of its start importing what every service imports (gRPC,
psycopg, the eventsourcing library, NATS, OpenTelemetry, Prometheus, the event contract): about
1.8 s of CPU each (of ~2.3 s before it serves), paid by the nine processes of `c360 up` at once
on the same cores. The supervisor starts one zygote (`python -m c360_platform.zygote`) that
imports the platform once (`PRELOAD`: platform modules only, no service's code) and then forks
each service process from it: the child imports only its own service and runs
`c360_platform.serve` as the exec'd process would, with its own environment, log and process
group. Forked before anything of gRPC exists in the zygote (as the workers are: see
workers.py).

The protocol is JSON lines on the zygote's stdin and stdout: a request {"module", "argv", "env",
"log"} (what `python -m MODULE ARGV` would run) is answered {"pid"}; each child that exits is
reported {"exit": pid, "code"}. When the supervisor goes (stdin closes), the zygote exits, and
its children receive SIGTERM (their parent-death signal), as exec'd children of the supervisor
do.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import queue
import runpy
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import setproctitle

from c360_platform.processes import child_preexec, open_log, private_dir, wait_pid_gone

PRELOAD = (
    "c360_platform.rpc",
    "c360_platform.metrics",
    "c360_platform.telemetry",
    "c360_platform.registry",
    "c360_platform.workers",
    "c360_platform.store",
    "c360_platform.pgstore",
    "c360_platform.servicer",
    "c360_platform.validation",
    "c360_platform.contract",
    "c360_platform.eventlog",
    "c360_platform.relay",
    "uvloop",  # the loop of every service process (rpc.loop_factory), made after the fork
)
"""What the zygote imports before it forks: what every service's process imports (and the
relay, which four of the five run in a process of their own). Not `c360_platform.serve`,
which each child runs as `__main__` (it imports all of this in its `main`)."""

SPAWN_TIMEOUT = 30.0
"""Seconds a spawn waits for the zygote's answer (it imports first, once)."""
ORPHAN_TIMEOUT = 15.0
"""Seconds the children of a zygote that died have to drain (their parent-death signal is
SIGTERM) before they are killed."""


# -- the zygote ---------------------------------------------------------------------------------


def _child(request: Mapping[str, Any], with_parent: Callable[[], None]) -> int:
    """In the forked child: become the process the request describes, then run its module as
    `python -m` would."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in any new interpreter
    os.setpgid(0, 0)  # as Popen(process_group=0): Ctrl-C reaches only the supervisor
    with_parent()  # SIGTERM when the zygote dies
    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # the zygote's requests ...
    os.dup2(log, 1)  # ... and answers are not the child's
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    sys.stdout = sys.__stdout__
    os.environ.clear()
    os.environ.update(request["env"])
    module: str = request["module"]
    sys.argv = [module, *request["argv"]]
    # In ps (and to tools/chaos.py) the command line it would have had, not the zygote's.
    setproctitle.setproctitle(" ".join([sys.executable, "-m", module, *request["argv"]]))
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


def _answer(message: Mapping[str, Any]) -> None:
    data = json.dumps(message).encode() + b"\n"
    while data:
        data = data[os.write(1, data) :]


def main() -> int:
    """The zygote: import PRELOAD, then fork a child per request until stdin closes. Its
    stdin and stdout carry the protocol; what it would print goes to stderr (its log). A child
    returns from here into the request it was forked for, and ends as any interpreter does
    (atexit handlers, buffered output, its exit status)."""
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops us (stdin closes)
    for name in PRELOAD:
        importlib.import_module(name)
    with_parent = child_preexec(signal.SIGTERM)  # made here: it compares with our pid
    setproctitle.getproctitle()  # finds the command line's memory while environ is as exec'd
    # What the children inherit, out of the collector's sight: their collections would write
    # to every inherited object's header, copying the pages the zygote shares with them.
    gc.freeze()
    request = _fork_on_request()
    if request is None:
        return 0
    return _child(request, with_parent)


def _fork_on_request() -> Mapping[str, Any] | None:
    """Fork a child per request: None in the zygote when its stdin closed, the request in the
    child (the zygote's descriptors closed)."""
    woken_r, woken_w = os.pipe()
    os.set_blocking(woken_w, False)
    signal.set_wakeup_fd(woken_w)
    signal.signal(signal.SIGCHLD, lambda _s, _f: None)  # the wakeup fd needs a handler
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(woken_r, selectors.EVENT_READ)
    pending = b""
    children: set[int] = set()
    while True:
        for key, _ in selector.select():
            if key.fd == woken_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(woken_r, 4096)
                while children:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                    if pid == 0:
                        break
                    children.discard(pid)
                    _answer({"exit": pid, "code": os.waitstatus_to_exitcode(status)})
                continue
            chunk = os.read(0, 65536)
            if not chunk:  # the supervisor is gone: so are we (children: parent-death signal)
                return None
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request: Mapping[str, Any] = json.loads(line)
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    selector.close()
                    os.close(woken_r)
                    os.close(woken_w)
                    return request
                children.add(pid)
                _answer({"pid": pid})


# -- the supervisor's side ----------------------------------------------------------------------


class ZygoteGone(RuntimeError):
    """The zygote could not be started or did not answer."""


class Forked:
    """A child of the zygote, answering what the supervisor asks of a `subprocess.Popen`."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote = zygote
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.zygote.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        code = self.zygote.wait_exit(self.pid, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(["c360-service", str(self.pid)], timeout or 0)
        self.returncode = code
        return code

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """The supervisor's handle on the zygote: started early (`start`) or by the first spawn,
    again by a spawn after it died, stopped with the supervisor."""

    def __init__(self, log_path: Path, env: Mapping[str, str]) -> None:
        self.log_path = log_path
        self.env = dict(env)
        self.proc: subprocess.Popen[bytes] | None = None
        self._pids: queue.Queue[int] = queue.Queue()
        self._codes: dict[int, int] = {}
        self._live: set[int] = set()
        self._changed = threading.Condition()
        self._spawning = threading.Lock()
        """One request at a time: the answers come in the requests' order."""

    def exit_code(self, pid: int) -> int | None:
        with self._changed:
            return self._codes.get(pid)

    def wait_exit(self, pid: int, timeout: float | None) -> int | None:
        """The child's exit code once it exited; None if it still runs after `timeout`."""
        with self._changed:
            self._changed.wait_for(lambda: pid in self._codes, timeout)
            return self._codes.get(pid)

    def _start(self) -> subprocess.Popen[bytes]:
        private_dir(self.log_path.parent)
        with open_log(self.log_path) as log:
            proc = subprocess.Popen(
                [sys.executable, "-u", "-m", "c360_platform.zygote"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=self.env,
                process_group=0,
                preexec_fn=child_preexec(signal.SIGTERM),
            )
        self._pids = queue.Queue()
        threading.Thread(
            target=self._read, args=(proc, self._pids), name="c360-zygote", daemon=True
        ).start()
        return proc

    def _read(self, proc: subprocess.Popen[bytes], pids: queue.Queue[int]) -> None:
        """The zygote's answers: pids to the spawn waiting, exits to `_codes`."""
        assert proc.stdout is not None
        for line in proc.stdout:
            message = json.loads(line)
            if "pid" in message:
                pids.put(int(message["pid"]))
            else:
                self._record(int(message["exit"]), int(message["code"]))
        pids.put(-1)  # a spawn still waiting fails now, not after SPAWN_TIMEOUT
        # The zygote is gone: its children were sent SIGTERM; each is reported once it is
        # gone too (a restart must not find its port still held).
        proc.wait()
        with self._changed:
            orphans = list(self._live)
        deadline = time.monotonic() + ORPHAN_TIMEOUT
        for pid in orphans:
            if not wait_pid_gone(pid, max(0.0, deadline - time.monotonic())):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self._record(pid, -int(signal.SIGTERM))

    def _record(self, pid: int, code: int) -> None:
        with self._changed:
            self._live.discard(pid)
            self._codes[pid] = code
            self._changed.notify_all()

    def start(self) -> None:
        """Start the zygote now if it is not running (it imports while the caller goes on:
        `c360 up` starts it before PostgreSQL and NATS); `spawn` waits for it. Start it from a
        thread that lives as long as its children: its parent-death signal follows the thread
        that started it (see `child_preexec`)."""
        with self._changed:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = self._start()

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> Forked:
        """Fork what `argv` (`[python, "-m", module, *args]`) would exec, with `env`, its output
        appended to `log_path`; raises ZygoteGone if the zygote cannot (its log says why)."""
        if len(argv) < 3 or argv[1] != "-m":
            raise ValueError(f"the zygote runs modules (python -m MODULE ...), not {argv}")
        self.start()
        with self._changed:
            proc, pids = self.proc, self._pids
        assert proc is not None
        assert proc.stdin is not None
        request = {
            "module": argv[2],
            "argv": list(argv[3:]),
            "env": dict(env),
            "log": str(log_path),
        }
        try:
            with self._spawning:
                proc.stdin.write(json.dumps(request).encode() + b"\n")
                proc.stdin.flush()
                pid = pids.get(timeout=SPAWN_TIMEOUT)
        except (OSError, queue.Empty) as exc:
            raise ZygoteGone(f"the zygote did not fork {argv[2]}; see {self.log_path}") from exc
        if pid < 0:
            raise ZygoteGone(f"the zygote exited; see {self.log_path}")
        with self._changed:
            if pid not in self._codes:
                self._live.add(pid)
        return Forked(self, pid)

    def stop(self) -> None:
        """Close its stdin (it exits); its children should be stopped first."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
