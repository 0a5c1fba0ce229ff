"""The reindex's search columns made in a process of the CPU pool: the same rows as here, and a
pool that is warmed once, used when ready, and given up when its process dies."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from concurrent.futures.process import BrokenProcessPool
from typing import Any
from uuid import UUID, uuid4

import pytest

from c360_platform import cpu, pii
from c360_timeline.readmodel import name_key, name_starts, ready_for_search, search_rows


def _profiles() -> tuple[list[dict[str, Any]], dict[UUID, bytes | None]]:
    """Profiles as the reindex reads them: sealed names, e-mails and phones; one customer
    forgotten (no key: nothing of it indexed), one with nothing sealed."""
    docs: list[dict[str, Any]] = []
    keys: dict[UUID, bytes | None] = {}
    for n, name in enumerate(["Ana Žirnovskis", "Bo Li", "Carmen de la Vega Ruiz", ""]):
        cid = uuid4()
        key = pii.new_key()
        keys[cid] = key if n != 1 else None
        docs.append(
            {
                "customer_id": cid,
                "display_name": pii.seal(key, cid, name) if name else "Acme GmbH",
                "emails": [pii.seal(key, cid, f"Person.{n}@Example.com")],
                "phones": [pii.seal(key, cid, f"+4930123{n}")],
            }
        )
    return docs, keys


def test_search_rows_made_in_a_pool_process_are_the_ones_made_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("C360_CPU_PROCESSES", "1")
    monkeypatch.setattr(cpu, "_made", False)
    monkeypatch.setattr(cpu, "_pool", None)
    docs, keys = _profiles()
    index_key = pii.new_key()
    here = search_rows(index_key, docs, keys)
    pool = cpu.cpu_pool()
    assert pool is not None
    try:
        there = pool.submit(search_rows, index_key, docs, keys).result(timeout=120)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    assert there == here
    rows = {r["c"]: r for r in json.loads(here)}
    index = pii.BlindIndex(index_key)
    ana, forgotten, carmen, firm = (rows[str(d["customer_id"])] for d in docs)
    assert ana["e"] == [index.token("person.0@example.com")]
    assert ana["p"] == [index.token("+49301230")]
    assert ana["s"] == index.tokens(name_starts(name_key("Ana Žirnovskis")))
    assert index.token("zir") in ana["w"]
    assert forgotten == {"c": str(docs[1]["customer_id"]), "e": [], "p": [], "s": [], "w": []}
    assert index.token("de") in carmen["w"]
    assert index.token("vega") in carmen["w"]
    assert firm["s"] == index.tokens(name_starts("acme gmbh"))
    # Made with another key, no row is the same: the key reaches the pool's process.
    assert search_rows(pii.new_key(), docs, keys) != here


async def test_a_pool_is_warmed_once_used_when_ready_and_given_up_when_it_breaks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("C360_CPU_PROCESSES", "1")
    monkeypatch.setattr(cpu, "_made", False)
    monkeypatch.setattr(cpu, "_pool", None)
    warmed = cpu.Warmed(ready_for_search, ready_log="ready in %d", off_log="off: %s")
    assert warmed.pool is None
    assert warmed.state == "unused"
    warming = warmed.warm()
    assert warming is not None
    assert warmed.warm() is None  # once
    assert warmed.pool is None
    assert warmed.state == "warming"
    worker = await asyncio.wait_for(warming, 120)
    await asyncio.sleep(0)  # the readiness callback runs
    try:
        assert worker != os.getpid()
        pool = warmed.pool
        assert pool is not None
        assert warmed.state == "ready"
        os.kill(worker, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            pool.submit(os.getpid).result(timeout=60)
        warmed.off("killed")
        assert warmed.pool is None
        assert warmed.state == "off"
        assert warmed.warm() is None  # not again in this process
    finally:
        if cpu._pool is not None:
            cpu._pool.shutdown(wait=True, cancel_futures=True)


def test_without_a_pool_the_work_stays_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C360_CPU_PROCESSES", "0")
    monkeypatch.setattr(cpu, "_made", False)
    monkeypatch.setattr(cpu, "_pool", None)
    warmed = cpu.Warmed(ready_for_search, ready_log="ready in %d", off_log="off: %s")
    assert warmed.warm() is None
    assert warmed.state == "off"
    assert warmed.pool is None
