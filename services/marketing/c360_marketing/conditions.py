"""Segment condition trees, pure (no I/O): parsing with paths, evaluation over a customer's
profile facts, and which condition decided or changed a result.

A tree is JSON: `{"all": [..]}`, `{"any": [..]}`, `{"not": C}` or a typed condition
`{"field": F, "op": OP, "value": V}` (consent also takes `channel` and `purpose`, lifetime
value `currency`). Every condition has a path from the root: `condition.all[1].any[0]`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from c360_platform.errors import InvalidArgument
from c360_platform.validation import Violations

ROOT = "condition"
MAX_DEPTH = 12
MAX_CONDITIONS = 200
MAX_JSON_CHARS = 50_000
"""The most characters a tree's JSON text may have: 200 conditions written out, with room."""
MAX_JSON_NESTING = 32
"""The deepest brackets may nest in a tree's JSON text: a tree of MAX_DEPTH levels needs
two per level (an object and its list), so deeper text is refused before it is parsed (the
parser recurses once per bracket, and deep enough text exhausts the interpreter's stack)."""
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")
CONSENT_CHANNELS = ("email", "sms", "phone", "post")
CONSENT_PURPOSES = ("marketing", "service")
KINDS = ("person", "organisation")

Tree = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Facts:
    """What a segment may ask of one customer's 360 profile (and of marketing's own
    memberships: `segments`). Marketing keeps one per customer in memory (`facts_of` shares
    the values many customers have alike); slots, not an instance dictionary each."""

    customer_id: str
    display_name: str = ""
    kind: str = ""
    countries: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    owner: str = ""
    consent: Mapping[str, bool] = field(default_factory=dict)
    """"email/marketing" -> granted (True) or revoked (False); absent: never decided."""
    lifetime_value: Mapping[str, Decimal] = field(default_factory=dict)
    open_tickets: int = 0
    support_contacts_30d: int = 0
    at_risk: bool = False
    segments: frozenset[str] = frozenset()
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    postal: str = ""
    """The first postal address on one line ("" if none)."""
    region: str = ""
    """Where the customer is for results by region: the first address's country and region
    ("DE / BAYERN"), its country alone if it names no region (`profiles.results_region`)."""
    classes: frozenset[str] = frozenset()
    """The sales service's classification: key, loyal, low_profit, trend_alert, debtor."""
    products: frozenset[str] = frozenset()
    """The SKUs the customer bought (fulfilled orders)."""
    days_since_purchase: int | None = None
    """Days from the last purchase to when the facts were read; None: never bought."""
    first_seen: date | None = None
    """When the customer first appeared (the profile's first_seen_at), for anniversaries."""
    overdue_invoices: tuple[str, ...] = ()
    """Invoice numbers the ERP reports overdue and not settled."""
    responded: frozenset[str] = frozenset()
    """The campaigns the customer responded to (clicked or replied), from marketing's own
    touches, like `segments`."""
    forgotten: bool = False
    """Forgotten on request: a member of no segment (reached by no campaign or lead list),
    whatever else its facts say."""
    merged_into: str = ""
    """The customer this one was merged into, if it was: a member of no segment (the person is
    reached as the survivor, whose record theirs joins; sales refuses new leads for them)."""


# -- the fields ---------------------------------------------------------------------------------

TEXT_OPS = ("eq", "ne", "in", "not_in", "empty", "not_empty")
"""Text fields (country, region, owner): equal, in a list, or empty (none at all: no owner,
no address with a region), as Mautic's empty / !empty."""
PRESENCE_OPS = ("empty", "not_empty")
NUMBER_OPS = ("gt", "gte", "lt", "lte", "eq")


@dataclass(frozen=True)
class FieldSpec:
    ops: tuple[str, ...]
    value: str
    """What `value` must be: "code" (text or list of texts), "word", "tags", "number",
    "bool", "none" (no value), "segment"."""


FIELDS: dict[str, FieldSpec] = {
    "country": FieldSpec(TEXT_OPS, "code"),
    "region": FieldSpec(TEXT_OPS, "code"),
    "kind": FieldSpec(("eq", "ne"), "word"),
    "tags": FieldSpec(("has", "has_any", "has_all"), "tags"),
    "owner": FieldSpec(TEXT_OPS, "code"),
    "consent": FieldSpec(("granted", "not_granted"), "none"),
    "lifetime_value": FieldSpec(NUMBER_OPS, "number"),
    "open_tickets": FieldSpec(NUMBER_OPS, "number"),
    "support_contacts_30d": FieldSpec(NUMBER_OPS, "number"),
    "at_risk": FieldSpec(("eq",), "bool"),
    "class": FieldSpec(("has", "has_any", "has_all"), "tags"),
    "products_bought": FieldSpec(("has", "has_any", "has_all"), "tags"),
    "days_since_purchase": FieldSpec(NUMBER_OPS, "number"),
    "segment": FieldSpec(("member", "not_member"), "segment"),
    "campaign_response": FieldSpec(("responded", "not_responded"), "segment"),
}


