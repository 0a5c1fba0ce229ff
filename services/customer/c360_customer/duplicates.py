"""Duplicate detection: how alike two customers are, and why (a pure policy, no I/O).

Evidence, each with a weight, combines as independent signals (1 - Π(1 - w)):
- the same normalised e-mail address (addresses are stored lower-cased): 0.9;
- the same phone number (E.164): 0.8;
- similar names: the names are transliterated to ASCII and folded ("Žirnovskis" and
  "Zhirnovskis" both become "zirnovskis"), then compared word-order-insensitively with
  Jaro-Winkler; from 0.88 similarity the weight rises from 0.45 to 0.7 for identical names.
Customers of different kinds (person, organisation) are never candidates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz.distance import JaroWinkler
from unidecode import unidecode

EMAIL_WEIGHT = 0.9
PHONE_WEIGHT = 0.8
NAME_THRESHOLD = 0.88
NAME_WEIGHT_MIN = 0.45
NAME_WEIGHT_MAX = 0.7
CANDIDATE_SCORE = 0.5

# Romanisations that spell one sound two ways (Cyrillic and Baltic names in particular).
_FOLDS = [
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
class Candidate:
    """A likely duplicate of some customer, with the score and the reasons that matched."""

    customer_id: str
    score: float
    reasons: tuple[str, ...]


def name_key(name: str) -> str:
    """A folded, word-sorted ASCII key of a name: equal keys sound alike."""
    text = _NOT_LETTERS.sub(" ", unidecode(name).lower())
    words = []
    for word in text.split():
        for spelled, sound in _FOLDS:
            word = word.replace(spelled, sound)
        words.append(_REPEATS.sub(r"\1", word))
    return " ".join(sorted(words))


def name_similarity(a: str, b: str) -> float:
    """0..1: how alike two names are after transliteration and folding."""
    ka, kb = name_key(a), name_key(b)
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
    for phone in sorted(set(a.phones) & set(b.phones)):
        reasons.append(f"same phone {phone}")
        weights.append(PHONE_WEIGHT)
    similarity = name_similarity(a.display_name, b.display_name)
    if similarity >= NAME_THRESHOLD:
        if name_key(a.display_name) == name_key(b.display_name):
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
