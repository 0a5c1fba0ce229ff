"""What PostgreSQL's client backends wait on during a phase (sampled pg_stat_activity)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

import psycopg

# Short labels: "lock:relation" (waiting on a heavyweight lock), "idle in tx" (a transaction
# open while the client computes), "on CPU", else the wait event (WALSync, ClientRead, ...).
_QUERY = (
    "SELECT CASE"
    " WHEN state LIKE 'idle in transaction%' THEN 'idle in tx'"
    " WHEN wait_event_type = 'Lock' THEN 'lock:' || wait_event"
    " WHEN wait_event_type IS NULL THEN 'on CPU'"
    " ELSE wait_event END AS what, count(*)"
    " FROM pg_stat_activity"
    " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    " AND datname = current_database() AND state <> 'idle'"
    " GROUP BY 1"
)


@contextlib.asynccontextmanager
async def sampled(url: str, into: dict[str, float], period: float = 0.05) -> AsyncIterator[None]:
    """While the block runs, sample every `period` s; fill `into` with the average number of
    non-idle backends per state, e.g. "lock:relation": 2.7."""
    counts: Counter[str] = Counter()
    samples = 0
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal samples
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                cur = await conn.execute(_QUERY)
                for what, n in await cur.fetchall():
                    counts[str(what)] += int(n)
                samples += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), period)

    task = asyncio.create_task(sample())
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(psycopg.Error):
            await task
        if samples:
            into.update(
                {what: round(n / samples, 2) for what, n in sorted(counts.items(), key=_by_count)}
            )


def _by_count(item: tuple[str, int]) -> int:
    return -item[1]
