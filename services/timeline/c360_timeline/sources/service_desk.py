"""The service desk's tickets (source `service-desk`): their summaries, the `service_desk` part
of the profile, which tickets are support contacts, and the Profile's ServiceDeskSummary.

The part keeps open and resolved tickets (closed ones leave), the openings of the last 30
days, the customer's last contact and the ratings. Provenance paths:
"service_desk.tickets[<ticket_id>]", "service_desk.last_contact_at", "service_desk.ratings".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from c360.events.v1 import contact_events_pb2 as cev
from c360.events.v1 import field_service_events_pb2 as fev
from c360.events.v1 import service_contract_events_pb2 as sev
from c360.events.v1 import ticket_events_pb2 as ev
from c360.timeline.v1 import timeline_service_pb2 as api
from c360_platform.envelope import timestamp
from c360_platform.vocabulary import Words
from c360_timeline.projection import (
    Doc,
    Entry,
    Fold,
    SourcePlugin,
    SupportContact,
    copy_provenance,
    set_by,
    snippet,
    unset,
    with_reason,
)

SECTION = "service_desk"
RECENT_TICKET_DAYS = 30


CHANNELS = Words(ev.TicketChannel)
PRIORITIES = Words(ev.TicketPriority)
INTERACTION_KINDS = Words(ev.InteractionKind)
TARGET_KINDS = Words(ev.SlaTargetKind)
WAITING_FOR = Words(ev.TicketWaitingFor)
TARGET_STATUSES = Words(ev.SlaTargetStatus)
DIRECTIONS = Words(cev.ContactDirection)
OUTCOMES = Words(cev.ContactOutcome)
LINK_KINDS = Words(ev.ArticleLinkKind)
WORK_ORDER_STATES = Words(fev.WorkOrderState)
ALLOWANCE_UNITS = Words(sev.AllowanceUnit)
RECENT_CONTACTS = 20
"""Contact-centre records the profile lists (the count covers all of them)."""


def _channel(value: str) -> str:
    """TICKET_CHANNEL_WEB_FORM -> web_form; unspecified -> ""."""
    return CHANNELS.of_name(value)


def _priority(value: str) -> str:
    return PRIORITIES.of_name(value)


def _interaction_kind(d: Doc) -> str:
    return INTERACTION_KINDS.of_name(d.get("kind", ""))


def _spoken(word: str) -> str:
    """web_form -> web form, email -> e-mail (for summaries)."""
    return {"email": "e-mail", "ivr": "IVR", "sms": "SMS"}.get(word, word.replace("_", " "))


def _duration(seconds: int) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _clock(text: str) -> str:
    """An RFC 3339 time of the details -> "2026-03-09 12:00 UTC"."""
    if not text:
        return "?"
    return _time(text.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")


def _target(d: Doc) -> str:
    kind: str = TARGET_KINDS.of_name(d.get("target", ""))
    names = {
        "first_response": "first-response",
        "resolution": "resolution",
        "next_update": "next-update",
    }
    return names.get(kind, "SLA")


RUNNING = ("", "in_progress", "nearing_breach")
"""Target states whose due time is still ahead of the ticket ("": not stated)."""


def _due_list(d: Doc) -> str:
    """The due times of the targets still running (a target met or breached before keeps
    its due time in the event, but is not due any more)."""
    return "; ".join(
        f"{TARGET_KINDS.of_name(t.get('kind', '')).replace('_', ' ')} by {_clock(t['due_at'])}"
        for t in d.get("targets", [])
        if t.get("due_at") and TARGET_STATUSES.of_name(t.get("status", "")) in RUNNING
    )


# -- summaries ----------------------------------------------------------------------------------


def _opened(d: Doc) -> str:
    text = f"Ticket opened by {_spoken(_channel(d.get('channel', '')))}: “{d.get('subject', '')}”"
    details = [x for x in (d.get("category", ""), _priority(d.get("priority", ""))) if x]
    return f"{text} ({', '.join(details)})" if details else text


def _assigned(d: Doc) -> str:
    agent, queue = d.get("agent_id", ""), d.get("queue", "")
    if agent and queue:
        return f"Ticket assigned to {agent} in queue {queue}"
    return f"Ticket assigned to {agent}" if agent else f"Ticket assigned to queue {queue}"


def _interaction(d: Doc) -> str:
    kind = _interaction_kind(d)
    channel = _spoken(_channel(d.get("channel", "")))
    body = snippet(d.get("body", ""))
    quoted = f": “{body}”" if body else ""
    if kind == "inbound_call":
        return f"Call from the customer ({_duration(d.get('duration_seconds', 0))})"
    if kind == "outbound_call":
        return f"Call to the customer ({_duration(d.get('duration_seconds', 0))})"
    if kind == "inbound_message":
        return f"Message from the customer by {channel}{quoted}"
    if kind == "outbound_message":
        return f"Message to the customer by {channel}{quoted}"
    return f"Internal note{quoted}"


def _escalated(d: Doc) -> str:
    text = f"Ticket escalated to level {d.get('level', 0)}"
    if d.get("queue"):
        text += f" (queue {d['queue']})"
    return with_reason(text, d)


def _next_update_due(d: Doc) -> str:
    kind = TARGET_KINDS.of_name(d.get("target", ""))
    due = next(
        (t.get("due_at", "") for t in d.get("targets", []) if t.get("kind") == d.get("target")),
        "",
    )
    what = "next update" if kind == "next_update" else f"SLA {_target(d)} target"
    return f"The customer's {what} is due {_clock(due)}" if due else f"{what} paused"


def _sla_applied(d: Doc) -> str:
    due = _due_list(d)
    text = f"SLA policy {d.get('policy', '')} ({d.get('reason', '')})"
    return f"{text}: {due}" if due else text


def _contact(d: Doc) -> str:
    channel = _spoken(_channel(d.get("channel", "")))
    direction = DIRECTIONS.of_name(d.get("direction", ""))
    outcome = OUTCOMES.of_name(d.get("outcome", "")).replace("_", "-")
    path = d.get("ivr_path", [])
    text = f"{channel} contact {'from' if direction == 'inbound' else 'to'} the customer"
    text = text[0].upper() + text[1:]
    if path:
        text += f" (menu {' > '.join(path)})"
    if d.get("duration_seconds"):
        text += f", {_duration(d['duration_seconds'])}"
    if outcome:
        text += f": {outcome}"
    return text


def _amount(d: Doc) -> str:
    """1 case, 3 cases, 90 minutes (an amount of a contract's allowance)."""
    amount = int(d.get("amount", 0))
    unit = ALLOWANCE_UNITS.of_name(d.get("unit", "")) or d.get("unit", "")
    if unit == "hours":
        return f"{amount} min"
    return f"{amount} case" + ("" if amount == 1 else "s")


def _terms(d: Doc) -> str:
    unit = ALLOWANCE_UNITS.of_name(d.get("allowance_unit", ""))
    allowance = (
        "unlimited support" if unit in ("", "unlimited") else f"{d.get('allowance', 0)} {unit}"
    )
    text = f"Contract terms: {allowance} a period"
    if d.get("sla_policy"):
        text += f", SLA policy {d['sla_policy']}"
    return text


def _article_linked(d: Doc) -> str:
    kind = LINK_KINDS.of_name(d.get("kind", ""))
    how = "used to resolve the ticket" if kind == "used_to_resolve" else "suggested"
    return f"Knowledge article “{d.get('title', '')}” {how}"


def _window(d: Doc) -> str:
    start, end = d.get("window_start", ""), d.get("window_end", "")
    if not start:
        return ""
    text = _clock(start)
    if end:
        end_text = _clock(end)
        same_day = end_text[:10] == text[:10]
        text += f" to {end_text[11:] if same_day else end_text}"
    return text


def _visit_scheduled(d: Doc) -> str:
    """A booking, or a reschedule (the visit had a technician before: maybe another)."""
    who, before = d.get("technician_id", ""), d.get("previous_technician_id", "")
    if not before:
        return f"On-site visit scheduled with {who}, {_window(d)}"
    instead = f" (instead of {before})" if before != who else ""
    return f"On-site visit rescheduled with {who}{instead}, {_window(d)}"


def _line_cost(d: Doc) -> str:
    """A part's or labour's cost with its currency ("66.67 EUR"; events recorded before
    lines carried their currency: the amount alone)."""
    return f"{d.get('cost', '')} {d.get('currency', '')}".strip()


def _spent(d: Doc) -> bool:
    """Whether a cancelled visit had parts or labour recorded (a cost above zero)."""
    try:
        return Decimal(d.get("cost") or "0") > 0
    except ArithmeticError:
        return False


def _visit_completed(d: Doc) -> str:
    outcome = "fixed" if d.get("fixed") else "not fixed"
    text = (
        f"On-site visit completed ({outcome}), cost {d.get('cost', '0.00')} {d.get('currency', '')}"
    )
    return text + (f": {snippet(d['note'])}" if d.get("note") else "")


SUMMARIES: dict[str, Callable[[Doc], str]] = {
    # Articles are about no customer (their entries are on no timeline); said for listeners.
    "c360.events.v1.ArticleDrafted": lambda d: f"Knowledge article “{d.get('title', '')}” drafted",
    "c360.events.v1.ArticleRevised": lambda d: (
        f"Knowledge article “{d.get('title', '')}” revised (version {d.get('version', 0)})"
    ),
    "c360.events.v1.ArticleSubmitted": lambda d: (
        f"Knowledge article version {d.get('version', 0)} sent for review"
    ),
    "c360.events.v1.ArticlePublished": lambda d: (
        f"Knowledge article “{d.get('title', '')}” published (version {d.get('version', 0)})"
    ),
    "c360.events.v1.ArticleArchived": lambda d: with_reason("Knowledge article archived", d),
    "c360.events.v1.ArticleLinked": lambda d: (
        f"Knowledge article linked to a ticket ({LINK_KINDS.of_name(d.get('kind', ''))})"
    ),
    "c360.events.v1.ArticleVoted": lambda d: (
        "Knowledge article found helpful" if d.get("helpful") else "Knowledge article not helpful"
    ),
    "c360.events.v1.HolidayCalendarStarted": lambda d: (
        f"Holidays kept for the {d.get('name', '')} business calendar"
    ),
    "c360.events.v1.HolidaysImported": lambda d: (
        f"{len(d.get('holidays', []))} public holidays imported"
        + (f" from {d['source']}" if d.get("source") else "")
    ),
    "c360.events.v1.TicketArticleLinked": _article_linked,
    "c360.events.v1.TicketEntitled": lambda d: (
        f"Served under service contract “{d.get('contract_name', '')}”"
        + (f" (SLA policy {d['sla_policy']})" if d.get("sla_policy") else "")
    ),
    "c360.events.v1.TicketNotEntitled": lambda d: with_reason("Served without an entitlement", d),
    "c360.events.v1.TicketEntitlementConsumed": lambda d: f"Contract allowance used: {_amount(d)}",
    "c360.events.v1.TicketClassified": lambda d: (
        f"Customer classes when opened: {', '.join(d.get('classes', []))}"
    ),
    "c360.events.v1.ServiceContractTermsSet": _terms,
    "c360.events.v1.ServiceContractConsumed": lambda d: (
        f"Service contract allowance used: {_amount(d)}"
        + (f", {_amount({**d, 'amount': d['remaining']})} left" if "remaining" in d else "")
    ),
    "c360.events.v1.ServiceContractRenewed": lambda d: (
        f"Service contract “{d.get('name', '')}” renewed: {d.get('starts_on', '')}"
        f" to {d.get('ends_on', '')}"
    ),
    "c360.events.v1.ServiceContractRenewalDue": lambda d: (
        f"Renewal of service contract “{d.get('name', '')}” handed to sales"
        + (
            f" (worth {d['value_amount']} {d.get('value_currency', '')})"
            if d.get("value_amount")
            else ""
        )
    ),
    "c360.events.v1.WorkOrderCreated": lambda d: (
        f"On-site visit requested: {snippet(d.get('summary', ''))}"
    ),
    "c360.events.v1.WorkOrderScheduled": _visit_scheduled,
    "c360.events.v1.WorkOrderTravelStarted": lambda d: (
        f"Technician {d.get('technician_id', '')} on the way"
    ),
    "c360.events.v1.WorkOrderWorkStarted": lambda d: (
        f"Technician {d.get('technician_id', '')} started work on site"
    ),
    "c360.events.v1.WorkOrderPartUsed": lambda d: (
        f"Part {d.get('sku', '')}, quantity {d.get('quantity', '')}, used ({_line_cost(d)})"
    ),
    "c360.events.v1.WorkOrderLabourRecorded": lambda d: (
        f"Labour {d.get('minutes', 0)} min by {d.get('technician_id', '')} recorded"
        f" ({_line_cost(d)})"
    ),
    "c360.events.v1.WorkOrderLineVoided": lambda d: with_reason(
        f"Line {d.get('line_id', '')[:8]} voided ({_line_cost(d)} off the visit's cost)", d
    ),
    "c360.events.v1.WorkOrderCompleted": _visit_completed,
    "c360.events.v1.WorkOrderCancelled": lambda d: with_reason(
        "On-site visit cancelled" + (f", {_line_cost(d)} spent" if _spent(d) else ""), d
    ),
    "c360.events.v1.WorkOrderRated": lambda d: (
        f"Customer rated the on-site visit {d.get('score', 0)}/5"
    ),
    "c360.events.v1.TicketSlaApplied": _sla_applied,
    "c360.events.v1.TicketSlaPaused": lambda d: with_reason(
        f"SLA clock paused: waiting for the"
        f" {WAITING_FOR.of_name(d.get('waiting_for', '')).replace('_', ' ')}",
        d,
    ),
    "c360.events.v1.TicketSlaResumed": lambda d: (
        "SLA clock resumed"
        + (f" ({snippet(d['reason'])})" if d.get("reason") else "")
        + (f": {_due_list(d)}" if _due_list(d) else "")
    ),
    "c360.events.v1.TicketSlaWarning": lambda d: (
        f"SLA {_target(d)} target nearing breach (warning point {_clock(d.get('warn_at', ''))})"
    ),
    "c360.events.v1.TicketSlaBreached": lambda d: (
        f"SLA {_target(d)} target breached (was due {_clock(d.get('due_at', ''))})"
    ),
    "c360.events.v1.TicketSlaMet": lambda d: f"SLA {_target(d)} target met",
    "c360.events.v1.TicketSlaRestarted": _next_update_due,
    "c360.events.v1.TicketSlaCancelled": lambda d: with_reason("SLA targets cancelled", d),
    "c360.events.v1.ContactRecorded": _contact,
    "c360.events.v1.ServiceContractCreated": lambda d: (
        f"Service contract “{d.get('name', '')}” from {d.get('starts_on', '')}"
        f" to {d.get('ends_on', '')}"
        + (f" ({', '.join(d['services'])})" if d.get("services") else "")
    ),
    "c360.events.v1.ServiceContractExpiryNear": lambda d: (
        f"Service contract “{d.get('name', '')}” ends in {d.get('days_left', 0)} days"
        f" ({d.get('ends_on', '')}): time to renew"
    ),
    "c360.events.v1.ServiceContractExpired": lambda d: (
        f"Service contract “{d.get('name', '')}” expired (ended {d.get('ends_on', '')})"
    ),
    "c360.events.v1.TicketOpened": _opened,
    "c360.events.v1.TicketAssigned": _assigned,
    "c360.events.v1.TicketInteractionRecorded": _interaction,
    "c360.events.v1.TicketPriorityChanged": lambda d: (
        f"Priority changed from {_priority(d.get('previous_priority', ''))}"
        f" to {_priority(d.get('priority', ''))}"
    ),
    "c360.events.v1.TicketEscalated": _escalated,
    "c360.events.v1.TicketResolved": lambda d: (
        f"Ticket resolved: {snippet(d.get('resolution', ''))}"
    ),
    "c360.events.v1.TicketReopened": lambda d: with_reason("Ticket reopened", d),
    "c360.events.v1.TicketClosed": lambda d: with_reason("Ticket closed", d),
    "c360.events.v1.TicketMergedInto": lambda d: with_reason(
        f"Ticket merged into ticket {d.get('survivor_ticket_id', '')[:8]} as a duplicate", d
    ),
    "c360.events.v1.TicketDuplicateMerged": lambda d: with_reason(
        f"Duplicate ticket {d.get('duplicate_ticket_id', '')[:8]}"
        f" (by {_spoken(_channel(d.get('duplicate_channel', '')))}) merged in",
        d,
    ),
    "c360.events.v1.TicketRated": lambda d: f"Customer rated the ticket {d.get('score', 0)}/5",
}


# -- the service desk in the profile ------------------------------------------------------------


def empty_service_desk() -> Doc:
    return {
        "tickets": {},
        "tickets_total": 0,
        "recent_openings": [],
        "last_contact_at": "",
        "last_contact_channel": "",
        "rating_sum": 0,
        "ratings": 0,
        "sla_breaches": 0,
        "contacts_total": 0,
        "recent_contact_times": [],
        "recent_contacts": [],
        "service_contracts": {},
        "work_orders": {},
        "visits_completed": 0,
        "visit_rating_sum": 0,
        "visit_ratings": 0,
        "resolved_with_article": 0,
    }


def _desk(p: Doc) -> Doc:
    """The profile's part, with the keys later versions added (profiles kept from before)."""
    desk: Doc = p[SECTION]
    for key, value in empty_service_desk().items():
        desk.setdefault(key, value)
    return desk


TicketFold = Callable[[Doc, Entry], str]
"""Folds a ticket entry into the profile; returns the channel of the customer's contact it is
("" if it is none)."""


def _fold_opened(p: Doc, entry: Entry) -> str:
    desk, d, at = p[SECTION], entry.details, entry.occurred_at
    desk["tickets"][entry.aggregate_id] = {
        "subject": d.get("subject", ""),
        "channel": _channel(d.get("channel", "")),
        "priority": _priority(d.get("priority", "")),
        "category": d.get("category", ""),
        "state": "open",
        "agent_id": "",
        "queue": "",
        "escalation_level": 0,
        "opened_at": at.isoformat(),
    }
    set_by(p, f"service_desk.tickets[{entry.aggregate_id}]", entry)
    desk["tickets_total"] += 1
    since = at - timedelta(days=RECENT_TICKET_DAYS)
    openings = [o for o in desk["recent_openings"] if _time(o) > since]
    desk["recent_openings"] = sorted([*openings, at.isoformat()], key=_time)
    return _channel(d.get("channel", ""))


def _fold_interaction(p: Doc, entry: Entry) -> str:
    if _interaction_kind(entry.details) == "internal_note":
        return ""
    return _channel(entry.details.get("channel", ""))


def _fold_rated(p: Doc, entry: Entry) -> str:
    desk = p[SECTION]
    desk["rating_sum"] += int(entry.details.get("score", 0))
    desk["ratings"] += 1
    set_by(p, "service_desk.ratings", entry)
    return ""


def _on_ticket(change: Callable[[Doc, Doc], None]) -> TicketFold:
    """The fold of a change to a ticket the profile holds (none to one it does not)."""

    def fold(p: Doc, entry: Entry) -> str:
        ticket = p[SECTION]["tickets"].get(entry.aggregate_id)
        if ticket is not None:
            set_by(p, f"service_desk.tickets[{entry.aggregate_id}]", entry)
            change(ticket, entry.details)
        return ""

    return fold


def _fold_breached(p: Doc, entry: Entry) -> str:
    desk = _desk(p)
    desk["sla_breaches"] += 1
    ticket = desk["tickets"].get(entry.aggregate_id)
    if ticket is not None:
        ticket["sla_breaches"] = ticket.get("sla_breaches", 0) + 1
        set_by(p, f"service_desk.tickets[{entry.aggregate_id}]", entry)
    return ""


def _fold_contact(p: Doc, entry: Entry) -> str:
    """A contact-centre record: counted, listed (the latest few), and the customer's last
    contact with the desk."""
    desk, d, at = _desk(p), entry.details, entry.occurred_at
    started = d.get("started_at", "")
    when = _time(started.replace("Z", "+00:00")) if started else at
    desk["contacts_total"] += 1
    since = at - timedelta(days=RECENT_TICKET_DAYS)
    times = [t for t in desk["recent_contact_times"] if _time(t) > since]
    desk["recent_contact_times"] = sorted([*times, when.isoformat()], key=_time)
    contact = {
        "contact_id": entry.aggregate_id,
        "channel": _channel(d.get("channel", "")),
        "direction": DIRECTIONS.of_name(d.get("direction", "")),
        "outcome": OUTCOMES.of_name(d.get("outcome", "")),
        "at": when.isoformat(),
        "duration_seconds": int(d.get("duration_seconds", 0)),
        "agent_id": d.get("agent_id", ""),
    }
    recent = sorted(
        [*desk["recent_contacts"], contact], key=lambda c: (c["at"], c["contact_id"]), reverse=True
    )
    desk["recent_contacts"] = recent[:RECENT_CONTACTS]
    set_by(p, "service_desk.recent_contacts", entry)
    return str(contact["channel"])


def _fold_contract(state: str) -> Callable[[Doc, Entry], str]:
    """A service contract created ("active"), nearing its end, expired, or renewed (its
    next period, the allowance again)."""

    def fold(p: Doc, entry: Entry) -> str:
        desk, d = _desk(p), entry.details
        contracts = dict(desk["service_contracts"])
        known = contracts.get(entry.aggregate_id, {})
        contract = {
            **known,
            "name": d.get("name", known.get("name", "")),
            "services": d.get("services", known.get("services", [])),
            "starts_on": d.get("starts_on", known.get("starts_on", "")),
            "ends_on": d.get("ends_on", known.get("ends_on", "")),
            "state": state,
        }
        if entry.type == "service_contract.renewed":
            contract["period"] = int(d.get("period", 0))
            contract["remaining"] = _full_allowance(contract)
        contracts[entry.aggregate_id] = contract
        desk["service_contracts"] = contracts
        set_by(p, f"service_desk.service_contracts[{entry.aggregate_id}]", entry)
        return ""

    return fold


def _full_allowance(contract: Doc) -> int | None:
    """A period's allowance in the unit `remaining` counts (minutes of hours); None when
    unlimited."""
    unit = contract.get("allowance_unit", "unlimited")
    if unit == "unlimited":
        return None
    return int(contract.get("allowance", 0)) * (60 if unit == "hours" else 1)


def _fold_contract_terms(p: Doc, entry: Entry) -> str:
    """The contract's entitlement: its allowance, all of it left in the first period."""
    desk, d = _desk(p), entry.details
    contracts = dict(desk["service_contracts"])
    contract = dict(contracts.get(entry.aggregate_id, {}))
    contract["allowance_unit"] = ALLOWANCE_UNITS.of_name(d.get("allowance_unit", "")) or (
        "unlimited"
    )
    contract["allowance"] = int(d.get("allowance", 0))
    contract["remaining"] = _full_allowance(contract)
    contracts[entry.aggregate_id] = contract
    desk["service_contracts"] = contracts
    return ""


def _fold_contract_consumed(p: Doc, entry: Entry) -> str:
    """A ticket used the allowance: what is left in the period (the latest period's)."""
    desk, d = _desk(p), entry.details
    contracts = dict(desk["service_contracts"])
    contract = dict(contracts.get(entry.aggregate_id, {}))
    period = int(d.get("period", 0))
    if "remaining" in d and period >= int(contract.get("period", 1)):
        contract["remaining"] = int(d["remaining"])
        contract["period"] = period
    contracts[entry.aggregate_id] = contract
    desk["service_contracts"] = contracts
    return ""


def _fold_work_order(state: str) -> Callable[[Doc, Entry], str]:
    """A work order opened or moved on: open ones are listed, final ones leave the list
    (completed ones are counted)."""

    def fold(p: Doc, entry: Entry) -> str:
        desk, d, wid = _desk(p), entry.details, entry.aggregate_id
        orders = dict(desk["work_orders"])
        path = f"service_desk.work_orders[{wid}]"
        if state in ("completed", "cancelled"):
            if orders.pop(wid, None) is not None:
                unset(p, path)
            if state == "completed":
                desk["visits_completed"] += 1
        else:
            known = orders.get(wid, {})
            orders[wid] = {
                "summary": d.get("summary", known.get("summary", "")),
                "state": state,
                "technician_id": d.get("technician_id", known.get("technician_id", "")),
                "window_start": d.get("window_start", known.get("window_start", "")),
                "window_end": d.get("window_end", known.get("window_end", "")),
                "created_at": known.get("created_at", entry.occurred_at.isoformat()),
            }
            set_by(p, path, entry)
        desk["work_orders"] = orders
        return ""

    return fold


def _fold_visit_rated(p: Doc, entry: Entry) -> str:
    desk = _desk(p)
    desk["visit_rating_sum"] += int(entry.details.get("score", 0))
    desk["visit_ratings"] += 1
    set_by(p, "service_desk.visit_ratings", entry)
    return ""


def _fold_article_linked(p: Doc, entry: Entry) -> str:
    if LINK_KINDS.of_name(entry.details.get("kind", "")) == "used_to_resolve":
        _desk(p)["resolved_with_article"] += 1
    return ""


def _assign(ticket: Doc, d: Doc) -> None:
    ticket["agent_id"] = d.get("agent_id", "")
    ticket["queue"] = d.get("queue", "")


def _reprioritise(ticket: Doc, d: Doc) -> None:
    ticket["priority"] = _priority(d.get("priority", ""))


def _escalate(ticket: Doc, d: Doc) -> None:
    ticket["escalation_level"] = int(d.get("level", 0))
    ticket["queue"] = d.get("queue", "") or ticket["queue"]


def _fold_closed(p: Doc, entry: Entry) -> str:
    if p[SECTION]["tickets"].pop(entry.aggregate_id, None) is not None:
        unset(p, f"service_desk.tickets[{entry.aggregate_id}]")
    return ""


def _noting_contact(fold_ticket: TicketFold) -> Fold:
    """A ticket fold that also keeps the desk's last contact with the customer."""

    def fold(p: Doc, entry: Entry) -> None:
        channel = fold_ticket(p, entry)
        desk, at = p[SECTION], entry.occurred_at
        if channel and (not desk["last_contact_at"] or at >= _time(desk["last_contact_at"])):
            desk["last_contact_at"] = at.isoformat()
            desk["last_contact_channel"] = channel
            set_by(p, "service_desk.last_contact_at", entry)

    return fold


FOLDS: dict[str, Fold] = {
    kind: _noting_contact(fold)
    for kind, fold in {
        "ticket.opened": _fold_opened,
        "ticket.assigned": _on_ticket(_assign),
        "ticket.interaction_recorded": _fold_interaction,
        "ticket.priority_changed": _on_ticket(_reprioritise),
        "ticket.escalated": _on_ticket(_escalate),
        "ticket.resolved": _on_ticket(
            lambda ticket, d: ticket.update(state="resolved", waiting_for="")
        ),
        "ticket.reopened": _on_ticket(lambda ticket, d: ticket.update(state="open")),
        "ticket.closed": _fold_closed,
        "ticket.merged_into": _fold_closed,
        "ticket.rated": _fold_rated,
        "ticket.sla_applied": _on_ticket(
            lambda ticket, d: ticket.update(sla_policy=d.get("policy", ""))
        ),
        "ticket.sla_breached": _fold_breached,
        "ticket.sla_paused": _on_ticket(
            lambda ticket, d: ticket.update(
                waiting_for=WAITING_FOR.of_name(d.get("waiting_for", ""))
            )
        ),
        "ticket.sla_resumed": _on_ticket(lambda ticket, d: ticket.update(waiting_for="")),
        "contact.recorded": _fold_contact,
        "service_contract.created": _fold_contract("active"),
        "service_contract.expiry_near": _fold_contract("expiring"),
        "service_contract.expired": _fold_contract("expired"),
        "service_contract.renewed": _fold_contract("active"),
        "service_contract.terms_set": _fold_contract_terms,
        "service_contract.consumed": _fold_contract_consumed,
        "ticket.article_linked": _fold_article_linked,
        "work_order.created": _fold_work_order("unscheduled"),
        "work_order.scheduled": _fold_work_order("scheduled"),
        "work_order.travel_started": _fold_work_order("travelling"),
        "work_order.work_started": _fold_work_order("in_progress"),
        "work_order.completed": _fold_work_order("completed"),
        "work_order.cancelled": _fold_work_order("cancelled"),
        "work_order.rated": _fold_visit_rated,
    }.items()
}


def _interaction_contact(d: Doc) -> SupportContact | None:
    kind = _interaction_kind(d)
    if kind not in ("inbound_call", "inbound_message"):
        return None
    return SupportContact(kind, _channel(d.get("channel", "")))


def _recorded_contact(d: Doc) -> SupportContact | None:
    """An inbound contact-centre record: a call (phone, IVR) or a message."""
    if DIRECTIONS.of_name(d.get("direction", "")) != "inbound":
        return None
    channel = _channel(d.get("channel", ""))
    return SupportContact(
        "inbound_call" if channel in ("phone", "ivr") else "inbound_message", channel
    )


_CONTACTS: dict[str, Callable[[Doc], SupportContact | None]] = {
    "ticket.opened": lambda d: SupportContact("ticket_opened", _channel(d.get("channel", ""))),
    "ticket.interaction_recorded": _interaction_contact,
    "contact.recorded": _recorded_contact,
}


def support_contact(entry: Entry) -> SupportContact | None:
    """A ticket opened, an inbound call or message on a ticket, or an inbound contact-centre
    record (what the customer did, not what we did)."""
    found = _CONTACTS.get(entry.type)
    return found(entry.details) if found else None


def join(p: Doc, other: Doc) -> None:
    """Open tickets are the survivor's then the duplicate's not present; counts and ratings
    add up; the last contact is the later one."""
    desk, theirs = _desk(p), _desk(other)
    for ticket_id, ticket in theirs["tickets"].items():
        if ticket_id not in desk["tickets"]:
            desk["tickets"][ticket_id] = ticket
            copy_provenance(p, other, f"service_desk.tickets[{ticket_id}]")
    desk["tickets_total"] += theirs["tickets_total"]
    desk["recent_openings"] = sorted(
        [*desk["recent_openings"], *theirs["recent_openings"]], key=_time
    )
    if theirs["last_contact_at"] and (
        not desk["last_contact_at"]
        or _time(theirs["last_contact_at"]) > _time(desk["last_contact_at"])
    ):
        desk["last_contact_at"] = theirs["last_contact_at"]
        desk["last_contact_channel"] = theirs["last_contact_channel"]
        copy_provenance(p, other, "service_desk.last_contact_at")
    desk["rating_sum"] += theirs["rating_sum"]
    desk["ratings"] += theirs["ratings"]
    desk["sla_breaches"] += theirs["sla_breaches"]
    desk["contacts_total"] += theirs["contacts_total"]
    desk["recent_contact_times"] = sorted(
        [*desk["recent_contact_times"], *theirs["recent_contact_times"]], key=_time
    )
    desk["recent_contacts"] = sorted(
        [*desk["recent_contacts"], *theirs["recent_contacts"]],
        key=lambda c: (c["at"], c["contact_id"]),
        reverse=True,
    )[:RECENT_CONTACTS]
    if theirs["recent_contacts"]:
        copy_provenance(p, other, "service_desk.recent_contacts")
    for contract_id, contract in theirs["service_contracts"].items():
        if contract_id not in desk["service_contracts"]:
            desk["service_contracts"] = {**desk["service_contracts"], contract_id: contract}
            copy_provenance(p, other, f"service_desk.service_contracts[{contract_id}]")
    for wid, order in theirs["work_orders"].items():
        if wid not in desk["work_orders"]:
            desk["work_orders"] = {**desk["work_orders"], wid: order}
            copy_provenance(p, other, f"service_desk.work_orders[{wid}]")
    for key in ("visits_completed", "visit_rating_sum", "visit_ratings", "resolved_with_article"):
        desk[key] += theirs[key]


# -- the Profile's typed service-desk field -----------------------------------------------------


def _ts(text: str) -> Any:
    return timestamp(_time(text)) if text else None


def service_desk_message(desk: Doc, now: datetime) -> api.ServiceDeskSummary:
    """The profile's service-desk part; counts relative to `now` are made at read time."""
    since = now - timedelta(days=RECENT_TICKET_DAYS)
    open_tickets = sorted(
        ((tid, t) for tid, t in desk["tickets"].items() if t["state"] == "open"),
        key=lambda item: (item[1]["opened_at"], item[0]),
    )
    return api.ServiceDeskSummary(
        open_tickets=[
            api.TicketOverview(
                ticket_id=tid,
                subject=t["subject"],
                channel=t["channel"],
                priority=t["priority"],
                category=t["category"],
                agent_id=t["agent_id"],
                queue=t["queue"],
                escalation_level=t["escalation_level"],
                opened_at=_ts(t["opened_at"]),
                sla_policy=t.get("sla_policy", ""),
                sla_breaches=t.get("sla_breaches", 0),
                waiting_for=t.get("waiting_for", ""),
            )
            for tid, t in open_tickets
        ],
        open_ticket_count=len(open_tickets),
        tickets_last_30_days=sum(1 for at in desk["recent_openings"] if _time(at) > since),
        tickets_total=desk["tickets_total"],
        last_contact_channel=desk["last_contact_channel"],
        last_contact_at=_ts(desk["last_contact_at"]),
        mean_satisfaction=desk["rating_sum"] / desk["ratings"] if desk["ratings"] else None,
        ratings=desk["ratings"],
        sla_breaches=desk.get("sla_breaches", 0),
        contacts_total=desk.get("contacts_total", 0),
        contacts_last_30_days=sum(
            1 for at in desk.get("recent_contact_times", []) if _time(at) > since
        ),
        recent_contacts=[
            api.ContactOverview(
                contact_id=c["contact_id"],
                channel=c["channel"],
                direction=c["direction"],
                outcome=c["outcome"],
                at=_ts(c["at"]),
                duration_seconds=c["duration_seconds"],
                agent_id=c["agent_id"],
            )
            for c in desk.get("recent_contacts", [])
        ],
        service_contracts=[
            api.ServiceContractOverview(
                contract_id=cid,
                name=c["name"],
                services=c["services"],
                starts_on=c["starts_on"],
                ends_on=c["ends_on"],
                state=(
                    "upcoming"
                    # (a renewal's period may start ahead: the contract runs until then)
                    if c["state"] == "active"
                    and c.get("period", 1) <= 1
                    and c["starts_on"] > now.date().isoformat()
                    else c["state"]
                ),
                allowance_unit=c.get("allowance_unit", "unlimited"),
                allowance=c.get("allowance", 0),
                remaining=c.get("remaining"),
                period=c.get("period", 1),
            )
            for cid, c in sorted(
                desk.get("service_contracts", {}).items(), key=lambda x: (x[1]["ends_on"], x[0])
            )
        ],
        open_work_orders=[
            api.WorkOrderOverview(
                work_order_id=wid,
                summary=w["summary"],
                state=w["state"],
                technician_id=w["technician_id"],
                window_start=_ts(w["window_start"].replace("Z", "+00:00")),
                window_end=_ts(w["window_end"].replace("Z", "+00:00")),
            )
            for wid, w in sorted(
                desk.get("work_orders", {}).items(), key=lambda x: (x[1]["created_at"], x[0])
            )
        ],
        visits_completed=desk.get("visits_completed", 0),
        visit_ratings=desk.get("visit_ratings", 0),
        mean_visit_satisfaction=(
            desk["visit_rating_sum"] / desk["visit_ratings"] if desk.get("visit_ratings") else None
        ),
        tickets_resolved_with_article=desk.get("resolved_with_article", 0),
    )


_BOOKKEEPING = frozenset(
    {
        "ticket.assigned",
        "ticket.priority_changed",
        "ticket.escalated",
        "ticket.closed",
        "ticket.merged_into",
        "ticket.duplicate_merged",
    }
)


_VISIT_BOOKKEEPING = frozenset(
    {
        "work_order.travel_started",
        "work_order.work_started",
        "work_order.part_used",
        "work_order.labour_recorded",
    }
)


def _internal(entry: Entry) -> bool:
    """The desk's own handling of a case (assignment, priority, escalation, closing, SLA
    clocks, contract dates, internal notes): not a contact with the customer."""
    return (
        entry.type in _BOOKKEEPING
        or entry.type.startswith(("ticket.sla_", "service_contract."))
        or entry.type in _VISIT_BOOKKEEPING
        or _interaction_kind(entry.details) == "internal_note"
    )


PLUGIN = SourcePlugin(
    name="service-desk",
    internal=_internal,
    summaries=SUMMARIES,
    folds=FOLDS,
    section=SECTION,
    empty_section=empty_service_desk,
    join=join,
    support_contact=support_contact,
    typed_profile=service_desk_message,
)