def parse_json(text: str, field_name: str = ROOT) -> Tree:
    """A condition tree from its JSON text, validated (INVALID_ARGUMENT naming the path)."""
    if len(text) > MAX_JSON_CHARS:
        raise InvalidArgument.one(
            field_name, f"must be at most {MAX_JSON_CHARS} characters of JSON"
        )
    if _nesting(text) > MAX_JSON_NESTING:
        raise InvalidArgument.one(
            field_name,
            f"brackets nested deeper than {MAX_JSON_NESTING}; a tree nests at most"
            f" {MAX_DEPTH} deep",
        )
    try:
        raw = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument.one(field_name, f"not JSON: {exc}") from None
    return parse(raw)


def _nesting(text: str) -> int:
    """How deep the brackets of a JSON text nest, outside its strings (counted only up to
    one past MAX_JSON_NESTING)."""
    depth = deepest = 0
    for bracket in _BRACKET.finditer(_JSON_STRING.sub('""', text)):
        if bracket.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_NESTING:
                break
        else:
            depth -= 1
    return deepest


def parse(raw: Any) -> Tree:
    """The tree, normalised; every wrong condition is named by its path at once."""
    v = Violations()
    count = [0]
    tree = _node(raw, ROOT, v, 0, count)
    v.check()
    return tree


def _node(raw: Any, path: str, v: Violations, depth: int, count: list[int]) -> Tree:
    count[0] += 1
    if count[0] > MAX_CONDITIONS:
        v.add(path, f"a tree has at most {MAX_CONDITIONS} conditions")
        return {}
    if depth > MAX_DEPTH:
        v.add(path, f"nested deeper than {MAX_DEPTH}")
        return {}
    if not isinstance(raw, dict):
        v.add(path, 'must be an object: {"all": [..]}, {"any": [..]}, {"not": ..} or a condition')
        return {}
    groups = [k for k in ("all", "any", "not") if k in raw]
    if groups:
        if len(raw) != 1:
            v.add(path, f"a {groups[0]!r} node has no other keys")
            return {}
        key = groups[0]
        if key == "not":
            return {"not": _node(raw["not"], f"{path}.not", v, depth + 1, count)}
        children = raw[key]
        if not isinstance(children, list) or not children:
            v.add(f"{path}.{key}", "must be a non-empty list of conditions")
            return {}
        return {
            key: [
                _node(child, f"{path}.{key}[{i}]", v, depth + 1, count)
                for i, child in enumerate(children)
            ]
        }
    return _leaf(raw, path, v)


