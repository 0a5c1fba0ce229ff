"""The timeline's Profile (its published read contract) -> the facts segments ask about."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from google.protobuf import json_format

from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_marketing.conditions import Facts

V = TypeVar("V")
T = TypeVar("T")


def _decimal(text: Any) -> Decimal:
    try:
        return Decimal(str(text))
    except InvalidOperation:
        return Decimal(0)


def _days_since(text: str, today: date) -> int | None:
    try:
        return (today - date.fromisoformat(text[:10])).days
    except ValueError:
        return None


FACT_FIELDS = (
    "customer_id",
    "kind",
    "display_name",
    "emails",
    "phones",
    "owner_id",
    "tags",
    "attributes",
    "service_desk",
    "at_risk",
    "first_seen_at",
    "merged_into",
)
"""The Profile fields `facts_of` reads: all that marketing asks the timeline for (its read
mask); provenance, touches and the rest are neither revealed nor sent."""


SHARED_LIMIT = 100_000
"""How many distinct values `_shared` keeps (past it, new values are not shared)."""
_SHARED: dict[Hashable, Any] = {}


def _shared(value: V, key: Hashable = None) -> V:
    """One instance of equal values (by `key`, else the value itself): marketing keeps every
    customer's facts, and most customers' countries, tags, consent, classes, owner and kind
    are those of many others. A shared dict is never changed (facts are read only)."""
    key = value if key is None else key
    found: V | None = _SHARED.get(key)
    if found is not None:
        return found
    if len(_SHARED) < SHARED_LIMIT:
        _SHARED[key] = value
    return value


def _shared_set(values: Iterable[str]) -> frozenset[str]:
    return _shared(frozenset(values))


def _shared_map(field: str, mapping: dict[str, T]) -> dict[str, T]:
    """Keyed by the field's name and the values as written: a consent {"x": True} and a value
    {"x": Decimal(1)} are equal as items, not as facts, and a value of "10.50" is shown as
    written, not as the "10.5" of another customer."""
    return _shared(mapping, (field, frozenset((k, str(v)) for k, v in mapping.items())))


def results_region(address: Mapping[str, Any]) -> str:
    """Where an address is, for results by region: its country and region ("DE / BAYERN"),
    the country alone when it names no region ("DE"). A region alone said "BY" for Bavaria
    beside "BY" for Belarus's customers without one, and "NY" beside "US": one group for
    two places, and a country's customers in several."""
    country = str(address.get("country") or "").strip().upper()
    area = str(address.get("region") or "").strip().upper()
    return f"{country} / {area}" if country and area else country or area


def facts_of(profile: tapi.Profile, today: date | None = None) -> Facts:
    """What segments may ask of a profile: the customer's own fields (kind, tags, owner,
    addresses, consent), the service desk's (open tickets, contacts in 30 days, the churn
    signal), the sales part's (classes, products bought, the last purchase) and the lifetime
    value per currency: the larger of the sales part's (fulfilled orders) and the ERP's
    payments (never their sum: an order's invoice paid is the same money)."""
    today = today or datetime.now(UTC).date()
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
    sales = attributes.get("sales") or {}
    value: dict[str, Decimal] = {c: _decimal(v) for c, v in paid.items()}
    for currency, amount in (sales.get("lifetime_value") or {}).items():
        value[currency] = max(value.get(currency, Decimal(0)), _decimal(amount))
    last = sales.get("last_purchase") or {}
    desk = profile.service_desk
    return Facts(
        customer_id=profile.customer_id,
        display_name=profile.display_name,
        kind=_shared(profile.kind),
        countries=_shared_set(a.get("country", "").upper() for a in addresses if a.get("country")),
        regions=_shared_set(a.get("region", "").upper() for a in addresses if a.get("region")),
        tags=_shared_set(profile.tags),
        owner=_shared(profile.owner_id),
        consent=_shared_map("consent", consent),
        lifetime_value=_shared_map("lifetime_value", value),
        open_tickets=desk.open_ticket_count,
        support_contacts_30d=desk.tickets_last_30_days,
        at_risk=profile.at_risk,
        emails=tuple(profile.emails),
        phones=tuple(profile.phones),
        postal=postal,
        region=_shared(results_region(first)),
        classes=_shared_set((sales.get("classes") or {}).keys()),
        products=_shared_set(sales.get("products_bought") or []),
        days_since_purchase=_days_since(str(last.get("on", "")), today) if last else None,
        first_seen=(
            profile.first_seen_at.ToDatetime(tzinfo=UTC).date()
            if profile.HasField("first_seen_at")
            else None
        ),
        overdue_invoices=tuple(erp.get("overdue_invoices") or ()),
        forgotten=bool(attributes.get("forgotten_at")),
        merged_into=profile.merged_into,
    )
