"""The totals reports read (migration 0003, docs/history.md, reports). Agents' status
intervals and their quarter-hour and day totals, kept as the writer stores
agent.updated events: the same rows however the events come (twice, in any batch
split, in any order, from two writers committing out of order, or already stored
when the migration runs), and the report's activity figures from them equal to the
intervals cut at the range. The calls' totals: always the sums of the stored calls
(any insert, update, delete; two writers in opposite orders), and reports from them
equal to the aggregates of the calls rows.

Expected figures come from a plain Python reading of the events and calls."""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql

from console.history.calls import id_key
from console.history.migrate import CREATE_TABLE, migrations, upgrade
from console.history.reports import (
    _CALLS_BY_AGENT,
    _CALLS_BY_BUCKET,
    ReportRange,
    _call_figures,
    _fetch,
    buckets,
    report,
)
from console.history.store import StreamEvent, store_batch
from console.postgres_ext import make_pool
from warmline.embedded_postgres import EmbeddedPostgres, url_for

QUARTER, DAY, MINUTE = 900_000, 86_400_000, 60_000
START = 1_781_049_600_000 - 50 * MINUTE  # 2026-06-09 23:10 UTC: the changes cross a day
STATUSES = ("available", "ringing", "busy", "wrap-up", "missed", "break", "offline")


def changes(seed: int, count: int = 60) -> list[StreamEvent]:
    """agent.updated events of three agents, a few minutes to an hour apart, with
    repeated statuses (a missed announced twice) and one ts behind the stream's."""
    rng = random.Random(seed)
    events, at = [], START
    for n in range(count):
        at += rng.randrange(0, 40 * MINUTE)
        agent = rng.choice(("alice", "bob", "carol"))
        status = rng.choice(STATUSES)
        ts = at - 5_000 if n == count // 2 else at  # one unit of work on a slower clock
        data = json.dumps({"username": agent, "status": status, "since": ts})
        events.append(StreamEvent(f"{at}-{n}", "agent.updated", ts, None, "*", data))
    return events


def reference(events: list[StreamEvent]) -> dict[str, Any]:
    """The intervals (the agent_activity view's: stream order, ts to the next ts) and
    what each closed one adds to its quarter hours and UTC days."""
    by_agent: dict[str, list[tuple[str, str]]] = defaultdict(list)
    ts_of = {}
    for event in sorted({e.id: e for e in events}.values(), key=lambda e: id_key(e.id)):
        data = json.loads(event.data)
        by_agent[data["username"]].append((event.id, data["status"]))
        ts_of[event.id] = event.ts
    intervals, quarters = {}, defaultdict(lambda: [0, 0, 0, 0])
    for agent, rows in by_agent.items():
        for n, (event_id, status) in enumerate(rows):
            before = rows[n - 1][1] if n else None
            start = ts_of[event_id]
            end = ts_of[rows[n + 1][0]] if n + 1 < len(rows) else None
            intervals[event_id] = (agent, status, before, start, end)
            if status == "missed" and before != "missed":
                quarters[(start - start % QUARTER, agent)][3] += 1
            if end is None or end <= start or status == "offline":
                continue
            for q in range(start - start % QUARTER, end, QUARTER):
                part = min(end, q + QUARTER) - max(start, q)
                totals = quarters[(q, agent)]
                totals[0] += part
                totals[1] += part if status == "break" else 0
                totals[2] += part if status in ("busy", "wrap-up") else 0
    days: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for (q, agent), totals in quarters.items():
        day = days[(q - q % DAY, agent)]
        day[:] = [a + b for a, b in zip(day, totals, strict=True)]
    return {"intervals": intervals, "quarters": _nonzero(quarters), "days": _nonzero(days)}


def _nonzero(totals: dict[tuple[int, str], list[int]]) -> dict[tuple[int, str], list[int]]:
    return {key: values for key, values in totals.items() if any(values)}


