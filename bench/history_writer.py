"""History writer benchmark (issue 17): how many events a second the writer stores
into PostgreSQL, with 1 and 2 writers (each a process of its own, as each app
process runs one).

``python -m bench.history_writer [--calls 12000] [--writers 1,2]``: a throwaway
redis-server and PostgreSQL (durable, fsync on, unless ``--no-fsync``); the event
log is filled with synthetic call streams shaped like the domain's (per call: the
caller queued, the line updated, the agent ringing, the conference and its
participants, a hold and resume, leaves, the end, the agent free again; ``--overlap``
calls in progress at once, so their events interleave as live traffic does); then
the writers start together on the whole backlog and the clock runs until the group
has acknowledged every entry. Rate = events stored ÷ that time (``queue.updated``
entries are read and skipped, as the writer does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg
from redis.asyncio import Redis

from bench.measure import busy_seconds, cpu_seconds, settle
from console.domain import history_log, keys
from console.history.migrate import upgrade
from console.history.writer import HistoryWriter
from console.postgres_ext import make_pool
from warmline.embedded_postgres import start_postgres
from warmline.embedded_redis import start_redis

TARGET_EVENTS_PER_S = 5_000
AGENTS = 150


def call_events(n: int, start: int, rng: random.Random) -> list[tuple[int, dict[str, str]]]:
    """One answered call's entries as (ts, stream fields), in order."""
    sid = f"CA{n:032x}"
    leg = f"CA{n + 10**9:032x}"
    agent = f"agent{rng.randrange(AGENTS)}"
    number = f"+1555{rng.randrange(10**7):07d}"
    t = start
    out: list[tuple[int, dict[str, str]]] = []

    def add(kind: str, data: dict[str, Any], conference: str = "", audience: str = "*") -> None:
        out.append(
            (
                t,
                {
                    "type": kind,
                    "ts": str(t),
                    "data": json.dumps(data, separators=(",", ":")),
                    "audience": audience,
                    "conference": conference,
                },
            )
        )

    def participant(call_sid: str, role: str, who: str | None, hold: bool = False) -> dict:
        return {
            "conference": sid,
            "call_sid": call_sid,
            "role": role,
            "agent": who,
            "from": number if role == "customer" else None,
            "muted": False,
            "hold": hold,
            "coaching": False,
            "joined_at": start,
        }

    queued = {"call_sid": sid, "from": number, "queued_at": t, "position": 1}
    add("call.queued", queued)
    add("queue.updated", {"queue": [queued]})
    add("conference.started", {"conference": sid, "name": sid}, sid, agent)
    add("participant.joined", participant(sid, "customer", None), sid, agent)
    t += rng.randrange(1_000, 30_000)
    add("agent.updated", {"username": agent, "status": "ringing", "since": t})
    t += rng.randrange(2_000, 8_000)
    add("call.dequeued", {"call_sid": sid, "reason": "answered"})
    add("queue.updated", {"queue": []})
    add("participant.joined", participant(leg, "agent", agent), sid, agent)
    add("agent.updated", {"username": agent, "status": "busy", "since": t})
    t += rng.randrange(10_000, 120_000)
    add("participant.updated", participant(sid, "customer", None, hold=True), sid, agent)
    t += rng.randrange(5_000, 30_000)
    add("participant.updated", participant(sid, "customer", None), sid, agent)
    t += rng.randrange(10_000, 200_000)
    add("participant.left", participant(leg, "agent", agent), sid, agent)
    add("participant.left", participant(sid, "customer", None), sid, agent)
    add("conference.ended", {"conference": sid, "name": sid}, sid, agent)
    add("agent.updated", {"username": agent, "status": "available", "since": t})
    return out


def stream(calls: int, overlap: int, seed: int) -> list[dict[str, str]]:
    """Every call's entries, interleaved by time: ``overlap`` calls at once."""
    rng = random.Random(seed)
    spacing = 300_000 // overlap  # a call lasts about five minutes
    merged = []
    for n in range(calls):
        merged.extend(call_events(n, 1_800_000_000_000 + n * spacing, rng))
    merged.sort(key=lambda item: item[0])
    return [fields for _, fields in merged]


async def fill(redis: Redis, entries: list[dict[str, str]]) -> None:
    await redis.delete(keys.EVENTS)
    for start in range(0, len(entries), 2_000):
        async with redis.pipeline(transaction=False) as pipe:
            for fields in entries[start : start + 2_000]:
                pipe.xadd(keys.EVENTS, fields)
            await pipe.execute()
    await history_log.create_group(redis)


