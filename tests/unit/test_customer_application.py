"""The customer service's application and API in memory: bad input, refusals, idempotent
replay, conflicts, merge chains, imports and duplicates, with no servers."""

from __future__ import annotations

import multiprocessing
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from c360.customer.v1 import customer_service_pb2 as capi
from c360.events.v1 import customer_events_pb2 as ev
from c360_customer.api import CustomerServicer
from c360_customer.application import CustomerApplication, ImportRow
from c360_customer.domain import (
    id_for_external_key,
    legacy_id_for_external_key,
    register_customer,
)
from c360_platform import pii
from c360_platform.errors import InvalidArgument, NotFound, PreconditionFailed, VersionConflict
from c360_platform.store import CommandContext, RowQuery

from .support import CALL, Clock, bad_fields, command_ctx, outcome_lookups, refused


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(clock: Clock) -> CustomerApplication:
    return CustomerApplication.in_memory(clock=clock)


@pytest.fixture
def api(app: CustomerApplication) -> CustomerServicer:
    return CustomerServicer(app)


def registration(name: str, email: str, request_id: str = "") -> capi.RegisterCustomerRequest:
    return capi.RegisterCustomerRequest(
        request_id=request_id,
        kind=ev.CUSTOMER_KIND_PERSON,
        display_name=name,
        emails=[email],
    )


async def register(api: CustomerServicer, name: str, email: str) -> str:
    reply = await api.RegisterCustomer(registration(name, email), CALL)
    return str(reply.result.aggregate_id)


BAD_REQUESTS: list[tuple[str, str, Any, list[str]]] = [
    ("RegisterCustomer", "bad e-mail", registration("Ada", "not-an-address"), ["emails[0]"]),
    (
        "RegisterCustomer",
        "bad phone",
        capi.RegisterCustomerRequest(
            kind=ev.CUSTOMER_KIND_PERSON, display_name="Ada", phones=["12345"]
        ),
        ["phones[0]"],
    ),
    ("RegisterCustomer", "empty name", registration("  ", "ada@example.com"), ["display_name"]),
    ("RegisterCustomer", "long name", registration("x" * 300, "ada@example.com"), ["display_name"]),
    (
        "RegisterCustomer",
        "no kind",
        capi.RegisterCustomerRequest(display_name="Ada", emails=["ada@example.com"]),
        ["kind"],
    ),
    (
        "RegisterCustomer",
        "bad tag and owner",
        capi.RegisterCustomerRequest(
            kind=ev.CUSTOMER_KIND_ORGANISATION,
            display_name="ACME",
            tags=["not ok"],
            owner_id="bob smith",
        ),
        ["owner_id", "tags[0]"],
    ),
    (
        "RegisterCustomer",
        "bad address",
        capi.RegisterCustomerRequest(
            kind=ev.CUSTOMER_KIND_PERSON,
            display_name="Ada",
            addresses=[ev.PostalAddress(lines=["1 Road"], city="Paris", country="France")],
        ),
        ["addresses[0].country"],
    ),
    (
        "RenameCustomer",
        "bad id",
        capi.RenameCustomerRequest(customer_id="42", display_name="A"),
        ["customer_id"],
    ),
    (
        "GrantConsent",
        "no channel",
        capi.GrantConsentRequest(
            customer_id="00000000-0000-0000-0000-000000000001",
            purpose=ev.CONSENT_PURPOSE_MARKETING,
            source="web",
        ),
        ["channel"],
    ),
    (
        "RevokeConsent",
        "nothing but the customer",
        capi.RevokeConsentRequest(customer_id="00000000-0000-0000-0000-000000000001"),
        ["channel", "purpose", "source"],
    ),
    (
        "LinkContactPerson",
        "self link",
        capi.LinkContactPersonRequest(
            organisation_id="00000000-0000-0000-0000-000000000001",
            person_id="00000000-0000-0000-0000-000000000001",
            role="buyer",
        ),
        ["person_id"],
    ),
]


