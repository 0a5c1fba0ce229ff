"""A pure creation decided on the event loop (`CommandServicer.command(decide_on_loop=True)`):
its steps are handed back undriven, its write awaited with no command thread, a retry
answered from the first attempt, and a call cancelled meanwhile still finishes its command."""

from __future__ import annotations

import asyncio
import threading
from typing import Any
from uuid import UUID

import pytest

from c360.customer.v1 import customer_service_pb2 as capi
from c360.events.v1 import customer_events_pb2 as cev
from c360_customer.api import CustomerServicer
from c360_customer.application import CustomerApplication
from c360_platform import commands
from c360_platform.errors import DeadlineExceeded
from c360_platform.store import CommandOutcome, Deferred, on_loop

from .support import CallContext
from .support import command_ctx as ctx
from .support import register_named as register


async def on_the_loop(app: CustomerApplication, name: str, request_id: str = "") -> CommandOutcome:
    """What the servicer does with a command it decides on its loop."""
    with app.deciding():
        with on_loop():
            deferred = register(app, name, request_id)
        assert isinstance(deferred, Deferred)
        return await commands.run_on_loop(deferred.steps)


@pytest.fixture
def app() -> CustomerApplication:
    application = CustomerApplication.in_memory()
    application.attach_writer()
    return application


def test_only_an_application_with_a_writer_and_its_own_keys_decides_on_the_loop() -> None:
    app = CustomerApplication.in_memory()
    assert not app.decides_on_loop  # no writer: its saves are the store's own calls
    app.attach_writer()
    assert app.decides_on_loop


async def test_a_registration_decided_on_the_loop_is_written_and_its_key_kept(
    app: CustomerApplication,
) -> None:
    outcome = await on_the_loop(app, "ada", "r1")
    assert outcome.position > 0
    assert outcome.version == 1
    customer = app.get_customer(outcome.aggregate_id)
    assert customer.display_name == "ada"
    assert app.keyring.lookup([outcome.aggregate_id])[outcome.aggregate_id]
    assert app.keyring._pending == {}  # settled: kept in the cache, not pending
    assert app.writer is not None
    assert app.writer.stats.commands == 1


async def test_a_retry_decided_on_the_loop_gets_the_first_answer(app: CustomerApplication) -> None:
    first = await on_the_loop(app, "ada", "same")
    again = await on_the_loop(app, "ada", "same")  # its append fails whole: replayed
    assert again.replayed
    assert again.aggregate_id == first.aggregate_id
    assert again.position == first.position
    assert app.event_recorder.count_events() == 1
    assert app.keyring._pending == {}  # the retry's own key was dropped


async def test_a_command_that_reads_the_store_refuses_to_run_on_the_loop(
    app: CustomerApplication,
) -> None:
    outcome = register(app, "ada")
    with on_loop(), pytest.raises(RuntimeError, match="not on the event loop"):
        app.rename(ctx("r2"), outcome.aggregate_id, 1, "Ada")
    assert app.get_customer(outcome.aggregate_id).display_name == "ada"


async def test_a_cancelled_call_still_finishes_its_command(app: CustomerApplication) -> None:
    release = threading.Event()
    recorder: Any = app.recorder
    inner = recorder.insert_events

    writing = threading.Event()

    def held(events: Any, **kwargs: Any) -> Any:
        writing.set()
        release.wait(10)
        return inner(events, **kwargs)

    recorder.insert_events = held
    call = asyncio.ensure_future(on_the_loop(app, "ada", "r3"))
    assert await asyncio.to_thread(writing.wait, 10)  # its write is under way: the call waits
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    release.set()
    for _ in range(1000):
        if not commands._driving:
            break
        await asyncio.sleep(0.005)
    assert not commands._driving
    assert app.event_recorder.count_events() == 1
    assert app.keyring._pending == {}
    (customer_id,) = app.keyring._cache  # its key was kept as the command finished
    assert isinstance(customer_id, UUID)
    assert app.get_customer(customer_id).display_name == "ada"


async def test_a_registration_whose_deadline_has_passed_is_not_executed_on_the_loop(
    app: CustomerApplication,
) -> None:
    """A command on a thread is refused once its deadline passed; one decided on the event
    loop (RegisterCustomer) was executed all the same, its caller told DEADLINE_EXCEEDED."""

    class Expired(CallContext):
        def time_remaining(self) -> float | None:
            return 0.0

    request = capi.RegisterCustomerRequest(kind=cev.CUSTOMER_KIND_PERSON, display_name="Ada")
    expired: Any = Expired()
    with pytest.raises(DeadlineExceeded, match="deadline passed before the command ran"):
        await CustomerServicer(app).RegisterCustomer(request, expired)
    assert app.event_recorder.count_events() == 0
