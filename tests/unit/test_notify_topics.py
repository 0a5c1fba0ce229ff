"""Wake-ups by topic (`c360_platform.notify`): a notification wakes the waiters of the topics
it names, and every waiter if it names none; a notification between a waiter's look and its
wait is not lost; the timeline names the customers of the entries it added, and the survivors
of their merges."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from c360_platform.notify import MAX_TOPICS, Notifications, payload
from c360_timeline.projection import Entry
from c360_timeline.readmodel import changed_topics, customer_topic

ADA = "0a0a0a0a-0000-4000-8000-000000000001"
BOB = "0b0b0b0b-0000-4000-8000-000000000002"
CID = "0c0c0c0c-0000-4000-8000-000000000003"


async def test_a_notification_wakes_the_waiters_of_its_topics_only() -> None:
    n = Notifications("postgresql://unused", "channel")
    ada, bob = [customer_topic(ADA)], [customer_topic(BOB)]
    seen_ada, seen_bob = n.mark(ada), n.mark(bob)
    waiting_ada = asyncio.ensure_future(n.changed_for(ada, seen_ada, 5))
    waiting_bob = asyncio.ensure_future(n.changed_for(bob, seen_bob, 5))
    await asyncio.sleep(0)
    generation = n.generation
    n.deliver(payload(bob))
    assert await asyncio.wait_for(waiting_bob, 1) is True
    await asyncio.sleep(0.05)
    assert not waiting_ada.done()  # another customer's commit: Ada's watch sleeps on
    assert n.generation == generation + 1  # read-your-writes waits see every commit
    n.deliver(payload(()))  # names nobody (a reindex): still asleep
    await asyncio.sleep(0.05)
    assert not waiting_ada.done()
    n.deliver("")  # names none in particular (a reconnect): everyone looks again
    assert await asyncio.wait_for(waiting_ada, 1) is True


async def test_a_notification_before_the_wait_is_not_lost_and_timeouts_say_so() -> None:
    n = Notifications("postgresql://unused", "channel")
    topics = [customer_topic(ADA), customer_topic(CID)]
    seen = n.mark(topics)
    n.deliver(payload([customer_topic(CID)]))  # between the look and the wait
    assert await n.changed_for(topics, seen, 5) is True
    assert await n.changed_for(topics, n.mark(topics), 0.01) is False
    assert n._waiting == {}  # nothing left registered after the waits
    assert n._all_waiting == set()


def test_too_many_topics_are_named_as_everyone() -> None:
    assert payload([f"{i:03x}" for i in range(MAX_TOPICS)]).count(",") == MAX_TOPICS - 1
    assert payload([f"{i:04x}" for i in range(MAX_TOPICS + 1)]) == ""
    assert len(payload([f"{i:03x}" for i in range(MAX_TOPICS)])) < 8000  # NOTIFY's limit


def entry(customer_id: str, type_: str, details: dict[str, Any] | None = None) -> Entry:
    return Entry(
        event_id="e",
        customer_id=customer_id,
        occurred_at=datetime(2026, 12, 4, tzinfo=UTC),
        source="customer",
        position=1,
        type=type_,
        summary="",
        details=details or {},
        aggregate_id=customer_id,
        aggregate_version=1,
    )


def test_the_timeline_names_its_customers_and_the_survivors_of_merges() -> None:
    entries = [
        entry(ADA, "customer.renamed"),
        entry(ADA, "customer.tagged"),
        entry(BOB, "customer.merged_into", {"survivor_id": CID}),
        entry("", "product.created"),
    ]
    assert changed_topics(entries) == {
        customer_topic(ADA),
        customer_topic(BOB),
        customer_topic(CID),
    }
