"""The Ticket aggregate and its rules: pure Python on `eventsourcing.domain`, no I/O.

A ticket is opened for a customer through a channel and moves open -> resolved -> closed; a
resolved ticket can be reopened, a closed one is final. Command methods check the state and
validate, then call the decorated event methods, so each change is written once and is the
same when the ticket is rebuilt from its events. Every event names the ticket's customer, so
its publication (and later per-customer encryption) knows whose it is without the ticket.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.domain import Aggregate, event

from c360_platform.errors import PreconditionFailed
from c360_platform.validation import Violations

MAX_SUBJECT = 200
MAX_TEXT = 10_000
MAX_REASON = 500
MAX_INTERACTIONS = 2_000
MAX_CALL_SECONDS = 24 * 3600
DEFAULT_CATEGORY = "general"


class Channel(StrEnum):
    """How the customer reached us."""

    PHONE = "phone"
    IVR = "ivr"
    EMAIL = "email"
    SMS = "sms"
    WEB_FORM = "web_form"
    CHAT = "chat"
    FAX = "fax"
    IN_PERSON = "in_person"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class State(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    CLOSED = "closed"


class InteractionKind(StrEnum):
    INBOUND_MESSAGE = "inbound_message"
    OUTBOUND_MESSAGE = "outbound_message"
    INBOUND_CALL = "inbound_call"
    OUTBOUND_CALL = "outbound_call"
    INTERNAL_NOTE = "internal_note"


CALLS = {InteractionKind.INBOUND_CALL, InteractionKind.OUTBOUND_CALL}


class Ticket(Aggregate):
    """A customer's request for help, from the first contact to its resolution."""

    if TYPE_CHECKING:  # the event classes the library makes from the decorated methods
        Opened: ClassVar[type[Aggregate.Event]]
        Assigned: ClassVar[type[Aggregate.Event]]
        InteractionRecorded: ClassVar[type[Aggregate.Event]]
        PriorityChanged: ClassVar[type[Aggregate.Event]]
        Escalated: ClassVar[type[Aggregate.Event]]
        Resolved: ClassVar[type[Aggregate.Event]]
        Reopened: ClassVar[type[Aggregate.Event]]
        Closed: ClassVar[type[Aggregate.Event]]
        Rated: ClassVar[type[Aggregate.Event]]

    @event("Opened")
    def __init__(
        self,
        customer_id: str,
        channel: str,
        subject: str,
        description: str,
        category: str,
        priority: str,
    ) -> None:
        self.customer_id = customer_id
        self.channel = channel
        self.subject = subject
        self.description = description
        self.category = category
        self.priority = priority
        self.state = State.OPEN.value
        self.agent_id = ""
        self.queue = ""
        self.escalation_level = 0
        self.interactions: list[dict[str, Any]] = []
        self.resolution = ""
        self.rating: int | None = None
        self.rating_comment = ""
        self.reopened_count = 0
        self.resolved_at: datetime | None = None
        self.closed_at: datetime | None = None

    def _require(self, action: str, *allowed: State) -> None:
        """FAILED_PRECONDITION, naming the current state, unless the ticket is in `allowed`."""
        if self.state not in allowed:
            states = " or ".join(s.value for s in allowed)
            raise PreconditionFailed(
                f"ticket {self.id} is {self.state}: cannot {action} it (only when {states})"
            )

    # -- assignment -------------------------------------------------------------------------

    def assign(self, agent_id: str, queue: str) -> None:
        """Give the ticket to an agent, a queue, or both (an empty one is left as it is)."""
        v = Violations()
        agent = v.employee_id("agent_id", agent_id)
        clean_queue = v.tag("queue", queue) if queue.strip() else ""
        if not agent and not clean_queue:
            v.add("agent_id", "an agent or a queue is required")
        v.check()
        self._require("assign", State.OPEN)
        new_agent = agent or self.agent_id
        new_queue = clean_queue or self.queue
        if (new_agent, new_queue) != (self.agent_id, self.queue):
            self._assigned(self.customer_id, new_agent, new_queue, self.agent_id, self.queue)

    @event("Assigned")
    def _assigned(
        self,
        customer_id: str,
        agent_id: str,
        queue: str,
        previous_agent_id: str,
        previous_queue: str,
    ) -> None:
        self.agent_id = agent_id
        self.queue = queue

    # -- interactions -----------------------------------------------------------------------

    def record_interaction(
        self,
        kind: str,
        body: str,
        at: datetime,
        channel: str = "",
        duration_seconds: int = 0,
        agent_id: str = "",
    ) -> str:
        """Add a message, call or internal note; returns the interaction's id."""
        v = Violations()
        k = v.enum("kind", kind, InteractionKind)
        ch = v.enum("channel", channel, Channel) if channel else None
        agent = v.employee_id("agent_id", agent_id)
        is_call = k in CALLS
        text = v.paragraphs("body", body, required=not is_call, max_len=MAX_TEXT)
        if is_call and not 0 <= duration_seconds <= MAX_CALL_SECONDS:
            v.add("duration_seconds", f"must be 0 to {MAX_CALL_SECONDS}")
        if not is_call and duration_seconds:
            v.add("duration_seconds", "only calls have a duration")
        if k == InteractionKind.INTERNAL_NOTE and ch is not None:
            v.add("channel", "internal notes have no channel")
        v.check()
        assert k is not None
        self._require("record an interaction on", State.OPEN, State.RESOLVED)
        if len(self.interactions) >= MAX_INTERACTIONS:
            raise PreconditionFailed(
                f"ticket {self.id} has {MAX_INTERACTIONS} interactions; open a new ticket"
            )
        if ch is not None:
            channel_value = ch.value
        elif k == InteractionKind.INTERNAL_NOTE:
            channel_value = ""
        elif is_call:
            channel_value = Channel.PHONE.value
        else:
            channel_value = self.channel
        interaction_id = str(uuid.uuid4())
        self._interaction_recorded(
            self.customer_id,
            interaction_id,
            k.value,
            channel_value,
            text,
            duration_seconds if is_call else 0,
            agent,
            at,
        )
        return interaction_id

    @event("InteractionRecorded")
    def _interaction_recorded(
        self,
        customer_id: str,
        interaction_id: str,
        kind: str,
        channel: str,
        body: str,
        duration_seconds: int,
        agent_id: str,
        recorded_at: datetime,
    ) -> None:
        self.interactions.append(
            {
                "interaction_id": interaction_id,
                "kind": kind,
                "channel": channel,
                "body": body,
                "duration_seconds": duration_seconds,
                "agent_id": agent_id,
                "recorded_at": recorded_at,
            }
        )

    # -- priority and escalation ------------------------------------------------------------

    def change_priority(self, priority: str, reason: str) -> None:
        v = Violations()
        p = v.enum("priority", priority, Priority)
        why = v.text("reason", reason, required=False, max_len=MAX_REASON)
        v.check()
        assert p is not None
        self._require("change the priority of", State.OPEN)
        if p.value != self.priority:
            self._priority_changed(self.customer_id, p.value, self.priority, why)

    @event("PriorityChanged")
    def _priority_changed(
        self, customer_id: str, priority: str, previous_priority: str, reason: str
    ) -> None:
        self.priority = priority

    def escalate(self, reason: str, queue: str) -> None:
        """One escalation level up, optionally into another queue."""
        v = Violations()
        why = v.text("reason", reason, max_len=MAX_REASON)
        clean_queue = v.tag("queue", queue) if queue.strip() else ""
        v.check()
        self._require("escalate", State.OPEN)
        self._escalated(self.customer_id, self.escalation_level + 1, why, clean_queue)

    @event("Escalated")
    def _escalated(self, customer_id: str, level: int, reason: str, queue: str) -> None:
        self.escalation_level = level
        if queue:
            self.queue = queue

    # -- resolution and closing -------------------------------------------------------------

    def resolve(self, resolution: str, agent_id: str, at: datetime) -> None:
        v = Violations()
        text = v.paragraphs("resolution", resolution, max_len=MAX_TEXT)
        agent = v.employee_id("agent_id", agent_id)
        v.check()
        self._require("resolve", State.OPEN)
        self._resolved(self.customer_id, text, agent or self.agent_id, at)

    @event("Resolved")
    def _resolved(
        self, customer_id: str, resolution: str, agent_id: str, resolved_at: datetime
    ) -> None:
        self.state = State.RESOLVED.value
        self.resolution = resolution
        self.resolved_at = resolved_at
        self.rating = None
        self.rating_comment = ""

    def reopen(self, reason: str) -> None:
        v = Violations()
        why = v.text("reason", reason, required=False, max_len=MAX_REASON)
        v.check()
        if self.state == State.CLOSED:
            raise PreconditionFailed(
                f"ticket {self.id} is closed: cannot reopen it (closed is final; open a new ticket)"
            )
        self._require("reopen", State.RESOLVED)
        self._reopened(self.customer_id, why)

    @event("Reopened")
    def _reopened(self, customer_id: str, reason: str) -> None:
        self.state = State.OPEN.value
        self.reopened_count += 1

    def close(self, reason: str, at: datetime) -> None:
        v = Violations()
        why = v.text("reason", reason, required=False, max_len=MAX_REASON)
        v.check()
        self._require("close", State.OPEN, State.RESOLVED)
        self._closed(self.customer_id, why, self.state, at)

    @event("Closed")
    def _closed(
        self, customer_id: str, reason: str, previous_state: str, closed_at: datetime
    ) -> None:
        self.state = State.CLOSED.value
        self.closed_at = closed_at

    # -- satisfaction -----------------------------------------------------------------------

    def rate(self, score: int, comment: str) -> None:
        """The customer's satisfaction with the latest resolution: once, 1 to 5."""
        v = Violations()
        if not 1 <= score <= 5:
            v.add("score", "must be 1 to 5")
        text = v.paragraphs("comment", comment, required=False, max_len=MAX_REASON * 4)
        v.check()
        self._require("rate", State.RESOLVED, State.CLOSED)
        if self.rating is not None:
            raise PreconditionFailed(
                f"ticket {self.id} is {self.state} and rated {self.rating} already: a resolution"
                " is rated once"
            )
        self._rated(self.customer_id, score, text)

    @event("Rated")
    def _rated(self, customer_id: str, score: int, comment: str) -> None:
        self.rating = score
        self.rating_comment = comment


def open_ticket(
    *,
    customer_id: str,
    channel: str,
    subject: str,
    description: str = "",
    category: str = "",
    priority: str = "",
) -> Ticket:
    """Validate and normalise a new ticket, then open it."""
    v = Violations()
    customer = v.uuid("customer_id", customer_id.strip())
    ch = v.enum("channel", channel, Channel)
    title = v.text("subject", subject, max_len=MAX_SUBJECT)
    text = v.paragraphs("description", description, required=False, max_len=MAX_TEXT)
    kind = v.tag("category", category) if category.strip() else DEFAULT_CATEGORY
    p = v.enum("priority", priority or Priority.NORMAL.value, Priority)
    v.check()
    assert ch is not None
    assert p is not None
    return Ticket(
        customer_id=customer,
        channel=ch.value,
        subject=title,
        description=text,
        category=kind,
        priority=p.value,
    )
