"""`c360 demo`: load a realistic, seed-determined demo set through the public gRPC APIs.

The plan for customer i depends only on (seed, i), and every command carries a request id
made of seed, index and step. Re-running the same demo (after a crash, or with a larger
--customers) therefore replays what was stored and adds only what is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import tomllib
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from functools import cache
from importlib import resources
from typing import Any, Protocol, TypeVar

import grpc
import phonenumbers
from google.protobuf.timestamp_pb2 import Timestamp
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from unidecode import unidecode

from c360.common.v1 import command_pb2
from c360.customer.v1 import customer_service_pb2 as api
from c360.customer.v1.customer_service_pb2_grpc import CustomerServiceStub
from c360.events.v1 import customer_events_pb2 as events
from c360.service_desk.v1 import service_desk_service_pb2 as desk
from c360.service_desk.v1.service_desk_service_pb2_grpc import ServiceDeskServiceStub
from c360.timeline.v1 import timeline_service_pb2 as timeline_api
from c360.timeline.v1.timeline_service_pb2_grpc import TimelineServiceStub
from c360_cli.argtypes import positive_int
from c360_cli.client import AsyncClient
from c360_cli.errors import CliError
from c360_cli.marketing_demo import MarketingDemo
from c360_cli.output import Output
from c360_cli.sales_demo import SalesDemo
from c360_cli.words import (
    ALLOWANCE_UNITS,
    CONSENT_CHANNELS,
    CONSENT_PURPOSES,
    CONTACT_DIRECTIONS,
    CONTACT_OUTCOMES,
    CUSTOMER_KINDS,
    INTERACTION_KINDS,
    TICKET_CHANNELS,
    TICKET_PRIORITIES,
    WAITING_FOR,
)

# -- demo data (data/demo.toml) ----------------------------------------------------------------


@dataclass(frozen=True)
class City:
    name: str
    postal_code: str
    region: str
    streets: tuple[str, ...]


@dataclass(frozen=True)
class Culture:
    """Names, places and customs of one country, for people and companies from there."""

    country: str
    given_male: tuple[str, ...]
    given_female: tuple[str, ...]
    surnames: tuple[tuple[str, str], ...]
    """(male form, female form); the same twice where surnames do not vary."""
    cities: tuple[City, ...]
    companies: tuple[str, ...]
    """Company name patterns; {last} is a (male-form) surname."""
    email_domain: str
    family_first: bool = False
    number_first: bool = False


@dataclass(frozen=True)
class DemoData:
    """What the plan draws its customers and tickets from."""

    cultures: tuple[Culture, ...]
    roles: tuple[str, ...]
    tags: tuple[str, ...]
    acquisition: tuple[tuple[str, str], ...]
    consent_sources: tuple[str, ...]
    revoke_sources: tuple[str, ...]
    consent_choices: tuple[tuple[str, str, float], ...]
    queues: tuple[str, ...]
    ticket_channels: tuple[tuple[str, float], ...]
    ticket_subjects: dict[str, tuple[str, ...]]
    ivr_paths: tuple[tuple[tuple[str, ...], str], ...]
    articles: tuple[dict[str, Any], ...] = ()
    """Knowledge articles: category, title, keywords, body."""


def _culture(raw: dict[str, Any]) -> Culture:
    return Culture(
        country=raw["country"],
        given_male=tuple(raw["given_male"]),
        given_female=tuple(raw["given_female"]),
        surnames=tuple((s, s) if isinstance(s, str) else (s[0], s[1]) for s in raw["surnames"]),
        cities=tuple(
            City(c["name"], c["postal_code"], c.get("region", ""), tuple(c["streets"]))
            for c in raw["cities"]
        ),
        companies=tuple(raw["companies"]),
        email_domain=raw["email_domain"],
        family_first=raw.get("family_first", False),
        number_first=raw.get("number_first", False),
    )


@cache
def data() -> DemoData:
    """The demo data, read once from the package's data/demo.toml."""
    text = resources.files("c360_cli").joinpath("data", "demo.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    return DemoData(
        cultures=tuple(_culture(c) for c in raw["cultures"]),
        roles=tuple(raw["roles"]),
        tags=tuple(raw["tags"]),
        acquisition=tuple((source, channel) for source, channel in raw["acquisition"]),
        consent_sources=tuple(raw["consent_sources"]),
        revoke_sources=tuple(raw["revoke_sources"]),
        consent_choices=tuple((c, p, share) for c, p, share in raw["consent_choices"]),
        queues=tuple(raw["queues"]),
        ticket_channels=tuple(raw["ticket_channels"].items()),
        ticket_subjects={k: tuple(v) for k, v in raw["ticket_subjects"].items()},
        articles=tuple(raw.get("articles", [])),
        ivr_paths=tuple((tuple(path), outcome) for path, outcome in raw["ivr_paths"]),
    )


OWNERS = 40
"""Employee ids emp-0001 .. emp-0040."""
BLOCK = 8
"""Customer i is an organisation when i % BLOCK == 0; its contacts come from its block."""
MOVE_SHARE = 0.3
"""Share of contact persons who later change to the next block's organisation."""

TICKET_SHARE = 0.35
"""Share of customers with tickets (one, sometimes two)."""
HOLD_SHARE = 0.35
"""Share of their tickets left open that wait for the customer or a third party."""
CHURN_SHARE = 0.05
"""Share of people who contact the service desk four times: the churn signal's cases."""
IVR_SHARE = 0.3
"""Share of customers without tickets who call the IVR on the demo's day (one to three times,
so never four support contacts: the churn signal's cases stay the ticket ones)."""

# -- the plan (pure: a function of seed and count) -------------------------------------------


@dataclass(frozen=True)
class Consent:
    channel: str
    purpose: str
    source: str


@dataclass
class TicketPlan:
    """One ticket: how it is opened, then its steps, each one command."""

    channel: str
    category: str
    subject: str
    priority: str
    steps: list[tuple[str, str]] = field(default_factory=list)
    """(step, argument): assign (agent/queue), inbound (call seconds or message), outbound,
    note, escalate (queue), resolve (text), rate (score), close, reopen."""

    def contacts(self) -> int:
        """Support contacts it makes: its opening and its inbound calls and messages."""
        return 1 + sum(1 for step, _ in self.steps if step == "inbound")


