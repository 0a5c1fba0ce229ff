"""How sales declares itself to c360 (entry point `c360.services`)."""

from c360_platform.registry import ServiceSpec

SPEC = ServiceSpec(
    name="sales",
    package="c360_sales",
    default_port=50054,
    api="c360.sales.v1.SalesService",
    contract="c360_sales.contract:CONTRACT",
    build="c360_sales.service:build",
    summary="leads, pipelines and opportunities, price lists, quotes and orders to ERP",
    # ERP's deliveries and overdue invoices (erp.>) are read from the ERP stream; service
    # contracts whose renewal is due (c360.service-desk.service_contract.renewal_due) and
    # forgotten customers, whose leads are forgotten with them (c360.customer.customer.forgotten),
    # from C360.
    consumes=("ERP", "C360"),
    # The responsible employee of a customer with an overdue invoice comes from its profile.
    reads_timeline=True,
    domain=("domain", "pricing", "reports", "classes"),
)
