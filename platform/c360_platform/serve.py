"""Runs one registered service as a process: `c360-service NAME` or
`python -m c360_platform.serve NAME` (NAME defaults to $C360_SERVICE).

What the server needs is imported in `main`, not here: a process of the CPU pool (`cpu`) is
spawned, and a spawned process imports its parent's main module, this one. Importing gRPC,
NATS, telemetry and every service there cost each pool process about a second of CPU and
40 MB before its first task (a bulk import's first rows waited for it).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from c360_platform import rpc
    from c360_platform.config import Settings


def main(argv: Sequence[str] | None = None) -> int:
    from dataclasses import replace

    from c360_platform import metrics, registry, rpc, workers
    from c360_platform.config import Settings
    from c360_platform.telemetry import configure

    parser = argparse.ArgumentParser(
        prog="c360-service",
        description="Run one c360 service; its settings come from the environment.",
    )
    names = list(registry.services())
    parser.add_argument(
        "name",
        nargs="?",
        default=os.environ.get("C360_SERVICE"),
        choices=names,
        help=f"the service to run ({', '.join(names)}); default $C360_SERVICE",
    )
    parser.add_argument(
        "--relay",
        action="store_true",
        help="run only the service's outbox relay (where the API processes run with"
        " C360_RELAY=process), with gRPC health on C360_GRPC_PORT",
    )
    args = parser.parse_args(argv)
    if not args.name:
        parser.error("name a service (or set C360_SERVICE)")
    spec = registry.service(args.name)
    settings = Settings.from_env(spec.name, spec.default_port)
    # Which process a PostgreSQL connection is (pg_stat_activity.application_name), where
    # every service logs in as one user (a cluster's): libpq reads it from the environment.
    os.environ.setdefault("PGAPPNAME", f"c360 {spec.name}" + (" relay" if args.relay else ""))
    if settings.workers <= 1 or args.relay:
        # Held from the process's first moment, before its service's code is imported: the
        # supervisor let go of them just before it started us (`Supervisor.start`). Workers
        # hold theirs after their fork, sharing them (`start`).
        rpc.reserve_ports(settings.grpc_host, settings.grpc_port, settings.health_port)
    build = spec.builder()
    if args.relay:
        return relay_only(spec.name, replace(settings, relay_apart=False, workers=1), build)

    def serve() -> int:
        if workers.worker_index() in (None, 0):  # one /metrics port per pod
            metrics.serve_from_env()

        async def start() -> rpc.ServiceHost:
            configure(spec.name)
            rpc.reserve_ports(
                settings.grpc_host,
                settings.grpc_port,
                settings.health_port,
                reuse_port=settings.workers > 1,
            )
            host = build(settings)
            metrics.watch(host)
            return host

        rpc.run(start)
        return 0

    if settings.workers > 1:
        # Forked now: imports done, nothing of gRPC created yet (see workers.py).
        return workers.run_workers(settings.workers, serve)
    return serve()


def relay_only(name: str, settings: Settings, build: Callable[[Settings], rpc.ServiceHost]) -> int:
    """The service's outbox relay in a process of its own: the service is built as usual (its
    application, its contract, the relay), then serves health only and runs only the relay;
    one relay is active per service however many such processes run (its advisory lock)."""
    from c360_platform import metrics, rpc
    from c360_platform.relay import OutboxRelay
    from c360_platform.telemetry import configure

    metrics.serve_from_env()

    async def start() -> rpc.ServiceHost:
        configure(f"{name}-relay")
        rpc.reserve_ports(settings.grpc_host, settings.grpc_port, settings.health_port)
        host = build(settings)
        relay = host.part("relay", OutboxRelay)
        host.name = f"{name}-relay"
        host.services.clear()
        host.background[:] = [relay.run]
        metrics.watch(host)
        return host

    rpc.run(start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
