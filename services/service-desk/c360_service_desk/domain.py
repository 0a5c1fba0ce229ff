"""The Ticket aggregate and its rules: pure Python on `eventsourcing.domain`, no I/O.

A ticket is opened for a customer through a channel and moves open -> resolved -> closed; a
resolved ticket can be reopened, a closed one is final. Command methods check the state and
validate, then call the decorated event methods, so each change is written once and is the
same when the ticket is rebuilt from its events. Every event names the ticket's customer, so
its publication (and later per-customer encryption) knows whose it is without the ticket.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.domain import Aggregate, event

from c360_platform.errors import PreconditionFailed, require_state
from c360_platform.validation import Violations
from c360_service_desk import sla
from c360_service_desk.sla import TargetKind, TargetStatus

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
RESPONSES = {InteractionKind.OUTBOUND_MESSAGE, InteractionKind.OUTBOUND_CALL}
"""What meets the first-response target: a message or call to the customer."""
FROM_CUSTOMER = {InteractionKind.INBOUND_MESSAGE, InteractionKind.INBOUND_CALL}
"""What ends a wait for the customer: a message or call from them."""
CUSTOMER_REPLIED = "the customer replied"
REOPENED = "the ticket was reopened"


class WaitingFor(StrEnum):
    """Why a ticket's SLA clock is paused."""

    CUSTOMER = "customer"
    THIRD_PARTY = "third_party"


RUNNING = (TargetStatus.IN_PROGRESS, TargetStatus.NEARING_BREACH)
"""Target states whose clock runs."""
OPEN_TARGETS = (*RUNNING, TargetStatus.PAUSED)
"""Target states that are not settled yet."""


_NO_TARGETS: dict[str, dict[str, Any]] = {}


@dataclass(frozen=True)
class Grant:
    """A service contract's entitlement, as a ticket is served under it."""

    contract_id: str
    name: str
    consume_on: str
    unit: str
    sla_policy: str


