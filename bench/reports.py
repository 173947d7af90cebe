"""``python -m bench.reports``: GET /api/reports over a month of generated history.

Fills a throwaway PostgreSQL (fsync off, migrated) with ``--calls`` calls spread over
November 2026 (whose first day is the 25-hour one in New York), their legs, a
transfer on one answered call in 20, and four agent.updated events per answered
call (ringing, busy, wrap-up, available) plus a day's sign-in, break and sign-out
for each of ``--agents`` agents, stored an hour at a time through the trigger that
keeps the agents' intervals and totals (migration 0003), as the writer's inserts
are (the calls and legs likewise go through the triggers of migrations 0003 and
0005); then asks the app (in process, through Quart's test client, a supervisor's
session in a throwaway Redis) for the month by day, by agent and by hour,
``--requests`` times each after a few warm-ups, and prints p50/p99. The rows are
generated inside PostgreSQL (generate_series), deterministically.
``--by agent`` asks only for that report; ``--database-url`` uses a database of yours
(migrated, filled only when it holds no calls), so a second run measures the same
data without generating it again.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

import psycopg

from console.config import Settings
from console.domain.users import add_user
from console.history.migrate import upgrade
from console.redis_ext import connect
from warmline.app import create_app
from warmline.embedded_postgres import start_postgres
from warmline.embedded_redis import start_redis

MONTH_START = 1_793_505_600_000  # 2026-11-01T00:00:00-04:00
MONTH_MS = 30 * 24 * 3_600_000 + 3_600_000  # November in New York: 30 days, one of 25 h
DAY_MS = 24 * 3_600_000
PASSWORD = "bench-password-1"

# One row per call, i picking its kind and outcome (r), agent, wait and times; the
# calls' totals are kept by the triggers of migration 0003 as the rows go in.
_CALLS = """
INSERT INTO calls (id, kind, from_number, arrived_at, offered, answered_at, answered_by,
                   ended_at, outcome, wait_ms, talk_ms, hold_ms, wrap_up_ms, agents, updated_at)
SELECT 'CA' || lpad(i::text, 32, '0'),
       CASE WHEN r >= 970 THEN 'callback' ELSE 'inbound' END,
       '+1555' || lpad((i %% 9999991)::text, 7, '0'),
       arrived,
       r < 950,
       CASE WHEN r < 800 OR r >= 970 THEN arrived + wait END,
       CASE WHEN r < 800 OR r >= 970 THEN agent END,
       arrived + wait + talk + hold,
       CASE WHEN r < 800 OR r >= 970 THEN 'completed' WHEN r < 880 THEN 'abandoned'
            WHEN r < 920 THEN 'voicemail' WHEN r < 950 THEN 'callback-requested'
            ELSE 'closed-hours' END,
       CASE WHEN r < 950 OR r >= 970 THEN wait END,
       CASE WHEN r < 800 OR r >= 970 THEN talk ELSE 0 END,
       CASE WHEN r < 800 OR r >= 970 THEN hold ELSE 0 END,
       CASE WHEN r < 800 OR r >= 970 THEN 30000 ELSE 0 END,
       CASE WHEN r < 800 OR r >= 970 THEN ARRAY[agent] ELSE '{}' END,
       arrived + wait + talk + hold
FROM (
  SELECT i, (i * 2654435761) %% 1000 AS r,
         %(start)s + (i * %(span)s) / %(calls)s AS arrived,
         (i * 7919) %% 120000 AS wait,
         60000 + (i * 613) %% 540000 AS talk,
         CASE WHEN i %% 5 = 0 THEN (i * 17) %% 60000 ELSE 0 END AS hold,
         'agent' || lpad(((i * 31) %% %(agents)s)::text, 3, '0') AS agent
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
) g
"""
_LEGS = """
INSERT INTO call_legs (call_id, position, call_sid, agent, role, joined_at, left_at, hold_ms)
SELECT id, 0, 'CL' || substr(id, 3), answered_by, 'agent', answered_at, ended_at, hold_ms
FROM calls WHERE answered_by IS NOT NULL;
INSERT INTO call_legs (call_id, position, call_sid, agent, role, joined_at, left_at)
SELECT id, 1, 'CT' || substr(id, 3),
       'agent' || lpad(((substr(id, 3)::bigint * 31 + 1) %% %(agents)s)::text, 3, '0'),
       'agent', answered_at + 60000, ended_at
