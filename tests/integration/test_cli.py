"""The `c360` CLI end to end: real subprocesses against a stack that `c360 up` runs."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from c360.customer.v1 import customer_service_pb2 as capi
from c360.customer.v1 import customer_service_pb2_grpc as customer_grpc
from c360_platform.processes import free_port, stop_child

pytestmark = pytest.mark.integration

READY_TIMEOUT = 90.0
COMMAND_TIMEOUT = 60.0


@dataclass
class Up:
    """A running `c360 up` and the home directory it writes endpoints.json to."""

    proc: subprocess.Popen[str]
    home: Path
    output: list[str]

    def logs(self) -> str:
        parts = ["".join(self.output)]
        for log in sorted((self.home / "logs").glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)


def _pump(stream: IO[str], lines: queue.Queue[str], output: list[str]) -> None:
    for line in stream:
        output.append(line)
        lines.put(line)


BIND_FAILED = "Failed to bind to address"
"""What a service of `c360 up` logs when another process took its port between the fixture's
look and the bind (the look cannot reserve it): then `up` is started again on new ports."""


def _start_up(command: list[str], env: dict[str, str], home: Path) -> Up:
    """One `c360 up` on a fresh range of ports, ready; pytest.fail if it stopped otherwise."""
    proc = subprocess.Popen(
        [*command, "--base-port", str(free_port(count=8))],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    running = Up(proc, home, [])
    threading.Thread(target=_pump, args=(proc.stdout, lines, running.output), daemon=True).start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or proc.poll() is not None:
                pytest.fail(f"c360 up did not become ready:\n{running.logs()}")
            try:
                if "ready" in lines.get(timeout=min(remaining, 1.0)):
                    return running
            except queue.Empty:
                continue
    except BaseException:
        stop_child(proc, signal.SIGTERM, 30)
        raise


@contextlib.contextmanager
def running_up(home: Path, env: dict[str, str]) -> Iterator[Up]:
    """`c360 up --home home` with `env`, ready when it printed its ready line; stopped after.
    Started again on new ports (three times at most) if a port was taken meanwhile."""
    command = [sys.executable, "-m", "c360_cli.main", "up", "--home", str(home)]
    for attempt in (1, 2, 3):
        try:
            running = _start_up(command, env, home)
            break
        except pytest.fail.Exception as failed:
            if attempt == 3 or BIND_FAILED not in str(failed):
                raise
    try:
        yield running
    finally:
        stop_child(running.proc, signal.SIGTERM, 30)


@pytest.fixture
def up(tmp_path: Path, database_url: str, fresh_nats_url: str) -> Iterator[Up]:
    """`c360 up` on a fresh database and nats-server."""
    env = dict(os.environ, C360_POSTGRES_URL=database_url, NATS_URL=fresh_nats_url)
    with running_up(tmp_path / "home", env) as running:
        yield running


def c360(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "c360_cli.main", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def c360_json(home: Path, *args: str) -> Any:
    """Run the CLI with --json; it must succeed and print one JSON document."""
    done = c360(home, *args, "--json")
    assert done.returncode == 0, f"c360 {' '.join(args)}: {done.stderr}"
    return json.loads(done.stdout)


def _without_cursor(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries as a rebuild must reproduce them (the arrival cursor may be renumbered)."""
    return [{k: v for k, v in e.items() if k != "cursor"} for e in entries]


