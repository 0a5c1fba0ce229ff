"""Every registered service's published contract covers every event of its aggregates."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import pytest
from eventsourcing.domain import Aggregate, event
from google.protobuf.empty_pb2 import Empty

from c360_platform import registry
from c360_platform.contract import EventContract, Published


@pytest.mark.parametrize("spec", list(registry.event_sources()), ids=lambda s: s.name)
def test_every_event_of_a_service_has_a_published_message(spec: registry.ServiceSpec) -> None:
    contract = spec.event_contract()
    assert list(contract), f"{spec.name} publishes no aggregate"
    assert contract.unmapped() == []


class Parcel(Aggregate):
    """An aggregate of the test's own, with one event the contract below forgets."""

    if TYPE_CHECKING:
        Sent: ClassVar[type[Aggregate.Event]]

    @event("Sent")
    def __init__(self, to: str) -> None:
        self.to = to

    @event("Lost")
    def lose(self) -> None:
        pass


def test_an_event_without_a_message_is_found() -> None:
    contract = EventContract(Published(Parcel, "parcel", {Parcel.Sent: lambda e: Empty()}))
    assert contract.unmapped() == ["Parcel.Lost"]
