"""How the marketing service declares itself to c360 (entry point `c360.services`)."""

from c360_platform.registry import Durable, Partner, ServiceSpec

DELIVERY_REPORTS = Durable("DELIVERY", "marketing")
"""The delivery provider's reports on each touch (delivery.>)."""

SPEC = ServiceSpec(
    name="marketing",
    package="c360_marketing",
    default_port=50055,
    api="c360.marketing.v1.MarketingService",
    contract="c360_marketing.contract:CONTRACT",
    build="c360_marketing.service:build",
    summary="live segments over the 360 profile, consent-aware campaigns, budgets and results",
    reads_timeline=True,
    consumes=(DELIVERY_REPORTS,),
    partner=Partner(role="delivery", stream="DELIVERY", subjects=("delivery.>",)),
    domain=("domain", "conditions", "offers"),
    more_stores=("marketing-plans",),  # segments, campaigns and lists: not published
)