@dataclass(frozen=True)
class ContactPlan:
    """One IVR session on the demo's day: seconds after midnight UTC, menu path, outcome."""

    second_of_day: int
    path: tuple[str, ...]
    outcome: str
    duration_seconds: int
    agent: str


@dataclass(frozen=True)
class VisitPlan:
    """An on-site visit: who goes where, the labour it takes, how it ends."""

    technician: str
    region: str
    labour_minutes: int
    fixed: bool
    score: int
    upcoming: bool = False
    """Still to come: booked, not yet made (a dispatcher's board is not all history)."""
    slot: int = 0
    """Its window is the slot-th after the organisation's registration (`visit_window`)."""


@dataclass
class CustomerPlan:
    """Everything the demo will do to customer `index`."""

    index: int
    kind: str
    name: str
    emails: list[str]
    phones: list[str]
    owner: str
    tags: list[str]
    source: str
    channel: str
    addresses: list[events.PostalAddress] = field(default_factory=list)
    late_owner: str = ""
    grants: list[Consent] = field(default_factory=list)
    revocations: list[Consent] = field(default_factory=list)
    tag_change: tuple[list[str], list[str]] | None = None
    rename: str = ""
    new_email: str = ""
    contacts: list[tuple[int, str]] = field(default_factory=list)
    """Organisations: (person index, role) of the persons linked in the contacts phase."""
    move: tuple[int, str] | None = None
    """Contact persons: (organisation index, new role) they change to later."""
    move_roll: float = 1.0
    move_role: str = ""
    tickets: list[TicketPlan] = field(default_factory=list)
    ivr: list[ContactPlan] = field(default_factory=list)
    contract_end: int | None = None
    """Organisations: the day their service contract ends, in days after the demo's day."""
    visit: VisitPlan | None = None
    """Organisations (every other one): the on-site visit under their contract."""


def _slug(text: str) -> str:
    ascii_text = unidecode(text).lower()
    return "".join(ch for ch in ascii_text if ch.isalnum())


def phone_number(rng: random.Random, country: str, mobile: bool) -> str:
    """A number phonenumbers accepts as valid for `country`, internationally formatted."""
    kind = (
        phonenumbers.PhoneNumberType.MOBILE if mobile else phonenumbers.PhoneNumberType.FIXED_LINE
    )
    example = phonenumbers.example_number_for_type(country, kind)
    assert example is not None, country
    national = str(example.national_number)
    for _ in range(20):
        digits = national[:-4] + "".join(rng.choice("0123456789") for _ in range(4))
        candidate = phonenumbers.parse(f"+{example.country_code}{digits}")
        if phonenumbers.is_valid_number(candidate):
            return phonenumbers.format_number(
                candidate, phonenumbers.PhoneNumberFormat.INTERNATIONAL
            )
    return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def _address(rng: random.Random, culture: Culture, label: str) -> events.PostalAddress:
    city = rng.choice(culture.cities)
    street = rng.choice(city.streets)
    number = str(rng.randint(1, 180))
    line = f"{number} {street}" if culture.number_first else f"{street} {number}"
    lines = [line]
    if rng.random() < 0.15:
        lines.append(rng.choice(("2nd floor", "Building B", "c/o Reception", "Apt. 4")))
    return events.PostalAddress(
        label=label,
        lines=lines,
        postal_code=city.postal_code,
        city=city.name,
        region=city.region,
        country=culture.country,
    )


def _consents(rng: random.Random) -> tuple[list[Consent], list[Consent]]:
    grants = [
        Consent(channel, purpose, rng.choice(data().consent_sources))
        for channel, purpose, share in data().consent_choices
        if rng.random() < share
    ]
    revocations = [
        Consent(g.channel, g.purpose, rng.choice(data().revoke_sources))
        for g in grants
        if rng.random() < (0.3 if g.purpose == "marketing" else 0.1)
    ]
    return grants, revocations


def _person(index: int, rng: random.Random) -> CustomerPlan:
    culture = rng.choice(data().cultures)
    female = rng.random() < 0.5
    given = rng.choice(culture.given_female if female else culture.given_male)
    surname_pair = rng.choice(culture.surnames)
    surname = surname_pair[1] if female else surname_pair[0]
    name = f"{surname} {given}" if culture.family_first else f"{given} {surname}"
    first, last = _slug(given), _slug(surname)
    short = f"{first[:1]}{last}{rng.randint(1, 99)}"
    local = f"{first}.{last}" if rng.random() < 0.5 else short
    emails = [f"{local}@{culture.email_domain}"]
    if rng.random() < 0.2:
        emails.append(f"{last}.{first}@mail.example.org")
    phones = [phone_number(rng, culture.country, mobile=True) for _ in range(rng.randint(0, 2))]
    source, channel = rng.choice(data().acquisition)
    plan = CustomerPlan(
        index=index,
        kind="person",
        name=name,
        emails=emails,
        phones=phones,
        owner=f"emp-{rng.randint(1, OWNERS):04d}" if rng.random() < 0.6 else "",
        tags=sorted(set(rng.sample(data().tags, rng.randint(0, 2)))),
        source=source,
        channel=channel,
    )
    if rng.random() < 0.8:
        plan.addresses.append(_address(rng, culture, "home"))
    if not plan.owner and rng.random() < 0.5:
        plan.late_owner = f"emp-{rng.randint(1, OWNERS):04d}"
    plan.grants, plan.revocations = _consents(rng)
    if rng.random() < 0.25:
        add = [t for t in rng.sample(data().tags, 2) if t not in plan.tags][:1]
        remove = plan.tags[:1] if plan.tags and rng.random() < 0.5 else []
        if add or remove:
            plan.tag_change = (add, remove)
    if female and rng.random() < 0.08:
        other = rng.choice(culture.surnames)[1]
        if other != surname:
            plan.rename = f"{other} {given}" if culture.family_first else f"{given} {other}"
    if rng.random() < 0.1:
        plan.new_email = f"{first}.{last}.{rng.randint(100, 999)}@{culture.email_domain}"
    plan.move_roll = rng.random()
    plan.move_role = rng.choice(data().roles)
    return plan