def _iso(at: datetime) -> str:
    return at.isoformat()


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


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
        SlaApplied: ClassVar[type[Aggregate.Event]]
        SlaPaused: ClassVar[type[Aggregate.Event]]
        SlaResumed: ClassVar[type[Aggregate.Event]]
        SlaWarned: ClassVar[type[Aggregate.Event]]
        SlaBreached: ClassVar[type[Aggregate.Event]]
        SlaMet: ClassVar[type[Aggregate.Event]]
        SlaCancelled: ClassVar[type[Aggregate.Event]]
        SlaRestarted: ClassVar[type[Aggregate.Event]]
        ArticleLinked: ClassVar[type[Aggregate.Event]]
        Entitled: ClassVar[type[Aggregate.Event]]
        NotEntitled: ClassVar[type[Aggregate.Event]]
        EntitlementConsumed: ClassVar[type[Aggregate.Event]]
        Classified: ClassVar[type[Aggregate.Event]]
        MergedInto: ClassVar[type[Aggregate.Event]]
        DuplicateMerged: ClassVar[type[Aggregate.Event]]

    time_zone = ""
    sla_policy = ""
    sla_targets = _NO_TARGETS
    waiting_for = ""
    articles: tuple[dict[str, Any], ...] = ()
    entitlement: dict[str, Any] | None = None
    """The service contract the ticket is served under: contract_id, name, consume_on, unit,
    sla_policy, consumed (bool). None: no entitlement (see `entitlement_note`)."""
    entitlement_note = ""
    customer_classes: tuple[str, ...] = ()
    """(Class defaults: snapshots taken before SLAs, knowledge articles and merges existed lack
    these; event methods assign new values, never change these in place.)"""
    merged_into = ""
    """The ticket this one was merged into (a duplicate of it); "" if none."""
    merged_tickets: tuple[str, ...] = ()
    """The tickets merged into this one, in merge order."""

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
        self.time_zone = ""
        self.sla_policy = ""
        self.sla_targets = {}
        self.waiting_for = ""

    def _require(self, action: str, *allowed: State) -> None:
        """FAILED_PRECONDITION, naming the current state, unless the ticket is in `allowed`."""
        require_state("ticket", self.id, self.state, action, allowed)

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
        calendars: sla.Calendars = sla.builtin_calendar,
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
        if k in FROM_CUSTOMER and self.waiting_for == WaitingFor.CUSTOMER:
            self._resume(at, calendars, CUSTOMER_REPLIED)  # the details came: clocks run
        if k in RESPONSES:
            self.settle_sla(at)
            self._meet(TargetKind.FIRST_RESPONSE, at)
            self._next_update(at, calendars)
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

    def change_priority(
        self,
        priority: str,
        reason: str,
        at: datetime | None = None,
        calendars: sla.Calendars = sla.builtin_calendar,
    ) -> None:
        v = Violations()
        p = v.enum("priority", priority, Priority)
        why = v.text("reason", reason, required=False, max_len=MAX_REASON)
        v.check()
        assert p is not None
        self._require("change the priority of", State.OPEN)
        if p.value != self.priority:
            previous = self.priority
            self._priority_changed(self.customer_id, p.value, self.priority, why)
            if at is not None:
                reason_text = f"priority changed from {previous} to {p.value}"
                self.apply_sla(at, reason_text, calendars=calendars)

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

    # -- service-level agreement ------------------------------------------------------------

    def calendar(
        self, calendars: sla.Calendars = sla.builtin_calendar
    ) -> sla.BusinessCalendar | None:
        """The business calendar of the ticket's policy (its holidays from `calendars`), in
        the ticket's time zone."""
        policy = sla.policy_named(self.sla_policy)
        if policy is None:
            return None
        cal = calendars(policy.calendar.name)
        return cal.in_zone(self.time_zone or cal.time_zone)

    def apply_sla(
        self,
        at: datetime,
        reason: str,
        time_zone: str = "",
        calendars: sla.Calendars = sla.builtin_calendar,
    ) -> None:
        """Give the ticket the policy its priority and channel match, its targets counted
        from `at` (on opening) or carried over with the business time used (on a change)."""
        self.settle_sla(at)
        granted = self.entitlement["sla_policy"] if self.entitlement else ""
        policy = sla.policy_for(self.priority, self.channel, self.customer_classes, granted)
        if policy is None or policy.name == self.sla_policy:
            return
        zone_name = time_zone or self.time_zone or policy.calendar.time_zone
        cal = calendars(policy.calendar.name).in_zone(zone_name)
        old_cal = self.calendar(calendars)
        targets: dict[str, dict[str, Any]] = {}
        for target in policy.targets:
            old = self.sla_targets.get(target.kind)
            if target.kind == TargetKind.NEXT_UPDATE and old is None:
                continue  # it starts at the first response
            if old is not None and old["status"] not in OPEN_TARGETS:
                targets[target.kind] = dict(old)
                continue
            used = 0
            warned = False
            paused = bool(self.waiting_for)
            if old is not None:
                used = old["consumed"]
                if old["running_since"] and old_cal is not None:
                    used += old_cal.minutes_between(_time(old["running_since"]), at)
                warned = old["warned"]
            targets[target.kind] = _target_state(
                cal, target.minutes, target.warn_minutes, used, at, warned, paused
            )
        for kind, old in self.sla_targets.items():
            if kind in targets:
                continue
            # A target the new policy lacks: a settled one stays as it was (a breach is not
            # undone by a lower priority); an open one ends, keeping its earlier breaches.
            if old["status"] not in OPEN_TARGETS:
                targets[kind] = dict(old)
            elif old.get("breached_before"):
                targets[kind] = dict(
                    old,
                    status=TargetStatus.CANCELLED,
                    running_since="",
                    due_at="",
                    warn_at="",
                )
        self._sla_applied(self.customer_id, policy.name, reason, zone_name, targets)

    @event("SlaApplied")
    def _sla_applied(
        self,
        customer_id: str,
        policy: str,
        reason: str,
        time_zone: str,
        targets: dict[str, dict[str, Any]],
    ) -> None:
        self.sla_policy = policy
        self.time_zone = time_zone
        self.sla_targets = {k: dict(v) for k, v in targets.items()}

    def recalendar(self, reason: str, calendars: sla.Calendars = sla.builtin_calendar) -> None:
        """The running targets' due and warning times again, from the same business time
        used, on the calendar as it is now (holidays imported since they were computed)."""
        cal = self.calendar(calendars)
        if cal is None or self.state != State.OPEN:
            return
        targets: dict[str, dict[str, Any]] = {}
        for kind, t in self.sla_targets.items():
            if t["status"] in RUNNING and t["running_since"]:
                since = _time(t["running_since"])
                due = _iso(cal.add(since, max(t["minutes"] - t["consumed"], 0)))
                warn = (
                    ""
                    if t["warned"]
                    else _iso(cal.add(since, max(t["warn_minutes"] - t["consumed"], 0)))
                )
                t = dict(t, due_at=due, warn_at=warn)
            targets[kind] = t
        if targets != self.sla_targets:
            self._sla_applied(self.customer_id, self.sla_policy, reason, self.time_zone, targets)

    def _due_moments(self, at: datetime) -> list[tuple[datetime, int, str]]:
        """(moment, 0 warning / 1 breach, target) of the running targets due by `at`."""
        due: list[tuple[datetime, int, str]] = []
        for kind, t in self.sla_targets.items():
            if t["status"] not in RUNNING:
                continue
            if not t["warned"] and t["warn_at"] and _time(t["warn_at"]) <= at:
                due.append((_time(t["warn_at"]), 0, kind))
            if t["due_at"] and _time(t["due_at"]) <= at:
                due.append((_time(t["due_at"]), 1, kind))
        return sorted(due)

    def _next_update(self, at: datetime, calendars: sla.Calendars) -> None:
        """A reply to the customer: the next-update target (if the policy has one) starts
        again from `at`; a cycle that breached is counted in `breached_before`."""
        policy = sla.policy_named(self.sla_policy)
        cal = self.calendar(calendars)
        target = next(
            (t for t in (policy.targets if policy else ()) if t.kind == TargetKind.NEXT_UPDATE),
            None,
        )
        if target is None or cal is None or self.state != State.OPEN:
            return
        old = self.sla_targets.get(TargetKind.NEXT_UPDATE)
        before = 0
        if old is not None:
            before = old.get("breached_before", 0) + (old["status"] == TargetStatus.BREACHED)
        state = _target_state(
            cal, target.minutes, target.warn_minutes, 0, at, False, bool(self.waiting_for)
        )
        state["breached_before"] = before
        targets = {**self.sla_targets, TargetKind.NEXT_UPDATE: state}
        self._sla_restarted(self.customer_id, TargetKind.NEXT_UPDATE, targets)

    @event("SlaRestarted")
    def _sla_restarted(
        self, customer_id: str, target: str, targets: dict[str, dict[str, Any]]
    ) -> None:
        self.sla_targets = {k: dict(v) for k, v in targets.items()}

    def breaches(self) -> int:
        """Targets breached, counting each breached cycle of the next-update target."""
        return sum(
            (t["status"] == TargetStatus.BREACHED) + t.get("breached_before", 0)
            for t in self.sla_targets.values()
        )

    def settle_sla(self, at: datetime) -> None:
        """Write the warnings and breaches that fell due by `at`, in the order they fell due
        (the scheduler calls this; so does every command that stops or moves a clock, so a
        breach is decided by the times alone, not by when the scheduler ran)."""
        for moment, breach, kind in self._due_moments(at):
            if breach:
                self._sla_breached(self.customer_id, kind, _iso(moment))
            else:
                self._sla_warned(self.customer_id, kind, _iso(moment))

    def next_sla_moment(self) -> datetime | None:
        """When the scheduler next has something to write for this ticket."""
        moments = [
            _time(t[key])
            for t in self.sla_targets.values()
            if t["status"] in RUNNING
            for key in ("warn_at", "due_at")
            if t[key] and not (key == "warn_at" and t["warned"])
        ]
        return min(moments) if moments else None

    @event("SlaWarned")
    def _sla_warned(self, customer_id: str, target: str, warn_at: str) -> None:
        t = dict(self.sla_targets[target], warned=True, status=TargetStatus.NEARING_BREACH)
        self.sla_targets = {**self.sla_targets, target: t}

    @event("SlaBreached")
    def _sla_breached(self, customer_id: str, target: str, due_at: str) -> None:
        t = dict(self.sla_targets[target], status=TargetStatus.BREACHED, warned=True)
        self.sla_targets = {**self.sla_targets, target: t}

    def _meet(self, kind: str, at: datetime) -> None:
        t = self.sla_targets.get(kind)
        late = t is not None and t["status"] == TargetStatus.BREACHED and not t["met_at"]
        if t is not None and (t["status"] in OPEN_TARGETS or late):
            self._sla_met(self.customer_id, kind, _iso(at))

    @event("SlaMet")
    def _sla_met(self, customer_id: str, target: str, met_at: str) -> None:
        t = dict(self.sla_targets[target], met_at=met_at)
        if t["status"] != TargetStatus.BREACHED:  # met late: it stays breached
            t["status"] = TargetStatus.MET
        self.sla_targets = {**self.sla_targets, target: t}

    def _cancel_sla(self, reason: str) -> None:
        if any(t["status"] in OPEN_TARGETS for t in self.sla_targets.values()):
            self._sla_cancelled(self.customer_id, reason)

    @event("SlaCancelled")
    def _sla_cancelled(self, customer_id: str, reason: str) -> None:
        self.sla_targets = {
            k: dict(t, status=TargetStatus.CANCELLED) if t["status"] in OPEN_TARGETS else t
            for k, t in self.sla_targets.items()
        }

    def wait(
        self,
        waiting_for: str,
        reason: str,
        at: datetime,
        calendars: sla.Calendars = sla.builtin_calendar,
    ) -> None:
        """Pause the SLA clock: the ticket waits for the customer or a third party."""
        v = Violations()
        w = v.enum("waiting_for", waiting_for, WaitingFor)
        why = v.text("reason", reason, required=False, max_len=MAX_REASON)
        v.check()
        assert w is not None
        self._require("put it on hold", State.OPEN)
        if self.waiting_for:
            whom = self.waiting_for.replace("_", " ")
            raise PreconditionFailed(f"ticket {self.id} is open and waiting for the {whom} already")
        self.settle_sla(at)
        cal = self.calendar(calendars)
        targets = {}
        for kind, t in self.sla_targets.items():
            if t["status"] in RUNNING and cal is not None:
                used = t["consumed"] + cal.minutes_between(_time(t["running_since"]), at)
                t = dict(
                    t,
                    consumed=used,
                    running_since="",
                    due_at="",
                    warn_at="",
                    status=TargetStatus.PAUSED,
                )
            targets[kind] = t
        self._sla_paused(self.customer_id, w.value, why, targets)

    @event("SlaPaused")
    def _sla_paused(
        self,
        customer_id: str,
        waiting_for: str,
        reason: str,
        targets: dict[str, dict[str, Any]],
    ) -> None:
        self.waiting_for = waiting_for
        self.sla_targets = {k: dict(v) for k, v in targets.items()}

    def resume(self, at: datetime, calendars: sla.Calendars = sla.builtin_calendar) -> None:
        """Restart the SLA clock where it stopped."""
        if not self.waiting_for:
            raise PreconditionFailed(f"ticket {self.id} is {self.state} and not waiting")
        self._resume(at, calendars)

    def _resume(self, at: datetime, calendars: sla.Calendars, reason: str = "") -> None:
        cal = self.calendar(calendars)
        targets = {}
        for kind, t in self.sla_targets.items():
            if t["status"] == TargetStatus.PAUSED and cal is not None:
                t = _target_state(
                    cal, t["minutes"], t["warn_minutes"], t["consumed"], at, t["warned"], False
                )
            targets[kind] = t
        self._sla_resumed(self.customer_id, targets, reason)

    @event("SlaResumed")
    def _sla_resumed(
        self, customer_id: str, targets: dict[str, dict[str, Any]], reason: str = ""
    ) -> None:
        """`reason`: why the clocks run again when no agent resumed them (the customer
        replied, the ticket was reopened; "" when an agent resumed; events written before it
        existed have none)."""
        self.waiting_for = ""
        self.sla_targets = {k: dict(v) for k, v in targets.items()}

    def sla_view(
        self, now: datetime, calendars: sla.Calendars = sla.builtin_calendar
    ) -> list[dict[str, Any]]:
        """Each target as views show it: due time, remaining business minutes, status (a
        running target past its warning point or due time reads as nearing breach or
        breached even before the scheduler has written it)."""
        cal = self.calendar(calendars)
        view = []
        for kind, t in self.sla_targets.items():
            status = t["status"]
            remaining: int | None = None
            if status in RUNNING and cal is not None and t["due_at"]:
                due = _time(t["due_at"])
                remaining = cal.minutes_between(now, due) if now < due else 0
                if now >= due:
                    status = TargetStatus.BREACHED
                elif t["warn_at"] and _time(t["warn_at"]) <= now:
                    status = TargetStatus.NEARING_BREACH
            elif status == TargetStatus.PAUSED:
                remaining = max(t["minutes"] - t["consumed"], 0)
            view.append(
                {
                    "target": kind,
                    "minutes": t["minutes"],
                    "due_at": _time(t["due_at"]) if t["due_at"] else None,
                    "remaining_minutes": remaining,
                    "status": status,
                    "met_at": _time(t["met_at"]) if t.get("met_at") else None,
                }
            )
        return view

    # -- resolution and closing -------------------------------------------------------------

    # -- entitlement and classification -----------------------------------------------------

    def classify(self, classes: list[str]) -> None:
        """The customer's classes when the ticket opened (for SLA policy conditions)."""
        if classes:
            self._classified(self.customer_id, sorted(set(classes)))

    @event("Classified")
    def _classified(self, customer_id: str, classes: list[str]) -> None:
        self.customer_classes = tuple(classes)

    def entitle(self, grant: Grant) -> None:
        """Served under a contract (which, if it consumes on opening, records the use)."""
        self._entitled(
            self.customer_id,
            grant.contract_id,
            grant.name,
            grant.consume_on,
            grant.unit,
            grant.sla_policy,
        )

    @event("Entitled")
    def _entitled(
        self,
        customer_id: str,
        contract_id: str,
        contract_name: str,
        consume_on: str,
        unit: str,
        sla_policy: str,
    ) -> None:
        self.entitlement = {
            "contract_id": contract_id,
            "name": contract_name,
            "consume_on": consume_on,
            "unit": unit,
            "sla_policy": sla_policy,
            "consumed": consume_on == "open",
        }
        self.entitlement_note = ""

    def not_entitled(self, reason: str) -> None:
        """Served without an entitlement: no valid contract with allowance left."""
        self._not_entitled(self.customer_id, reason)

    @event("NotEntitled")
    def _not_entitled(self, customer_id: str, reason: str) -> None:
        self.entitlement = None
        self.entitlement_note = reason

    def consumes_on_resolution(self) -> bool:
        e = self.entitlement
        return e is not None and e["consume_on"] == "resolution" and not e["consumed"]

    def work_minutes(self) -> int:
        """Time spent on the ticket as its calls show (whole minutes, rounded up)."""
        seconds = sum(int(i["duration_seconds"]) for i in self.interactions)
        return -(-seconds // 60)

    def record_consumption(self, amount: int) -> None:
        assert self.entitlement is not None
        self._entitlement_consumed(
            self.customer_id,
            self.entitlement["contract_id"],
            self.entitlement["unit"],
            amount,
        )

    @event("EntitlementConsumed")
    def _entitlement_consumed(
        self, customer_id: str, contract_id: str, unit: str, amount: int
    ) -> None:
        assert self.entitlement is not None
        self.entitlement = {**self.entitlement, "consumed": True}

    # -- knowledge articles -----------------------------------------------------------------

    def link_article(self, article_id: str, title: str, kind: str, version: int) -> bool:
        """Link a published knowledge article (the caller has checked it is one); False if
        the ticket has that link already (nothing recorded)."""
        self._require("link an article to", State.OPEN, State.RESOLVED)
        if any(a["article_id"] == article_id and a["kind"] == kind for a in self.articles):
            return False
        self._article_linked(self.customer_id, article_id, title, kind, version)
        return True

    @event("ArticleLinked")
    def _article_linked(
        self, customer_id: str, article_id: str, title: str, kind: str, version: int
    ) -> None:
        self.articles = (
            *self.articles,
            {"article_id": article_id, "title": title, "kind": kind, "version": version},
        )

    @property
    def resolved_with_article(self) -> bool:
        return any(a["kind"] == "used_to_resolve" for a in self.articles)

    def resolve(self, resolution: str, agent_id: str, at: datetime) -> None:
        v = Violations()
        text = v.paragraphs("resolution", resolution, max_len=MAX_TEXT)
        agent = v.employee_id("agent_id", agent_id)
        v.check()
        self._require("resolve", State.OPEN)
        self.settle_sla(at)
        self._meet(TargetKind.FIRST_RESPONSE, at)
        self._meet(TargetKind.NEXT_UPDATE, at)
        self._meet(TargetKind.RESOLUTION, at)
        self._resolved(self.customer_id, text, agent or self.agent_id, at)

    @event("Resolved")
    def _resolved(
        self, customer_id: str, resolution: str, agent_id: str, resolved_at: datetime
    ) -> None:
        self.state = State.RESOLVED.value
        self.waiting_for = ""
        self.resolution = resolution
        self.resolved_at = resolved_at
        self.rating = None
        self.rating_comment = ""

    def reopen(
        self,
        reason: str,
        at: datetime | None = None,
        calendars: sla.Calendars = sla.builtin_calendar,
    ) -> None:
        """Open a resolved ticket again; its resolution target (met at the resolution) runs
        again from `at` with the business time it had used: the time while the ticket was
        resolved counts as a pause, as Zammad and GLPI count it."""
        v = Violations()
        why = v.text("reason", reason, required=False, max_len=MAX_REASON)
        v.check()
        if self.state == State.CLOSED:
            raise PreconditionFailed(
                f"ticket {self.id} is closed: cannot reopen it (closed is final; open a new ticket)"
            )
        self._require("reopen", State.RESOLVED)
        self._reopened(self.customer_id, why)
        if at is not None:
            self._restart_resolution(at, calendars)

    def _restart_resolution(self, at: datetime, calendars: sla.Calendars) -> None:
        t = self.sla_targets.get(TargetKind.RESOLUTION)
        cal = self.calendar(calendars)
        if t is None or cal is None or t["status"] != TargetStatus.MET or not t["met_at"]:
            return  # no target, or one breached before the resolution: it stays breached
        used = t["consumed"]
        if t["running_since"]:
            used += cal.minutes_between(_time(t["running_since"]), _time(t["met_at"]))
        again = _target_state(cal, t["minutes"], t["warn_minutes"], used, at, t["warned"], False)
        targets = {**self.sla_targets, TargetKind.RESOLUTION: again}
        self._sla_resumed(self.customer_id, targets, REOPENED)

    @event("Reopened")
    def _reopened(self, customer_id: str, reason: str) -> None:
        self.state = State.OPEN.value
        self.reopened_count += 1

    def close(self, reason: str, at: datetime) -> None:
        v = Violations()
        why = v.text("reason", reason, required=False, max_len=MAX_REASON)
        v.check()
        self._require("close", State.OPEN, State.RESOLVED)
        self.settle_sla(at)
        self._cancel_sla("closed without a resolution")
        self._closed(self.customer_id, why, self.state, at)

    @event("Closed")
    def _closed(
        self, customer_id: str, reason: str, previous_state: str, closed_at: datetime
    ) -> None:
        self.state = State.CLOSED.value
        self.waiting_for = ""
        self.closed_at = closed_at

    # -- merging duplicates -----------------------------------------------------------------

    def merge_into(self, survivor: Ticket, reason: str, at: datetime) -> None:
        """This ticket is a duplicate of `survivor` (the same request by another channel, or
        again): it closes as merged into it, its clocks cancelled (the survivor's run on),
        and the survivor lists it. Both must be open and the same customer's."""
        v = Violations()
        why = v.text("reason", reason, required=False, max_len=MAX_REASON)
        if survivor.id == self.id:
            v.add("duplicate_ticket_id", "is the survivor itself: name another ticket")
        v.check()
        self._require("merge it into another", State.OPEN)
        survivor._require("merge another into it", State.OPEN)
        if survivor.customer_id != self.customer_id:
            raise PreconditionFailed(
                f"ticket {self.id} is customer {self.customer_id}'s and ticket {survivor.id}"
                f" customer {survivor.customer_id}'s: only one customer's tickets merge"
            )
        self.settle_sla(at)
        self._cancel_sla(f"merged into ticket {survivor.id}")
        self._merged_into(self.customer_id, str(survivor.id), why, at)
        survivor._duplicate_merged(survivor.customer_id, str(self.id), self.channel, why)

    @event("MergedInto")
    def _merged_into(
        self, customer_id: str, survivor_ticket_id: str, reason: str, merged_at: datetime
    ) -> None:
        self.state = State.CLOSED.value
        self.waiting_for = ""
        self.closed_at = merged_at
        self.merged_into = survivor_ticket_id

    @event("DuplicateMerged")
    def _duplicate_merged(
        self, customer_id: str, duplicate_ticket_id: str, duplicate_channel: str, reason: str
    ) -> None:
        self.merged_tickets = (*self.merged_tickets, duplicate_ticket_id)

    # -- satisfaction -----------------------------------------------------------------------

    def rate(self, score: int, comment: str) -> None:
        """The customer's satisfaction with the latest resolution: once, 1 to 5."""
        v = Violations()
        if not 1 <= score <= 5:
            v.add("score", "must be 1 to 5")
        text = v.paragraphs("comment", comment, required=False, max_len=MAX_REASON * 4)
        v.check()
        self._require("rate", State.RESOLVED, State.CLOSED)
        if self.resolved_at is None:
            raise PreconditionFailed(
                f"ticket {self.id} is {self.state}: cannot rate it (it was closed without a"
                " resolution: there is nothing to rate)"
            )
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


def _target_state(
    cal: sla.BusinessCalendar,
    minutes: int,
    warn_minutes: int,
    used: int,
    at: datetime,
    warned: bool,
    paused: bool,
) -> dict[str, Any]:
    """A target with `used` business minutes spent, its clock (re)started at `at` unless
    paused: due when the rest is spent, warned when the warning point is reached."""
    state: dict[str, Any] = {
        "minutes": minutes,
        "warn_minutes": warn_minutes,
        "consumed": used,
        "warned": warned,
        "met_at": "",
    }
    if paused:
        return {
            **state,
            "running_since": "",
            "due_at": "",
            "warn_at": "",
            "status": TargetStatus.PAUSED,
        }
    return {
        **state,
        "running_since": _iso(at),
        "due_at": _iso(cal.add(at, max(minutes - used, 0))),
        "warn_at": "" if warned else _iso(cal.add(at, max(warn_minutes - used, 0))),
        "status": TargetStatus.NEARING_BREACH if warned else TargetStatus.IN_PROGRESS,
    }


def open_ticket(
    *,
    customer_id: str,
    channel: str,
    subject: str,
    description: str = "",
    category: str = "",
    priority: str = "",
    time_zone: str = "",
    at: datetime | None = None,
    classes: list[str] | None = None,
    grant: Grant | None = None,
    no_grant: str = "",
    calendars: sla.Calendars = sla.builtin_calendar,
) -> Ticket:
    """Validate and normalise a new ticket, then open it: its customer's classes, its
    entitlement (`grant`, or the reason there is none), then its SLA policy."""
    v = Violations()
    customer = v.uuid("customer_id", customer_id.strip())
    ch = v.enum("channel", channel, Channel)
    title = v.text("subject", subject, max_len=MAX_SUBJECT)
    text = v.paragraphs("description", description, required=False, max_len=MAX_TEXT)
    kind = v.tag("category", category) if category.strip() else DEFAULT_CATEGORY
    p = v.enum("priority", priority or Priority.NORMAL.value, Priority)
    zone_name = time_zone.strip()
    if zone_name and sla.zone(zone_name) is None:
        v.add("time_zone", "not an IANA time zone such as Europe/Berlin")
    v.check()
    assert ch is not None
    assert p is not None
    ticket = Ticket(
        customer_id=customer,
        channel=ch.value,
        subject=title,
        description=text,
        category=kind,
        priority=p.value,
    )
    ticket.classify(classes or [])
    if grant is not None:
        ticket.entitle(grant)
    elif no_grant:
        ticket.not_entitled(no_grant)
    if at is not None:
        ticket.apply_sla(at, "opened", zone_name, calendars)
    return ticket
