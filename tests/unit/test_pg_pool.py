"""An event store's pool sizes from C360_PG_POOL_MIN and C360_PG_POOL_MAX (config.pg_pool_from_env)
and what the library is told (pgstore.postgres_env)."""

from __future__ import annotations

import re

import pytest

from c360_platform.config import pg_pool_from_env
from c360_platform.pgstore import postgres_env

URL = "postgresql://c360@db:5432/c360"


@pytest.fixture(autouse=True)
def _no_pool_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("C360_PG_POOL_MIN", raising=False)
    monkeypatch.delenv("C360_PG_POOL_MAX", raising=False)


def test_idle_pools_keep_two_and_grow_to_twenty() -> None:
    assert pg_pool_from_env() == (2, 20)
    env = postgres_env(URL, "customer")
    assert (env["POSTGRES_POOL_SIZE"], env["POSTGRES_MAX_OVERFLOW"]) == ("2", "18")


def test_the_environment_sets_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C360_PG_POOL_MIN", "1")
    monkeypatch.setenv("C360_PG_POOL_MAX", "4")
    env = postgres_env(URL, "sales")
    assert (env["POSTGRES_POOL_SIZE"], env["POSTGRES_MAX_OVERFLOW"]) == ("1", "3")


def test_a_minimum_above_twenty_raises_the_default_maximum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C360_PG_POOL_MIN", "30")
    assert pg_pool_from_env() == (30, 30)


def test_an_explicit_size_is_kept_and_may_double() -> None:
    env = postgres_env(URL, "timeline", pool_size=1)
    assert (env["POSTGRES_POOL_SIZE"], env["POSTGRES_MAX_OVERFLOW"]) == ("1", "1")


@pytest.mark.parametrize(
    ("least", "most", "named"),
    [
        ("5", "4", "C360_PG_POOL_MAX: 4 is less than C360_PG_POOL_MIN (5)"),
        ("0", "", "C360_PG_POOL_MIN: must be at least 1, not 0"),
        ("", "many", "C360_PG_POOL_MAX: 'many' is not a number"),
    ],
)
def test_wrong_sizes_are_named(
    monkeypatch: pytest.MonkeyPatch, least: str, most: str, named: str
) -> None:
    monkeypatch.setenv("C360_PG_POOL_MIN", least)
    monkeypatch.setenv("C360_PG_POOL_MAX", most)
    with pytest.raises(ValueError, match="^" + re.escape(named)):
        pg_pool_from_env()
