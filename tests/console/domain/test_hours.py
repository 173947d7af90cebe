"""console.domain.hours: open or closed at an instant, holidays, daylight-saving days."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from console.config import DAY_NAMES, BusinessHours
from console.domain.hours import describe, is_open

UTC = datetime.UTC
NEW_YORK = ZoneInfo("America/New_York")
NO_HOLIDAYS: frozenset[datetime.date] = frozenset()
WEEKDAYS = BusinessHours.parse("Mon-Fri 09:00-17:30; Sat 10:00-14:00")


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """Epoch milliseconds of a UTC wall-clock time."""
    moment = datetime.datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def open_minutes(hours: BusinessHours, zone: ZoneInfo, start: int, end: int) -> int:
    """How many minutes from ``start`` to ``end`` (epoch ms) the center is open."""
    return sum(is_open(hours, NO_HOLIDAYS, zone, t) for t in range(start, end, 60_000))


def test_no_hours_is_always_open_and_a_holiday_still_closes() -> None:
    assert is_open(None, NO_HOLIDAYS, NEW_YORK, ms(2026, 12, 25, 12))
    assert not is_open(
        None, frozenset({datetime.date(2026, 12, 25)}), NEW_YORK, ms(2026, 12, 25, 12)
    )


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        # Friday 2026-12-04 in New York (EST, UTC-5): 09:00-17:30 is 14:00Z-22:30Z.
        (ms(2026, 12, 4, 13, 59, 59), False),
        (ms(2026, 12, 4, 14, 0), True),
        (ms(2026, 12, 4, 22, 29, 59), True),
        (ms(2026, 12, 4, 22, 30), False),
        # Saturday 10:00-14:00 is 15:00Z-19:00Z; Sunday is closed all day.
        (ms(2026, 12, 5, 14, 59), False),
        (ms(2026, 12, 5, 15, 0), True),
        (ms(2026, 12, 5, 18, 59, 59), True),
        (ms(2026, 12, 5, 19, 0), False),
        (ms(2026, 12, 6, 17, 0), False),
        # Monday 09:00 local is 14:00Z; 04:00Z Tuesday is still Monday 23:00 local.
        (ms(2026, 12, 7, 14, 0), True),
        (ms(2026, 12, 8, 4, 0), False),
    ],
)
def test_open_and_closed_at_the_boundaries(moment: int, expected: bool) -> None:
    assert is_open(WEEKDAYS, NO_HOLIDAYS, NEW_YORK, moment) is expected


def test_a_holiday_is_a_local_date_of_the_center() -> None:
    every_day = BusinessHours.parse("Mon-Sun 00:00-24:00")
    christmas = frozenset({datetime.date(2026, 12, 25)})
    # Midnight in New York on 25 and 26 December (EST) is 05:00Z.
    assert is_open(every_day, christmas, NEW_YORK, ms(2026, 12, 25, 4, 59, 59))
    assert not is_open(every_day, christmas, NEW_YORK, ms(2026, 12, 25, 5, 0))
    assert not is_open(every_day, christmas, NEW_YORK, ms(2026, 12, 26, 4, 59, 59))
    assert is_open(every_day, christmas, NEW_YORK, ms(2026, 12, 26, 5, 0))
    # The same date in UTC closes from 00:00Z.
    utc = ZoneInfo("UTC")
    assert not is_open(every_day, christmas, utc, ms(2026, 12, 25, 0, 0))
    assert is_open(every_day, christmas, utc, ms(2026, 12, 26, 0, 0))


def test_the_spring_forward_day_covers_the_hours_that_exist() -> None:
    # Sunday 2027-03-14 in New York: 02:00 EST (07:00Z) becomes 03:00 EDT.
    early = BusinessHours.parse("Sun 01:00-03:00")
    assert not is_open(early, NO_HOLIDAYS, NEW_YORK, ms(2027, 3, 14, 5, 59))  # 00:59 EST
    assert is_open(early, NO_HOLIDAYS, NEW_YORK, ms(2027, 3, 14, 6, 0))  # 01:00 EST
    assert is_open(early, NO_HOLIDAYS, NEW_YORK, ms(2027, 3, 14, 6, 59))  # 01:59 EST
    assert not is_open(early, NO_HOLIDAYS, NEW_YORK, ms(2027, 3, 14, 7, 0))  # 03:00 EDT
    day_start, next_day_start = ms(2027, 3, 14, 5), ms(2027, 3, 15, 4)
    assert open_minutes(early, NEW_YORK, day_start, next_day_start) == 60
    all_day = BusinessHours.parse("Sun 00:00-24:00")
    assert (
        open_minutes(all_day, NEW_YORK, day_start - 60 * 60_000, next_day_start + 60 * 60_000)
        == 23 * 60
    )


def test_the_fall_back_day_opens_a_repeated_hour_both_times() -> None:
    # Sunday 2026-11-01 in New York: 02:00 EDT (06:00Z) becomes 01:00 EST again.
    repeated = BusinessHours.parse("Sun 01:00-02:00")
    assert not is_open(repeated, NO_HOLIDAYS, NEW_YORK, ms(2026, 11, 1, 4, 59))  # 00:59 EDT
    assert is_open(repeated, NO_HOLIDAYS, NEW_YORK, ms(2026, 11, 1, 5, 0))  # 01:00 EDT
    assert is_open(repeated, NO_HOLIDAYS, NEW_YORK, ms(2026, 11, 1, 6, 0))  # 01:00 EST
    assert is_open(repeated, NO_HOLIDAYS, NEW_YORK, ms(2026, 11, 1, 6, 59))  # 01:59 EST
    assert not is_open(repeated, NO_HOLIDAYS, NEW_YORK, ms(2026, 11, 1, 7, 0))  # 02:00 EST
    day_start, next_day_start = ms(2026, 11, 1, 4), ms(2026, 11, 2, 5)
    assert open_minutes(repeated, NEW_YORK, day_start, next_day_start) == 120
    all_day = BusinessHours.parse("Sun 00:00-24:00")
    assert (
        open_minutes(all_day, NEW_YORK, day_start - 60 * 60_000, next_day_start + 60 * 60_000)
        == 25 * 60
    )


def test_a_range_may_wrap_the_week_and_24_00_ends_the_day() -> None:
    weekend = BusinessHours.parse("sat-MON 18:00-24:00")
    utc = ZoneInfo("UTC")
    # 2026-12-05 is a Saturday.
    assert is_open(weekend, NO_HOLIDAYS, utc, ms(2026, 12, 5, 23, 59, 59))  # Sat
    assert is_open(weekend, NO_HOLIDAYS, utc, ms(2026, 12, 7, 18, 0))  # Mon
    assert not is_open(weekend, NO_HOLIDAYS, utc, ms(2026, 12, 8, 0, 0))  # Tue 00:00
    assert not is_open(weekend, NO_HOLIDAYS, utc, ms(2026, 12, 8, 18, 0))  # Tue
    assert not is_open(weekend, NO_HOLIDAYS, utc, ms(2026, 12, 4, 18, 0))  # Fri


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mon-Fri 09:00-17:30; Sat 10:00-14:00", "Mon-Fri 09:00-17:30, Sat 10:00-14:00"),
        ("Mon,Wed 09:00-12:00", "Mon,Wed 09:00-12:00"),
        ("sat-mon 9:00-24:00", "Sat-Mon 09:00-24:00"),
        ("Mon-Tue 08:00-12:00", "Mon,Tue 08:00-12:00"),
    ],
)
def test_describe_is_short_text_for_the_console(text: str, expected: str) -> None:
    assert describe(BusinessHours.parse(text)) == expected


def test_describe_no_hours() -> None:
    assert describe(None) == "Always open"


ZONES = ["UTC", "America/New_York", "Europe/Paris", "Australia/Lord_Howe", "Asia/Kolkata"]
day_items = st.one_of(
    st.integers(0, 6).map(lambda day: (day, day)),
    st.tuples(st.integers(0, 6), st.integers(0, 6)),
)


@st.composite
def clauses(draw: st.DrawFn) -> tuple[list[tuple[int, int]], int, int]:
    items = draw(st.lists(day_items, min_size=1, max_size=3))
    start = draw(st.integers(0, 24 * 60 - 1))
    end = draw(st.integers(start + 1, 24 * 60))
    return items, start, end


def render(items: list[tuple[int, int]], start: int, end: int) -> str:
    days = ",".join(
        DAY_NAMES[first] if first == last else f"{DAY_NAMES[first]}-{DAY_NAMES[last]}"
        for first, last in items
    )
    return f"{days} {start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


def naive_open_minutes(spec: list[tuple[list[tuple[int, int]], int, int]]) -> set[tuple[int, int]]:
    """Every (weekday, minute of the day) that is open, one by one."""
    open_at: set[tuple[int, int]] = set()
    for items, start, end in spec:
        for first, last in items:
            day = first
            while True:
                open_at.update((day, minute) for minute in range(start, end))
                if day == last:
                    break
                day = (day + 1) % 7
    return open_at


@settings(max_examples=300, deadline=None)
@given(
    spec=st.lists(clauses(), min_size=1, max_size=3),
    zone_name=st.sampled_from(ZONES),
    day=st.dates(datetime.date(2026, 1, 1), datetime.date(2028, 12, 31)),
    near_edge=st.booleans(),
    holiday_offsets=st.lists(st.integers(-1, 1), max_size=2),
    data=st.data(),
)
def test_is_open_agrees_with_a_naive_local_time_check(
    spec: list[tuple[list[tuple[int, int]], int, int]],
    zone_name: str,
    day: datetime.date,
    near_edge: bool,
    holiday_offsets: list[int],
    data: st.DataObject,
) -> None:
    zone = ZoneInfo(zone_name)
    hours = BusinessHours.parse("; ".join(render(*clause) for clause in spec))
    # A local minute, often just at or before a clause's edge, then any second in it.
    edges = sorted(
        {edge + step for _, start, end in spec for edge in (start, end) for step in (-1, 0)}
    )
    minute = data.draw(st.sampled_from(edges) if near_edge else st.integers(0, 24 * 60 - 1))
    wall = datetime.datetime.combine(day, datetime.time()) + datetime.timedelta(
        minutes=minute, seconds=data.draw(st.integers(0, 59))
    )
    moment = int(wall.replace(tzinfo=zone, fold=data.draw(st.integers(0, 1))).timestamp()) * 1000
    local = datetime.datetime.fromtimestamp(moment // 1000, UTC).astimezone(zone)
    holidays = frozenset(local.date() + datetime.timedelta(days=n) for n in holiday_offsets)
    expected = 0 not in holiday_offsets and (
        local.weekday(),
        local.hour * 60 + local.minute,
    ) in naive_open_minutes(spec)
    assert is_open(hours, holidays, zone, moment) is expected
