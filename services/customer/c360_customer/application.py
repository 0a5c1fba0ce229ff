"""The customer application: commands and queries over the Customer aggregate (an
`eventsourcing.Application`, so saves are atomic and the notification log is the outbox)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from c360_customer import domain
from c360_customer.domain import Customer
from c360_platform.errors import InvalidArgument, NotFound
from c360_platform.store import CommandContext, CommandOutcome, Decision, ServiceApplication


@dataclass(frozen=True)
class ImportRow:
    """One row of a bulk import: its number, its external key and the registration fields."""

    row: int
    external_key: str
    fields: dict[str, Any]


@dataclass
class ImportReport:
    """What an import did: created, unchanged, and (row, reason) for each rejected row."""

    created: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    position: int = 0


@dataclass
class PreparedImport:
    """A validated batch: the customers to create, and (row, reason) for the rejected rows."""

    customers: list[Customer] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(UTC)


class CustomerApplication(ServiceApplication):
    """Customers: registration, contact points, owner, tags, consent, contact persons."""

    name = "Customer"
    source = "customer"
    snapshotting_intervals = {Customer: 100}

    def register(self, ctx: CommandContext, **fields: Any) -> CommandOutcome:
        def decide() -> Decision[Customer]:
            customer = domain.register_customer(**fields)
            return Decision(customer, [customer])

        return self.execute(ctx, decide)

    def update(
        self,
        ctx: CommandContext,
        customer_id: UUID,
        expected_version: int | None,
        change: str,
        *args: Any,
    ) -> CommandOutcome:
        """Apply one of the Customer's command methods by name (rename, add_email, ...)."""

        def decide() -> Decision[Customer]:
            customer = self.load(Customer, customer_id, expected_version)
            result = getattr(customer, change)(*args)
            extra = {"address_id": result} if change == "add_postal_address" else {}
            return Decision(customer, [customer], extra)

        return self.execute(ctx, decide)

    def decide_consent(
        self,
        ctx: CommandContext,
        customer_id: UUID,
        expected_version: int | None,
        granted: bool,
        channel: str,
        purpose: str,
        source: str,
    ) -> CommandOutcome:
        def decide() -> Decision[Customer]:
            customer = self.load(Customer, customer_id, expected_version)
            customer.decide_consent(granted, channel, purpose, source, _now())
            return Decision(customer, [customer])

        return self.execute(ctx, decide)

    def link_contact_person(
        self,
        ctx: CommandContext,
        organisation_id: UUID,
        person_id: UUID,
        role: str,
        valid_from: datetime | None,
    ) -> CommandOutcome:
        def decide() -> Decision[Customer]:
            organisation = self.load(Customer, organisation_id)
            person = self.load(Customer, person_id)
            link_id = domain.link_contact_person(organisation, person, role, valid_from or _now())
            return Decision(organisation, [organisation, person], {"link_id": link_id})

        return self.execute(ctx, decide)

    def end_contact_person(
        self,
        ctx: CommandContext,
        organisation_id: UUID,
        link_id: str,
        valid_until: datetime | None,
    ) -> CommandOutcome:
        def decide() -> Decision[Customer]:
            organisation = self.load(Customer, organisation_id)
            link = organisation.links.get(link_id)
            if link is None:
                raise NotFound(
                    f"organisation {organisation_id} has no contact-person link {link_id}"
                )
            person = self.load(Customer, UUID(link["person_id"]))
            domain.end_contact_person(organisation, person, link_id, valid_until or _now())
            return Decision(organisation, [organisation, person])

        return self.execute(ctx, decide)

    def prepare_import(self, rows: list[ImportRow], seen: set[UUID]) -> PreparedImport:
        """Validate a batch of rows and build their customers (CPU only, no I/O).

        `seen` holds the ids of earlier rows of the same import, so that a repeated external
        key is reported wherever it repeats.
        """
        prepared = PreparedImport()
        for row in rows:
            try:
                customer = domain.import_customer(row.external_key, **row.fields)
            except InvalidArgument as bad:
                prepared.rejected.append((row.row, str(bad)))
                continue
            if customer.id in seen:
                prepared.rejected.append((row.row, "external_key: repeats an earlier row"))
                continue
            seen.add(customer.id)
            prepared.customers.append(customer)
        return prepared

    def store_import(self, prepared: PreparedImport) -> ImportReport:
        """Save the new customers of a prepared batch in one transaction; customers whose
        external key was imported before are left unchanged."""
        report = ImportReport(rejected=list(prepared.rejected))
        for attempt in (1, 2, 3):
            known = self.event_recorder.existing([c.id for c in prepared.customers])
            new = [c for c in prepared.customers if c.id not in known]
            try:
                recordings = self.save(*new) if new else []
            except IntegrityError:
                if attempt == 3:
                    raise
                continue  # a concurrent import created some of them: look again
            report.unchanged = len(prepared.customers) - len(new)
            report.created = len(new)
            if recordings:
                report.position = max(r.notification.id for r in recordings)
            break
        return report

    def import_batch(self, rows: list[ImportRow]) -> ImportReport:
        """Validate and store one batch of rows (one commit)."""
        return self.store_import(self.prepare_import(rows, set()))

    def get_customer(self, customer_id: UUID) -> Customer:
        return self.load(Customer, customer_id)
