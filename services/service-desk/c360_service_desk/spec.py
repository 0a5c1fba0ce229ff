"""How the service desk declares itself to c360 (entry point `c360.services`)."""

from c360_platform.registry import ServiceSpec

SPEC = ServiceSpec(
    name="service-desk",
    package="c360_service_desk",
    default_port=50053,
    api="c360.service_desk.v1.ServiceDeskService",
    contract="c360_service_desk.contract:CONTRACT",
    build="c360_service_desk.service:build",
    summary="tickets from every channel, with the customer's 360 context beside them",
    reads_timeline=True,
    domain=(
        "domain",
        "sla",
        "contacts",
        "service_contracts",
        "knowledge",
        "field_service",
        "reports",
        "holidays",
        "money",
    ),
)
