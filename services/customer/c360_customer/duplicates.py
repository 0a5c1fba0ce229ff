"""Duplicate detection: how alike two customers are, and why (a pure policy, no I/O).

Evidence, each with a weight, combines as independent signals (1 - Π(1 - w)):
- the same normalised e-mail address (addresses are stored lower-cased): 0.9; the same
  mailbox with another subaddress ("ada+shop@x.org" and "ada@x.org"): 0.85;
- the same phone number (E.164): 0.8;
- similar names: the names are transliterated to ASCII and folded ("Žirnovskis" and
  "Zhirnovskis" both become "zirnovskis", "Müller" and "Mueller" "muler"), without titles
  ("Dr.", "Frau"), apostrophes ("O'Neil" is "ONeil") and, of an organisation, its legal
  form ("ACME GmbH" is "ACME", "S.L." too), then compared
  word-order-insensitively with Jaro-Winkler; from 0.88 similarity the weight rises from
  0.45 to 0.7 for identical names.
Customers of different kinds (person, organisation) are never candidates.

Candidates are looked for among customers that share a blocking key (`blocking_keys`): an
e-mail address, a phone number, the name key, or a name-key word of at least `MIN_WORD`
letters; `find_pairs` scores every pair within a block once (the report over all customers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz.distance import JaroWinkler
from unidecode import unidecode

EMAIL_WEIGHT = 0.9
MAILBOX_WEIGHT = 0.85
PHONE_WEIGHT = 0.8
NAME_THRESHOLD = 0.88
NAME_WEIGHT_MIN = 0.45
NAME_WEIGHT_MAX = 0.7
CANDIDATE_SCORE = 0.5
MIN_WORD = 4
"""Name-key words shorter than this are not blocking keys (initials, "de", "van", ...)."""
MAX_WORD_BLOCK = 200
"""A name word shared by more customers than this is too common to block on in the report
(an exact name key, e-mail or phone is always used)."""

# Romanisations that spell one sound two ways (Cyrillic and Baltic names in particular; the
# German and Scandinavian ae, oe, ue of ä, ö/ø, ü, which are also written a, o, u).
_FOLDS = [
    ("ae", "a"),
    ("oe", "o"),
    ("ue", "u"),
    ("zh", "z"),
    ("sch", "s"),
    ("sh", "s"),
    ("ch", "c"),
    ("kh", "h"),
    ("ph", "f"),
    ("th", "t"),
    ("ts", "c"),
    ("tz", "c"),
    ("ck", "k"),
    ("w", "v"),
    ("y", "i"),
    ("j", "i"),
]
_NOT_LETTERS = re.compile(r"[^a-z ]+")
_APOSTROPHES = re.compile("['`\u00b4\u2019]")
"""Inside a name, not a word break: O'Neil is ONeil."""
TITLES = frozenset(
    {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "herr", "frau", "mme", "mlle"}
)
"""Forms of address and academic titles: not part of whom a name names ("Dr. Zoë Müller" is
Zoë Müller). Generational suffixes (Jr, Sr) are: they tell a father from his son."""
LEGAL_FORMS = frozenset(
    {
        "ab", "ag", "aps", "as", "asa", "bv", "co", "corp", "doo", "ek", "gmbh", "inc", "kft",
        "kg", "llc", "llp", "ltd", "limited", "nv", "ohg", "ou", "oy", "oyj", "plc", "sa",
        "sarl", "sas", "sia", "sl", "spa", "sro", "srl", "uab", "ug",
    }
)  # fmt: skip
"""Legal forms of companies: an organisation's name without them is whom it names ("ACME
GmbH" is ACME, "Muñoz Logística S.L." Muñoz Logística). Not dropped from people's names
(Sá is a surname)."""
_DOTTED = re.compile(r"\b(?:[a-z]\.){2,}")
"""An abbreviation written with dots ("s.l.", "i.b.m."): one word."""
_REPEATS = re.compile(r"(.)\1+")


@dataclass(frozen=True)
class Identity:
    """What duplicate detection looks at of a customer."""

    customer_id: str
    kind: str
    display_name: str
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pair:
    """Two customers that are likely duplicates (`customer_id` < `duplicate_id`)."""

    customer_id: str
    duplicate_id: str
    score: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Candidate:
    """A likely duplicate of some customer, with the score and the reasons that matched."""

    customer_id: str
    score: float
    reasons: tuple[str, ...]


def mailbox(email: str) -> str:
    """The mailbox an address delivers to: without its subaddress ("ada+shop@x.org" is
    "ada@x.org"), which people add to tell senders apart."""
    local, at, domain = email.rpartition("@")
    if not at or "+" not in local:
        return email
    base = local.split("+", 1)[0]
    return f"{base}@{domain}" if base else email


def contact_keys(emails: tuple[str, ...] | list[str]) -> list[str]:
    """The e-mail values duplicates are looked for by: each address and its mailbox, once."""
    return list(dict.fromkeys([*emails, *(mailbox(e) for e in emails)]))


