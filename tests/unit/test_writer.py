"""The group-commit writer in memory: commands waiting together are written in one call of
the recorder, one command's conflict fails that command alone, and a batch waits (a
little) for the commands on their way."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import pytest

from c360_customer.application import CustomerApplication
from c360_platform import store
from c360_platform.errors import InvalidArgument, VersionConflict
from c360_platform.store import CommandOutcome, RowQuery

from .support import command_ctx as ctx
from .support import register_named as register


class Gate:
    """Holds the recorder's first insert until released, so that later commands queue up
    behind it and form one batch; counts the inserts and their sizes (`hold=False`: only
    counts)."""

    def __init__(self, app: CustomerApplication, *, hold: bool = True) -> None:
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.entered = threading.Event()
        self.sizes: list[int] = []
        recorder: Any = app.recorder
        inner = recorder.insert_events

        def insert_events(events: Any, **kwargs: Any) -> Any:
            self.entered.set()
            self.release.wait(10)
            self.sizes.append(len(kwargs.get("c360_batch") or [None]))
            return inner(events, **kwargs)

        recorder.insert_events = insert_events


def run_together(
    app: CustomerApplication, gate: Gate, first: Callable[[], Any], rest: list[Callable[[], Any]]
) -> list[Any]:
    """`first` enters the writer and is held there; `rest` queue behind it, in their order;
    then go."""

    def attempt(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:  # the answer under test
            return exc

    writer = app.writer
    assert writer is not None
    with ThreadPoolExecutor(len(rest) + 1) as pool:
        held = pool.submit(attempt, first)
        assert gate.entered.wait(10)
        queued = []
        for n, fn in enumerate(rest, 1):
            queued.append(pool.submit(attempt, fn))
            # Decided and waiting before the next one starts: the queue's order is the list's
            # (threads started together could overtake each other on a busy machine).
            while len(writer._queue) < n:
                threading.Event().wait(0.001)
        gate.release.set()
        return [held.result(), *(f.result() for f in queued)]


@pytest.fixture
def app() -> CustomerApplication:
    application = CustomerApplication.in_memory()
    application.attach_writer()
    return application


def test_commands_waiting_together_are_one_write(app: CustomerApplication) -> None:
    gate = Gate(app)
    answers = run_together(
        app,
        gate,
        lambda: register(app, "first"),
        [functools.partial(register, app, f"person{i}", f"r{i}") for i in range(20)],
    )
    assert all(isinstance(a, CommandOutcome) for a in answers)
    assert gate.sizes == [1, 20]
    assert app.event_recorder.count_events() == 21
    positions = sorted(a.position for a in answers)
    assert positions == list(range(1, 22))  # each its own event's position
    writer = app.writer
    assert writer is not None
    assert writer.stats.largest_batch == 20
    # The batched commands' request ids and rows were recorded with their events.
    again = register(app, "person7", "r7")
    assert again.replayed
    assert again.aggregate_id == answers[8].aggregate_id
    assert len(app.rows(RowQuery())) == 21


def test_a_conflict_in_a_batch_fails_that_command_alone(app: CustomerApplication) -> None:
    base = register(app, "ada")
    other = register(app, "grace")
    gate = Gate(app)

    def rename(cid: UUID, name: str, version: int | None = 1) -> Callable[[], Any]:
        return lambda: app.rename(ctx(), cid, version, name)

    answers = run_together(
        app,
        gate,
        lambda: register(app, "first"),
        [
            lambda: register(app, "x", "dup"),
            rename(base.aggregate_id, "Ada A"),
            lambda: register(app, "y"),
            rename(base.aggregate_id, "Ada B"),  # same expected version as the one before
            lambda: register(app, "x", "dup"),  # same request again: a replay, no effect
            lambda: app.register(
                ctx("dup", digest="other"),
                kind="person",
                display_name="z",
                emails=[],
                phones=[],
                addresses=[],
            ),  # the same request id for another request
            rename(other.aggregate_id, "Grace H", None),
        ],
    )
    first, dup, ada_a, y, ada_b, dup_again, reused, grace = answers
    for ok in (first, dup, ada_a, y, grace):
        assert isinstance(ok, CommandOutcome)
        assert not ok.replayed
    assert isinstance(ada_b, VersionConflict)
    assert isinstance(dup_again, CommandOutcome)
    assert dup_again.replayed
    assert dup_again.aggregate_id == dup.aggregate_id
    assert isinstance(reused, InvalidArgument)
    # Exactly the effects of the commands that succeeded, each once.
    assert app.event_recorder.count_events() == 2 + 5
    assert app.get_customer(base.aggregate_id).display_name == "Ada A"
    assert app.get_customer(base.aggregate_id).version == 2
    assert app.get_customer(other.aggregate_id).display_name == "Grace H"
    writer = app.writer
    assert writer is not None
    assert writer.stats.isolated == 3  # ada_b, dup_again and reused failed alone
    # The log keeps the order in which the commands were written.
    log = app.event_recorder.select_with_metadata(0, 100)
    assert [n.id for n, _ in log] == sorted(n.id for n, _ in log)


def test_without_a_writer_commands_save_alone() -> None:
    app = CustomerApplication.in_memory()
    assert app.writer is None
    outcome = register(app, "solo", "r1")
    assert outcome.position == 1
    assert register(app, "solo", "r1").replayed


def test_a_closed_writer_refuses_and_its_thread_ends(app: CustomerApplication) -> None:
    register(app, "before")
    writer = app.writer
    assert writer is not None
    thread = writer._thread
    app.close()
    assert thread is None or not thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        register(app, "after")


def test_a_batch_waits_for_a_command_on_its_way() -> None:
    """A command taken on (its handler entered `deciding`) and not written yet: the batch
    that forms meanwhile waits for it, and the two go in one transaction."""
    app = CustomerApplication.in_memory()
    writer = app.attach_writer(gather=10.0)
    sizes = Gate(app, hold=False)
    deciding, first_queued = threading.Event(), threading.Event()
    original = writer.submit

    def submit(item: Any) -> Any:
        done = original(item)
        first_queued.set()
        return done

    writer.submit = submit  # type: ignore[method-assign]
    with ThreadPoolExecutor(2) as pool:
        hold = threading.Event()

        def second() -> Any:
            with writer.deciding():
                deciding.set()
                hold.wait(10)  # decided only once the first command's write is queued
                return register(app, "second")

        later = pool.submit(second)
        assert deciding.wait(10)
        first = pool.submit(register, app, "first")
        assert first_queued.wait(10)
        hold.set()
        answers = [first.result(10), later.result(10)]
    assert all(isinstance(a, CommandOutcome) for a in answers)
    assert sizes.sizes == [2]  # one transaction for both


def test_a_batch_waits_for_commands_on_their_way_at_most_gather() -> None:
    app = CustomerApplication.in_memory()
    writer = app.attach_writer(gather=0.05)
    sizes = Gate(app, hold=False)
    # This thread's command takes its time to decide; another's write goes alone after 0.05 s.
    with writer.deciding(), ThreadPoolExecutor(1) as pool:
        answer = pool.submit(register, app, "alone").result(10)
    assert isinstance(answer, CommandOutcome)
    assert sizes.sizes == [1]


def test_with_no_command_on_its_way_a_write_goes_at_once() -> None:
    app = CustomerApplication.in_memory()
    writer = app.attach_writer(gather=10.0)
    sizes = Gate(app, hold=False)
    started = time.monotonic()
    answer = register(app, "alone")
    assert time.monotonic() - started < 5.0  # not the 10 s a batch may wait for deciders
    assert isinstance(answer, CommandOutcome)
    assert sizes.sizes == [1]
    assert writer.stats.transactions == 1


def register_large(app: CustomerApplication) -> CommandOutcome:
    """A registration whose event holds more than 500 bytes (a name of 200 characters)."""
    return app.register(
        ctx("large"),
        kind="person",
        display_name="x" * 200,
        emails=[],
        phones=[],
        addresses=[],
    )


def test_a_command_too_large_to_publish_is_refused_alone_in_its_batch(
    app: CustomerApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "MAX_EVENT_BYTES", 500)  # a registration with a long name is more
    gate = Gate(app)

    def refused() -> Any:
        # Answered at once, while the writer is held: it never waits for (or joins) a batch.
        with pytest.raises(InvalidArgument) as caught:
            register_large(app)
        return caught.value

    answers = run_together(
        app,
        gate,
        lambda: register(app, "first"),
        [
            lambda: register(app, "before"),
            lambda: (refused(), register(app, "after"))[1],
        ],
    )
    assert all(isinstance(a, CommandOutcome) for a in answers)
    assert gate.sizes == [1, 2]
    assert app.event_recorder.count_events() == 3
    assert app.event_recorder.find_outcome("large") is None
    error = refused()
    [violation] = error.violations
    assert violation.field == "request"
    assert "this change is too large" in violation.description
    assert "at most 500" in violation.description
    assert app.event_recorder.count_events() == 3


def test_without_a_writer_a_command_too_large_to_publish_stores_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = CustomerApplication.in_memory()
    monkeypatch.setattr(store, "MAX_EVENT_BYTES", 500)
    with pytest.raises(InvalidArgument, match="this change is too large"):
        register_large(app)
    assert app.event_recorder.count_events() == 0
    assert register(app, "small").position == 1
