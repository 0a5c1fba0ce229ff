"""How the timeline declares itself to c360 (entry point `c360.services`)."""

from c360_platform.registry import Durable, ServiceSpec

PROJECTOR = Durable("C360", "timeline")
"""Every event c360 publishes (c360.>), into the read model."""
ERP_FEED = Durable("ERP", "timeline-erp")
"""ERP's events (erp.>), validated onto the timeline or dead-lettered."""

SPEC = ServiceSpec(
    name="timeline",
    package="c360_timeline",
    default_port=50052,
    api="c360.timeline.v1.TimelineService",
    build="c360_timeline.service:build",
    summary="the unified customer timeline, 360 profile and search, projected from every event",
    publishes_events=False,
    consumes=(PROJECTOR, ERP_FEED),
    dead_letters=True,
    domain=("projection", "entries", "erp_inbound", "sources"),
)
