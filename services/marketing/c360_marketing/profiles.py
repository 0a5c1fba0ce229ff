"""The timeline's Profile (its published read contract) -> the facts segments ask about."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from google.protobuf import json_format

from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_marketing.conditions import Facts


def _decimal(text: Any) -> Decimal:
    try:
        return Decimal(str(text))
    except InvalidOperation:
        return Decimal(0)


def facts_of(profile: tapi.Profile) -> Facts:
    """What segments may ask of a profile: the customer's own fields (kind, tags, owner,
    addresses, consent), the service desk's (open tickets, contacts in 30 days, the churn
    signal) and the ERP's payments (lifetime value per currency)."""
    attributes: dict[str, Any] = json_format.MessageToDict(profile.attributes)
    addresses = [a for a in attributes.get("addresses", []) if isinstance(a, dict)]
    consent = {
        key: bool(decision.get("granted"))
        for key, decision in attributes.get("consent", {}).items()
        if isinstance(decision, dict)
    }
    erp = attributes.get("erp") or {}
    paid = erp.get("paid_total") or {}
    first = addresses[0] if addresses else {}
    postal = ", ".join(
        x
        for x in (
            *first.get("lines", []),
            f"{first.get('postal_code', '')} {first.get('city', '')}".strip(),
            first.get("country", ""),
        )
        if x
    )
    desk = profile.service_desk
    return Facts(
        customer_id=profile.customer_id,
        display_name=profile.display_name,
        kind=profile.kind,
        countries=frozenset(a.get("country", "").upper() for a in addresses if a.get("country")),
        regions=frozenset(a.get("region", "").upper() for a in addresses if a.get("region")),
        tags=frozenset(profile.tags),
        owner=profile.owner_id,
        consent=consent,
        lifetime_value={c: _decimal(v) for c, v in paid.items()},
        open_tickets=desk.open_ticket_count,
        support_contacts_30d=desk.tickets_last_30_days,
        at_risk=profile.at_risk,
        emails=tuple(profile.emails),
        phones=tuple(profile.phones),
        postal=postal,
        region=(first.get("region") or first.get("country") or "").upper(),
    )
