"""Reports over the history (SPEC §8, docs/history.md, reports): per hour, day or agent
of a range of days in CENTER_TIMEZONE, what was offered, answered, abandoned, the
service level, waits, handle times and transfers; per agent also calls handled,
missed rings, occupancy and time on break.

Every time is the app's clock (the events' ``ts``, as the writer stored it). A call
belongs to the bucket it arrived in, a transfer to the one it was requested in;
agent activity is cut at the range's edges (and at now). Buckets are computed here
with zoneinfo: a day runs from one local midnight to the next (23 or 25 hours across
a daylight-saving change), and hours are local hours labelled with their UTC offset,
so the repeated hour of a change is two buckets.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from console.domain.errors import BadRequest
from console.history.dates import day_start

BY = ("hour", "day", "agent")
MAX_DAYS = 400
P90 = 0.9
HOUR_MS = 3_600_000
DAY_MS = 86_400_000  # a UTC day, as agent_days keeps them
QUARTER_MS = 900_000  # every zone's offset is a whole number of quarter hours
COLUMNS = (
    "bucket",
    "offered",
    "answered",
    "abandoned",
    "voicemails",
    "callbacks",
    "service_level",
    "wait_mean_ms",
    "wait_p90_ms",
    "handle_mean_ms",
    "transfers_succeeded",
    "transfers_failed",
)
AGENT_COLUMNS = (*COLUMNS, "handled", "missed", "occupancy", "break_ms")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

# Which calls count as what (SPEC §8 definitions); wait_ms of an abandoned call may
# be missing, its wait then runs to its end.
_OFFERED = "c.kind = 'inbound' AND c.offered"
_ANSWERED = f"{_OFFERED} AND c.answered_at IS NOT NULL"
_ABANDONED = f"{_OFFERED} AND c.answered_at IS NULL AND c.outcome = 'abandoned'"
_CALL_FIGURES = f"""
  count(*) FILTER (WHERE {_OFFERED}) AS offered,
  count(*) FILTER (WHERE {_ANSWERED}) AS answered,
  count(*) FILTER (WHERE {_ABANDONED}) AS abandoned,
  count(*) FILTER (WHERE c.outcome = 'voicemail') AS voicemails,
  count(*) FILTER (WHERE c.outcome = 'callback-requested') AS callbacks,
  count(*) FILTER (WHERE {_ANSWERED} AND c.wait_ms <= %(threshold)s) AS answered_within,
  count(*) FILTER (WHERE {_ABANDONED}
                   AND COALESCE(c.wait_ms, c.ended_at - c.arrived_at) > %(threshold)s)
    AS abandoned_after,
  avg(c.wait_ms) FILTER (WHERE {_ANSWERED}) AS wait_mean,
  percentile_disc({P90}) WITHIN GROUP (ORDER BY c.wait_ms) FILTER (WHERE {_ANSWERED})
    AS wait_p90,
  avg(c.talk_ms + c.hold_ms + c.wrap_up_ms) FILTER (WHERE {_ANSWERED}) AS handle_mean
"""

# One aggregate per bucket, each an index range scan of its calls (the definition;
# used as is when a bucket's edges are not on quarter hours, else _TOTALS_BY_BUCKET).
_CALLS_BY_BUCKET = f"""
SELECT b.i AS bucket, f.*
FROM unnest(%(starts)s::bigint[], %(ends)s::bigint[]) WITH ORDINALITY AS b(lo, hi, i)
CROSS JOIN LATERAL (
  SELECT {_CALL_FIGURES} FROM calls c WHERE c.arrived_at >= b.lo AND c.arrived_at < b.hi
) f
"""

# By agent (the definition; used as is when the range's ends are not on quarter
# hours, else _TOTALS_BY_AGENT, _WAITS_BY_AGENT and _ABANDONED_BY_AGENT).
_CALLS_BY_AGENT = f"""
SELECT c.answered_by AS bucket, {_CALL_FIGURES}
FROM calls c
WHERE c.arrived_at >= %(lo)s AND c.arrived_at < %(hi)s AND c.answered_by IS NOT NULL
GROUP BY c.answered_by
"""

# From the totals kept per quarter hour (migration 0003), what adds up; from the
# calls, through narrow indexes, what depends on the threshold or is a percentile.
_ANSWERED_WAITS = f"""
  SELECT count(*) FILTER (WHERE c.wait_ms <= %(threshold)s) AS answered_within,
         percentile_disc({P90}) WITHIN GROUP (ORDER BY c.wait_ms) AS wait_p90
  FROM calls c WHERE {_ANSWERED}
