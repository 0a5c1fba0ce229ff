"""Duplicate scoring: which customers are alike, and the reasons given."""

from __future__ import annotations

import pytest

from c360_customer.duplicates import (
    Identity,
    blocking_keys,
    compare,
    find_pairs,
    mailbox,
    name_key,
    name_similarity,
    name_words,
    rank,
)


def person(
    cid: str, name: str, emails: tuple[str, ...] = (), phones: tuple[str, ...] = ()
) -> Identity:
    return Identity(cid, "person", name, emails, phones)


def test_transliterated_names_fold_to_the_same_key() -> None:
    assert name_key("Jānis Žirnovskis") == name_key("Janis Zhirnovskis")
    assert name_key("Müller, Jürgen") == name_key("Jurgen Muller")
    assert name_key("Ada Lovelace") != name_key("Ada Lovelock")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Jürgen Müller", "Juergen Mueller"),  # ü written ue
        ("Jörg Schröder", "Joerg Schroeder"),
        ("Søren Kierkegaard", "Soeren Kierkegaard"),
        ("Dr. Zoë Müller", "Zoe Muller"),  # a title is not part of the name
        ("Prof. Dr. Hans Weiß", "Hans Weiss"),
        ("Frau Anna Schmidt", "Anna Schmidt"),
        ("Mrs. Jane O'Neil", "Jane ONeil"),  # an apostrophe does not break a word
        ("Liam O\u2019Brien", "Liam OBrien"),
    ],
)
def test_names_a_person_would_call_the_same_are_the_same_key(a: str, b: str) -> None:
    assert name_key(a) == name_key(b)
    found = compare(person("a", a), person("b", b))
    assert found is not None
    assert found.reasons in (("same name",), ("same name when transliterated",))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("ACME GmbH", "Acme"),  # the legal form is not part of the name
        ("Muñoz Logística S.L.", "Munoz Logistica SL"),  # nor its dots
        ("SIA Liepiņš Kokapstrāde", "Liepins Kokapstrade"),
        ("I.B.M.", "IBM"),
        ("Bäckerei Schmidt e.K.", "Baeckerei Schmidt"),
    ],
)
def test_organisations_are_the_same_without_their_legal_form(a: str, b: str) -> None:
    found = compare(Identity("a", "organisation", a), Identity("b", "organisation", b, emails=()))
    assert found is not None
    assert found.reasons in (("same name",), ("same name when transliterated",))


def test_a_persons_name_keeps_words_that_are_legal_forms_of_companies() -> None:
    assert name_key("Mário Sá") == "mario sa"
    assert name_key("Mário Sá", "organisation") == "mario"
    assert name_key("GmbH", "organisation") == "gmbh"  # nothing but a legal form: kept


def test_a_subaddress_is_the_same_mailbox() -> None:
    assert mailbox("zoe.angstrom+shop@example.com") == "zoe.angstrom@example.com"
    assert mailbox("zoe@example.com") == "zoe@example.com"
    assert mailbox("+shop@example.com") == "+shop@example.com"  # no mailbox left: as it is
    a = person("a", "Zoë Ångström", ("zoe.angstrom+shop@example.com",))
    b = person("b", "Quentin Blake", ("zoe.angstrom@example.com",))
    found = compare(a, b)
    assert found is not None
    assert found.reasons == ("same mailbox zoe.angstrom@example.com",)
    assert found.score == 0.85
    [pair] = find_pairs([a, b])
    assert pair.reasons == found.reasons
    same = compare(a, person("c", "Zoë Ångström", ("zoe.angstrom+shop@example.com",)))
    assert same is not None
    assert "same mailbox zoe.angstrom@example.com" not in same.reasons  # said once, as e-mail


def test_titles_alone_and_generations_stay() -> None:
    assert name_key("Dr.") == "dr"  # nothing but a title: kept, not emptied
    assert name_key("John Smith Jr.") != name_key("John Smith Sr.")


