"""A key holder of the tests' own: answers GetDataKeys as the customer service would, in the
test's process (no servers), and `DataKeys` asking it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc

from c360.customer.v1 import customer_service_pb2 as api
from c360_platform.datakeys import DataKeys

TTL = 5.0


class KeyHolder:
    """Answers GetDataKeys as the customer service would; records each request."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}
        self.forgotten: set[str] = set()
        self.requests: list[list[str]] = []
        self.down = False
        self.asked = threading.Condition()
        self.gate = threading.Event()
        """Answers wait for it (set: at once)."""
        self.gate.set()

    def GetDataKeys(self, request: api.GetDataKeysRequest, timeout: float) -> Any:
        with self.asked:
            self.requests.append(list(request.customer_ids))
            self.asked.notify_all()
        assert self.gate.wait(10), "the test never opened the gate"
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
