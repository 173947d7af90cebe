"""The ``from``/``to`` bounds of history queries: dates or ISO times read in
CENTER_TIMEZONE, turned into a half-open range of ms since epoch (dates inclusive)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from console.domain.errors import BadRequest


def day_start(day: date, zone: ZoneInfo) -> int:
    """The first ms of ``day`` in ``zone`` (a 23- or 25-hour day ends where the next
    one's midnight is, whatever the length)."""
    return _ms(datetime.combine(day, time(0), tzinfo=zone))


def parse_bound(text: str, zone: ZoneInfo, *, end: bool, name: str) -> int:
    """``text`` as a bound: a date is its whole day (``end``: the first ms after it),
    a time is that instant (``end``: included, so the first ms after it). A time
    without an offset is read in ``zone``. Raises BadRequest naming ``name``."""
    try:
        day = _date(text)
        if day is not None:
            return day_start(day + timedelta(days=1) if end else day, zone)
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        return _ms(moment) + (1 if end else 0)
    except (ValueError, OverflowError):
        raise BadRequest(
            f"{name}: expected a date (2026-03-08) or an ISO time (2026-03-08T09:30), "
            f"got {text[:40]!r}"
        ) from None


def parse_range(
    start: str | None, stop: str | None, zone: ZoneInfo
) -> tuple[int | None, int | None]:
    """``from`` and ``to`` as ``[first ms, first ms after)``; None where not given."""
    first = None if start is None else parse_bound(start, zone, end=False, name="from")
    after = None if stop is None else parse_bound(stop, zone, end=True, name="to")
    if first is not None and after is not None and first >= after:
        raise BadRequest("from: must not be after to")
    return first, after


def _date(text: str) -> date | None:
    """``text`` as a date (2026-03-08, 20260308, 2026-W10-7), or None if it is not one."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _ms(moment: datetime) -> int:
    """ms since epoch, exactly (no float rounding of the microseconds)."""
    delta = moment - datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))
    return delta // timedelta(milliseconds=1)
