"""Subject permissions of the embedded nats-server: each role publishes only where it may,
and the generated permissions are enough for every part to do its work."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS

from c360_customer.application import CustomerApplication
from c360_customer.contract import CONTRACT as CUSTOMER_CONTRACT
from c360_platform import natsauth
from c360_platform.catchup import CatchUpConsumer, SourceDirectory, StartAt
from c360_platform.embedded import EmbeddedNats
from c360_platform.pgstore import ensure_schema, postgres_env
from c360_platform.relay import OutboxRelay
from c360_platform.store import CommandContext
from c360_platform.streams import StreamSettings
from c360_timeline.projector import Projector
from c360_timeline.readmodel import open_read_model

pytestmark = pytest.mark.integration


@pytest.fixture
def users(tmp_path: Path) -> Iterator[dict[str, str]]:
    """{role: URL with its credentials} of a nats-server started with the generated users."""
    passwords = natsauth.load_passwords(tmp_path / "users.json", natsauth.roles())
    server = EmbeddedNats(tmp_path / "nats")
    try:
        url = server.start(natsauth.authorization(passwords))
        urls = {role: natsauth.url_for(url, role, pw) for role, pw in passwords.items()}
        asyncio.run(natsauth.prepare_streams(urls[natsauth.ADMIN]))  # as `c360 up` does
        yield urls
    finally:
        server.stop()


class Connection:
    """A client of one role that remembers what the server refused."""

    def __init__(self) -> None:
        self.nc: NATS | None = None
        self.refused: list[str] = []

    async def connect(self, url: str) -> NATS:
        async def on_error(exc: Exception) -> None:
            self.refused.append(str(exc))

        self.nc = await nats.connect(url, error_cb=on_error, **natsauth.client_options(url))
        return self.nc

    async def subscribe(self, subject: str) -> str:
        """Subscribe, then wait for the server's verdict: '' if accepted, else its refusal."""
        assert self.nc is not None
        before = len(self.refused)
        await self.nc.subscribe(subject)
        await self.nc.flush()
        for _ in range(50):
            if len(self.refused) > before:
                return self.refused[-1]
            await asyncio.sleep(0.01)
        return ""

    async def publish(self, subject: str) -> str:
        """Publish, then wait for the server's verdict: '' if accepted, else its refusal."""
        assert self.nc is not None
        before = len(self.refused)
        await self.nc.publish(subject, b"{}")
        await self.nc.flush()
        for _ in range(50):  # the refusal comes asynchronously, right after the flush
            if len(self.refused) > before:
                return self.refused[-1]
            await asyncio.sleep(0.01)
        return ""


@pytest_asyncio.fixture
async def connect() -> AsyncIterator[Connection]:
    opened: list[Connection] = []

    class Opener(Connection):
        def __init__(self) -> None:
            super().__init__()
            opened.append(self)

    yield Opener  # type: ignore[misc]
    for c in opened:
        if c.nc is not None:
            with contextlib.suppress(Exception):
                await c.nc.close()


