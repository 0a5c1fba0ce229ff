"""Crypto-shredding in memory: sealing and revealing values, the personal fields of customer
events sealed in the store and as published, and ForgetCustomer (no servers)."""

from __future__ import annotations

import base64
import hmac
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.utils import get_topic
from hypothesis import given
from hypothesis import strategies as st

from c360.customer.v1 import customer_service_pb2 as capi
from c360.events.v1 import customer_events_pb2 as ev
from c360.events.v1 import ticket_events_pb2 as tev
from c360.sales.v1 import sales_service_pb2 as sapi
from c360.service_desk.v1 import service_desk_service_pb2 as dapi
from c360_customer.api import CustomerServicer
from c360_customer.application import CustomerApplication, ImportRow
from c360_customer.contract import CONTRACT
from c360_customer.domain import Customer
from c360_platform import pii
from c360_platform.context import ContextReader
from c360_platform.errors import PreconditionFailed
from c360_platform.keyring import LocalKeys
from c360_platform.store import Eq, RowQuery, ServiceApplication
from c360_sales.api import SalesServicer
from c360_sales.application import SalesApplication
from c360_sales.domain import Lead
from c360_service_desk.api import ServiceDeskServicer
from c360_service_desk.application import ServiceDeskApplication
from c360_service_desk.domain import Ticket

from .support import CALL, Clock, refused

NAME, EMAIL, PHONE, STREET = "Zoë Quartermaine", "zoe@example.org", "+4930901820", "Hinterhof 7"


def test_a_sealed_value_opens_with_its_customers_key_only() -> None:
    key, other = pii.new_key(), pii.new_key()
    a, b = uuid.uuid4(), uuid.uuid4()
    token = pii.seal(key, a, NAME)
    assert NAME not in token
    assert pii.is_sealed(token)
    assert token == pii.seal(key, a, NAME)  # deterministic: equal values compare equal
    assert pii.seal(key, a, "Zoe") != token
    assert pii.reveal(f"Renamed to “{token}”.", {a: key}) == f"Renamed to “{NAME}”."
    assert pii.reveal(token, {a: other}) == pii.FORGOTTEN  # a wrong key opens nothing
    assert pii.reveal(token, {a: None}) == pii.FORGOTTEN
    moved = token.replace(a.hex, b.hex)  # the customer id is associated data
    assert pii.reveal(moved, {b: key}) == pii.FORGOTTEN
    assert pii.seal(key, a, "") == ""
    assert pii.seal(key, a, token) == token


def test_reveal_all_opens_values_and_keys_of_nested_documents() -> None:
    key, a = pii.new_key(), uuid.uuid4()
    email = pii.seal(key, a, EMAIL)
    doc = {"emails": [email], "provenance": {f"emails[{email}]": {"n": 1}}, "n": 3}
    assert pii.subjects(doc) == {a}
    assert pii.reveal_all(doc, {a: key}) == {
        "emails": [EMAIL],
        "provenance": {f"emails[{EMAIL}]": {"n": 1}},
        "n": 3,
    }


_ids = st.uuids()
_tokens = st.builds(lambda i, n: pii.seal(pii.new_key(), i, f"v{n}"), _ids, st.integers(0, 9))
_texts = st.one_of(st.text(max_size=12), _tokens, st.builds("“{}” x".format, _tokens))
_leaves = st.one_of(_texts, st.integers(), st.none(), st.booleans(), st.datetimes(), _ids)
_values = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(_texts, inner, max_size=4),
    ),
    max_leaves=20,
)


@given(_values)
def test_subjects_finds_what_a_walk_of_the_value_finds(value: Any) -> None:
    # The JSON scan and the walk in Python agree, ids and times beside sealed values included.
    assert pii.subjects(value) == pii._subjects_walk(value)


_CUSTOMERS = [uuid.uuid4() for _ in range(3)]
_KEYS = {c: pii.new_key() for c in _CUSTOMERS}
_READER = {**_KEYS, _CUSTOMERS[2]: None}  # the third customer is forgotten
_sealed = st.builds(
    lambda c, text, limit: (
        pii.clip(pii.seal(_KEYS[c], c, text), limit) if limit else pii.seal(_KEYS[c], c, text)
    ),
    st.sampled_from(_CUSTOMERS),
    st.text(min_size=1, max_size=12),  # quotes, backslashes, any character
    st.one_of(st.none(), st.integers(1, 20)),
)
_json_texts = st.one_of(
    st.text(max_size=12), _sealed, st.builds("“{}” \\ {}".format, _sealed, _sealed)
)
_json_read = st.recursive(
    st.one_of(_json_texts, st.integers(), st.floats(allow_nan=False), st.none(), _ids),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_json_texts, inner, max_size=4)
    ),
    max_leaves=20,
)


