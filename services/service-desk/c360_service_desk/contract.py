"""The published contract of the service desk: domain event -> c360.events.v1 message."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from c360.events.v1 import contact_events_pb2 as cpb
from c360.events.v1 import field_service_events_pb2 as fpb
from c360.events.v1 import knowledge_events_pb2 as kpb
from c360.events.v1 import service_contract_events_pb2 as spb
from c360.events.v1 import ticket_events_pb2 as pb
from c360_platform.contract import EventContract, Mapper, Published
from c360_platform.envelope import timestamp
from c360_platform.vocabulary import Words
from c360_service_desk.contacts import Contact
from c360_service_desk.domain import Ticket
from c360_service_desk.field_service import WorkOrder
from c360_service_desk.holidays import HolidayCalendar
from c360_service_desk.knowledge import Article
from c360_service_desk.service_contracts import ServiceContract

CHANNELS = Words(pb.TicketChannel)
PRIORITIES = Words(pb.TicketPriority)
STATES = Words(pb.TicketState)
INTERACTION_KINDS = Words(pb.InteractionKind)
TARGET_KINDS = Words(pb.SlaTargetKind)
TARGET_STATUSES = Words(pb.SlaTargetStatus)
WAITING_FOR = Words(pb.TicketWaitingFor)
DIRECTIONS = Words(cpb.ContactDirection)
OUTCOMES = Words(cpb.ContactOutcome)
LINK_KINDS = Words(pb.ArticleLinkKind)
ALLOWANCE_UNITS = Words(spb.AllowanceUnit)
CONSUME_ON = Words(spb.ConsumeOn)
ARTICLE_STATES = Words(kpb.ArticleState)
WORK_ORDER_STATES = Words(fpb.WorkOrderState)


def _at(text: str) -> Any:
    return timestamp(datetime.fromisoformat(text)) if text else None


def sla_targets(targets: dict[str, dict[str, Any]]) -> list[pb.SlaTarget]:
    return [
        pb.SlaTarget(
            kind=TARGET_KINDS.value(kind),
            minutes=t["minutes"],
            warning_minutes=t["warn_minutes"],
            consumed_minutes=t["consumed"],
            due_at=_at(t["due_at"]),
            warn_at=_at(t["warn_at"]),
            status=TARGET_STATUSES.value(t["status"]),
        )
        for kind, t in targets.items()
    ]


def channel_value(value: str) -> Any:
    return CHANNELS.value_or_zero(value)


_MESSAGES: dict[type, Mapper] = {
    Ticket.Opened: lambda e: pb.TicketOpened(
        customer_id=e.customer_id,
        channel=CHANNELS.value(e.channel),
        subject=e.subject,
        description=e.description,
        category=e.category,
        priority=PRIORITIES.value(e.priority),
    ),
    Ticket.Assigned: lambda e: pb.TicketAssigned(
        customer_id=e.customer_id,
        agent_id=e.agent_id,
        queue=e.queue,
        previous_agent_id=e.previous_agent_id,
        previous_queue=e.previous_queue,
    ),
    Ticket.InteractionRecorded: lambda e: pb.TicketInteractionRecorded(
        customer_id=e.customer_id,
        interaction_id=e.interaction_id,
        kind=INTERACTION_KINDS.value(e.kind),
        channel=channel_value(e.channel),
        body=e.body,
        duration_seconds=e.duration_seconds,
        agent_id=e.agent_id,
    ),
    Ticket.PriorityChanged: lambda e: pb.TicketPriorityChanged(
        customer_id=e.customer_id,
        priority=PRIORITIES.value(e.priority),
        previous_priority=PRIORITIES.value(e.previous_priority),
        reason=e.reason,
    ),
    Ticket.Escalated: lambda e: pb.TicketEscalated(
        customer_id=e.customer_id, level=e.level, reason=e.reason, queue=e.queue
    ),
    Ticket.Resolved: lambda e: pb.TicketResolved(
        customer_id=e.customer_id, resolution=e.resolution, agent_id=e.agent_id
    ),
    Ticket.Reopened: lambda e: pb.TicketReopened(customer_id=e.customer_id, reason=e.reason),
    Ticket.Closed: lambda e: pb.TicketClosed(
        customer_id=e.customer_id, reason=e.reason, previous_state=STATES.value(e.previous_state)
    ),
    Ticket.Rated: lambda e: pb.TicketRated(
        customer_id=e.customer_id, score=e.score, comment=e.comment
    ),
    Ticket.SlaApplied: lambda e: pb.TicketSlaApplied(
        customer_id=e.customer_id,
        policy=e.policy,
        reason=e.reason,
        time_zone=e.time_zone,
        targets=sla_targets(e.targets),
    ),
    Ticket.SlaPaused: lambda e: pb.TicketSlaPaused(
        customer_id=e.customer_id,
        waiting_for=WAITING_FOR.value(e.waiting_for),
        reason=e.reason,
        targets=sla_targets(e.targets),
    ),
    Ticket.SlaResumed: lambda e: pb.TicketSlaResumed(
        customer_id=e.customer_id,
        targets=sla_targets(e.targets),
        reason=getattr(e, "reason", ""),  # none in events written before it existed
    ),
    Ticket.SlaWarned: lambda e: pb.TicketSlaWarning(
        customer_id=e.customer_id, target=TARGET_KINDS.value(e.target), warn_at=_at(e.warn_at)
    ),
    Ticket.SlaBreached: lambda e: pb.TicketSlaBreached(
        customer_id=e.customer_id, target=TARGET_KINDS.value(e.target), due_at=_at(e.due_at)
    ),
    Ticket.SlaMet: lambda e: pb.TicketSlaMet(
        customer_id=e.customer_id, target=TARGET_KINDS.value(e.target), met_at=_at(e.met_at)
    ),
    Ticket.SlaRestarted: lambda e: pb.TicketSlaRestarted(
        customer_id=e.customer_id,
        target=TARGET_KINDS.value(e.target),
        targets=sla_targets(e.targets),
    ),
    Ticket.SlaCancelled: lambda e: pb.TicketSlaCancelled(
        customer_id=e.customer_id, reason=e.reason
    ),
    Ticket.Entitled: lambda e: pb.TicketEntitled(
        customer_id=e.customer_id,
        contract_id=e.contract_id,
        contract_name=e.contract_name,
        consume_on=e.consume_on,
        unit=e.unit,
        sla_policy=e.sla_policy,
    ),
    Ticket.NotEntitled: lambda e: pb.TicketNotEntitled(customer_id=e.customer_id, reason=e.reason),
    Ticket.EntitlementConsumed: lambda e: pb.TicketEntitlementConsumed(
        customer_id=e.customer_id, contract_id=e.contract_id, unit=e.unit, amount=e.amount
    ),
    Ticket.Classified: lambda e: pb.TicketClassified(customer_id=e.customer_id, classes=e.classes),
    Ticket.MergedInto: lambda e: pb.TicketMergedInto(
        customer_id=e.customer_id, survivor_ticket_id=e.survivor_ticket_id, reason=e.reason
    ),
    Ticket.DuplicateMerged: lambda e: pb.TicketDuplicateMerged(
        customer_id=e.customer_id,
        duplicate_ticket_id=e.duplicate_ticket_id,
        duplicate_channel=CHANNELS.value(e.duplicate_channel),
        reason=e.reason,
    ),
    Ticket.ArticleLinked: lambda e: pb.TicketArticleLinked(
        customer_id=e.customer_id,
        article_id=e.article_id,
        title=e.title,
        kind=LINK_KINDS.value(e.kind),
        article_version=e.version,
    ),
}

_ARTICLE_MESSAGES: dict[type, Mapper] = {
    Article.Drafted: lambda e: kpb.ArticleDrafted(
        title=e.title,
        body=e.body,
        category=e.category,
        language=e.language,
        keywords=e.keywords,
        author_id=e.author_id,
    ),
    Article.Revised: lambda e: kpb.ArticleRevised(
        title=e.title, body=e.body, category=e.category, keywords=e.keywords, version=e.version
    ),
    Article.Submitted: lambda e: kpb.ArticleSubmitted(version=e.version),
    Article.Published: lambda e: kpb.ArticlePublished(
        version=e.version, title=e.title, category=e.category, reviewer_id=e.reviewer_id
    ),
    Article.Archived: lambda e: kpb.ArticleArchived(reason=e.reason),
    Article.Linked: lambda e: kpb.ArticleLinked(
        ticket_id=e.ticket_id, kind=LINK_KINDS.value(e.kind), version=e.version
    ),
    Article.Voted: lambda e: kpb.ArticleVoted(
        helpful=e.helpful, ticket_id=e.ticket_id, version=e.version
    ),
}

_WORK_ORDER_MESSAGES: dict[type, Mapper] = {
    WorkOrder.Opened: lambda e: fpb.WorkOrderCreated(
        customer_id=e.customer_id,
        summary=e.summary,
        ticket_id=e.ticket_id,
        contract_id=e.contract_id,
        region=e.region,
        currency=e.currency,
    ),
    WorkOrder.Scheduled: lambda e: fpb.WorkOrderScheduled(
        customer_id=e.customer_id,
        technician_id=e.technician_id,
        window_start=timestamp(e.window_start),
        window_end=timestamp(e.window_end),
        previous_technician_id=e.previous_technician_id,
    ),
    WorkOrder.TravelStarted: lambda e: fpb.WorkOrderTravelStarted(
        customer_id=e.customer_id, technician_id=e.technician_id, at=timestamp(e.at)
    ),
    WorkOrder.WorkStarted: lambda e: fpb.WorkOrderWorkStarted(
        customer_id=e.customer_id, technician_id=e.technician_id, at=timestamp(e.at)
    ),
    WorkOrder.PartUsed: lambda e: fpb.WorkOrderPartUsed(
        customer_id=e.customer_id,
        line_id=e.line_id,
        sku=e.sku,
        description=e.description,
        quantity=e.quantity,
        unit_cost=e.unit_cost,
        cost=e.cost,
        # Events recorded before lines carried it have none: their work order's currency.
        currency=getattr(e, "currency", ""),
    ),
    WorkOrder.LabourRecorded: lambda e: fpb.WorkOrderLabourRecorded(
        customer_id=e.customer_id,
        line_id=e.line_id,
        technician_id=e.technician_id,
        minutes=e.minutes,
        hourly_rate=e.hourly_rate,
        cost=e.cost,
        currency=getattr(e, "currency", ""),
    ),
    WorkOrder.LineVoided: lambda e: fpb.WorkOrderLineVoided(
        customer_id=e.customer_id,
        line_id=e.line_id,
        reason=e.reason,
        cost=e.cost,
        currency=e.currency,
    ),
    WorkOrder.Completed: lambda e: fpb.WorkOrderCompleted(
        customer_id=e.customer_id,
        fixed=e.fixed,
        note=e.note,
        cost=e.cost,
        currency=e.currency,
        at=timestamp(e.at),
        # Events recorded before it was carried have none (see the work order's creation).
        contract_id=getattr(e, "contract_id", ""),
    ),
    WorkOrder.Cancelled: lambda e: fpb.WorkOrderCancelled(
        customer_id=e.customer_id,
        reason=e.reason,
        previous_state=WORK_ORDER_STATES.value(e.previous_state),
        cost=getattr(e, "cost", ""),
        currency=getattr(e, "currency", ""),
    ),
    WorkOrder.Rated: lambda e: fpb.WorkOrderRated(
        customer_id=e.customer_id, score=e.score, comment=e.comment
    ),
}

_CONTACT_MESSAGES: dict[type, Mapper] = {
    Contact.Recorded: lambda e: cpb.ContactRecorded(
        customer_id=e.customer_id,
        channel=CHANNELS.value(e.channel),
        direction=DIRECTIONS.value(e.direction),
        started_at=timestamp(e.started_at),
        duration_seconds=e.duration_seconds,
        outcome=OUTCOMES.value(e.outcome),
        agent_id=e.agent_id,
        ivr_path=e.ivr_path,
        note=e.note,
    ),
}


_SERVICE_CONTRACT_MESSAGES: dict[type, Mapper] = {
    ServiceContract.Signed: lambda e: spb.ServiceContractCreated(
        customer_id=e.customer_id,
        name=e.name,
        services=e.services,
        starts_on=e.starts_on,
        ends_on=e.ends_on,
        warning_days=e.warning_days,
    ),
    ServiceContract.ExpiryNear: lambda e: spb.ServiceContractExpiryNear(
        customer_id=e.customer_id, name=e.name, ends_on=e.ends_on, days_left=e.days_left
    ),
    ServiceContract.Expired: lambda e: spb.ServiceContractExpired(
        customer_id=e.customer_id, name=e.name, ends_on=e.ends_on
    ),
    ServiceContract.TermsSet: lambda e: spb.ServiceContractTermsSet(
        customer_id=e.customer_id,
        allowance_unit=ALLOWANCE_UNITS.value(e.allowance_unit),
        allowance=e.allowance,
        consume_on=CONSUME_ON.value(e.consume_on),
        sla_policy=e.sla_policy,
        value_amount=e.value_amount,
        value_currency=e.value_currency,
    ),
    ServiceContract.Consumed: lambda e: spb.ServiceContractConsumed(
        customer_id=e.customer_id,
        ticket_id=e.ticket_id,
        unit=ALLOWANCE_UNITS.value(e.unit),
        amount=e.amount,
        remaining=e.remaining,
        period=e.period,
        work_order_id=getattr(e, "work_order_id", ""),
    ),
    ServiceContract.Renewed: lambda e: spb.ServiceContractRenewed(
        customer_id=e.customer_id,
        name=e.name,
        starts_on=e.starts_on,
        ends_on=e.ends_on,
        period=e.period,
    ),
    ServiceContract.RenewalDue: lambda e: spb.ServiceContractRenewalDue(
        customer_id=e.customer_id,
        name=e.name,
        ends_on=e.ends_on,
        period=e.period,
        services=e.services,
        value_amount=e.value_amount,
        value_currency=e.value_currency,
    ),
}


_HOLIDAY_MESSAGES: dict[type, Mapper] = {
    HolidayCalendar.Started: lambda e: spb.HolidayCalendarStarted(name=e.name),
    HolidayCalendar.Imported: lambda e: spb.HolidaysImported(
        holidays=[spb.Holiday(date=day, name=name) for day, name in e.holidays],
        source=e.source,
    ),
}


CONTRACT = EventContract(
    Published(Ticket, "ticket", _MESSAGES, customer=lambda e: str(e.customer_id)),
    Published(Contact, "contact", _CONTACT_MESSAGES, customer=lambda e: str(e.customer_id)),
    Published(
        ServiceContract,
        "service_contract",
        _SERVICE_CONTRACT_MESSAGES,
        customer=lambda e: str(e.customer_id),
    ),
    Published(Article, "article", _ARTICLE_MESSAGES, customer=lambda e: ""),
    Published(HolidayCalendar, "holiday_calendar", _HOLIDAY_MESSAGES, customer=lambda e: ""),
    Published(WorkOrder, "work_order", _WORK_ORDER_MESSAGES, customer=lambda e: str(e.customer_id)),
)
"""Every service-desk event and its published message; the envelope's customer is the
ticket's (contact's, contract's, work order's) customer (every event names it). Knowledge
articles are about no customer: a link to a customer's ticket is the ticket's event."""
