"""The customer application: commands and queries over the Customer aggregate (an
`eventsourcing.Application`, so saves are atomic and the notification log is the outbox)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Mapper, StoredEvent

from c360_customer import domain, duplicates
from c360_customer.domain import Customer
from c360_platform import keywrap
from c360_platform.cpu import MapperOf
from c360_platform.errors import InvalidArgument, NotFound, PreconditionFailed
from c360_platform.keyring import INDEX_KEYS, KEYS, Keyring, SealingMapper
from c360_platform.pii import BlindIndex, Keys, Sealer, Sealing, new_key, reveal
from c360_platform.store import (
    ROW_TABLE,
    AllOf,
    AnyOf,
    CommandContext,
    CommandOutcome,
    Decision,
    Eq,
    Ne,
    Overlaps,
    QueryTable,
    RowQuery,
    ServiceApplication,
    schema_for,
)

DIRECTORY = QueryTable(
    name="directory",
    columns=(
        ("customer_id", "uuid"),
        ("kind", "text NOT NULL"),
        ("display_name", "text NOT NULL"),
        ("name_key", "text NOT NULL"),
        ("name_words", "text[] NOT NULL"),
        ("emails", "text[] NOT NULL"),
        ("phones", "text[] NOT NULL"),
        # Merged customers are not candidates; an unmerge makes them candidates again.
        ("merged", "boolean NOT NULL DEFAULT false"),
        ("email_values", "text[] NOT NULL DEFAULT '{}'"),
        ("phone_values", "text[] NOT NULL DEFAULT '{}'"),
        # Forgotten customers keep a row without personal data, and are never candidates.
        ("forgotten", "boolean NOT NULL DEFAULT false"),
    ),
    indexes=(("name_key",),),
    gin_indexes=("emails", "phones", "name_words"),
)
"""One row per customer for duplicate detection, kept in the same transaction as the
customer's events. It holds no personal data in clear: `name_key`, `name_words`, `emails` and
`phones` are blind indexes (keyed hashes, from `duplicates` and the contact points; `emails`
of each address and its mailbox, `duplicates.contact_keys`) that find candidates;
`display_name`, `email_values` and `phone_values` are sealed with the customer's key and
revealed to score the candidates."""

SEALER = Sealer(domain.PERSONAL_FIELDS, owners=domain.PERSONAL_DATA_OF)
DIRECTORY_INDEX = "directory"
IMPORT_IDS = "import ids"
"""The key imported customers' ids are derived with (`domain.id_for_external_key`)."""
"""The name of the directory's blind-index key in `INDEX_KEYS`."""

MAX_CANDIDATE_ROWS = 1000
"""At most this many directory rows are scored for one customer (exact matches first)."""


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


@dataclass(frozen=True)
class PreparedCustomer:
    """A validated import row, ready to store: its customer's id, the customer's first
    events (sealed and encoded for the store), its directory row and its key."""

    row: int
    customer_id: UUID
    events: list[StoredEvent]
    rows: list[dict[str, Any]]
    legacy_id: UUID
    """The id the row's key gave before ids were keyed: a customer under it was imported."""


@dataclass
class PreparedImport:
    """A validated batch: the customers to create, and (row, reason) for the rejected rows."""

    customers: list[PreparedCustomer] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


def prepare_rows(
    mapper: Mapper[UUID], rows: list[ImportRow], index_key: bytes, id_key: bytes
) -> PreparedImport:
    """Validate rows and build, seal and encode their customers, each with a new key: CPU
    only, no I/O, so that it can run in a process of the CPU pool (`c360_platform.cpu`; the
    mapper travels with it, and the directory's index key and the import key)."""
    assert isinstance(mapper, SealingMapper)
    keyring = mapper.keyring
    assert isinstance(keyring, Keyring)
    index = BlindIndex(index_key)
    prepared = PreparedImport()
    for row in rows:
        try:
            customer = domain.import_customer(row.external_key, id_key, **row.fields)
        except InvalidArgument as bad:
            prepared.rejected.append((row.row, str(bad)))
            continue
        key_row = keyring.create(customer.id)
        key = keyring.lookup([customer.id])[customer.id]  # the row holds it wrapped (keywrap)
        try:
            events = [mapper.to_stored_event(e) for e in customer.collect_events()]
        finally:
            keyring.settle([customer.id], saved=False)
        prepared.customers.append(
            PreparedCustomer(
                row.row,
                customer.id,
                events,
                [directory_row(customer, index, key), key_row],
                domain.legacy_id_for_external_key(row.external_key.strip()),
            )
        )
    return prepared


