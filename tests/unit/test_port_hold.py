"""A service process holds its ports from its start until its server binds them."""

from __future__ import annotations

import errno
import socket

import pytest

from c360_platform import rpc


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
        assert port not in rpc._reserved
        await host.stop()
    finally:
        rpc._release(port)


def test_a_port_in_use_already_is_not_held_and_workers_share_a_hold() -> None:
    port = _free_port()
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        rpc.reserve_ports("127.0.0.1", port)  # the server's own bind will say it is in use
        assert port not in rpc._reserved
    shared = _free_port()
    try:
        rpc.reserve_ports("127.0.0.1", shared, reuse_port=True)
        with socket.socket() as worker:  # another worker's hold of the same port
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", shared))
        assert shared in rpc._reserved
    finally:
        rpc._release(shared)
    assert shared not in rpc._reserved
