"""The system under test: PostgreSQL, NATS and each gRPC server in a process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from c360_platform import auth, keywrap
from c360_platform.deployment import Deployment
from c360_platform.embedded import EmbeddedNats, EmbeddedPostgres
from c360_platform.processes import free_port
from c360_platform.supervisor import Supervisor, zygote_for
from c360_platform.zygote import Zygote

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
    supervisor: Supervisor | None = None
    zygote: Zygote | None = None
    """Started with PostgreSQL and NATS (it imports meanwhile); the services are forked from it."""
    token: str = ""
    """An agent's token of the deployment, for the load."""
    relay_apart: bool = True
    """Each service's outbox relay in a process of its own, as `c360 up` runs them."""
    operator_token: str = ""
    """An operator's, for the rebuild."""
    _admin_url: str = ""
    _database: str = ""

    def start_infra(self) -> None:
        """PostgreSQL and NATS (start them from the main thread: parent-death signals), and
        the zygote the services will be forked from."""
        # The services' KEK (as `c360 up` gives them one), in this process too: the bench
        # writes into their stores directly (the raw saves, the read-scale fill) and must
        # wrap and open keys as they do.
        os.environ[keywrap.ENV] = str(keywrap.home_kek(self.workdir))
        keywrap.from_env.cache_clear()
        self.zygote = zygote_for(self.log_dir)
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

    async def start_services(self, extra: dict[str, list[str]]) -> dict[str, str]:
        """Every registered service, plus `extra` servers (name -> argv, `{port}` replaced by a
        free port), started by the platform's supervisor; their addresses once all are ready."""
        # Ports below the kernel's ephemeral range (not the defaults, 50051 and on, which lie
        # in it): an outgoing connection of a service starting first cannot take the port of
        # one starting after it ("address already in use").
        deployment = Deployment.plan(
            self.postgres_url,
            self.nats_url,
            relay_apart=self.relay_apart,
            fresh_ports=True,
            key_wrap=keywrap.home_kek(self.workdir),  # data keys wrapped, as `c360 up` does
        )
        # The load comes from an application with an agent's token, as in production.
        self.token = deployment.token(auth.Role.AGENT, "bench:load")
        self.operator_token = deployment.token(auth.Role.OPERATOR, "bench:operator")
        supervisor = Supervisor(deployment, self.log_dir, zygote=self.zygote)
        self.supervisor = supervisor
        for name, argv in extra.items():
            port = free_port()
            command = [sys.executable, *[a.replace("{port}", str(port)) for a in argv]]
            supervisor.add(name, command, {}, f"127.0.0.1:{port}")
        supervisor.start()
        if not await asyncio.to_thread(supervisor.wait_ready, threading.Event(), 90.0):
            raise RuntimeError(f"the services did not start; logs in {self.log_dir}")
        return {name: p.address for name, p in supervisor.processes.items()}

    @property
    def stop_seconds(self) -> dict[str, float]:
        """Seconds each server took to exit after SIGTERM."""
        return self.supervisor.stop_seconds if self.supervisor else {}

    def pids(self) -> dict[str, int]:
        """Pid of each process the bench started (for CPU accounting)."""
        found = self.supervisor.pids() if self.supervisor else {}
        if self.postgres is not None and self.postgres.pid is not None:
            found["postgres"] = self.postgres.pid
        if self.nats is not None and self.nats.pid is not None:
            found["nats"] = self.nats.pid
        found["bench"] = os.getpid()
        return found

    def stop_children(self) -> None:
        """SIGTERM every server the bench started (they drain), SIGKILL after a timeout."""
        if self.supervisor is not None:
            self.supervisor.stop()

    def stop(self) -> None:
        """Children first, then NATS and PostgreSQL (or the bench database on a named server)."""
        try:
            self.stop_children()
        finally:
            if self.zygote is not None:
                self.zygote.stop()
                self.zygote = None
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