async def stored(pg: Any) -> dict[str, Any]:
    """What the database keeps, in the reference's shape (rows of zeros left out: a
    total moved down to nothing may stay as a row)."""
    rows = await (await pg.execute("SELECT * FROM agent_intervals")).fetchall()
    intervals = {
        r["event_id"]: (r["agent"], r["status"], r["before"], r["started_at"], r["ended_at"])
        for r in rows
    }
    totals = {}
    for table, key in (("agent_quarters", "quarter"), ("agent_days", "day")):
        found = await (await pg.execute(f"SELECT * FROM {table}")).fetchall()
        totals[table] = _nonzero(
            {
                (r[key], r["agent"]): [
                    r["signed_in_ms"],
                    r["break_ms"],
                    r["occupied_ms"],
                    r["missed"],
                ]
                for r in found
            }
        )
    return {
        "intervals": intervals,
        "quarters": totals["agent_quarters"],
        "days": totals["agent_days"],
    }


async def view_intervals(pg: Any) -> list[tuple[Any, ...]]:
    """The schema's own definition (the agent_activity view) of the same intervals."""
    rows = await (await pg.execute("SELECT * FROM agent_activity")).fetchall()
    return sorted((r["agent"], r["status"], r["started_at"], r["ended_at"]) for r in rows)


def batches_of(events: list[StreamEvent], seed: int) -> list[list[StreamEvent]]:
    """The events cut at random, some delivered twice, the batches in a random order."""
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(events)), 6))
    parts = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]
    parts += [rng.sample(events, 5) for _ in range(3)]  # redelivered
    rng.shuffle(parts)
    return parts


async def test_the_intervals_and_totals_follow_the_events(pg: Any) -> None:
    events = changes(1)
    assert await store_batch(pg, events) == len(events)
    expected = reference(events)
    assert await stored(pg) == expected
    assert await view_intervals(pg) == sorted(
        (agent, status, start, end)
        for agent, status, _, start, end in expected["intervals"].values()
    )


@pytest.mark.parametrize("seed", [2, 3, 4])
async def test_any_split_order_or_redelivery_gives_the_same_rows(pg: Any, seed: int) -> None:
    events = changes(seed)
    for batch in batches_of(events, seed):
        await store_batch(pg, batch)
    assert await stored(pg) == reference(events)


@pytest.mark.parametrize("late_first", [True, False])
async def test_two_writers_committing_out_of_order(
    database_url: str, pg: Any, late_first: bool
) -> None:
    """One writer's transaction holds the agents' later (or earlier) changes while the
    other stores the rest; whoever takes the agent's lock last sees both."""
    events = changes(5, count=30)
    first, second = (events[15:], events[:15]) if late_first else (events[:15], events[15:])
    connect = psycopg.AsyncConnection.connect
    async with (
        await connect(database_url, autocommit=True) as one,
        await connect(database_url, autocommit=True) as two,
    ):
        async with one.transaction():
            await store_batch(one, first)
            other = asyncio.create_task(store_batch(two, second))
            await _until_waiting_for_a_lock(pg)
            assert not other.done()
        assert await other == len(second)
    assert await stored(pg) == reference(events)


async def _until_waiting_for_a_lock(pg: Any) -> None:
    for _ in range(400):
        row = await (
            await pg.execute("SELECT count(*) AS n FROM pg_locks WHERE NOT granted")
        ).fetchone()
        if row["n"]:
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the second writer never waited for the agent's lock")


