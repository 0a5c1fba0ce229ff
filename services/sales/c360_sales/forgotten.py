"""Sales forgets a customer's leads with the customer: a durable consumer of the customer
service's published `customer.forgotten` events (the published contract only, never the
customer service's code). What the customer's events sealed is gone with the customer's key;
a lead captured for a prospect and converted for the customer later was sealed with a key of
its own until then, which is deleted here (a LeadForgotten event on each of the customer's
leads, with the key's deletion). The request ids come from the event, so a redelivery, a
replay of the stream or a second replica forgets nothing twice; the message is acknowledged
once every lead is forgotten, and asked for again a few seconds later if the store fails."""

from __future__ import annotations

import logging

from nats.aio.msg import Msg

from c360.events.v1 import customer_events_pb2 as cev
from c360_platform.commands import blocking
from c360_platform.follow import DurableFollower
from c360_platform.streams import StreamSettings
from c360_sales.application import SalesApplication
from c360_sales.spec import FORGOTTEN_CUSTOMERS

_log = logging.getLogger(__name__)
SUBJECT = "c360.customer.customer.forgotten"
DURABLE = FORGOTTEN_CUSTOMERS.name
RETRY_SECONDS = 5.0


class ForgottenCustomers(DurableFollower):
    """Forgets the leads of each customer the customer service forgets."""

    def __init__(self, app: SalesApplication, nats_url: str, *, batch_size: int = 32) -> None:
        super().__init__(
            nats_url,
            StreamSettings.from_env(),
            SUBJECT,
            DURABLE,
            name="c360-sales-forgotten-customers",
            batch_size=batch_size,
        )
        self.app = app
        self.forgotten = 0
        """Leads forgotten by this follower since it started."""

    async def handle(self, msg: Msg) -> None:
        found = await self.published(msg, cev.CustomerForgotten)
        if found is None:
            return
        envelope, _ = found
        customer_id = envelope.customer_id or envelope.aggregate_id
        try:
            done = await blocking(self.app.forget_leads_of, customer_id, envelope.event_id)
        except Exception as exc:  # the store is down, a conflict with a concurrent change
            _log.warning(
                "leads of forgotten customer %s: %s; asking again", customer_id, type(exc).__name__
            )
            await msg.nak(delay=RETRY_SECONDS)
            return
        self.forgotten += len(done)
        await msg.ack()
