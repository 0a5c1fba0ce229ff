"""One supervisor starts the services of a `Deployment`: as processes (`c360 up`, the bench),
or as hosts in the caller's event loop (the test fixtures). For processes it waits until
each answers its gRPC health check, restarts one that dies (giving up when it keeps dying),
watches the embedded servers it is given, and stops everything in order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from c360_platform import channels
from c360_platform.deployment import Deployment
from c360_platform.embedded import EmbeddedServer
from c360_platform.processes import (
    PortHolds,
    child_preexec,
    free_port,
    open_log,
    private_dir,
    tail,
)
from c360_platform.rpc import ServiceHost
from c360_platform.zygote import Forked, Zygote, ZygoteGone

_log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0

Say = Callable[[str], None]


def serving(address: str, timeout: float = 1.0, service: str = "") -> bool:
    """True if the standard gRPC health check of the whole server (or of one of its gRPC
    services) answers SERVING."""
    options = [("grpc.enable_http_proxy", 0)]
    with channels.channel(address, "", options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def _display(path: Path) -> str:
    """`path` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@dataclass
class ServiceProcess:
    """One service (or another server the caller adds, like the bench's echo) as a process."""

    name: str
    address: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | Forked | None = None
    restarts: collections.deque[float] = field(default_factory=collections.deque)
    zygote: Zygote | None = None
    """Where the process is forked from (`argv` is then `python -m MODULE ...`); None: exec'd."""

    def spawn(self) -> None:
        with open_log(self.log_path) as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"--- c360: starting {self.name} on {self.address} at {stamp}\n".encode())
            log.flush()
            if self.zygote is not None:
                try:
                    self.proc = self.zygote.spawn(self.argv, self.env, self.log_path)
                    return
                except ZygoteGone as exc:
                    _log.warning("%s: %s; starting it as a new interpreter", self.name, exc)
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                process_group=0,  # Ctrl-C reaches only the supervisor; it stops us in order
                preexec_fn=child_preexec(signal.SIGTERM),
            )

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def died(self) -> str:
        return (
            f"{self.name} exited (code {self.exited()}); tail of {_display(self.log_path)}:\n"
            f"{tail(self.log_path, 30)}"
        )


