"""How the timeline declares itself to c360 (entry point `c360.services`)."""

from c360_platform.registry import ServiceSpec

SPEC = ServiceSpec(
    name="timeline",
    package="c360_timeline",
    default_port=50052,
    api="c360.timeline.v1.TimelineService",
    build="c360_timeline.service:build",
    summary="the unified customer timeline, 360 profile and search, projected from every event",
    publishes_events=False,
    consumes=("C360", "ERP"),
    dead_letters=True,
    domain=("projection", "entries", "erp_inbound", "sources"),
)