def test_cli_against_a_running_stack(up: Up) -> None:
    home = up.home
    assert json.loads((home / "endpoints.json").read_text()).keys() >= {
        "customer",
        "timeline",
        "postgres_url",
        "nats_url",
    }

    # register, then read your own write with the token, on the first read
    registered = c360_json(
        home,
        "customer",
        "register",
        "--name",
        "Ieva Žirnovska",
        "--email",
        "ieva@example.lv",
        "--phone",
        "+371 21 234 567",
    )
    assert registered["version"] == 1
    customer_id = registered["customer_id"]
    token = registered["consistency_token"]
    timeline = c360_json(home, "timeline", "show", customer_id, "--wait-for", token)
    assert timeline["customer_id"] == customer_id
    assert [e["type"] for e in timeline["entries"]] == ["customer.registered"]
    entry = timeline["entries"][0]
    assert entry["source"] == "customer"
    assert entry["occurred_at"].endswith("Z")
    assert "Ieva Žirnovska" in entry["summary"]
    # Its events reached the timeline through the customer service's relay, a process of its own.
    assert "relay customer active in pid" in (home / "logs" / "customer-relay.log").read_text()
    assert "relay customer active" not in (home / "logs" / "customer.log").read_text()
    assert {"event_id", "details", "cursor", "summary"} <= entry.keys()

    # bad input: refused naming the field, without a traceback, and nothing stored
    before = c360_json(home, "verify")
    refused = c360(home, "customer", "register", "--name", "Ola Nordmann", "--email", "not-mail")
    assert refused.returncode != 0
    assert "email: not a valid address" in refused.stderr
    assert "Traceback" not in refused.stderr
    after = c360_json(home, "verify")
    assert after["stored_events"] == before["stored_events"]

    # the demo, then every stored event is in the timeline exactly once
    demo = c360_json(home, "demo", "--customers", "30", "--seed", "7")
    assert demo["customers"] == 30
    assert demo["organisations"] >= 1
    assert demo["ivr_contacts"] > 0
    assert demo["service_contracts"] == demo["organisations"]
    assert demo["tickets_on_hold"] > 0
    on_hold = c360_json(home, "ticket", "list", "--on-hold", "--all")["tickets"]
    assert len(on_hold) == demo["tickets_on_hold"]
    assert {t["waiting_for"] for t in on_hold} <= {"customer", "third-party"}
    report = c360_json(home, "verify")
    assert report["ok"] is True, report
    assert report["missing"]["count"] == 0
    assert report["doubled"]["count"] == 0
    assert report["stored_events"] > before["stored_events"] + demo["customers"]
    assert report["timeline_entries"] + report["about_no_customer"] == report["stored_events"]

    # running the same demo again replays every command and stores nothing new
    # (The services' schedulers — SLA clocks, contract dates, classes — may store events of
    # their own at any moment, so the store's count is not compared.)
    again = c360_json(home, "demo", "--customers", "30", "--seed", "7")
    assert again["replayed"] == again["commands"] == demo["commands"]

    # search finds a demo customer by name
    example = demo["examples"][1]
    found = c360_json(home, "search", example["display_name"], "--limit", "100")
    assert example["customer_id"] in [h["customer_id"] for h in found["hits"]]

    # merge a duplicate into a customer: the survivor's timeline shows both histories
    twin = c360_json(home, "customer", "register", "--name", "Ieva Zhirnovska")
    merged = c360_json(
        home, "customer", "merge", customer_id, twin["customer_id"], "--reason", "same person"
    )
    assert merged["customer_id"] == customer_id
    assert merged["merge_id"]
    pointer = c360_json(home, "customer", "get", twin["customer_id"])
    assert pointer["merged_into"] == customer_id
    both = c360_json(
        home, "timeline", "show", customer_id, "--wait-for", merged["consistency_token"]
    )
    assert {e["customer_id"] for e in both["entries"]} == {customer_id, twin["customer_id"]}

    # a rebuild of the read model gives the same timelines, merged ones included
    organisation = demo["examples"][0]["customer_id"]
    shown = c360_json(home, "timeline", "show", organisation, "--limit", "500")
    assert len(shown["entries"]) >= 3
    rebuilt = c360_json(home, "timeline", "rebuild")
    # every stored event, the merge's three, and the ERP events the demo published (the
    # sales part's deliveries and invoices, the marketing part's payments)
    erp = demo["erp_deliveries"] + demo["erp_order_invoices"] + demo["erp_payments"]
    assert demo["erp_order_invoices"] > 0
    stored = report["stored_events"] + 3 + erp
    assert rebuilt["applied"] == rebuilt["total"] >= stored
    # It took over with every profile's search columns filled: a search finds at once.
    assert rebuilt["profiles_indexed"] == rebuilt["profiles_to_index"]
    found = c360_json(home, "search", example["display_name"], "--limit", "100")
    assert example["customer_id"] in [h["customer_id"] for h in found["hits"]]
    rechecked = c360_json(home, "verify")
    assert (rechecked["ok"], rechecked["missing"]["count"], rechecked["doubled"]["count"]) == (
        True,
        0,
        0,
    )
    reshown = c360_json(home, "timeline", "show", organisation, "--limit", "500")
    assert _without_cursor(reshown["entries"]) == _without_cursor(shown["entries"])
    again_both = c360_json(home, "timeline", "show", customer_id)
    assert _without_cursor(again_both["entries"]) == _without_cursor(both["entries"])

    unmerged = c360_json(home, "customer", "unmerge", twin["customer_id"])
    assert unmerged["merge_id"] == merged["merge_id"]
    alone = c360_json(
        home, "timeline", "show", customer_id, "--wait-for", unmerged["consistency_token"]
    )
    assert {e["customer_id"] for e in alone["entries"]} == {customer_id}
    assert c360_json(home, "verify")["ok"] is True

    # An erasure: afterwards the customer, its ticket, its timeline and the services' logs
    # show none of its personal data, and every event is still in the timeline once.
    secret = {"name": "Quintus Forgetme", "email": "quintus.forgetme@example.org"}
    erased = c360_json(
        home, "customer", "register", "--name", secret["name"], "--email", secret["email"]
    )
    c360_json(
        home, "timeline", "show", erased["customer_id"], "--wait-for", erased["consistency_token"]
    )  # the desk opens tickets for customers the timeline knows
    ticket = c360_json(
        home,
        "ticket",
        "open",
        "--customer",
        erased["customer_id"],
        "--channel",
        "email",
        "--subject",
        f"Invoice for {secret['name']}",
    )
    forgot = c360_json(home, "customer", "forget", erased["customer_id"])
    gone = c360_json(home, "customer", "get", erased["customer_id"])
    assert (gone["display_name"], gone["emails"], bool(gone["forgotten_at"])) == (
        "[forgotten]",
        [],
        True,
    )
    shown = c360_json(
        home, "timeline", "show", erased["customer_id"], "--wait-for", forgot["consistency_token"]
    )
    assert "customer.forgotten" in {e["type"] for e in shown["entries"]}
    deadline = time.monotonic() + 20  # the services trust a key they read for 5 s
    while True:
        texts = json.dumps(c360_json(home, "timeline", "show", erased["customer_id"]))
        texts += json.dumps(c360_json(home, "ticket", "show", ticket["ticket_id"]))
        leaked = [value for value in secret.values() if value in texts]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert leaked == []
    assert "[forgotten]" in texts
    logs = "".join(p.read_text(errors="replace") for p in (home / "logs").glob("*.log"))
    assert logs, "no service logs to scan"
    assert all(value not in logs for value in secret.values())
    assert c360_json(home, "verify")["ok"] is True
    # Every process served all of the above on uvloop (C360_EVENT_LOOP's default).
    loops = re.findall(r" serving on \S+ \(event loop: (\w+)\)", logs)
    assert len(loops) >= 5, logs[-3000:]
    assert set(loops) == {"uvloop"}

    # `c360 up` stops cleanly on SIGTERM
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(30) == 0, up.logs()
    assert not (home / "endpoints.json").exists()


