"""Child processes of ours: free ports, parent-death signals, pids, stopping, logs, atomic files,
private directories."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

_PR_SET_PDEATHSIG = 1


_LOWEST = 10000


def _ephemeral_low() -> int:
    """The lowest port the kernel hands to outgoing connections (32768 by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(count: int = 1) -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, with the `count - 1` ports after
    it free too. It lies below the kernel's ephemeral range, where no outgoing connection can
    take it between this look and the bind (a random pick keeps concurrent callers apart)."""
    high = _ephemeral_low() - count
    for _ in range(200):
        port = random.randrange(_LOWEST, max(high, _LOWEST + 1))
        if all(port_is_free(port + i) for i in range(count)):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


class PortHolds:
    """Ports this process holds (bound, not listening) until it lets each go: no one else
    binds them meanwhile, and the kernel gives no outgoing connection a local port that is
    bound. c360's ports (50051...) lie in Linux's default ephemeral range (32768-60999), so
    an outgoing connection (to PostgreSQL, NATS, a service) could otherwise take one before
    its server binds it ("Address already in use"). With `reuse_port` (worker processes
    sharing a port) a hold shares it too. A port that cannot be held (in use already, or 0:
    any) is left for its server's bind to report as it would have."""

    def __init__(self) -> None:
        self._held: dict[int, socket.socket] = {}

    def __contains__(self, port: object) -> bool:
        return port in self._held

    def hold(self, host: str, *ports: int | None, reuse_port: bool = False) -> None:
        address = host.strip("[]") or "0.0.0.0"
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        for port in ports:
            if not port or port in self._held:
                continue
            held = socket.socket(family, socket.SOCK_STREAM)
            try:
                if reuse_port:
                    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                held.bind((address, port))
            except OSError:
                held.close()
                continue
            self._held[port] = held

    def release(self, port: int | None) -> None:
        """Let go of `port` (if held), for its server to bind it now."""
        held = self._held.pop(port, None) if port else None
        if held is not None:
            held.close()

    def release_all(self) -> None:
        for port in list(self._held):
            self.release(port)


def port_is_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:port (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Loaded once in the parent: the forked child must not need to load libraries.
_PRCTL = _load_prctl()


def child_preexec(death_signal: int) -> Callable[[], None]:
    """A `preexec_fn` that makes the child receive `death_signal` when its parent dies.

    Linux delivers the signal when the *thread* that forked the child exits, so start
    children from the main thread (or another thread that lives as long as they should).
    Credentials must be changed before this runs (Popen's `user=`/`group=` do that):
    changing credentials clears the parent-death signal.
    """
    parent = os.getpid()

    def preexec() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    """True if `pid` names a running (not zombie) process."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    status = Path(f"/proc/{pid}/status")
    try:
        for line in status.read_text().splitlines():
            if line.startswith("State:"):
                return "Z" not in line.split()[1]
    except OSError:
        return not status.parent.parent.is_dir()  # no /proc (macOS): trust kill(0)
    return True


def pid_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def wait_pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return not pid_alive(pid)


def stop_child(proc: subprocess.Popen[Any] | None, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically (temp file in the same directory + rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner may enter (0700): made if missing, and tightened
    if it is looser (as an older `c360 up` made it), so that nothing in it is within another
    local user's reach, whatever the modes of the files in it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def open_log(path: Path) -> BinaryIO:
    """`path` opened to append to, readable by its owner only (0600, tightened if it is
    looser): logs hold who called what (the audit trail) and the services' errors."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "ab")
