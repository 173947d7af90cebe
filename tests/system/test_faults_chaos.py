"""Callbacks delayed, duplicated and reordered over many seeded runs (issue 7
"Faults"): the simulator's chaos drives the call flow (docs/call-flow.md) with a
hold and a warm transfer, and every step's picture of /api/state (sids and times
left out) equals the orderly run's. tests/simulator/test_simulator.py runs seeds
1-3 of the same flow; this runs ``WARMLINE_CHAOS_SEEDS`` more (default 10), from
seed 101."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from redis.asyncio import Redis

from simulator import Chaos
from tests.simulator.test_simulator import scripted_flow
from warmline.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.timeout(600)

SEEDS = range(101, 101 + int(os.environ.get("WARMLINE_CHAOS_SEEDS", "10")))


async def test_chaos_over_many_seeds_ends_as_the_orderly_run(
    redis_server: EmbeddedRedis, redis: Redis, tmp_path: Path
) -> None:
    *orderly, calm = await scripted_flow(redis_server, redis, tmp_path, None)
    assert calm == (0, 0)
    assert orderly[2]["transfers"] == [("alice", "bob", "completed", None)]  # handed over
    duplicated = late = 0
    for seed in SEEDS:
        *chaotic, (dups, lates) = await scripted_flow(
            redis_server, redis, tmp_path, Chaos(seed=seed)
        )
        assert chaotic == orderly, f"seed {seed}"
        duplicated += dups
        late += lates
    assert duplicated and late  # the runs were disorderly
    print(f"{len(SEEDS)} seeds: {duplicated} duplicated and {late} late callbacks survived")
