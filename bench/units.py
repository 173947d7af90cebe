"""Unit-of-work benchmark (issue 21, "costs that grow with the work"): what one unit
costs as the floor grows, with no HTTP in the way.

Against a throwaway redis-server, in this process (one client, so units start from
its copy of the state as in a serving process), two series:

- agents: ``--agents`` agents signed in (busy, so none is routed to), the line
  empty at first;
- line: ``--line`` callers waiting, no agents;
- changes: ``--agents`` agents signed in, each unit moving one of them (in turn)
  between a break and offline: what keeping the agents' index current costs.

Each unit is an incoming call joining the back of the line (``flow.enqueue_call``,
the Voice URL's unit). A unit once read and compared every agent, so its cost grew
with the floor; it now reads only the agents it touches and asks the index beside
the copy about the rest (console/domain/agent_index.py).

Each point runs ``--units`` units after one warm-up and reports the median and p90
wall time per unit and the process's CPU per unit.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import time
from typing import Any

from bench.measure import percentile
from bench.servers import server_env
from console.config import Settings
from console.domain import keys
from console.domain.flow import enqueue_call
from console.domain.records import Agent, AgentStatus
from console.domain.transaction import run_unit
from console.redis_ext import connect
from simulator.testing import call_sid
from warmline.embedded_redis import free_port, start_redis

CALLER = "+15550001111"


async def timed(units: int, unit: Any) -> dict[str, float]:
    """Run ``unit()`` ``units`` times; wall ms per unit (median, p90) and CPU ms."""
    walls = []
    cpu = time.process_time()
    for _ in range(units):
        began = time.perf_counter()
        await unit()
        walls.append((time.perf_counter() - began) * 1000)
    return {
        "median_ms": statistics.median(walls),
        "p90_ms": percentile(walls, 90),
        "cpu_ms": (time.process_time() - cpu) * 1000 / units,
    }


async def join(redis: Any, settings: Settings) -> None:
    """One incoming call's unit: the caller joins the back of the line."""
    sid = call_sid()
    await run_unit(redis, settings, lambda u: enqueue_call(u, sid, CALLER), conferences=(sid,))


async def store_busy_agents(redis: Any, count: int) -> None:
    """A fresh state with ``count`` agents signed in and busy."""
    await redis.flushall()
    for start in range(0, count, 1000):
        chunk = {
            f"agent{i}": Agent(username=f"agent{i}", status=AgentStatus.BUSY).to_json()
            for i in range(start, min(count, start + 1000))
        }
        await redis.hset(keys.AGENTS, mapping=chunk)


async def agents_series(redis: Any, settings: Settings, counts: list[int], units: int) -> list:
    rows = []
    for count in counts:
        await store_busy_agents(redis, count)
        await join(redis, settings)
        rows.append({"agents": count, **await timed(units, lambda: join(redis, settings))})
    return rows


async def change(redis: Any, settings: Settings, name: str, on_break: bool) -> None:
    """One unit changing agent ``name``'s status (a break, or offline)."""

    async def flip(unit: Any) -> None:
        status = AgentStatus.BREAK if on_break else AgentStatus.OFFLINE
        unit.set_status(unit.agent(name), status, "lunch" if on_break else None)

    await run_unit(redis, settings, flip)


async def changes_series(redis: Any, settings: Settings, counts: list[int], units: int) -> list:
    rows = []
    for count in counts:
        await store_busy_agents(redis, count)
        turns = itertools.count()

        async def unit(turns: Any = turns, count: int = count) -> None:
            turn = next(turns)
            await change(redis, settings, f"agent{turn % count}", turn // count % 2 == 0)

        await unit()
        rows.append({"agents": count, **await timed(units, unit)})
    return rows


async def line_series(redis: Any, settings: Settings, lengths: list[int], units: int) -> list:
    rows = []
    for length in lengths:
        await redis.flushall()

        for _ in range(length):
            await join(redis, settings)
        rows.append({"line": length, **await timed(units, lambda: join(redis, settings))})
    return rows


async def run(args: argparse.Namespace) -> tuple[list, list]:
    with tempfile.TemporaryDirectory(prefix="warmline-bench-units-") as workdir:
        server = start_redis(workdir)
        redis = connect(server.url)
        # Twilio is never called: the units only queue callers.
        settings = Settings.from_env(server_env(server.url, "http://127.0.0.1:9", free_port()))
        try:
            agents = await agents_series(redis, settings, args.agents, args.units)
            line = await line_series(redis, settings, args.line, args.units)
            changes = await changes_series(redis, settings, args.agents, args.units)
        finally:
            await redis.aclose()
            server.stop()
    return agents, line, changes


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("units", help="a unit of work's cost against agents and line")
    parser.add_argument("--agents", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--line", type=int, nargs="+", default=[30, 1000, 3000, 10000])
    parser.add_argument("--units", type=int, default=200, help="units timed per point")
    parser.set_defaults(main=main)


def main(args: argparse.Namespace) -> int:
    agents, line, changes = asyncio.run(run(args))
    print("| agents stored | median ms per unit | p90 ms | CPU ms per unit |")
    print("| ---: | ---: | ---: | ---: |")
    for row in agents:
        print(
            f"| {row['agents']:,} | {row['median_ms']:.3f} | {row['p90_ms']:.3f} "
            f"| {row['cpu_ms']:.3f} |"
        )
    print()
    print("| callers waiting | median ms per join | p90 ms | CPU ms per join |")
    print("| ---: | ---: | ---: | ---: |")
    for row in line:
        print(
            f"| {row['line']:,} | {row['median_ms']:.3f} | {row['p90_ms']:.3f} "
            f"| {row['cpu_ms']:.3f} |"
        )
    print()
    print("| agents stored | median ms per agent change | p90 ms | CPU ms per change |")
    print("| ---: | ---: | ---: | ---: |")
    for row in changes:
        print(
            f"| {row['agents']:,} | {row['median_ms']:.3f} | {row['p90_ms']:.3f} "
            f"| {row['cpu_ms']:.3f} |"
        )
    return 0