@pytest.mark.parametrize(
    ("zone", "day", "now_after_start"),
    [
        ("America/New_York", date(2026, 6, 10), None),  # a past day: aligned ends
        ("America/New_York", date(2026, 6, 10), 13 * 3_600_000 + 7 * MINUTE + 3_000),
        ("Asia/Kolkata", date(2026, 6, 10), 20 * MINUTE + 1),  # before the first quarter
        ("Africa/Monrovia", date(1971, 3, 2), None),  # -0:44:30: a midnight off the quarters
    ],
)
async def test_the_report_cuts_the_intervals_at_the_range_and_now(
    database_url: str, zone: str, day: date, now_after_start: int | None
) -> None:
    chosen = ReportRange(day, day, "agent", ZoneInfo(zone))
    lo, hi = chosen.start, chosen.end
    rng = random.Random(zone)
    events, at = [], lo - 3 * 3_600_000 - 7_777
    while at < hi + 3_600_000:
        at += rng.randrange(1_000, 50 * MINUTE)
        data = {"username": rng.choice(("alice", "bob")), "status": rng.choice(STATUSES)}
        events.append(
            StreamEvent(f"{at}-0", "agent.updated", at, None, "*", json.dumps(data | {"since": at}))
        )
    now = hi + DAY if now_after_start is None else lo + now_after_start
    until = min(hi, now)
    expected: dict[str, list[int]] = {}  # signed in, on break, occupied, missed
    for agent, status, before, start, end in reference(events)["intervals"].values():
        totals = expected.setdefault(agent, [0, 0, 0, 0])
        cut = max((until if end is None else min(end, until)) - max(start, lo), 0)
        if status != "offline":
            totals[0] += cut
            totals[1] += cut if status == "break" else 0
            totals[2] += cut if status in ("busy", "wrap-up") else 0
        if status == "missed" and before != "missed" and lo <= start < until:
            totals[3] += 1
    pool = make_pool(database_url)
    await pool.open()
    try:
        async with pool.connection() as conn:
            await store_batch(conn, events)
        answer = await report(pool, chosen, 20_000, now)
    finally:
        await pool.close()
    found = {
        row["bucket"]: (row["break_ms"], row["missed"], row["occupancy"]) for row in answer["rows"]
    }
    assert found == {
        agent: (
            on_break,
            missed,
            round(busy / (signed_in - on_break), 4) if signed_in > on_break else None,
        )
        for agent, (signed_in, on_break, busy, missed) in expected.items()
        if signed_in or missed
    }