def test_same_email_in_another_case_and_a_transliterated_name() -> None:
    # E-mails are stored normalised (lower-case), so "Ada@X" and "ada@x" are the same value.
    a = person("a", "Jānis Žirnovskis", ("janis@example.lv",))
    b = person("b", "Janis Zhirnovskis", ("janis@example.lv",))
    found = compare(a, b)
    assert found is not None
    assert found.reasons == ("same e-mail janis@example.lv", "same name when transliterated")
    assert found.score > 0.95


def test_a_similar_name_alone_is_a_weaker_candidate_than_a_shared_phone() -> None:
    subject = person("s", "Katarzyna Kowalska", phones=("+48123456789",))
    by_phone = person("p", "K. Nowak", phones=("+48123456789",))
    by_name = person("n", "Katarzyna Kowalski")
    stranger = person("x", "Ada Lovelace")
    ranked = rank(subject, [stranger, by_name, by_phone])
    assert [c.customer_id for c in ranked] == ["p", "n"]
    assert ranked[0].reasons == ("same phone +48123456789",)
    assert ranked[1].reasons[0].startswith("similar name (")


def test_different_kinds_and_the_customer_itself_are_never_candidates() -> None:
    ada = person("a", "Ada", ("ada@example.com",))
    org = Identity("o", "organisation", "Ada", ("ada@example.com",))
    assert compare(ada, org) is None
    assert compare(ada, ada) is None


def test_name_similarity_is_symmetric_and_bounded() -> None:
    for a, b in [("Øster Hansen", "Oster Hansen"), ("O'Brien", "OBrien"), ("", "x")]:
        s = name_similarity(a, b)
        assert s == name_similarity(b, a)
        assert 0.0 <= s <= 1.0
    assert name_similarity("Øster Hansen", "Oster Hansen") == 1.0


def test_name_words_are_the_long_words_of_a_key_once_each() -> None:
    assert name_words(name_key("Jānis de Žirnovskis")) == ["ianis", "zirnovskis"]
    assert name_words("anna anna bo lee") == ["anna"]
    assert name_words("") == []


def test_blocking_keys_hold_contact_points_name_key_and_long_words_per_kind() -> None:
    ada = person("a", "Ada King-Lovelace", ("ada@example.com",), ("+442079460958",))
    assert blocking_keys(ada) == [
        "person|e:ada@example.com",
        "person|n:ada king lovelace",
        "person|p:+442079460958",
        "person|w:king",
        "person|w:lovelace",
    ]
    org = Identity("o", "organisation", "Ada", ("ada@example.com",))
    assert set(blocking_keys(org)).isdisjoint(blocking_keys(ada))


def test_find_pairs_lists_each_pair_once_best_first_without_strangers() -> None:
    people = [
        person("c", "Janis Zhirnovskis", ("janis@example.lv",)),
        person("a", "Jānis Žirnovskis", ("janis@example.lv",)),
        person("b", "Katarzyna Kowalska", phones=("+48123456789",)),
        person("d", "Katarzyna Kowalski", phones=("+48123456789",)),
        person("x", "Ada Lovelace", ("ada@example.com",)),
    ]
    pairs = find_pairs(people)
    assert [(p.customer_id, p.duplicate_id) for p in pairs] == [("a", "c"), ("b", "d")]
    assert pairs[0].reasons == ("same e-mail janis@example.lv", "same name when transliterated")
    assert pairs[0].score >= pairs[1].score
    assert find_pairs(people, min_score=0.95) == [pairs[0]]


def test_find_pairs_skips_a_name_word_too_common_to_block_on() -> None:
    people = [person(f"p{i}", f"Alexandra Q{chr(97 + i)}") for i in range(4)]
    people.append(person("z", "Alexandra Qa"))  # same name key as p0: always compared
    assert [(p.customer_id, p.duplicate_id) for p in find_pairs(people, max_word_block=3)] == [
        ("p0", "z")
    ]
