"""`c360 profile show` for people: the screen an agent wants when the customer calls.

Built from the profile's JSON (`output.profile_json`), the newest timeline entries and the
names of the customers on the other side of its contact-person links (an organisation's
persons, a person's organisations); no I/O here, so the layout is unit-tested at 100 and 80 columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from c360_cli.output import short_time
from c360_cli.words import CONSENT_CHANNELS, CONSENT_PURPOSES
from c360_platform import currencies

Doc = Mapping[str, Any]

LATEST_ENTRIES = 5
"""How many of the newest timeline entries the screen shows."""
OPEN_TICKETS = 5
"""How many open tickets it lists (the count says if there are more)."""


def counted(n: Any, one: str, many: str = "") -> str:
    """ "1 lead", "2 leads", "0 leads": a count and its noun (`many` where adding s is wrong)."""
    return f"{n} {one if str(n) == '1' else (many or one + 's')}"


def short_id(value: str) -> str:
    """The first 8 hex digits of a UUID (what the CLI shows; accepted back where unique)."""
    return value[:8] if len(value) == 36 and value.count("-") == 4 else value


def money(amounts: Mapping[str, Any]) -> str:
    """{"EUR": "7728.00", "JPY": "1250"} as "7,728.00 EUR, 1,250 JPY" (each in its
    currency's smallest unit)."""
    parts = []
    for currency, amount in sorted(amounts.items()):
        places = currencies.minor_units(currency)
        try:
            parts.append(f"{Decimal(str(amount)):,.{places}f} {currency}")
        except InvalidOperation:
            parts.append(f"{amount} {currency}")
    return ", ".join(parts)


def _address(a: Doc) -> str:
    place = " ".join(p for p in (a.get("postal_code", ""), a.get("city", "")) if p)
    parts = [*a.get("lines", []), place, a.get("region", ""), a.get("country", "")]
    text = ", ".join(p for p in parts if p)
    return f"{a['label']}: {text}" if a.get("label") else text


def consent_grid(consent: Doc) -> Table | Text:
    """Consent as purpose by channel: yes, no (revoked) or · (never asked)."""
    if not consent:
        return Text("none recorded")
    grid = Table(box=None, padding=(0, 1), show_header=True, header_style="dim")
    grid.add_column("")
    channels = CONSENT_CHANNELS.words
    for channel in channels:
        grid.add_column(channel, justify="center")
    for purpose in CONSENT_PURPOSES.words:
        cells = []
        for channel in channels:
            decision = consent.get(f"{channel.replace('-', '_')}/{purpose.replace('-', '_')}")
            if decision is None:
                cells.append(Text("·", style="dim"))
            elif decision.get("granted"):
                cells.append(Text("yes", style="green"))
            else:
                cells.append(Text("no", style="red"))
        grid.add_row(purpose, *cells)
    return grid


def minute(text: str | None) -> str:
    """A UTC time to the minute ("2026-12-04 02:04"), as the screen shows times."""
    return short_time(text)[:16]


def _at_risk(doc: Doc) -> Text:
    if not doc.get("at_risk"):
        return Text("no")
    text = Text("YES", style="bold red")
    text.append(f" since {minute(doc.get('at_risk_since'))}")
    if doc.get("at_risk_until"):
        text.append(f", until {minute(doc.get('at_risk_until'))} unless a new contact comes")
    for reason in doc.get("at_risk_reasons", []):
        text.append(f"\n{minute(reason.get('at'))}  {reason.get('summary', '')}")
    return text


def _sales(part: Doc) -> str:
    bits = []
    if part.get("lifetime_value"):
        bits.append(f"lifetime value {money(part['lifetime_value'])}")
    states = part.get("orders_by_state") or {}
    if states:
        bits.append("orders: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    if part.get("open_opportunity_count"):
        weighted = money(part.get("open_weighted") or {})
        bits.append(
            counted(part["open_opportunity_count"], "open opportunity", "open opportunities")
            + (f" (weighted {weighted})" if weighted else "")
        )
    last = part.get("last_purchase")
    if last:
        bits.append(
            f"last purchase {last.get('order_number', '')} on {last.get('on', '')}"
            f" ({money({last.get('currency', ''): last.get('amount', '')})})"
        )
    if part.get("leads"):
        bits.append(counted(part["leads"], "lead"))
    return "; ".join(bits) or "nothing yet"


def _marketing(part: Doc) -> str:
    bits = []
    segments = [s.get("name", "") for s in (part.get("segments") or {}).values()]
    if segments:
        bits.append("segments " + ", ".join(sorted(segments)))
    if part.get("touches"):
        rate = part.get("response_rate")
        bits.append(
            counted(part["touches"], "campaign touch", "campaign touches")
            + (f", {float(rate):.0%} responded" if rate is not None else "")
        )
    # What the customer last did, and the last call to them, with their campaigns (when:
    # on the timeline).
    response = part.get("last_response")
    if response:
        bits.append(
            f"last response {response.get('kind', '').replace('_', ' ')}" + _of_campaign(response)
        )
    call = part.get("last_call")
    if call:
        bits.append(f"last call {call.get('outcome', '').replace('_', ' ')}" + _of_campaign(call))
    return "; ".join(bits) or "nothing yet"


def _of_campaign(d: Doc) -> str:
    return f" (“{d['campaign_name']}”)" if d.get("campaign_name") else ""


def _erp(part: Doc) -> str:
    bits = []
    if part.get("outstanding") and any(Decimal(str(v)) for v in part["outstanding"].values()):
        bits.append(f"outstanding {money(part['outstanding'])}")
    overdue = part.get("overdue_invoices") or []
    if overdue:
        bits.append(f"{counted(len(overdue), 'invoice')} overdue")
    if part.get("credit_limit"):
        limit = part["credit_limit"]
        if isinstance(limit, Mapping):
            bits.append(f"credit limit {money({limit.get('currency', ''): limit.get('amount')})}")
    last = part.get("last_payment")
    if isinstance(last, Mapping) and last.get("at"):
        bits.append(f"last payment {short_time(last.get('at'))}")
    return "; ".join(bits) or "no open items"


def _service(desk: Doc) -> str:
    mean = desk.get("mean_satisfaction")
    return (
        f"{desk.get('open_ticket_count', 0)} open, {desk.get('tickets_last_30_days', 0)} in"
        f" 30 days, {desk.get('tickets_total', 0)} in all; satisfaction"
        f" {f'{mean:.1f}' if isinstance(mean, int | float) else '-'}"
        f" ({counted(desk.get('ratings', 0), 'rating')});"
        f" {counted(desk.get('sla_breaches', 0), 'SLA breach', 'SLA breaches')}"
        + (
            f"; {desk['tickets_resolved_with_article']} resolved with an article"
            if desk.get("tickets_resolved_with_article")
            else ""
        )
    )


def _visits(desk: Doc) -> str:
    """On-site visits: the open ones (state, technician, window), then those completed."""
    lines = [
        f"{w.get('summary', '')} ({str(w.get('work_order_id', ''))[:8]}):"
        f" {str(w.get('state', '')).replace('_', ' ')}"
        + (f", {w['technician_id']}" if w.get("technician_id") else "")
        + (f", {minute(w.get('window_start'))}" if w.get("window_start") else "")
        for w in desk.get("open_work_orders") or []
    ]
    mean = desk.get("mean_visit_satisfaction")
    lines.append(
        f"{counted(desk.get('visits_completed', 0), 'visit')} completed; satisfaction"
        f" {f'{mean:.1f}' if isinstance(mean, int | float) else '-'}"
        f" ({counted(desk.get('visit_ratings', 0), 'rating')})"
    )
    return "\n".join(lines)


def _contact_history(desk: Doc) -> str:
    """Contacts that needed no ticket (IVR, calls, SMS): how many, and the latest three."""
    lines = [
        f"{desk['contacts_total']} without a ticket, {desk.get('contacts_last_30_days', 0)}"
        " in 30 days"
    ]
    for c in (desk.get("recent_contacts") or [])[:3]:
        lines.append(
            f"{minute(c.get('at'))} {c.get('channel', '')} {c.get('direction', '')}"
            f" {str(c.get('outcome', '')).replace('_', '-')}"
        )
    return "\n".join(lines)


def _named(customer_id: str, names: Mapping[str, str]) -> str:
    """ "Name (short id)", or "(short id)" when the name is not known."""
    name = names.get(customer_id, "")
    return f"{name} ({short_id(customer_id)})" if name else f"({short_id(customer_id)})"


def facts(doc: Doc, names: Mapping[str, str]) -> list[tuple[str, RenderableType | str]]:
    """The panel's rows: (label, value). `names`: the display names of the customers on the
    other side of its contact-person links (by id)."""
    attributes: Doc = doc.get("attributes") or {}
    rows: list[tuple[str, RenderableType | str]] = [("id", doc.get("customer_id", ""))]
    if doc.get("merged_into"):
        rows.append(("merged into", doc["merged_into"]))
    if attributes.get("forgotten_at"):
        rows.append(("forgotten", f"erased on request {attributes['forgotten_at']}"))
    rows.append(("e-mail", ", ".join(doc.get("emails", [])) or "-"))
    rows.append(("phone", ", ".join(doc.get("phones", [])) or "-"))
    addresses = attributes.get("addresses") or []
    if addresses:
        rows.append(("address", "\n".join(_address(a) for a in addresses)))
    owner = doc.get("owner_id") or "-"
    tags = ", ".join(doc.get("tags", []))
    rows.append(("owner", owner + (f"   tags: {tags}" if tags else "")))
    links = attributes.get("contact_persons") or {}
    current = [link for link in links.values() if not link.get("valid_until")]
    if doc.get("kind") == "organisation":
        # Its contact persons: "role: name (id)".
        lines = [
            f"{link.get('role') or 'contact'}: {_named(link.get('person_id', ''), names)}"
            for link in current
        ]
        rows.append(("contact persons", "\n".join(lines) or "-"))
    elif current:
        # A person's side of the links: the organisations it is a contact person of.
        lines = [
            f"{link.get('role') or 'contact'} at {_named(link.get('organisation_id', ''), names)}"
            for link in current
        ]
        rows.append(("contact for", "\n".join(lines)))
    rows.append(("consent", consent_grid(attributes.get("consent") or {})))
    sales: Doc = attributes.get("sales") or {}
    classes = sales.get("classes") or {}
    if classes:
        rows.append(
            (
                "classes",
                "\n".join(
                    f"{name}: {reason}" if reason else name
                    for name, reason in sorted(classes.items())
                ),
            )
        )
    rows.append(("at risk", _at_risk(doc)))
    touches = sum(int(t.get("count", 0)) for t in doc.get("touches", []))
    last = doc.get("last_contact_at")
    seen = f"first {minute(doc.get('first_seen_at'))}; last contact "
    seen += f"{minute(last)} ({doc.get('last_contact_source', '')})" if last else "none yet"
    rows.append(("seen", f"{seen}; {counted(touches, 'touch', 'touches')}"))
    if sales:
        rows.append(("sales", _sales(sales)))
    if attributes.get("marketing"):
        rows.append(("marketing", _marketing(attributes["marketing"])))
    if attributes.get("erp"):
        rows.append(("ERP", _erp(attributes["erp"])))
    desk: Doc = doc.get("service_desk") or {}
    if desk:
        rows.append(("service", _service(desk)))
        if desk.get("contacts_total"):
            rows.append(("contact history", _contact_history(desk)))
        if desk.get("open_work_orders") or desk.get("visits_completed"):
            rows.append(("on-site visits", _visits(desk)))
        contracts = desk.get("service_contracts") or []
        if contracts:
            rows.append(
                (
                    "contracts",
                    "\n".join(
                        f"{c['name']} ({str(c.get('contract_id', ''))[:8]}): {c['starts_on']}"
                        f" to {c['ends_on']} ({c['state']}){_allowance_left(c)}"
                        for c in contracts
                    ),
                )
            )
    return rows


def _allowance_left(contract: Doc) -> str:
    """ "; 1 of 2 cases left", "; 1 h 30 min of 10 h left" ("" when unlimited)."""
    if contract.get("remaining") is None:
        return ""
    left, allowance = int(contract["remaining"]), int(contract.get("allowance", 0))
    if contract.get("allowance_unit") == "hours":
        hours, minutes = divmod(left, 60)
        text = f"{hours} h" + (f" {minutes} min" if minutes else "")
        return f"; {text} of {allowance} h left"
    return f"; {left} of {allowance} case{'' if allowance == 1 else 's'} left"


def _list(title: str, columns: Sequence[str], *, text: str) -> Table:
    """A list under the panel, as wide as it: the `text` column takes the room and wraps."""
    table = Table(
        box=box.SIMPLE_HEAD,
        title=title,
        title_justify="left",
        expand=True,
        pad_edge=False,
        show_edge=False,
    )
    for column in columns:
        if column == text:
            table.add_column(column, ratio=1, overflow="fold")
        else:
            table.add_column(column, no_wrap=True)
    return table


def open_tickets(desk: Doc) -> Table | None:
    tickets = (desk or {}).get("open_tickets") or []
    if not tickets:
        return None
    count = int(desk.get("open_ticket_count", len(tickets)))
    more = count - min(len(tickets), OPEN_TICKETS)
    table = _list(
        "open tickets" + (f" (newest {OPEN_TICKETS} of {count})" if more > 0 else ""),
        ["ticket", "priority", "opened (UTC)", "subject", "agent"],
        text="subject",
    )
    newest = sorted(tickets, key=lambda t: t.get("opened_at") or "", reverse=True)
    for t in newest[:OPEN_TICKETS]:
        table.add_row(
            short_id(t.get("ticket_id", "")),
            t.get("priority", ""),
            minute(t.get("opened_at")),
            t.get("subject", "")
            + (
                f" (on hold, waiting for the {str(t['waiting_for']).replace('_', ' ')})"
                if t.get("waiting_for")
                else ""
            ),
            t.get("agent_id") or "-",
        )
    return table


def latest(entries: Sequence[Doc]) -> Table | None:
    if not entries:
        return None
    table = _list("latest on the timeline", ["when (UTC)", "source", "what"], text="what")
    for e in entries[:LATEST_ENTRIES]:
        table.add_row(minute(e.get("occurred_at")), e.get("source", ""), e.get("summary"))
    return table


def screen(
    doc: Doc,
    entries: Sequence[Doc] = (),
    names: Mapping[str, str] | None = None,
    as_of: str | None = None,
) -> Group:
    """The whole screen: the panel of facts, the open tickets, the latest entries."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in facts(doc, names or {}):
        grid.add_row(Text(label), Text(value) if isinstance(value, str) else value)
    title = Text(doc.get("display_name") or "(no name)", style="bold")
    title.append(f" · {doc.get('kind', '')} · {short_id(doc.get('customer_id', ''))}")
    if as_of:
        title.append(f" · as of {minute(as_of)}")
    parts: list[RenderableType] = [Panel(grid, title=title, title_align="left")]
    tickets = open_tickets(doc.get("service_desk") or {})
    if tickets is not None:
        parts.append(tickets)
    recent = latest(entries)
    if recent is not None:
        parts.append(recent)
    return Group(*parts)