def _organisation(index: int, rng: random.Random) -> CustomerPlan:
    culture = rng.choice(data().cultures)
    last = rng.choice(culture.surnames)[0]
    name = rng.choice(culture.companies).format(last=last)
    domain = f"{_slug(last)}-{index}.example"
    source, channel = rng.choice(data().acquisition)
    plan = CustomerPlan(
        index=index,
        kind="organisation",
        name=name,
        emails=[f"{rng.choice(('info', 'office', 'hello', 'kontakt'))}@{domain}"],
        phones=[phone_number(rng, culture.country, mobile=False)],
        owner=f"emp-{rng.randint(1, OWNERS):04d}",
        tags=sorted({"b2b", *rng.sample(data().tags, rng.randint(0, 1))}),
        source=source,
        channel=channel,
    )
    plan.addresses.append(_address(rng, culture, "headquarters"))
    if rng.random() < 0.3:
        plan.addresses.append(_address(rng, culture, "billing"))
    plan.grants = [Consent("email", "service", "signed-contract")]
    if rng.random() < 0.5:
        plan.grants.append(Consent("post", "marketing", "signed-contract"))
    persons = rng.sample(range(index + 1, index + BLOCK), rng.randint(1, 3))
    plan.contacts = [(p, rng.choice(data().roles)) for p in sorted(persons)]
    return plan


