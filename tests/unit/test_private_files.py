"""What `c360 up` keeps under its home (.c360: passwords, secrets, logs with the audit trail)
is out of other local users' reach: the home is 0700 and the logs 0600, also when an older
run left them looser; and the PostgreSQL socket's directory in /tmp is one no other account
prepared."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from c360_platform.embedded import EmbeddedRuntime, private_socket_dir
from c360_platform.processes import open_log, private_dir
from c360_platform.supervisor import ServiceProcess


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that takes nothing away, so that only the code's own modes count."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_private_directory_is_made_0700_and_a_looser_one_tightened(
    tmp_path: Path, open_umask: None
) -> None:
    made = private_dir(tmp_path / "home" / "logs")
    assert mode(made) == 0o700
    old = tmp_path / "old"
    old.mkdir(mode=0o755)
    (old / "kept.txt").write_text("x")
    assert mode(private_dir(old)) == 0o700
    assert (old / "kept.txt").read_text() == "x"


def test_a_log_is_made_0600_and_a_looser_one_tightened(tmp_path: Path, open_umask: None) -> None:
    with open_log(tmp_path / "new.log") as log:
        log.write(b"one\n")
    assert mode(tmp_path / "new.log") == 0o600
    old = tmp_path / "old.log"
    old.write_bytes(b"before\n")
    old.chmod(0o644)
    with open_log(old) as log:
        log.write(b"after\n")
    assert mode(old) == 0o600
    assert old.read_bytes() == b"before\nafter\n"


def test_a_service_process_writes_a_log_only_its_owner_reads(
    tmp_path: Path, open_umask: None
) -> None:
    log_path = tmp_path / "logs" / "echo.log"
    log_path.parent.mkdir()
    process = ServiceProcess(
        "echo", "127.0.0.1:1", [sys.executable, "-c", "print('hello')"], dict(os.environ), log_path
    )
    process.spawn()
    assert process.proc is not None
    assert process.proc.wait(timeout=30) == 0
    assert mode(log_path) == 0o600
    assert b"hello" in log_path.read_bytes()


def test_the_runtimes_home_is_tightened_when_claimed(tmp_path: Path, open_umask: None) -> None:
    home = tmp_path / ".c360"
    home.mkdir(mode=0o755)
    runtime = EmbeddedRuntime(home)
    runtime.claim()
    try:
        assert mode(home) == 0o700
    finally:
        runtime.stop()


ME = frozenset({os.geteuid()})


def test_the_socket_directory_is_made_private_or_kept_when_it_is(
    tmp_path: Path, open_umask: None
) -> None:
    made, refused = private_socket_dir(tmp_path, "c360pg-abc", ME)
    assert (made, refused) == (tmp_path / "c360pg-abc", False)
    assert stat.S_ISDIR(os.lstat(made).st_mode)
    assert mode(made) == 0o700
    assert private_socket_dir(tmp_path, "c360pg-abc", ME) == (made, False)  # ours: kept


def _link(path: Path) -> None:
    target = path.parent / "elsewhere"
    target.mkdir(mode=0o700)
    path.symlink_to(target)


def _open(path: Path) -> None:
    path.mkdir()
    path.chmod(0o777)


def _file(path: Path) -> None:
    path.write_text("")


@pytest.mark.parametrize("hostile", [_link, _open, _file], ids=["symlink", "0777", "file"])
def test_a_socket_directory_someone_else_prepared_is_not_used(
    tmp_path: Path, open_umask: None, hostile: Callable[[Path], None]
) -> None:
    squatted = tmp_path / "c360pg-abc"
    hostile(squatted)
    found, refused = private_socket_dir(tmp_path, "c360pg-abc", ME)
    assert refused
    assert found != squatted
    assert found.parent == tmp_path
    assert found.name.startswith("c360pg-abc-")
    info = os.lstat(found)
    assert stat.S_ISDIR(info.st_mode)
    assert info.st_uid == os.geteuid()
    assert mode(found) == 0o700


def test_a_socket_directory_of_another_account_is_not_used(tmp_path: Path) -> None:
    (tmp_path / "c360pg-abc").mkdir(mode=0o700)  # ours; as if another account's below
    stranger = frozenset({os.geteuid() + 1})
    found, refused = private_socket_dir(tmp_path, "c360pg-abc", stranger)
    assert refused
    assert found != tmp_path / "c360pg-abc"
