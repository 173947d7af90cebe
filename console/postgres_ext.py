"""The PostgreSQL pool as a Quart extension: opened in ``before_serving`` without
waiting for the server (a database that is down never stops the app from starting),
closed in ``after_serving``."""

from __future__ import annotations

import asyncio

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from quart import Quart, current_app

from console.extension import ServingExtension
from console.tasks import cancel

# A query waits this long for a connection before failing (the route answers 503).
POOL_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 3
MAX_CONNECTIONS = 10


class HistoryUnavailable(Exception):
    """No database is configured, or it cannot be reached: history is unavailable."""


def make_pool(conninfo: str, max_size: int = MAX_CONNECTIONS) -> AsyncConnectionPool:
    """An unopened pool of autocommit connections to ``conninfo``, rows as dicts."""

    async def configure(conn: AsyncConnection) -> None:
        await conn.set_autocommit(True)

    return AsyncConnectionPool(
        conninfo,
        min_size=1,
        max_size=max_size,
        timeout=POOL_TIMEOUT_SECONDS,
        kwargs={"connect_timeout": CONNECT_TIMEOUT_SECONDS, "row_factory": dict_row},
        configure=configure,
        check=AsyncConnectionPool.check_connection,  # a server restart is noticed
        open=False,
        name="warmline",
    )


class PostgresExtension(ServingExtension):
    """Holds the app's PostgreSQL pool."""

    key = "postgres"

    def __init__(self, app: Quart | None = None, url: str | None = None) -> None:
        self.url = url
        self._pool: AsyncConnectionPool | None = None
        self._guard: asyncio.Task[None] | None = None
        if app is not None:
            self.init_app(app)

    async def start(self) -> None:
        if self.url is None:
            raise RuntimeError("PostgresExtension has no URL")
        pool = make_pool(self.url)
        await pool.open(wait=False)
        self._pool = pool
        self._guard = asyncio.create_task(self._close_if_abandoned(), name="postgres-guard")

    async def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
        await cancel(self._guard)
        self._guard = None

    async def _close_if_abandoned(self) -> None:
        """psycopg_pool's workers swallow cancellation, so a loop that ends without
        the app's after_serving (Hypercorn skips it when it cannot bind) would wait on
        them for ever: the pool is closed when this task is cancelled with the rest."""
        try:
            await asyncio.Future()
        finally:
            pool, self._pool = self._pool, None
            if pool is not None:
                await pool.close(timeout=1.0)

    @property
    def pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise HistoryUnavailable("PostgreSQL is not connected: the app is not serving")
        return self._pool


def get_pool() -> AsyncConnectionPool:
    """The current app's pool; HistoryUnavailable when the app has no database."""
    part = current_app.extensions.get(PostgresExtension.key)
    if part is None:
        raise HistoryUnavailable("history is unavailable: no database is configured")
    return PostgresExtension.of(current_app).pool
