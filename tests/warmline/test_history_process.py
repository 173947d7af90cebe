"""`warmline serve` with a database writes history from a process of its own
(warmline/history_process.py): the web worker runs no writer, a writer that dies is
started again and loses nothing, and the writer ends with `serve`, even a killed one."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import psycopg
import pytest
from redis.asyncio import Redis

from console.domain import history_log, keys
from simulator.testing import TwilioDouble
from tests.support.flow_helpers import customer_waits, hang_up_customer
from tests.support.servers import app_server, server_env
from tests.support.waiting import until
from tests.system.test_faults_servers import twilio_voice

pytestmark = pytest.mark.timeout(120)


def writers_of(serve_pid: int) -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process(serve_pid).children(recursive=True)
        if "warmline.history_process" in " ".join(child.cmdline())
    ]


def abandoned_calls(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT id FROM calls WHERE outcome = 'abandoned' ORDER BY id")
        return [row[0] for row in rows]


async def consumers(redis: Redis) -> list[str]:
    answer = await redis.xinfo_consumers(keys.EVENTS, history_log.GROUP)
    return [consumer["name"] for consumer in answer]


async def test_serve_writes_history_from_its_writer_process_which_is_restarted_when_it_dies(
    redis_server, redis: Redis, twilio: TwilioDouble, database_url: str, tmp_path: Path
) -> None:
    async with app_server(
        redis_server.url, twilio.base_url, tmp_path, DATABASE_URL=database_url
    ) as server:
        [writer] = writers_of(server.process.pid)
        async with twilio_voice(redis, twilio, server.url) as voice:
            first = await customer_waits(voice)
            await hang_up_customer(voice, first, "participant-with-end-conference-on-exit-left")

            async def stored(ids: list[str]) -> bool:
                return await asyncio.to_thread(abandoned_calls, database_url) == ids

            await until(lambda: stored([first]))
            # Only the writer process reads the group: the worker (serve's own process,
            # one worker in-process) runs no writer of its own.
            pids = {name.split(":")[1] for name in await consumers(redis)}
            assert pids == {str(writer.pid)}

            writer.send_signal(signal.SIGKILL)  # dies between two calls
            second = await customer_waits(voice)
            await hang_up_customer(voice, second, "participant-with-end-conference-on-exit-left")

            async def restarted() -> bool:
                found = writers_of(server.process.pid)
                return len(found) == 1 and found[0].pid != writer.pid

            await until(restarted)
            await until(lambda: stored(sorted([first, second])))
        [again] = writers_of(server.process.pid)
        assert server.terminate() == 0
        gone, alive = psutil.wait_procs([again], timeout=10)
        assert gone and not alive, "the writer outlived serve"
    assert "history writer process exited" in server.output()


async def test_a_writer_whose_serve_was_killed_ends_too(
    redis_server, twilio: TwilioDouble, database_url: str, tmp_path: Path
) -> None:
    async with app_server(
        redis_server.url, twilio.base_url, tmp_path, DATABASE_URL=database_url
    ) as server:
        [writer] = writers_of(server.process.pid)
        server.process.kill()  # SIGKILL: serve's own clean-up never runs
        server.process.wait()
        gone, alive = psutil.wait_procs([writer], timeout=10)
        assert gone and not alive, "the writer outlived a killed serve"


def test_a_writer_started_for_a_parent_already_gone_ends_at_once(
    redis_server, twilio: TwilioDouble, database_url: str
) -> None:
    """The parent died while the writer was still starting: its parent is then init,
    and only the pid it was given tells it so."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    env = server_env(redis_server.url, twilio.base_url, 9, DATABASE_URL=database_url)
    writer = subprocess.Popen(
        [sys.executable, "-m", "warmline.history_process", str(gone.pid)], env=env
    )
    try:
        assert writer.wait(timeout=15) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