@given(st.lists(_json_read, max_size=6))
def test_reveal_items_opens_what_the_walk_opens(items: list[Any]) -> None:
    # Sealed values with characters JSON escapes, cut to a snippet, of a forgotten customer,
    # as keys; beside infinity and integers past 64 bits, which JSON text does not hold.
    assert pii.reveal_items(items, _READER) == pii.reveal_all(items, _READER)


def test_subjects_walks_a_value_json_cannot_write() -> None:
    a = uuid.uuid4()
    token = pii.seal(pii.new_key(), a, NAME)
    assert pii.subjects({("a", 1): [token]}) == {a}


def test_the_blind_index_compares_without_the_value() -> None:
    index = pii.BlindIndex(pii.new_key())
    assert index(EMAIL) == index(EMAIL) != index("zoe@example.com")
    assert EMAIL not in index(EMAIL)
    assert pii.BlindIndex(pii.new_key())(EMAIL) != index(EMAIL)


@pytest.fixture
def app() -> CustomerApplication:
    return CustomerApplication.in_memory(clock=Clock())


@pytest.fixture
def api(app: CustomerApplication) -> CustomerServicer:
    return CustomerServicer(app)


async def _register(api: CustomerServicer, name: str = NAME, email: str = EMAIL) -> str:
    reply = await api.RegisterCustomer(
        capi.RegisterCustomerRequest(
            kind=ev.CUSTOMER_KIND_PERSON,
            display_name=name,
            emails=[email],
            phones=[PHONE],
            addresses=[ev.PostalAddress(lines=[STREET], city="Berlin", country="DE")],
        ),
        CALL,
    )
    return reply.result.aggregate_id


def _stored_states(app: ServiceApplication) -> list[str]:
    """Every stored event's state, as text."""
    states: list[str] = []
    start = 1
    while batch := app.notification_log.select(start=start, limit=10):
        states += [n.state.decode() for n in batch]
        start = batch[-1].id + 1
    return states


def _stored_text(app: ServiceApplication) -> str:
    """Every stored event's state and every directory row, as text."""
    events = _stored_states(app)
    return " ".join(events) + " ".join(str(r) for r in app.rows(RowQuery()))


async def test_personal_fields_are_sealed_in_the_store_and_as_published(
    app: CustomerApplication, api: CustomerServicer
) -> None:
    cid = await _register(api)
    await api.AddEmail(capi.AddEmailRequest(customer_id=cid, email="z2@example.org"), CALL)
    stored = _stored_text(app)
    for clear in (NAME, EMAIL, "z2@example.org", PHONE, STREET):
        assert clear not in stored, clear
    assert "Berlin" not in stored
    assert '"DE"' in stored
    customer = app.get_customer(UUID(cid))
    assert (customer.display_name, customer.emails) == (NAME, [EMAIL, "z2@example.org"])
    # As published: the relay reads with the mapper that keeps the values sealed.
    [first, *_] = app.notification_log.select(start=1, limit=10)
    published = CONTRACT.publication(app.publishing_mapper.to_domain_event(first)).payload
    assert isinstance(published, ev.CustomerRegistered)
    assert pii.is_sealed(published.display_name)
    assert pii.is_sealed(published.emails[0])
    keys = app.data_keys([UUID(cid)])
    assert pii.reveal(published.display_name, keys) == NAME


async def test_duplicates_are_found_through_blind_indexes(
    app: CustomerApplication, api: CustomerServicer
) -> None:
    a = await _register(api)
    b = await _register(api, "Zoe Quartermaine", EMAIL)
    [found] = app.find_duplicates(UUID(a), 10)
    assert found.customer_id == b
    assert f"same e-mail {EMAIL}" in found.reasons
    [pair] = app.duplicate_report(0.5)
    assert {pair.customer_id, pair.duplicate_id} == {a, b}


