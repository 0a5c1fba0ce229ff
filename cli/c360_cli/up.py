"""`c360 up`: run PostgreSQL, NATS and every service locally, and supervise them."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import IO

from c360_platform import auth, certificates, keywrap, natsauth, pgroles, registry, tls
from c360_platform.catchup import EVENT_LOG_SERVICE
from c360_platform.deployment import Deployment
from c360_platform.embedded import EmbeddedRuntime, RuntimeBusyError
from c360_platform.processes import PortHolds, atomic_write_text, private_dir
from c360_platform.supervisor import Supervisor, serving, zygote_for

DEFAULT_HOME = "./.c360"
DEFAULT_BASE_PORT = registry.BASE_PORT


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
        help="list the registered services (name, port, API)",
        description=(
            "The services this installation knows, from the registry (`c360.services`), with"
            " the ports of the stack running from --home (its endpoints.json), else the"
            " default ones."
        ),
    )
    listing.set_defaults(func=list_services)


def _say(message: str, out: IO[str] = sys.stderr) -> None:
    print(message, file=out, flush=True)


def _display(path: Path) -> str:
    """`path` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def list_services(args: argparse.Namespace) -> int:
    """`c360 up --list` / `c360 services`: what the registry holds, with the ports of the
    stack running from HOME (its endpoints.json), else the default ones."""
    from c360_cli.client import load_endpoints
    from c360_cli.output import Output

    out = Output(args.json)
    specs = list(registry.services().values())
    running = load_endpoints(args).addresses if getattr(args, "home", None) else {}

    def port(spec: registry.ServiceSpec) -> str:
        address = running.get(spec.name)
        return address.rpartition(":")[2] if address else str(spec.default_port)

    if out.json_mode:
        out.json(
            [
                {
                    "name": s.name,
                    "package": s.package,
                    "default_port": s.default_port,
                    "address": running.get(s.name),
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
            ["service", "port", "gRPC API", "what it does"],
            [[s.name, port(s), s.api, s.summary] for s in specs],
            title=f"{len(specs)} registered services"
            + (", ports of the running stack" if running else ", default ports"),
            no_wrap={"gRPC API"},
        )
    return 0


def run(args: argparse.Namespace) -> int:
    """Start everything, print the ready line, supervise until SIGINT/SIGTERM."""
    if getattr(args, "list", False):
        return list_services(args)
    home = Path(args.home).absolute()
    logs = home / "logs"
    endpoints_path = home / "endpoints.json"
    runtime = EmbeddedRuntime(home)
    try:
        # First of all: a second `c360 up` here must leave the running one's files alone.
        runtime.claim()
    except RuntimeBusyError as exc:
        _say(f"c360 up: {exc}; it keeps running (endpoints in {_display(endpoints_path)})")
        return 1
    private_dir(logs)
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
        runtime.nats_config = natsauth.authorization(passwords)

    def nats_url(role: str) -> str:
        if role not in passwords:
            return runtime.nats_url
        return natsauth.url_for(runtime.nats_url, role, passwords[role])

    supervisor: Supervisor | None = None
    holds = PortHolds()
    # The services' processes are forked from it; it imports while PostgreSQL and NATS start.
    zygote = zygote_for(logs)
    try:
        try:
            runtime.start()
        except RuntimeError as exc:
            _say(f"c360 up: {exc}")
            return 1
        if stop.is_set():
            return 0
        postgres_url_for = None
        if runtime.postgres is not None:  # ours: each service gets a role of its own
            owned = {name: spec.schemas for name, spec in registry.services().items()}
            schemas = {name: each[0] for name, each in owned.items()}
            database = pgroles.database_of(runtime.postgres_url)
            pg_passwords = pgroles.load_passwords(
                home / "auth" / "postgres-roles.json",
                [pgroles.role_name(database, s) for s in schemas.values()],
            )
            role_urls = pgroles.prepare(
                runtime.postgres_url,
                owned.values(),
                pg_passwords,
                may_create_schemas=[schemas[registry.TIMELINE]],
            )

            def postgres_url_for(name: str) -> str:
                return role_urls[schemas[name]]

        # The signing key stays here (HOME/auth/signing.pem, 0600): the services get its
        # public key and a token each, nothing that signs one.
        signing_key = auth.home_signing_key(home)
        auth.write_role_tokens(home, signing_key)
        # Every port serves TLS and admits only callers with a certificate of this
        # deployment's authority (HOME/tls); this process checks health as the operator.
        issued = certificates.local_authority(home / "tls")
        tls.use(issued["operator"])
        deployment = Deployment.plan(
            runtime.postgres_url,
            runtime.nats_url,
            base_port=args.base_port,
            nats_url_for=nats_url,
            signing_key=signing_key,
            postgres_url_for=postgres_url_for,
            # Each service's relay in a process of its own, off the API's interpreter.
            relay_apart=True,
            tls=issued["service"],
            # `c360 token revoke` writes it; the services read it again when it changes.
            revocations=home / "auth" / "revoked.json",
            # Data keys are stored wrapped under it, out of the database (keywrap).
            key_wrap=keywrap.home_kek(home),
        )
        # Ours from now until each service's process starts and holds its own: the services
        # connect to PostgreSQL, NATS and one another while the next ones start, and any of
        # those connections could otherwise take a port still to be bound (50051... lie in
        # the kernel's ephemeral range).
        holds.hold(deployment.host, *deployment.ports.values())
        # Streams are the admin's to create and configure, not the services' (on a NATS of
        # c360's own; on one NATS_URL names, the URL given is all c360 has, and it creates
        # them too, the partners' feeds among them, which no service makes for itself).
        asyncio.run(natsauth.prepare_streams(nats_url(natsauth.ADMIN)))
        supervisor = Supervisor(
            deployment,
            logs,
            say=lambda text: _say(f"c360 up: {text}"),
            servers=runtime.servers,
            zygote=zygote,
            holds=holds,
        )
        supervisor.start()
        if not supervisor.wait_ready(stop) or stop.is_set():
            return 0 if stop.is_set() else 1
        addresses = deployment.addresses
        document: dict[str, object] = dict(addresses)
        document["postgres_url"] = runtime.postgres_url
        document["nats_url"] = nats_url(natsauth.ADMIN)
        # Also under one key, so that readers need not know the services' names.
        document["services"] = addresses
        # The certificates callers show: the CLI's, and one to hand to integrations.
        document["tls"] = issued["operator"].document()
        document["tls_integration"] = issued["integration"].document()
        if passwords:  # a NATS URL with credentials per role, for integrators and services
            document["nats_users"] = {
                role: nats_url(role) for role in passwords if role != natsauth.ADMIN
            }
        # The services that serve the catch-up read of their store (subscribers replay from).
        document["event_sources"] = {
            name: address
            for name, address in addresses.items()
            if serving(address, 5.0, EVENT_LOG_SERVICE)
        }
        atomic_write_text(endpoints_path, json.dumps(document, indent=2) + "\n")
        _say(f"c360 ready — endpoints in {_display(endpoints_path)}", sys.stdout)
        _say(_next_steps(home), sys.stdout)
        return supervisor.watch(stop)
    finally:
        if supervisor is not None:
            supervisor.stop()
        holds.release_all()
        zygote.stop()
        runtime.stop()
        endpoints_path.unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if supervisor is not None:
            _say(
                "c360 stopped: every service, NATS and PostgreSQL (the data stays in"
                f" {_display(home)})"
            )


def _next_steps(home: Path) -> str:
    """What to do with a stack that is ready (from another terminal, in this folder): the
    `c360` this one is (`.venv/bin/c360` under `make run`, unless it is on the PATH)."""
    script = Path(sys.argv[0])
    on_path = shutil.which("c360")
    c360 = (
        "c360"
        if script.name != "c360" or (on_path and Path(on_path).resolve() == script.resolve())
        else _display(script.absolute())
    )
    flag = "" if home == Path(DEFAULT_HOME).absolute() else f" --home {_display(home)}"
    return (
        f"  next, in another terminal here: {c360}{flag} demo (sample data), then"
        f" {c360} --help; Ctrl-C here stops everything"
    )
