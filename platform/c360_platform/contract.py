"""A service's published contract: each domain event class -> its c360.events.v1 message.

Mappers are keyed by event class (`Customer.Renamed`), never by name, so a renamed or new
event without a message is found by `EventContract.unmapped()` (a unit test asks it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, CanMutateAggregate, DomainEventProtocol
from google.protobuf.message import Message

from c360_platform.envelope import Publication

Mapper = Callable[[Any], Message]


def event_classes(aggregate: type[Aggregate]) -> list[type]:
    """The aggregate's concrete event classes (those no other of its event classes extends:
    `Customer.Renamed`, not `Customer.Event`). The library's default `Created` is left out
    when the aggregate names its creation event (`@event("Registered") def __init__`)."""
    found = [
        value
        for value in vars(aggregate).values()
        if isinstance(value, type) and issubclass(value, CanMutateAggregate)
    ]
    leaves = [c for c in found if not any(o is not c and issubclass(o, c) for o in found)]
    named = [c for c in leaves if issubclass(c, Aggregate.Created) and c.__name__ != "Created"]
    return [c for c in leaves if not (named and c.__name__ == "Created")]


@dataclass(frozen=True)
class Published:
    """How one aggregate's events are published."""

    aggregate: type[Aggregate]
    aggregate_type: str
    """Its name in subjects and envelopes (`c360.<source>.<aggregate_type>.<event>`)."""
    messages: Mapping[type, Mapper]
    """Event class -> the function making its published message."""
    customer: Callable[[Any], str] = lambda event: str(event.originator_id)
    """Whose event it is (the envelope's customer id); by default the aggregate's id."""


class EventContract:
    """Maps every event of a service's aggregates to its published message."""

    def __init__(self, *published: Published) -> None:
        self.published = published
        self._by_class: dict[type, tuple[Published, Mapper]] = {
            kind: (p, mapper) for p in published for kind, mapper in p.messages.items()
        }

    def publication(self, event: DomainEventProtocol[UUID]) -> Publication:
        found = self._by_class.get(type(event))
        if found is None:
            raise TypeError(f"no published message for {type(event).__qualname__}")
        published, mapper = found
        return Publication(
            aggregate_type=published.aggregate_type,
            customer_id=published.customer(event),
            payload=mapper(event),
        )

    def unmapped(self) -> list[str]:
        """Event classes of the contract's aggregates that have no published message."""
        return [
            kind.__qualname__
            for p in self.published
            for kind in event_classes(p.aggregate)
            if kind not in self._by_class
        ]

    def __iter__(self) -> Iterator[Published]:
        return iter(self.published)
