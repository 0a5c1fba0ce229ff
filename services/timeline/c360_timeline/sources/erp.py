"""The ERP's invoices, payments, credit notes and credit limits (source `erp`): their
summaries and the `erp` part of the profile, which clients read in Profile.attributes.

The part is the customer's account: balances per currency (issued minus paid minus credited),
everything paid per currency (`paid_total`, the lifetime value segments ask about), open
invoices (one stays open until the payments and credit notes referring to it cover it, and
counts as overdue from InvoiceOverdue until then), the last payment and the credit limit.
Provenance paths: "erp.open_invoices[<number>]", "erp.outstanding.<currency>",
"erp.last_payment", "erp.credit_limit".
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

# Imported for its payload types: entry_for unpacks them from the envelopes.
from c360.erp.v1 import erp_events_pb2  # noqa: F401
from c360_timeline.erp_inbound import SOURCE
from c360_timeline.projection import Doc, Entry, Fold, SourcePlugin, copy_provenance, set_by, unset

SECTION = "erp"


def _money(d: Doc) -> str:
    return f"{d.get('amount', '')} {d.get('currency', '')}".strip()


SUMMARIES: dict[str, Callable[[Doc], str]] = {
    "c360.erp.v1.InvoiceIssued": lambda d: (
        f"Invoice {d.get('invoice_number', '')} issued: {_money(d.get('amount', {}))},"
        f" due {d.get('due_date', '')}"
    ),
    "c360.erp.v1.PaymentReceived": lambda d: (
        f"Payment {d.get('payment_reference', '')} received: {_money(d.get('amount', {}))}"
        + (f" for invoice {d['invoice_number']}" if d.get("invoice_number") else "")
    ),
    "c360.erp.v1.InvoiceOverdue": lambda d: (
        f"Invoice {d.get('invoice_number', '')} overdue by {d.get('days_overdue', 0)} days:"
        f" {_money(d.get('amount_due', {}))} open"
    ),
    "c360.erp.v1.CreditLimitChanged": lambda d: (
        f"Credit limit set to {_money(d.get('credit_limit', {}))}"
    ),
    "c360.erp.v1.CreditNoteIssued": lambda d: (
        f"Credit note {d.get('credit_note_number', '')} issued: {_money(d.get('amount', {}))}"
        + (f" for invoice {d['invoice_number']}" if d.get("invoice_number") else " on account")
    ),
    "c360.erp.v1.OrderDelivered": lambda d: (
        f"ERP delivered order {d.get('order_number', '')} ({d.get('delivery_reference', '')})"
    ),
}


def empty_account() -> Doc:
    """What the profile knows from the ERP before its first event."""
    return {
        "outstanding": {},
        "overdue_invoices": [],
        "open_invoices": {},
        "last_payment": None,
        "credit_limit": None,
        "paid_total": {},
    }


def _add(balances: Doc, currency: str, amount: str, sign: int = 1) -> None:
    total = Decimal(balances.get(currency, "0")) + sign * Decimal(amount)
    balances[currency] = str(total)


def _invoice_issued(account: Doc, d: Doc) -> None:
    money = d.get("amount", {})
    invoice = account["open_invoices"].setdefault(
        d["invoice_number"], {"paid": "0", "overdue": False}
    )
    invoice.update(
        amount=money["amount"], currency=money["currency"], due_date=d.get("due_date", "")
    )
    if d.get("order_id"):
        invoice["order_id"] = d["order_id"]
    _add(account["outstanding"], money["currency"], money["amount"])


def _payment_received(account: Doc, d: Doc) -> None:
    money = d.get("amount", {})
    _add(account["outstanding"], money["currency"], money["amount"], -1)
    # Everything the customer ever paid, per currency: their lifetime value to segments.
    _add(account.setdefault("paid_total", {}), money["currency"], money["amount"])
    account["last_payment"] = {
        "payment_reference": d.get("payment_reference", ""),
        "amount": money["amount"],
        "currency": money["currency"],
        "received_on": d.get("received_on", ""),
        "invoice_number": d.get("invoice_number", ""),
    }
    number = d.get("invoice_number", "")
    if number:
        invoice = account["open_invoices"].setdefault(number, {"paid": "0", "overdue": False})
        invoice["paid"] = str(Decimal(invoice["paid"]) + Decimal(money["amount"]))


def _credit_note_issued(account: Doc, d: Doc) -> None:
    money = d.get("amount", {})
    _add(account["outstanding"], money["currency"], money["amount"], -1)
    number = d.get("invoice_number", "")
    if number:
        invoice = account["open_invoices"].setdefault(number, {"paid": "0", "overdue": False})
        invoice["credited"] = str(Decimal(invoice.get("credited", "0")) + Decimal(money["amount"]))


def _invoice_overdue(account: Doc, d: Doc) -> None:
    invoice = account["open_invoices"].setdefault(d["invoice_number"], {"paid": "0"})
    invoice["overdue"] = True
    invoice.setdefault("amount", d.get("amount_due", {}).get("amount", "0"))
    invoice.setdefault("currency", d.get("amount_due", {}).get("currency", ""))
    invoice.setdefault("due_date", d.get("due_date", ""))


def _credit_limit_changed(account: Doc, d: Doc) -> None:
    money = d.get("credit_limit", {})
    account["credit_limit"] = {"amount": money["amount"], "currency": money["currency"]}


def _settled(invoice: Doc) -> bool:
    """Its payments and credit notes cover it."""
    amount = invoice.get("amount")
    covered = Decimal(invoice["paid"]) + Decimal(invoice.get("credited", "0"))
    return amount is not None and covered >= Decimal(amount)


def _provenance(p: Doc, before: Doc, entry: Entry) -> None:
    """Name `entry` for every part of the account it changed."""
    after = p[SECTION]
    for currency, amount in after["outstanding"].items():
        if before["outstanding"].get(currency) != amount:
            set_by(p, f"erp.outstanding.{currency}", entry)
    for number in before["open_invoices"]:
        if number not in after["open_invoices"]:
            unset(p, f"erp.open_invoices[{number}]")
    for number, invoice in after["open_invoices"].items():
        if before["open_invoices"].get(number) != invoice:
            set_by(p, f"erp.open_invoices[{number}]", entry)
    for key in ("last_payment", "credit_limit"):
        if before.get(key) != after.get(key):
            set_by(p, f"erp.{key}", entry)


def _account_fold(change: Callable[[Doc, Doc], None]) -> Fold:
    """The fold of one ERP event: its change to the account (from the entry's details),
    settled invoices dropped, overdue ones listed, provenance."""

    def fold(p: Doc, entry: Entry) -> None:
        account = p[SECTION]
        before = copy.deepcopy(account)
        try:
            change(account, entry.details)
        except (KeyError, InvalidOperation):
            pass  # validated on the way in; nothing sensible to add otherwise
        else:
            invoices = account["open_invoices"]
            for number in [n for n, i in invoices.items() if _settled(i)]:
                del invoices[number]
            account["overdue_invoices"] = sorted(n for n, i in invoices.items() if i.get("overdue"))
        _provenance(p, before, entry)

    return fold


def join(p: Doc, other: Doc) -> None:
    """Balances add up per currency; open and overdue invoices are the survivor's then the
    duplicate's not present; last payment and credit limit are the survivor's if it has them."""
    account, theirs = p[SECTION], other[SECTION]
    survivor_currencies = set(account["outstanding"])
    for currency, amount in theirs["outstanding"].items():
        total = Decimal(account["outstanding"].get(currency, "0")) + Decimal(amount)
        account["outstanding"][currency] = str(total)
        if currency not in survivor_currencies:
            copy_provenance(p, other, f"erp.outstanding.{currency}")
    for currency, amount in theirs.get("paid_total", {}).items():
        _add(account.setdefault("paid_total", {}), currency, amount)
    for number, invoice in theirs["open_invoices"].items():
        if number not in account["open_invoices"]:
            account["open_invoices"][number] = invoice
            copy_provenance(p, other, f"erp.open_invoices[{number}]")
    account["overdue_invoices"] = sorted(
        {*account["overdue_invoices"], *theirs["overdue_invoices"]}
    )
    for key in ("last_payment", "credit_limit"):
        if account.get(key) is None and theirs.get(key) is not None:
            account[key] = theirs[key]
            copy_provenance(p, other, f"erp.{key}")


PLUGIN = SourcePlugin(
    name=SOURCE,
    summaries=SUMMARIES,
    folds={
        "invoice.issued": _account_fold(_invoice_issued),
        "payment.received": _account_fold(_payment_received),
        "credit_note.issued": _account_fold(_credit_note_issued),
        "invoice.overdue": _account_fold(_invoice_overdue),
        "credit_limit.changed": _account_fold(_credit_limit_changed),
    },
    section=SECTION,
    empty_section=empty_account,
    join=join,
    # An invoice or a payment is bookkeeping, not a contact with the customer.
    contact=False,
)