@pytest.fixture
def old_database_url(postgres_server: EmbeddedPostgres):
    """A database at migration 0002, as a deployment before agent intervals had it."""
    name = "before_agent_intervals"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = url_for(postgres_server.port, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(CREATE_TABLE)
        for version, text in migrations():
            if version < "0003":
                conn.execute(text.encode())
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
    yield url
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


async def test_the_migration_computes_what_is_already_stored(old_database_url: str) -> None:
    events = changes(6)
    async with await psycopg.AsyncConnection.connect(
        old_database_url, autocommit=True, row_factory=psycopg.rows.dict_row
    ) as conn:
        await store_batch(conn, events[:40])
        rng = random.Random(9)
        calls = [a_call(rng, n) for n in range(20)]
        for call in calls:
            await conn.execute(_UPSERT, call)
        assert "0003_report_totals" in upgrade(old_database_url)
        await store_batch(conn, events[30:])  # the rest, some twice, through the trigger
        assert await stored(conn) == reference(events)
        assert await stored_sums(conn) == call_sums(calls)


# The calls' totals (call_quarters, call_days): always the sums of the stored calls.

OUTCOMES = ("completed", "abandoned", "voicemail", "callback-requested", "closed-hours", None)


def a_call(rng: random.Random, n: int) -> dict[str, Any]:
    arrived = START + rng.randrange(0, 2 * DAY)
    answered = rng.random() < 0.6
    return {
        "id": f"CA{n:04d}",
        "kind": rng.choice(("inbound", "inbound", "callback")),
        "arrived_at": arrived,
        "offered": rng.random() < 0.9,
        "answered_at": arrived + 5_000 if answered else None,
        "answered_by": rng.choice(("alice", "bob")) if answered else None,
        "ended_at": arrived + 9 * MINUTE,
        "outcome": "completed" if answered else rng.choice(OUTCOMES),
        "wait_ms": rng.choice((None, rng.randrange(0, 90_000))),
        "talk_ms": rng.randrange(0, 600_000),
        "hold_ms": rng.randrange(0, 60_000),
        "wrap_up_ms": rng.randrange(0, 30_000),
        "updated_at": arrived,
    }


_UPSERT = """
INSERT INTO calls (id, kind, arrived_at, offered, answered_at, answered_by, ended_at, outcome,
                   wait_ms, talk_ms, hold_ms, wrap_up_ms, updated_at)
VALUES (%(id)s, %(kind)s, %(arrived_at)s, %(offered)s, %(answered_at)s, %(answered_by)s,
        %(ended_at)s, %(outcome)s, %(wait_ms)s, %(talk_ms)s, %(hold_ms)s, %(wrap_up_ms)s,
        %(updated_at)s)
ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, arrived_at = EXCLUDED.arrived_at,
  offered = EXCLUDED.offered, answered_at = EXCLUDED.answered_at,
  answered_by = EXCLUDED.answered_by, ended_at = EXCLUDED.ended_at,
  outcome = EXCLUDED.outcome, wait_ms = EXCLUDED.wait_ms, talk_ms = EXCLUDED.talk_ms,
  hold_ms = EXCLUDED.hold_ms, updated_at = EXCLUDED.updated_at
"""


def call_sums(calls: list[dict[str, Any]]) -> dict[str, dict[tuple[Any, ...], list[int]]]:
    """What call_quarters (by quarter, for '*' and each answered_by or '') and
    call_days (by UTC day and answered_by) should hold for ``calls``."""
    quarters: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * 10)
    days: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * 10)
    for c in calls:
        offered = c["kind"] == "inbound" and c["offered"]
        answered = offered and c["answered_at"] is not None
        waited = answered and c["wait_ms"] is not None
        figures = [
            1,
            int(offered),
            int(answered),
            int(offered and c["answered_at"] is None and c["outcome"] == "abandoned"),
            int(c["outcome"] == "voicemail"),
            int(c["outcome"] == "callback-requested"),
            c["wait_ms"] if waited else 0,
            int(waited),
            c["talk_ms"] + c["hold_ms"] + c["wrap_up_ms"] if answered else 0,
        ]
        q = c["arrived_at"] - c["arrived_at"] % QUARTER
        for agent in ("*", c["answered_by"] or ""):
            row = quarters[(q, agent)]
            row[: len(figures)] = [a + b for a, b in zip(row, figures, strict=False)]
        row = days[(q - q % DAY, c["answered_by"] or "")]
        row[: len(figures)] = [a + b for a, b in zip(row, figures, strict=False)]
    return {"quarters": _nonzero(quarters), "days": _nonzero(days)}


async def stored_sums(pg: Any) -> dict[str, dict[tuple[Any, ...], list[int]]]:
    columns = "calls, offered, answered, abandoned, voicemails, callbacks, wait_sum, wait_n,"
    columns += " handle_sum"
    found = {}
    for table, key in (("call_quarters", "quarter"), ("call_days", "day")):
        rows = await (
            await pg.execute(f"SELECT {key} AS k, agent, {columns} FROM {table}")
        ).fetchall()
        found[table] = _nonzero({(r["k"], r["agent"]): [*list(r.values())[2:], 0] for r in rows})
    return {"quarters": found["call_quarters"], "days": found["call_days"]}


async def test_the_call_totals_follow_every_insert_update_and_delete(pg: Any) -> None:
    rng = random.Random(7)
    calls: dict[str, dict[str, Any]] = {}
    for step in range(40):
        batch = [a_call(rng, rng.randrange(0, 30)) for _ in range(rng.randrange(1, 6))]
        batch = list({c["id"]: c for c in batch}.values())
        async with pg.transaction():
            for call in batch:  # as the writer does: one upsert per call
                await pg.execute(_UPSERT, call)
                if call["id"] in calls:  # the writer leaves the wrap-up to its feature
                    call["wrap_up_ms"] = calls[call["id"]]["wrap_up_ms"]
                calls[call["id"]] = call
        if step % 7 == 3:  # a feature fills the wrap-up of some calls
            await pg.execute("UPDATE calls SET wrap_up_ms = wrap_up_ms + 1000 WHERE id < 'CA0010'")
            for call in calls.values():
                call["wrap_up_ms"] += 1000 if call["id"] < "CA0010" else 0
        if step % 11 == 5:  # the purge
            await pg.execute("DELETE FROM calls WHERE id > 'CA0025'")
            calls = {k: v for k, v in calls.items() if k <= "CA0025"}
        assert await stored_sums(pg) == call_sums(list(calls.values()))
    await pg.execute("UPDATE calls SET notes = 'seen'")  # moves nothing
    assert await stored_sums(pg) == call_sums(list(calls.values()))