def prepare_rows_in_pool(
    mapper: MapperOf, rows: list[ImportRow], index_key: bytes, id_key: bytes
) -> PreparedImport:
    """`prepare_rows` in a process of the CPU pool."""
    return prepare_rows(mapper.get(), rows, index_key, id_key)


IMPORT_CHUNKS_IN_FLIGHT = 4
"""Batches of an import being validated in the CPU pool at once (ahead of the store)."""


def directory_row(customer: Customer, index: BlindIndex, key: bytes | None) -> dict[str, Any]:
    """The customer's row of the directory: blind indexes and values sealed under `key` (a
    forgotten customer's row, or one without a key, holds none)."""
    row: dict[str, Any] = {
        "customer_id": customer.id,
        "kind": customer.kind,
        "display_name": "",
        "name_key": "",
        "name_words": [],
        "emails": [],
        "phones": [],
        "email_values": [],
        "phone_values": [],
        "merged": bool(customer.merged_into),
        "forgotten": customer.forgotten_at is not None,
    }
    if customer.forgotten_at is not None or key is None:
        return row
    name = duplicates.name_key(customer.display_name, customer.kind)
    seal = Sealing(key, customer.id)
    return {
        **row,
        "display_name": seal(customer.display_name),
        "name_key": index(name) if name else "",
        "name_words": index.all(duplicates.name_words(name)),
        "emails": index.all(duplicates.contact_keys(customer.emails)),
        "phones": index.all(customer.phones),
        "email_values": [seal(e) for e in customer.emails],
        "phone_values": [seal(p) for p in customer.phones],
    }


MAX_CHAIN = 100
"""Merge chains longer than this are refused when resolved (they cannot arise: a survivor
must not be merged itself, so chains have no cycles; the cap guards against bad data)."""


@dataclass(frozen=True)
class CustomerView:
    """What GetCustomer answers: the customer's own state; for a merged customer, the final
    survivor of its chain; for a survivor, the duplicates merged into it (transitively, in
    merge order) and the combined view."""

    customer: Customer
    merged_into: str = ""
    absorbed: list[Customer] = field(default_factory=list)

    @property
    def combined(self) -> domain.Combined:
        return domain.combine(self.customer, self.absorbed)


