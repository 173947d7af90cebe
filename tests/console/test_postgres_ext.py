"""console.postgres_ext: the pool opens with the app, never blocks its start, and an app
without a database says history is unavailable."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
from psycopg_pool import PoolTimeout
from quart import Quart

from console.postgres_ext import HistoryUnavailable, PostgresExtension, get_pool
from tests.conftest import make_settings
from warmline.app import create_app
from warmline.embedded_redis import free_port


async def test_the_history_app_queries_its_database(history_app) -> None:
    async with history_app.app_context(), get_pool().connection() as conn:
        row = await (await conn.execute("SELECT count(*) AS n FROM calls")).fetchone()
    assert row == {"n": 0}


async def test_an_app_without_a_database_has_no_history(app) -> None:
    async with app.app_context():
        with pytest.raises(HistoryUnavailable):
            get_pool()


async def test_a_database_that_is_down_neither_blocks_start_nor_hangs_a_query(
    redis, redis_server
) -> None:
    down = f"postgresql://warmline@127.0.0.1:{free_port()}/warmline"
    app = create_app(make_settings(), redis_url=redis_server.url, database_url=down)
    async with app.test_app(), app.app_context():
        pool = get_pool()
        pool.timeout = 0.5  # the test need not wait the full POOL_TIMEOUT_SECONDS
        with pytest.raises(PoolTimeout):
            async with pool.connection():
                pass


def test_a_loop_that_ends_without_after_serving_still_ends() -> None:
    """Hypercorn skips after_serving when it cannot bind: the process must still exit,
    although psycopg_pool's workers swallow the cancellation of a connection attempt
    (here one that a listener which never answers keeps waiting)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"postgresql://warmline@127.0.0.1:{silent.getsockname()[1]}/warmline"

        async def serve_then_give_up() -> None:
            app = Quart(__name__)
            PostgresExtension(app, url=url)
            await app.startup()  # before_serving, as Hypercorn runs it; no shutdown
            await asyncio.sleep(0.5)  # the pool's workers are connecting

        runner = threading.Thread(target=asyncio.run, args=(serve_then_give_up(),), daemon=True)
        runner.start()
        runner.join(timeout=20)
        assert not runner.is_alive(), "the event loop never finished"
