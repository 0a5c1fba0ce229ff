"""A service process holds its ports from its start until its server binds them, and `c360 up`
holds every service's port from when it chose them until that service's process starts."""

from __future__ import annotations

import errno
import socket
import sys
import textwrap
from pathlib import Path

import pytest

from c360_platform import rpc
from c360_platform.deployment import Deployment
from c360_platform.processes import PortHolds
from c360_platform.supervisor import Supervisor


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _bind(port: int) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


async def test_a_held_port_is_no_one_elses_until_the_server_binds_it() -> None:
    port = _free_port()
    rpc.reserve_ports("127.0.0.1", port, None, 0)
    try:
        # Held: nothing else binds it, and the kernel gives no outgoing connection that
        # local port (it never picks a bound one).
        with pytest.raises(OSError, match="in use") as taken:
            _bind(port)
        assert taken.value.errno == errno.EADDRINUSE
        host = rpc.ServiceHost("held", port)
        assert await host.start() == port  # released for the server, which binds it
        assert port not in rpc.held
        await host.stop()
    finally:
        rpc.held.release(port)


def test_a_port_in_use_already_is_not_held_and_workers_share_a_hold() -> None:
    port = _free_port()
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        rpc.reserve_ports("127.0.0.1", port)  # the server's own bind will say it is in use
        assert port not in rpc.held
    shared = _free_port()
    try:
        rpc.reserve_ports("127.0.0.1", shared, reuse_port=True)
        with socket.socket() as worker:  # another worker's hold of the same port
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", shared))
        assert shared in rpc.held
    finally:
        rpc.held.release(shared)
    assert shared not in rpc.held


def test_the_supervisor_lets_each_port_go_only_as_its_process_starts(tmp_path: Path) -> None:
    first, second = _free_port(), _free_port()
    holds = PortHolds()
    holds.hold("127.0.0.1", first, second)
    assert first in holds
    assert second in holds
    deployment = Deployment.plan("postgresql://unused", "nats://unused", specs={})
    supervisor = Supervisor(deployment, tmp_path / "logs", holds=holds)
    try:
        # A stand-in for a service process: it binds its port at once, as serve.main does.
        bind = textwrap.dedent(
            f"""
            import socket
            with socket.socket() as s:
                s.bind(("127.0.0.1", {first}))
            """
        )
        supervisor.add("stand-in", [sys.executable, "-c", bind], {}, f"127.0.0.1:{first}")
        supervisor.start()
        process = supervisor.processes["stand-in"].proc
        assert process is not None
        assert process.wait(timeout=30) == 0, (tmp_path / "logs" / "stand-in.log").read_text()
        # The other port is still held: its process has not started.
        assert first not in holds
        assert second in holds
        with pytest.raises(OSError, match="in use"):
            _bind(second)
    finally:
        supervisor.stop()
        holds.release_all()
    _bind(second)
