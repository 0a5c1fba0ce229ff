"""The read side at scale (issue 12, part 6): customers and their events written straight
into the customer service's store (batched saves of the service's own application, not one
RPC per event), relayed and projected as any other, then GetTimeline's first page and
GetProfile measured at a tenth of the entries and again at all of them."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from c360_customer.application import CustomerApplication
from c360_customer.domain import Customer, register_customer
from c360_platform.pgstore import postgres_env
from c360_platform.store import schema_for

EVENTS_PER_CUSTOMER = 10
CUSTOMERS_PER_SAVE = 100


def open_store(postgres_url: str) -> CustomerApplication:
    """The customer service's own application on its own schema (the service is running:
    its relay publishes what this writes, as it would the service's)."""
    return CustomerApplication(env=postgres_env(postgres_url, schema_for("customer"), pool_size=2))


def _person(name: str, email: str) -> Customer:
    return register_customer(
        kind="person", display_name=name, emails=[email], phones=[], addresses=[]
    )


def customer(run_id: str, n: int, events: int) -> Customer:
    """A person with `events` events: registered, then owners and tags changed."""
    c = _person(f"Scale Customer {run_id} {n}", f"scale.{run_id}.{n}@example.com")
    for k in range(events - 1):
        if k % 2:
            c.assign_owner(f"emp-{k:04d}")
        else:
            c.change_tags([f"t{k}"], [])
    return c


def fill(
    app: CustomerApplication,
    run_id: str,
    start: int,
    count: int,
    progress: Callable[[int], None],
) -> tuple[list[str], int]:
    """Save customers start ... start+count-1; their ids and the log position of the last
    save (for a consistency token)."""
    ids: list[str] = []
    position = 0
    for first in range(start, start + count, CUSTOMERS_PER_SAVE):
        batch = [
            customer(run_id, n, EVENTS_PER_CUSTOMER)
            for n in range(first, min(start + count, first + CUSTOMERS_PER_SAVE))
        ]
        recordings = app.save(*batch)
        position = max(r.notification.id for r in recordings)
        ids += [str(c.id) for c in batch]
        progress(len(ids))
    return ids, position


def long_history(
    app: CustomerApplication, run_id: str, events: int, per_save: int = 1_000
) -> tuple[str, int]:
    """One customer with `events` events (registered, then its owner changed back and forth),
    saved `per_save` events at a time; its id and the log position of the last save."""
    c = _person(f"Long History {run_id}", f"long.{run_id}@example.com")
    position = 0
    for n in range(1, events):
        c.assign_owner(f"emp-{n % 2:04d}")
        if n % per_save == 0 or n == events - 1:
            position = max(r.notification.id for r in app.save(c))
    return str(c.id), position


def sample(ids: list[str], k: int, seed: int = 360) -> list[str]:
    return random.Random(seed).sample(ids, min(k, len(ids)))


def elapsed_since(t0: float) -> float:
    return round(time.monotonic() - t0, 1)
