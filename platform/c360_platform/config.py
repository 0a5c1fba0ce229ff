"""Configuration of a c360 process, read from the environment (twelve-factor style)."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


@dataclass(frozen=True)
class Settings:
    """Settings shared by every service process.

    C360_POSTGRES_URL  the PostgreSQL server (each service keeps its own schema in it)
    NATS_URL           the NATS server with JetStream
    C360_GRPC_HOST     the address to listen on (127.0.0.1; 0.0.0.0 in a cluster)
    C360_GRPC_PORT     the gRPC port
    C360_HEALTH_PORT   a second, plain port serving grpc.health.v1 only (unset: none), for
                       probes that cannot show a client certificate where the gRPC port
                       serves mutual TLS (the kubelet's)
    C360_TIMELINE_ADDR host:port of the timeline query API, for services that read it
    C360_SERVICES      every service of the deployment, "name=host:port,name=host:port";
                       consumers find the catch-up read (ReadEvents) of each source here
    C360_AUTH_PUBLIC_KEY the public key every port checks bearer tokens with: PEM text, or
                       the path of a file holding it (see auth.py); it cannot sign a token
    C360_TOKEN         the service's own token (role service), for its calls to other services
    C360_AUTH_SECRET   the old shared token secret (HMAC), only while a deployment moves to
                       the key pair: tokens signed with it are accepted, with a warning
    C360_GROUP_COMMIT  0 turns group commit off (each command commits alone; see writer.py)
    C360_WORKERS       server processes of the service on its one port (see workers.py)
    C360_CPU_PROCESSES processes for CPU-heavy work such as validating a bulk import
    C360_RELAY         "process": the outbox relay runs in a process of its own
                       (`c360-service NAME --relay`), not beside the API; "inline" (default)
    C360_EVENT_LOOP    "uvloop" (default): a service process's asyncio loop is uvloop's;
                       "asyncio": the standard library's
    C360_PG_POOL_MIN   PostgreSQL connections an event store's pool keeps open (default 2)
    C360_PG_POOL_MAX   and the most it opens under load (default 20): a process's share of
                       the server's max_connections (see pg_pool_from_env)
    """

    service: str
    postgres_url: str
    nats_url: str
    grpc_host: str
    grpc_port: int
    timeline_addr: str
    services: dict[str, str] = field(default_factory=dict)
    auth_public_key: str = ""
    """C360_AUTH_PUBLIC_KEY: the key (PEM, or a file's path) every port checks tokens with."""
    auth_secret: str = ""
    """C360_AUTH_SECRET: the old shared secret, accepted only while moving to the key pair."""
    token: str = ""
    """C360_TOKEN: this service's own token (role service), for its calls to other services."""
    group_commit: bool = field(default_factory=lambda: group_commit_from_env())
    """C360_GROUP_COMMIT: commands' saves go through one batching writer (default on)."""
    workers: int = field(default_factory=lambda: workers_from_env())
    """C360_WORKERS: server processes on the service's port (SO_REUSEPORT; workers.py)."""
    health_port: int | None = field(default_factory=lambda: health_port_from_env())
    """C360_HEALTH_PORT: a plain port with grpc.health.v1 only (the kubelet's probes)."""
    relay_apart: bool = field(default_factory=lambda: relay_apart_from_env())
    """C360_RELAY=process: the service's API processes leave the outbox relay to a process of
    its own, so that publishing does not compete with requests for one interpreter."""

    @classmethod
    def from_env(cls, service: str, default_port: int) -> Settings:
        return cls(
            service=service,
            postgres_url=os.environ.get("C360_POSTGRES_URL", DEFAULT_POSTGRES_URL),
            nats_url=os.environ.get("NATS_URL", DEFAULT_NATS_URL),
            grpc_host=os.environ.get("C360_GRPC_HOST", "127.0.0.1"),
            grpc_port=int(os.environ.get("C360_GRPC_PORT", str(default_port))),
            timeline_addr=os.environ.get("C360_TIMELINE_ADDR", "127.0.0.1:50052"),
            services=parse_services(os.environ.get("C360_SERVICES", "")),
            auth_public_key=os.environ.get("C360_AUTH_PUBLIC_KEY", ""),
            auth_secret=os.environ.get("C360_AUTH_SECRET", ""),
            token=os.environ.get("C360_TOKEN", "") or _own_token(service),
        )


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "y", "yes", "true", "on"):
        return True
    if value in ("0", "n", "no", "false", "off"):
        return False
    raise ValueError(f"{name}: {value!r} is not a yes/no value (1 or 0)")


def _count(name: str, default: int, least: int = 1) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not a number") from None
    if count < least:
        raise ValueError(f"{name}: must be at least {least}, not {count}")
    return count


def group_commit_from_env() -> bool:
    """C360_GROUP_COMMIT (default on)."""
    return _flag("C360_GROUP_COMMIT", True)


def workers_from_env() -> int:
    """C360_WORKERS: server processes per service. Default 1: the embedded local stack and the
    tests run every service on one small machine; the deploy manifests set it to the cores
    of a service's pod."""
    return _count("C360_WORKERS", 1)


def pg_pool_from_env() -> tuple[int, int]:
    """C360_PG_POOL_MIN and C360_PG_POOL_MAX: the connections an event store's pool keeps open
    while idle (default 2) and opens at most under load (default 20), per process. The pool
    grows when a checkout finds every connection busy and gives back what has been idle for
    ten minutes: idle, a deployment holds the minimum per process, not the maximum (with the
    library's 10 open from the start, 5 services of 6 replicas held ~500 connections doing
    nothing). Each API process, relay process and projector has one such pool."""
    least = _count("C360_PG_POOL_MIN", 2)
    most = _count("C360_PG_POOL_MAX", max(20, least))
    if most < least:
        raise ValueError(f"C360_PG_POOL_MAX: {most} is less than C360_PG_POOL_MIN ({least})")
    return least, most


def health_port_from_env() -> int | None:
    """C360_HEALTH_PORT (unset or empty: no health-only port)."""
    if not os.environ.get("C360_HEALTH_PORT", "").strip():
        return None
    return _count("C360_HEALTH_PORT", 0, least=1)


def relay_apart_from_env() -> bool:
    """C360_RELAY: "process" (a relay process of its own) or "inline" (default)."""
    value = os.environ.get("C360_RELAY", "").strip().lower() or "inline"
    if value not in ("inline", "process"):
        raise ValueError(f"C360_RELAY: {value!r} is not inline or process")
    return value == "process"


EVENT_LOOPS = ("uvloop", "asyncio")


def event_loop_from_env() -> str:
    """C360_EVENT_LOOP: "uvloop" (default) or "asyncio"."""
    value = os.environ.get("C360_EVENT_LOOP", "").strip().lower() or EVENT_LOOPS[0]
    if value not in EVENT_LOOPS:
        raise ValueError(f"C360_EVENT_LOOP: {value!r} is not uvloop or asyncio")
    return value


def cpu_processes_from_env() -> int:
    """C360_CPU_PROCESSES: processes for CPU-heavy work (a bulk import's validation, a relay's
    backlog pages; cpu.py). Default: the cores this process may use, less one for its own
    interpreter; 0 (one core) means none: the work is done in the service's process."""
    return _count("C360_CPU_PROCESSES", available_cores() - 1, least=0)


CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def available_cores(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The cores this process may use: those it may run on (its CPU affinity, not the
    machine's count), and no more than its cgroup's CPU quota allows, rounded up (a
    container's CPU limit: a pod limited to one CPU sees every core of its node, and a pool
    sized by them would only share that one CPU, and its memory limit)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    return max(1, min(cores, math.ceil(quota))) if quota is not None else cores


def cgroup_cpu_quota(cgroup_root: Path, proc_cgroup: Path) -> float | None:
    """CPUs a second this process's cgroup and its ancestors allow at most (the lowest
    quota over its period), or None without a quota: cgroup v2's `cpu.max`, else v1's
    `cpu.cfs_quota_us` and `cpu.cfs_period_us`."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    found: list[float] = []
    names: tuple[str, ...]
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":  # v2: the unified hierarchy
            base, names = cgroup_root, ("cpu.max",)
            hybrid = not (cgroup_root / "cgroup.controllers").exists()
            if hybrid and (cgroup_root / "unified").is_dir():
                base = cgroup_root / "unified"  # v2 mounted beside v1's controllers
        elif "cpu" in controllers.split(","):
            base, names = cgroup_root / controllers, ("cpu.cfs_quota_us", "cpu.cfs_period_us")
            if not base.is_dir():
                base = cgroup_root / "cpu"
        else:
            continue
        found.extend(_quotas(base, path, names))
    return min(found) if found else None


def _quotas(base: Path, path: str, names: tuple[str, ...]) -> list[float]:
    """The quotas set on the cgroup at `path` under `base` and on its ancestors."""
    quotas: list[float] = []
    parts = [p for p in path.split("/") if p]
    for depth in range(len(parts), -1, -1):
        where = base.joinpath(*parts[:depth])
        try:
            if len(names) == 1:
                limit, _, period = (where / names[0]).read_text().strip().partition(" ")
            else:
                limit = (where / names[0]).read_text().strip()
                period = (where / names[1]).read_text().strip()
        except OSError:
            continue
        with contextlib.suppress(ValueError, ZeroDivisionError):
            if limit not in ("max", "-1"):
                quotas.append(int(limit) / int(period or "100000"))
    return quotas


def _own_token(service: str) -> str:
    """Without C360_TOKEN, only a service that still holds the old shared secret signs its
    own service token (as every pod did before the key pair); one with the public key alone
    cannot sign any, and calls the others without a token."""
    from c360_platform.auth import Role, issue_with_secret

    secret = os.environ.get("C360_AUTH_SECRET", "")
    return issue_with_secret(secret, f"service:{service}", Role.SERVICE) if secret else ""


def parse_services(text: str) -> dict[str, str]:
    """ "customer=127.0.0.1:50051,timeline=127.0.0.1:50052" -> {name: address}."""
    services: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, address = item.partition("=")
        if not sep or not name.strip() or not address.strip():
            raise ValueError(
                f"C360_SERVICES: {item!r} is not name=host:port"
                " (e.g. customer=127.0.0.1:50051,timeline=127.0.0.1:50052)"
            )
        services[name.strip()] = address.strip()
    return services


def format_services(services: dict[str, str]) -> str:
    """The C360_SERVICES value for {name: address}."""
    return ",".join(f"{name}={address}" for name, address in services.items())
