"""Sales sells the renewal of service contracts: a durable consumer of the service desk's
published `service_contract.renewal_due` events (the contract reads only the published
contract, never the desk's code) opens one renewal opportunity per contract and period, for
the customer's responsible employee, in the renewal pipeline (C360_RENEWAL_PIPELINE, default
"default"), due to close on the contract's last day. The request id is the contract and its
period, so a redelivery, a replay of the stream or a second replica opens nothing more; the
message is acknowledged only then. While the pipeline does not exist the message is asked for
again a minute later (so renewals wait for it rather than being lost)."""

from __future__ import annotations

import logging
import os

from nats.aio.msg import Msg

from c360.events.v1 import envelope_pb2
from c360.events.v1 import service_contract_events_pb2 as sev
from c360_platform.commands import blocking
from c360_platform.errors import C360Error, NotFound
from c360_platform.follow import DurableFollower
from c360_platform.store import CommandContext, fingerprint
from c360_platform.streams import StreamSettings
from c360_sales.application import SalesApplication
from c360_sales.domain import in_units
from c360_sales.erp_orders import OwnerOf
from c360_sales.spec import RENEWALS

_log = logging.getLogger(__name__)
SUBJECT = "c360.service-desk.service_contract.renewal_due"
DURABLE = RENEWALS.name
PIPELINE_SETTING = "C360_RENEWAL_PIPELINE"
RETRY_SECONDS = 60.0


class ContractRenewals(DurableFollower):
    """Opens a renewal opportunity for each service contract whose renewal is due."""

    def __init__(
        self,
        app: SalesApplication,
        nats_url: str,
        owner_of: OwnerOf,
        *,
        pipeline: str = "",
        batch_size: int = 32,
    ) -> None:
        super().__init__(
            nats_url,
            StreamSettings.from_env(),
            SUBJECT,
            DURABLE,
            name="c360-sales-renewals",
            batch_size=batch_size,
        )
        self.app = app
        self.owner_of = owner_of
        self.pipeline = pipeline or os.environ.get(PIPELINE_SETTING, "") or "default"
        self.opened = 0

    async def handle(self, msg: Msg) -> None:
        found = await self.published(msg, sev.ServiceContractRenewalDue)
        if found is None:
            return
        envelope, due = found
        if await self.open(envelope, due):
            await msg.ack()
        else:
            await msg.nak(delay=RETRY_SECONDS)

    async def open(
        self, envelope: envelope_pb2.Envelope, due: sev.ServiceContractRenewalDue
    ) -> bool:
        """One renewal opportunity; False when it must be tried again later."""
        ctx = CommandContext(
            command="OpenOpportunity",
            request_id=f"renewal:{envelope.aggregate_id}:{due.period}",
            fingerprint=fingerprint(due.SerializeToString(deterministic=True)),
            correlation_id=envelope.correlation_id or envelope.event_id,
            causation_id=envelope.event_id,
        )
        try:
            owner = await self.owner_of(envelope.customer_id)
            await blocking(
                self.app.open_opportunity,
                ctx,
                self.pipeline,
                customer_id=envelope.customer_id,
                name=f"Renewal: {due.name} (ends {due.ends_on})",
                owner_id=owner,
                currency=due.value_currency or "EUR",
                amount=in_units(due.value_amount or "0", due.value_currency or "EUR"),
                expected_close=due.ends_on,
            )
        except NotFound as exc:
            _log.warning("renewal of contract %s waits: %s", envelope.aggregate_id, exc)
            return False
        except (ValueError, C360Error) as exc:
            _log.warning(
                "renewal of contract %s not opened: %s", envelope.aggregate_id, type(exc).__name__
            )
            return True  # refused for good (logged): asking again would not change it
        self.opened += 1
        return True
