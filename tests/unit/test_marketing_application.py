"""The marketing application in memory: live segments from profile facts, explanations,
membership as of a time, campaigns with consent checked at each send, provider reports once,
results with cost and ROI."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from c360.events.v1 import marketing_events_pb2 as mev
from c360_marketing import domain
from c360_marketing.application import Marketing
from c360_marketing.conditions import Facts
from c360_marketing.contract import CONTRACT
from c360_marketing.domain import Campaign, Touch
from c360_platform.errors import AlreadyExists, InvalidArgument, NotFound, PreconditionFailed
from c360_platform.store import CommandContext, RowQuery, where
from tests.unit.support import Clock

LATVIA = json.dumps(
    {
        "all": [
            {"field": "country", "value": "LV"},
            {"field": "lifetime_value", "op": "gt", "value": 1000},
            {"field": "consent", "channel": "email", "purpose": "marketing"},
        ]
    }
)
ADA = "00000000-0000-4000-8000-00000000000a"
BOB = "00000000-0000-4000-8000-00000000000b"
CID = "00000000-0000-4000-8000-00000000000c"


def person(customer_id: str, name: str, **changes: Any) -> Facts:
    base: dict[str, Any] = {
        "customer_id": customer_id,
        "display_name": name,
        "countries": frozenset({"LV"}),
        "region": "LV",
        "lifetime_value": {"EUR": Decimal("1500")},
        "consent": {"email/marketing": True},
        "emails": (f"{name.lower()}@example.com",),
    }
    return Facts(**(base | changes))


def ctx(request_id: str = "") -> CommandContext:
    return CommandContext(command="Test", request_id=request_id, fingerprint=request_id)


@pytest.fixture
def clock() -> Clock:
    # Events carry the library's timestamps (real time): the clock starts there.
    return Clock(datetime.now(UTC))


@pytest.fixture
def mk(clock: Clock) -> Marketing:
    m = Marketing.in_memory(clock)
    m.observe([person(ADA, "Ada"), person(BOB, "Bob"), person(CID, "Cid", consent={})])
    return m


def define(mk: Marketing, name: str = "latvia", condition: str = LATVIA) -> str:
    outcome = mk.define_segment(ctx(), name=name, description="", condition=condition)
    mk.reevaluate()
    return outcome.extra["segment_id"]


def test_a_new_segment_evaluates_everyone_with_progress(mk: Marketing) -> None:
    sid = define(mk)
    segment = mk.segment("latvia")
    assert str(segment.id) == sid
    assert [m.customer_id for m in mk.members(segment, None)] == [ADA, BOB]
    assert mk.progress[sid].evaluated == mk.progress[sid].total == 3
    size, total, sample = mk.preview(LATVIA, 1)
    assert (size, total, [f.display_name for f in sample]) == (2, 3, ["Ada"])


def test_a_customer_observed_after_a_revision_is_evaluated_once(mk: Marketing) -> None:
    sid = define(mk)
    dan = "00000000-0000-4000-8000-00000000000d"
    mk.observe([person(dan, "Dan")])
    # Evaluated on arrival, counted in the round's progress; the round has nothing left.
    assert mk.progress[sid].evaluated == mk.progress[sid].total == 4
    assert mk.reevaluate() == 0
    segment = mk.segment("latvia")
    assert [m.customer_id for m in mk.members(segment, None)] == [ADA, BOB, dan]


def test_after_a_restart_reading_every_profile_is_the_only_evaluation(mk: Marketing) -> None:
    sid = define(mk)
    # A new process over the same stores: its follower reads every profile first.
    again = Marketing(mk.plans, mk.people, mk.clock)
    again.observe([person(ADA, "Ada"), person(BOB, "Bob"), person(CID, "Cid", consent={})])
    assert again.progress[sid].evaluated == again.progress[sid].total == 3
    assert again.reevaluate() == 0
    assert [m.customer_id for m in again.members(again.segment("latvia"), None)] == [ADA, BOB]


def test_observing_loads_only_the_memberships_a_verdict_changes(
    mk: Marketing, monkeypatch: pytest.MonkeyPatch
) -> None:
    define(mk)
    define(mk, "in lv", json.dumps({"field": "country", "value": "LV"}))
    loads: list[UUID] = []
    at = mk.people.at

    def counted(kind: Any, aggregate_id: UUID, as_of: Any) -> Any:
        loads.append(aggregate_id)
        return at(kind, aggregate_id, as_of)

    monkeypatch.setattr(mk.people, "at", counted)
    # Nothing changes for either segment: Ada stays in both, Cid in "in lv" only.
    mk.observe([person(ADA, "Ada"), person(CID, "Cid", consent={})])
    assert loads == []
    # Ada's consent goes: she leaves "latvia" (loaded, changed), stays in "in lv".
    mk.observe([person(ADA, "Ada", consent={})])
    latvia = mk.segment("latvia")
    assert loads == [domain.membership_id(str(latvia.id), ADA)]
    assert [m.customer_id for m in mk.members(latvia, None)] == [BOB]
    assert [m.customer_id for m in mk.members(mk.segment("in lv"), None)] == [ADA, BOB, CID]


def test_refusals_name_the_field_and_store_nothing(mk: Marketing) -> None:
    define(mk)
    with pytest.raises(AlreadyExists):
        define(mk)
    bad = json.dumps({"any": [{"field": "segment", "value": "nope"}]})
    with pytest.raises(InvalidArgument) as caught:
        define(mk, "other", bad)
    assert [v.field for v in caught.value.violations] == ["condition.any[0].value"]
    assert len(mk.segments()) == 1


def test_a_condition_nested_too_deep_is_refused_by_define_revise_and_preview(
    mk: Marketing,
) -> None:
    sid = define(mk)
    deep = "[" * 5000 + "]" * 5000
    attempts: list[Callable[[], object]] = [
        lambda: define(mk, "deep", deep),
        lambda: mk.revise_segment(ctx(), UUID(sid), None, deep, ""),
        lambda: mk.preview(deep, 10),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidArgument) as caught:
            attempt()
        assert [v.field for v in caught.value.violations] == ["condition"]
    assert [s.revision for s in mk.segments()] == [1]


def test_a_revised_description_is_checked_as_a_defined_one(mk: Marketing) -> None:
    sid = UUID(define(mk))
    for description, says in [
        ("x" * 2001, "must be at most 2000 characters"),
        ("bell\x07", "must not contain control characters"),
    ]:
        with pytest.raises(InvalidArgument) as defined:
            mk.define_segment(ctx(), name="other", description=description, condition=LATVIA)
        with pytest.raises(InvalidArgument) as revised:
            mk.revise_segment(ctx(), sid, None, LATVIA, description)
        for caught in (defined, revised):
            assert [(v.field, v.description) for v in caught.value.violations] == [
                ("description", says)
            ]
    assert [(s.revision, s.description) for s in mk.segments()] == [(1, "")]
    # Both keep the same text: trimmed, white space collapsed.
    mk.revise_segment(ctx(), sid, None, LATVIA, "  High value,\n Latvia ")
    assert mk.segment("latvia").description == "High value, Latvia"


def test_a_revoked_consent_leaves_the_segment_naming_the_condition(
    mk: Marketing, clock: Clock
) -> None:
    define(mk)
    segment = mk.segment("latvia")
    entered_at = datetime.now(UTC)
    clock.advance(days=1)
    mk.observe([person(ADA, "Ada", consent={"email/marketing": False})])
    why = mk.explain(segment, ADA, None)
    assert not why.member
    assert why.condition_path == "condition.all[2]"
    # What is true of Ada now (not the condition she no longer meets, which read as if
    # she had left on a granted consent).
    assert why.condition == "consent email/marketing not granted"
    assert why.cause == "profile_changed"
    assert ("condition.all[2]", "consent email/marketing granted", False, "revoked") in (
        why.conditions
    )
    # As of the day before, Ada was a member; and she is not one now.
    assert ADA in [m.customer_id for m in mk.members(segment, entered_at)]
    assert ADA not in [m.customer_id for m in mk.members(segment, None)]
    assert mk.explain(segment, ADA, entered_at).member


def test_a_customer_never_in_the_segment_is_told_what_keeps_them_out(mk: Marketing) -> None:
    define(mk)
    segment = mk.segment("latvia")
    why = mk.explain(segment, CID, None)  # Cid never consented to e-mail marketing
    assert (why.evaluated, why.member, why.since) == (True, False, None)
    assert why.condition_path == "condition.all[2]"
    assert why.condition == "consent email/marketing not granted"
    assert why.cause == ""
    assert not mk.explain(segment, "00000000-0000-4000-8000-0000000000ff", None).evaluated


def test_a_not_segment_explains_entries_and_leaves_by_what_holds(mk: Marketing) -> None:
    """Members of "not vip" entered because they have no vip tag: said so, not "tags has
    vip" (the condition under the `not`, which is false of them)."""
    define(mk, "not-vip", json.dumps({"not": {"field": "tags", "value": "vip"}}))
    segment = mk.segment("not-vip")
    why = mk.explain(segment, ADA, None)
    assert (why.member, why.condition_path) == (True, "condition.not")
    assert why.condition == "tags has none of vip"
    mk.observe([person(ADA, "Ada", tags=frozenset({"vip"}))])
    why = mk.explain(segment, ADA, None)
    assert (why.member, why.condition) == (False, "tags has vip")
    mk.observe([person(BOB, "Bob", consent={"email/marketing": False})])  # not in the tree
    either = [{"field": "consent", "channel": "email"}, {"field": "consent", "channel": "sms"}]
    define(mk, "no-email", json.dumps({"not": {"any": either}}))
    why = mk.explain(mk.segment("no-email"), BOB, None)
    assert why.member
    assert why.condition == (
        "none of (consent email/marketing granted; consent sms/marketing granted)"
    )