"""
_ABANDONED_AFTER = f"""
  SELECT count(*) FILTER (WHERE COALESCE(c.wait_ms, c.ended_at - c.arrived_at) > %(threshold)s)
    AS abandoned_after
  FROM calls c WHERE {_ABANDONED}
"""
_SUMS = """
  sum(t.calls)::bigint AS calls, sum(t.offered)::bigint AS offered,
  sum(t.answered)::bigint AS answered, sum(t.abandoned)::bigint AS abandoned,
  sum(t.voicemails)::bigint AS voicemails, sum(t.callbacks)::bigint AS callbacks,
  sum(t.wait_sum)::bigint AS wait_sum, sum(t.wait_n)::bigint AS wait_n,
  sum(t.handle_sum)::bigint AS handle_sum
"""
_TOTALS_BY_BUCKET = f"""
SELECT b.i AS bucket, t.*, w.*, a.*
FROM unnest(%(starts)s::bigint[], %(ends)s::bigint[]) WITH ORDINALITY AS b(lo, hi, i)
CROSS JOIN LATERAL (
  SELECT {_SUMS} FROM call_quarters t
  WHERE t.agent = '*' AND t.quarter >= b.lo AND t.quarter < b.hi
) t
CROSS JOIN LATERAL ({_ANSWERED_WAITS} AND c.arrived_at >= b.lo AND c.arrived_at < b.hi) w
CROSS JOIN LATERAL ({_ABANDONED_AFTER} AND c.arrived_at >= b.lo AND c.arrived_at < b.hi) a
"""
_TOTALS_BY_AGENT = f"""
SELECT t.agent AS bucket, {_SUMS}
FROM (
  SELECT * FROM call_days WHERE day >= %(d0)s AND day < %(d1)s
  UNION ALL
  SELECT * FROM call_quarters
  WHERE quarter >= %(q0)s AND quarter < %(d0)s OR quarter >= %(d1)s AND quarter < %(q1)s
) t
WHERE t.agent NOT IN ('*', '')
GROUP BY t.agent
"""
# Each agent's answered waits (migration 0005): the sorted waits kept per UTC day
# over [d0, d1), those of the calls over the quarter hours at the ends. The nearest-
# rank 90th percentile (rank r of n, as percentile_disc) lies between the smallest
# and the largest of the parts' own 90th percentiles, [lo, hi]: only the waits in
# it are merged and sorted, the rank taken less the ``below`` lo (binary searches,
# width_bucket, as for the count within the threshold). Should the bounds not hold
# the rank (``banded``), every wait is merged.
_WAITS_BY_AGENT = f"""
WITH RECURSIVE names(name) AS (
  SELECT min(c.answered_by) FROM calls c WHERE {_ANSWERED} AND c.answered_by IS NOT NULL
  UNION ALL
  SELECT (SELECT min(c.answered_by) FROM calls c
          WHERE {_ANSWERED} AND c.answered_by > names.name)
  FROM names WHERE names.name IS NOT NULL
), parts AS (
  SELECT agent, waits FROM call_wait_days
  WHERE day >= %(d0)s AND day < %(d1)s AND cardinality(waits) > 0
  UNION ALL
  SELECT n.name, e.waits
  FROM names n CROSS JOIN LATERAL (
    SELECT array_agg(w ORDER BY w) AS waits FROM (
      SELECT c.wait_ms FROM calls c
      WHERE {_ANSWERED} AND c.answered_by = n.name
        AND c.arrived_at >= %(q0)s AND c.arrived_at < %(d0)s
      UNION ALL
      SELECT c.wait_ms FROM calls c
      WHERE {_ANSWERED} AND c.answered_by = n.name
        AND c.arrived_at >= %(d1)s AND c.arrived_at < %(q1)s
    ) AS e(w) WHERE w IS NOT NULL
  ) e
  WHERE n.name IS NOT NULL AND e.waits IS NOT NULL
), agents AS (
  SELECT agent, ceil({P90}::float8 * sum(cardinality(waits)))::bigint AS r,
         min(waits[ceil({P90}::float8 * cardinality(waits))::int]) AS lo,
         max(waits[ceil({P90}::float8 * cardinality(waits))::int]) AS hi,
         sum(width_bucket(%(threshold)s::bigint, waits))::bigint AS answered_within
  FROM parts GROUP BY agent
), counted AS (
  SELECT a.agent, a.r, a.lo, a.hi, a.answered_within,
         sum(width_bucket(a.lo - 1, p.waits)) AS below, sum(width_bucket(a.hi, p.waits)) AS upto
  FROM agents a JOIN parts p ON p.agent = a.agent
  GROUP BY a.agent, a.r, a.lo, a.hi, a.answered_within
), banded AS (
  SELECT agent, r, answered_within,
         CASE WHEN ok THEN lo ELSE -9223372036854775807 END AS lo,
         CASE WHEN ok THEN hi ELSE 9223372036854775807 END AS hi,
         CASE WHEN ok THEN below ELSE 0 END AS below
  FROM counted CROSS JOIN LATERAL (SELECT below < r AND r <= upto AS ok) k
)
SELECT b.agent AS bucket, b.answered_within,
       (array_agg(v ORDER BY v))[b.r - b.below] AS wait_p90
