"""``from``/``to`` of the history's queries (console/history/dates.py): dates are whole
days of CENTER_TIMEZONE, 23 or 25 hours long on DST days, times without an offset are
read there, and anything else is a 400 naming the parameter."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from console.domain.errors import BadRequest
from console.history.dates import parse_range

NEW_YORK = ZoneInfo("America/New_York")
HOUR = 3_600_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)


def test_dates_are_whole_days_of_the_center_including_dst_days():
    assert parse_range("2026-03-09", "2026-03-09", NEW_YORK) == (
        ms("2026-03-09T00:00-04:00"),
        ms("2026-03-10T00:00-04:00"),
    )
    spring = parse_range("2026-03-08", "2026-03-08", NEW_YORK)  # clocks go forward
    assert spring[0] == ms("2026-03-08T00:00-05:00")
    assert spring[1] - spring[0] == 23 * HOUR
    autumn = parse_range("2026-11-01", "2026-11-01", NEW_YORK)  # clocks go back
    assert autumn[1] - autumn[0] == 25 * HOUR
    week = parse_range("2026-03-02", "2026-03-08", NEW_YORK)
    assert week[1] - week[0] == 7 * 24 * HOUR - HOUR
    assert parse_range("2026-03-09", None, ZoneInfo("UTC")) == (ms("2026-03-09T00:00Z"), None)
    assert parse_range(None, None, NEW_YORK) == (None, None)


def test_times_are_instants_read_in_the_center_unless_they_say_otherwise():
    assert parse_range("2026-03-09T09:30", None, NEW_YORK) == (ms("2026-03-09T13:30Z"), None)
    assert parse_range("2026-03-09T09:30Z", None, NEW_YORK) == (ms("2026-03-09T09:30Z"), None)
    # ``to`` includes the instant it names
    first, after = parse_range("2026-03-09T09:30", "2026-03-09T10:00:00.250", NEW_YORK)
    assert after == ms("2026-03-09T14:00:00.250Z") + 1
    assert after - first == 30 * 60_000 + 251


@pytest.mark.parametrize(
    ("start", "stop", "named"),
    [
        ("yesterday", None, "from"),
        ("2026-02-30", None, "from"),
        (None, "2026-03-09T25:00", "to"),
        (None, "", "to"),
        (None, "9999-12-31", "to"),
        ("2026-03-10", "2026-03-09", "from"),
        ("2026-03-09T10:00", "2026-03-09T09:00", "from"),
    ],
)
def test_anything_else_is_refused_naming_the_parameter(start, stop, named):
    with pytest.raises(BadRequest) as refused:
        parse_range(start, stop, NEW_YORK)
    assert refused.value.message.startswith(f"{named}:")
