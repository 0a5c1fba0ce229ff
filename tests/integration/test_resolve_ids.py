"""EventLogService.ResolveIds: the short ids lists show, completed by the service that owns
them (what the CLI does before a call); bad prefixes refused with the field named."""

from __future__ import annotations

import grpc
import pytest

from c360.events.v1 import event_log_pb2 as log_api
from c360.events.v1 import event_log_pb2_grpc as log_grpc

from .conftest import Stack
from .helpers import bad_fields, register

pytestmark = pytest.mark.integration


async def test_ids_are_found_by_their_beginning_and_kind(stack: Stack) -> None:
    ada = (await register(stack.customer, "Ada Lovelace", "ada@example.com")).result.aggregate_id
    log = stack.stub("customer", log_grpc.EventLogServiceStub)
    found = await log.ResolveIds(log_api.ResolveIdsRequest(prefix=ada[:8]))
    assert [(r.id, r.kind) for r in found.ids] == [(ada, "customer")]
    dashed = await log.ResolveIds(log_api.ResolveIdsRequest(prefix=ada[:13].upper()))
    assert [r.id for r in dashed.ids] == [ada]
    other_kind = await log.ResolveIds(log_api.ResolveIdsRequest(prefix=ada[:8], kind="ticket"))
    assert list(other_kind.ids) == []
    desk = stack.stub("service-desk", log_grpc.EventLogServiceStub)
    assert list((await desk.ResolveIds(log_api.ResolveIdsRequest(prefix=ada[:8]))).ids) == []


async def test_bad_prefixes_are_refused_naming_the_field(stack: Stack) -> None:
    log = stack.stub("customer", log_grpc.EventLogServiceStub)
    for request, field in [
        (log_api.ResolveIdsRequest(prefix="4a1"), "prefix"),
        (log_api.ResolveIdsRequest(prefix="zz12345"), "prefix"),
        (log_api.ResolveIdsRequest(prefix="4a1b\x00"), "prefix"),
        (log_api.ResolveIdsRequest(prefix="4a1b", limit=1000), "limit"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await log.ResolveIds(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in bad_fields(refused.value)
