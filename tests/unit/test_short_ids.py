"""Short ids typed back: completed from the services' event logs, refused when ambiguous."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import grpc
import pytest

from c360.customer.v1 import customer_service_pb2 as customer_api
from c360_cli.errors import CliError
from c360_cli.short_ids import Resolver, complete, kind_of_field
from c360_platform.memstore import MemoryEventRecorder
from c360_platform.store import kind_of, prefix_range

ADA = "466108df-7384-4f33-a901-e967e4aece59"
BOB = "466108df-9999-4f33-a901-e967e4aece59"
CAROL = "ec0efc11-efa2-45e6-a11a-c57435faa814"


def _resolve(kind: str, prefix: str) -> list[str]:
    known = {"customer": [ADA, BOB, CAROL]}
    digits = prefix.replace("-", "")
    return [i for i in known.get(kind, []) if i.replace("-", "").startswith(digits)]


def test_a_unique_beginning_becomes_the_whole_id() -> None:
    request = customer_api.GetCustomerRequest(customer_id="ec0efc11")
    assert complete(request, _resolve).customer_id == CAROL  # type: ignore[attr-defined]
    assert request.customer_id == "ec0efc11"  # the caller's message is left alone


def test_an_ambiguous_beginning_names_the_candidates() -> None:
    with pytest.raises(CliError) as refused:
        complete(customer_api.GetCustomerRequest(customer_id="466108df"), _resolve)
    assert refused.value.exit_code == 2
    assert ADA in refused.value.message
    assert BOB in refused.value.message
    more = complete(customer_api.GetCustomerRequest(customer_id="466108df-7384"), _resolve)
    assert more.customer_id == ADA  # type: ignore[attr-defined]


def test_an_unknown_beginning_is_not_found() -> None:
    with pytest.raises(CliError) as refused:
        complete(customer_api.GetCustomerRequest(customer_id="0000abcd"), _resolve)
    assert refused.value.code == "NOT_FOUND"
    assert refused.value.field == "customer_id"


def test_whole_ids_and_other_fields_are_left_as_they_are() -> None:
    request = customer_api.MergeCustomersRequest(
        request_id="abcd1234", survivor_id=CAROL, duplicate_id="ec0efc11", reason="beef"
    )
    completed = complete(request, _resolve)
    assert completed.request_id == "abcd1234"  # type: ignore[attr-defined]
    assert completed.survivor_id == CAROL  # type: ignore[attr-defined]
    assert completed.duplicate_id == CAROL  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("field", "kind"),
    [
        ("customer_id", "customer"),
        ("survivor_id", "customer"),
        ("ticket_id", "ticket"),
        ("contract_id", "service_contract"),
        ("request_id", None),
        ("address_id", None),
        ("name", None),
    ],
)
def test_id_fields_name_their_kind(field: str, kind: str | None) -> None:
    assert kind_of_field(field) == kind


def test_prefix_ranges_and_kinds() -> None:
    low, high = prefix_range("466108DF-73")
    assert low == UUID("466108df-7300-0000-0000-000000000000")
    assert high == UUID("466108df-73ff-ffff-ffff-ffffffffffff")
    with pytest.raises(ValueError, match="hexadecimal"):
        prefix_range("xyz")
    assert kind_of("c360_service_desk.service_contracts:ServiceContract.Signed") == (
        "service_contract"
    )
    assert kind_of("c360_customer.domain:Customer.Registered") == "customer"


def test_the_in_memory_recorder_finds_ids_in_a_range() -> None:
    from eventsourcing.persistence import StoredEvent

    recorder = MemoryEventRecorder()
    recorder.insert_events(
        [
            StoredEvent(UUID(i), v, f"m:{k}.E", b"{}")
            for i, k in ((ADA, "Customer"), (BOB, "Ticket"), (CAROL, "Customer"))
            for v in (1, 2)
        ]
    )
    low, high = prefix_range("466108df")
    assert recorder.ids_in_range(low, high, 10) == [
        (UUID(ADA), "m:Customer.E"),
        (UUID(BOB), "m:Ticket.E"),
    ]
    assert recorder.ids_in_range(low, high, 1) == [(UUID(ADA), "m:Customer.E")]


def test_a_beginning_is_not_called_unknown_when_the_services_cannot_be_reached() -> None:
    closed = grpc.insecure_channel("127.0.0.1:1")  # nothing listens on port 1
    try:
        resolve = Resolver([("customer", "127.0.0.1:1", closed)], timeout=5)
        with pytest.raises(CliError) as refused:
            complete(customer_api.GetCustomerRequest(customer_id="c135"), resolve)
    finally:
        closed.close()
    assert refused.value.code == "UNAVAILABLE"
    assert "no customer id begins" not in refused.value.message
    assert "cannot reach the customer service at 127.0.0.1:1" in refused.value.message


def test_every_service_is_asked_at_once_and_what_it_answered_is_said() -> None:
    # The services were asked one after the other: with PostgreSQL down each answered
    # UNAVAILABLE after a second or two, and `c360 customer get 3454aa7c` took 9-11 s to say
    # "cannot reach the customer service ...; is `c360 up` running?" (it was running).
    from concurrent import futures
    from threading import Barrier, BrokenBarrierError

    from c360.events.v1 import event_log_pb2 as log_api
    from c360.events.v1 import event_log_pb2_grpc as log_grpc

    services = ("customer", "timeline", "service-desk", "sales", "marketing")
    together = Barrier(len(services), timeout=10)

    class Unavailable(log_grpc.EventLogServiceServicer):
        def ResolveIds(
            self, request: log_api.ResolveIdsRequest, context: grpc.ServicerContext
        ) -> log_api.ResolveIdsResponse:
            try:
                together.wait()  # passes only when every service was asked before any answered
            except BrokenBarrierError:
                context.abort(grpc.StatusCode.INTERNAL, "asked one after the other")
            context.abort(grpc.StatusCode.UNAVAILABLE, "PostgreSQL is unavailable; retry")

        def ReadEvents(
            self, request: log_api.ReadEventsRequest, context: grpc.ServicerContext
        ) -> Iterator[log_api.ReadEventsResponse]:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "not here")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=len(services)))
    log_grpc.add_EventLogServiceServicer_to_server(Unavailable(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    address = f"127.0.0.1:{port}"
    opened = [(name, address, grpc.insecure_channel(address)) for name in services]
    try:
        with pytest.raises(CliError) as refused:
            Resolver(opened, timeout=20)("customer", "3454aa7c")
    finally:
        for _, _, channel in opened:
            channel.close()
        server.stop(None)
    assert refused.value.code == "UNAVAILABLE"
    assert f"unavailable: the customer service at {address}: PostgreSQL is unavailable" in (
        refused.value.message
    )
    assert "is `c360 up` running" not in refused.value.message
