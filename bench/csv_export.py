"""CSV export benchmark (issue 17): ``GET /api/calls.csv`` of 100,000 calls streams in
bounded memory.

``python -m bench.csv_export [--calls 100000]``: a throwaway PostgreSQL and
redis-server, November 2026 filled with ``--calls`` answered calls (each with a
leg, every tenth with a transfer), `warmline serve` (one worker, in-process) on
them, a supervisor signed in. The server's RSS is sampled every 5 ms (psutil)
at rest and during each export; exports of 1,000 rows and of every row, read as
fast as they come and read slowly (10 ms per 64 KiB), so memory that grew with
the rows or with a slow reader would show. Every export's rows are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import psutil
import psycopg
from redis.asyncio import Redis

from bench.servers import start_server
from console.domain.users import add_user
from console.history.migrate import upgrade
from simulator.testing import ACCOUNT_SID, AUTH_TOKEN, TwilioDouble
from warmline.embedded_postgres import start_postgres
from warmline.embedded_redis import start_redis

MB = 1024 * 1024
PASSWORD = "bench-password-123"
NOVEMBER = 1_793_491_200_000  # 2026-11-01T00:00Z
MONTH_MS = 30 * 86_400_000

FILL = """
INSERT INTO calls (id, kind, from_number, arrived_at, answered_at, answered_by, ended_at,
                   outcome, wait_ms, talk_ms, hold_ms, disposition, notes, agents, updated_at)
SELECT 'CA' || lpad(to_hex(n), 32, '0'), 'inbound', '+1555' || lpad((n % 10000000)::text, 7, '0'),
       a, a + 9000, 'agent' || (n % 150), a + 190000, 'completed', 9000, 170000, 11000,
       'Resolved', CASE WHEN n % 5 = 0 THEN 'called back about the invoice, all settled' END,
       ARRAY['agent' || (n % 150)], a + 190000
FROM generate_series(1, {calls}) AS n, LATERAL (SELECT {start} + n::bigint * {step} AS a) t;
INSERT INTO call_legs (call_id, position, call_sid, agent, role, joined_at, left_at, hold_ms)
SELECT id, 0, 'CL' || substr(id, 3), answered_by, 'agent', answered_at, ended_at, 11000
FROM calls;
INSERT INTO call_transfers (call_id, id, status, requested_at, ended_at, data)
SELECT id, 'TR' || substr(id, 3), 'completed', answered_at + 60000, answered_at + 90000,
       jsonb_build_object('id', 'TR' || substr(id, 3), 'status', 'completed',
                          'from_agent', answered_by, 'to_agent', 'agent7')
FROM calls WHERE right(id, 1) = '0'
"""


class Sampler:
    """The peak RSS of a process, sampled every 5 ms in a thread."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def export(
    session: aiohttp.ClientSession, url: str, query: str, pause: float
) -> tuple[int, int, float]:
    """Read one export: (lines after the header, bytes, seconds)."""
    began = time.monotonic()
    lines = size = 0
    async with session.get(f"{url}/api/calls.csv?{query}") as response:
        if response.status != 200:
            raise RuntimeError(f"calls.csv: {response.status} {await response.text()}")
        async for chunk in response.content.iter_chunked(64 * 1024):
            lines += chunk.count(b"\n")
            size += len(chunk)
            if pause:
                await asyncio.sleep(pause)
    return lines - 1, size, time.monotonic() - began


async def measure(redis_url: str, calls: int, rounds: int) -> list[dict[str, float]]:
    client = Redis.from_url(redis_url, decode_responses=True)
    await add_user(client, "bench_super", "supervisor", PASSWORD)
    await client.aclose()
    results = []
    with tempfile.TemporaryDirectory(prefix="warmline-bench-") as tmp:
        async with TwilioDouble(ACCOUNT_SID, AUTH_TOKEN) as double:
            server = await start_server("warmline", Path(tmp), redis_url, double.base_url)
            try:
                worker = server.worker()
                jar = aiohttp.CookieJar(unsafe=True)  # cookies of 127.0.0.1
                async with aiohttp.ClientSession(cookie_jar=jar) as session:
                    form = {"username": "bench_super", "password": PASSWORD}
                    async with session.post(
                        server.url + "/login", data=form, allow_redirects=False
                    ) as response:
                        assert response.status == 303, response.status
                    whole = "from=2026-11-01&to=2026-11-30"
                    async with session.get(server.url + "/api/calls?limit=10") as response:
                        assert response.status == 200, response.status  # warm
                    await export(session, server.url, "from=2026-11-30&to=2026-11-30", 0)
                    await asyncio.sleep(1)
                    rest = worker.memory_info().rss
                    cases = [
                        ("1 day (fast reader)", "from=2026-11-30&to=2026-11-30", 0.0),
                        ("every row (fast reader)", whole, 0.0),
                        ("every row (slow reader)", whole, 0.01),
                    ]
                    for number in range(1, rounds + 1):
                        for name, query, pause in cases:
                            with Sampler(worker) as sampler:
                                rows, size, took = await export(session, server.url, query, pause)
                            results.append(
                                {
                                    "round": number,
                                    "case": name,
                                    "rows": rows,
                                    "mb": size / MB,
                                    "seconds": took,
                                    "rest_mb": rest / MB,
                                    "peak_mb": sampler.peak / MB,
                                    "after_mb": worker.memory_info().rss / MB,
                                }
                            )
                            print(
                                f"round {number} {name}: {rows:,} rows, {size / MB:.1f} MB in "
                                f"{took:.1f} s; RSS at rest {rest / MB:.1f} MB, peak "
                                f"{sampler.peak / MB:.1f} MB",
                                flush=True,
                            )
            finally:
                server.stop()
    return results


def fill(database_url: str, calls: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        text = FILL.format(calls=int(calls), start=NOVEMBER, step=MONTH_MS // (calls + 1))
        for statement in text.split(";"):
            conn.execute(statement.encode())  # numbers only: no parameters needed
        conn.execute("VACUUM ANALYZE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.csv_export")
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="warmline-bench-pg-"))
    folder.chmod(0o755)
    postgres = start_postgres(folder, durable=False)
    redis = start_redis(persist=False)
    try:
        upgrade(postgres.url)
        fill(postgres.url, args.calls)
        os.environ["DATABASE_URL"] = postgres.url  # the server's (bench.servers.server_env)
        results = asyncio.run(measure(redis.url, args.calls, args.rounds))
    finally:
        redis.stop()
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)
    print("\n| export | rows | MB | s | RSS at rest MB | peak RSS MB | peak - rest MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['case']} (round {r['round']}) | {r['rows']:,} | {r['mb']:.1f} "
            f"| {r['seconds']:.1f} | {r['rest_mb']:.1f} | {r['peak_mb']:.1f} "
            f"| {r['peak_mb'] - r['rest_mb']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