def test_a_forgotten_customer_leaves_every_segment(mk: Marketing, clock: Clock) -> None:
    """Forgotten on request: reached by no campaign or lead list, whatever the conditions say
    of what the profile still holds (its country, its tags)."""
    define(mk)
    segment = mk.segment("latvia")
    assert ADA in [m.customer_id for m in mk.members(segment, None)]
    clock.advance(days=1)
    mk.observe([person(ADA, "Ada", forgotten=True)])
    why = mk.explain(segment, ADA, None)
    assert (why.member, why.cause, why.condition_path) == (False, "customer_forgotten", "")
    assert why.condition == "the customer was forgotten on request"
    assert ADA not in [m.customer_id for m in mk.members(segment, None)]
    assert BOB in [m.customer_id for m in mk.members(segment, None)]


def test_a_preview_counts_no_customer_forgotten_or_merged_away(mk: Marketing) -> None:
    """A preview is the segment it would be: a forgotten customer (its profile still holds
    its country and tags) or one merged into another is in none, so neither in a preview."""
    mk.observe([person(ADA, "Ada", forgotten=True), person(BOB, "Bob", merged_into=CID)])
    size, total, sample = mk.preview(json.dumps({"field": "country", "value": "LV"}), 10)
    assert (size, total, [f.customer_id for f in sample]) == (1, 3, [CID])
    sid = define(mk, "lv", json.dumps({"field": "country", "value": "LV"}))
    assert [m.customer_id for m in mk.members(mk.segment(sid), None)] == [CID]


def test_a_customer_merged_into_another_leaves_every_segment_until_unmerged(
    mk: Marketing, clock: Clock
) -> None:
    """A duplicate merged away is reached as its survivor (sales refuses it new leads): no
    campaign or lead list names it; unmerged, its conditions decide again."""
    define(mk)
    segment = mk.segment("latvia")
    clock.advance(days=1)
    mk.observe([person(ADA, "Ada", merged_into=BOB)])
    why = mk.explain(segment, ADA, None)
    assert (why.member, why.cause, why.condition_path) == (False, "customer_merged", "")
    assert why.condition == f"the customer was merged into customer {BOB}"
    assert [m.customer_id for m in mk.members(segment, None)] == [BOB]
    clock.advance(days=1)
    mk.observe([person(ADA, "Ada")])
    why = mk.explain(segment, ADA, None)
    assert (why.member, why.cause) == (True, "profile_changed")


def test_a_segment_of_a_segment_follows_it(mk: Marketing) -> None:
    sid = define(mk)
    vip = json.dumps(
        {"all": [{"field": "segment", "value": sid}, {"not": {"field": "at_risk", "value": True}}]}
    )
    define(mk, "latvia-calm", vip)
    calm = mk.segment("latvia-calm")
    assert [m.customer_id for m in mk.members(calm, None)] == [ADA, BOB]
    mk.observe([person(BOB, "Bob", countries=frozenset({"EE"}))])
    assert [m.customer_id for m in mk.members(calm, None)] == [ADA]
    why = mk.explain(calm, BOB, None)
    assert why.condition == "not member of segment latvia"
    # A new customer enters both in one observation: the second sees the first's entry.
    dan = "00000000-0000-4000-8000-0000000000dd"
    mk.observe([person(dan, "Dan")])
    assert dan in [m.customer_id for m in mk.members(calm, None)]
    # Bob comes back: he re-enters the first, and so the second.
    mk.observe([person(BOB, "Bob")])
    assert BOB in [m.customer_id for m in mk.members(calm, None)]


def plan(mk: Marketing, **changes: Any) -> UUID:
    fields: dict[str, Any] = {
        "name": "Spring offer",
        "objective": "sell more",
        "channel": "email",
        # A period around the clock's day: a campaign sends only within its period.
        "starts_on": (mk.clock().date() - timedelta(days=30)).isoformat(),
        "ends_on": (mk.clock().date() + timedelta(days=30)).isoformat(),
        "budget": "100",
        "budget_currency": "EUR",
        "cost_per_send": "0.50",
        "expected_responses": 1,
        "offer": "10% off",
        "frequency_cap": 0,
        "frequency_days": 30,
    } | changes
    outcome = mk.plan_campaign(ctx(), ["latvia"], **fields)
    return UUID(outcome.extra["campaign_id"])


def test_a_campaign_checks_consent_at_each_send(mk: Marketing, clock: Clock) -> None:
    define(mk)
    cid = plan(mk)
    with pytest.raises(PreconditionFailed, match="planned"):
        mk.send(ctx(), cid, None, launch=True)
    mk.change_campaign(ctx(), cid, None, lambda c: c.approve(""))
    # Bob revokes after the plan, before the launch: he leaves the segment and is counted.
    mk.observe([person(BOB, "Bob", consent={"email/marketing": False})])
    _, first = mk.send(ctx("launch"), cid, None, launch=True)
    assert [s.customer_id for s in first.sends] == [ADA]
    assert first.exclusions == {"revoked": 1}
    # Ada revokes after the launch: later sends do not reach her, and say why.
    mk.observe([person(ADA, "Ada", consent={"email/marketing": False})])
    mk.observe([person(CID, "Cid", consent={"email/marketing": True})])
    assert [m.customer_id for m in mk.members(mk.segment("latvia"), None)] == [CID]
    _, second = mk.send(ctx("again"), cid, None, launch=False)
    assert [s.customer_id for s in second.sends] == [CID]
    assert second.exclusions == {"revoked": 2}
    _, third = mk.send(ctx("third"), cid, None, launch=False)
    assert third.exclusions == {"already_reached": 1, "revoked": 2}
    campaign = mk.campaign(cid)
    assert campaign.sent == 2
    assert campaign.actual_cost == Decimal("1.00")


