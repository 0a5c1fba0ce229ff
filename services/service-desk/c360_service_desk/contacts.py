"""Contact-centre records: contacts with a customer that need no ticket (an IVR session with
its menu path, a call answered and closed at once, an SMS or e-mail). Pure domain, no I/O.

A contact is recorded once and not changed after: it is a fact of the customer's history.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

from eventsourcing.domain import Aggregate, event

from c360_platform.validation import Violations
from c360_service_desk.domain import MAX_CALL_SECONDS, MAX_REASON, Channel

MAX_IVR_STEPS = 20
VOICE = {Channel.PHONE, Channel.IVR}
"""Channels whose contacts have a duration."""


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Outcome(StrEnum):
    RESOLVED = "resolved"
    SELF_SERVICE = "self_service"
    TRANSFERRED = "transferred"
    ABANDONED = "abandoned"
    INFORMATION = "information"
    NO_ANSWER = "no_answer"


class Contact(Aggregate):
    """One contact with a customer, as the contact centre recorded it."""

    if TYPE_CHECKING:
        Recorded: ClassVar[type[Aggregate.Event]]

    @event("Recorded")
    def __init__(
        self,
        customer_id: str,
        channel: str,
        direction: str,
        started_at: datetime,
        duration_seconds: int,
        outcome: str,
        agent_id: str,
        ivr_path: list[str],
        note: str,
    ) -> None:
        self.customer_id = customer_id
        self.channel = channel
        self.direction = direction
        self.started_at = started_at
        self.duration_seconds = duration_seconds
        self.outcome = outcome
        self.agent_id = agent_id
        self.ivr_path = list(ivr_path)
        self.note = note


def record_contact(
    *,
    customer_id: str,
    channel: str,
    direction: str,
    outcome: str,
    started_at: datetime,
    now: datetime,
    duration_seconds: int = 0,
    agent_id: str = "",
    ivr_path: list[str] | None = None,
    note: str = "",
) -> Contact:
    """Validate a contact (every offending field at once) and record it."""
    v = Violations()
    customer = v.uuid("customer_id", customer_id.strip())
    ch = v.enum("channel", channel, Channel)
    d = v.enum("direction", direction, Direction)
    o = v.enum("outcome", outcome, Outcome)
    agent = v.employee_id("agent_id", agent_id)
    text = v.text("note", note, required=False, max_len=MAX_REASON)
    path = [v.tag("ivr_path", step) for step in ivr_path or []]
    if len(path) > MAX_IVR_STEPS:
        v.add("ivr_path", f"at most {MAX_IVR_STEPS} menu steps")
    if path and ch is not Channel.IVR:
        v.add("ivr_path", "only IVR contacts have a menu path")
    if not 0 <= duration_seconds <= MAX_CALL_SECONDS:
        v.add("duration_seconds", f"must be 0 to {MAX_CALL_SECONDS}")
    elif duration_seconds and ch is not None and ch not in VOICE:
        v.add("duration_seconds", "only calls and IVR sessions have a duration")
    if o is Outcome.SELF_SERVICE and agent:
        v.add("agent_id", "a self-service contact has no agent")
    if o is Outcome.SELF_SERVICE and ch is not None and ch is not Channel.IVR:
        v.add("outcome", "self-service is an IVR outcome")
    if started_at > now + timedelta(minutes=5):
        v.add("started_at", "is in the future")
    v.check()
    assert ch is not None
    assert d is not None
    assert o is not None
    return Contact(
        customer_id=customer,
        channel=ch.value,
        direction=d.value,
        started_at=started_at,
        duration_seconds=duration_seconds,
        outcome=o.value,
        agent_id=agent,
        ivr_path=path,
        note=text,
    )
