"""Business hours (SPEC §9): whether the center is open at an instant, and how to say when.

Hours are local wall-clock times of ``CENTER_TIMEZONE``: on the spring-forward day a
clause covers the local hours that exist, and on the fall-back day a repeated hour is
open (or closed) both times. A holiday is a local date, closed all day.
"""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

from console.config import DAY_NAMES, BusinessHours, HoursClause


def is_open(
    hours: BusinessHours | None,
    holidays: frozenset[datetime.date],
    zone: ZoneInfo,
    ms: int,
) -> bool:
    """True when ``ms`` (epoch milliseconds) falls in ``hours`` (None: always open) and
    its local date in ``zone`` is not one of ``holidays``."""
    local = datetime.datetime.fromtimestamp(ms // 1000, zone)
    if local.date() in holidays:
        return False
    if hours is None:
        return True
    day, minute = local.weekday(), local.hour * 60 + local.minute
    return any(
        day in clause.days and clause.start <= minute < clause.end for clause in hours.clauses
    )


def describe(hours: BusinessHours | None) -> str:
    """Short text for the supervisor console, e.g. ``Mon-Fri 09:00-17:30, Sat 10:00-14:00``."""
    if hours is None:
        return "Always open"
    return ", ".join(_describe_clause(clause) for clause in hours.clauses)


def _describe_clause(clause: HoursClause) -> str:
    return f"{_describe_days(clause.days)} {_clock(clause.start)}-{_clock(clause.end)}"


def _describe_days(days: tuple[int, ...]) -> str:
    """Runs of three or more following days (in the order written) as ``Mon-Fri``."""
    runs: list[list[int]] = []
    for day in days:
        if runs and day == (runs[-1][-1] + 1) % 7:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts: list[str] = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{DAY_NAMES[run[0]]}-{DAY_NAMES[run[-1]]}")
        else:
            parts.extend(DAY_NAMES[day] for day in run)
    return ",".join(parts)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