async def test_a_subaddress_finds_its_mailbox_through_the_blind_indexes(
    app: CustomerApplication, api: CustomerServicer
) -> None:
    a = await _register(api, "Zoe Q.", "zoe+shop@example.org")
    b = await _register(api, "Quartermaine", "zoe@example.org")
    [found] = app.find_duplicates(UUID(a), 10)
    assert (found.customer_id, found.reasons[0]) == (b, "same mailbox zoe@example.org")
    [found] = app.find_duplicates(UUID(b), 10)
    assert found.customer_id == a


async def _merged_pair(api: CustomerServicer) -> tuple[str, str]:
    """A survivor and the duplicate merged into it."""
    survivor = await _register(api)
    twin = await _register(api, "Zoe Q.", "zq@example.org")
    await api.MergeCustomers(
        capi.MergeCustomersRequest(survivor_id=survivor, duplicate_id=twin, reason="same"), CALL
    )
    return survivor, twin


async def test_a_forgotten_customer_cannot_be_read_or_changed(
    app: CustomerApplication, api: CustomerServicer
) -> None:
    survivor, twin = await _merged_pair(api)
    reply = await api.ForgetCustomer(
        capi.ForgetCustomerRequest(customer_id=survivor, with_merged=True), CALL
    )
    assert list(reply.forgotten_ids) == [survivor, twin]
    for cid in (survivor, twin):
        customer = app.get_customer(UUID(cid))
        assert (customer.display_name, customer.emails, customer.phones) == (
            pii.FORGOTTEN,
            [],
            [],
        )
        assert customer.forgotten_at is not None
    assert app.data_keys([UUID(survivor), UUID(twin)]) == {UUID(survivor): None, UUID(twin): None}
    # The history stays, unreadable: the state as of before the forget shows no data.
    history = list(app.events.get(UUID(survivor)))
    assert [type(e).__name__ for e in history][-1] == "Forgotten"
    assert getattr(history[0], "display_name") == pii.FORGOTTEN  # noqa: B009
    rows = {str(r["customer_id"]): r for r in app.rows(RowQuery())}
    assert rows[survivor]["forgotten"]
    assert rows[survivor]["emails"] == []
    error = await refused(
        api.RenameCustomer(
            capi.RenameCustomerRequest(customer_id=survivor, display_name="X"), CALL
        ),
        PreconditionFailed,
    )
    assert "forgotten" in str(error)
    error = await refused(
        api.ForgetCustomer(capi.ForgetCustomerRequest(customer_id=twin), CALL), PreconditionFailed
    )
    assert "forgotten already" in str(error)
    with pytest.raises(PreconditionFailed):
        app.find_duplicates(UUID(survivor), 10)


async def test_with_merged_completes_a_survivor_forgotten_alone_before(
    app: CustomerApplication, api: CustomerServicer
) -> None:
    survivor, twin = await _merged_pair(api)
    alone = app.get_customer(UUID(survivor))
    alone.forget(datetime.now(UTC))  # as ForgetCustomer without with_merged used to
    app.save(alone)
    assert app.view(UUID(survivor)).combined.emails == ["zq@example.org"]
    reply = await api.ForgetCustomer(
        capi.ForgetCustomerRequest(customer_id=survivor, with_merged=True), CALL
    )
    assert list(reply.forgotten_ids) == [twin]
    assert app.data_keys([UUID(survivor), UUID(twin)]) == {UUID(survivor): None, UUID(twin): None}
    assert app.view(UUID(survivor)).combined.emails == []


async def test_forgetting_one_of_a_merge_leaves_the_other_readable(
    app: CustomerApplication, api: CustomerServicer
) -> None:
    survivor, twin = await _merged_pair(api)
    await api.ForgetCustomer(capi.ForgetCustomerRequest(customer_id=twin), CALL)
    assert app.get_customer(UUID(survivor)).display_name == NAME
    assert app.get_customer(UUID(twin)).display_name == pii.FORGOTTEN


async def test_a_survivor_alone_is_not_forgotten_while_its_duplicates_are_readable(
    app: CustomerApplication, api: CustomerServicer
) -> None:
    survivor, twin = await _merged_pair(api)
    error = await refused(
        api.ForgetCustomer(capi.ForgetCustomerRequest(customer_id=survivor), CALL),
        PreconditionFailed,
    )
    assert twin in str(error)
    assert "with_merged" in str(error)
    assert app.data_keys([UUID(survivor)])[UUID(survivor)] is not None
    view = app.view(UUID(survivor))
    assert view.customer.display_name == NAME
    assert "zq@example.org" in view.combined.emails