FROM banded b JOIN parts p ON p.agent = b.agent
CROSS JOIN LATERAL unnest(p.waits[width_bucket(b.lo - 1, p.waits) + 1
                                  : width_bucket(b.hi, p.waits)]) AS v
GROUP BY b.agent, b.answered_within, b.r, b.below
"""
_ABANDONED_BY_AGENT = f"""
SELECT c.answered_by AS bucket,
       count(*) FILTER (WHERE COALESCE(c.wait_ms, c.ended_at - c.arrived_at) > %(threshold)s)
         AS abandoned_after
FROM calls c
WHERE {_ABANDONED} AND c.arrived_at >= %(lo)s AND c.arrived_at < %(hi)s
  AND c.answered_by IS NOT NULL
GROUP BY c.answered_by
"""

_TRANSFER_FIGURES = """
  count(*) FILTER (WHERE t.status = 'completed') AS transfers_succeeded,
  count(*) FILTER (WHERE t.status = 'failed') AS transfers_failed
"""
_TRANSFERS_BY_BUCKET = f"""
SELECT width_bucket(t.requested_at, %(starts)s::bigint[]) AS bucket, {_TRANSFER_FIGURES}
FROM call_transfers t WHERE t.requested_at >= %(lo)s AND t.requested_at < %(hi)s
GROUP BY 1
"""
_TRANSFERS_BY_AGENT = f"""
SELECT t.data->>'from_agent' AS bucket, {_TRANSFER_FIGURES}
FROM call_transfers t
WHERE t.requested_at >= %(lo)s AND t.requested_at < %(hi)s AND t.data->>'from_agent' IS NOT NULL
GROUP BY 1
"""

# Calls an agent joined as an agent in the range: answered, or taken over by transfer;
# per agent (a skip scan of call_legs_handled), each an index-only range scan (the
# definition; used as is when the range's ends are not on quarter hours).
_HANDLED = """
WITH RECURSIVE names(name) AS (
  SELECT min(agent) FROM call_legs WHERE role = 'agent'
  UNION ALL
  SELECT (SELECT min(l.agent) FROM call_legs l WHERE l.role = 'agent' AND l.agent > names.name)
  FROM names WHERE names.name IS NOT NULL
)
SELECT n.name AS bucket, h.handled
FROM names n CROSS JOIN LATERAL (
  SELECT count(DISTINCT l.call_id) AS handled FROM call_legs l
  WHERE l.agent = n.name AND l.role = 'agent' AND l.joined_at >= %(lo)s AND l.joined_at < %(hi)s
) h
WHERE n.name IS NOT NULL AND h.handled > 0
"""

# The same from the pairs kept per (call, agent) (migration 0005): the pairs with a
# leg in each UTC day of [d0, d1) and each quarter hour of the ends, less what
# counts a pair more than once (one whose legs fall in several of those).
_HANDLED_TOTALS = """
SELECT agent AS bucket, sum(pairs)::bigint AS handled
FROM (
  SELECT agent, pairs FROM handled_days WHERE day >= %(d0)s AND day < %(d1)s
  UNION ALL
  SELECT agent, pairs FROM handled_quarters
  WHERE quarter >= %(q0)s AND quarter < %(d0)s OR quarter >= %(d1)s AND quarter < %(q1)s
  UNION ALL
  SELECT agent, 1 - count(DISTINCT CASE WHEN quarter >= %(d0)s AND quarter < %(d1)s
                                        THEN quarter - mod(quarter, 86400000) ELSE quarter END)
  FROM handled_spread WHERE quarter >= %(q0)s AND quarter < %(q1)s
  GROUP BY call_id, agent
) parts
GROUP BY agent HAVING sum(pairs) > 0
"""

# Agents' activity from the intervals kept as events are stored (migration 0003): the totals
# of whole UTC days and quarter hours inside the range, then, from the intervals
# themselves, the closed ones over the unaligned ends (``windows``), the missed
# rings that started there, and each agent's open interval up to ``until``.
_ACTIVITY = """
SELECT agent AS bucket, sum(signed_in_ms)::bigint AS signed_in_ms,
       sum(break_ms)::bigint AS break_ms, sum(occupied_ms)::bigint AS occupied_ms,
       sum(missed)::bigint AS missed
