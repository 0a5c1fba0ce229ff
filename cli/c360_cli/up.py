"""`c360 up`: run PostgreSQL, NATS and every service locally, and supervise them."""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from c360_platform import natsauth, registry
from c360_platform.catchup import EVENT_LOG_SERVICE
from c360_platform.deployment import Deployment
from c360_platform.embedded import EmbeddedRuntime
from c360_platform.processes import atomic_write_text, child_preexec

DEFAULT_HOME = "./.c360"
DEFAULT_BASE_PORT = registry.BASE_PORT
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `up` subcommand."""
    parser = subparsers.add_parser(
        "up",
        help="run PostgreSQL, NATS and all services locally until Ctrl-C",
        description=(
            "Start embedded PostgreSQL and NATS, then every service as its own process; "
            "write the endpoints to HOME/endpoints.json and supervise until interrupted."
        ),
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=Path(DEFAULT_HOME),
        metavar="DIR",
        help=f"state directory: data, logs, endpoints.json (default {DEFAULT_HOME})",
    )
    parser.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        metavar="N",
        help=(
            "move every service's default port by the same offset so that the lowest is N"
            f" (default {DEFAULT_BASE_PORT}); a port in use is replaced by a free one"
        ),
    )
    parser.add_argument(
        "--list", action="store_true", help="print the registered services and exit"
    )
    parser.set_defaults(func=run)
    listing = subparsers.add_parser(
        "services",
        help="list the registered services (name, default port, API)",
        description="The services this installation knows, from the registry (`c360.services`).",
    )
    listing.set_defaults(func=list_services)


@dataclass
class _Service:
    name: str
    port: int
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: collections.deque[float] = field(default_factory=collections.deque)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def spawn(self) -> None:
        with self.log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"--- c360 up: starting {self.name} on {self.endpoint} at {stamp}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "c360_platform.serve", self.name],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                process_group=0,  # Ctrl-C reaches only us; we stop services in order
                preexec_fn=child_preexec(signal.SIGTERM),
            )


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _say(message: str, out: IO[str] = sys.stderr) -> None:
    print(message, file=out, flush=True)


def _display(path: Path) -> str:
    """`path` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _serving(endpoint: str, timeout: float = 1.0, service: str = "") -> bool:
    """True if the standard gRPC health check of the whole server (or of one of its gRPC
    services) answers SERVING."""
    options = [("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel(endpoint, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def _died(service: _Service) -> str:
    code = service.proc.returncode if service.proc is not None else None
    return (
        f"c360 up: {service.name} exited (code {code}); tail of {_display(service.log_path)}:\n"
        f"{_tail(service.log_path)}"
    )


def _wait_ready(services: list[_Service], stop: threading.Event) -> bool:
    """Wait until every service is SERVING; False (after saying why) if one cannot be."""
    pending = list(services)
    deadline = time.monotonic() + READY_TIMEOUT
    while pending:
        for service in list(pending):
            assert service.proc is not None
            if service.proc.poll() is not None:
                _say(_died(service))
                return False
            if _serving(service.endpoint):
                pending.remove(service)
        if not pending or stop.is_set():
            return not pending
        if time.monotonic() > deadline:
            for service in pending:
                _say(
                    f"c360 up: {service.name} did not become SERVING on {service.endpoint} "
                    f"within {READY_TIMEOUT:.0f}s; tail of {_display(service.log_path)}:\n"
                    f"{_tail(service.log_path)}"
                )
            return False
        stop.wait(0.2)
    return True


def _supervise(services: list[_Service], stop: threading.Event) -> int:
    """Restart services that exit, until a signal arrives (0) or one keeps crashing (1)."""
    while not stop.wait(0.5):
        for service in services:
            assert service.proc is not None
            code = service.proc.poll()
            if code is None:
                continue
            now = time.monotonic()
            while service.restarts and now - service.restarts[0] > RESTART_WINDOW:
                service.restarts.popleft()
            if len(service.restarts) >= MAX_RESTARTS:
                _say(_died(service))
                _say(
                    f"c360 up: {service.name} exited {MAX_RESTARTS + 1} times within "
                    f"{RESTART_WINDOW:.0f}s; giving up"
                )
                return 1
            service.restarts.append(now)
            _say(
                f"c360 up: {service.name} exited (code {code}); restarting "
                f"({len(service.restarts)}/{MAX_RESTARTS} this minute, "
                f"log in {_display(service.log_path)})"
            )
            service.spawn()
    return 0


def _stop_services(services: list[_Service]) -> None:
    running = [s.proc for s in services if s.proc is not None and s.proc.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for proc in running:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def list_services(args: argparse.Namespace) -> int:
    """`c360 up --list` / `c360 services`: what the registry holds."""
    from c360_cli.output import Output

    out = Output(args.json)
    specs = list(registry.services().values())
    if out.json_mode:
        out.json(
            [
                {
                    "name": s.name,
                    "package": s.package,
                    "default_port": s.default_port,
                    "api": s.api,
                    "publishes_events": s.publishes_events,
                    "reads_timeline": s.reads_timeline,
                    "summary": s.summary,
                }
                for s in specs
            ]
        )
    else:
        out.table(
            ["service", "port", "events", "what it does"],
            [[s.name, s.default_port, s.publishes_events, s.summary] for s in specs],
            title=f"{len(specs)} registered services",
        )
    return 0


def run(args: argparse.Namespace) -> int:
    """Start everything, print the ready line, supervise until SIGINT/SIGTERM."""
    if getattr(args, "list", False):
        return list_services(args)
    home = Path(args.home).absolute()
    logs = home / "logs"
    endpoints_path = home / "endpoints.json"
    logs.mkdir(parents=True, exist_ok=True)
    endpoints_path.unlink(missing_ok=True)  # stale after a crash; written again when ready

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    # The embedded nats-server admits only these users, each with its role's subjects; a
    # NATS_URL of your own is used as it is.
    passwords: dict[str, str] = {}
    if not os.environ.get("NATS_URL"):
        passwords = natsauth.load_passwords(home / "nats" / "users.json", natsauth.roles())
    runtime = EmbeddedRuntime(
        home, nats_config=natsauth.authorization(passwords) if passwords else ""
    )

    def nats_url(role: str) -> str:
        if role not in passwords:
            return runtime.nats_url
        return natsauth.url_for(runtime.nats_url, role, passwords[role])

    services: list[_Service] = []
    try:
        try:
            runtime.start()
        except RuntimeError as exc:
            _say(f"c360 up: {exc}")
            return 1
        if stop.is_set():
            return 0
        deployment = Deployment.plan(
            runtime.postgres_url,
            runtime.nats_url,
            base_port=args.base_port,
            nats_url_for=nats_url,
        )
        for name, port in deployment.ports.items():
            env = dict(os.environ)
            env.update(deployment.environment(name))
            env.setdefault("PYTHONUNBUFFERED", "1")
            service = _Service(name, port, logs / f"{name}.log", env)
            service.spawn()
            services.append(service)
        if not _wait_ready(services, stop) or stop.is_set():
            return 0 if stop.is_set() else 1
        endpoints: dict[str, str] = {s.name: s.endpoint for s in services}
        endpoints["postgres_url"] = runtime.postgres_url
        endpoints["nats_url"] = nats_url(natsauth.ADMIN)
        document: dict[str, object] = dict(endpoints)
        # Also under one key, so that readers need not know the services' names.
        document["services"] = {s.name: s.endpoint for s in services}
        if passwords:  # a NATS URL with credentials per role, for integrators and services
            document["nats_users"] = {
                role: nats_url(role) for role in passwords if role != natsauth.ADMIN
            }
        # The services that serve the catch-up read of their store (subscribers replay from).
        document["event_sources"] = {
            s.name: s.endpoint for s in services if _serving(s.endpoint, 5.0, EVENT_LOG_SERVICE)
        }
        atomic_write_text(endpoints_path, json.dumps(document, indent=2) + "\n")
        _say(f"c360 ready — endpoints in {_display(endpoints_path)}", sys.stdout)
        return _supervise(services, stop)
    finally:
        _stop_services(services)
        runtime.stop()
        endpoints_path.unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