def test_exclusions_are_counted_by_reason() -> None:
    def candidate(
        facts: Facts, touches: int = 0, reached: bool = False, member: bool = True
    ) -> domain.Candidate:
        return domain.Candidate(facts, "s", touches, reached, member)

    chosen = domain.audience(
        "email",
        [
            candidate(person(ADA, "Ada")),
            candidate(person(BOB, "Bob", consent={})),
            candidate(person(CID, "Cid", consent={"email/marketing": False})),
            candidate(person("d", "Dan", emails=())),
            candidate(person("e", "Eve"), touches=2),
            candidate(person("f", "Fay"), reached=True),
            candidate(person("h", "Hal"), member=False),
            candidate(person("g", "Gus")),
        ],
        frequency_cap=2,
        cost_per_send=Decimal("1"),
        budget_left=Decimal("1"),
    )
    assert [s.customer_id for s in chosen.sends] == [ADA]
    assert chosen.exclusions == {
        "already_reached": 1,
        "frequency_cap": 1,
        "left_segment": 1,
        "no_consent": 1,
        "no_contact_point": 1,
        "over_budget": 1,
        "revoked": 1,
    }
    assert chosen.size == 8


def test_provider_reports_count_once_and_unsubscribes_revoke(mk: Marketing, clock: Clock) -> None:
    define(mk)
    cid = plan(mk)
    mk.change_campaign(ctx(), cid, None, lambda c: c.approve(""))
    mk.send(ctx(), cid, None, launch=True)
    touches = {
        str(r["customer_id"]): r["row_id"] for r in mk.people.rows(RowQuery(where(kind="touch")))
    }
    now = clock.now
    assert mk.record_report(touches[ADA], "delivered", "r1", "", now) is None
    assert mk.record_report(touches[ADA], "clicked", "r2", "https://x", now) is None
    assert mk.record_report(touches[ADA], "clicked", "r2", "https://x", now) is None
    revocation = mk.record_report(touches[BOB], "unsubscribed", "r3", "", now)
    assert revocation is not None
    assert (revocation.customer_id, revocation.channel) == (BOB, "email")
    # A repeat asks again (the customer service takes it once), and records nothing more.
    assert mk.record_report(touches[BOB], "unsubscribed", "r3", "", now) == revocation
    # The same outcome under another id (a second provider, a resend): nothing more either.
    assert mk.record_report(touches[ADA], "clicked", "other-r2", "https://y", now) is None
    assert mk.record_report(touches[ADA], "delivered", "other-r1", "", now) is None
    ada_touch = mk.people.load(Touch, touches[ADA])
    assert ada_touch.version == 3  # sent, delivered, clicked: the repeats changed nothing
    # Each report names its campaign on the customer's timeline (it said only "Campaign
    # response: clicked", whichever of the campaigns that reached them it was of).
    [*_, click] = mk.people.events.get(touches[ADA])
    published = CONTRACT.publication(click).payload
    assert isinstance(published, mev.TouchResponded)
    assert (published.campaign_id, published.campaign_name) == (str(cid), "Spring offer")
    # Ada pays 300 EUR more within the attribution window: revenue of the touch.
    clock.advance(days=2)
    mk.observe([person(ADA, "Ada", lifetime_value={"EUR": Decimal("1800")})])
    mk.change_campaign(ctx(), cid, None, lambda c: c.record_cost("fixed", "9", "design", now))
    total, by_region = mk.results(mk.campaign(cid), "region")
    assert total.counts["sent"] == 2
    assert total.counts["clicked"] == 1
    assert total.counts["responded"] == 1
    assert total.counts["unsubscribed"] == 1
    assert total.counts["converted"] == 1
    assert total.revenue == Decimal("300")
    assert total.cost == Decimal("10.00")
    assert [r.key for r in by_region] == ["LV"]


def test_an_unsubscribe_of_a_customer_merged_since_revokes_the_survivors_consent(
    mk: Marketing,
) -> None:
    """The duplicate takes no more changes (the customer service refuses them): the person
    is the survivor now, whose consent the unsubscribe ends."""
    define(mk)
    cid = plan(mk)
    mk.change_campaign(ctx(), cid, None, lambda c: c.approve(""))
    mk.send(ctx(), cid, None, launch=True)
    [ada_touch] = [
        r["row_id"]
        for r in mk.people.rows(RowQuery(where(kind="touch")))
        if str(r["customer_id"]) == ADA
    ]
    mk.observe([person(ADA, "Ada", merged_into=BOB)])
    revocation = mk.record_report(ada_touch, "unsubscribed", "u1", "", mk.clock())
    assert revocation is not None
    assert (revocation.customer_id, revocation.channel) == (BOB, "email")


def test_a_failed_send_is_counted_as_failed_not_as_bounced(mk: Marketing) -> None:
    define(mk)
    cid = plan(mk)
    mk.change_campaign(ctx(), cid, None, lambda c: c.approve(""))
    mk.send(ctx(), cid, None, launch=True)
    touches = {
        str(r["customer_id"]): r["row_id"] for r in mk.people.rows(RowQuery(where(kind="touch")))
    }
    assert mk.record_report(touches[ADA], "failed", "r1", "relay down", mk.clock()) is None
    # A hard bounce is the address's, not the customer's decision: no consent withdrawn.
    assert mk.record_report(touches[BOB], "hard_bounced", "r2", "no mailbox", mk.clock()) is None
    total, _ = mk.results(mk.campaign(cid), "")
    counts = total.counts
    assert (counts["sent"], counts["failed"], counts["bounced"], counts["delivered"]) == (
        2,
        1,
        1,
        0,
    )


def test_an_address_that_hard_bounced_is_passed_over_and_consent_stays(mk: Marketing) -> None:
    """Bob's address bounced: the next campaign writes to his other address, and once he has
    none that did not bounce he is counted as undeliverable; his consent is untouched."""
    define(mk)
    first = plan(mk)
    mk.change_campaign(ctx(), first, None, lambda c: c.approve(""))
    mk.send(ctx("first"), first, None, launch=True)
    [bob_touch] = [
        r["row_id"]
        for r in mk.people.rows(RowQuery(where(kind="touch")))
        if str(r["customer_id"]) == BOB
    ]
    assert mk.record_report(bob_touch, "hard_bounced", "r1", "no mailbox", mk.clock()) is None
    mk.observe([person(BOB, "Bob", emails=("bob@example.com", "bob@work.example"))])
    second = plan(mk, name="Second")
    mk.change_campaign(ctx(), second, None, lambda c: c.approve(""))
    _, round2 = mk.send(ctx("second"), second, None, launch=True)
    assert {s.customer_id: s.address for s in round2.sends}[BOB] == "bob@work.example"
    mk.observe([person(BOB, "Bob")])  # bob@example.com alone, the one that bounced
    third = plan(mk, name="Third")
    mk.change_campaign(ctx(), third, None, lambda c: c.approve(""))
    _, round3 = mk.send(ctx("third"), third, None, launch=True)
    assert BOB not in [s.customer_id for s in round3.sends]
    assert round3.exclusions == {"undeliverable": 1}
    assert mk.facts[BOB].consent == {"email/marketing": True}