def _leaf(raw: dict[str, Any], path: str, v: Violations) -> Tree:
    name = raw.get("field")
    spec = FIELDS.get(name) if isinstance(name, str) else None
    if spec is None or not isinstance(name, str):
        v.add(f"{path}.field", f"unknown field; one of {', '.join(FIELDS)}")
        return {}
    allowed = {"field", "op", "value"} | {
        "consent": {"channel", "purpose"},
        "lifetime_value": {"currency"},
    }.get(name, set())
    for extra in sorted(set(raw) - allowed):
        v.add(f"{path}.{extra}", f"not a key of a {name} condition")
    op = raw.get("op", spec.ops[0])
    if op not in spec.ops:
        v.add(f"{path}.op", f"{name} takes {', '.join(spec.ops)}")
    leaf: Tree = {"field": name, "op": op}
    value = raw.get("value")
    where = f"{path}.value"
    if spec.value == "none":
        if "value" in raw:
            v.add(where, f"a {name} condition has no value")
        leaf["channel"] = v.choice(f"{path}.channel", raw.get("channel", ""), CONSENT_CHANNELS)
        leaf["purpose"] = v.choice(
            f"{path}.purpose", raw.get("purpose", "marketing"), CONSENT_PURPOSES
        )
    elif spec.value == "code" and op in PRESENCE_OPS:
        if "value" in raw:
            v.add(where, f"{op} takes no value")
    elif spec.value == "code":
        many = op in ("in", "not_in")
        values = value if many and isinstance(value, list) else [value]
        if many and not isinstance(value, list):
            v.add(where, f"{op} takes a list of texts")
        elif not all(isinstance(x, str) and x.strip() for x in values) or not values:
            v.add(where, "must be a non-empty text" + (" list" if many else ""))
        else:
            norm = [str(x).strip() for x in values]
            norm = [x if name == "owner" else x.upper() for x in norm]
            if name == "country":  # "Latvia" would never match: profiles hold codes (LV)
                for i, code in enumerate(norm):
                    v.country(f"{where}[{i}]" if many else where, code)
            leaf["value"] = norm if many else norm[0]
    elif spec.value == "word":
        if value not in KINDS:
            v.add(where, f"must be one of {', '.join(KINDS)}")
        leaf["value"] = value
    elif spec.value == "tags":
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(x, str) and x.strip() for x in values):
            v.add(where, "must be a tag or a list of tags")
        else:
            leaf["value"] = sorted({str(x).strip().lower() for x in values})
    elif spec.value == "number":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            v.add(where, "must be a number")
        else:
            try:
                number = Decimal(str(value))
                if not number.is_finite():
                    raise InvalidOperation
                leaf["value"] = str(number)
            except InvalidOperation:
                v.add(where, "must be a number")
        if name == "lifetime_value":
            currency = raw.get("currency", "EUR")
            if isinstance(currency, str):
                currency = v.currency(f"{path}.currency", currency)
            else:
                v.add(f"{path}.currency", "must be an ISO 4217 code such as EUR")
            leaf["currency"] = currency
    elif spec.value == "bool":
        if not isinstance(value, bool):
            v.add(where, "must be true or false")
        leaf["value"] = value
    elif spec.value == "segment":
        if not isinstance(value, str) or not value.strip():
            what = "a campaign id" if name == "campaign_response" else "a segment id or name"
            v.add(where, f"must be {what}")
        else:
            leaf["value"] = value.strip()
    return leaf


# -- reading a tree -----------------------------------------------------------------------------


def leaves(tree: Tree, path: str = ROOT) -> list[tuple[str, Tree]]:
    """Every typed condition with its path, in order."""
    if "all" in tree or "any" in tree:
        key = "all" if "all" in tree else "any"
        return [x for i, c in enumerate(tree[key]) for x in leaves(c, f"{path}.{key}[{i}]")]
    if "not" in tree:
        return leaves(tree["not"], f"{path}.not")
    return [(path, tree)]


def segments_used(tree: Tree) -> set[str]:
    """The segments a tree asks about (membership of another segment)."""
    return {leaf["value"] for _, leaf in leaves(tree) if leaf["field"] == "segment"}


def campaigns_used(tree: Tree) -> set[str]:
    """The campaigns a tree asks about (responses to a campaign)."""
    return {leaf["value"] for _, leaf in leaves(tree) if leaf["field"] == "campaign_response"}


_OP_WORDS = {
    "eq": "=",
    "ne": "≠",
    "gt": ">",
    "gte": "≥",
    "lt": "<",
    "lte": "≤",
    "in": "in",
    "not_in": "not in",
    "has": "has",
    "has_any": "has any of",
    "has_all": "has all of",
}


def describe(leaf: Tree, names: Mapping[str, str] | None = None) -> str:
    """A condition in words: "country in LV, EE", "consent email/marketing granted"."""
    name, op = leaf["field"], leaf["op"]
    if name == "consent":
        return f"consent {leaf['channel']}/{leaf['purpose']} {op.replace('_', ' ')}"
    if name == "segment":
        target = (names or {}).get(leaf["value"], leaf["value"])
        return f"{'member' if op == 'member' else 'not member'} of segment {target}"
    if name == "campaign_response":
        verb = "responded" if op == "responded" else "did not respond"
        return f"{verb} to campaign {leaf['value']}"
    if op in PRESENCE_OPS:
        return f"{name.replace('_', ' ')} {'is empty' if op == 'empty' else 'is not empty'}"
    value = leaf.get("value")
    shown = ", ".join(value) if isinstance(value, list) else str(value).lower()
    if isinstance(value, str) and name != "at_risk":
        shown = value
    if name == "lifetime_value":
        shown = f"{value} {leaf['currency']}"
    return f"{name.replace('_', ' ')} {_OP_WORDS.get(op, op)} {shown}"


