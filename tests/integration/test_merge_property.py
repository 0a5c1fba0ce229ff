"""Property: any short sequence of registrations, updates, merges and unmerges keeps every
stored event one timeline entry, groups as the model says, and unmerge an exact inverse."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from c360.customer.v1 import customer_service_pb2 as capi
from c360.timeline.v1 import timeline_service_pb2 as tapi
from c360_cli.verify import compare
from c360_platform.consistency import ConsistencyToken

from .conftest import Stack
from .helpers import register

pytestmark = pytest.mark.integration

MERGE_TYPES = {
    "customer.merged_into",
    "customer.duplicate_absorbed",
    "customer.unmerged",
    "customer.duplicate_released",
}

Step = tuple[str, int, int]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("register"), st.integers(0, 9), st.just(0)),
        st.tuples(st.just("email"), st.integers(0, 9), st.integers(0, 99)),
        st.tuples(st.just("merge"), st.integers(0, 9), st.integers(0, 9)),
        st.tuples(st.just("unmerge"), st.integers(0, 9), st.just(0)),
    ),
    min_size=1,
    max_size=8,
)


@dataclass
class Model:
    """What the customers should be: own e-mails, direct pointers and absorbed ids."""

    ids: list[str] = field(default_factory=list)
    emails: dict[str, list[str]] = field(default_factory=dict)
    merged_into: dict[str, str] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)

    def absorbed(self, cid: str) -> list[str]:
        return [d for d, s in self.merged_into.items() if s == cid]

    def group(self, cid: str) -> set[str]:
        found, pending = {cid}, [cid]
        while pending:
            for d in self.absorbed(pending.pop()):
                found.add(d)
                pending.append(d)
        return found

    def final(self, cid: str) -> str:
        while cid in self.merged_into:
            cid = self.merged_into[cid]
        return cid


def _later(token: str, new: str) -> str:
    """The later of two tokens of one source: a command that changes nothing (an e-mail the
    customer has already) answers its subject's last position, which may be before another
    command's; waiting for it would not wait for everything written so far."""
    if not token:
        return new
    return max(token, new, key=lambda t: ConsistencyToken.parse(t).position)


async def _own(stack: Stack, cid: str, token: str) -> tuple[list[tapi.TimelineEntry], tapi.Profile]:
    """A customer's own entries (without merge entries) and its profile."""
    page = await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=cid, page_size=500, wait_for=token), timeout=10
    )
    own = [e for e in page.entries if e.customer_id == cid and e.type not in MERGE_TYPES]
    profile = (await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=cid))).profile
    return own, profile


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=steps)
# merge then unmerge; a chain unmerged from its middle; a refused command on a merged one
@example(
    script=[
        ("register", 0, 0),
        ("register", 1, 0),
        ("email", 0, 5),
        ("merge", 0, 1),
        ("unmerge", 1, 0),
    ]
)
@example(
    script=[
        ("register", 0, 0),
        ("register", 1, 0),
        ("register", 2, 0),
        ("merge", 1, 0),
        ("merge", 2, 1),
        ("email", 0, 1),
        ("unmerge", 1, 0),
        ("unmerge", 0, 0),
    ]
)
async def test_any_sequence_reconciles_and_unmerge_is_an_exact_inverse(
    stack: Stack, script: list[Step]
) -> None:
    m = Model()
    token = ""
    # at each merge: both customers' own history, profile, and own-change count and group
    snapshots: dict[
        str, dict[str, tuple[list[tapi.TimelineEntry], tapi.Profile, int, set[str]]]
    ] = {}
    for op, i, j in script:
        if op == "register" or not m.ids:
            reply = await register(stack.customer, f"Customer {i}", f"c{i}-{len(m.ids)}@ex.com")
            cid = reply.result.aggregate_id
            m.ids.append(cid)
            m.emails[cid] = [f"c{i}-{len(m.ids) - 1}@ex.com"]
            m.changes[cid] = 0
            token = _later(token, reply.result.consistency_token)
            continue
        a = m.ids[i % len(m.ids)]
        b = m.ids[j % len(m.ids)]
        try:
            if op == "email":
                email = f"extra{j}@ex.com"
                reply_e = await stack.customer.AddEmail(
                    capi.AddEmailRequest(customer_id=a, email=email)
                )
                assert a not in m.merged_into
                if email not in m.emails[a]:
                    m.emails[a].append(email)
                    m.changes[a] += 1
                token = _later(token, reply_e.result.consistency_token)
            elif op == "merge":
                before = {}
                for c in (a, b):
                    own, profile = await _own(stack, c, token)
                    before[c] = (own, profile, m.changes[c], m.group(c))
                reply_m = await stack.customer.MergeCustomers(
                    capi.MergeCustomersRequest(survivor_id=a, duplicate_id=b, reason="dup")
                )
                assert a != b
                assert a not in m.merged_into
                assert b not in m.merged_into
                m.merged_into[b] = a
                snapshots[b] = before
                token = _later(token, reply_m.result.consistency_token)
            else:
                reply_u = await stack.customer.UnmergeCustomer(
                    capi.UnmergeCustomerRequest(customer_id=a)
                )
                survivor = m.merged_into.pop(a)
                token = _later(token, reply_u.result.consistency_token)
                for c in (a, survivor):
                    own, profile, changes, group = snapshots[a][c]
                    if m.changes[c] == changes and m.group(c) == group:
                        # nothing of its own happened since: exactly as before the merge
                        now_own, now_profile = await _own(stack, c, token)
                        assert now_own == own
                        assert now_profile == profile
        except grpc.aio.AioRpcError as error:
            refused: grpc.aio.AioRpcError | None = error
        else:
            refused = None
        if refused is not None:
            expected = {
                "email": a in m.merged_into,
                "merge": a == b or a in m.merged_into or b in m.merged_into,
                "unmerge": a not in m.merged_into,
            }[op]
            assert expected, (op, refused.details())
            assert refused.code() in (
                grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.INVALID_ARGUMENT,
            )

    # every stored event is one timeline entry
    await stack.timeline.GetTimeline(
        tapi.GetTimelineRequest(customer_id=m.ids[0], wait_for=token), timeout=10
    )
    with psycopg.connect(stack.postgres_url) as conn:
        report = compare(conn, ["customer"])
    assert report.missing == 0
    assert report.doubled == 0
    assert report.timeline_entries == report.stored_events

    # groups, pointers and combined contact points as the model says
    for cid in m.ids:
        group = m.group(cid)
        page = await stack.timeline.GetTimeline(
            tapi.GetTimelineRequest(customer_id=cid, page_size=500), timeout=10
        )
        assert {e.customer_id for e in page.entries} == group
        profile = (await stack.timeline.GetProfile(tapi.GetProfileRequest(customer_id=cid))).profile
        customer = (
            await stack.customer.GetCustomer(capi.GetCustomerRequest(customer_id=cid))
        ).customer
        final = m.final(cid)
        assert profile.merged_into == customer.merged_into == ("" if final == cid else final)
        if final == cid:
            assert set(profile.absorbed) == set(customer.absorbed) == group - {cid}
            emails = {e for member in group for e in m.emails[member]}
            assert set(profile.emails) == set(customer.emails) == emails
        else:
            assert set(customer.emails) == set(m.emails[cid])
