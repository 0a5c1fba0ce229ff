"""The everyday-address fast path of `Violations.email` (`plain_email`) answers exactly what
`email_validator` answers, for addresses it takes and for near misses it must leave alone."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from c360_platform.validation import _PLAIN_EMAIL, Violations, plain_email


def slow(value: str) -> str | None:
    """`Violations.email`'s answer through `email_validator` alone (None: refused)."""
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError:
        return None
    local, _, domain = result.normalized.rpartition("@")
    return f"{local.lower()}@{domain.lower()}"


@settings(max_examples=500)
@given(st.from_regex(_PLAIN_EMAIL, fullmatch=True))
@example("Ada.Lovelace@Example.COM")
@example("a@b.localhost")
@example("a@xn--bcher-kva.example")
@example("a@ab--cd.example")
@example("a@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + "." + "e" * 61)
@example("x" * 65 + "@example.com")
def test_taken_addresses_are_email_validators(address: str) -> None:
    fast = plain_email(address)
    if fast is not None:  # whatever it takes, email_validator takes the same way
        assert fast == slow(address)


# Near misses: the characters of addresses and the ones around them.
text = st.text(alphabet=st.sampled_from("aZ09.-_+@ é\u00a0\u200b\"'()[]:!~"), max_size=40)


@settings(max_examples=500)
@given(text)
@example("ada@example.com")
@example(" ada@example.com ")
@example("a..b@example.com")
@example(".a@example.com")
@example("a@-example.com")
@example("a@example.c0m")
@example("a@example")
@example("a@example.test")
def test_anything_else_is_left_to_email_validator(value: str) -> None:
    fast = plain_email(value)
    if fast is not None:
        assert fast == slow(value)
    v = Violations()
    assert v.email("email", value) == (slow(value) or value)
    assert bool(v.items) == (slow(value) is None)


@pytest.mark.parametrize(
    ("address", "taken"),
    [
        ("Ada.Lovelace@Example.COM", True),
        ("a+tag@mail.example.co", True),
        ("a@xn--bcher-kva.example", False),  # punycode: email_validator decodes it
        ("a@b.localhost", False),  # special use: refused by email_validator
        ("ädä@example.com", False),  # not ASCII
        ("a@example.c0m", False),  # a top-level domain of letters only
    ],
)
def test_what_the_fast_path_takes(address: str, taken: bool) -> None:
    assert (plain_email(address) is not None) == taken