async def writer_process(redis_url: str, database_url: str) -> None:
    """A child: one writer, started on "go" from stdin, run until killed."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    pool = make_pool(database_url, max_size=2)
    await pool.open(wait=True)
    writer = HistoryWriter(lambda: redis, lambda: pool)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await writer.start()
    await asyncio.Future()


async def drained(redis: Redis) -> bool:
    groups = await redis.xinfo_groups(keys.EVENTS)
    group = next(g for g in groups if g["name"] == history_log.GROUP)
    return group["lag"] == 0 and group["pending"] == 0


def spawn_writers(redis_url: str, database_url: str, writers: int) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [sys.executable, "-m", "bench.history_writer", "--child", redis_url, database_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(writers)
    ]


async def measure(redis_url: str, database_url: str, writers: int) -> dict[str, float]:
    children = await asyncio.to_thread(spawn_writers, redis_url, database_url, writers)
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        for child in children:
            assert child.stdout is not None
            if (await asyncio.to_thread(child.stdout.readline)).strip() != "ready":
                raise RuntimeError("a writer did not start")
        mine = [psutil.Process(), *psutil.Process().children(recursive=True)]
        ours0, busy0 = cpu_seconds(mine), busy_seconds()
        began = time.monotonic()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        while True:  # polled: Redis says nothing when the group catches up
            if await drained(redis):
                break
            await asyncio.sleep(0.02)
        took = time.monotonic() - began
        others = max(0.0, busy_seconds() - busy0 - (cpu_seconds(mine) - ours0)) / took
    finally:
        for child in children:
            child.kill()
            child.wait()
        await redis.aclose()
    with psycopg.connect(database_url) as conn:
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]  # type: ignore[index]
        calls = conn.execute("SELECT count(*) FROM calls WHERE outcome = 'completed'").fetchone()[0]  # type: ignore[index]
    return {
        "seconds": took,
        "events": events,
        "calls": calls,
        "rate": events / took,
        "others_cores": others,
    }


def reset(database_url: str) -> None:
    """Empty every table of the schema (later migrations' too) but the versions."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'schema_migrations'"
            )
        ]
        conn.execute(f"TRUNCATE {', '.join(tables)}")
        conn.execute("VACUUM ANALYZE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history_writer")
    parser.add_argument("--calls", type=int, default=12_000)
    parser.add_argument("--overlap", type=int, default=40, help="calls in progress at once")
    parser.add_argument("--writers", default="1,2", help="comma list of writer counts")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-fsync", action="store_true", help="PostgreSQL with fsync off")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument(
        "--settle", type=float, default=10.0, help="wait up to this long for a quiet machine"
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        asyncio.run(writer_process(*args.child))
        return 0
    folder = Path(tempfile.mkdtemp(prefix="warmline-bench-pg-"))
    folder.chmod(0o755)
    postgres = start_postgres(folder, durable=not args.no_fsync)
    redis = start_redis(persist=False)
    entries = stream(args.calls, args.overlap, args.seed)
    stored_kinds = sum(1 for e in entries if e["type"] != "queue.updated")
    print(
        f"{args.calls:,} calls: {len(entries):,} log entries, {stored_kinds:,} to store "
        f"(fsync {'off' if args.no_fsync else 'on'})"
    )
    rows = []
    try:
        upgrade(postgres.url)
        for number in range(1, args.rounds + 1):
            for writers in [int(w) for w in args.writers.split(",")]:
                reset(postgres.url)

                async def one(count: int = writers) -> dict[str, float]:
                    await settle(args.settle)
                    client = Redis.from_url(redis.url, decode_responses=True)
                    await fill(client, entries)
                    await client.aclose()
                    return await measure(redis.url, postgres.url, count)

                result = asyncio.run(one())
                rows.append((number, writers, result))
                print(
                    f"round {number}, {writers} writer(s): {result['events']:,} events, "
                    f"{result['calls']:,} completed calls in {result['seconds']:.1f} s = "
                    f"{result['rate']:,.0f} events/s (others' CPU: "
                    f"{result['others_cores']:.2f} cores)",
                    flush=True,
                )
    finally:
        redis.stop()
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)
    print("\n| writers | events/s (each round) | best | target |")
    print("| --- | --- | --- | --- |")
    for writers in dict.fromkeys(w for _, w, _ in rows):
        rates = [r["rate"] for _, w, r in rows if w == writers]
        verdict = "ok" if max(rates) >= TARGET_EVENTS_PER_S else "MISS"
        print(
            f"| {writers} | {' / '.join(f'{r:,.0f}' for r in rates)} | {max(rates):,.0f} "
            f"| ≥ {TARGET_EVENTS_PER_S:,}: {verdict} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