def test_an_import_seals_each_row_under_a_key_of_its_own(app: CustomerApplication) -> None:
    report = app.import_batch(
        [
            ImportRow(
                i,
                f"crm-{i}",
                {
                    "kind": "person",
                    "display_name": f"Importée {i}",
                    "emails": [f"i{i}@x.org"],
                    "phones": [],
                    "addresses": [],
                },
            )
            for i in range(3)
        ]
    )
    assert report.created == 3
    stored = _stored_text(app)
    assert "Importée" not in stored
    assert "@x.org" not in stored
    ids = [r["customer_id"] for r in app.rows(RowQuery())]
    keys = app.data_keys(ids)
    assert len({keys[i] for i in ids}) == 3
    names = sorted(app.get_customer(i).display_name for i in ids)
    assert names == ["Importée 0", "Importée 1", "Importée 2"]
    assert isinstance(app.get_customer(ids[0]), Customer)


async def test_the_service_desk_seals_its_free_texts_with_the_customers_key() -> None:
    app = ServiceDeskApplication.in_memory(clock=Clock())
    desk = ServiceDeskServicer(app, ContextReader("127.0.0.1:1"))
    customer = uuid.uuid4()
    opened = await desk.OpenTicket(
        dapi.OpenTicketRequest(
            allow_unknown_customer=True,
            customer_id=str(customer),
            channel=tev.TICKET_CHANNEL_PHONE,
            subject=f"Parcel for {NAME}",
            description=f"Deliver to {STREET}",
            category="delivery",
        ),
        CALL,
    )
    tid = opened.result.aggregate_id
    await desk.RecordInteraction(
        dapi.RecordInteractionRequest(
            ticket_id=tid, kind=tev.INTERACTION_KIND_INTERNAL_NOTE, body=f"Rang {PHONE}"
        ),
        CALL,
    )
    stored = _stored_text(app)
    for clear in (NAME, STREET, PHONE):
        assert clear not in stored, clear
    ticket = app.load(Ticket, UUID(tid))
    assert (ticket.subject, ticket.description) == (f"Parcel for {NAME}", f"Deliver to {STREET}")
    page = app.list_tickets(Eq("customer_id", customer), None, 10)
    assert [r["subject"] for r in page.rows] == [f"Parcel for {NAME}"]
    # The customer is forgotten: the ticket stays, its texts cannot be read any more, and
    # later events about it keep none.
    keys = app.keys
    assert isinstance(keys, LocalKeys)
    keys.forget(customer)
    ticket = app.load(Ticket, UUID(tid))
    assert (ticket.subject, ticket.description) == (pii.FORGOTTEN, pii.FORGOTTEN)
    await desk.RecordInteraction(
        dapi.RecordInteractionRequest(
            ticket_id=tid, kind=tev.INTERACTION_KIND_INTERNAL_NOTE, body="Called back"
        ),
        CALL,
    )
    ticket = app.load(Ticket, UUID(tid))
    assert [i["body"] for i in ticket.interactions] == [pii.FORGOTTEN, pii.FORGOTTEN]
    assert not any("Called back" in state for state in _stored_states(app))


async def test_sales_seals_what_a_lead_says_of_a_customer_or_of_a_prospect() -> None:
    from .test_sales_application import FakeCustomers, captured

    app = SalesApplication.in_memory(clock=Clock())
    sales = SalesServicer(app, FakeCustomers())
    customer = uuid.uuid4()
    of_customer = await captured(sales, customer_id=str(customer), person_name=NAME)
    prospect = await captured(
        sales, person_name="Pia Prospect", company_name="Prospekt AG", email="pia@example.org"
    )
    stored = _stored_text(app)
    assert NAME not in stored
    assert "anna@berg.example" not in stored  # the customer's lead's e-mail
    # A prospect's lead (of no customer yet) is sealed with a key of its own: in its events
    # and in its index row's name.
    for text in ("Pia Prospect", "Prospekt AG", "pia@example.org"):
        assert text not in stored
    assert pii.is_sealed(app.rows(RowQuery(Eq("id", UUID(prospect))))[0]["name"])
    assert app.load(Lead, UUID(of_customer)).person_name == NAME
    assert app.load(Lead, UUID(prospect)).person_name == "Pia Prospect"
    listed = await sales.ListLeads(sapi.ListLeadsRequest(), CALL)
    assert {x.company_name or x.person_name for x in listed.leads} >= {"Prospekt AG"}
    keys = app.keys
    assert isinstance(keys, LocalKeys)
    keys.forget(customer)
    assert app.load(Lead, UUID(of_customer)).person_name == pii.FORGOTTEN
    # Forgetting the prospect: operators only; a customer's lead goes with its customer.
    await refused(
        sales.ForgetLead(sapi.ForgetLeadRequest(lead_id=of_customer), CALL), PreconditionFailed
    )
    await sales.ForgetLead(sapi.ForgetLeadRequest(lead_id=prospect), CALL)
    lead = (await sales.GetLead(sapi.GetLeadRequest(lead_id=prospect), CALL)).lead
    assert lead.HasField("forgotten_at")
    assert (lead.person_name, lead.company_name, lead.email) == (pii.FORGOTTEN,) * 3
    assert app.load(Lead, UUID(prospect)).email == pii.FORGOTTEN
    for refusal in (
        sales.ForgetLead(sapi.ForgetLeadRequest(lead_id=prospect), CALL),
        sales.QualifyLead(sapi.QualifyLeadRequest(lead_id=prospect, note="again"), CALL),
    ):
        await refused(refusal, PreconditionFailed)
    assert "Pia Prospect" not in _stored_text(app)