async def test_each_role_publishes_only_on_its_own_subjects(
    users: dict[str, str], connect: type[Connection]
) -> None:
    admin = connect()
    await admin.connect(users["admin"])
    erp_user = connect()
    await erp_user.connect(users["erp"])
    customer = connect()
    await customer.connect(users["customer"])
    timeline = connect()
    await timeline.connect(users["timeline"])

    refused = await erp_user.publish("c360.customer.x")
    assert 'permissions violation for publish to "c360.customer.x"' in refused
    assert await erp_user.publish("erp.invoice.issued") == ""
    # nor may it take over the timeline's durable consumer
    assert "permissions violation" in await erp_user.publish(
        "$JS.API.CONSUMER.DELETE.C360.timeline"
    )
    assert await customer.publish("c360.customer.customer.registered") == ""
    assert 'publish to "c360.service-desk.ticket.opened"' in await customer.publish(
        "c360.service-desk.ticket.opened"
    )
    assert "permissions violation" in await customer.publish("erp.invoice.issued")
    assert "permissions violation" in await timeline.publish("c360.customer.x")
    assert await admin.publish("c360.customer.x") == ""
    # No one reads another role's replies (the timeline's deliveries carry customer data)...
    assert "permissions violation" in await customer.subscribe("_INBOX.>")
    assert "permissions violation" in await customer.subscribe("_INBOX_timeline.>")
    assert "permissions violation" in await erp_user.subscribe("_INBOX_timeline.>")
    assert await customer.subscribe("_INBOX_customer.>") == ""
    # ...and streams are configured by the admin only.
    assert "permissions violation" in await customer.publish("$JS.API.STREAM.UPDATE.C360")
    assert "permissions violation" in await erp_user.publish("$JS.API.STREAM.DELETE.C360")
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            users["erp"].replace("erp:", "erp:wrong"), allow_reconnect=False, connect_timeout=5
        )


async def test_no_outside_system_touches_a_consumer_it_does_not_own(
    users: dict[str, str], connect: type[Connection]
) -> None:
    """Every durable a service declares is its own: ERP may not read, reset or delete one
    (sales forgets a forgotten customer's leads from `sales-forgotten-customers`), nor may
    another service; the delivery provider reads marketing's events from a feed of its own
    and has no right on the event stream at all."""
    erp_user, sales, delivery = connect(), connect(), connect()
    await erp_user.connect(users["erp"])
    await sales.connect(users["sales"])
    await delivery.connect(users["delivery"])
    for durable in ("timeline", "sales-forgotten-customers", "sales-renewals"):
        for api in ("CONSUMER.INFO", "CONSUMER.DELETE", "CONSUMER.MSG.NEXT"):
            refused = await erp_user.publish(f"$JS.API.{api}.C360.{durable}")
            assert "permissions violation" in refused, (api, durable)
        assert "permissions violation" in await erp_user.publish(f"$JS.ACK.C360.{durable}.1")
    assert await erp_user.publish("$JS.API.CONSUMER.INFO.C360.erp-debtors") == ""
    # Dead letters: only of its own messages (erp.>), through its one consumer there; not
    # one without that filter, nor another consumer's, nor another system's letters.
    dead = StreamSettings.dead_letters().name
    own = natsauth.erp_dead_letter_subject()
    assert await erp_user.publish(f"$JS.API.CONSUMER.CREATE.{dead}.erp.{own}") == ""
    for subject in (
        f"$JS.API.CONSUMER.CREATE.{dead}.erp",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{dead}.erp",
        f"$JS.API.CONSUMER.CREATE.{dead}.erp.deadletter.marketing.delivery.>",
        f"$JS.API.CONSUMER.CREATE.{dead}.erp.deadletter.>",
        f"$JS.API.CONSUMER.CREATE.{dead}.ops.{own}",
        f"$JS.API.CONSUMER.MSG.NEXT.{dead}.ops",
        f"$JS.API.STREAM.MSG.GET.{dead}",
        f"$JS.ACK.{dead}.ops.1",
    ):
        assert "permissions violation" in await erp_user.publish(subject), subject
    assert "permissions violation" in await sales.publish("$JS.API.CONSUMER.DELETE.C360.timeline")
    assert await sales.publish("$JS.API.CONSUMER.INFO.C360.sales-renewals") == ""
    for subject in (
        "$JS.API.STREAM.MSG.GET.C360",
        "$JS.API.CONSUMER.INFO.C360.erp-debtors",
        "$JS.API.CONSUMER.DURABLE.CREATE.C360.mine",
        "$JS.API.CONSUMER.CREATE.C360.mine.c360.customer.>",
    ):
        assert "permissions violation" in await delivery.publish(subject), subject

    admin = await nats.connect(users["admin"])
    try:
        await admin.jetstream().publish("c360.customer.customer.registered", b"customer")
        await admin.jetstream().publish("c360.marketing.touch.sent", b"touch")
    finally:
        await admin.close()
    assert delivery.nc is not None
    before = len(delivery.refused)
    js = delivery.nc.jetstream()
    feed = natsauth.feed_of("marketing").name
    sub = await js.pull_subscribe("c360.>", durable="provider", stream=feed)
    msgs: list[bytes] = []
    for _ in range(20):  # the feed copies from C360 in the background
        with contextlib.suppress(nats.errors.TimeoutError):
            for msg in await sub.fetch(10, timeout=0.5):
                msgs.append(msg.data)
                await msg.ack()
        if msgs:
            break
    assert msgs == [b"touch"]
    assert delivery.refused[before:] == []


