"""The customers' data keys as a consumer gets them: asked of the service that holds them
(`c360.customer.v1.CustomerService/GetDataKeys`, found among the deployment's services by the
standard health check) and kept for a few seconds, so that a forget is seen soon. A key read
late in its time is asked again in the background while the cached one answers. Keys not in
the cache are asked for by one thread of the cache's own: a read that needs a key being asked
for waits for that answer, keys wanted while a request is out go together in the next one, and
a consumer that knows it will need keys soon (the timeline, as it projects a new customer) can
have them asked for ahead (`prefetch`)."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
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
CACHE_SIZE = 200_000
"""Keys a process holds at most (the older half goes when more come)."""
REFRESH_AFTER = 0.75
"""Share of a key's time in the cache after which a read of it has it asked again in the
background (refresh-ahead), the cached key answering meanwhile: keys that are read keep being
known, and keys fetched together (a burst of new customers) do not all expire together, each
read of them then waiting for the key holder."""
GATHER = 0.5
"""Seconds the background refresh waits for more due keys before it asks (at most a fifth of
the part of a key's time in which a read has it refreshed): one request for many keys, not one
for each read."""
RETRY_AFTER = 1.0
"""Seconds before a failed background ask (a refresh, a prefetch) is tried again (reads go on
from the cache; once a key expires, its read asks, and fails, as without the refresh)."""
ASK_TIMEOUT = 10.0
"""Seconds a request for keys may take."""

_log = logging.getLogger(__name__)


class DataKeys:
    """Keys by customer id: None for forgotten customers and those the key holder does not
    know. Thread-safe; blocking (async callers run it in a thread)."""

    def __init__(
        self,
        services: Mapping[str, str],
        token: str,
        *,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.services = dict(services)
        self.token = token
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: dict[int, tuple[float, bytes]] = {}
        """Customer id (its 128-bit number) -> (until when, key; b"" once forgotten; _UNKNOWN
        if not known). Numbers, not UUIDs: a UUID is an object the garbage collector
        tracks, and this cache holds up to 200,000 of them for the process's life; a full
        collection walked every one of them, on the path of whichever call it interrupted
        (ints, floats and bytes, and tuples and dicts of them only, it leaves alone)."""
        self._stub: api_grpc.CustomerServiceStub | None = None
        self._channels: list[grpc.Channel] = []
        self._finding = threading.Lock()
        self._due: set[UUID] = set()
        """Customers whose cached keys were read late in their time: to be asked again."""
        self._asking: set[UUID] = set()
        """Those of them being asked for now."""
        self._stop = threading.Event()
        """Set once closed: no refresh from then on."""
        self._refresher: threading.Thread | None = None
        self._retry_at = 0.0
        self._asked: dict[UUID, threading.Event] = {}
        """Customers whose keys are asked for (queued, or a request is out) -> set when that
        request is answered or failed: a read of them waits for it instead of asking again."""
        self._queued: list[UUID] = []
        """Keys for the asking thread's next request."""
        self._next: threading.Event | None = None
        """Set when the next request is answered or failed."""
        self._asker_busy = False
        """The asking thread is at work (it takes what is queued until nothing is)."""
        self._asker: ThreadPoolExecutor | None = None
        self._failure = ""
        """Why the last request failed ("" once one succeeds again)."""

    def _find(self) -> api_grpc.CustomerServiceStub:
        with self._finding:
            return self._stub or self._found()

    def _found(self) -> api_grpc.CustomerServiceStub:
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

    def _hit(self, customer_id: UUID, now: float) -> tuple[float, bytes] | None:
        """The cached entry, if still good (hold the lock); one read late in its time is
        marked due for a refresh."""
        hit = self._cache.get(customer_id.int)
        if hit is None or hit[0] <= now:
            return None
        if hit[0] - now < self.ttl * (1 - REFRESH_AFTER) and customer_id not in self._asking:
            self._due.add(customer_id)
        return hit

    def _refresh_due(self) -> None:
        """Start the background refresh if keys are due and none runs (hold the lock)."""
        idle = self._refresher is None and not self._stop.is_set()
        if self._due and idle and self.clock() >= self._retry_at:
            self._refresher = threading.Thread(
                target=self._refresh, name="c360-datakeys-refresh", daemon=True
            )
            self._refresher.start()

    def _refresh(self) -> None:
        """Ask for the due keys, a batch at a time, until none is due."""
        gather = min(GATHER, self.ttl * (1 - REFRESH_AFTER) / 5)
        while True:
            self._stop.wait(gather)
            with self._lock:
                if self._stop.is_set() or not self._due:
                    self._refresher = None
                    return
                chunk = [self._due.pop() for _ in range(min(BATCH, len(self._due)))]
                self._asking.update(chunk)
            try:
                self._fetch(chunk, self.clock())
            except Exception as exc:  # the thread must not die: reads would never refresh again
                _log.warning(
                    "refreshing %d data keys failed (retried in %.0f s): %s",
                    len(chunk),
                    RETRY_AFTER,
                    exc,
                )
                with self._lock:
                    self._due.clear()
                    self._asking.clear()
                    self._retry_at = self.clock() + RETRY_AFTER
                    self._refresher = None
                return
            with self._lock:
                self._asking.difference_update(chunk)

    def known(self, customer_ids: Iterable[UUID], *, wait: float = 0.0) -> dict[UUID, bytes | None]:
        """`keys` of the customers in the cache (forgotten or unknown ones: None); the others
        left out. Asks for none; with `wait`, waits up to that many seconds for the answer to
        a request out for some of them already (a `prefetch`), else never blocks."""
        wanted = set(customer_ids)
        found, out = self._known(wanted)
        if wait > 0 and out:
            deadline = time.monotonic() + wait
            for answered in out:
                if not answered.wait(max(0.0, deadline - time.monotonic())):
                    break
            found.update(self._known(wanted - found.keys())[0])
        return found

    def _known(
        self, customer_ids: Iterable[UUID]
    ) -> tuple[dict[UUID, bytes | None], set[threading.Event]]:
        """The cached keys, and the requests out for some of the others."""
        now = self.clock()
        found: dict[UUID, bytes | None] = {}
        out: set[threading.Event] = set()
        with self._lock:
            for customer_id in customer_ids:
                hit = self._hit(customer_id, now)
                if hit is not None:
                    found[customer_id] = None if hit[1] is _UNKNOWN else (hit[1] or None)
                elif (answered := self._asked.get(customer_id)) is not None:
                    out.add(answered)
            self._refresh_due()
        return found, out

    def cached(self, customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None] | None:
        """`keys` from the cache alone, without blocking; None if any must be asked for."""
        wanted = set(customer_ids)
        found = self.known(wanted)
        return found if len(found) == len(wanted) else None

    def lookup(self, customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
        """Key, or None once forgotten, of the customers the key holder knows (others left
        out); UNAVAILABLE when it cannot be asked. What the cache does not hold is asked for
        in the asking thread's next request, with every other key wanted meanwhile (a key
        a request is out for already is waited for, not asked again)."""
        wanted = set(customer_ids)
        now = self.clock()
        found: dict[UUID, bytes | None] = {}
        out: set[threading.Event] = set()
        with self._lock:
            for customer_id in wanted:
                hit = self._hit(customer_id, now)
                if hit is not None:
                    if hit[1] is not _UNKNOWN:
                        found[customer_id] = hit[1] or None
                elif (answered := self._asked.get(customer_id)) is not None:
                    out.add(answered)
                else:
                    out.add(self._queue_ask(customer_id))
            self._refresh_due()
        if not out:
            return found
        deadline = time.monotonic() + ASK_TIMEOUT
        for answered in out:
            answered.wait(max(0.0, deadline - time.monotonic()))
        now = self.clock()
        with self._lock:
            for customer_id in wanted - found.keys():
                hit = self._cache.get(customer_id.int)
                if hit is None or hit[0] <= now:  # its request failed (or timed out)
                    why = self._failure or "no answer in time"
                    raise Unavailable(f"the customers' data keys cannot be read now: {why}")
                if hit[1] is not _UNKNOWN:
                    found[customer_id] = hit[1] or None
        return found

    def _queue_ask(self, customer_id: UUID) -> threading.Event:
        """Have this customer's key asked for in the asking thread's next request (hold the
        lock); the event is set when that request is answered or failed."""
        if self._stop.is_set():  # closed: nothing is asked any more
            closed = threading.Event()
            closed.set()
            self._failure = "closed"
            return closed
        if self._next is None:
            self._next = threading.Event()
        self._asked[customer_id] = self._next
        self._queued.append(customer_id)
        if not self._asker_busy:
            self._asker_busy = True
            if self._asker is None:
                self._asker = ThreadPoolExecutor(1, thread_name_prefix="c360-datakeys")
            self._asker.submit(self._ask_rounds)
        return self._next

    def _ask_rounds(self) -> None:
        """The asking thread: one request (BATCH keys a call) for all the keys queued, again
        while more were queued meanwhile."""
        while True:
            with self._lock:
                chunk, answered = self._queued, self._next
                self._queued, self._next = [], None
                if not chunk or answered is None:
                    self._asker_busy = False
                    return
                closed = self._stop.is_set()
            now = self.clock()
            try:
                if closed:  # its channels are, too: the reads waiting raise UNAVAILABLE
                    raise Unavailable("closed")
                for start in range(0, len(chunk), BATCH):
                    self._fetch(chunk[start : start + BATCH], now)
            except Exception as exc:  # the waiting reads raise UNAVAILABLE
                with self._lock:
                    first, self._failure = not self._failure, str(exc)
                    self._retry_at = self.clock() + RETRY_AFTER
                (_log.warning if first else _log.debug)(
                    "asking for %d data keys failed (not asked ahead for %.0f s): %s",
                    len(chunk),
                    RETRY_AFTER,
                    exc,
                )
            else:
                self._failure = ""
            finally:
                with self._lock:
                    for customer_id in chunk:
                        if self._asked.get(customer_id) is answered:
                            del self._asked[customer_id]
                answered.set()

    def prefetch(self, customer_ids: Iterable[UUID]) -> None:
        """Have the keys of these customers that are not in the cache asked for in the
        background (never blocks, never fails: a failed ask is logged and the next prefetch
        waits RETRY_AFTER); `known(..., wait=)` and reads wait for the answer."""
        now = self.clock()
        with self._lock:
            if self._stop.is_set() or now < self._retry_at:
                return
            for customer_id in set(customer_ids):
                if customer_id not in self._asked and self._hit(customer_id, now) is None:
                    self._queue_ask(customer_id)

    def _fetch(self, chunk: list[UUID], now: float) -> None:
        """Ask the key holder for up to BATCH customers' keys and cache what it says (as of
        `now`, taken before asking)."""
        try:
            reply = self._find().GetDataKeys(
                api.GetDataKeysRequest(customer_ids=[str(i) for i in chunk]), timeout=ASK_TIMEOUT
            )
        except grpc.RpcError as exc:
            self._stub = None
            raise Unavailable(
                f"the customers' data keys cannot be read now: {exc.code()}"
            ) from None
        got = {UUID(k.customer_id): (b"" if k.forgotten else bytes(k.key)) for k in reply.keys}
        with self._lock:
            if len(self._cache) + len(chunk) > CACHE_SIZE:
                # The older half goes (a dict keeps the order they came in): the keys other
                # requests just brought stay for the reads waiting for them, which a whole
                # clear took away from them (UNAVAILABLE for a read that was answered).
                for number in list(itertools.islice(self._cache, len(self._cache) // 2)):
                    del self._cache[number]
            for customer_id in chunk:
                self._cache[customer_id.int] = (now + self.ttl, got.get(customer_id, _UNKNOWN))

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
        with self._lock:
            self._stop.set()
            self._due.clear()
            asker, self._asker = self._asker, None
        if asker is not None:
            asker.shutdown(wait=False)  # what it holds is answered, not asked
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        self._stub = None


def no_keys(customer_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
    """A consumer without access to keys: every sealed value stays unreadable."""
    return {}