async def test_every_opportunity_event_seals_the_name_it_repeats_for_the_timeline() -> None:
    from c360.events.v1 import sales_events_pb2 as lev

    from .test_sales_application import FakeCustomers, setup_catalogue

    app = SalesApplication.in_memory(clock=Clock())
    sales = SalesServicer(app, FakeCustomers())
    await setup_catalogue(sales)
    customer = uuid.uuid4()
    oid = (
        await sales.OpenOpportunity(
            sapi.OpenOpportunityRequest(
                customer_id=str(customer),
                name="Routers for Müller",
                pipeline="default",
                amount=lev.SalesMoney(currency="EUR", amount="100"),
            ),
            CALL,
        )
    ).result.aggregate_id
    await sales.MoveOpportunityStage(
        sapi.MoveOpportunityStageRequest(opportunity_id=oid, stage="proposal"), CALL
    )
    await sales.HoldOpportunity(sapi.HoldOpportunityRequest(opportunity_id=oid, reason="x"), CALL)
    await sales.WinOpportunity(sapi.WinOpportunityRequest(opportunity_id=oid), CALL)
    assert "Routers for Müller" not in _stored_text(app)
    events = list(app.events.get(UUID(oid)))
    assert [getattr(e, "name", None) for e in events] == ["Routers for Müller"] * 4
    keys = app.keys
    assert isinstance(keys, LocalKeys)
    keys.forget(customer)
    assert {getattr(e, "name", None) for e in app.events.get(UUID(oid))} == {pii.FORGOTTEN}


async def test_a_converted_prospects_lead_is_forgotten_with_its_customer() -> None:
    """A prospect's lead, converted for a customer, keeps its early events under its own key:
    forgetting the customer forgets the lead (what the published CustomerForgotten makes
    the sales service do), and with it that key."""
    from .test_sales_application import FakeCustomers, captured, setup_catalogue

    app = SalesApplication.in_memory(clock=Clock())
    sales = SalesServicer(app, FakeCustomers())
    await setup_catalogue(sales)
    lead = await captured(sales, person_name="Pia Prospect", email="pia@example.org")
    await sales.QualifyLead(sapi.QualifyLeadRequest(lead_id=lead), CALL)
    converted = await sales.ConvertLead(
        sapi.ConvertLeadRequest(lead_id=lead, register_customer=True, pipeline_id="default"),
        CALL,
    )
    customer = converted.customer_id
    assert app.load(Lead, UUID(lead)).person_name == "Pia Prospect"
    keys = app.keys
    assert isinstance(keys, LocalKeys)
    keys.forget(UUID(customer))  # the customer service forgot the customer
    assert app.load(Lead, UUID(lead)).person_name == "Pia Prospect"  # its own key, still
    assert app.forget_leads_of(customer, cause="event-1") == [UUID(lead)]
    assert app.forget_leads_of(customer, cause="event-1") == []  # a redelivery: nothing more
    assert app.forget_leads_of(customer, cause="event-2") == []  # forgotten already
    assert app.load(Lead, UUID(lead)).person_name == pii.FORGOTTEN
    assert app.prospects.keys([UUID(lead)]) == {UUID(lead): None}


