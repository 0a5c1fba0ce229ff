"""The CPU pool: a pool whose process died is replaced for the next caller."""

from __future__ import annotations

import os
import signal
from concurrent.futures.process import BrokenProcessPool

import pytest

from c360_platform import cpu


def test_a_pool_whose_process_died_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C360_CPU_PROCESSES", "1")
    monkeypatch.setattr(cpu, "_made", False)
    monkeypatch.setattr(cpu, "_pool", None)
    first = cpu.cpu_pool()
    assert first is not None
    try:
        worker = first.submit(os.getpid).result(timeout=60)
        assert worker != os.getpid()
        os.kill(worker, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            first.submit(os.getpid).result(timeout=60)

        second = cpu.cpu_pool()
        assert second is not None
        assert second is not first
        assert second.submit(os.getpid).result(timeout=60) not in (worker, os.getpid())
        assert cpu.cpu_pool() is second  # a working pool is kept
    finally:
        for pool in {first, cpu._pool} - {None}:
            assert pool is not None
            pool.shutdown(wait=True, cancel_futures=True)