async def test_every_part_does_its_work_with_its_own_credentials(
    users: dict[str, str], database_url: str
) -> None:
    ensure_schema(database_url, "customer")
    app = CustomerApplication(env=postgres_env(database_url, "customer"))
    relay = OutboxRelay(
        app, CUSTOMER_CONTRACT, postgres_url=database_url, nats_url=users["customer"]
    )
    view = open_read_model(database_url)
    projector = Projector(view, postgres_url=database_url, nats_url=users["timeline"])
    nc = await nats.connect(users["erp"], **natsauth.client_options(users["erp"]))
    try:
        for i in range(3):
            app.register(
                CommandContext(),
                kind="person",
                display_name=f"P {i}",
                emails=[f"p{i}@example.com"],
                phones=[],
                addresses=[],
            )
        await relay.publish_once()  # publishes on the admin's stream, as `customer`
        assert relay.position() == 3
        while await projector.process_batch(timeout=0.5):  # as `timeline`
            pass
        assert projector.applied == 3
        # an integrator reads c360's events on a durable of its own, as `erp`
        erp = CatchUpConsumer(
            nc.jetstream(), StreamSettings(), "billing", "c360.>", SourceDirectory({})
        )
        await erp.open(StartAt.beginning())
        batch = await erp.next_batch(timeout=2)
        assert [e.envelope.source_position for e in batch.events] == [1, 2, 3]
        await erp.commit(batch)
        ack = await nc.jetstream().publish("erp.invoice.issued", b"not an ErpEvent")
        assert ack.stream == "ERP"  # prepared by the admin, written to by the ERP
        while await projector.intake.process_batch(timeout=0.5):  # dead-letters it
            pass
        assert projector.intake.rejected == 1
        # ... and reads that letter, with the reason, on the one consumer it may have there
        letters = await nc.jetstream().pull_subscribe(
            natsauth.erp_dead_letter_subject(),
            durable=natsauth.ERP_DEAD_LETTERS,
            stream=StreamSettings.dead_letters().name,
        )
        [letter] = await letters.fetch(1, timeout=5)
        assert (letter.subject, letter.data) == (
            "deadletter.timeline.erp.invoice.issued",
            b"not an ErpEvent",
        )
        assert letter.headers is not None
        assert letter.headers["C360-Consumer"] == "timeline"
        assert "not a c360.erp.v1.ErpEvent" in letter.headers["C360-Reason"]
        await letter.ack()
    finally:
        await nc.close()
        await relay.close()
        await projector.close()
        app.close()


def test_the_dead_letters_cli_as_a_user_who_may_not_read_them_says_so(
    users: dict[str, str], tmp_path: Path
) -> None:
    """A service's NATS user gets no answer about the dead letters (its requests are
    refused): the CLI says what to use instead, without a traceback."""
    command = [sys.executable, "-m", "c360_cli.main", "--home", str(tmp_path), "deadletter"]
    done = subprocess.run(
        [*command, "list", "--nats-url", users["customer"]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "the user of this URL may not read them" in done.stderr
    assert "Traceback" not in done.stderr
