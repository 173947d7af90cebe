"""The history writer through a PostgreSQL crash (issue 21): `warmline serve` with its
writer process, calls flowing, the database server killed (SIGKILL to the postmaster
and every backend) and started again on the same data directory and port. Nothing is
lost or stored twice, the lag drains, and the same writer process reconnects on its
own. test_writer.py's outage goes through a closed port; this is the real server."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import psycopg
import pytest
from redis.asyncio import Redis

from console.domain import keys
from console.history.calls import NOT_STORED
from simulator.testing import TwilioDouble
from tests.support.flow_helpers import customer_waits, hang_up_customer
from tests.support.postgres import crash_postgres, remove_cluster, start_durable_postgres
from tests.support.servers import app_server
from tests.support.waiting import until
from tests.system.test_faults_servers import twilio_voice
from tests.warmline.test_history_process import writers_of

pytestmark = pytest.mark.timeout(180)

CALLS_BEFORE = 3  # calls stored before the crash: the writer is running
CALLS_DOWN = 4  # calls made while PostgreSQL is down: webhooks go on without it
CALLS_AFTER = 3  # calls made after the restart, while the writer catches up


def query(url: str, sql: str) -> list[str]:
    with psycopg.connect(url, connect_timeout=2) as conn:
        return [row[0] for row in conn.execute(sql)]


async def stored_event_ids(url: str) -> list[str]:
    """Every row of ``events`` by id, duplicates kept (none may be)."""
    return await asyncio.to_thread(query, url, "SELECT id FROM events ORDER BY id")


async def abandoned_calls(url: str) -> list[str]:
    return await asyncio.to_thread(
        query, url, "SELECT id FROM calls WHERE outcome = 'abandoned' ORDER BY id"
    )


async def log_event_ids(redis: Redis) -> list[str]:
    """The log's events the history stores (all but the whole-line pictures)."""
    entries = await redis.xrange(keys.EVENTS)
    return sorted(i for i, fields in entries if fields["type"] not in NOT_STORED)


async def history_metrics(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("warmline_history")
    }


async def healthz(url: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as session, session.get(url + "/healthz") as response:
        assert response.status == 200
        return await response.json()


async def test_a_killed_and_restarted_postgresql_loses_nothing_and_the_writer_reconnects(
    redis_server, redis: Redis, twilio: TwilioDouble, tmp_path: Path
) -> None:
    postgres = start_durable_postgres(tmp_path / "postgres")
    port, url = postgres.port, postgres.url
    made: list[str] = []  # conferences whose call has ended, in order
    stop = asyncio.Event()
    try:
        async with app_server(
            redis_server.url, twilio.base_url, tmp_path, DATABASE_URL=url
        ) as server:
            [writer] = writers_of(server.process.pid)
            async with twilio_voice(redis, twilio, server.url) as voice:

                async def calls() -> None:
                    """Callers one after another, each waiting then hanging up."""
                    while not stop.is_set():
                        name = await customer_waits(voice)
                        await hang_up_customer(
                            voice, name, "participant-with-end-conference-on-exit-left"
                        )
                        made.append(name)

                async def made_at_least(count: int) -> bool:
                    if load.done():
                        load.result()  # a failed webhook fails the test here
                    return len(made) >= count

                load = asyncio.create_task(calls())
                try:
                    # The writer stores as calls flow.
                    async def some_stored() -> bool:
                        await made_at_least(0)
                        return len(await abandoned_calls(url)) >= CALLS_BEFORE

                    await until(some_stored)

                    crash_postgres(postgres)  # mid-load: calls go on being made
                    down_from = len(made)
                    await until(lambda: made_at_least(down_from + CALLS_DOWN))

                    # The writer is failing: it says so, and the lag grows.
                    async def failing() -> bool:
                        return "PostgreSQL unavailable" in server.output()

                    await until(failing)
                    assert (await history_metrics(server.url))["warmline_history_lag_events"] > 0

                    # Started again on the same data (crash recovery) and port, while
                    # calls go on.
                    postgres = await asyncio.to_thread(
                        start_durable_postgres, tmp_path / "postgres", port
                    )
                    up_from = len(made)
                    await until(lambda: made_at_least(up_from + CALLS_AFTER))
                finally:
                    stop.set()
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait_for(load, 30)

            # Every event of the log stored exactly once, every call with its row.
            async def caught_up() -> bool:
                return await stored_event_ids(url) == await log_event_ids(redis)

            await until(caught_up, within=60)
            assert await abandoned_calls(url) == sorted(made)
            assert len(made) >= CALLS_BEFORE + CALLS_DOWN + CALLS_AFTER

            # The lag drained, as the metrics and /healthz report it.
            async def drained() -> bool:
                metrics = await history_metrics(server.url)
                return metrics["warmline_history_lag_events"] == 0

            await until(drained)
            metrics = await history_metrics(server.url)
            assert metrics["warmline_history_lag_seconds"] == 0
            assert metrics["warmline_history_events_lost_total"] == 0
            assert await healthz(server.url) == {"status": "ok"}

            # The same writer process reconnected: it was never restarted.
            assert [p.pid for p in writers_of(server.process.pid)] == [writer.pid]
            assert "history writer process exited" not in server.output()
    finally:
        stop.set()
        remove_cluster(postgres)