@pytest.mark.parametrize(
    ("method", "what", "request_message", "fields"),
    BAD_REQUESTS,
    ids=[b[1] for b in BAD_REQUESTS],
)
async def test_bad_input_names_the_fields_and_stores_nothing(
    api: CustomerServicer, method: str, what: str, request_message: Any, fields: list[str]
) -> None:
    assert await bad_fields(getattr(api, method)(request_message, CALL)) == fields, what
    assert api.app.event_recorder.count_events() == 0


async def test_commands_on_a_registered_customer_validate_too(api: CustomerServicer) -> None:
    cid = await register(api, "Ada Lovelace", "ada@example.com")
    refusal = await refused(
        api.AddEmail(capi.AddEmailRequest(customer_id=cid, email="ada@"), CALL), InvalidArgument
    )
    assert str(refusal) == "email: not a valid address"
    assert await bad_fields(
        api.ChangeTags(capi.ChangeTagsRequest(customer_id=cid, add=["ok", "not ok"]), CALL)
    ) == ["add[1]"]
    assert api.app.event_recorder.count_events() == 1


async def test_missing_customers_and_impossible_links_are_refused(api: CustomerServicer) -> None:
    nobody = "00000000-0000-0000-0000-000000000001"
    await refused(api.GetCustomer(capi.GetCustomerRequest(customer_id=nobody), CALL), NotFound)
    await refused(
        api.RenameCustomer(capi.RenameCustomerRequest(customer_id=nobody, display_name="X"), CALL),
        NotFound,
    )
    ada = await register(api, "Ada Lovelace", "ada@example.com")
    bob = await register(api, "Bob", "bob@example.com")
    link = capi.LinkContactPersonRequest(organisation_id=ada, person_id=bob, role="buyer")
    refusal = await refused(api.LinkContactPerson(link, CALL), PreconditionFailed)
    assert "not an organisation" in str(refusal)
    assert api.app.event_recorder.count_events() == 2


async def test_a_retry_replays_the_first_answer_and_a_reused_id_is_refused(
    api: CustomerServicer,
) -> None:
    request = registration("Ada Lovelace", "ada@example.com", request_id="reg-1")
    first = await api.RegisterCustomer(request, CALL)
    again = await api.RegisterCustomer(request, CALL)
    assert (again.result.aggregate_id, again.result.replayed) == (first.result.aggregate_id, True)
    assert again.result.consistency_token == first.result.consistency_token
    cid = first.result.aggregate_id
    address = capi.AddPostalAddressRequest(
        request_id="addr-1",
        customer_id=cid,
        address=ev.PostalAddress(lines=["Unter den Linden 1"], city="Berlin", country="DE"),
    )
    added = await api.AddPostalAddress(address, CALL)
    retried = await api.AddPostalAddress(address, CALL)
    assert (retried.address_id, retried.result.replayed) == (added.address_id, True)
    assert await bad_fields(
        api.RegisterCustomer(registration("Someone Else", "x@example.com", "reg-1"), CALL)
    ) == ["request_id"]
    assert api.app.event_recorder.count_events() == 2