def actual(leaf: Tree, facts: Facts) -> str:
    """What the profile has for a condition's field, in words."""
    name = leaf["field"]
    if name == "consent":
        decided = facts.consent.get(f"{leaf['channel']}/{leaf['purpose']}")
        return "never decided" if decided is None else ("granted" if decided else "revoked")
    if name == "lifetime_value":
        return f"{facts.lifetime_value.get(leaf['currency'], Decimal(0))} {leaf['currency']}"
    if name == "segment":
        return "member" if leaf["value"] in facts.segments else "not member"
    if name == "campaign_response":
        return "responded" if leaf["value"] in facts.responded else "no response"
    value: Any = {
        "country": ", ".join(sorted(facts.countries)),
        "region": ", ".join(sorted(facts.regions)),
        "kind": facts.kind,
        "tags": ", ".join(sorted(facts.tags)),
        "owner": facts.owner,
        "open_tickets": facts.open_tickets,
        "support_contacts_30d": facts.support_contacts_30d,
        "at_risk": facts.at_risk,
        "class": ", ".join(sorted(facts.classes)),
        "products_bought": ", ".join(sorted(facts.products)),
        "days_since_purchase": (
            "never bought" if facts.days_since_purchase is None else facts.days_since_purchase
        ),
    }[name]
    return str(value).lower() if isinstance(value, bool) else str(value)


def _compare(op: str, have: Decimal, want: Decimal) -> bool:
    return {
        "gt": have > want,
        "gte": have >= want,
        "lt": have < want,
        "lte": have <= want,
        "eq": have == want,
    }[op]


def _has(c: Tree, present: frozenset[str] | set[str]) -> bool:
    wanted = set(c["value"])
    return wanted <= present if c["op"] == "has_all" else bool(wanted & present)


def _codes(op: str, have: frozenset[str] | str, value: Any) -> bool:
    present = {have} if isinstance(have, str) else set(have)
    present.discard("")
    if op in PRESENCE_OPS:
        return bool(present) == (op == "not_empty")
    wanted = set(value) if isinstance(value, list) else {value}
    hit = bool(present & wanted)
    return hit if op in ("eq", "in") else not hit


_TESTS: dict[str, Callable[[Tree, Facts], bool]] = {
    "country": lambda c, f: _codes(c["op"], f.countries, c.get("value")),
    "region": lambda c, f: _codes(c["op"], f.regions, c.get("value")),
    "owner": lambda c, f: _codes(c["op"], f.owner, c.get("value")),
    "kind": lambda c, f: (f.kind == c["value"]) == (c["op"] == "eq"),
    "tags": lambda c, f: _has(c, f.tags),
    "consent": lambda c, f: (
        (f.consent.get(f"{c['channel']}/{c['purpose']}") is True) == (c["op"] == "granted")
    ),
    "lifetime_value": lambda c, f: _compare(
        c["op"], f.lifetime_value.get(c["currency"], Decimal(0)), Decimal(c["value"])
    ),
    "open_tickets": lambda c, f: _compare(c["op"], Decimal(f.open_tickets), Decimal(c["value"])),
    "support_contacts_30d": lambda c, f: _compare(
        c["op"], Decimal(f.support_contacts_30d), Decimal(c["value"])
    ),
    "at_risk": lambda c, f: f.at_risk == c["value"],
    "class": lambda c, f: _has(c, f.classes),
    "products_bought": lambda c, f: _has(c, {p.lower() for p in f.products}),
    # Never bought: no purchase is within any number of days, and is longer ago than any
    # (at least as long ago as any, too: "gte 90" and "gt 89" pick the same customers).
    "days_since_purchase": lambda c, f: (
        c["op"] in ("gt", "gte")
        if f.days_since_purchase is None
        else _compare(c["op"], Decimal(f.days_since_purchase), Decimal(c["value"]))
    ),
    "segment": lambda c, f: (c["value"] in f.segments) == (c["op"] == "member"),
    "campaign_response": lambda c, f: (c["value"] in f.responded) == (c["op"] == "responded"),
}


def holds(leaf: Tree, facts: Facts) -> bool:
    """Whether one typed condition holds for the customer."""
    return _TESTS[leaf["field"]](leaf, facts)


# -- evaluation and explanation -----------------------------------------------------------------

Values = Mapping[str, bool]
"""Each typed condition's truth, by path."""


def values(tree: Tree, facts: Facts) -> dict[str, bool]:
    return {path: holds(leaf, facts) for path, leaf in leaves(tree)}


@dataclass(frozen=True)
class Verdict:
    """A tree's result and the path of the condition that decided it: the first false one of
    a failing `all`, the first true one of a passing `any`, the node itself otherwise."""

    member: bool
    path: str


