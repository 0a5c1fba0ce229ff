"""How sales declares itself to c360 (entry point `c360.services`)."""

from c360_platform.registry import Durable, ServiceSpec

ERP_ORDERS = Durable("ERP", "sales-erp")
"""ERP's deliveries and overdue invoices (erp.>)."""
RENEWALS = Durable("C360", "sales-renewals")
"""Service contracts whose renewal is due (c360.service-desk.service_contract.renewal_due)."""
FORGOTTEN_CUSTOMERS = Durable("C360", "sales-forgotten-customers")
"""Forgotten customers, whose leads are forgotten with them (c360.customer.customer.forgotten)."""

SPEC = ServiceSpec(
    name="sales",
    package="c360_sales",
    default_port=50054,
    api="c360.sales.v1.SalesService",
    contract="c360_sales.contract:CONTRACT",
    build="c360_sales.service:build",
    summary="leads, pipelines and opportunities, price lists, quotes and orders to ERP",
    consumes=(ERP_ORDERS, RENEWALS, FORGOTTEN_CUSTOMERS),
    # The responsible employee of a customer with an overdue invoice comes from its profile.
    reads_timeline=True,
    # ERP deliveries it cannot record (deadletter.sales.erp.order.delivered).
    dead_letters=True,
    domain=("domain", "pricing", "reports", "classes"),
)