async def test_a_registration_does_not_look_its_request_id_up_first(
    api: CustomerServicer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RegisterCustomer decides from its input alone: a first request is appended without a
    look for its request id; a retry is told when its append meets the id recorded."""
    recorder = api.app.event_recorder
    looked_up = outcome_lookups(monkeypatch, api.app)
    request = registration("Ada Lovelace", "ada@example.com", request_id="reg-2")
    first = await api.RegisterCustomer(request, CALL)
    assert looked_up == []
    again = await api.RegisterCustomer(request, CALL)
    assert looked_up == ["reg-2"]
    assert (again.result.aggregate_id, again.result.replayed) == (first.result.aggregate_id, True)
    assert recorder.count_events() == 1


async def test_a_stale_expected_version_is_a_conflict(api: CustomerServicer) -> None:
    cid = await register(api, "Ada Lovelace", "ada@example.com")
    await api.RenameCustomer(
        capi.RenameCustomerRequest(customer_id=cid, display_name="Ada King", expected_version=1),
        CALL,
    )
    refusal = await refused(
        api.RenameCustomer(
            capi.RenameCustomerRequest(customer_id=cid, display_name="A", expected_version=1),
            CALL,
        ),
        VersionConflict,
    )
    assert "is at version 2, not 1" in str(refusal)


async def test_consent_decisions_are_taken_at_the_clock_of_the_application(
    api: CustomerServicer, clock: Clock
) -> None:
    cid = await register(api, "Ada Lovelace", "ada@example.com")
    decided = clock.advance(hours=3)
    await api.GrantConsent(
        capi.GrantConsentRequest(
            customer_id=cid,
            channel=ev.CONSENT_CHANNEL_EMAIL,
            purpose=ev.CONSENT_PURPOSE_MARKETING,
            source="web-form",
        ),
        CALL,
    )
    customer = api.app.get_customer(UUID(cid))
    assert customer.consents["email/marketing"]["decided_at"] == decided


async def test_consent_from_a_signed_form_keeps_the_date_it_was_signed(
    api: CustomerServicer,
) -> None:
    cid = await register(api, "Ada Lovelace", "ada@example.com")
    signed = Timestamp()
    signed.FromDatetime(api.app.clock() - timedelta(days=3))
    await api.GrantConsent(
        capi.GrantConsentRequest(
            customer_id=cid,
            channel=ev.CONSENT_CHANNEL_POST,
            purpose=ev.CONSENT_PURPOSE_MARKETING,
            source="signed form",
            decided_at=signed,
        ),
        CALL,
    )
    [consent] = (
        await api.GetCustomer(capi.GetCustomerRequest(customer_id=cid), CALL)
    ).customer.consents
    assert consent.decided_at == signed


async def _merge(api: CustomerServicer, survivor: str, duplicate: str) -> Any:
    request = capi.MergeCustomersRequest(
        survivor_id=survivor, duplicate_id=duplicate, reason="same person"
    )
    return await api.MergeCustomers(request, CALL)


async def test_merge_chains_resolve_to_the_last_survivor_and_bad_merges_are_refused(
    api: CustomerServicer,
) -> None:
    a = await register(api, "Ada A", "a@example.com")
    b = await register(api, "Ada B", "b@example.com")
    c = await register(api, "Ada C", "c@example.com")
    org = await api.RegisterCustomer(
        capi.RegisterCustomerRequest(kind=ev.CUSTOMER_KIND_ORGANISATION, display_name="Ada Ltd"),
        CALL,
    )
    assert await bad_fields(_merge(api, a, a)) == ["duplicate_id"]
    await refused(_merge(api, org.result.aggregate_id, a), PreconditionFailed)

    await _merge(api, b, a)
    assert b in str(await refused(_merge(api, a, c), PreconditionFailed))
    assert b in str(await refused(_merge(api, c, a), PreconditionFailed))

    await _merge(api, c, b)
    pointer = (await api.GetCustomer(capi.GetCustomerRequest(customer_id=a), CALL)).customer
    assert pointer.merged_into == c
    refusal = await refused(
        api.AddEmail(capi.AddEmailRequest(customer_id=a, email="x@example.com"), CALL),
        PreconditionFailed,
    )
    assert f"was merged into {c}; use {c}" in str(refusal)
    top = (await api.GetCustomer(capi.GetCustomerRequest(customer_id=c), CALL)).customer
    assert list(top.absorbed) == [b, a]
    assert list(top.emails) == ["c@example.com", "b@example.com", "a@example.com"]

    # unmerging the middle of the chain takes its own duplicate with it
    await api.UnmergeCustomer(capi.UnmergeCustomerRequest(customer_id=b), CALL)
    pointer = (await api.GetCustomer(capi.GetCustomerRequest(customer_id=a), CALL)).customer
    assert pointer.merged_into == b
    top = (await api.GetCustomer(capi.GetCustomerRequest(customer_id=c), CALL)).customer
    assert list(top.absorbed) == []
    await refused(api.UnmergeCustomer(capi.UnmergeCustomerRequest(customer_id=c), CALL))


async def test_a_survivor_rectifies_what_a_duplicate_merged_into_it_holds(
    api: CustomerServicer,
) -> None:
    """What the survivor shows it can remove, though a duplicate holds it: the duplicate
    itself refuses commands while merged."""
    survivor = await register(api, "Hana Novak", "hana@example.cz")
    twin = await api.RegisterCustomer(
        capi.RegisterCustomerRequest(
            kind=ev.CUSTOMER_KIND_PERSON,
            display_name="Hana Nováková",
            emails=["hana.old@example.cz"],
            phones=["+420 601 123 456"],
            addresses=[ev.PostalAddress(lines=["Old Street 1"], city="Brno", country="CZ")],
        ),
        CALL,
    )
    duplicate = twin.result.aggregate_id
    await _merge(api, survivor, duplicate)
    shown = (await api.GetCustomer(capi.GetCustomerRequest(customer_id=survivor), CALL)).customer
    [address] = shown.addresses
    await api.RemoveEmail(
        capi.RemoveEmailRequest(customer_id=survivor, email="Hana.Old@example.cz"), CALL
    )
    await api.RemovePhone(
        capi.RemovePhoneRequest(customer_id=survivor, phone="+420601123456"), CALL
    )
    await api.RemovePostalAddress(
        capi.RemovePostalAddressRequest(customer_id=survivor, address_id=address.address_id),
        CALL,
    )
    shown = (await api.GetCustomer(capi.GetCustomerRequest(customer_id=survivor), CALL)).customer
    assert (list(shown.emails), list(shown.phones), list(shown.addresses)) == (
        ["hana@example.cz"],
        [],
        [],
    )
    # Recorded on the duplicate that held them: unmerged, it comes back without them.
    await api.UnmergeCustomer(capi.UnmergeCustomerRequest(customer_id=duplicate), CALL)
    back = api.app.get_customer(UUID(duplicate))
    assert (back.emails, back.phones, back.addresses) == ([], [], [])
    assert api.app.get_customer(UUID(survivor)).emails == ["hana@example.cz"]
    # An address both hold (duplicates often share one) goes from both.
    await api.AddEmail(capi.AddEmailRequest(customer_id=duplicate, email="h@example.cz"), CALL)
    await api.AddEmail(capi.AddEmailRequest(customer_id=survivor, email="h@example.cz"), CALL)
    await _merge(api, survivor, duplicate)
    await api.RemoveEmail(capi.RemoveEmailRequest(customer_id=survivor, email="h@example.cz"), CALL)
    shown = (await api.GetCustomer(capi.GetCustomerRequest(customer_id=survivor), CALL)).customer
    assert list(shown.emails) == ["hana@example.cz"]
    # What none holds is NOT_FOUND, as before.
    await refused(
        api.RemoveEmail(capi.RemoveEmailRequest(customer_id=survivor, email="x@example.cz"), CALL),
        NotFound,
    )


async def test_a_tag_removed_on_a_survivor_goes_from_its_duplicates_too(
    api: CustomerServicer,
) -> None:
    survivor = await register(api, "Hana Novak", "hana@example.cz")
    twin = await api.RegisterCustomer(
        capi.RegisterCustomerRequest(
            kind=ev.CUSTOMER_KIND_PERSON, display_name="Hana N.", tags=["vip", "b2c"]
        ),
        CALL,
    )
    duplicate = twin.result.aggregate_id
    await _merge(api, survivor, duplicate)
    await api.ChangeTags(
        capi.ChangeTagsRequest(customer_id=survivor, add=["newsletter"], remove=["vip"]), CALL
    )
    shown = (await api.GetCustomer(capi.GetCustomerRequest(customer_id=survivor), CALL)).customer
    assert list(shown.tags) == ["newsletter", "b2c"]
    assert api.app.get_customer(UUID(duplicate)).tags == ["b2c"]


async def test_a_survivor_ends_a_contact_person_link_of_an_organisation_merged_into_it(
    api: CustomerServicer,
) -> None:
    orgs = [
        await api.RegisterCustomer(
            capi.RegisterCustomerRequest(kind=ev.CUSTOMER_KIND_ORGANISATION, display_name=name),
            CALL,
        )
        for name in ("ACME GmbH", "Acme")
    ]
    survivor, duplicate = (o.result.aggregate_id for o in orgs)
    person = await register(api, "Ada Lovelace", "ada@example.com")
    link = await api.LinkContactPerson(
        capi.LinkContactPersonRequest(organisation_id=duplicate, person_id=person, role="buyer"),
        CALL,
    )
    await _merge(api, survivor, duplicate)
    shown = (await api.GetCustomer(capi.GetCustomerRequest(customer_id=survivor), CALL)).customer
    assert [x.link_id for x in shown.contact_persons] == [link.link_id]
    await api.EndContactPerson(
        capi.EndContactPersonRequest(organisation_id=survivor, link_id=link.link_id), CALL
    )
    shown = (await api.GetCustomer(capi.GetCustomerRequest(customer_id=survivor), CALL)).customer
    assert [x.HasField("valid_until") for x in shown.contact_persons] == [True]
    assert api.app.get_customer(UUID(person)).current_links() == []


async def _rows(items: list[capi.ImportRow]) -> AsyncIterator[capi.ImportCustomersRequest]:
    for start in range(0, len(items), 70):
        yield capi.ImportCustomersRequest(rows=items[start : start + 70])


def import_rows(count: int) -> list[capi.ImportRow]:
    out = []
    for i in range(count):
        row = capi.ImportRow(
            row=i + 2,
            external_key=f"crm-{i}",
            kind=ev.CUSTOMER_KIND_PERSON,
            display_name=f"Imported Person {i}",
            emails=[f"imported{i}@example.com"],
        )
        if i % 100 == 7:
            row.emails[:] = ["broken@"]
        if i % 100 == 9:
            row.kind = ev.CUSTOMER_KIND_UNSPECIFIED
        out.append(row)
    return out


async def test_an_import_rejects_bad_rows_by_number_and_a_second_creates_nothing(
    api: CustomerServicer,
) -> None:
    batch = import_rows(300)
    repeat = capi.ImportRow()
    repeat.CopyFrom(batch[0])
    repeat.row = 999
    batch.append(repeat)  # in a later batch than the first occurrence
    first = await api.ImportCustomers(_rows(batch), CALL)
    assert (first.created, first.unchanged) == (294, 0)
    assert [(r.row, r.reason) for r in first.rejected][:2] == [
        (9, "emails[0]: not a valid address"),
        (11, "kind: must be one of person, organisation"),
    ]
    assert (999, "external_key: repeats an earlier row") in [
        (r.row, r.reason) for r in first.rejected
    ]
    again = await api.ImportCustomers(_rows(batch), CALL)
    assert (again.created, again.unchanged, len(again.rejected)) == (0, 294, 7)
    assert api.app.event_recorder.count_events() == 294
    key = api.app.import_key
    assert api.app.get_customer(id_for_external_key("crm-0", key)).display_name == (
        "Imported Person 0"
    )


def test_the_importer_stores_batches_in_order_while_validating_the_next(
    app: CustomerApplication,
) -> None:
    def row(n: int, key: str, email: str) -> ImportRow:
        fields = {"kind": "person", "display_name": f"P {n}", "emails": [email], "phones": []}
        return ImportRow(n, key, {**fields, "addresses": []})

    report = app.importer().run(
        [
            [row(2, "k1", "a@example.com"), row(3, "k2", "bad@")],
            [row(4, "k3", "c@example.com"), row(5, "k1", "d@example.com")],
        ]
    )
    assert (report.created, report.unchanged) == (2, 0)
    assert report.rejected == [
        (3, "emails[0]: not a valid address"),
        (5, "external_key: repeats an earlier row"),
    ]
    assert report.position == app.head() == 2


def test_imported_ids_need_the_deployments_key_and_old_imports_stay(
    app: CustomerApplication,
) -> None:
    """An imported customer's id is not computable from its external key (often an e-mail
    address) without the deployment's import key; a row imported under the name-based id
    given before is found there, not created again."""
    other = CustomerApplication.in_memory()
    key = "ada.lovelace@example.com"
    assert id_for_external_key(key, app.import_key) != id_for_external_key(key, other.import_key)
    assert id_for_external_key(key, app.import_key) != legacy_id_for_external_key(key)
    assert app.import_key == app.import_key != app.index_key

    fields: dict[str, Any] = {"kind": "person", "phones": [], "addresses": []}
    before = register_customer(
        customer_id=legacy_id_for_external_key("crm-7"),
        display_name="Old Import",
        emails=["old@example.com"],
        **fields,
    )
    app.save(before)
    rows = [
        ImportRow(1, "crm-7", {**fields, "display_name": "Old Import", "emails": []}),
        ImportRow(2, "crm-8", {**fields, "display_name": "New Import", "emails": []}),
    ]
    report = app.import_batch(rows)
    assert (report.created, report.unchanged) == (1, 1)
    assert app.get_customer(id_for_external_key("crm-8", app.import_key)).display_name == (
        "New Import"
    )
    assert app.event_recorder.existing([id_for_external_key("crm-7", app.import_key)]) == set()
    again = app.import_batch(rows)
    assert (again.created, again.unchanged) == (0, 2)
    # The source system learns the ids from c360: it cannot compute them.
    assert app.find_imported(["crm-7", " crm-8 ", "crm-9"]) == [
        before.id,
        id_for_external_key("crm-8", app.import_key),
        None,
    ]


async def test_find_imported_answers_each_key_and_refuses_bad_ones(
    api: CustomerServicer,
) -> None:
    row = capi.ImportRow(
        row=1, external_key="crm-1", kind=ev.CUSTOMER_KIND_PERSON, display_name="Imported"
    )

    async def rows() -> AsyncIterator[capi.ImportCustomersRequest]:
        yield capi.ImportCustomersRequest(rows=[row])

    await api.ImportCustomers(rows(), CALL)
    found = await api.FindImported(capi.FindImportedRequest(external_keys=["crm-2", "crm-1"]), CALL)
    assert [(c.external_key, c.customer_id) for c in found.customers] == [
        ("crm-2", ""),
        ("crm-1", str(id_for_external_key("crm-1", api.app.import_key))),
    ]
    assert await bad_fields(
        api.FindImported(capi.FindImportedRequest(external_keys=["ok", " ", "x" * 129]), CALL)
    ) == ["external_keys[1]", "external_keys[2]"]
    assert await bad_fields(
        api.FindImported(capi.FindImportedRequest(external_keys=["k"] * 1001), CALL)
    ) == ["external_keys"]


def test_an_import_validated_in_a_process_pool_gives_the_same_report(
    app: CustomerApplication,
) -> None:
    def row(n: int, key: str, email: str) -> ImportRow:
        fields = {"kind": "person", "display_name": f"P {n}", "emails": [email], "phones": []}
        return ImportRow(n, key, {**fields, "addresses": []})

    batches = [
        [row(10 * b + i, f"k{10 * b + i}", f"p{10 * b + i}@example.com") for i in range(5)]
        for b in range(8)
    ]
    batches[3].append(row(39, "k1", "again@example.com"))  # repeats a row of batch 0
    batches[6].append(row(69, "k70", "bad@"))
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=spawn) as pool:
        report = app.importer(lambda: pool).run(batches)
    assert (report.created, report.unchanged) == (40, 0)
    assert report.rejected == [
        (39, "external_key: repeats an earlier row"),
        (69, "emails[0]: not a valid address"),
    ]
    assert report.position == app.head() == 40
    # Stored in row order, with their directory rows.
    log = app.event_recorder.select_with_metadata(0, 100)
    assert [n.originator_id for n, _ in log] == [
        id_for_external_key(f"k{n}", app.import_key) for n in range(80) if n % 10 < 5
    ]
    assert len(app.rows(RowQuery())) == 40
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        again = app.importer(lambda: pool).run(batches)
    assert (again.created, again.unchanged) == (0, 40)


async def test_duplicates_by_email_in_another_case_and_a_transliterated_name(
    api: CustomerServicer,
) -> None:
    a = await register(api, "Jānis Žirnovskis", "Janis.Z@Example.LV")
    b = await register(api, "Janis Zhirnovskis", "janis.z@example.lv")
    stranger = await register(api, "Ada Lovelace", "ada@example.com")
    found = await api.FindDuplicates(capi.FindDuplicatesRequest(customer_id=a), CALL)
    assert [c.customer_id for c in found.candidates] == [b]
    assert list(found.candidates[0].reasons) == [
        "same e-mail janis.z@example.lv",
        "same name when transliterated",
    ]
    assert found.candidates[0].score > 0.95
    alone = await api.FindDuplicates(capi.FindDuplicatesRequest(customer_id=stranger), CALL)
    assert list(alone.candidates) == []
    report = [
        p
        async for reply in api.DuplicateReport(capi.DuplicateReportRequest(), CALL)
        for p in reply.pairs
    ]
    assert [(p.customer_id, p.duplicate_id) for p in report] == [tuple(sorted((a, b)))]

    imported = await api.ImportCustomers(
        _rows(
            [
                capi.ImportRow(
                    row=2,
                    external_key="crm-janis",
                    kind=ev.CUSTOMER_KIND_PERSON,
                    display_name="Janis Zirnovskis",
                    emails=["jz@example.org"],
                )
            ]
        ),
        CALL,
    )
    assert imported.created == 1
    imported_id = str(id_for_external_key("crm-janis", api.app.import_key))
    found = await api.FindDuplicates(capi.FindDuplicatesRequest(customer_id=a), CALL)
    assert {c.customer_id for c in found.candidates} == {b, imported_id}
    found = await api.FindDuplicates(
        capi.FindDuplicatesRequest(customer_id=imported_id, limit=1), CALL
    )
    assert [list(c.reasons) for c in found.candidates] == [["same name when transliterated"]]
    missing = capi.FindDuplicatesRequest(customer_id=str(id_for_external_key("nobody", b"k")))
    await refused(api.FindDuplicates(missing, CALL), NotFound)


async def test_a_merged_customer_is_no_candidate_until_it_is_unmerged(
    api: CustomerServicer,
) -> None:
    a = await register(api, "Jānis Žirnovskis", "janis@example.lv")
    b = await register(api, "Janis Zhirnovskis", "janis@example.lv")
    c = await register(api, "Jānis Žirnovskis", "j.z@example.lv")

    async def candidates(of: str) -> list[str]:
        found = await api.FindDuplicates(capi.FindDuplicatesRequest(customer_id=of), CALL)
        return sorted(x.customer_id for x in found.candidates)

    assert await candidates(a) == sorted([b, c])
    await _merge(api, a, b)
    assert await candidates(a) == [c]
    assert await candidates(c) == [a]
    # The merged customer's duplicates are its survivor's: asked of it, refused naming it.
    refusal = await refused(
        api.FindDuplicates(capi.FindDuplicatesRequest(customer_id=b), CALL), PreconditionFailed
    )
    assert f"merged into {a}" in str(refusal)
    await api.UnmergeCustomer(capi.UnmergeCustomerRequest(customer_id=b), CALL)
    assert await candidates(a) == sorted([b, c])


async def test_a_survivor_meets_duplicates_of_what_was_merged_into_it(
    api: CustomerServicer,
) -> None:
    """A third record sharing only the merged duplicate's e-mail is a duplicate of the
    survivor, seen from either side."""
    survivor = await register(api, "Hana Novak", "hana@example.cz")
    duplicate = await register(api, "Hana Novakova", "hana.old@example.cz")
    await _merge(api, survivor, duplicate)
    third = await register(api, "H. Dvorak", "hana.old@example.cz")
    of_survivor = await api.FindDuplicates(capi.FindDuplicatesRequest(customer_id=survivor), CALL)
    assert [(c.customer_id, list(c.reasons)) for c in of_survivor.candidates] == [
        (third, ["same e-mail hana.old@example.cz"])
    ]
    # The report over everyone: one pair, between the survivor and the third.
    [pair] = api.app.duplicate_report(0.5)
    assert {pair.customer_id, pair.duplicate_id} == {survivor, third}
    assert f"through {duplicate}, merged into it" in pair.reasons
    of_third = await api.FindDuplicates(capi.FindDuplicatesRequest(customer_id=third), CALL)
    assert [(c.customer_id, list(c.reasons)) for c in of_third.candidates] == [
        (
            survivor,
            ["same e-mail hana.old@example.cz", f"through {duplicate}, merged into it"],
        )
    ]


def test_typed_commands_carry_what_they_create(app: CustomerApplication, clock: Clock) -> None:
    org = app.register(
        CommandContext(),
        kind="organisation",
        display_name="ACME",
        emails=[],
        phones=[],
        addresses=[],
    )
    ada = app.register(
        CommandContext(), kind="person", display_name="Ada", emails=[], phones=[], addresses=[]
    )
    linked = app.link_contact_person(
        CommandContext(), org.aggregate_id, ada.aggregate_id, "buyer", None
    )
    link_id = linked.extra["link_id"]
    assert app.get_customer(ada.aggregate_id).links[link_id]["valid_from"] == clock.now
    clock.advance(days=30)
    app.end_contact_person(CommandContext(), org.aggregate_id, link_id, None)
    assert app.get_customer(ada.aggregate_id).links[link_id]["valid_until"] == clock.now


def test_labels_agents_type_are_sealed_and_a_role_goes_with_the_persons_erasure(
    app: CustomerApplication,
) -> None:
    """An acquisition source, a consent's source and a contact person's role are texts an
    agent types ("referral from <a name>"): sealed in the store like the names, the role
    under the person's key, so that forgetting the person leaves the organisation's link
    without it."""
    person = app.register(
        command_ctx("p"),
        kind="person",
        display_name="Ada Lovelace",
        emails=["ada@example.com"],
        phones=[],
        addresses=[],
        acquisition_source="referral from Jane Roe",
    ).aggregate_id
    org = app.register(
        command_ctx("o"),
        kind="organisation",
        display_name="Analytical Engines Ltd",
        emails=[],
        phones=[],
        addresses=[],
    ).aggregate_id
    app.decide_consent(
        command_ctx("c", "GrantConsent"),
        person,
        None,
        True,
        "email",
        "marketing",
        "phone call with Jane Roe",
    )
    app.link_contact_person(
        command_ctx("l", "LinkContactPerson"), org, person, "Chief Engine Officer", None
    )
    stored = b"".join(e.state for i in (person, org) for e in app.recorder.select_events(i))
    for text in (b"Jane Roe", b"Chief Engine Officer"):
        assert text not in stored
    # The service reads them as they were typed.
    ada = app.get_customer(person)
    assert ada.acquisition_source == "referral from Jane Roe"
    assert ada.consents["email/marketing"]["source"] == "phone call with Jane Roe"
    linked = app.get_customer(org).current_links()
    assert [link["role"] for link in linked] == ["Chief Engine Officer"]
    # The role is the person's: sealed under the person's key, not the organisation's.
    link_event = app.recorder.select_events(org)[-1]
    assert pii.subjects([link_event.state.decode()]) == {person}
    app.forget(command_ctx("f", "ForgetCustomer"), person, with_merged=False)
    after = app.get_customer(org).current_links()
    assert [link["role"] for link in after] == [pii.FORGOTTEN]
    assert app.get_customer(org).display_name == "Analytical Engines Ltd"
