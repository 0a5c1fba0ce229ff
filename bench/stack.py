"""The system under test: PostgreSQL, NATS and each gRPC server in a process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg import sql

from c360_platform.embedded import EmbeddedNats, EmbeddedPostgres
from c360_platform.processes import child_preexec, free_port

_STOP_TIMEOUT = 20.0


def with_database(url: str, dbname: str) -> str:
    """`url` with its database (the path) replaced by `dbname`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


@dataclass
class Child:
    """A server process the bench started, with its port and log file."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Stack:
    """Starts and stops everything the bench measures; `stop()` is safe to call repeatedly.

    PostgreSQL and NATS are embedded (in `workdir`) unless C360_POSTGRES_URL / NATS_URL name
    servers; on a named PostgreSQL server the bench works in a fresh database it drops after.
    """

    workdir: Path
    log_dir: Path
    postgres_url: str = ""
    nats_url: str = ""
    shared_nats: bool = False
    postgres: EmbeddedPostgres | None = None
    nats: EmbeddedNats | None = None
    children: dict[str, Child] = field(default_factory=dict)
    stop_seconds: dict[str, float] = field(default_factory=dict)
    _admin_url: str = ""
    _database: str = ""

    def start_infra(self) -> None:
        """PostgreSQL and NATS (start them from the main thread: parent-death signals)."""
        env_pg = os.environ.get("C360_POSTGRES_URL")
        if env_pg:
            self._admin_url = env_pg
            self._database = f"bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(env_pg, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self._database)))
            self.postgres_url = with_database(env_pg, self._database)
        else:
            self.postgres = EmbeddedPostgres(self.workdir / "postgres")
            self.postgres_url = self.postgres.start()
        env_nats = os.environ.get("NATS_URL")
        if env_nats:
            self.nats_url = env_nats
            self.shared_nats = True
        else:
            self.nats = EmbeddedNats(self.workdir / "nats")
            self.nats_url = self.nats.start()

    def spawn(
        self,
        name: str,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> Child:
        """Start `python <args>` with a port (free if not given) in C360_GRPC_PORT (and
        `--port` for echo)."""
        port = port or free_port()
        child_env = dict(os.environ)
        child_env.update(
            {
                "C360_POSTGRES_URL": self.postgres_url,
                "NATS_URL": self.nats_url,
                "C360_GRPC_HOST": "127.0.0.1",
                "C360_GRPC_PORT": str(port),
                "PYTHONUNBUFFERED": "1",
            }
        )
        child_env.update(env or {})
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        argv = [sys.executable, *[a.replace("{port}", str(port)) for a in args]]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env,
                process_group=0,  # Ctrl-C reaches the bench only; it stops the children
                preexec_fn=child_preexec(signal.SIGTERM),
            )
        child = Child(name, proc, port, log_path)
        self.children[name] = child
        return child

    async def wait_healthy(self, child: Child, timeout: float = 90.0) -> None:
        """Poll grpc.health.v1 Check("") until SERVING; fail early if the process exits."""
        deadline = time.monotonic() + timeout
        async with grpc.aio.insecure_channel(child.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if child.proc.poll() is not None:
                    raise RuntimeError(
                        f"{child.name} exited with {child.proc.returncode}; tail of "
                        f"{child.log_path}:\n{_tail(child.log_path)}"
                    )
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{child.name} not healthy after {timeout:.0f}s; tail of "
                        f"{child.log_path}:\n{_tail(child.log_path)}"
                    )
                await asyncio.sleep(0.1)

    def pids(self) -> dict[str, int]:
        """Pid of each process the bench started (for CPU accounting)."""
        found = {name: c.proc.pid for name, c in self.children.items() if c.proc.poll() is None}
        if self.postgres is not None and self.postgres.pid is not None:
            found["postgres"] = self.postgres.pid
        if self.nats is not None and self.nats.pid is not None:
            found["nats"] = self.nats.pid
        found["bench"] = os.getpid()
        return found

    def stop_children(self) -> None:
        """SIGTERM every child (they drain), SIGKILL whoever outlives the timeout."""
        for child in self.children.values():
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        deadline = started + _STOP_TIMEOUT
        for child in self.children.values():
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
            # Exit time after SIGTERM (to 0.1 s: children are reaped in turn).
            self.stop_seconds[child.name] = round(time.monotonic() - started, 1)
        self.children.clear()

    def stop(self) -> None:
        """Children first, then NATS and PostgreSQL (or the bench database on a named server)."""
        try:
            self.stop_children()
        finally:
            if self.nats is not None:
                self.nats.stop()
                self.nats = None
            if self.postgres is not None:
                self.postgres.stop()
                self.postgres = None
            if self._database:
                with (
                    contextlib.suppress(psycopg.Error),
                    psycopg.connect(self._admin_url, autocommit=True) as conn,
                ):
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(self._database)
                        )
                    )
                self._database = ""