@given(st.binary(min_size=32, max_size=32), st.lists(st.text(min_size=1, max_size=80)))
def test_a_sealed_values_nonce_is_the_keyed_hash_of_its_text(key: bytes, texts: list[str]) -> None:
    # As it has been since values were first sealed (`hmac.digest`): a value seals as it did
    # before, whether alone or with others of its customer.
    customer_id = UUID(int=7)
    sealing = pii.Sealing(key, customer_id)
    for text in texts:
        token = sealing(text)
        assert token == pii.seal(key, customer_id, text)
        match = pii.TOKEN.fullmatch(token)
        assert match is not None
        body = match.group(2)
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        nonce = hmac.digest(key, b"c360 nonce\x00" + text.encode(), "sha256")
        assert raw[: pii.NONCE_BYTES] == nonce[: pii.NONCE_BYTES]
        assert pii.reveal(token, {customer_id: key}) == text


@given(st.binary(min_size=1, max_size=130), st.text(max_size=80))
def test_a_blind_index_is_hmac_sha256_of_the_value(key: bytes, value: str) -> None:
    # Its key is set up once and copied per value; the hashes stay those stored so far.
    expected = "bi1~" + hmac.digest(key, value.encode(), "sha256")[:16].hex()
    index = pii.BlindIndex(key)
    assert index(value) == expected
    assert index(value) == expected  # the keyed state is not consumed by a value
    # The search token is the text form's first 64 bits, as a signed integer: what the
    # timeline's migration makes of a stored text token is the value's token now.
    token = index.token(value)
    assert token == int.from_bytes(bytes.fromhex(expected[4:20]), "big", signed=True)
    assert -(2**63) <= token < 2**63


def test_short_values_tokens_are_kept_per_index_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key, other_key = pii.new_key(), pii.new_key()
    index, other = pii.BlindIndex(key), pii.BlindIndex(other_key)

    def mac_token(k: bytes, value: str) -> int:
        return int.from_bytes(hmac.digest(k, value.encode(), "sha256")[:8], "big", signed=True)

    # A name's first letters: the same token whether made or kept, each index its own key's.
    for value in ("m", "ma", "mar", "mari", "mari", "ma"):
        assert index.token(value) == mac_token(key, value)
        assert other.token(value) == mac_token(other_key, value)
    assert sorted(index._short) == ["m", "ma", "mar", "mari"]
    # Longer values are made each time, never kept.
    assert index.token("maria") == mac_token(key, "maria")
    assert "maria" not in index._short
    # Past the bound nothing more is kept, and the tokens stay right.
    monkeypatch.setattr(pii, "SHORT_TOKENS_KEPT", 5)
    assert index.tokens(["x", "xy", "", "z"]) == [mac_token(key, v) for v in ("x", "xy", "z")]
    assert sorted(index._short) == ["m", "ma", "mar", "mari", "x"]


def test_the_sealer_changes_the_personal_fields_and_leaves_the_events_own_values() -> None:
    class Moved:
        pass

    sealer = pii.Sealer(
        {Moved: ["name", "emails[]", "addresses[].lines[]", "addresses[].city", "site.city"]}
    )
    lines = ["1 Main St", "Floor 2"]
    address = {"lines": lines, "city": "Berlin", "country": "DE"}
    event = {
        "name": "Ada",
        "emails": ["ada@example.com"],
        "addresses": [address],
        "site": {"city": "Paris", "country": "FR"},
        "phones": ["+4930123"],
    }
    state = dict(event)
    sealer.change(get_topic(Moved), state, str.upper)
    assert state == {
        "name": "ADA",
        "emails": ["ADA@EXAMPLE.COM"],
        "addresses": [{"lines": ["1 MAIN ST", "FLOOR 2"], "city": "BERLIN", "country": "DE"}],
        "site": {"city": "PARIS", "country": "FR"},
        "phones": ["+4930123"],  # not a personal field of this event
    }
    # What the state shared with the event is copied where it changed, not changed in it.
    assert lines == ["1 Main St", "Floor 2"]
    assert address["city"] == "Berlin"
    assert event["emails"] == ["ada@example.com"]
    assert event["site"] == {"city": "Paris", "country": "FR"}
    # Fields an event does not have, or has empty, stay as they are.
    sparse: dict[str, Any] = {"name": "", "addresses": None}
    sealer.change(get_topic(Moved), sparse, str.upper)
    assert sparse == {"name": "", "addresses": []}
    assert not sealer.personal("some.Other")
