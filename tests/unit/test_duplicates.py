"""Duplicate scoring: which customers are alike, and the reasons given."""

from __future__ import annotations

from c360_customer.duplicates import Identity, compare, name_key, name_similarity, rank


def person(
    cid: str, name: str, emails: tuple[str, ...] = (), phones: tuple[str, ...] = ()
) -> Identity:
    return Identity(cid, "person", name, emails, phones)


def test_transliterated_names_fold_to_the_same_key() -> None:
    assert name_key("Jānis Žirnovskis") == name_key("Janis Zhirnovskis")
    assert name_key("Müller, Jürgen") == name_key("Jurgen Muller")
    assert name_key("Ada Lovelace") != name_key("Ada Lovelock")


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
