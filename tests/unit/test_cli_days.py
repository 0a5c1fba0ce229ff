"""Days on the command line: YYYY-MM-DD as it is, or counted from today (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from c360_cli.argtypes import day


def test_days_are_written_as_dates_or_from_today() -> None:
    today = datetime.now(UTC).date()
    assert day("2027-03-31") == "2027-03-31"
    assert day("today") == today.isoformat()
    assert day("Tomorrow") == (today + timedelta(days=1)).isoformat()
    assert day("yesterday") == (today - timedelta(days=1)).isoformat()
    assert day("+120") == (today + timedelta(days=120)).isoformat()
    assert day("+30d") == (today + timedelta(days=30)).isoformat()
    assert day("-7") == (today - timedelta(days=7)).isoformat()
    # Not a day from today: the service judges it (and names the field).
    assert day("31.03.2027") == "31.03.2027"
    assert day("+1w") == "+1w"