FROM calls WHERE answered_by IS NOT NULL AND substr(id, 3)::bigint %% 20 = 0;
INSERT INTO call_transfers (call_id, id, status, requested_at, ended_at, data)
SELECT id, 'TR' || substr(id, 3), s, answered_at + 30000, answered_at + 60000,
       jsonb_build_object('id', 'TR' || substr(id, 3), 'from_agent', answered_by, 'status', s)
FROM (SELECT *, CASE WHEN substr(id, 3)::bigint %% 40 = 0 THEN 'completed' ELSE 'failed' END AS s
      FROM calls WHERE answered_by IS NOT NULL AND substr(id, 3)::bigint %% 20 = 0) t;
"""
# Four status changes per answered call, and each agent's day around them.
# Generated into a staging table, then stored an hour at a time (below) so the
# agents' intervals and totals are kept by the same trigger as the writer's batches.
_AGENT_EVENTS = """
CREATE UNLOGGED TABLE staged_events AS
SELECT ts || '-' || seq AS id, ts AS ms, seq, 'agent.updated' AS type, ts, NULL::text AS conference,
       '*' AS audience, jsonb_build_object('username', agent, 'status', status, 'since', ts) AS data
FROM (
  SELECT c.answered_by AS agent, k.seq_of * 4 + k.n AS seq, k.status,
         CASE k.n WHEN 0 THEN c.answered_at - 8000 WHEN 1 THEN c.answered_at
                  WHEN 2 THEN c.ended_at ELSE c.ended_at + c.wrap_up_ms END AS ts
  FROM (SELECT *, substr(id, 3)::bigint AS seq_of FROM calls WHERE answered_by IS NOT NULL) c
  CROSS JOIN LATERAL (VALUES (0, 'ringing', c.seq_of), (1, 'busy', c.seq_of),
                             (2, 'wrap-up', c.seq_of), (3, 'available', c.seq_of))
    AS k(n, status, seq_of)
  UNION ALL
  SELECT 'agent' || lpad(a::text, 3, '0'), 4 * %(calls)s + 4 * (d * %(agents)s + a) + n, status,
         %(start)s + d::bigint * %(day)s + at
  FROM generate_series(0, %(agents)s - 1) a, generate_series(0, 29) d,
       (VALUES (0, 'available', 3600000::bigint), (1, 'break', 43200000::bigint),
               (2, 'available', 45000000::bigint), (3, 'offline', 82800000::bigint))
         AS s(n, status, at)
) e;
CREATE INDEX ON staged_events (ms, seq)
"""
_STORE_HOUR = """
INSERT INTO events (id, ms, seq, type, ts, conference, audience, data)
SELECT * FROM staged_events WHERE ms >= %(lo)s AND ms < %(hi)s ORDER BY ms, seq
ON CONFLICT (id) DO NOTHING
"""


def settings(database_url: str, redis_url: str) -> Settings:
    return Settings(
        account_sid="AC" + "0" * 32,
        auth_token="bench",
        api_key="SK" + "0" * 32,
        api_secret="bench",
        caller_id="+15550001111",
        public_base_url="https://bench.example.com",
        secret_key="bench-secret",
        api_base_url="http://127.0.0.1:9",
        redis_url=redis_url,
        database_url=database_url,
        center_timezone="America/New_York",
    )


def fill(url: str, calls: int, agents: int) -> dict[str, float]:
    """Generate the month; seconds spent on each step."""
    params = {"start": MONTH_START, "span": MONTH_MS, "calls": calls, "agents": agents}
    params["day"] = DAY_MS
    spent: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        began = time.perf_counter()
        step = max(1, calls // 100)  # in statements of 1 % each, through the calls' triggers
        for first in range(1, calls + 1, step):
            conn.execute(_CALLS, {**params, "first": first, "last": min(calls, first + step - 1)})
        spent["calls"] = time.perf_counter() - began
        for name, query in (
            ("legs+transfers", _LEGS),
            ("events", _AGENT_EVENTS),
        ):
            began = time.perf_counter()
            for statement in (s for s in query.split(";\n") if s.strip()):
                conn.execute(statement, params)
            spent[name] = time.perf_counter() - began
        spent["stored by hour"], batches = store_by_hour(conn)
        conn.execute("DROP TABLE staged_events")
        began = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        spent["vacuum"] = time.perf_counter() - began
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM calls), (SELECT count(*) FROM call_legs),"
            " (SELECT count(*) FROM call_transfers), (SELECT count(*) FROM events)"
        ).fetchone()
    print(f"rows: calls, legs, transfers, events = {counts}")
    print(
        f"events stored an hour at a time: {len(batches)} statements, p50"
        f" {statistics.median(batches):.0f} ms, max {max(batches):.0f} ms (trigger included)"
    )
    return spent


def store_by_hour(conn: psycopg.Connection[Any]) -> tuple[float, list[float]]:
    """Move the staged events into ``events`` an hour (by stream id) at a time, as the
    writer's batches would arrive; total seconds and each statement's ms."""
    lo, hi = conn.execute("SELECT min(ms), max(ms) FROM staged_events").fetchone() or (0, 0)
    began, batches = time.perf_counter(), []
    for at in range(lo - lo % 3_600_000, hi + 1, 3_600_000):
        one = time.perf_counter()
        conn.execute(_STORE_HOUR, {"lo": at, "hi": at + 3_600_000})
        batches.append((time.perf_counter() - one) * 1000)
    return time.perf_counter() - began, batches


async def measure(
    database_url: str,
    redis_url: str,
    requests: int,
    warmups: int,
    reports: tuple[str, ...] = ("day", "agent", "hour"),
) -> dict[str, list[float]]:
    app = create_app(settings(database_url, redis_url), redis_url=redis_url)
    timings: dict[str, list[float]] = {}
    async with app.test_app():
        redis = connect(redis_url)
        await add_user(redis, "sue", "supervisor", PASSWORD)
        await redis.aclose()
        client = app.test_client()
        response = await client.post("/login", form={"username": "sue", "password": PASSWORD})
        assert response.status_code == 303, response.status_code
        for by in reports:
            path = f"/api/reports?from=2026-11-01&to=2026-11-30&by={by}"
            spent = []
            for n in range(warmups + requests):
                began = time.perf_counter()
                response = await client.get(path)
                body: Any = await response.get_json()
                took = time.perf_counter() - began
                assert response.status_code == 200, body
                if n >= warmups:
                    spent.append(took * 1000)
            timings[by] = spent
            print(f"by {by}: {len(body['rows'])} rows")
    return timings


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank."""
    ranked = sorted(values)
    return ranked[max(0, -(-len(ranked) * pct // 100) - 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reports")
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=150)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--warmups", type=int, default=3)
    parser.add_argument(
        "--by", action="append", choices=("day", "agent", "hour"), help="only these reports"
    )
    parser.add_argument(
        "--database-url",
        help="a database of yours to use: migrated, then filled only if it holds no calls"
        " (to measure again on the same data); left as it is at the end",
    )
    args = parser.parse_args(argv)
    postgres = None if args.database_url else start_postgres(durable=False)
    redis = start_redis(persist=False)
    try:
        database_url = args.database_url or postgres.url
        upgrade(database_url)
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT EXISTS (SELECT 1 FROM calls)").fetchone()
        if not (row and row[0]):
            spent = fill(database_url, args.calls, args.agents)
            print("generated in " + ", ".join(f"{k} {v:.1f} s" for k, v in spent.items()))
        reports = tuple(dict.fromkeys(args.by or ("day", "agent", "hour")))
        timings = asyncio.run(
            measure(database_url, redis.url, args.requests, args.warmups, reports)
        )
    finally:
        redis.stop()
        if postgres is not None:
            postgres.stop()
    print(f"\nGET /api/reports, November 2026, {args.calls:,} calls, {args.requests} requests")
    print("| by | p50 ms | p99 ms | max ms |")
    print("| --- | --- | --- | --- |")
    for by, values in timings.items():
        p50, p99 = statistics.median(values), percentile(values, 99)
        print(f"| {by} | {p50:.0f} | {p99:.0f} | {max(values):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
