"""Embedded PostgreSQL and NATS keep their data across restarts, crashes and orphans."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import nats
import psycopg
import pytest
from nats.js.api import StorageType

from c360_platform import embedded
from c360_platform.embedded import EmbeddedNats, EmbeddedPostgres, EmbeddedRuntime

pytestmark = pytest.mark.integration


def _rows(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT k, v FROM kv ORDER BY k").fetchall()


def _kill9(server: EmbeddedPostgres | EmbeddedNats) -> None:
    """Simulate a crash of the server process and wait until it is gone."""
    assert server.pid is not None
    os.kill(server.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.running and time.monotonic() < deadline:
        time.sleep(0.01)


def test_postgres_keeps_committed_rows_across_restart_and_kill9(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    try:
        url = pg.start()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kv (k text PRIMARY KEY, v text NOT NULL)")
            conn.execute("INSERT INTO kv VALUES ('a', '1')")
        pg.stop()
        pg.stop()  # idempotent
        assert pg.pid is None

        assert pg.start() == url  # same port again
        assert _rows(url) == [("a", "1")]

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO kv VALUES ('b', '2')")
            _kill9(pg)  # crash with a client still connected
        assert not pg.running

        pg.start()
        assert _rows(url) == [("a", "1"), ("b", "2")]
    finally:
        pg.stop()


def test_postgres_stops_a_server_orphaned_on_its_data_dir(tmp_path: Path) -> None:
    first = EmbeddedPostgres(tmp_path / "pg")
    second = EmbeddedPostgres(tmp_path / "pg")  # as if the first's supervisor had died
    try:
        with psycopg.connect(first.start(), autocommit=True) as conn:
            conn.execute("CREATE TABLE kv (k text PRIMARY KEY, v text NOT NULL)")
            conn.execute("INSERT INTO kv VALUES ('a', '1')")
        orphan = first.pid
        url = second.start()
        assert orphan is not None
        assert not first.running
        assert second.pid != orphan
        assert _rows(url) == [("a", "1")]
    finally:
        second.stop()
        first.stop()


async def _stored(url: str, seq: int) -> bytes:
    nc = await nats.connect(url)
    try:
        msg = await nc.jetstream().get_msg("EVENTS", seq)
        return bytes(msg.data or b"")
    finally:
        await nc.close()


async def test_nats_file_stream_survives_restart_and_kill9(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    try:
        url = server.start()
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="EVENTS", subjects=["c360.>"], storage=StorageType.FILE)
            first = await js.publish("c360.test.one", b"one", headers={"Nats-Msg-Id": "m1"})
        finally:
            await nc.close()
        server.stop()
        server.stop()  # idempotent

        assert server.start() == url
        assert await _stored(url, first.seq) == b"one"

        nc = await nats.connect(url)
        try:
            second = await nc.jetstream().publish("c360.test.two", b"two")
        finally:
            await nc.close()
        _kill9(server)

        server.start()
        assert await _stored(url, first.seq) == b"one"
        assert await _stored(url, second.seq) == b"two"
    finally:
        server.stop()


def test_runtime_reuses_its_ports_and_refuses_a_second_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("C360_POSTGRES_URL", raising=False)
    monkeypatch.delenv("NATS_URL", raising=False)
    with EmbeddedRuntime(tmp_path / "home") as runtime:
        urls = (runtime.postgres_url, runtime.nats_url)
        with pytest.raises(RuntimeError, match="another process"):
            EmbeddedRuntime(tmp_path / "home").start()
    with EmbeddedRuntime(tmp_path / "home") as runtime:
        assert (runtime.postgres_url, runtime.nats_url) == urls
        with psycopg.connect(runtime.postgres_url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_postgres_admits_only_who_knows_the_superusers_password(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    try:
        url = pg.start()
        assert os.stat(pg.password_file).st_mode & 0o077 == 0  # the owner's alone
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        anonymous = url.replace(f":{pg.password()}@", "@")
        for attempt in (anonymous, url.replace(pg.password(), "guess")):
            with pytest.raises(psycopg.OperationalError, match="password"):
                psycopg.connect(attempt, connect_timeout=5)
    finally:
        pg.stop()


def test_a_folder_removed_and_made_again_gets_a_cluster_of_its_own(tmp_path: Path) -> None:
    """Removing the folder (`rm -rf .c360`, to start afresh) removes its data, also as root,
    where the cluster itself lives in the shared directory (its password went with the
    folder: the old cluster would admit no one)."""
    first = EmbeddedPostgres(tmp_path / "pg")
    try:
        with psycopg.connect(first.start(), autocommit=True) as conn:
            conn.execute("CREATE TABLE kv (k text PRIMARY KEY, v text NOT NULL)")
    finally:
        first.stop()
    shutil.rmtree(tmp_path / "pg")

    again = EmbeddedPostgres(tmp_path / "pg")
    try:
        with psycopg.connect(again.start(), autocommit=True) as conn:
            found = conn.execute("SELECT to_regclass('kv') IS NULL").fetchone()
        assert found == (True,)
    finally:
        again.stop()


def _kv(url: str, *rows: tuple[str, str]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kv (k text PRIMARY KEY, v text NOT NULL)")
        for row in rows:
            conn.execute("INSERT INTO kv VALUES (%s, %s)", row)


def test_a_state_folder_moved_elsewhere_keeps_its_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator moves the state to the new release's checkout (`mv old/.c360 new/`): as
    root the cluster lives in the shared directory under the old path's name, and a start of
    the moved folder, or first another folder's start, swept it as the cluster of a removed
    folder (every event gone; the start then failed on initdb). The moved folder claims it."""
    # The folders here stand for an operator's: outside the temporary directory, where a
    # test's clusters are swept at once
    monkeypatch.setattr(embedded, "_temporary", lambda folder: False)
    first = EmbeddedPostgres(tmp_path / "old" / "pg")
    try:
        _kv(first.start(), ("customer", "kept"))
    finally:
        first.stop()
    (tmp_path / "new").mkdir()
    (tmp_path / "old" / "pg").rename(tmp_path / "new" / "pg")

    other = EmbeddedPostgres(tmp_path / "other" / "pg")  # another folder starts meanwhile
    try:
        other.start()
    finally:
        other.stop()
    moved = EmbeddedPostgres(tmp_path / "new" / "pg")
    try:
        assert _rows(moved.start()) == [("customer", "kept")]
    finally:
        moved.stop()
    again = EmbeddedPostgres(tmp_path / "new" / "pg")  # and on the next start, too
    try:
        assert _rows(again.start()) == [("customer", "kept")]
    finally:
        again.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's clusters live outside the folder")