def _weighted(rng: random.Random, choices: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def _ticket(rng: random.Random, inbound: bool) -> TicketPlan:
    category = rng.choice(sorted(data().ticket_subjects))
    ticket = TicketPlan(
        channel=_weighted(rng, data().ticket_channels),
        category=category,
        subject=rng.choice(data().ticket_subjects[category]),
        priority=_weighted(rng, (("low", 0.15), ("normal", 0.6), ("high", 0.2), ("urgent", 0.05))),
    )
    steps = ticket.steps
    if rng.random() < 0.8:
        steps.append(("assign", f"emp-{rng.randint(1, OWNERS):04d}/{rng.choice(data().queues)}"))
    if inbound and rng.random() < 0.4:
        steps.append(("inbound", str(rng.randint(40, 900)) if rng.random() < 0.5 else "message"))
    if rng.random() < 0.5:
        steps.append(("outbound", "message"))
    if rng.random() < 0.3:
        steps.append(("note", "Checked the account history; see the previous ticket."))
    if rng.random() < 0.1:
        steps.append(("escalate", "complaints"))
    if rng.random() < 0.65:
        steps.append(("resolve", f"{ticket.subject}: sorted out and confirmed with the customer."))
        if rng.random() < 0.05:
            steps.append(("reopen", "The problem came back."))
        else:
            if rng.random() < 0.5:
                steps.append(("rate", str(rng.choices([1, 2, 3, 4, 5], [1, 1, 2, 4, 4])[0])))
            if rng.random() < 0.5:
                steps.append(("close", ""))
    return ticket


def _tickets(index: int, kind: str, seed: int) -> list[TicketPlan]:
    """Customer `index`'s tickets, from a generator of their own (the rest of the plan is
    as it was before tickets came). At most three support contacts, except for the people
    picked to show the churn signal, who open four tickets."""
    rng = random.Random(f"c360-demo-tickets:{seed}:{index}")
    if kind == "person" and rng.random() < CHURN_SHARE:
        return [_ticket(rng, inbound=False) for _ in range(4)]
    if rng.random() >= TICKET_SHARE:
        return []
    tickets = [_ticket(rng, inbound=True) for _ in range(1 if rng.random() < 0.8 else 2)]
    while sum(t.contacts() for t in tickets) > 3:
        steps = tickets[-1].steps
        steps.remove(next(s for s in steps if s[0] == "inbound"))
    _holds(tickets, index, seed)
    return tickets


def _holds(tickets: list[TicketPlan], index: int, seed: int) -> None:
    """A third of the tickets left open go on hold, waiting for the customer or a third party
    (a generator of their own: the plans made before holds came stay as they were)."""
    rng = random.Random(f"c360-demo-holds:{seed}:{index}")
    for t in tickets:
        if not any(step == "resolve" for step, _ in t.steps) and rng.random() < HOLD_SHARE:
            whom = rng.choice(["customer", "customer", "third-party"])
            t.steps.append(("hold", whom))


def _ivr_contacts(index: int, seed: int) -> list[ContactPlan]:
    """Customer `index`'s IVR sessions on the demo's day (a generator of their own)."""
    rng = random.Random(f"c360-demo-ivr:{seed}:{index}")
    if rng.random() >= IVR_SHARE:
        return []
    contacts = []
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
        path, outcome = rng.choice(data().ivr_paths)
        transferred = outcome == "transferred"
        contacts.append(
            ContactPlan(
                second_of_day=rng.randrange(7 * 3600, 21 * 3600),
                path=path,
                outcome=outcome,
                duration_seconds=rng.randrange(20, 180) + (rng.randrange(60, 600) * transferred),
                agent=f"emp-{rng.randrange(1, OWNERS + 1):04d}" if transferred else "",
            )
        )
    return sorted(contacts, key=lambda c: c.second_of_day)


def build_plan(customers: int, seed: int) -> list[CustomerPlan]:
    """The demo set: customer i depends only on (seed, i), so a larger set extends a smaller."""
    plans = []
    for index in range(customers):
        rng = random.Random(f"c360-demo:{seed}:{index}")
        make = _organisation if index % BLOCK == 0 else _person
        plan = make(index, rng)
        plan.tickets = _tickets(index, plan.kind, seed)
        plan.ivr = [] if plan.tickets else _ivr_contacts(index, seed)
        if plan.kind == "organisation":
            plan.contract_end = random.Random(f"c360-demo-contract:{seed}:{index}").randrange(
                -10, 120
            )
            plan.visit = _visit(index // BLOCK)
        plans.append(plan)
    for org in plans[::BLOCK]:
        org.contacts = [(p, role) for p, role in org.contacts if p < customers]
        target = org.index + BLOCK
        for person, _ in org.contacts:
            p = plans[person]
            if p.move_roll < MOVE_SHARE and target < customers:
                p.move = (target, p.move_role)
    return plans


# -- running it -------------------------------------------------------------------------------


class _Reply(Protocol):
    @property
    def result(self) -> command_pb2.CommandResult: ...


Req = TypeVar("Req")
Resp = TypeVar("Resp", bound=_Reply)
Out = TypeVar("Out")
Script = Callable[[], Awaitable[None]]

RETRYABLE = {
    grpc.StatusCode.ABORTED,  # a concurrent change of the same customer: same request again
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
MAX_ATTEMPTS = 8


class _ForgottenEarlier(Exception):
    """A customer an earlier run erased refused a command this run adds (a forgotten customer
    takes no more changes): the rest of that customer's script is left out."""


@dataclass
class Stats:
    commands: int = 0
    replayed: int = 0
    retries: int = 0
    links: int = 0
    moves: int = 0
    tickets: int = 0
    contacts: int = 0
    contracts: int = 0
    articles: int = 0
    resolved_with_article: int = 0
    on_hold: int = 0
    visits: int = 0
    visits_booked: int = 0
    forgotten: int = 0
    left_out: set[int] = field(default_factory=set)
    """Plan indexes of the customers an earlier, smaller run erased, whose new steps this run
    left out."""


def erased(plans: list[CustomerPlan]) -> CustomerPlan | None:
    """The person who asks to be forgotten (GDPR art. 17): the last one, with enough people
    for the summary's examples to be others."""
    people = [p for p in plans if p.kind == "person"]
    return people[-1] if len(people) >= 6 else None


class DemoRun:
    """Issues the plan's commands in phases, with bounded concurrency and retries."""

    def __init__(
        self,
        client: AsyncClient,
        plans: list[CustomerPlan],
        seed: int,
        concurrency: int,
        timeout: float,
        progress: Progress,
        task: TaskID,
    ) -> None:
        self.client = client
        self.plans = plans
        self.seed = seed
        self.concurrency = concurrency
        self.timeout = timeout
        self.progress = progress
        self.task = task
        self.ids: dict[int, str] = {}
        self.links: dict[int, tuple[str, str]] = {}
        """person index -> (organisation id, link id) of the link made in the contacts phase."""
        self.ticket_ids: dict[int, list[str]] = {}
        self.tokens: dict[int, str] = {}
        """plan index -> consistency token of the customer's latest command."""
        self.at_risk: set[int] = set()
        """plan indexes of the customers the timeline flags as at risk."""
        self.stats = Stats()
        self.sales: SalesDemo | None = None
        self.failure: BaseException | None = None
        self.marketing: MarketingDemo | None = None
        self.articles: dict[str, str] = {}
        """ticket category -> id of the published knowledge article about it."""
        self.day = (datetime.now(UTC) - timedelta(days=1)).date()
        """The day the IVR contacts are of: yesterday (UTC)."""

    @staticmethod
    def contact_person(index: int, rng: random.Random) -> tuple[str, str]:
        """A person's name and e-mail, made as the customers' are (a prospect's contact)."""
        plan = _person(index, rng)
        return plan.name, plan.emails[0]

    def rid(self, index: int, step: str) -> str:
        return f"demo-{self.seed}-{index}-{step}"

    async def call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        what: str,
        service: str = "customer",
        *,
        of: int,
    ) -> Resp:
        """One command about customer `of` (its plan index), retried with its request id (so
        at most one effect) when retryable."""
        try:
            reply = await self.retrying(method, request, what, service)
        except CliError as exc:
            # A smaller run erased its last person, whom a larger run gives more to do (a move
            # to an organisation the smaller run did not have, yesterday's IVR calls): what
            # that run recorded replays, anything new is refused, and the person is left out.
            if exc.code == "FAILED_PRECONDITION" and await self.is_forgotten(of):
                self.stats.left_out.add(of)
                raise _ForgottenEarlier(of) from None
            raise
        self.stats.commands += 1
        if reply.result.replayed:
            self.stats.replayed += 1
        self.tokens[of] = reply.result.consistency_token
        self.progress.advance(self.task)
        return reply

    async def is_forgotten(self, index: int) -> bool:
        """Whether customer `index` of the plan was forgotten (erased) already."""
        if index not in self.ids:
            return False
        reply = await self.retrying(
            self.client.stub("customer", CustomerServiceStub).GetCustomer,
            api.GetCustomerRequest(customer_id=self.ids[index]),
            "read a customer",
            "customer",
        )
        return reply.customer.HasField("forgotten_at")

    async def retrying(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Out],
        request: Req,
        what: str,
        service: str,
    ) -> Out:
        """One call, again after a retryable failure (a command with the same request id)."""
        delay = 0.05
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return await method(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                if exc.code() not in RETRYABLE or attempt == MAX_ATTEMPTS:
                    error = self.client.failure(exc, service)
                    raise CliError(
                        f"demo: {what} failed: {error.message}",
                        error.exit_code,
                        code=error.code,
                        field=error.field,
                    ) from None
                self.stats.retries += 1
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    async def phase(self, name: str, scripts: list[Script]) -> None:
        """Run scripts (each one customer's or organisation's sequence) `concurrency` at once."""
        self.progress.update(self.task, description=name)
        pending: Iterator[Script] = iter(scripts)

        async def worker() -> None:
            for script in pending:
                if self.failure is not None:
                    return
                try:
                    await script()
                except _ForgottenEarlier:
                    continue
                except Exception as exc:
                    self.failure = self.failure or exc
                    return

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        if self.failure is not None:
            raise self.failure

    # -- phases ---------------------------------------------------------------------------

    def register_script(self, p: CustomerPlan) -> Script:
        async def script() -> None:
            request = api.RegisterCustomerRequest(
                request_id=self.rid(p.index, "register"),
                kind=CUSTOMER_KINDS.value(p.kind),
                display_name=p.name,
                emails=p.emails,
                phones=p.phones,
                owner_id=p.owner,
                tags=p.tags,
                acquisition_source=p.source,
                acquisition_channel=p.channel,
            )
            reply = await self.call(
                self.client.stub("customer", CustomerServiceStub).RegisterCustomer,
                request,
                "register",
                of=p.index,
            )
            self.ids[p.index] = reply.result.aggregate_id

        return script

    def details_script(self, p: CustomerPlan) -> Script:
        async def script() -> None:
            cid = self.ids[p.index]
            stub = self.client.stub("customer", CustomerServiceStub)
            for n, address in enumerate(p.addresses):
                await self.call(
                    stub.AddPostalAddress,
                    api.AddPostalAddressRequest(
                        request_id=self.rid(p.index, f"address-{n}"),
                        customer_id=cid,
                        address=address,
                    ),
                    "add address",
                    of=p.index,
                )
            if p.late_owner:
                await self.call(
                    stub.AssignOwner,
                    api.AssignOwnerRequest(
                        request_id=self.rid(p.index, "owner"),
                        customer_id=cid,
                        owner_id=p.late_owner,
                    ),
                    "assign owner",
                    of=p.index,
                )
            for c in p.grants:
                await self.call(
                    stub.GrantConsent,
                    api.GrantConsentRequest(
                        request_id=self.rid(p.index, f"grant-{c.channel}-{c.purpose}"),
                        customer_id=cid,
                        channel=CONSENT_CHANNELS.value(c.channel),
                        purpose=CONSENT_PURPOSES.value(c.purpose),
                        source=c.source,
                    ),
                    "grant consent",
                    of=p.index,
                )

        return script

    def contacts_script(self, org: CustomerPlan) -> Script:
        async def script() -> None:
            for person, role in org.contacts:
                reply = await self.call(
                    self.client.stub("customer", CustomerServiceStub).LinkContactPerson,
                    api.LinkContactPersonRequest(
                        request_id=self.rid(person, "link"),
                        organisation_id=self.ids[org.index],
                        person_id=self.ids[person],
                        role=role,
                    ),
                    "link contact person",
                    of=org.index,
                )
                self.links[person] = (self.ids[org.index], reply.link_id)
                self.stats.links += 1

        return script

    def changes_script(self, p: CustomerPlan) -> Script:
        async def script() -> None:
            cid = self.ids[p.index]
            stub = self.client.stub("customer", CustomerServiceStub)
            for c in p.revocations:
                await self.call(
                    stub.RevokeConsent,
                    api.RevokeConsentRequest(
                        request_id=self.rid(p.index, f"revoke-{c.channel}-{c.purpose}"),
                        customer_id=cid,
                        channel=CONSENT_CHANNELS.value(c.channel),
                        purpose=CONSENT_PURPOSES.value(c.purpose),
                        source=c.source,
                    ),
                    "revoke consent",
                    of=p.index,
                )
            if p.tag_change:
                add, remove = p.tag_change
                await self.call(
                    stub.ChangeTags,
                    api.ChangeTagsRequest(
                        request_id=self.rid(p.index, "tags"),
                        customer_id=cid,
                        add=add,
                        remove=remove,
                    ),
                    "change tags",
                    of=p.index,
                )
            if p.rename:
                await self.call(
                    stub.RenameCustomer,
                    api.RenameCustomerRequest(
                        request_id=self.rid(p.index, "rename"),
                        customer_id=cid,
                        display_name=p.rename,
                    ),
                    "rename",
                    of=p.index,
                )
            if p.new_email:
                await self.call(
                    stub.AddEmail,
                    api.AddEmailRequest(
                        request_id=self.rid(p.index, "email-new"),
                        customer_id=cid,
                        email=p.new_email,
                    ),
                    "add e-mail",
                    of=p.index,
                )
                await self.call(
                    stub.RemoveEmail,
                    api.RemoveEmailRequest(
                        request_id=self.rid(p.index, "email-old"),
                        customer_id=cid,
                        email=p.emails[0],
                    ),
                    "remove e-mail",
                    of=p.index,
                )

        return script

    def move_script(self, p: CustomerPlan) -> Script:
        async def script() -> None:
            assert p.move is not None
            target, role = p.move
            organisation_id, link_id = self.links[p.index]
            stub = self.client.stub("customer", CustomerServiceStub)
            await self.call(
                stub.EndContactPerson,
                api.EndContactPersonRequest(
                    request_id=self.rid(p.index, "end-link"),
                    organisation_id=organisation_id,
                    link_id=link_id,
                ),
                "end contact-person link",
                of=p.index,
            )
            await self.call(
                stub.LinkContactPerson,
                api.LinkContactPersonRequest(
                    request_id=self.rid(p.index, "relink"),
                    organisation_id=self.ids[target],
                    person_id=self.ids[p.index],
                    role=role,
                ),
                "link contact person",
                of=p.index,
            )
            self.stats.moves += 1

        return script

    def tickets_script(self, p: CustomerPlan) -> Script:
        async def script() -> None:
            stub = self.client.stub("service-desk", ServiceDeskServiceStub)
            for n, t in enumerate(p.tickets):
                opened = await self.call(
                    stub.OpenTicket,
                    desk.OpenTicketRequest(
                        request_id=self.rid(p.index, f"ticket-{n}-open"),
                        customer_id=self.ids[p.index],
                        channel=TICKET_CHANNELS.value(t.channel),
                        subject=t.subject,
                        category=t.category,
                        priority=TICKET_PRIORITIES.value(t.priority),
                    ),
                    "open ticket",
                    "service-desk",
                    of=p.index,
                )
                ticket_id = opened.result.aggregate_id
                self.ticket_ids.setdefault(p.index, []).append(ticket_id)
                self.stats.tickets += 1
                for k, (step, arg) in enumerate(t.steps):
                    rid = self.rid(p.index, f"ticket-{n}-{k}-{step}")
                    await self.ticket_step(stub, p.index, rid, ticket_id, t, step, arg)

        return script

    def ivr_script(self, p: CustomerPlan) -> Script:
        """The customer's IVR sessions of yesterday (UTC): contacts that needed no ticket."""

        async def script() -> None:
            stub = self.client.stub("service-desk", ServiceDeskServiceStub)
            day = self.day
            for n, c in enumerate(p.ivr):
                started = Timestamp()
                started.FromDatetime(
                    datetime.combine(day, dt_time(0), UTC) + timedelta(seconds=c.second_of_day)
                )
                await self.call(
                    stub.RecordContact,
                    desk.RecordContactRequest(
                        request_id=self.rid(p.index, f"ivr-{day.isoformat()}-{n}"),
                        customer_id=self.ids[p.index],
                        channel=TICKET_CHANNELS.value("ivr"),
                        direction=CONTACT_DIRECTIONS.value("inbound"),
                        started_at=started,
                        duration_seconds=c.duration_seconds,
                        outcome=CONTACT_OUTCOMES.value(c.outcome.replace("_", "-")),
                        agent_id=c.agent,
                        ivr_path=list(c.path),
                    ),
                    "record IVR contact",
                    "service-desk",
                    of=p.index,
                )
                self.stats.contacts += 1

        return script

    def article_script(self, article: dict[str, Any]) -> Script:
        """A knowledge article written, reviewed and published (about no customer)."""

        async def script() -> None:
            stub = self.client.stub("service-desk", ServiceDeskServiceStub)
            rid = f"demo-{self.seed}-kb-{article['category']}"
            made = await self.retrying(
                stub.CreateArticle,
                desk.CreateArticleRequest(
                    request_id=f"{rid}-create",
                    title=article["title"],
                    body=article["body"],
                    category=article["category"],
                    keywords=article["keywords"],
                    author_id="emp-0900",
                ),
                "write a knowledge article",
                "service-desk",
            )
            article_id = made.result.aggregate_id
            submitted = await self.retrying(
                stub.SubmitArticle,
                desk.SubmitArticleRequest(request_id=f"{rid}-submit", article_id=article_id),
                "submit a knowledge article",
                "service-desk",
            )
            published = await self.retrying(
                stub.PublishArticle,
                desk.PublishArticleRequest(
                    request_id=f"{rid}-publish", article_id=article_id, reviewer_id="emp-0901"
                ),
                "publish a knowledge article",
                "service-desk",
            )
            self.articles[article["category"]] = article_id
            self.stats.articles += 1
            self.stats.commands += 3
            self.stats.replayed += sum(r.result.replayed for r in (made, submitted, published))
            self.progress.advance(self.task, 3)

        return script

    async def registered_at(self, index: int) -> datetime:
        """When customer `index` was registered (by this run, or an earlier one): what its
        contract and visit are dated from, so that a run on a later day sends the same
        requests again (replayed) instead of requests its ids were used for already."""
        reply = await self.retrying(
            self.client.stub("customer", CustomerServiceStub).GetCustomer,
            api.GetCustomerRequest(customer_id=self.ids[index]),
            "read a customer",
            "customer",
        )
        if not reply.customer.HasField("registered_at"):
            return datetime.now(UTC)
        return reply.customer.registered_at.ToDatetime(tzinfo=UTC)

    def visit_script(self, p: CustomerPlan, contract_id: str, registered: datetime) -> Script:
        """An on-site visit under the organisation's contract, from request to rating."""

        visit = p.visit
        assert visit is not None

        async def script() -> None:
            stub = self.client.stub("service-desk", ServiceDeskServiceStub)
            rid = self.rid(p.index, "visit")
            made = await self.call(
                stub.CreateWorkOrder,
                desk.CreateWorkOrderRequest(
                    request_id=f"{rid}-create",
                    customer_id=self.ids[p.index],
                    summary="Replace the office router",
                    contract_id=contract_id,
                    region=visit.region,
                ),
                "request an on-site visit",
                "service-desk",
                of=p.index,
            )
            wid = made.result.aggregate_id
            opens = visit_window(registered, visit.slot)
            start = Timestamp()
            start.FromDatetime(opens)
            end = Timestamp()
            end.FromDatetime(opens + timedelta(hours=3))
            steps: list[tuple[str, Any, Any]] = [
                (
                    "schedule",
                    stub.ScheduleWorkOrder,
                    desk.ScheduleWorkOrderRequest(
                        technician_id=visit.technician, window_start=start, window_end=end
                    ),
                ),
                ("travel", stub.StartWorkOrderTravel, desk.StartWorkOrderTravelRequest()),
                ("start", stub.StartWorkOrderWork, desk.StartWorkOrderWorkRequest()),
                (
                    "part",
                    stub.RecordWorkOrderPart,
                    desk.RecordWorkOrderPartRequest(
                        sku="rtr-200",
                        description="Business router",
                        quantity="1",
                        unit_cost="149.00",
                    ),
                ),
                (
                    "labour",
                    stub.RecordWorkOrderLabour,
                    desk.RecordWorkOrderLabourRequest(
                        minutes=visit.labour_minutes, hourly_rate="75.00"
                    ),
                ),
                (
                    "complete",
                    stub.CompleteWorkOrder,
                    desk.CompleteWorkOrderRequest(
                        fixed=visit.fixed, note="Router replaced and tested."
                    ),
                ),
                ("rate", stub.RateWorkOrder, desk.RateWorkOrderRequest(score=visit.score)),
            ]
            for step, method, request in steps[:1] if visit.upcoming else steps:
                request.request_id = f"{rid}-{step}"
                request.work_order_id = wid
                await self.call(method, request, f"visit {step}", "service-desk", of=p.index)
            if visit.upcoming:
                self.stats.visits_booked += 1
            else:
                self.stats.visits += 1

        return script

    def contract_script(self, p: CustomerPlan) -> Script:
        """The organisation's service contract: a year long, ending around the day of the
        demo's first run (some ended, some within the 30 days that warn, most later)."""

        async def script() -> None:
            assert p.contract_end is not None
            stub = self.client.stub("service-desk", ServiceDeskServiceStub)
            registered = await self.registered_at(p.index)
            day = (registered - timedelta(days=1)).date()  # the "yesterday" of its run
            ends = day + timedelta(days=p.contract_end)
            created = await self.call(
                stub.CreateServiceContract,
                desk.CreateServiceContractRequest(
                    # Not of the day: a run on a later day replays it (one contract each).
                    request_id=self.rid(p.index, "contract"),
                    customer_id=self.ids[p.index],
                    name="Business support",
                    services=["broadband", "router-care"],
                    starts_on=(ends - timedelta(days=364)).isoformat(),
                    ends_on=ends.isoformat(),
                    # Twelve cases a year; every third organisation has premium support.
                    allowance_unit=ALLOWANCE_UNITS.value("cases"),
                    allowance=12,
                    sla_policy="premium" if p.index % 3 == 0 else "",
                    value_amount="1800.00",
                    value_currency="EUR",
                ),
                "create service contract",
                "service-desk",
                of=p.index,
            )
            self.stats.contracts += 1
            if p.visit is not None:
                # A visit falls under a contract valid today (it ends today or later); the
                # visit of one that has ended is requested without it.
                covered = p.contract_end >= 1
                contract_id = created.result.aggregate_id if covered else ""
                await self.visit_script(p, contract_id, registered)()

        return script

    async def ticket_step(
        self, stub: Any, index: int, rid: str, ticket_id: str, t: TicketPlan, step: str, arg: str
    ) -> None:
        """One step of a ticket's plan, as one command."""
        method: Any
        request: Any
        if step == "assign":
            agent, _, queue = arg.partition("/")
            method, request = (
                stub.AssignTicket,
                desk.AssignTicketRequest(agent_id=agent, queue=queue),
            )
        elif step in ("inbound", "outbound", "note"):
            call = arg.isdigit()
            body = {
                "inbound": f"Any news about “{t.subject}”?",
                "outbound": "We are on it and will get back to you within two working days.",
                "note": arg,
            }[step]
            method, request = (
                stub.RecordInteraction,
                desk.RecordInteractionRequest(
                    kind=INTERACTION_KINDS.value(
                        "note" if step == "note" else f"{step}-{'call' if call else 'message'}"
                    ),
                    # our written replies go by e-mail; the rest take the ticket's channel
                    channel=TICKET_CHANNELS.value_or_zero("email" if step == "outbound" else ""),
                    body="" if call else body,
                    duration_seconds=int(arg) if call else 0,
                ),
            )
        elif step == "escalate":
            method, request = (
                stub.EscalateTicket,
                desk.EscalateTicketRequest(reason="Customer asked for a supervisor", queue=arg),
            )
        elif step == "resolve":
            # Two in three resolutions of a category with an article use it (decided by the
            # request id, so a second run decides the same).
            article = self.articles.get(t.category, "")
            if article and zlib.crc32(rid.encode()) % 3:
                self.stats.resolved_with_article += 1
            else:
                article = ""
            method, request = (
                stub.ResolveTicket,
                desk.ResolveTicketRequest(resolution=arg, article_id=article),
            )
        elif step == "rate":
            method, request = stub.RateTicket, desk.RateTicketRequest(score=int(arg))
        elif step == "close":
            method, request = stub.CloseTicket, desk.CloseTicketRequest()
        elif step == "hold":
            self.stats.on_hold += 1
            reason = "photo of the damage" if arg == "customer" else "the carrier's answer"
            method, request = (
                stub.HoldTicket,
                desk.HoldTicketRequest(waiting_for=WAITING_FOR.value(arg), reason=reason),
            )
        else:
            method, request = stub.ReopenTicket, desk.ReopenTicketRequest(reason=arg)
        request.request_id = rid
        request.ticket_id = ticket_id
        await self.call(method, request, f"ticket {step}", "service-desk", of=index)

    async def run(self) -> None:
        plans = self.plans
        await self.phase("registering", [self.register_script(p) for p in plans])
        await self.phase("contact points and consent", [self.details_script(p) for p in plans])
        orgs = [p for p in plans if p.contacts]
        await self.phase("contact persons", [self.contacts_script(o) for o in orgs])
        await self.phase("changes and withdrawals", [self.changes_script(p) for p in plans])
        movers = [p for p in plans if p.move is not None and p.index in self.links]
        await self.phase("changing companies", [self.move_script(p) for p in movers])
        await self.phase("knowledge base", [self.article_script(a) for a in data().articles])
        signed = [p for p in plans if p.contract_end is not None]
        await self.phase("service contracts", [self.contract_script(p) for p in signed])
        with_tickets = [p for p in plans if p.tickets]
        await self.phase("service-desk tickets", [self.tickets_script(p) for p in with_tickets])
        self.sales = SalesDemo(self)
        await self.sales.phases()
        self.marketing = MarketingDemo(self)
        await self.marketing.phases()
        callers = [p for p in plans if p.ivr]
        await self.phase("a day of IVR contacts", [self.ivr_script(p) for p in callers])
        forgotten = erased(plans)
        await self.phase("an erasure request", [self.forget_script(forgotten)] if forgotten else [])
        await self.phase("asking the timeline", [self.profile_script(p) for p in plans])

    def forget_script(self, p: CustomerPlan) -> Script:
        """A customer's request to be forgotten: its personal data becomes unreadable."""

        async def script() -> None:
            request = api.ForgetCustomerRequest(
                request_id=self.rid(p.index, "forget"), customer_id=self.ids[p.index]
            )
            stub = self.client.stub("customer", CustomerServiceStub)
            await self.call(stub.ForgetCustomer, request, "forget a customer", of=p.index)
            self.stats.forgotten += 1

        return script

    def profile_script(self, p: CustomerPlan) -> Script:
        """Read the customer's profile once the timeline has its latest command: at risk?"""

        async def script() -> None:
            request = timeline_api.GetProfileRequest(
                customer_id=self.ids[p.index], wait_for=self.tokens.get(p.index, "")
            )
            stub = self.client.stub("timeline", TimelineServiceStub)
            reply = await self.retrying(stub.GetProfile, request, "read a profile", "timeline")
            if reply.profile.at_risk:
                self.at_risk.add(p.index)
            self.progress.advance(self.task)

        return script


def count_commands(plans: list[CustomerPlan]) -> int:
    """How many commands running `plans` issues (the progress bar's total)."""
    total = 0
    for p in plans:
        total += 1 + len(p.addresses) + (1 if p.late_owner else 0) + len(p.grants)
        total += len(p.contacts) + len(p.revocations) + (1 if p.tag_change else 0)
        total += (1 if p.rename else 0) + (2 if p.new_email else 0) + (2 if p.move else 0)
        total += sum(1 + len(t.steps) for t in p.tickets) + len(p.ivr)
        total += 1 if p.contract_end is not None else 0
        if p.contract_end is not None and p.visit is not None:
            total += 2 if p.visit.upcoming else VISIT_COMMANDS
    return total + 3 * len(data().articles) + (1 if erased(plans) else 0)


VISIT_COMMANDS = 8
REGIONS = ("north", "south", "east", "west")


TECHNICIANS = ("emp-1100", "emp-1101", "emp-1102", "emp-1103")
"""Each covers two neighbouring regions."""


def visit_window(registered: datetime, slot: int) -> datetime:
    """The start of the three-hour window of the `slot`-th visit, for an organisation
    registered then: the working days after it, two windows a day (09:00 and 13:00 UTC), a
    window of its own for each visit. Visits are booked for a time to come, and never two of
    a technician's at once."""
    day = registered.date()
    for _ in range(slot // 2 + 1):
        day += timedelta(days=1)
        while day.weekday() >= 5:
            day += timedelta(days=1)
    return datetime.combine(day, dt_time(9 if slot % 2 == 0 else 13), UTC)


def _visit(organisation: int) -> VisitPlan | None:
    """The visit of the `organisation`-th organisation (every other one has one). Each step
    counts the organisations visited (0, 1, 2, ...), not the customers' indexes: those are
    multiples of BLOCK, and `index % 4` gave every visit the same technician and region."""
    if organisation % 2:
        return None
    n = organisation // 2
    return VisitPlan(
        technician=TECHNICIANS[n // 2 % len(TECHNICIANS)],
        region=REGIONS[n % len(REGIONS)],
        labour_minutes=30 + 15 * (n % 4),
        fixed=n % 5 != 4,
        score=3 + n % 3,
        upcoming=n % 4 == 3,
        slot=n,
    )


# -- the command ------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `demo` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="load a realistic demo data set through the public APIs",
        description=(
            "Register people and organisations with contact points, addresses, owners, tags, "
            "consent, contact persons and later changes, through the customer gRPC API; then "
            "service-desk tickets across channels (a few customers call four times: at risk); "
            "then sales: a catalogue, price lists, leads, opportunities through the pipeline, "
            "quotes, orders and their ERP deliveries; "
            "then marketing: payments that give a lifetime value, segments, two finished "
            "campaigns with costs and the provider's reports, a running one, and a phone "
            "campaign's calls. "
            "Deterministic for a seed: running it again changes nothing, and with more"
            " --customers it adds the rest (those an earlier run erased are left out)."
        ),
    )
    parser.add_argument(
        "--customers", type=positive_int, required=True, metavar="N", help="how many customers"
    )
    parser.add_argument("--seed", type=int, default=42, metavar="S", help="default 42")
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=8,
        metavar="K",
        help="calls in flight (default 8)",
    )
    parser.set_defaults(func=run)


def _summary(plans: list[CustomerPlan], run: DemoRun, seed: int, seconds: float) -> dict[str, Any]:
    people = [p for p in plans if p.kind == "person"]
    orgs = [p for p in plans if p.kind == "organisation"]
    movers = [p for p in people if p.move is not None]
    contacts = [p for p in people if p.index in run.links]
    examples = orgs[:1] + (movers or contacts)[:1]
    examples += [p for p in people if p not in examples][: 4 - len(examples)]
    at_risk = [p for p in plans if p.index in run.at_risk]
    phone_tickets = [
        (p, run.ticket_ids[p.index][n])
        for p in plans
        for n, t in enumerate(p.tickets)
        if t.channel == "phone" and p.index in run.ticket_ids
    ]
    return {
        "seed": seed,
        "customers": len(plans),
        "people": len(people),
        "organisations": len(orgs),
        "contact_links": run.stats.links,
        "company_changes": run.stats.moves,
        "tickets": run.stats.tickets,
        "ivr_contacts": run.stats.contacts,
        "service_contracts": run.stats.contracts,
        "knowledge_articles": run.stats.articles,
        "tickets_resolved_with_article": run.stats.resolved_with_article,
        "tickets_on_hold": run.stats.on_hold,
        "on_site_visits": run.stats.visits,
        "visits_booked": run.stats.visits_booked,
        "at_risk_customers": len(at_risk),
        "forgotten_customers": run.stats.forgotten,
        "forgotten_earlier": len(run.stats.left_out),
        **(run.sales.summary() if run.sales else {}),
        **(run.marketing.summary() if run.marketing else {}),
        # How the run went, after what it loaded (the marketing figures came after these).
        "commands": run.stats.commands,
        "replayed": run.stats.replayed,
        "retries": run.stats.retries,
        "seconds": round(seconds, 2),
        "examples": [
            {
                "customer_id": run.ids.get(p.index, ""),
                "display_name": p.rename or p.name,
                "kind": p.kind,
            }
            for p in examples
        ],
        "at_risk_examples": [run.ids.get(p.index, "") for p in at_risk[:3]],
        "ticket_examples": [
            {"ticket_id": ticket_id, "customer_id": run.ids.get(p.index, ""), "channel": "phone"}
            for p, ticket_id in phone_tickets[:3]
        ],
    }


async def _load(args: argparse.Namespace, plans: list[CustomerPlan], out: Output) -> DemoRun:
    progress = Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out.err,
    )
    async with AsyncClient(args) as client:
        with progress:
            task = progress.add_task("starting", total=count_commands(plans) + len(plans))
            run = DemoRun(client, plans, args.seed, args.concurrency, args.timeout, progress, task)
            await run.run()
            # The bar's total was an estimate (the sales and marketing parts' counts are
            # known as they go): done, it ends full at what was done, not at 2579/2602.
            progress.update(task, total=progress.tasks[0].completed, description="done")
    return run


def run(args: argparse.Namespace) -> int:
    out = Output(args.json)
    plans = build_plan(args.customers, args.seed)
    started = time.monotonic()
    demo = asyncio.run(_load(args, plans, out))
    summary = _summary(plans, demo, args.seed, time.monotonic() - started)
    if out.json_mode:
        out.json(summary)
        return 0
    out.kv_panel(
        f"demo loaded (seed {args.seed})",
        [
            (k.replace("_", " "), v)
            for k, v in summary.items()
            if k
            not in {
                "examples",
                "seed",
                "at_risk_examples",
                "ticket_examples",
                "sales_examples",
                "marketing_examples",
            }
        ],
    )
    out.table(
        ["customer", "name", "kind"],
        [[e["customer_id"], e["display_name"], e["kind"]] for e in summary["examples"]],
        title="try: c360 timeline show ID · c360 customer get ID · c360 profile show ID",
    )
    return 0