FROM (
  SELECT agent, signed_in_ms, break_ms, occupied_ms, missed FROM agent_quarters
  WHERE quarter >= %(q0)s AND quarter < %(d0)s OR quarter >= %(d1)s AND quarter < %(q1)s
  UNION ALL
  SELECT agent, signed_in_ms, break_ms, occupied_ms, missed FROM agent_days
  WHERE day >= %(d0)s AND day < %(d1)s
  UNION ALL
  SELECT i.agent, x.o, CASE WHEN i.status = 'break' THEN x.o ELSE 0 END,
         CASE WHEN i.status IN ('busy', 'wrap-up') THEN x.o ELSE 0 END, 0
  FROM unnest(%(w0)s::bigint[], %(w1)s::bigint[]) AS w(lo, hi)
  JOIN agent_intervals i ON i.ended_at > w.lo AND i.started_at < w.hi AND i.status <> 'offline'
  CROSS JOIN LATERAL (SELECT LEAST(i.ended_at, w.hi) - GREATEST(i.started_at, w.lo) AS o) x
  UNION ALL
  SELECT i.agent, 0, 0, 0, 1
  FROM unnest(%(w0)s::bigint[], %(w1)s::bigint[]) AS w(lo, hi)
  JOIN agent_intervals i ON i.status = 'missed' AND i.started_at >= w.lo AND i.started_at < w.hi
  WHERE i.before IS DISTINCT FROM 'missed'
  UNION ALL
  SELECT i.agent, x.o, CASE WHEN i.status = 'break' THEN x.o ELSE 0 END,
         CASE WHEN i.status IN ('busy', 'wrap-up') THEN x.o ELSE 0 END, 0
  FROM agent_intervals i
  CROSS JOIN LATERAL (SELECT GREATEST(%(until)s - GREATEST(i.started_at, %(lo)s), 0) AS o) x
  WHERE i.ended_at IS NULL AND i.status <> 'offline'
) parts
GROUP BY agent
"""


def activity_spans(lo: int, until: int) -> dict[str, Any]:
    """How ``[lo, until)`` is summed: quarter-hour totals over ``[q0, d0)`` and
    ``[d1, q1)``, day totals over ``[d0, d1)``, the intervals themselves over the
    ``windows`` (``w0``, ``w1``) before ``q0`` and after ``q1``."""
    q0 = -(-lo // QUARTER_MS) * QUARTER_MS
    q1 = until - until % QUARTER_MS
    if q1 <= q0:
        return {"q0": 0, "q1": 0, "d0": 0, "d1": 0, "w0": [lo], "w1": [until]}
    d0 = -(-q0 // DAY_MS) * DAY_MS
    d1 = q1 - q1 % DAY_MS
    if d1 <= d0:
        d0 = d1 = q1
    windows = [(a, b) for a, b in ((lo, q0), (q1, until)) if a < b]
    return {
        "q0": q0,
        "q1": q1,
        "d0": d0,
        "d1": d1,
        "w0": [a for a, _ in windows],
        "w1": [b for _, b in windows],
    }


@dataclass(frozen=True)
class ReportRange:
    """What a report covers: the days ``first``..``last`` (inclusive) in ``zone``,
    bucketed ``by`` hour, day or agent."""

    first: date
    last: date
    by: str
    zone: ZoneInfo

    @property
    def start(self) -> int:
        return day_start(self.first, self.zone)

    @property
    def end(self) -> int:
        """The first ms after the last day."""
        return day_start(self.last + timedelta(days=1), self.zone)


def parse_range(
    start: str | None, stop: str | None, by: str | None, zone: ZoneInfo, today: date
) -> ReportRange:
    """The query's ``from``, ``to`` (dates, inclusive; today when absent) and ``by``
    (``day`` when absent), or BadRequest saying what is wrong."""
    chosen = "day" if by is None else by
    if chosen not in BY:
        raise BadRequest(f"by: expected one of {', '.join(BY)}, got {chosen[:20]!r}")
    first = today if start is None else _date(start, "from")
    last = today if stop is None else _date(stop, "to")
    if last < first:
        raise BadRequest("to: must not be before from")
    if (last - first).days + 1 > MAX_DAYS:
        raise BadRequest(f"from, to: at most {MAX_DAYS} days at a time")
    return ReportRange(first, last, chosen, zone)


def _date(text: str, name: str) -> date:
    try:
        if not _DATE.fullmatch(text):
            raise ValueError
        day = date.fromisoformat(text)
        if not 1970 <= day.year <= 9998:
            raise ValueError
        return day
    except ValueError:
        raise BadRequest(f"{name}: expected a date such as 2026-03-08, got {text[:40]!r}") from None


def buckets(chosen: ReportRange) -> list[tuple[str, int, int]]:
    """(label, first ms, first ms after) of each hour or day of the range, in order."""
    if chosen.by == "day":
        days = [
            chosen.first + timedelta(days=n) for n in range((chosen.last - chosen.first).days + 1)
        ]
        starts = [day_start(day, chosen.zone) for day in days]
        labels = [day.isoformat() for day in days]
    else:
        starts = list(hour_starts(chosen.start, chosen.end, chosen.zone))
        labels = [_local(ms, chosen.zone).isoformat() for ms in starts]
    ends = [*starts[1:], chosen.end]
    return list(zip(labels, starts, ends, strict=True))


def hour_starts(start: int, end: int, zone: ZoneInfo) -> Iterator[int]:
    """The ms of every local hour's start in ``[start, end)``, ``start`` being one: an
    hour later, unless the offset changed by part of an hour, then the first quarter
    hour on a whole local hour."""
    at = start
    while at < end:
        yield at
        here, there = _local(at, zone), _local(at + HOUR_MS, zone)
        if here.utcoffset() == there.utcoffset() or there.minute == 0:
            at += HOUR_MS
            continue
        at += next(
            q
            for q in range(QUARTER_MS, 2 * HOUR_MS + 1, QUARTER_MS)
            if _local(at + q, zone).minute == 0
        )


def _local(ms: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, zone)


async def report(
    pool: AsyncConnectionPool, chosen: ReportRange, threshold_ms: int, now: int
) -> dict[str, Any]:
    """The report's answer: ``{"from", "to", "by", "rows"}`` (SPEC §8 shapes)."""
    if chosen.by == "agent":
        rows = await _by_agent(pool, chosen, threshold_ms, now)
    else:
        async with _session(pool) as conn:
            rows = await _by_time(conn, chosen, threshold_ms)
    return {
        "from": chosen.first.isoformat(),
        "to": chosen.last.isoformat(),
        "by": chosen.by,
        "rows": rows,
    }


