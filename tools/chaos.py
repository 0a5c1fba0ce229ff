"""`make chaos`: a fault suite under load against the whole system as `make run` starts it.

`c360 up` runs in a home of its own (embedded PostgreSQL and nats-server, every registered
service). Writers register customers and open tickets with request ids (retried with the same
id until acknowledged), and an ERP stand-in publishes invoices on `erp.>` (retried with the same
de-duplication id). Meanwhile, one at a time and at random moments, kill -9 hits each service
process (its API; the timeline's holds the active projector), each service's relay process,
nats-server and the postmaster. After each fault a probe (a registration and a ticket, read
back from the timeline with their consistency tokens) measures the time until the projection
was current again. At the end `c360 verify` must be ok and every acknowledged command and
ERP event must be on its customer's timeline exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import nats
from rich.console import Console
from rich.table import Table

from c360.customer.v1 import customer_service_pb2 as capi
from c360.customer.v1 import customer_service_pb2_grpc as cgrpc
from c360.erp.v1 import erp_events_pb2 as erp
from c360.events.v1 import customer_events_pb2 as cev
from c360.events.v1 import ticket_events_pb2 as tev
from c360.service_desk.v1 import service_desk_service_pb2 as dapi
from c360.service_desk.v1 import service_desk_service_pb2_grpc as dgrpc
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360.timeline.v1 import timeline_service_pb2_grpc as tgrpc
from c360_platform import auth, registry, tls
from c360_platform.channels import aio_channel
from c360_platform.processes import free_port, pid_alive, pid_cmdline

console = Console(stderr=True)
CALL_TIMEOUT = 5.0
RECOVERY_LIMIT = 120.0


@dataclass
class Ledger:
    """What the system acknowledged, to be found exactly once at the end."""

    customers: list[str] = field(default_factory=list)
    tickets: list[tuple[str, str]] = field(default_factory=list)  # (customer, ticket)
    invoices: list[tuple[str, str]] = field(default_factory=list)  # (customer, number)
    refusals: Counter[str] = field(default_factory=Counter)


@dataclass
class Fault:
    target: str
    pid: int
    at: float
    recovered: float | None = None


def children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent:
            found.append(int(entry.name))
    return found


def pid_of(up: int, target: str) -> int | None:
    """The live process of `target` among `c360 up`'s children (the embedded servers) and
    grandchildren (the services, forked from its zygote, show their `c360_platform.serve`
    command line as one title)."""
    near = children(up)
    for pid in [*near, *(grandchild for child in near for grandchild in children(child))]:
        cmdline = pid_cmdline(pid) or []
        if not pid_alive(pid) or not cmdline:
            continue
        if target == "postgres" and Path(cmdline[0]).name == "postgres":
            return pid
        if target == "nats-server" and Path(cmdline[0]).name == "nats-server":
            return pid
        words = " ".join(cmdline).split()
        if "c360_platform.serve" in words and words[-1] == target:
            return pid
        relay = words[-2:] == [target.removesuffix("-relay"), "--relay"]
        if "c360_platform.serve" in words and target.endswith("-relay") and relay:
            return pid
    return None


async def retried(call: Any, ledger: Ledger, stop_at: float) -> Any:
    """Call until acknowledged (the same request each time, so at most one effect)."""
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as error:
            ledger.refusals[str(error.code()).removeprefix("StatusCode.")] += 1
            if time.monotonic() > stop_at:
                raise
            await asyncio.sleep(0.2)


class Chaos:
    def __init__(self, home: Path, endpoints: dict[str, Any], up: subprocess.Popen[bytes]):
        self.home = home
        self.up = up
        self.endpoints = endpoints
        services = endpoints["services"]
        tls.use(tls.TlsFiles.from_document(endpoints.get("tls")))  # `c360 up` serves TLS
        token = auth.home_token(home, auth.Role.AGENT)
        self.channels = {name: aio_channel(addr, token) for name, addr in services.items()}
        self.customer = cgrpc.CustomerServiceStub(self.channels["customer"])
        self.desk = dgrpc.ServiceDeskServiceStub(self.channels["service-desk"])
        self.timeline = tgrpc.TimelineServiceStub(self.channels[registry.TIMELINE])
        self.ledger = Ledger()
        self.done = asyncio.Event()

    async def register(self, name: str, deadline: float) -> capi.RegisterCustomerResponse:
        request = capi.RegisterCustomerRequest(
            request_id=str(uuid.uuid4()),
            kind=cev.CUSTOMER_KIND_PERSON,
            display_name=name,
            acquisition_channel="web",
        )
        reply: capi.RegisterCustomerResponse = await retried(
            lambda: self.customer.RegisterCustomer(request, timeout=CALL_TIMEOUT),
            self.ledger,
            deadline,
        )
        return reply

    async def open_ticket(self, customer_id: str, deadline: float) -> dapi.OpenTicketResponse:
        request = dapi.OpenTicketRequest(
            request_id=str(uuid.uuid4()),
            customer_id=customer_id,
            channel=tev.TICKET_CHANNEL_EMAIL,
            subject="Chaos ticket",
        )
        reply: dapi.OpenTicketResponse = await retried(
            lambda: self.desk.OpenTicket(request, timeout=CALL_TIMEOUT), self.ledger, deadline
        )
        return reply

    async def writer(self, n: int) -> None:
        i = 0
        while not self.done.is_set():
            i += 1
            deadline = time.monotonic() + RECOVERY_LIMIT
            reply = await self.register(f"Chaos {n}-{i}", deadline)
            self.ledger.customers.append(reply.result.aggregate_id)
            if i % 3 == 0:
                ticket = await self.open_ticket(reply.result.aggregate_id, deadline)
                self.ledger.tickets.append((reply.result.aggregate_id, ticket.result.aggregate_id))

    async def erp_feed(self) -> None:
        """Invoices on erp.>, each re-published with its de-duplication id until acked."""

        async def counted(exc: Exception) -> None:  # the client reconnects by itself
            self.ledger.refusals[f"erp connection {type(exc).__name__}"] += 1

        nc = await nats.connect(
            self.endpoints["nats_users"]["erp"],
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=counted,
            inbox_prefix="_INBOX_erp",  # the only inbox the `erp` user may read
        )
        js = nc.jetstream()
        n = 0
        try:
            while not self.done.is_set():
                await asyncio.sleep(0.3)
                if not self.ledger.customers:
                    continue
                n += 1
                customer_id = random.choice(self.ledger.customers)
                event = erp.ErpEvent(
                    event_id=str(uuid.uuid4()), customer_id=customer_id, erp_system="chaos"
                )
                event.occurred_at.GetCurrentTime()
                number = f"CHAOS-{n:06d}"
                event.invoice_issued.CopyFrom(
                    erp.InvoiceIssued(
                        invoice_number=number,
                        amount=erp.Money(currency="EUR", amount="10.00"),
                        issue_date="2026-12-01",
                        due_date="2026-12-31",
                    )
                )
                give_up = time.monotonic() + RECOVERY_LIMIT
                while True:
                    try:
                        await js.publish(
                            "erp.invoice.issued",
                            event.SerializeToString(),
                            headers={"Nats-Msg-Id": event.event_id},
                            timeout=2,
                        )
                        break
                    except Exception as exc:
                        self.ledger.refusals[f"erp {type(exc).__name__}"] += 1
                        if time.monotonic() > give_up:
                            raise
                        await asyncio.sleep(0.3)
                self.ledger.invoices.append((customer_id, number))
        finally:
            await nc.close()

    async def probe(self) -> None:
        """A registration and a ticket, read back from the timeline: the projection is current."""
        deadline = time.monotonic() + RECOVERY_LIMIT
        reply = await self.register("Chaos probe", deadline)
        ticket = await self.open_ticket(reply.result.aggregate_id, deadline)
        self.ledger.customers.append(reply.result.aggregate_id)
        self.ledger.tickets.append((reply.result.aggregate_id, ticket.result.aggregate_id))
        for token in (reply.result.consistency_token, ticket.result.consistency_token):
            request = tapi.GetTimelineRequest(customer_id=reply.result.aggregate_id, wait_for=token)
            await retried(
                lambda r=request: self.timeline.GetTimeline(r, timeout=CALL_TIMEOUT),
                self.ledger,
                deadline,
            )

    async def faults(self, count: int, rng: random.Random) -> list[Fault]:
        relays = [f"{s.name}-relay" for s in registry.services().values() if s.publishes_events]
        targets = [*registry.services(), *relays, "nats-server", "postgres"]
        plan: list[str] = []
        while len(plan) < count:
            rng.shuffle(targets)
            plan += targets
        done: list[Fault] = []
        started = time.monotonic()
        for i, target in enumerate(plan[:count], 1):
            await asyncio.sleep(rng.uniform(1.0, 4.0))
            pid = pid_of(self.up.pid, target)
            if pid is None:
                raise RuntimeError(f"no live {target} process under c360 up")
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            fault = Fault(target, pid, killed - started)
            await self.probe()
            fault.recovered = time.monotonic() - killed
            done.append(fault)
            console.print(
                f"fault {i:2d}/{count}: kill -9 {target} (pid {pid}):"
                f" projection current after {fault.recovered:.1f} s",
                soft_wrap=True,
            )
        return done

    async def entries(self, customer_id: str) -> list[tapi.TimelineEntry]:
        found: list[tapi.TimelineEntry] = []
        token = ""
        while True:
            page = await self.timeline.GetTimeline(
                tapi.GetTimelineRequest(customer_id=customer_id, page_size=500, page_token=token),
                timeout=30,
            )
            found += page.entries
            token = page.next_page_token
            if not token:
                return found

    async def reconcile(self) -> tuple[int, int, int]:
        """(checked, lost, doubled) over every acknowledged command and ERP event."""
        await self.probe()  # everything acknowledged before it is projected once it is
        expected: dict[str, Counter[tuple[str, str]]] = {}
        for c in self.ledger.customers:
            expected.setdefault(c, Counter())[("customer.registered", c)] += 1
        for c, t in self.ledger.tickets:
            expected.setdefault(c, Counter())[("ticket.opened", t)] += 1
        for c, number in self.ledger.invoices:
            expected.setdefault(c, Counter())[("invoice.issued", number)] += 1
        # Give the ERP feed's last events (a separate path) a moment to arrive.
        lost = doubled = checked = 0
        for customer_id, wanted in expected.items():
            for attempt in range(50):
                seen: Counter[tuple[str, str]] = Counter()
                for e in await self.entries(customer_id):
                    if e.type == "invoice.issued":
                        seen[(e.type, str(e.details["invoice_number"]))] += 1
                    elif e.type in ("customer.registered", "ticket.opened"):
                        seen[(e.type, e.aggregate_id)] += 1
                missing = sum(max(0, n - seen[k]) for k, n in wanted.items())
                if missing == 0 or attempt == 49:
                    break
                await asyncio.sleep(0.2)
            checked += sum(wanted.values())
            lost += missing
            doubled += sum(max(0, seen[k] - n) for k, n in wanted.items())
        return checked, lost, doubled

    async def run(self, count: int, writers: int, rng: random.Random) -> int:
        load = [asyncio.create_task(self.writer(n)) for n in range(writers)]
        load.append(asyncio.create_task(self.erp_feed()))
        try:
            faults = await self.faults(count, rng)
        finally:
            self.done.set()
            await asyncio.gather(*load)
        checked, lost, doubled = await self.reconcile()
        verify = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "c360_cli.main", "--home", str(self.home), "verify", "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        verified = verify.returncode == 0 and bool(json.loads(verify.stdout or "{}").get("ok"))
        for channel in self.channels.values():
            await channel.close(None)

        table = Table(title=f"make chaos: {len(faults)} faults under load")
        for column in ("#", "kill -9", "pid", "at (s)", "current again after (s)"):
            table.add_column(column, justify="right" if column != "kill -9" else "left")
        for i, f in enumerate(faults, 1):
            table.add_row(str(i), f.target, str(f.pid), f"{f.at:.1f}", f"{f.recovered:.1f}")
        Console().print(table)
        recoveries = sorted(f.recovered or 0.0 for f in faults)
        median, worst = recoveries[len(recoveries) // 2], recoveries[-1]
        print(
            f"acknowledged: {len(self.ledger.customers)} registrations,"
            f" {len(self.ledger.tickets)} tickets, {len(self.ledger.invoices)} ERP invoices;"
            f" checked {checked}: lost {lost}, doubled {doubled};"
            f" c360 verify {'ok' if verified else 'NOT ok'};"
            f" recovery median {median:.1f} s, max {worst:.1f} s;"
            f" refused then retried: {dict(self.ledger.refusals)}"
        )
        if not verified:
            print(verify.stdout, verify.stderr)
        return 0 if lost == 0 and doubled == 0 and verified else 1


def wait_ready(up: subprocess.Popen[bytes], endpoints: Path, limit: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if up.poll() is not None:
            raise RuntimeError("c360 up exited before it was ready")
        if endpoints.exists():
            return dict(json.loads(endpoints.read_text()))
        time.sleep(0.2)
    raise RuntimeError("c360 up was not ready in time")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=20, help="kill -9s in all (default 20)")
    parser.add_argument("--writers", type=int, default=4, help="concurrent writers (default 4)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    console.print(f"chaos: seed {seed}, {args.faults} faults, {args.writers} writers")
    env = {k: v for k, v in os.environ.items() if k not in ("C360_POSTGRES_URL", "NATS_URL")}
    with tempfile.TemporaryDirectory(prefix="c360-chaos-") as tmp:
        home = Path(tmp) / "home"
        log = (Path(tmp) / "up.log").open("wb")
        up = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "c360_cli.main",
                "up",
                "--home",
                str(home),
                "--base-port",
                str(free_port(count=16)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            endpoints = wait_ready(up, home / "endpoints.json")

            async def suite() -> int:
                chaos = Chaos(home, endpoints, up)  # its channels belong to this loop
                return await chaos.run(args.faults, args.writers, random.Random(seed))

            return asyncio.run(suite())
        finally:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                up.kill()
            log.close()
            restarts = [
                line
                for line in (Path(tmp) / "up.log").read_text(errors="replace").splitlines()
                if "restart" in line
            ]
            console.print(f"c360 up reported {len(restarts)} restarts")


if __name__ == "__main__":
    sys.exit(main())