def decide(tree: Tree, truth: Values, path: str = ROOT) -> Verdict:
    """The tree's result over the conditions' truth values."""
    if "all" in tree:
        for i, child in enumerate(tree["all"]):
            found = decide(child, truth, f"{path}.all[{i}]")
            if not found.member:
                return Verdict(False, found.path)
        return Verdict(True, path)
    if "any" in tree:
        for i, child in enumerate(tree["any"]):
            found = decide(child, truth, f"{path}.any[{i}]")
            if found.member:
                return Verdict(True, found.path)
        return Verdict(False, path)
    if "not" in tree:
        inner = decide(tree["not"], truth, f"{path}.not")
        return Verdict(not inner.member, inner.path)
    return Verdict(truth[path], path)


def evaluate(tree: Tree, facts: Facts) -> Verdict:
    return decide(tree, values(tree, facts))


def changed_condition(tree: Tree, before: Values, after: Values) -> str:
    """Which condition flipped the result from `before` to `after`: of the conditions whose
    truth changed, the first whose change alone undone in `after` gives the earlier result;
    if none does alone, the first whose truth changed (a joint change)."""
    was, now = decide(tree, before).member, decide(tree, after).member
    changed = [path for path in after if before.get(path) != after[path]]
    if was == now or not changed:
        return decide(tree, after).path
    for path in changed:
        undone = dict(after)
        undone[path] = before[path] if path in before else not after[path]
        if decide(tree, undone).member == was:
            return path
    return changed[0]


MAX_TEXT = 300
"""The most characters of a condition in words (a group lists its members)."""


def text_of(
    tree: Tree, path: str, names: Mapping[str, str] | None = None, *, holds: bool = True
) -> str:
    """The words of the condition at `path`: a typed one's, or a group's members'
    ("any of (at risk = true; open tickets ≥ 1)"), shortened to MAX_TEXT characters. With
    `holds` False, the words of what holds instead ("consent email/marketing not granted",
    "none of (…)"): a customer who left on a revoked consent, or entered a `not` segment,
    is told what is true of them, not the condition that stopped being (or never was) true."""
    text = _words(tree, path, names) if holds else _negated(tree, path, names)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def holds_at(tree: Tree, path: str, truth: Values) -> bool:
    """Whether the condition at `path` (a typed one or a group) is true over `truth`."""
    if path in truth:
        return truth[path]
    node = _at(tree, path)
    return True if node is None else decide(node, truth, path).member


_NEGATED_OPS = {
    "eq": "ne",
    "ne": "eq",
    "in": "not_in",
    "not_in": "in",
    "gt": "lte",
    "gte": "lt",
    "lt": "gte",
    "lte": "gt",
    "empty": "not_empty",
    "not_empty": "empty",
    "granted": "not_granted",
    "not_granted": "granted",
    "member": "not_member",
    "not_member": "member",
    "responded": "not_responded",
    "not_responded": "responded",
}
"""Each operator's opposite (tags, class and products_bought have none: worded apart)."""


def _negated(tree: Tree, path: str, names: Mapping[str, str] | None) -> str:
    """The words of the opposite of the condition at `path`."""
    for leaf_path, leaf in leaves(tree):
        if leaf_path != path:
            continue
        op = leaf["op"]
        if op in _NEGATED_OPS:
            return describe(leaf | {"op": _NEGATED_OPS[op]}, names)
        if op == "has_all":
            return "not " + describe(leaf, names)
        return f"{leaf['field'].replace('_', ' ')} has none of {', '.join(leaf['value'])}"
    node = _at(tree, path)
    if node is None:
        return "not " + path
    if "not" in node:
        return _words(tree, f"{path}.not", names)
    if "any" in node:
        return "none of " + _words(tree, path, names).removeprefix("any of ")
    return "not " + _words(tree, path, names)


def _words(tree: Tree, path: str, names: Mapping[str, str] | None) -> str:
    for leaf_path, leaf in leaves(tree):
        if leaf_path == path:
            return describe(leaf, names)
    node = _at(tree, path)
    if node is None:
        return path
    if "not" in node:
        return "not " + _words(tree, f"{path}.not", names)
    key = "all" if "all" in node else "any"
    members = [_words(tree, f"{path}.{key}[{i}]", names) for i in range(len(node.get(key, [])))]
    return f"{key} of ({'; '.join(members)})"


def _at(tree: Tree, path: str) -> Tree | None:
    node: Any = tree
    for part in path.split(".")[1:]:
        key, _, index = part.partition("[")
        node = node.get(key) if isinstance(node, dict) else None
        if index:
            node = node[int(index.rstrip("]"))] if isinstance(node, list) else None
        if node is None:
            return None
    return node if isinstance(node, dict) else None
