"""How the customer service declares itself to c360 (entry point `c360.services`)."""

from c360_platform.registry import ServiceSpec

SPEC = ServiceSpec(
    name="customer",
    package="c360_customer",
    default_port=50051,
    api="c360.customer.v1.CustomerService",
    contract="c360_customer.contract:CONTRACT",
    build="c360_customer.service:build",
    summary="identity, contact points, contact persons, consent, owner; duplicates and merges",
    domain=("domain", "duplicates"),
)