class CustomerApplication(ServiceApplication):
    """Customers: registration, contact points, owner, tags, consent, contact persons."""

    source = "customer"
    name = schema_for(source)
    # No snapshots: a snapshot would hold the customer's personal data outside its events.
    query_table = DIRECTORY
    more_tables = (KEYS, INDEX_KEYS)

    sealer = SEALER

    def __init__(self, env: Any = None, **kwargs: Any) -> None:
        self.keyring = self.key_table = Keyring(lambda query: self.rows(query))
        """The customers' keys (the key table, `keyring.KEYS`): events are sealed with them."""
        self._index: BlindIndex | None = None
        self._index_key = self._import_key = b""
        super().__init__(env, keys=self.keyring, **kwargs)

    @property
    def index_key(self) -> bytes:
        """The directory's blind-index key: made by the first process that needs it."""
        if not self._index_key:
            self._index_key = self._named_key(DIRECTORY_INDEX)
        return self._index_key

    @property
    def import_key(self) -> bytes:
        """The key imported customers' ids are derived with: made by the first import."""
        if not self._import_key:
            self._import_key = self._named_key(IMPORT_IDS)
        return self._import_key

    def _named_key(self, name: str) -> bytes:
        """The deployment's key of this name (the table is written once: of two processes
        making it at once, both read the first one's)."""
        query = RowQuery(Eq("name", name), table=INDEX_KEYS.name)
        found = self.rows(query)
        if not found:
            stored = keywrap.wrap(new_key(), name.encode())
            self.event_recorder.upsert_rows(
                [{ROW_TABLE: INDEX_KEYS.name, "name": name, "key": stored}]
            )
            found = self.rows(query)
        return keywrap.unwrap(bytes(found[0]["key"]), name.encode())

    @property
    def index(self) -> BlindIndex:
        if self._index is None:
            self._index = BlindIndex(self.index_key)
        return self._index

    def query_rows(self, aggregate: Aggregate) -> list[dict[str, Any]]:
        """The customer's directory row and, with its first event (or the first event since
        sealing began), its new key; with its Forgotten event, its key's deletion."""
        if not isinstance(aggregate, Customer):
            return []
        if aggregate.forgotten_at is not None:
            forgotten = any(isinstance(e, Customer.Forgotten) for e in aggregate.pending_events)
            keys = [self.keyring.forget(aggregate.id, aggregate.forgotten_at)] if forgotten else []
            return [directory_row(aggregate, self.index, None), *keys]
        created = bool(aggregate.pending_events) and (
            aggregate.pending_events[0].originator_version == 1
        )
        known = {} if created else self.keyring.lookup([aggregate.id])
        key_rows = [self.keyring.create(aggregate.id)] if aggregate.id not in known else []
        key = self.keyring.lookup([aggregate.id]).get(aggregate.id)
        return [directory_row(aggregate, self.index, key), *key_rows]

    def data_keys(self, customer_ids: list[UUID]) -> Keys:
        """The keys of these customers (None: forgotten); customers without one are left out
        (`GetDataKeys`, for the consumers that reveal what the customer events seal)."""
        return self.keyring.lookup(customer_ids)

    default_region = ""
    """The country of phone numbers given without a country code, when the request names
    none (C360_DEFAULT_REGION); "" refuses such numbers."""

    def register(self, ctx: CommandContext, **fields: Any) -> CommandOutcome:
        fields["default_region"] = fields.get("default_region") or self.default_region
        # The domain's registration reads nothing: a retry is told by its request id when
        # it is appended, not asked for first.
        return self.create(ctx, lambda: domain.register_customer(**fields), pure=True)

    def load_active(self, customer_id: UUID, expected_version: int | None = None) -> Customer:
        """The customer for a command: FAILED_PRECONDITION naming the final survivor if it was
        merged into another."""
        customer = self.load(Customer, customer_id, expected_version)
        customer.refuse_if_forgotten()
        if customer.merged_into:
            survivor = self.final_survivor(customer)
            raise PreconditionFailed(
                f"customer {customer_id} was merged into {survivor}; use {survivor}"
            )
        return customer

    def final_survivor(self, customer: Customer, as_of: datetime | None = None) -> str:
        """The end of a merged customer's chain (A into B, B into C: C)."""
        current = customer
        for _ in range(MAX_CHAIN):
            if not current.merged_into:
                return str(current.id)
            current = self.get_customer(UUID(current.merged_into), as_of)
        raise PreconditionFailed(f"the merge chain of customer {customer.id} is too long")

    def absorbed_group(self, survivor: Customer, as_of: datetime | None = None) -> list[Customer]:
        """The duplicates merged into `survivor`, transitively, depth first in merge order."""
        group: list[Customer] = []
        pending: list[str] = list(reversed(list(survivor.absorbed)))
        while pending and len(group) < MAX_CHAIN * MAX_CHAIN:
            duplicate = self.get_customer(UUID(pending.pop()), as_of)
            group.append(duplicate)
            pending.extend(reversed(list(duplicate.absorbed)))
        return group

    def view(self, customer_id: UUID, as_of: datetime | None = None) -> CustomerView:
        customer = self.get_customer(customer_id, as_of)
        if customer.merged_into:
            return CustomerView(customer, merged_into=self.final_survivor(customer, as_of))
        return CustomerView(customer, absorbed=self.absorbed_group(customer, as_of))

    def merge(
        self, ctx: CommandContext, survivor_id: UUID, duplicate_id: UUID, reason: str
    ) -> CommandOutcome:
        """Merge the duplicate into the survivor: one event on each, saved together."""

        def decide() -> Decision[Customer]:
            if survivor_id == duplicate_id:
                raise InvalidArgument.one("duplicate_id", "must differ from survivor_id")
            survivor = self.load(Customer, survivor_id)
            duplicate = self.load(Customer, duplicate_id)
            if survivor.merged_into:
                final = self.final_survivor(survivor)
                raise PreconditionFailed(
                    f"customer {survivor_id} was merged into {final}; merge into {final}"
                )
            if duplicate.merged_into:
                final = self.final_survivor(duplicate)
                raise PreconditionFailed(f"customer {duplicate_id} was merged into {final} already")
            merge_id = domain.merge_customers(
                survivor,
                duplicate,
                reason,
                survivor_consents=CustomerView(
                    survivor, absorbed=self.absorbed_group(survivor)
                ).combined.consents,
                duplicate_consents=CustomerView(
                    duplicate, absorbed=self.absorbed_group(duplicate)
                ).combined.consents,
            )
            return Decision(survivor, [duplicate, survivor], {"merge_id": merge_id})

        return self.execute(ctx, decide)

    def unmerge(self, ctx: CommandContext, duplicate_id: UUID) -> CommandOutcome:
        """Undo a duplicate's merge: one event on it and one on its (direct) survivor."""

        def decide() -> Decision[Customer]:
            duplicate = self.load(Customer, duplicate_id)
            if not duplicate.merged_into:
                raise PreconditionFailed(f"customer {duplicate_id} is not merged")
            survivor = self.load(Customer, UUID(duplicate.merged_into))
            merge_id = domain.unmerge_customer(duplicate, survivor)
            return Decision(duplicate, [duplicate, survivor], {"merge_id": merge_id})

        return self.execute(ctx, decide)

    def forget(self, ctx: CommandContext, customer_id: UUID, with_merged: bool) -> CommandOutcome:
        """Erase a customer on request (and, `with_merged`, the duplicates merged into it;
        see `domain.forget_customers`): a Forgotten event on each, saved with the deletion of
        their keys, so what their events sealed can no longer be read anywhere. The ids
        forgotten are in `extra["forgotten_ids"]` (comma-separated)."""

        def decide() -> Decision[Customer]:
            customer = self.load(Customer, customer_id)
            group = domain.forget_customers(
                customer, self.absorbed_group(customer), self.clock(), with_merged=with_merged
            )
            ids = ",".join(str(c.id) for c in group)
            changed: list[Aggregate] = list(group)
            return Decision(customer, changed, {"forgotten_ids": ids})

        return self.execute(ctx, decide)

    def _change(
        self,
        ctx: CommandContext,
        customer_id: UUID,
        expected_version: int | None,
        act: Callable[[Customer], dict[str, str] | None],
    ) -> CommandOutcome:
        """A command on one customer that has not been merged into another."""
        return self.change(
            ctx,
            Customer,
            customer_id,
            expected_version,
            act,
            load=lambda _, i, v: self.load_active(i, v),
        )

    def rename(
        self, ctx: CommandContext, customer_id: UUID, version: int | None, display_name: str
    ) -> CommandOutcome:
        return self._change(ctx, customer_id, version, lambda c: c.rename(display_name))

    def add_email(
        self, ctx: CommandContext, customer_id: UUID, version: int | None, email: str
    ) -> CommandOutcome:
        return self._change(ctx, customer_id, version, lambda c: c.add_email(email))

    def _remove_shown(
        self,
        ctx: CommandContext,
        customer_id: UUID,
        version: int | None,
        holds: Callable[[Customer], bool],
        remove: Callable[[Customer], None],
    ) -> CommandOutcome:
        """Remove a contact point or address the customer shows: its own and, on a survivor,
        that of every duplicate merged into it holding it too (the combined view shows
        theirs, and a duplicate takes no commands of its own while merged); each removal is
        recorded on its holder, so an unmerge gives a duplicate back without the value.
        NOT_FOUND when none holds it."""

        def decide() -> Decision[Customer]:
            customer = self.load_active(customer_id, version)
            members = [customer, *self.absorbed_group(customer)]
            holders = [m for m in members if not m.forgotten_at and holds(m)] or [customer]
            for holder in holders:
                remove(holder)  # NOT_FOUND on the customer when none holds it
            return Decision(customer, list(holders))

        return self.execute(ctx, decide)

    def remove_email(
        self, ctx: CommandContext, customer_id: UUID, version: int | None, email: str
    ) -> CommandOutcome:
        return self._remove_shown(
            ctx,
            customer_id,
            version,
            lambda c: c.holds_email(email),
            lambda c: c.remove_email(email),
        )

    def add_phone(
        self,
        ctx: CommandContext,
        customer_id: UUID,
        version: int | None,
        phone: str,
        default_region: str = "",
    ) -> CommandOutcome:
        region = default_region or self.default_region
        return self._change(ctx, customer_id, version, lambda c: c.add_phone(phone, region))

    def remove_phone(
        self,
        ctx: CommandContext,
        customer_id: UUID,
        version: int | None,
        phone: str,
        default_region: str = "",
    ) -> CommandOutcome:
        region = default_region or self.default_region
        return self._remove_shown(
            ctx,
            customer_id,
            version,
            lambda c: c.holds_phone(phone, region),
            lambda c: c.remove_phone(phone, region),
        )

    def add_postal_address(
        self,
        ctx: CommandContext,
        customer_id: UUID,
        version: int | None,
        address: dict[str, Any],
    ) -> CommandOutcome:
        """Returns the new address's id in `extra["address_id"]`."""
        return self._change(
            ctx,
            customer_id,
            version,
            lambda c: {"address_id": c.add_postal_address(address)},
        )

    def remove_postal_address(
        self, ctx: CommandContext, customer_id: UUID, version: int | None, address_id: str
    ) -> CommandOutcome:
        return self._remove_shown(
            ctx,
            customer_id,
            version,
            lambda c: any(a["address_id"] == address_id for a in c.addresses),
            lambda c: c.remove_postal_address(address_id),
        )

    def assign_owner(
        self, ctx: CommandContext, customer_id: UUID, version: int | None, owner_id: str
    ) -> CommandOutcome:
        return self._change(ctx, customer_id, version, lambda c: c.assign_owner(owner_id))

    def change_tags(
        self,
        ctx: CommandContext,
        customer_id: UUID,
        version: int | None,
        add: list[str],
        remove: list[str],
    ) -> CommandOutcome:
        """Tags added go to the customer; a tag removed goes from it and, on a survivor, from
        the duplicates merged into it that have it (the combined view shows theirs too)."""

        def decide() -> Decision[Customer]:
            customer = self.load_active(customer_id, version)
            customer.change_tags(add, remove)  # checks the tags first
            changed: list[Aggregate] = [customer]
            if remove:
                for duplicate in self.absorbed_group(customer):
                    if not duplicate.forgotten_at:
                        duplicate.change_tags([], remove)
                        changed.append(duplicate)
            return Decision(customer, changed)

        return self.execute(ctx, decide)

    def decide_consent(
        self,
        ctx: CommandContext,
        customer_id: UUID,
        version: int | None,
        granted: bool,
        channel: str,
        purpose: str,
        source: str,
        recorded_by: str = "",
        decided_at: datetime | None = None,
    ) -> CommandOutcome:
        """Record a consent decision taken at `decided_at` (default: the application's
        clock's now), by `recorded_by` (the caller's token subject)."""

        def decide(customer: Customer) -> None:
            now = self.clock()
            customer.decide_consent(
                granted, channel, purpose, source, decided_at or now, recorded_by, now=now
            )

        return self._change(ctx, customer_id, version, decide)

    def link_contact_person(
        self,
        ctx: CommandContext,
        organisation_id: UUID,
        person_id: UUID,
        role: str,
        valid_from: datetime | None,
    ) -> CommandOutcome:
        def decide() -> Decision[Customer]:
            organisation = self.load_active(organisation_id)
            person = self.load_active(person_id)
            link_id = domain.link_contact_person(
                organisation, person, role, valid_from or self.clock()
            )
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
            organisation = self.load_active(organisation_id)
            # A survivor shows the links of the organisations merged into it: one of theirs
            # is ended on the member that holds it.
            holder = next(
                (
                    member
                    for member in (organisation, *self.absorbed_group(organisation))
                    if link_id in member.links
                ),
                None,
            )
            if holder is None:
                raise NotFound(
                    f"organisation {organisation_id} has no contact-person link {link_id}"
                )
            person = self.load(Customer, UUID(holder.links[link_id]["person_id"]))
            domain.end_contact_person(holder, person, link_id, valid_until or self.clock())
            return Decision(organisation, [holder, person])

        return self.execute(ctx, decide)

    def prepare_import(self, rows: list[ImportRow], seen: set[UUID]) -> PreparedImport:
        """Validate a batch of rows and build their customers (CPU only, no I/O).

        `seen` holds the ids of earlier rows of the same import, so that a repeated external
        key is reported wherever it repeats.
        """
        return self.dedupe(prepare_rows(self.mapper, rows, self.index_key, self.import_key), seen)

    @staticmethod
    def dedupe(prepared: PreparedImport, seen: set[UUID]) -> PreparedImport:
        """Reject the rows whose external key an earlier row of the import had (`seen`)."""
        kept = PreparedImport(rejected=list(prepared.rejected))
        for customer in prepared.customers:
            if customer.customer_id in seen:
                kept.rejected.append((customer.row, "external_key: repeats an earlier row"))
                continue
            seen.add(customer.customer_id)
            kept.customers.append(customer)
        return kept

    def store_import(self, prepared: PreparedImport) -> ImportReport:
        """Save the new customers of a prepared batch in one transaction (through the
        group-commit writer if there is one); customers whose external key was imported
        before are left unchanged."""
        report = ImportReport(rejected=list(prepared.rejected))
        for attempt in (1, 2, 3):
            known = self.event_recorder.existing(
                [i for c in prepared.customers for i in (c.customer_id, c.legacy_id)]
            )
            new = [
                c
                for c in prepared.customers
                if c.customer_id not in known and c.legacy_id not in known
            ]
            events = [e for c in new for e in c.events]
            rows = [row for c in new for row in c.rows]
            try:
                ids = self.record_stored(events, rows) if new else []
            except IntegrityError:
                if attempt == 3:
                    raise
                continue  # a concurrent import created some of them: look again
            report.unchanged = len(prepared.customers) - len(new)
            report.created = len(new)
            report.position = max(ids, default=0)
            break
        return report

    def find_imported(self, external_keys: list[str]) -> list[UUID | None]:
        """The customer imported under each external key (keyed id, or the name-based one an
        import gave before), None where there is none."""
        keys = [k.strip() for k in external_keys]
        keyed = [domain.id_for_external_key(k, self.import_key) for k in keys]
        legacy = [domain.legacy_id_for_external_key(k) for k in keys]
        known = self.event_recorder.existing([*keyed, *legacy])
        return [
            k if k in known else (old if old in known else None)
            for k, old in zip(keyed, legacy, strict=True)
        ]

    def import_batch(self, rows: list[ImportRow]) -> ImportReport:
        """Validate and store one batch of rows (one commit)."""
        return self.store_import(self.prepare_import(rows, set()))

    def importer(self, pool: Callable[[], Executor | None] | None = None) -> Importer:
        """An import in batches: each batch is validated (in the processes of the executor
        `pool` gives, if any) while the one before is stored."""
        return Importer(self, pool)

    def get_customer(self, customer_id: UUID, as_of: datetime | None = None) -> Customer:
        """The customer now, or as it was at `as_of`: replayed up to its last event recorded
        at or before then (NOT_FOUND if it did not exist yet)."""
        if as_of is None:
            return self.load(Customer, customer_id)
        version = None
        for event in self.events.get(customer_id):
            if getattr(event, "timestamp") > as_of:  # noqa: B009 (not in the protocol)
                break  # the state at a time is a prefix of the history
            version = event.originator_version
        if version is None:
            raise NotFound(f"customer {customer_id} did not exist at {as_of.isoformat()}")
        aggregate: Any = self.repository.get(customer_id, version=version)
        if not isinstance(aggregate, Customer):
            raise NotFound(f"customer {customer_id} does not exist")
        return aggregate

    # -- duplicates ---------------------------------------------------------------------------

    def find_duplicates(self, customer_id: UUID, limit: int) -> list[duplicates.Candidate]:
        """The customer's likely duplicates, best first: directory rows sharing an e-mail, a
        phone, the name key or a long name word (blind indexes, all indexed), revealed and
        scored by `duplicates.rank`. A survivor is looked at with its combined contact
        points; a row of a customer merged into another stands for that survivor (the
        group's own members are never candidates). A merged customer is FAILED_PRECONDITION
        naming its survivor, whose duplicates are its."""
        customer = self.get_customer(customer_id)
        if customer.forgotten_at is not None:
            raise PreconditionFailed(f"customer {customer_id} is forgotten")
        if customer.merged_into:
            survivor = self.final_survivor(customer)
            raise PreconditionFailed(
                f"customer {customer_id} was merged into {survivor}: look for the duplicates"
                f" of {survivor}"
            )
        group = self.absorbed_group(customer)
        combined = domain.combine(customer, group)
        subject = duplicates.Identity(
            customer_id=str(customer.id),
            kind=customer.kind,
            display_name=customer.display_name,
            emails=tuple(combined.emails),
            phones=tuple(combined.phones),
        )
        own = {customer.id, *(d.id for d in group)}
        key = duplicates.name_key(subject.display_name, subject.kind)
        index = self.index
        exact = AnyOf(
            (
                Overlaps("emails", index.all(duplicates.contact_keys(subject.emails))),
                Overlaps("phones", index.all(subject.phones)),
                *([Eq("name_key", index(key))] if key else []),
            )
        )
        query = RowQuery(
            AllOf(
                (
                    *(Ne("customer_id", member) for member in sorted(own)),
                    Eq("kind", subject.kind),
                    Eq("forgotten", False),
                    AnyOf((exact, Overlaps("name_words", index.all(duplicates.name_words(key))))),
                )
            ),
            prefer=exact,
            limit=MAX_CANDIDATE_ROWS,
        )
        rows = self.rows(query)
        merged = {str(row["customer_id"]) for row in rows if row["merged"]}
        found: list[duplicates.Candidate] = []
        seen = {str(member) for member in own}
        for candidate in duplicates.rank(subject, self._identities(rows)):  # best first
            target, reasons = candidate.customer_id, candidate.reasons
            if target in merged:
                final = self.get_customer(
                    UUID(self.final_survivor(self.get_customer(UUID(target))))
                )
                if final.forgotten_at is not None:
                    continue
                reasons = (*reasons, f"through {target}, merged into it")
                target = str(final.id)
            if target in seen:
                continue
            seen.add(target)
            found.append(duplicates.Candidate(target, candidate.score, reasons))
            if len(found) >= limit:
                break
        return found

    def duplicate_report(self, min_score: float) -> list[duplicates.Pair]:
        """Every pair of likely duplicates over all customers, each once, best first (the
        whole directory is read, revealed and blocked in memory: fine for tens of
        thousands)."""
        rows = self.rows(RowQuery(Eq("forgotten", False)))
        identities = self._identities(rows)
        pairs = duplicates.find_pairs(identities, max(min_score, duplicates.CANDIDATE_SCORE))
        # A merged customer stands for its final survivor (as in find_duplicates): a pair
        # within one group is no pair, and a pair met through several members is one.
        merged = {str(row["customer_id"]) for row in rows if row["merged"]}
        survivors: dict[str, str | None] = {}

        def standing_for(customer_id: str) -> str | None:
            if customer_id not in merged:
                return customer_id
            if customer_id not in survivors:
                final = self.get_customer(
                    UUID(self.final_survivor(self.get_customer(UUID(customer_id))))
                )
                survivors[customer_id] = None if final.forgotten_at else str(final.id)
            return survivors[customer_id]

        found: dict[tuple[str, str], duplicates.Pair] = {}
        for pair in pairs:  # best first
            a, b = standing_for(pair.customer_id), standing_for(pair.duplicate_id)
            if a is None or b is None or a == b:
                continue
            through = [
                f"through {original}, merged into it"
                for original, standing in ((pair.customer_id, a), (pair.duplicate_id, b))
                if original != standing
            ]
            first, second = sorted((a, b))
            found.setdefault(
                (first, second),
                duplicates.Pair(first, second, pair.score, (*pair.reasons, *through)),
            )
        return sorted(found.values(), key=lambda p: (-p.score, p.customer_id, p.duplicate_id))

    def _identities(self, rows: list[dict[str, Any]]) -> list[duplicates.Identity]:
        """Directory rows revealed with their customers' keys (rows without one are left
        out: nothing of them can be compared)."""
        keys = self.keyring.keys(row["customer_id"] for row in rows)
        return [_identity(row, keys) for row in rows if keys.get(row["customer_id"])]