def _health(channel: grpc.Channel) -> Any:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)


def test_every_port_serves_tls_to_holders_of_the_deployments_certificates(up: Up) -> None:
    endpoints = json.loads((up.home / "endpoints.json").read_text())
    address = endpoints["services"]["customer"]
    ca = Path(endpoints["tls"]["ca"]).read_bytes()
    # Plain text, and TLS without a client certificate: refused before any RPC.
    for credentials in (None, grpc.ssl_channel_credentials(ca)):
        channel = (
            grpc.insecure_channel(address)
            if credentials is None
            else grpc.secure_channel(address, credentials)
        )
        with channel, pytest.raises(grpc.RpcError) as refused:
            _health(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # The integration certificate (endpoints.json's, to hand to integrators): health answers;
    # a call still needs a token of a role that may make it.
    files = endpoints["tls_integration"]
    mutual = grpc.ssl_channel_credentials(
        ca, Path(files["key"]).read_bytes(), Path(files["cert"]).read_bytes()
    )
    with grpc.secure_channel(address, mutual) as channel:
        assert _health(channel).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as refused:
            customer_grpc.CustomerServiceStub(channel).GetCustomer(
                capi.GetCustomerRequest(customer_id="00000000-0000-4000-8000-000000000001"),
                timeout=5,
            )
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # The keys are the owner's alone; the CLI uses its certificate without flags.
    for name in ("ca.key", "service.key", "operator.key", "integration.key"):
        assert (up.home / "tls" / name).stat().st_mode & 0o777 == 0o600
    registered = c360_json(up.home, "customer", "register", "--name", "Tl Ess")
    assert registered["customer_id"]


def test_a_larger_demo_leaves_out_the_customer_a_smaller_one_erased(up: Up) -> None:
    """A smaller demo erases its last person; a larger one gives that person more to do (with
    seed 9, customer 14 of 15 changes to organisation 16, which only the larger run has). The
    larger run replays what the smaller recorded and leaves out the forgotten person's new
    steps; it failed on them ("customer ... is forgotten: it takes no more changes")."""
    home = up.home
    small = c360_json(home, "demo", "--customers", "15", "--seed", "9")
    assert small["forgotten_customers"] == 1
    done = c360(home, "demo", "--customers", "32", "--seed", "9", "--json")
    assert done.returncode == 0, done.stderr
    larger = json.loads(done.stdout)
    assert larger["customers"] == 32
    assert larger["forgotten_customers"] == 1  # the larger run's own last person
    assert larger["forgotten_earlier"] == 1  # the smaller run's, left out
    assert c360_json(home, "verify")["ok"] is True


def test_a_followed_timeline_reads_oldest_first_with_new_entries_below(up: Up) -> None:
    """`timeline show --follow` printed its page newest first, then the entries that arrived
    below it: the newest at the bottom and at the top, the oldest in the middle."""
    home = up.home
    ada = c360_json(home, "customer", "register", "--name", "Ada Follow")
    ada_id = ada["customer_id"]
    owner = c360_json(home, "customer", "owner", ada_id, "emp-0042")
    c360_json(home, "timeline", "show", ada_id, "--wait-for", owner["consistency_token"])
    command = [sys.executable, "-m", "c360_cli.main", "--home", str(home), "timeline"]
    follow = subprocess.Popen(
        [*command, "show", ada_id, "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, COLUMNS="100"),
        # Ctrl-C as at a terminal: a pytest-xdist worker ignores SIGINT, and a child
        # inherits that (Python then installs no KeyboardInterrupt for it).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        time.sleep(3)  # the page is printed and the stream open
        tags = c360_json(home, "customer", "tag", ada_id, "--add", "vip")
        c360_json(home, "timeline", "show", ada_id, "--wait-for", tags["consistency_token"])
        time.sleep(2)
    finally:
        follow.send_signal(signal.SIGINT)
        out, _ = follow.communicate(timeout=30)
    order = [
        n
        for line in out.splitlines()
        for n, word in enumerate(("Registered", "Owner set", "Tags added"))
        if word in line
    ]
    assert order == [0, 1, 2], out


def test_a_second_up_in_the_same_folder_leaves_the_first_usable(up: Up) -> None:
    home = up.home
    endpoints = (home / "endpoints.json").read_text()
    second = subprocess.run(
        [sys.executable, "-m", "c360_cli.main", "up", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env=dict(os.environ),
        check=False,
    )
    assert second.returncode == 1
    assert "another process is running" in second.stderr
    # Its files are as they were, and the CLI still reaches the running stack through them.
    assert (home / "endpoints.json").read_text() == endpoints
    registered = c360_json(home, "customer", "register", "--name", "Still Here")
    assert c360_json(home, "customer", "get", registered["customer_id"])["display_name"] == (
        "Still Here"
    )
    assert up.proc.poll() is None


def _printed(up: Up, text: str) -> bool:
    """Whether `c360 up` printed `text` (within a few seconds: a thread reads its output)."""
    for _ in range(50):
        if text in "".join(up.output):
            return True
        time.sleep(0.1)
    return False


def test_up_says_what_next_and_stops_everything_on_ctrl_c(up: Up) -> None:
    assert _printed(up, f"c360 --home {up.home} demo (sample data)")
    assert _printed(up, "Ctrl-C here stops everything")
    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(timeout=60) == 0
    assert _printed(up, "c360 stopped: every service, NATS and PostgreSQL")
    assert not (up.home / "endpoints.json").exists()


def test_import_and_errors_exit_as_scripts_expect(up: Up, tmp_path: Path) -> None:
    home = up.home
    sample = Path(__file__).parents[2] / "examples" / "customers.csv"
    first = c360_json(home, "customer", "import", str(sample))
    assert (first["created"], first["rejected"]) == (6, [])
    again = c360_json(home, "customer", "import", str(sample))
    assert (again["created"], again["unchanged"]) == (0, 6)
    # The source system asks c360 for the ids (keyed: it cannot compute them).
    keys = [line.split(",")[0] for line in sample.read_text().splitlines()[1:3]]
    found = c360(home, "customer", "imported", *keys, "no-such-key", "--json")
    assert found.returncode == 1  # one key was never imported
    customers = json.loads(found.stdout)["customers"]
    assert [c["external_key"] for c in customers] == [*keys, "no-such-key"]
    assert customers[2]["customer_id"] is None
    for c in customers[:2]:
        got = c360_json(home, "customer", "get", c["customer_id"])
        assert got["customer_id"] == c["customer_id"]

    bad = tmp_path / "bad.csv"
    bad.write_text("external_key,kind,name,email\nx-1,person,,nobody@\nx-2,robot,R2,\n")
    done = c360(home, "customer", "import", str(bad), "--json")
    assert done.returncode == 1  # rows refused, nothing imported
    assert len(json.loads(done.stdout)["rejected"]) == 2

    unknown = c360(home, "timeline", "show", "00000000-0000-4000-8000-000000000000", "--json")
    assert unknown.returncode == 1
    assert "the timeline has no customer" in json.loads(unknown.stderr)["error"]["message"]
    assert c360(home, "--version").stdout.startswith("c360 ")
