"""The customers' data keys as a consumer gets them: asked of the service that holds them
(`c360.customer.v1.CustomerService/GetDataKeys`, found among the deployment's services by the
standard health check) and kept for a few seconds, so that a forget is seen soon."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from uuid import UUID

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from c360.customer.v1 import customer_service_pb2 as api
from c360.customer.v1 import customer_service_pb2_grpc as api_grpc
from c360_platform import channels
from c360_platform.errors import Unavailable

KEY_SERVICE = "c360.customer.v1.CustomerService"
BATCH = 1000
_UNKNOWN = b"unknown"
"""Cached for a customer the key holder does not know (a key is 32 bytes, never this)."""
CACHE_SECONDS = 5.0
"""How long a key (or a customer's being forgotten) is trusted before it is asked again."""


class DataKeys:
    """Keys by customer id: None for forgotten customers and those the key holder does not
    know. Thread-safe; blocking (async callers run it in a thread)."""

    def __init__(
        self, services: Mapping[str, str], token: str, *, ttl: float = CACHE_SECONDS
    ) -> None:
        self.services = dict(services)
        self.token = token
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[UUID, tuple[float, bytes]] = {}
        """Customer id -> (until when, key; b"" once forgotten; _UNKNOWN if not known)."""
        self._stub: api_grpc.CustomerServiceStub | None = None
        self._channels: list[grpc.Channel] = []

    def _find(self) -> api_grpc.CustomerServiceStub:
        if self._stub is not None:
            return self._stub
        for _, address in sorted(self.services.items()):
            channel = channels.channel(address, self.token)
            try:
                health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=KEY_SERVICE), timeout=5
                )
            except grpc.RpcError:
                channel.close()
                continue
            self._channels.append(channel)
            self._stub = api_grpc.CustomerServiceStub(channel)
            return self._stub
        raise Unavailable("no service of this deployment holds the customers' data keys")

    def known(self, customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
        """`keys` of the customers in the cache (forgotten or unknown ones: None); the others
        left out. Never blocks."""
        now = time.monotonic()
        found: dict[UUID, bytes | None] = {}
        with self._lock:
            for customer_id in customer_ids:
                hit = self._cache.get(customer_id)
                if hit is not None and hit[0] > now:
                    found[customer_id] = None if hit[1] is _UNKNOWN else (hit[1] or None)
        return found

    def cached(self, customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None] | None:
        """`keys` from the cache alone, without blocking; None if any must be asked for."""
        wanted = set(customer_ids)
        found = self.known(wanted)
        return found if len(found) == len(wanted) else None

    def lookup(self, customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
        """Key, or None once forgotten, of the customers the key holder knows (others left
        out); UNAVAILABLE when it cannot be asked."""
        now = time.monotonic()
        found: dict[UUID, bytes | None] = {}
        wanted: list[UUID] = []
        with self._lock:
            for customer_id in set(customer_ids):
                hit = self._cache.get(customer_id)
                if hit is not None and hit[0] > now:
                    if hit[1] is not _UNKNOWN:
                        found[customer_id] = hit[1] or None
                else:
                    wanted.append(customer_id)
        for start in range(0, len(wanted), BATCH):
            chunk = wanted[start : start + BATCH]
            try:
                reply = self._find().GetDataKeys(
                    api.GetDataKeysRequest(customer_ids=[str(i) for i in chunk]), timeout=10
                )
            except grpc.RpcError as exc:
                self._stub = None
                raise Unavailable(
                    f"the customers' data keys cannot be read now: {exc.code()}"
                ) from None
            got = {UUID(k.customer_id): (b"" if k.forgotten else bytes(k.key)) for k in reply.keys}
            with self._lock:
                for customer_id in chunk:
                    entry = got.get(customer_id, _UNKNOWN)
                    self._cache[customer_id] = (now + self.ttl, entry)
                    if entry is not _UNKNOWN:
                        found[customer_id] = entry or None
                if len(self._cache) > 200_000:
                    self._cache.clear()
        return found

    def keys(self, customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
        """Keys to reveal with: None for forgotten customers and those the holder does not
        know."""
        ids = list(customer_ids)
        found = self.lookup(ids)
        return {i: found.get(i) for i in ids}

    def __call__(self, customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
        return self.keys(customer_ids)

    async def aclose(self) -> None:
        """`close`, for a host's on_close."""
        self.close()

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        self._stub = None


def no_keys(customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
    """A consumer without access to keys: every sealed value stays unreadable."""
    return {}