class Importer:
    """One bulk import: batches are validated (CPU) in the caller's thread, or from the second
    batch on in the CPU pool's processes when there is one (several batches at once: an import
    of one batch never waits for the pool to start), while the batch before is stored by a
    thread of the import's own; stores run one at a time, in row order."""

    def __init__(
        self, app: CustomerApplication, pool: Callable[[], Executor | None] | None = None
    ) -> None:
        self.app = app
        self._pool_of = pool
        self.pool: Executor | None = None
        self._batches = 0
        self.report = ImportReport()
        self.seen: set[UUID] = set()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import")
        self._storing: Future[ImportReport] | None = None
        self._preparing: deque[Future[PreparedImport]] = deque()

    def reject(self, row: int, reason: str) -> None:
        """A row refused before validation (e.g. an enum value the API could not read)."""
        self.report.rejected.append((row, reason))

    def _collect(self) -> None:
        if self._storing is not None:
            done = self._storing.result()
            self._storing = None
            self.report.created += done.created
            self.report.unchanged += done.unchanged
            self.report.rejected.extend(done.rejected)
            self.report.position = max(self.report.position, done.position)

    def _store(self, prepared: PreparedImport) -> None:
        """Hand a validated batch to the store once the batch before is stored."""
        kept = self.app.dedupe(prepared, self.seen)
        self._collect()
        self._storing = self._writer.submit(self.app.store_import, kept)

    def add(self, rows: list[ImportRow]) -> None:
        """Validate a batch (in the pool, or here), then store it after the ones before."""
        self._batches += 1
        if self._batches == 2 and self._pool_of is not None:
            self.pool = self._pool_of()
        if self.pool is None:
            self._store(
                prepare_rows(self.app.mapper, rows, self.app.index_key, self.app.import_key)
            )
            return
        mapper = MapperOf.of(self.app)
        self._preparing.append(
            self.pool.submit(
                prepare_rows_in_pool, mapper, rows, self.app.index_key, self.app.import_key
            )
        )
        while len(self._preparing) > IMPORT_CHUNKS_IN_FLIGHT:
            self._store(self._preparing.popleft().result())

    def finish(self) -> ImportReport:
        """Wait for the last store; the whole import's report (rejections by row)."""
        try:
            while self._preparing:
                self._store(self._preparing.popleft().result())
            self._collect()
        finally:
            for pending in self._preparing:
                pending.cancel()
            self._writer.shutdown(wait=True)
        if self.report.position == 0:
            self.report.position = self.app.head()
        self.report.rejected.sort()
        return self.report

    def run(self, batches: Iterable[list[ImportRow]]) -> ImportReport:
        """Import every batch (a convenience for callers that have them all)."""
        try:
            for batch in batches:
                self.add(batch)
        finally:
            report = self.finish()
        return report


def _identity(row: dict[str, Any], keys: Keys) -> duplicates.Identity:
    return duplicates.Identity(
        customer_id=str(row["customer_id"]),
        kind=row["kind"],
        display_name=reveal(row["display_name"], keys),
        emails=tuple(reveal(e, keys) for e in row["email_values"]),
        phones=tuple(reveal(p, keys) for p in row["phone_values"]),
    )
