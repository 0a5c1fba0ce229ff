"""The zygote forks what `python -m MODULE ARGS` would run: the child has its own environment,
arguments, log and exit code; a stop, and the zygote's death, end it as they would an exec'd
child; the next spawn after its death starts a new zygote. (The services forked from it are
exercised by every `c360 up` test.)"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from c360_platform.processes import pid_alive, pid_cmdline
from c360_platform.zygote import Forked, Zygote

SLEEPER = """
import atexit, os, sys, time
atexit.register(print, "atexit ran")
print("greeting:", os.environ.get("GREETING"), "zygote only:", os.environ.get("ZYGOTE_ONLY"))
print("args:", sys.argv[1:], "main:", __name__)
if sys.argv[1] == "wait":
    print("waiting", flush=True)
    time.sleep(600)
if sys.argv[1] == "raise":
    raise RuntimeError("boom")
sys.exit(int(sys.argv[1]))
"""


@pytest.fixture
def zygote(tmp_path: Path) -> Iterator[Zygote]:
    (tmp_path / "sleeper.py").write_text(textwrap.dedent(SLEEPER))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "ZYGOTE_ONLY": "yes"}
    found = Zygote(tmp_path / "zygote.log", env)
    yield found
    found.stop()


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ZYGOTE_ONLY"}
    return {**env, "GREETING": "hello"}


def _wait_for(path: Path, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = path.read_text() if path.exists() else ""
        if text in found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path}: {found!r}")


def test_a_forked_child_runs_the_module_with_its_own_env_args_and_log(
    zygote: Zygote, tmp_path: Path
) -> None:
    log = tmp_path / "child.log"
    child = zygote.spawn([sys.executable, "-m", "sleeper", "3", "x"], _child_env(), log)
    assert child.wait(30) == 3
    text = log.read_text()
    assert "greeting: hello zygote only: None" in text
    assert "args: ['3', 'x'] main: __main__" in text
    assert "atexit ran" in text  # it ends as an interpreter does

    failing_log = tmp_path / "failing.log"
    failing = zygote.spawn([sys.executable, "-m", "sleeper", "raise"], _child_env(), failing_log)
    assert failing.wait(30) == 1
    assert "RuntimeError: boom" in failing_log.read_text()
    assert zygote.proc is not None
    assert zygote.proc.poll() is None  # it stays for the next


def test_only_modules_are_forked(zygote: Zygote, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="python -m MODULE"):
        zygote.spawn([sys.executable, "script.py"], _child_env(), tmp_path / "x.log")


def test_a_stop_and_the_zygotes_death_end_its_children(zygote: Zygote, tmp_path: Path) -> None:
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = zygote.spawn([sys.executable, "-m", "sleeper", "wait"], _child_env(), first_log)
    _wait_for(first_log, "waiting")
    assert first.poll() is None
    # ps shows the command line it would have had, not the zygote's
    assert " -m sleeper wait" in " ".join(pid_cmdline(first.pid) or [])
    first.terminate()
    assert first.wait(30) == -signal.SIGTERM

    second = zygote.spawn([sys.executable, "-m", "sleeper", "wait"], _child_env(), second_log)
    _wait_for(second_log, "waiting")
    assert zygote.proc is not None
    old = zygote.proc
    old.kill()  # the zygote dies: its child gets its parent-death signal and is reported
    assert second.wait(30) == -signal.SIGTERM
    assert not pid_alive(second.pid)

    third_log = tmp_path / "third.log"
    third = zygote.spawn([sys.executable, "-m", "sleeper", "0"], _child_env(), third_log)
    assert third.wait(30) == 0
    assert zygote.proc is not old
    assert "greeting: hello" in third_log.read_text()


def test_spawns_from_several_threads_each_get_their_own_child(
    zygote: Zygote, tmp_path: Path
) -> None:
    def spawn(index: int) -> Forked:
        log = tmp_path / f"child-{index}.log"
        return zygote.spawn([sys.executable, "-m", "sleeper", str(index)], _child_env(), log)

    # Started from this thread: the zygote's parent-death signal follows the thread that
    # started it, and the pool's threads end before the children are waited for.
    zygote.start()
    with ThreadPoolExecutor(8) as pool:
        children = list(pool.map(spawn, range(8)))
    for index, child in enumerate(children):
        assert child.wait(30) == index
        assert f"args: ['{index}']" in (tmp_path / f"child-{index}.log").read_text()
    assert len({child.pid for child in children}) == 8