class Supervisor:
    """The services of a deployment, started and kept running."""

    def __init__(
        self,
        deployment: Deployment,
        log_dir: Path,
        *,
        environment: Mapping[str, str] | None = None,
        say: Say | None = None,
        servers: Iterable[EmbeddedServer] = (),
        zygote: Zygote | None = None,
        holds: PortHolds | None = None,
    ) -> None:
        self.deployment = deployment
        self.holds = holds
        """The services' ports, held by the caller since it chose them (`c360 up`); each is
        let go just before its process starts, which holds it at once (`serve.main`), so
        that no connection of a process started earlier takes it meanwhile."""
        self.log_dir = log_dir
        self.base_env = dict(os.environ if environment is None else environment)
        self.say: Say = say or (lambda text: _log.info("%s", text))
        self.processes: dict[str, ServiceProcess] = {}
        self.servers = list(servers)
        """Embedded servers (PostgreSQL, NATS) watched beside the services."""
        self._server_restarts: dict[int, collections.deque[float]] = {}
        self.stop_seconds: dict[str, float] = {}
        self.zygote = zygote or _zygote(log_dir, self.base_env)
        """Forks the services' processes (`zygote.py`): each starts without importing the
        platform again. A caller may start one early (`zygote_for`), while it starts the
        servers the services need."""

    # -- processes --------------------------------------------------------------------------

    def add(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        address: str,
        *,
        forked: bool = False,
    ) -> None:
        """A process to run beside the services (e.g. the bench's echo server); `forked`: argv
        is `[python, -m, MODULE, ...]`, forked from the zygote."""
        private_dir(self.log_dir)
        full_env = {**self.base_env, **env}
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        self.processes[name] = ServiceProcess(
            name,
            address,
            argv,
            full_env,
            self.log_dir / f"{name}.log",
            zygote=self.zygote if forked else None,
        )

    def start(self) -> None:
        """Spawn every service of the deployment (and what was added) as a process."""
        addresses = self.deployment.addresses
        for name in self.deployment.ports:
            if name not in self.processes:
                argv = [sys.executable, "-m", "c360_platform.serve", name]
                env = self.deployment.environment(name)
                self.add(name, argv, env, addresses[name], forked=True)
        for name in self.deployment.relays():
            relay = f"{name}-relay"
            if relay not in self.processes:
                port = free_port()
                env = {**self.deployment.environment(name), "C360_GRPC_PORT": str(port)}
                argv = [sys.executable, "-m", "c360_platform.serve", name, "--relay"]
                self.add(relay, argv, env, f"{self.deployment.host}:{port}", forked=True)
        for process in self.processes.values():
            if self.holds is not None:
                self.holds.release(int(process.address.rpartition(":")[2]))
            process.spawn()

    def wait_ready(self, stop: threading.Event, timeout: float = READY_TIMEOUT) -> bool:
        """Wait until every process answers SERVING; False (after saying why) if one cannot."""
        pending = list(self.processes.values())
        deadline = time.monotonic() + timeout
        while pending:
            for process in list(pending):
                if process.exited() is not None:
                    self.say(process.died())
                    return False
                if serving(process.address):
                    pending.remove(process)
            if not pending or stop.is_set():
                return not pending
            if time.monotonic() > deadline:
                for process in pending:
                    self.say(
                        f"{process.name} did not become SERVING on {process.address} within"
                        f" {timeout:.0f}s; tail of {_display(process.log_path)}:\n"
                        f"{tail(process.log_path, 30)}"
                    )
                return False
            stop.wait(0.2)
        return True

    def _may_restart(self, restarts: collections.deque[float], name: str) -> bool:
        """Count a restart; False (after saying so) if it died too often this minute."""
        now = time.monotonic()
        while restarts and now - restarts[0] > RESTART_WINDOW:
            restarts.popleft()
        if len(restarts) >= MAX_RESTARTS:
            self.say(
                f"{name} exited {MAX_RESTARTS + 1} times within {RESTART_WINDOW:.0f}s; giving up"
            )
            return False
        restarts.append(now)
        return True

    def _restart(self, process: ServiceProcess) -> bool:
        """Start a process that died again; False if it died too often this minute."""
        if not self._may_restart(process.restarts, process.name):
            self.say(process.died())
            return False
        self.say(
            f"{process.name} exited (code {process.exited()}); restarting "
            f"({len(process.restarts)}/{MAX_RESTARTS} this minute, "
            f"log in {_display(process.log_path)})"
        )
        process.spawn()
        return True

    def _restart_server(self, server: EmbeddedServer) -> bool:
        """Start an embedded server that died again, on its port; False if it cannot be."""
        code = server.exited()
        self.say(
            f"{server.kind} exited (code {code}); tail of {_display(server.log_path)}:\n"
            f"{server.tail(15)}"
        )
        restarts = self._server_restarts.setdefault(id(server), collections.deque())
        if not self._may_restart(restarts, server.kind):
            return False
        try:
            server.start()
        except RuntimeError as exc:
            self.say(f"{server.kind} could not be restarted: {exc}")
            return False
        self.say(f"{server.kind} restarted on port {server.port}")
        return True

    def watch(self, stop: threading.Event, interval: float = 0.5) -> int:
        """Keep everything running until `stop` is set (0), or one keeps dying (1)."""
        while not stop.wait(interval):
            for server in self.servers:
                if server.exited() is not None and not self._restart_server(server):
                    return 1
            for process in self.processes.values():
                if process.exited() is not None and not self._restart(process):
                    return 1
        return 0

    def stop(self) -> None:
        """SIGTERM every process (they drain), SIGKILL whoever outlives the timeout."""
        running = [p for p in self.processes.values() if p.exited() is None and p.proc]
        for process in running:
            assert process.proc is not None
            with contextlib.suppress(ProcessLookupError):
                process.proc.terminate()
        started = time.monotonic()
        deadline = started + STOP_TIMEOUT
        for process in running:
            assert process.proc is not None
            try:
                process.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.proc.kill()
                process.proc.wait()
            self.stop_seconds[process.name] = round(time.monotonic() - started, 1)
        self.zygote.stop()

    def pids(self) -> dict[str, int]:
        """The pid of each running process, by name."""
        return {
            name: p.proc.pid
            for name, p in self.processes.items()
            if p.proc is not None and p.exited() is None
        }

    # -- in this process (tests) ------------------------------------------------------------

    async def start_hosts(self) -> dict[str, ServiceHost]:
        """Every service of the deployment as a host in this event loop, started in the
        deployment's order (stop them with `stop_hosts`)."""
        hosts: dict[str, ServiceHost] = {}
        try:
            for name, spec in self.deployment.specs.items():
                hosts[name] = spec.builder()(self.deployment.settings(name))
                await hosts[name].start()
        except BaseException:
            await stop_hosts(hosts)
            raise
        return hosts


def _zygote(log_dir: Path, environment: Mapping[str, str]) -> Zygote:
    """The zygote of a supervisor of `log_dir` (not started: the first spawn starts it)."""
    return Zygote(log_dir / "zygote.log", environment)


def zygote_for(log_dir: Path, environment: Mapping[str, str] | None = None) -> Zygote:
    """A zygote for a supervisor of `log_dir`, started now: it imports while the caller starts
    PostgreSQL and NATS, not after them."""
    zygote = _zygote(log_dir, os.environ if environment is None else environment)
    zygote.start()
    return zygote


async def stop_hosts(hosts: Mapping[str, ServiceHost]) -> None:
    """Stop hosts side by side (each drains), then close their applications."""
    await asyncio.gather(*(host.stop() for host in hosts.values()))
    for host in hosts.values():
        app = host.parts.get("app")
        close = getattr(app, "close", None)
        if callable(close):
            close()