async def test_two_writers_updating_calls_in_opposite_orders_do_not_deadlock(
    database_url: str, pg: Any
) -> None:
    rng = random.Random(8)
    first, second = [a_call(rng, n) for n in (1, 2)], [a_call(rng, n) for n in (3, 4)]
    first[0] |= {"arrived_at": START, "answered_by": "alice", "answered_at": START + 1}
    first[1] |= {"arrived_at": START + QUARTER, "answered_by": "bob", "answered_at": START + 1}
    second[0] |= {"arrived_at": START + QUARTER, "answered_by": "bob", "answered_at": START + 1}
    second[1] |= {"arrived_at": START, "answered_by": "alice", "answered_at": START + 1}
    connect = psycopg.AsyncConnection.connect

    async def other_writer(conn: Any) -> None:
        async with conn.transaction():
            for call in second:
                await conn.execute(_UPSERT, call)

    async with (
        await connect(database_url, autocommit=True) as one,
        await connect(database_url, autocommit=True) as two,
    ):
        async with one.transaction():
            await one.execute(_UPSERT, first[0])
            other = asyncio.create_task(other_writer(two))
            await _until_waiting_for_a_lock(pg)
            await one.execute(_UPSERT, first[1])
        await other
    assert await stored_sums(pg) == call_sums([*first, *second])


@pytest.mark.parametrize("by", ["day", "hour", "agent"])
async def test_reports_from_the_totals_equal_those_from_the_calls(
    database_url: str, pg: Any, by: str
) -> None:
    """Over the 25-hour day of 2026 in New York and its neighbours: the figures summed
    from call_quarters / call_days and the narrow indexes, and the same figures
    aggregated from the calls rows (the definitions, reports.py's fallback)."""
    rng = random.Random(by)
    chosen = ReportRange(date(2026, 10, 31), date(2026, 11, 2), by, ZoneInfo("America/New_York"))
    for n in range(300):
        call = a_call(rng, n) | {"arrived_at": chosen.start + rng.randrange(-DAY, 4 * DAY)}
        call["answered_at"] = call["answered_at"] and call["arrived_at"] + 5_000
        await pg.execute(_UPSERT, call)
    pool = make_pool(database_url)
    await pool.open()
    try:
        answer = await report(pool, chosen, 20_000, chosen.end + DAY)
        async with pool.connection() as conn:
            spans = buckets(chosen)
            params = {
                "starts": [lo for _, lo, _ in spans],
                "ends": [hi for _, _, hi in spans],
                "lo": chosen.start,
                "hi": chosen.end,
                "threshold": 20_000,
            }
            query = _CALLS_BY_AGENT if by == "agent" else _CALLS_BY_BUCKET
            raw = {row["bucket"]: _call_figures(row) for row in await _fetch(conn, query, params)}
    finally:
        await pool.close()
    figures = list(_call_figures(None))
    found = {row["bucket"]: {k: row[k] for k in figures} for row in answer["rows"]}
    if by != "agent":
        raw = {spans[n - 1][0]: row for n, row in raw.items()}
    assert set(raw) <= set(found)
    assert found == {bucket: raw.get(bucket, _call_figures(None)) for bucket in found}
    kept = await (
        await pg.execute("SELECT sum(calls) AS n FROM call_quarters WHERE agent = '*'")
    ).fetchone()
    assert kept["n"] == 300  # and they came from the totals