def test_a_copied_or_orphaned_state_folder_is_refused_with_the_reason(tmp_path: Path) -> None:
    """A copy (`cp -a .c360 elsewhere`) links to the original's cluster: starting it would
    share one database between two states; and a link to a cluster that is gone would get a
    fresh empty one in its place. Both are refused, saying why, and nothing is changed."""
    first = EmbeddedPostgres(tmp_path / "a" / "pg")
    try:
        _kv(first.start(), ("customer", "kept"))
    finally:
        first.stop()
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
    with pytest.raises(RuntimeError, match="is a copy of"):
        EmbeddedPostgres(tmp_path / "b" / "pg").start()
    original = EmbeddedPostgres(tmp_path / "a" / "pg")
    try:
        assert _rows(original.start()) == [("customer", "kept")]
    finally:
        original.stop()

    (tmp_path / "c" / "pg").mkdir(parents=True)
    shutil.copy(tmp_path / "a" / "pg" / "superuser.password", tmp_path / "c" / "pg")
    gone = Path(os.readlink(tmp_path / "a" / "pg" / "pgdata")).parent.parent / "data-gone"
    (tmp_path / "c" / "pg" / "pgdata").symlink_to(gone / "pgdata")
    with pytest.raises(RuntimeError, match="holds no PostgreSQL data"):
        EmbeddedPostgres(tmp_path / "c" / "pg").start()
    assert not gone.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's clusters live outside the folder")
