"""The data-key cache consumers read customers' keys through (`datakeys.DataKeys`), against a
key holder of the test's own (no servers): keys read late in their time are asked again in
the background, many in one request, while the cached ones answer; a key being asked for is
asked once, whoever needs it meanwhile (a prefetch, reads), and keys wanted while a request
is out go together in the next one."""

from __future__ import annotations

import gc
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest

from c360_platform import datakeys
from c360_platform.datakeys import GATHER, RETRY_AFTER
from c360_platform.errors import Unavailable
from tests.keyholder import TTL, Clock, KeyHolder, Keys


@pytest.fixture
def world() -> Iterator[tuple[KeyHolder, Clock, Keys]]:
    holder = KeyHolder()
    clock = Clock()
    keys = Keys(holder, clock)
    yield holder, clock, keys
    keys.close()


def customers(holder: KeyHolder, n: int) -> list[UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    for i in ids:
        holder.keys[str(i)] = i.bytes * 2
    return ids


def settled(keys: Keys) -> None:
    """Until the background refresh has nothing left to do."""
    deadline = time.monotonic() + 10
    while keys._refresher is not None:
        assert time.monotonic() < deadline, "the refresh did not finish"
        time.sleep(0.01)


def test_a_key_read_early_in_its_time_is_not_asked_again(world: Any) -> None:
    holder, clock, keys = world
    ids = customers(holder, 3)
    assert keys.keys(ids) == {i: i.bytes * 2 for i in ids}
    clock.now += TTL * 0.5
    assert keys.keys(ids) == {i: i.bytes * 2 for i in ids}
    time.sleep(GATHER * 0.5)
    settled(keys)
    assert len(holder.requests) == 1


def test_keys_read_late_are_refreshed_in_one_request_while_the_cached_ones_answer(
    world: Any,
) -> None:
    holder, clock, keys = world
    ids = customers(holder, 3)
    keys.keys(ids)
    clock.now += TTL * 0.9
    # Each read answers from the cache at once; the refresh waits a moment for more reads
    # and asks once, for all of them.
    for i in ids:
        assert keys.keys([i]) == {i: i.bytes * 2}
        time.sleep(GATHER / 20)
    assert keys.known(ids) == {i: i.bytes * 2 for i in ids}
    assert len(holder.requests) == 1
    holder.wait_for(2)
    settled(keys)
    assert sorted(holder.requests[1]) == sorted(str(i) for i in ids)
    # Renewed from the refresh on: past the first fetch's time, still known without asking.
    clock.now += TTL * 0.5
    assert keys.known(ids) == {i: i.bytes * 2 for i in ids}
    assert len(holder.requests) == 2


def test_a_refresh_learns_of_a_forget(world: Any) -> None:
    holder, clock, keys = world
    (ada,) = customers(holder, 1)
    keys.keys([ada])
    holder.forgotten.add(str(ada))
    del holder.keys[str(ada)]
    clock.now += TTL * 0.8
    assert keys.keys([ada]) == {ada: ada.bytes * 2}  # cached: within its time
    holder.wait_for(2)
    settled(keys)
    assert keys.keys([ada]) == {ada: None}
    assert len(holder.requests) == 2


def test_a_failed_refresh_leaves_reads_to_the_cache_until_the_keys_expire(world: Any) -> None:
    holder, clock, keys = world
    ids = customers(holder, 2)
    keys.keys(ids)
    holder.down = True
    clock.now += TTL * 0.8
    assert keys.keys(ids) == {i: i.bytes * 2 for i in ids}
    holder.wait_for(2)
    settled(keys)
    assert keys.known(ids) == {i: i.bytes * 2 for i in ids}
    clock.now += TTL * 0.3  # past the first fetch's time: asked, and the holder is down
    with pytest.raises(Unavailable):
        keys.keys(ids)


def test_a_closed_cache_refreshes_nothing(world: Any) -> None:
    holder, clock, keys = world
    ids = customers(holder, 2)
    keys.keys(ids)
    keys.close()
    clock.now += TTL * 0.9
    assert keys.known(ids) == {i: i.bytes * 2 for i in ids}
    time.sleep(GATHER)
    assert keys._refresher is None
    assert len(holder.requests) == 1


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run `call` in a thread; its result (or exception) lands in the list."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(call())
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_keys_wanted_while_a_request_is_out_are_asked_for_together_in_the_next_one(
    world: Any,
) -> None:
    holder, _clock, keys = world
    ada, bea, cy = customers(holder, 3)
    holder.gate.clear()
    first, got_first = in_thread(lambda: keys.keys([ada]))
    holder.wait_for(1)
    # Ada's key is asked for already: the second read waits for that answer; Bea's and Cy's
    # keys, wanted by two reads meanwhile, wait for the next request, one for both.
    second, got_second = in_thread(lambda: keys.keys([ada, bea]))
    third, got_third = in_thread(lambda: keys.keys([cy]))
    time.sleep(0.05)
    assert not got_second, "the read answered before the keys it waits for came"
    assert not got_third
    assert len(holder.requests) == 1
    holder.gate.set()
    for thread in (first, second, third):
        thread.join(10)
    assert got_first == [{ada: ada.bytes * 2}]
    assert got_second == [{ada: ada.bytes * 2, bea: bea.bytes * 2}]
    assert got_third == [{cy: cy.bytes * 2}]
    assert holder.requests[0] == [str(ada)]
    assert sorted(holder.requests[1]) == sorted([str(bea), str(cy)])
    assert len(holder.requests) == 2


def test_a_prefetch_asks_once_for_what_is_not_held_and_known_waits_for_it(world: Any) -> None:
    holder, _clock, keys = world
    ada, bea, cy = customers(holder, 3)
    keys.keys([ada])
    holder.gate.clear()
    keys.prefetch([ada, bea, cy])  # returns at once: the holder has not answered
    holder.wait_for(2)
    assert sorted(holder.requests[1]) == sorted([str(bea), str(cy)])
    # Without waiting: only what is held; a short wait that ends before the answer: the same.
    assert keys.known([ada, bea]) == {ada: ada.bytes * 2}
    assert keys.known([ada, bea], wait=0.05) == {ada: ada.bytes * 2}
    waiting, got = in_thread(lambda: keys.known([ada, bea, cy], wait=10))
    reading, read = in_thread(lambda: keys.keys([cy]))
    time.sleep(0.05)
    assert not got
    assert not read
    holder.gate.set()
    waiting.join(10)
    reading.join(10)
    assert got == [{ada: ada.bytes * 2, bea: bea.bytes * 2, cy: cy.bytes * 2}]
    assert read == [{cy: cy.bytes * 2}]
    keys.prefetch([ada, bea, cy])  # all held now: nothing to ask
    time.sleep(0.05)
    assert len(holder.requests) == 2


def test_a_failed_prefetch_leaves_the_read_to_ask_and_pauses_prefetching(world: Any) -> None:
    holder, clock, keys = world
    ada, bea = customers(holder, 2)
    holder.down = True
    keys.prefetch([ada])
    holder.wait_for(1)
    assert keys.known([ada], wait=10) == {}  # answered (by a failure): no wait to the end
    with pytest.raises(Unavailable):  # the read asks itself, as without the prefetch
        keys.keys([ada])
    assert len(holder.requests) == 2
    holder.down = False
    keys.prefetch([bea])  # within RETRY_AFTER of the failure: not asked
    time.sleep(0.05)
    assert len(holder.requests) == 2
    clock.now += RETRY_AFTER
    keys.prefetch([bea])
    holder.wait_for(3)
    assert keys.known([bea], wait=10) == {bea: bea.bytes * 2}


def test_a_closed_cache_prefetches_nothing(world: Any) -> None:
    holder, _clock, keys = world
    (ada,) = customers(holder, 1)
    keys.close()
    keys.prefetch([ada])
    time.sleep(0.05)
    assert holder.requests == []
    assert keys.known([ada], wait=0.05) == {}


def test_the_cache_leaves_the_garbage_collector_nothing_to_walk(world: Any) -> None:
    """A process's cache holds up to 200,000 keys for its life: a full collection that
    walked each of them (as UUID objects) paused the timeline for tens of milliseconds."""
    holder, _, keys = world
    ids = customers(holder, 50)
    assert keys.keys(ids) == {i: i.bytes * 2 for i in ids}
    gc.collect()
    assert len(keys._cache) == 50
    assert not gc.is_tracked(keys._cache)


def test_a_full_cache_drops_its_older_half_and_keeps_what_was_just_asked_for(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild asks for hundreds of thousands of keys, pages of them at once: a full cache
    that was emptied whole took the keys one page had just been answered with from that
    page's read (UNAVAILABLE for keys the key holder had given)."""
    monkeypatch.setattr(datakeys, "CACHE_SIZE", 10)
    holder, _, keys = world
    first, second = customers(holder, 8), customers(holder, 4)
    assert keys.keys(first) == {i: i.bytes * 2 for i in first}
    assert keys.keys(second) == {i: i.bytes * 2 for i in second}
    assert len(holder.requests) == 2
    # The older half (four of the first eight) went; the new ones stay.
    assert keys.known(second) == {i: i.bytes * 2 for i in second}
    kept = keys.known(first)
    assert len(kept) == 4
    assert kept == {i: i.bytes * 2 for i in kept}
