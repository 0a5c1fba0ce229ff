"""The audit trail: every admitted call's line is written, with its call's time, within
half a second or once a batch waits, a chunk per turn of the event loop; refusals at once,
after the lines before them."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from c360_platform.audit import AuditTrail
from c360_platform.errors import PermissionDenied


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def texts(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture
def lines() -> Lines:
    handler = Lines()
    logger = logging.getLogger("test.audit")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


def trail(every: float = 60, batch: int = 512, chunk: int = 32) -> AuditTrail:
    return AuditTrail(logging.getLogger("test.audit"), every=every, batch=batch, chunk=chunk)


async def test_a_calls_line_is_written_within_the_interval_with_its_time(lines: Lines) -> None:
    audit = trail(every=0.2)
    called = time.time()
    audit.admitted("/c.v1.S/Get", "app:crm", "integration")
    audit.admitted("/c.v1.S/Put", "local:operator", "operator")
    assert lines.records == []  # not on the call's path
    await asyncio.sleep(0.1)
    assert lines.records == []
    await asyncio.sleep(0.2)
    assert lines.texts == [
        "/c.v1.S/Get by app:crm (integration)",
        "/c.v1.S/Put by local:operator (operator)",
    ]
    first = lines.records[0]
    assert first.name == "test.audit"
    assert first.levelno == logging.INFO
    assert called <= first.created < called + 0.1  # the call's time, not the write's
    assert logging.Formatter("%(asctime)s").format(first).endswith(f",{int(first.msecs):03d}")


async def test_a_full_batch_is_written_at_once_a_chunk_per_turn_of_the_loop(lines: Lines) -> None:
    audit = trail(batch=5, chunk=2)
    for i in range(5):
        audit.admitted(f"/c.v1.S/M{i}", "app:x", "agent")
    assert lines.records == []  # not on the call's path, even the one that filled the batch
    written = []
    for _ in range(4):
        await asyncio.sleep(0)  # a turn of the loop: other callbacks run between the slices
        written.append(len(lines.records))
    assert written == [2, 4, 5, 5]
    assert [t.split()[0] for t in lines.texts] == [f"/c.v1.S/M{i}" for i in range(5)]


async def test_a_refusal_is_written_at_once_after_the_lines_before_it(lines: Lines) -> None:
    audit = trail()
    audit.admitted("/c.v1.S/Get", "app:crm", "integration")
    audit.refused("/c.v1.S/Delete", PermissionDenied("role integration may not call Delete"))
    assert lines.texts == [
        "/c.v1.S/Get by app:crm (integration)",
        "refused /c.v1.S/Delete: role integration may not call Delete",
    ]
    assert lines.records[1].levelno == logging.WARNING


def test_without_an_event_loop_a_line_is_written_at_once(lines: Lines) -> None:
    trail().admitted("/c.v1.S/Get", "app:crm", "integration")
    assert lines.texts == ["/c.v1.S/Get by app:crm (integration)"]


async def test_nothing_waits_when_the_audit_log_is_off(lines: Lines) -> None:
    logging.getLogger("test.audit").setLevel(logging.WARNING)
    audit = trail()
    audit.admitted("/c.v1.S/Get", "app:crm", "integration")
    audit.flush()
    assert lines.records == []


def test_a_line_whose_loop_ended_is_written_by_the_next_call_on_another(lines: Lines) -> None:
    audit = trail()

    async def call(method: str) -> None:
        audit.admitted(method, "app:crm", "integration")

    asyncio.run(call("/c.v1.S/First"))  # its loop ends before the timer's turn
    assert lines.records == []
    asyncio.run(call("/c.v1.S/Second"))
    assert lines.texts[0] == "/c.v1.S/First by app:crm (integration)"


async def test_a_line_names_the_records_of_the_call_and_a_refusal_names_the_caller(
    lines: Lines,
) -> None:
    audit = trail()
    audit.admitted("/c.v1.S/Get", "app:crm", "agent", "customer_id=4c3e…")
    audit.refused("/c.v1.S/Forget", PermissionDenied("role agent may not"), "app:crm")
    assert lines.texts == [
        "/c.v1.S/Get by app:crm (agent) on customer_id=4c3e…",
        "refused /c.v1.S/Forget by app:crm: role agent may not",
    ]