def name_key(name: str, kind: str = "person") -> str:
    """A folded, word-sorted ASCII key of a name: equal keys sound alike. Titles go, and for
    an organisation its legal form, unless nothing else is left."""
    text = _APOSTROPHES.sub("", unidecode(name).lower())
    text = _DOTTED.sub(lambda m: m.group().replace(".", "") + " ", text)
    text = _NOT_LETTERS.sub(" ", text)
    dropped = TITLES | LEGAL_FORMS if kind == "organisation" else TITLES
    words = []
    named = [word for word in text.split() if word not in dropped]
    for word in named or text.split():
        for spelled, sound in _FOLDS:
            word = word.replace(spelled, sound)
        words.append(_REPEATS.sub(r"\1", word))
    return " ".join(sorted(words))


def name_similarity(a: str, b: str, kind: str = "person") -> float:
    """0..1: how alike two names (of customers of `kind`) are after transliteration and
    folding."""
    ka, kb = name_key(a, kind), name_key(b, kind)
    if not ka or not kb:
        return 0.0
    return float(JaroWinkler.similarity(ka, kb))


def compare(a: Identity, b: Identity) -> Candidate | None:
    """`b` as a duplicate candidate of `a`, or None when the evidence is too weak."""
    if a.customer_id == b.customer_id or a.kind != b.kind:
        return None
    reasons: list[str] = []
    weights: list[float] = []
    for email in sorted(set(a.emails) & set(b.emails)):
        reasons.append(f"same e-mail {email}")
        weights.append(EMAIL_WEIGHT)
    shared = set(a.emails) & set(b.emails)
    boxes = {mailbox(e) for e in a.emails if e not in shared}
    for box in sorted(boxes & {mailbox(e) for e in b.emails if e not in shared}):
        reasons.append(f"same mailbox {box}")
        weights.append(MAILBOX_WEIGHT)
    for phone in sorted(set(a.phones) & set(b.phones)):
        reasons.append(f"same phone {phone}")
        weights.append(PHONE_WEIGHT)
    similarity = name_similarity(a.display_name, b.display_name, a.kind)
    if similarity >= NAME_THRESHOLD:
        if name_key(a.display_name, a.kind) == name_key(b.display_name, a.kind):
            same = a.display_name.casefold() == b.display_name.casefold()
            reasons.append("same name" if same else "same name when transliterated")
        else:
            reasons.append(f"similar name ({similarity:.2f})")
        span = (similarity - NAME_THRESHOLD) / (1 - NAME_THRESHOLD)
        weights.append(NAME_WEIGHT_MIN + span * (NAME_WEIGHT_MAX - NAME_WEIGHT_MIN))
    remaining = 1.0
    for weight in weights:
        remaining *= 1 - weight
    score = round(1 - remaining, 3)
    if score < CANDIDATE_SCORE:
        return None
    return Candidate(b.customer_id, score, tuple(reasons))


def rank(subject: Identity, others: list[Identity]) -> list[Candidate]:
    """The candidates among `others`, best first (ties by id, so the order is stable)."""
    found = [c for other in others if (c := compare(subject, other)) is not None]
    return sorted(found, key=lambda c: (-c.score, c.customer_id))


def name_words(key: str) -> list[str]:
    """The words of a name key long enough to look for candidates by, sorted, once each."""
    return sorted({word for word in key.split() if len(word) >= MIN_WORD})


def blocking_keys(identity: Identity) -> list[str]:
    """The keys under which `identity` meets its candidates: customers sharing none of them
    are never compared. Keys are prefixed by their kind, and by the customer's kind."""
    key = name_key(identity.display_name, identity.kind)
    keys = [f"e:{e}" for e in contact_keys(identity.emails)]
    keys += [f"p:{p}" for p in identity.phones]
    if key:
        keys.append(f"n:{key}")
        keys.extend(f"w:{word}" for word in name_words(key))
    return sorted({f"{identity.kind}|{k}" for k in keys})


def find_pairs(
    identities: list[Identity],
    min_score: float = CANDIDATE_SCORE,
    max_word_block: int = MAX_WORD_BLOCK,
) -> list[Pair]:
    """Every pair of likely duplicates among `identities`, each pair once, best first (ties
    by ids). Only customers sharing a blocking key are compared; a name word shared by more
    than `max_word_block` customers is skipped as a key."""
    blocks: dict[str, list[int]] = {}
    for index, identity in enumerate(identities):
        for key in blocking_keys(identity):
            blocks.setdefault(key, []).append(index)
    seen: set[tuple[int, int]] = set()
    pairs: list[Pair] = []
    for key, members in blocks.items():
        if len(members) < 2 or ("|w:" in key and len(members) > max_word_block):
            continue
        for i, left in enumerate(members):
            for right in members[i + 1 :]:
                if (left, right) in seen:
                    continue
                seen.add((left, right))
                a, b = identities[left], identities[right]
                if b.customer_id < a.customer_id:
                    a, b = b, a
                found = compare(a, b)
                if found is not None and found.score >= min_score:
                    pairs.append(Pair(a.customer_id, b.customer_id, found.score, found.reasons))
    return sorted(pairs, key=lambda p: (-p.score, p.customer_id, p.duplicate_id))
