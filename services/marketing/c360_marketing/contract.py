"""The published contract of marketing: memberships and touches -> c360.events.v1 messages.

Only the people store is published (every event is about one customer); segments and
campaigns are marketing's plans, kept in a store of their own.
"""

from __future__ import annotations

from typing import Any

from c360.events.v1 import marketing_events_pb2 as pb
from c360_marketing.domain import Call, Membership, Touch
from c360_platform.contract import EventContract, Mapper, Published
from c360_platform.envelope import timestamp
from c360_platform.vocabulary import Words

CHANNELS = Words(pb.MarketingChannel)
RESPONSES = Words(pb.TouchResponseKind)


def _membership(kind: type[Any]) -> Mapper:
    return lambda e: kind(
        segment_id=e.segment_id,
        segment_name=e.segment_name,
        segment_version=e.segment_version,
        condition_path=e.condition_path,
        condition=e.condition,
        cause=e.cause,
    )


MEMBERSHIPS: dict[type, Mapper] = {
    Membership.Entered: _membership(pb.SegmentEntered),
    Membership.Reentered: _membership(pb.SegmentEntered),
    Membership.Left: _membership(pb.SegmentLeft),
}

TOUCHES: dict[type, Mapper] = {
    Touch.Sent: lambda e: pb.TouchSent(
        campaign_id=e.campaign_id,
        campaign_name=e.campaign_name,
        channel=CHANNELS.value(e.channel),
        address=e.address,
        segment_id=e.segment_id,
        region=e.region,
        cost=e.cost,
        currency=e.currency,
        offer=e.offer,
    ),
    Touch.Responded: lambda e: pb.TouchResponded(
        campaign_id=e.campaign_id,
        kind=RESPONSES.value(e.kind),
        report_id=e.report_id,
        detail=e.detail,
        reported_at=timestamp(e.reported_at),
        # Not in the events recorded before the name was carried on every touch event.
        campaign_name=getattr(e, "campaign_name", ""),
    ),
    Touch.Converted: lambda e: pb.TouchConverted(
        campaign_id=e.campaign_id,
        amount=e.amount,
        currency=e.currency,
        campaign_name=getattr(e, "campaign_name", ""),
    ),
}

CALLS: dict[type, Mapper] = {
    Call.Recorded: lambda e: pb.CallRecorded(
        campaign_id=e.campaign_id,
        campaign_name=e.campaign_name,
        call_list_id=e.call_list_id,
        agent_id=e.agent_id,
        outcome=e.outcome,
        call_back_at=timestamp(e.call_back_at) if e.call_back_at else None,
        note=e.note,
        called_at=timestamp(e.at),
    ),
}

CONTRACT = EventContract(
    Published(Membership, "membership", MEMBERSHIPS, customer=lambda e: str(e.customer_id)),
    Published(Touch, "touch", TOUCHES, customer=lambda e: str(e.customer_id)),
    Published(Call, "call", CALLS, customer=lambda e: str(e.customer_id)),
)
"""Every membership, touch and call event; the envelope's customer is the one it is about."""