@asynccontextmanager
async def _session(pool: AsyncConnectionPool) -> AsyncIterator[AsyncConnection[Any]]:
    """A connection in a transaction set for reports: a month of waits is sorted in
    memory, not on disk, and compiling (jit) costs more than it saves on these."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET LOCAL work_mem = '64MB'")
        await conn.execute("SET LOCAL jit = off")
        yield conn


async def _by_time(
    conn: AsyncConnection[Any], chosen: ReportRange, threshold_ms: int
) -> list[dict[str, Any]]:
    spans = buckets(chosen)
    params = {
        "starts": [lo for _, lo, _ in spans],
        "ends": [hi for _, _, hi in spans],
        "lo": chosen.start,
        "hi": chosen.end,
        "threshold": threshold_ms,
    }
    if all(ms % QUARTER_MS == 0 for ms in (*params["starts"], chosen.end)):
        calls = _keyed(_from_totals(await _fetch(conn, _TOTALS_BY_BUCKET, params)))
    else:
        calls = _keyed(await _fetch(conn, _CALLS_BY_BUCKET, params))
    transfers = {row["bucket"]: row for row in await _fetch(conn, _TRANSFERS_BY_BUCKET, params)}
    return [
        {
            "bucket": label,
            **_call_figures(calls.get(n)),
            **_transfer_figures(transfers.get(n)),
        }
        for n, (label, _, _) in enumerate(spans, start=1)
    ]


async def _by_agent(
    pool: AsyncConnectionPool, chosen: ReportRange, threshold_ms: int, now: int
) -> list[dict[str, Any]]:
    """Its queries in two halves of about the same cost, on two connections at once
    (each statement reads its own snapshot either way)."""
    until = max(chosen.start, min(chosen.end, now))
    params = {
        "lo": chosen.start,
        "hi": chosen.end,
        "until": until,
        "threshold": threshold_ms,
        **activity_spans(chosen.start, until),
    }
    (calls, transfers), (handled, activity) = await asyncio.gather(
        _agents_calls(pool, chosen, params), _agents_work(pool, chosen, params)
    )
    names = sorted(set(calls) | set(transfers) | set(handled) | set(activity))
    return [
        {
            "bucket": name,
            **_call_figures(calls.get(name)),
            **_transfer_figures(transfers.get(name)),
            "handled": handled[name]["handled"] if name in handled else 0,
            **_activity_figures(activity.get(name)),
        }
        for name in names
    ]


Keyed = dict[Any, dict[str, Any]]


async def _agents_calls(
    pool: AsyncConnectionPool, chosen: ReportRange, params: dict[str, Any]
) -> tuple[Keyed, Keyed]:
    """Each agent's call figures and transfers."""
    async with _session(pool) as conn:
        if _on_quarters(chosen):
            spans = activity_spans(chosen.start, chosen.end)
            totals = await _fetch(conn, _TOTALS_BY_AGENT, {**params, **spans})
            waits = _keyed(await _fetch(conn, _WAITS_BY_AGENT, {**params, **spans}))
            abandoned = _keyed(await _fetch(conn, _ABANDONED_BY_AGENT, params))
            joined = [
                {**row, **waits.get(row["bucket"], {}), **abandoned.get(row["bucket"], {})}
                for row in totals
                if row["calls"]
            ]
            calls = _keyed(_from_totals(joined))
        else:
            calls = _keyed(await _fetch(conn, _CALLS_BY_AGENT, params))
        return calls, _keyed(await _fetch(conn, _TRANSFERS_BY_AGENT, params))