def test_touches_are_attributed_only_when_a_lifetime_value_changed(
    mk: Marketing, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    define(mk)
    cid = plan(mk)
    mk.change_campaign(ctx(), cid, None, lambda c: c.approve(""))
    mk.send(ctx(), cid, None, launch=True)
    attributed: list[str] = []
    attribute = mk._attribute

    def counted(facts: Facts) -> None:
        attributed.append(facts.customer_id)
        attribute(facts)

    monkeypatch.setattr(mk, "_attribute", counted)
    clock.advance(days=1)
    # Profiles changed in other ways, and new customers without a lifetime value: the touches
    # are not looked up (a query per changed profile before).
    mk.observe([person(ADA, "Ada", region="EE"), person(BOB, "Bob", region="EE")])
    mk.observe(
        [person(f"00000000-0000-4000-8000-{i:012}", "New", lifetime_value={}) for i in range(50)]
    )
    assert attributed == []
    # Ada's value grows: her touches are looked up, and the growth is the touch's revenue.
    mk.observe([person(ADA, "Ada", region="EE", lifetime_value={"EUR": Decimal("1800")})])
    assert attributed == [ADA]
    # Seen again at the same value: nothing to attribute, nothing doubled.
    mk.observe([person(ADA, "Ada", region="LV", lifetime_value={"EUR": Decimal("1800")})])
    assert attributed == [ADA]
    total, _ = mk.results(mk.campaign(cid), "region")
    assert total.counts["converted"] == 1
    assert total.revenue == Decimal("300")
    # A customer first seen with a value (after a restart, say) is attributed.
    dan = "00000000-0000-4000-8000-0000000000dd"
    mk.observe([person(dan, "Dan", lifetime_value={"EUR": Decimal("5")})])
    assert attributed == [ADA, dan]


def test_revenue_is_the_last_touch_that_reached_the_customer_once(
    mk: Marketing, clock: Clock
) -> None:
    """Ada and Bob are in two campaigns' audiences, then each pays 300 EUR more: each
    payment is one campaign's revenue, the later one's (it was both campaigns' in full: the
    results of the two showed 1,200 EUR for 600 paid); Bob's later e-mail hard-bounced, so
    the growth is the earlier campaign's."""
    define(mk)
    first, second = plan(mk), plan(mk, name="Second")
    mk.change_campaign(ctx(), first, None, lambda c: c.approve(""))
    mk.send(ctx("first"), first, None, launch=True)
    clock.advance(hours=1)
    mk.change_campaign(ctx(), second, None, lambda c: c.approve(""))
    mk.send(ctx("second"), second, None, launch=True)
    [bob_second] = [
        r["row_id"]
        for r in mk.people.rows(RowQuery(where(kind="touch", campaign_id=str(second))))
        if str(r["customer_id"]) == BOB
    ]
    mk.record_report(bob_second, "hard_bounced", "b1", "no mailbox", mk.clock())
    clock.advance(days=1)
    grown = {"EUR": Decimal("1800")}
    mk.observe([person(ADA, "Ada", lifetime_value=grown), person(BOB, "Bob", lifetime_value=grown)])
    one, _ = mk.results(mk.campaign(first), "")
    two, _ = mk.results(mk.campaign(second), "")
    assert (one.counts["converted"], one.revenue) == (1, Decimal("300"))  # Bob's
    assert (two.counts["converted"], two.revenue) == (1, Decimal("300"))  # Ada's
    [ada_second] = [
        r["row_id"]
        for r in mk.people.rows(RowQuery(where(kind="touch", campaign_id=str(second))))
        if str(r["customer_id"]) == ADA
    ]
    [*_, converted] = mk.people.events.get(ada_second)
    conversion = CONTRACT.publication(converted).payload
    assert isinstance(conversion, mev.TouchConverted)
    assert conversion.campaign_name == "Second"
    assert two.counts["bounced"] == 1


def test_reports_on_unknown_kinds_are_refused(mk: Marketing) -> None:
    define(mk)
    cid = plan(mk)
    mk.change_campaign(ctx(), cid, None, lambda c: c.approve(""))
    mk.send(ctx(), cid, None, launch=True)
    row = mk.people.rows(RowQuery(where(kind="touch")))[0]
    with pytest.raises(InvalidArgument):
        mk.record_report(row["row_id"], "teleported", "r9", "", mk.clock())


def test_campaign_states(mk: Marketing) -> None:
    define(mk)
    cid = plan(mk)
    steps: list[Callable[[Campaign], None]] = [
        lambda c: c.approve(""),
        lambda c: c.launch(""),
        lambda c: c.pause(""),
        lambda c: c.resume(""),
        lambda c: c.complete(""),
    ]
    for step in steps:
        mk.change_campaign(ctx(), cid, None, step)
    assert mk.campaign(cid).state == "completed"
    with pytest.raises(PreconditionFailed, match="completed"):
        mk.change_campaign(ctx(), cid, None, lambda c: c.cancel(""))
    with pytest.raises(InvalidArgument) as caught:
        plan(mk, budget="-1", starts_on="soon", channel="pigeon")
    assert sorted(v.field for v in caught.value.violations) == [
        "budget.amount",
        "channel",
        "starts_on",
    ]


def test_amounts_and_currencies_follow_the_rules_of_every_service(mk: Marketing) -> None:
    define(mk)
    number = (
        "must be a decimal number such as 1250.00"
        " (at most 15 digits before the point and 4 after it)"
    )
    for amount in ("1e-400", "1.123456789", "1e308", "9" * 16, "NaN", "0x10", "1,5"):
        with pytest.raises(InvalidArgument) as caught:
            plan(mk, budget=amount, cost_per_send=amount)
        assert [(v.field, v.description) for v in caught.value.violations] == [
            ("budget.amount", number),
            ("cost_per_send", number),
        ], amount
    for code in ("XXQ", "ÄÖÜ", "EU", "EURO"):
        with pytest.raises(InvalidArgument) as caught:
            plan(mk, budget_currency=code)
        assert [(v.field, v.description) for v in caught.value.violations] == [
            ("budget.currency", "must be an ISO 4217 code such as EUR")
        ], code
    # Any currency (revenue is counted in the budget's), upper-cased.
    cid = plan(mk, budget="999999999999999.9999", cost_per_send="0.0001", budget_currency="huf")
    campaign = mk.campaign(cid)
    assert (campaign.plan["budget"], campaign.plan["currency"]) == ("999999999999999.9999", "HUF")
    assert campaign.plan["cost_per_send"] == "0.0001"
    for cost in ("1e-400", "0.00001", "-5"):

        def record(c: Campaign, amount: str = cost) -> None:
            c.record_cost("other", amount, "", mk.clock())

        with pytest.raises(InvalidArgument) as caught:
            mk.change_campaign(ctx(), cid, None, record)
        assert [v.field for v in caught.value.violations] == ["amount"]
    assert mk.campaign(cid).costs == []


def test_a_lead_list_holds_the_responders_or_the_segments_members(mk: Marketing) -> None:
    define(mk)
    cid = plan(mk)
    mk.change_campaign(ctx(), cid, None, lambda c: c.approve(""))
    mk.send(ctx(), cid, None, launch=True)
    touches = {
        str(r["customer_id"]): r["row_id"] for r in mk.people.rows(RowQuery(where(kind="touch")))
    }
    with pytest.raises(PreconditionFailed, match="empty"):
        mk.build_lead_list(ctx(), name="nobody yet", campaign_id=cid, segment="")
    mk.record_report(touches[BOB], "opened", "r1", "", mk.clock())
    mk.record_report(touches[BOB], "replied", "r2", "call me", mk.clock())
    outcome = mk.build_lead_list(ctx(), name="responders", campaign_id=cid, segment="")
    responders = mk.lead_list(UUID(outcome.extra["lead_list_id"]))
    assert [(e["customer_id"], mk.contact(e["customer_id"]).email) for e in responders.entries] == [
        (BOB, "bob@example.com")
    ]
    # The list names who, not their name or address (an erasure could not reach those in an
    # event about many customers): they are read from the profile when it is shown.
    assert {k for e in responders.entries for k in e} == {"customer_id", "kind", "territory"}
    outcome = mk.build_lead_list(ctx(), name="members", campaign_id=cid, segment="latvia")
    members = mk.lead_list(UUID(outcome.extra["lead_list_id"]))
    assert [mk.contact(e["customer_id"]).name for e in members.entries] == ["Ada", "Bob"]
    mk.record_distribution(ctx(), members.id, "field", "round_robin", {ADA: {"lead_id": "l-1"}})
    assert [e["customer_id"] for e in mk.lead_list(members.id).pending()] == [BOB]
    # Sales refuses Bob for good (merged into another since): passed over, with its refusal,
    # and not offered again; a later distribution changes neither entry.
    refusal = f"FAILED_PRECONDITION: customer {BOB} was merged into customer {ADA}"
    mk.record_distribution(ctx(), members.id, "field", "round_robin", {}, {BOB: refusal})
    settled = mk.lead_list(members.id)
    assert (settled.pending(), settled.passed_over) == ([], {BOB: refusal})
    assert settled.leads == {ADA: {"lead_id": "l-1"}}
    later = {ADA: {"lead_id": "l-2"}, BOB: {"lead_id": "l-3"}}
    mk.record_distribution(ctx(), members.id, "field", "round_robin", later, {ADA: "no"})
    assert mk.lead_list(members.id).version == settled.version


def test_a_forecast_learns_from_completed_campaigns_on_the_same_segments(mk: Marketing) -> None:
    define(mk)
    past = plan(mk, name="Past")
    for step in (lambda c: c.approve(""), lambda c: c.launch("")):
        mk.change_campaign(ctx(), past, None, step)
    mk.send(ctx(), past, None, launch=False)
    rows = mk.people.rows(RowQuery(where(kind="touch", campaign_id=str(past))))
    mk.record_report(rows[0]["row_id"], "clicked", "r1", "", mk.clock())
    upcoming = plan(mk, name="Next")
    assert mk.forecast(mk.campaign(upcoming)) == (0.0, Decimal(0), "")  # nothing completed yet
    mk.change_campaign(ctx(), past, None, lambda c: c.complete(""))
    responses, revenue, basis = mk.forecast(mk.campaign(upcoming))
    # One response in two sends, for the segment's two members.
    assert (responses, revenue) == (1.0, Decimal("0.00"))
    assert basis == "from 1 completed email campaign on the same segments (2 sends), for 2 sends"


def test_a_call_list_shares_who_may_be_called_and_records_outcomes(
    mk: Marketing, clock: Clock
) -> None:
    mk.observe(
        [
            person(
                ADA,
                "Ada",
                consent={"email/marketing": True, "phone/marketing": True},
                phones=("+37120000001",),
            ),
            person(
                BOB,
                "Bob",
                consent={"email/marketing": True, "phone/marketing": True},
                phones=("+37120000002",),
            ),
        ]
    )
    define(mk)
    email_campaign = plan(mk)
    with pytest.raises(PreconditionFailed, match="phone campaigns"):
        mk.build_call_list(ctx(), name="x", campaign_id=email_campaign, agents=["emp-1"])
    cid = plan(mk, name="Call them", channel="phone")
    mk.change_campaign(ctx(), cid, None, lambda c: c.approve(""))
    outcome = mk.build_call_list(
        ctx(), name="spring calls", campaign_id=cid, agents=["emp-1", "emp-2"]
    )
    calls = mk.call_list(UUID(outcome.extra["call_list_id"]))
    assert [(e["customer_id"], e["agent_id"]) for e in calls.entries] == [
        (ADA, "emp-1"),
        (BOB, "emp-2"),
    ]
    first = calls.next_for("emp-1", clock.now)
    assert first is not None
    assert mk.contact(first["customer_id"]).phone == "+37120000001"
    assert set(first) == {"customer_id", "agent_id"}
    back = clock.now + timedelta(hours=2)
    mk.record_call(ctx(), calls.id, ADA, "emp-1", "call_back", back, "busy")
    assert mk.call_list(calls.id).next_for("emp-1", clock.now) is None  # not due yet
    assert mk.call_list(calls.id).next_for("emp-1", back) is not None
    with pytest.raises(PreconditionFailed, match="emp-2's list"):
        mk.record_call(ctx(), calls.id, BOB, "emp-1", "reached", None, "")
    with pytest.raises(InvalidArgument) as caught:
        mk.record_call(ctx(), calls.id, ADA, "emp-1", "call_back", None, "")
    assert [v.field for v in caught.value.violations] == ["call_back_at"]
    mk.record_call(ctx(), calls.id, ADA, "emp-1", "interested", None, "wants a quote")
    assert mk.call_list(calls.id).next_for("emp-1", back) is None
    with pytest.raises(PreconditionFailed, match="called already"):
        mk.record_call(ctx(), calls.id, ADA, "emp-1", "reached", None, "")
    # The campaign's results count its calls by outcome (it sends nothing to count).
    assert mk.call_outcomes(mk.campaign(cid)) == {"call_back": 1, "interested": 1}
    # Each call is on the customer's timeline (published from the people store), once.
    ada_calls = [
        CONTRACT.publication(e).payload
        for e in mk.people.events.get(domain.call_id(str(calls.id), ADA, 2))
    ]
    assert [(c.outcome, c.campaign_name, c.agent_id) for c in ada_calls] == [  # type: ignore[attr-defined]
        ("interested", "Call them", "emp-1")
    ]
    assert mk.people.at(domain.Call, domain.call_id(str(calls.id), ADA, 1), None) is not None
    assert mk.people.at(domain.Call, domain.call_id(str(calls.id), ADA, 3), None) is None
    # Bob revokes phone marketing after the list was built: he is never handed out again.
    _, entry, remaining, withdrawn = mk.next_call(calls.id, "emp-2")
    assert entry is not None
    assert (entry["customer_id"], remaining, withdrawn) == (BOB, 1, 0)
    mk.observe(
        [
            person(
                BOB,
                "Bob",
                consent={"email/marketing": True, "phone/marketing": False},
                phones=("+37120000002",),
            )
        ]
    )
    assert mk.next_call(calls.id, "emp-2")[1:] == (None, 0, 1)


def test_a_campaign_whose_period_is_over_is_not_planned(mk: Marketing, clock: Clock) -> None:
    """Planned from 2026-01-01 to 2026-02-01 in December, it was taken, could be approved, and
    then neither sent nor called for, approved for good."""
    define(mk)
    yesterday = clock.now.date() - timedelta(days=1)
    with pytest.raises(InvalidArgument) as caught:
        plan(mk, starts_on=(yesterday - timedelta(days=30)).isoformat(), ends_on=str(yesterday))
    assert [v.field for v in caught.value.violations] == ["ends_on"]
    assert "is over" in caught.value.violations[0].description
    plan(mk, starts_on=(yesterday - timedelta(days=30)).isoformat(), ends_on=str(clock.now.date()))


def test_a_phone_campaign_is_called_not_sent(mk: Marketing) -> None:
    """Launching a phone campaign sent its audience touches "by phone" (reported delivered by
    the provider, each with its cost) for calls nobody made: now it runs, and its audience is
    called from call lists; a send is refused, and so is a trigger (it would send)."""
    callable_ = {"email/marketing": True, "phone/marketing": True}
    mk.observe([person(ADA, "Ada", consent=callable_, phones=("+37120000001",))])
    define(mk)
    cid = plan(mk, name="Calls", channel="phone")
    mk.change_campaign(ctx(), cid, None, lambda c: c.approve(""))
    _, launched = mk.send(ctx("launch"), cid, None, launch=True)
    assert (launched.size, launched.sends) == (0, [])
    assert (mk.campaign(cid).state, mk.campaign(cid).rounds) == ("running", [])
    assert mk.people.rows(RowQuery(where(kind="touch"))) == []
    assert mk.send(ctx("launch"), cid, None, launch=True)[0].replayed
    with pytest.raises(PreconditionFailed, match="is a phone campaign: its audience is called"):
        mk.send(ctx("send"), cid, None, launch=False)
    built = mk.build_call_list(ctx(), name="calls", campaign_id=cid, agents=["emp-1"])
    assert mk.next_call(UUID(built.extra["call_list_id"]), "emp-1")[1] is not None
    with pytest.raises(InvalidArgument) as caught:
        plan(mk, name="Calls again", channel="phone", trigger="overdue_invoice", purpose="service")
    assert [v.field for v in caught.value.violations] == ["trigger"]


def test_calls_count_toward_a_phone_campaigns_frequency_cap(mk: Marketing) -> None:
    """A phone campaign's contacts are its calls (it sends nothing): a customer called once
    this month is not on a second list capped at one call a month."""
    callable_ = {"email/marketing": True, "phone/marketing": True}
    mk.observe(
        [
            person(ADA, "Ada", consent=callable_, phones=("+37120000001",)),
            person(BOB, "Bob", consent=callable_, phones=("+37120000002",)),
        ]
    )
    define(mk)
    first = plan(mk, name="First calls", channel="phone")
    mk.change_campaign(ctx(), first, None, lambda c: c.approve(""))
    built = mk.build_call_list(ctx("1"), name="first", campaign_id=first, agents=["emp-1"])
    mk.record_call(ctx(), UUID(built.extra["call_list_id"]), ADA, "emp-1", "reached", None, "")
    second = plan(mk, name="Second calls", channel="phone", frequency_cap=1)
    mk.change_campaign(ctx(), second, None, lambda c: c.approve(""))
    again = mk.build_call_list(ctx("2"), name="second", campaign_id=second, agents=["emp-1"])
    entries = mk.call_list(UUID(again.extra["call_list_id"])).entries
    assert [e["customer_id"] for e in entries] == [BOB]


def test_a_merged_duplicates_touches_count_toward_the_survivors_frequency_cap(
    mk: Marketing,
) -> None:
    """One person, two records, each reached once this month: merged, the person has been
    reached twice, and a campaign capped at two a month passes them over (it reached them a
    third time: the duplicate's touches were not counted)."""
    define(mk)
    first = plan(mk, name="First")
    mk.change_campaign(ctx(), first, None, lambda c: c.approve(""))
    mk.send(ctx("1"), first, None, launch=True)
    mk.observe([person(BOB, "Bob", merged_into=ADA)])
    second = plan(mk, name="Second", frequency_cap=2)
    mk.change_campaign(ctx(), second, None, lambda c: c.approve(""))
    mk.send(ctx("2"), second, None, launch=True)
    reached = [
        str(r["customer_id"])
        for r in mk.people.rows(RowQuery(where(kind="touch", campaign_id=str(second))))
    ]
    assert ADA not in reached
    assert mk.campaign(second).rounds[-1]["exclusions"].get("frequency_cap") == 1


OFF = r"cannot hand out calls for it \(only when approved or running\)"


def test_nobody_is_called_for_a_phone_campaign_not_approved_paused_or_cancelled(
    mk: Marketing, clock: Clock
) -> None:
    """A call list of a planned campaign was built, and one of a cancelled campaign still
    handed out calls and turned "interested" into sales leads: calls are made under an
    approved or running campaign only, within its period."""
    callable_ = {"email/marketing": True, "phone/marketing": True}
    mk.observe([person(ADA, "Ada", consent=callable_, phones=("+37120000001",))])
    define(mk)
    cid = plan(mk, name="Call them", channel="phone")
    with pytest.raises(PreconditionFailed, match="is planned: cannot build a call list"):
        mk.build_call_list(ctx(), name="calls", campaign_id=cid, agents=["emp-1"])
    mk.change_campaign(ctx(), cid, None, lambda c: c.approve(""))
    built = mk.build_call_list(ctx(), name="calls", campaign_id=cid, agents=["emp-1"])
    calls = UUID(built.extra["call_list_id"])
    assert mk.next_call(calls, "emp-1")[1] is not None
    mk.change_campaign(ctx(), cid, None, lambda c: c.launch(""))
    mk.change_campaign(ctx(), cid, None, lambda c: c.pause(""))
    with pytest.raises(
        PreconditionFailed,
        match=f"is paused: {OFF}",
    ):
        mk.next_call(calls, "emp-1")
    mk.record_call(ctx(), calls, ADA, "emp-1", "no_answer", None, "")  # made before the pause
    mk.change_campaign(ctx(), cid, None, lambda c: c.cancel("budget cut"))
    with pytest.raises(
        PreconditionFailed,
        match=f"is cancelled: {OFF}",
    ):
        mk.next_call(calls, "emp-1")
    with pytest.raises(PreconditionFailed, match="cancelled: no call is recorded"):
        mk.record_call(ctx(), calls, ADA, "emp-1", "interested", None, "")
    assert [c["outcome"] for c in mk.call_list(calls).calls] == ["no_answer"]
    with pytest.raises(PreconditionFailed, match="is cancelled: cannot build a call list"):
        mk.build_call_list(ctx("again"), name="calls", campaign_id=cid, agents=["emp-1"])
    # Before its first day and after its last, neither.
    later = plan(
        mk,
        name="Later",
        channel="phone",
        starts_on=(clock.now.date() + timedelta(days=3)).isoformat(),
    )
    mk.change_campaign(ctx(), later, None, lambda c: c.approve(""))
    built = mk.build_call_list(ctx("later"), name="later", campaign_id=later, agents=["emp-1"])
    with pytest.raises(PreconditionFailed, match="starts on"):
        mk.next_call(UUID(built.extra["call_list_id"]), "emp-1")
    clock.advance(days=40)
    with pytest.raises(PreconditionFailed, match="nobody is called for it any more"):
        mk.next_call(UUID(built.extra["call_list_id"]), "emp-1")


def test_a_personalised_campaign_sends_each_customer_their_first_offer(mk: Marketing) -> None:
    buyers = [
        person(f"00000000-0000-4000-8000-0000000000{i:02d}", f"B{i}", products=frozenset(p))
        for i, p in enumerate([{"A", "C"}, {"A", "C"}, {"A"}])
    ]
    mk.observe([*buyers, person(ADA, "Ada", products=frozenset({"A"}))])
    define(mk)
    cid = plan(mk, offer="personalised")
    mk.change_campaign(ctx(), cid, None, lambda c: c.approve(""))
    mk.send(ctx(), cid, None, launch=True)
    offered = {
        str(r["customer_id"]): mk.people.load(Touch, r["row_id"])
        for r in mk.people.rows(RowQuery(where(kind="touch")))
    }
    sent = mk.people.events.get(offered[ADA].id)
    assert [getattr(e, "offer", None) for e in sent] == ["C"]
    # Bob bought nothing: no history to learn from, no offer.
    assert [getattr(e, "offer", None) for e in mk.people.events.get(offered[BOB].id)] == [""]
    _, by_product = mk.results(mk.campaign(cid), "product")
    assert {r.key: r.counts["sent"] for r in by_product}["C"] == 2  # Ada and B2
    assert "no offer" in {r.key for r in by_product}


def test_a_segment_of_a_campaigns_responders(mk: Marketing) -> None:
    define(mk)
    cid = plan(mk)
    mk.change_campaign(ctx(), cid, None, lambda c: c.approve(""))
    mk.send(ctx(), cid, None, launch=True)
    responders = json.dumps({"field": "campaign_response", "value": str(cid)})
    define(mk, "spring responders", responders)
    segment = mk.segment("spring responders")
    assert mk.members(segment, None) == []
    touch = mk.people.rows(RowQuery(where(kind="touch", customer_id=UUID(ADA))))[0]
    mk.record_report(touch["row_id"], "clicked", "r1", "", mk.clock())
    # The response reaches the profile (a marketing entry); the follower sees Ada change.
    mk.observe([mk.facts[ADA]])
    assert [m.customer_id for m in mk.members(segment, None)] == [ADA]
    why = mk.explain(segment, ADA, None)
    assert why.condition == f"responded to campaign {cid}"
    with pytest.raises(InvalidArgument) as caught:
        define(mk, "bad", json.dumps({"field": "campaign_response", "value": "nope"}))
    assert [v.field for v in caught.value.violations] == ["condition.value"]


def test_an_overdue_invoice_reminder_sends_by_itself_on_service_consent(
    mk: Marketing, clock: Clock
) -> None:
    mk.observe(
        [
            person(ADA, "Ada", consent={"email/service": True}, overdue_invoices=("INV-7",)),
            person(BOB, "Bob", consent={"email/service": True}),
            person(CID, "Cid", consent={"email/marketing": True}, overdue_invoices=("INV-9",)),
        ]
    )
    define(mk, "everyone", json.dumps({"field": "country", "value": "LV"}))
    with pytest.raises(InvalidArgument) as caught:
        mk.plan_campaign(ctx(), ["everyone"], **_fields(purpose="service"))
    assert [v.field for v in caught.value.violations] == ["purpose"]
    outcome = mk.plan_campaign(
        ctx(), ["everyone"], **_fields(trigger="overdue_invoice", purpose="service")
    )
    cid = UUID(outcome.extra["campaign_id"])
    assert mk.triggered() == 0  # not running
    for step in (lambda c: c.approve(""), lambda c: c.launch("")):
        mk.change_campaign(ctx(), cid, None, step)
    # Ada is due and allows service e-mails; Cid is due but allows only marketing.
    assert mk.triggered() == 1
    assert mk.campaign(cid).rounds[-1]["exclusions"] == {"no_consent": 1}
    assert mk.triggered() == 0  # reminded this week already: no new round
    rounds = len(mk.campaign(cid).rounds)
    clock.advance(days=8)
    assert mk.triggered() == 1  # a week later, still overdue: reminded again
    assert len(mk.campaign(cid).rounds) == rounds + 1
    clock.advance(days=60)  # past the campaign's last day: no reminder any more
    assert mk.triggered() == 0
    assert len(mk.campaign(cid).rounds) == rounds + 1


def test_an_unsubscribe_from_a_service_reminder_ends_the_service_consent(mk: Marketing) -> None:
    """Ada unsubscribes from the overdue-invoice reminder: her consent to service e-mails
    ends (it ended her marketing consent, which she had not withdrawn, and the reminders,
    sent on the service consent, kept coming)."""
    mk.observe([person(ADA, "Ada", consent={"email/service": True}, overdue_invoices=("I-7",))])
    define(mk, "everyone", json.dumps({"field": "country", "value": "LV"}))
    outcome = mk.plan_campaign(
        ctx(), ["everyone"], **_fields(trigger="overdue_invoice", purpose="service")
    )
    cid = UUID(outcome.extra["campaign_id"])
    for step in (lambda c: c.approve(""), lambda c: c.launch("")):
        mk.change_campaign(ctx(), cid, None, step)
    assert mk.triggered() == 1
    [touch] = [r["row_id"] for r in mk.people.rows(RowQuery(where(kind="touch")))]
    revocation = mk.record_report(touch, "unsubscribed", "u1", "", mk.clock())
    assert revocation is not None
    assert (revocation.channel, revocation.purpose) == ("email", "service")
    assert revocation.source == "marketing: unsubscribed from Reminder"
    # A marketing campaign's unsubscribe ends the marketing consent, as before.
    define(mk)
    spring = plan(mk)
    mk.change_campaign(ctx(), spring, None, lambda c: c.approve(""))
    mk.send(ctx("spring"), spring, None, launch=True)
    bob = next(
        r["row_id"]
        for r in mk.people.rows(RowQuery(where(kind="touch", campaign_id=str(spring))))
        if str(r["customer_id"]) == BOB
    )
    found = mk.record_report(bob, "unsubscribed", "u2", "", mk.clock())
    assert found is not None
    assert found.purpose == "marketing"


def test_a_campaign_is_not_launched_or_sent_before_its_first_day(
    mk: Marketing, clock: Clock
) -> None:
    define(mk)
    starts = clock.now.date() + timedelta(days=3)
    cid = plan(
        mk,
        starts_on=starts.isoformat(),
        ends_on=(starts + timedelta(days=30)).isoformat(),
    )
    mk.change_campaign(ctx(), cid, None, lambda c: c.approve(""))
    with pytest.raises(PreconditionFailed, match=f"starts on {starts.isoformat()}"):
        mk.send(ctx("early"), cid, None, launch=True)
    assert (mk.campaign(cid).state, mk.campaign(cid).sent) == ("approved", 0)  # unchanged
    assert mk.people.rows(RowQuery(where(kind="touch"))) == []
    clock.advance(days=3)  # its first day
    _, first = mk.send(ctx("on time"), cid, None, launch=True)
    assert [s.customer_id for s in first.sends] == [ADA, BOB]


def test_a_campaign_sends_nothing_after_its_last_day_and_completes(
    mk: Marketing, clock: Clock
) -> None:
    define(mk)
    ends = clock.now.date() + timedelta(days=2)
    running = plan(mk, ends_on=ends.isoformat())
    paused = plan(mk, name="Paused", ends_on=ends.isoformat())
    approved = plan(mk, name="Approved", ends_on=ends.isoformat())
    later = plan(mk, name="Later", ends_on=(ends + timedelta(days=1)).isoformat())
    for cid in (running, paused, approved, later):
        mk.change_campaign(ctx(), cid, None, lambda c: c.approve("ok"))
    for cid in (running, paused, later):
        mk.send(ctx(f"launch {cid}"), cid, None, launch=True)
    mk.change_campaign(ctx(), paused, None, lambda c: c.pause("holiday"))
    clock.advance(days=2)  # its last day: it still sends, and nothing completes
    assert mk.complete_ended() == []
    mk.send(ctx("last day"), running, None, launch=False)
    clock.advance(days=1)  # the day after
    sent = mk.campaign(running).sent
    with pytest.raises(PreconditionFailed, match=f"ended on {ends.isoformat()}: it sends no more"):
        mk.send(ctx("too late"), running, None, launch=False)
    assert (mk.campaign(running).state, mk.campaign(running).sent) == ("running", sent)
    # The running and the paused one complete, saying why; the approved one (never launched,
    # its owner's to cancel) and the one with a day left do not.
    assert sorted(mk.complete_ended()) == sorted([str(running), str(paused)])
    for cid in (running, paused):
        campaign = mk.campaign(cid)
        assert (campaign.state, campaign.state_reason) == (
            "completed",
            f"its period ended on {ends.isoformat()}",
        )
    assert mk.campaign(approved).state == "approved"
    assert (mk.campaign(later).state, mk.campaign(later).state_reason) == ("running", "")
    assert mk.complete_ended() == []  # once


def test_a_triggered_campaign_sends_nothing_before_its_first_day(
    mk: Marketing, clock: Clock
) -> None:
    mk.observe([person(ADA, "Ada", consent={"email/service": True}, overdue_invoices=("I-1",))])
    define(mk, "everyone", json.dumps({"field": "country", "value": "LV"}))
    starts = clock.now.date() + timedelta(days=10)
    outcome = mk.plan_campaign(
        ctx(),
        ["everyone"],
        **_fields(
            trigger="overdue_invoice",
            purpose="service",
            starts_on=starts.isoformat(),
            ends_on=(starts + timedelta(days=30)).isoformat(),
        ),
    )
    cid = UUID(outcome.extra["campaign_id"])
    for step in (lambda c: c.approve(""), lambda c: c.launch("")):
        mk.change_campaign(ctx(), cid, None, step)
    assert mk.triggered() == 0
    clock.advance(days=10)  # its first day
    assert mk.triggered() == 1


def test_an_anniversary_fires_on_the_day_from_the_second_year() -> None:
    from datetime import date

    facts = Facts(customer_id="c", first_seen=date(2024, 12, 3))
    assert domain.fires("registration_anniversary", facts, date(2026, 12, 3))
    assert not domain.fires("registration_anniversary", facts, date(2026, 12, 4))
    assert not domain.fires("registration_anniversary", facts, date(2024, 12, 3))
    assert not domain.fires("registration_anniversary", Facts(customer_id="n"), date(2026, 1, 1))


def _fields(**changes: Any) -> dict[str, Any]:
    today = datetime.now(UTC).date()  # the tests' clock starts now
    return {
        "name": "Reminder",
        "objective": "",
        "channel": "email",
        "starts_on": (today - timedelta(days=30)).isoformat(),
        "ends_on": (today + timedelta(days=60)).isoformat(),
        "budget": "100",
        "budget_currency": "EUR",
        "cost_per_send": "0.01",
        "expected_responses": 0,
        "offer": "",
        "frequency_cap": 0,
        "frequency_days": 30,
    } | changes


def test_a_segment_is_found_by_id_name_or_the_beginning_of_its_id(mk: Marketing) -> None:
    sid = define(mk)
    assert mk.segment(sid).name == "latvia"
    assert mk.segment(" latvia ").id == UUID(sid)
    assert mk.segment(sid[:8]).id == UUID(sid)  # as `segment list` shows it
    assert mk.segment(sid[:8].upper()).id == UUID(sid)
    with pytest.raises(NotFound, match="no segment named 'ffff0000'"):
        mk.segment("ffff0000" if not sid.startswith("ffff0000") else "0000ffff")
    # Too short to be an id's beginning: a name that no segment has.
    with pytest.raises(NotFound):
        mk.segment(sid[:3])
    # A name comes before an id's beginning.
    named = define(mk, name=sid[:8], condition=LATVIA)
    assert mk.segment(sid[:8]).id == UUID(named)


def test_the_beginning_of_several_segments_ids_is_refused_naming_the_field(
    mk: Marketing, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = iter(
        [UUID("c6275b1e-0000-4000-8000-000000000001"), UUID("c6275b1e-0000-4000-8000-0000000000b2")]
    )
    monkeypatch.setattr(domain.Segment, "create_id", staticmethod(lambda *a, **k: next(ids)))
    define(mk, name="one")
    define(mk, name="two")
    with pytest.raises(InvalidArgument) as refused:
        mk.segment("c6275b1e")
    assert [v.field for v in refused.value.violations] == ["segment"]
    assert "beginning of 2 segment ids" in str(refused.value)
    assert mk.segment("c6275b1e-0000-4000-8000-0000000000b").name == "two"


def test_a_campaign_for_a_segment_that_does_not_exist_names_it(mk: Marketing) -> None:
    # It said "segments[0]: no such segment", not which of the segments given.
    define(mk)
    with pytest.raises(InvalidArgument) as caught:
        mk.plan_campaign(
            ctx(),
            ["latvia", "lativa"],
            name="Spring",
            objective="",
            channel="email",
            starts_on="2026-03-01",
            ends_on="2026-03-31",
            budget="100",
            budget_currency="EUR",
            cost_per_send="",
            expected_responses=0,
            offer="",
            frequency_cap=0,
            frequency_days=30,
        )
    assert [(v.field, v.description) for v in caught.value.violations] == [
        ("segments[1]", "no segment 'lativa' (a segment's name or id)")
    ]


def test_results_show_cost_per_conversion_and_conversion_rate() -> None:
    """VIP preview in the demo: 18 sends, 1 conversion, 461.44 EUR: 461.44 per conversion,
    5.56 % of the sends (only cost per response was shown)."""
    from c360_marketing.api import _result
    from c360_marketing.application import ResultRow

    counts = {"sent": 18, "responded": 4, "converted": 1}
    row = _result(ResultRow("total", counts, Decimal("665"), Decimal("461.44")))
    assert (row.cost_per_response, row.cost_per_conversion) == ("115.36", "461.44")
    assert row.conversion_rate == "0.0556"
    empty = _result(
        ResultRow("x", {"sent": 0, "responded": 0, "converted": 0}, Decimal(0), Decimal(0))
    )
    assert (empty.cost_per_conversion, empty.conversion_rate) == ("", "")


def test_the_groups_costs_add_up_to_the_campaigns() -> None:
    """VIP preview in the demo: 18 sends at 0.08 and 460 EUR recorded, over nine regions of
    1, 4, 2, 1, 3, 1, 1, 1 and 4 sends: each region's cost rounded alone, they added up to
    461.46 for a campaign of 461.44."""
    from c360_marketing.application import _apportioned

    sends = [1, 4, 2, 1, 3, 1, 1, 1, 4]
    parts = [Decimal("0.08") * n + Decimal(460) * n / 18 for n in sends]
    total = sum(parts, Decimal(0))
    cents = _apportioned(total, parts)
    assert sum(cents) == Decimal("461.44")
    assert all(abs(c - p) < Decimal("0.01") for c, p in zip(cents, parts, strict=True))
    assert [str(c) for c in cents[:2]] in (
        ["25.63", "102.54"],
        ["25.64", "102.53"],
        ["25.64", "102.54"],
    )


def test_results_by_region_add_up_to_the_total(mk: Marketing) -> None:
    # Three sends, one a region: 10 EUR recorded is 3.33... each.
    mk.observe(
        [
            person(ADA, "Ada", region="EE"),
            person(BOB, "Bob", region="LT"),
            person("00000000-0000-4000-8000-000000000100", "Dan"),
        ]
    )
    define(mk)
    cid = plan(mk, cost_per_send="0")
    mk.change_campaign(ctx(), cid, None, lambda c: c.approve(""))
    mk.send(ctx("s"), cid, None, launch=True)
    now = mk.clock()
    mk.change_campaign(ctx(), cid, None, lambda c: c.record_cost("fixed", "10", "", now))
    total, rows = mk.results(mk.campaign(cid), "region")
    assert total.cost == Decimal("10.00")
    assert sorted(str(r.cost) for r in rows) == ["3.33", "3.33", "3.34"]