def test_a_cluster_restored_into_the_folder_beside_the_shared_one_is_not_deleted(
    tmp_path: Path,
) -> None:
    """A backup restored with the link followed (`cp -rL .c360 backup`, then back) puts a
    cluster in the folder while the shared one it linked to is still there: the start
    deleted the restored one and went on with the other, as if restored. Now it refuses,
    naming both, and deletes neither."""
    pg = EmbeddedPostgres(tmp_path / "pg")
    try:
        _kv(pg.start(), ("customer", "before"))
    finally:
        pg.stop()
    shutil.copytree(tmp_path / "pg" / "pgdata", tmp_path / "backup")  # the link followed
    pg = EmbeddedPostgres(tmp_path / "pg")
    try:
        with psycopg.connect(pg.start(), autocommit=True) as conn:
            conn.execute("UPDATE kv SET v = 'after'")
    finally:
        pg.stop()
    (tmp_path / "pg" / "pgdata").unlink()
    shutil.copytree(tmp_path / "backup", tmp_path / "pg" / "pgdata")

    with pytest.raises(RuntimeError, match="holds a PostgreSQL cluster, and so does"):
        EmbeddedPostgres(tmp_path / "pg").start()
    assert (tmp_path / "pg" / "pgdata" / "PG_VERSION").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's clusters live outside the folder")
def test_root_follows_no_link_the_servers_account_put_in_its_shared_directory(
    tmp_path: Path,
) -> None:
    """The cluster's shared directory belongs to the server's account; each start writes its
    `owner` file there (when the folder last started): a link put in its place must not make
    root write through it into a file of root's."""
    pg = EmbeddedPostgres(tmp_path / "pg")
    try:
        pg.start()
    finally:
        pg.stop()
    home = Path(os.readlink(tmp_path / "pg" / "pgdata")).parent
    victim = tmp_path / "victim"
    victim.write_text("root's own\n")
    (home / "owner").unlink()
    (home / "owner").symlink_to(victim)
    pg = EmbeddedPostgres(tmp_path / "pg")
    try:
        pg.start()
    finally:
        pg.stop()
    assert victim.read_text() == "root's own\n"
    assert not (home / "owner").is_symlink()
    assert (home / "owner").read_text() == f"{tmp_path / 'pg'}\n"


def test_nats_opens_no_monitoring_port_unless_asked(tmp_path: Path) -> None:
    """Its HTTP monitoring port asks for no password (any local user would see the users,
    subscriptions, streams and paths): the server is known ready without it, and it is opened,
    on 127.0.0.1, only when a port is given (C360_NATS_MONITOR_PORT under `c360 up`)."""
    import urllib.request

    from c360_platform.processes import free_port

    server = EmbeddedNats(tmp_path / "quiet")
    try:
        server.start()
        assert server.monitor_port is None
        assert "http" not in server.config_path.read_text()
        assert "http monitor" not in server.log_path.read_text()
    finally:
        server.stop()

    port = free_port()
    server = EmbeddedNats(tmp_path / "watched", monitor_port=port)
    try:
        server.start()
        assert f"http: 127.0.0.1:{port}" in server.config_path.read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert answer.status == 200
    finally:
        server.stop()


def test_postgres_puts_its_socket_elsewhere_when_its_directory_was_squatted(
    tmp_path: Path,
) -> None:
    """Another account made the predictable /tmp/c360pg-<digest> first (here: a symbolic link
    to a directory of its own): the server's socket goes to a fresh private directory."""
    server = EmbeddedPostgres(tmp_path / "pg")
    squatted = server.socket_dir
    trap = tmp_path / "trap"
    trap.mkdir(mode=0o777)
    squatted.symlink_to(trap)
    try:
        url = server.start()
        assert server.socket_dir != squatted
        assert list(server.socket_dir.glob(".s.PGSQL.*"))
        assert not list(trap.iterdir())
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
        squatted.unlink()
    assert not server.socket_dir.exists()  # removed with the server
