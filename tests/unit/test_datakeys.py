"""The data-key cache consumers read customers' keys through (`datakeys.DataKeys`), against a
key holder of the test's own (no servers): keys read late in their time are asked again in
the background, many in one request, while the cached ones answer."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import grpc
import pytest

from c360.customer.v1 import customer_service_pb2 as api
from c360_platform.datakeys import GATHER, DataKeys
from c360_platform.errors import Unavailable

TTL = 5.0


class KeyHolder:
    """Answers GetDataKeys as the customer service would; records each request."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}
        self.forgotten: set[str] = set()
        self.requests: list[list[str]] = []
        self.down = False
        self.asked = threading.Condition()

    def GetDataKeys(self, request: api.GetDataKeysRequest, timeout: float) -> Any:
        with self.asked:
            self.requests.append(list(request.customer_ids))
            self.asked.notify_all()
        if self.down:
            raise Down()
        found = [
            api.DataKey(customer_id=i, forgotten=True)
            if i in self.forgotten
            else api.DataKey(customer_id=i, key=self.keys[i])
            for i in request.customer_ids
            if i in self.keys or i in self.forgotten
        ]
        return api.GetDataKeysResponse(keys=found)

    def wait_for(self, count: int) -> None:
        """Until `count` requests were made (the background refresh's included)."""
        with self.asked:
            assert self.asked.wait_for(lambda: len(self.requests) >= count, timeout=10)


class Down(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Keys(DataKeys):
    """DataKeys asking the test's key holder instead of finding one among services."""

    def __init__(self, holder: KeyHolder, clock: Callable[[], float]) -> None:
        super().__init__({}, "token", ttl=TTL, clock=clock)
        self.holder = holder

    def _found(self) -> Any:
        return self.holder


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