async def _agents_work(
    pool: AsyncConnectionPool, chosen: ReportRange, params: dict[str, Any]
) -> tuple[Keyed, Keyed]:
    """Each agent's calls handled and activity (signed in, on break, occupied, missed)."""
    async with _session(pool) as conn:
        if _on_quarters(chosen):
            spans = activity_spans(chosen.start, chosen.end)
            handled = _keyed(await _fetch(conn, _HANDLED_TOTALS, {**params, **spans}))
        else:
            handled = _keyed(await _fetch(conn, _HANDLED, params))
        activity = {
            name: row
            for name, row in _keyed(await _fetch(conn, _ACTIVITY, params)).items()
            if row["signed_in_ms"] or row["missed"]
        }
    return handled, activity


def _on_quarters(chosen: ReportRange) -> bool:
    """Whether the range's ends are on quarter hours, as the kept totals are."""
    return chosen.start % QUARTER_MS == 0 and chosen.end % QUARTER_MS == 0


async def _fetch(
    conn: AsyncConnection[Any], query: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


def _from_totals(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of summed totals as the aggregates of the calls would give them: a mean
    is the sum over the count (exact, rounded half to even as before)."""
    return [
        {
            **row,
            "offered": row["offered"] or 0,
            "answered": row["answered"] or 0,
            "abandoned": row["abandoned"] or 0,
            "voicemails": row["voicemails"] or 0,
            "callbacks": row["callbacks"] or 0,
            "answered_within": row.get("answered_within") or 0,
            "abandoned_after": row.get("abandoned_after") or 0,
            "wait_p90": row.get("wait_p90"),
            "wait_mean": Fraction(row["wait_sum"], row["wait_n"]) if row["wait_n"] else None,
            "handle_mean": (
                Fraction(row["handle_sum"], row["answered"]) if row["answered"] else None
            ),
        }
        for row in rows
    ]


def _keyed(rows: Iterable[dict[str, Any]]) -> Keyed:
    return {row["bucket"]: row for row in rows}


def _call_figures(row: dict[str, Any] | None) -> dict[str, Any]:
    row = row or {}
    answered = row.get("answered", 0)
    counted = answered + row.get("abandoned_after", 0)
    return {
        "offered": row.get("offered", 0),
        "answered": answered,
        "abandoned": row.get("abandoned", 0),
        "voicemails": row.get("voicemails", 0),
        "callbacks": row.get("callbacks", 0),
        # answered within the threshold ÷ (answered + abandoned after it)
        "service_level": _ratio(row.get("answered_within", 0), counted),
        "wait_mean_ms": _round(row.get("wait_mean")),
        "wait_p90_ms": row.get("wait_p90"),
        "handle_mean_ms": _round(row.get("handle_mean")),
    }


def _transfer_figures(row: dict[str, Any] | None) -> dict[str, int]:
    row = row or {}
    return {
        "transfers_succeeded": row.get("transfers_succeeded", 0),
        "transfers_failed": row.get("transfers_failed", 0),
    }


def _activity_figures(row: dict[str, Any] | None) -> dict[str, Any]:
    row = row or {}
    working = int(row.get("signed_in_ms", 0)) - int(row.get("break_ms", 0))
    return {
        "missed": row.get("missed", 0),
        # (talk + hold + wrap-up) ÷ (signed in - on break): busy and wrap-up intervals
        "occupancy": _ratio(int(row.get("occupied_ms", 0)), working),
        "break_ms": int(row.get("break_ms", 0)),
    }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole > 0 else None


def _round(value: Any) -> int | None:
    return None if value is None else round(value)


def csv_lines(answer: dict[str, Any]) -> Iterator[str]:
    """The report as CSV, a line at a time: a header of the row fields' names, then a
    row per bucket; null is an empty cell."""
    columns = AGENT_COLUMNS if answer["by"] == "agent" else COLUMNS
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for values in [columns, *([row[c] for c in columns] for row in answer["rows"])]:
        writer.writerow(["" if v is None else v for v in values])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
