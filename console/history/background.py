"""A part of the app that runs one task in the background, from when the app starts
serving until it stops, with the app's Redis and PostgreSQL clients once they are
open (the history writer, the daily purge). The history layer knows no web
framework: the app is anything with the hooks of ``App``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from console.tasks import cancel


class App(Protocol):
    """What a background part needs of the app it serves with (a Quart app)."""

    extensions: dict[str, Any]

    def before_serving(self, func: Callable[[], Any]) -> Any: ...

    def after_serving(self, func: Callable[[], Any]) -> Any: ...


class BackgroundPart:
    """Runs ``_run`` as one task. ``redis`` and ``pool`` give the app's clients once it
    serves (warmline/app.py); register the part before them, so it stops first."""

    key = ""
    task_name = ""

    def __init__(self, redis: Callable[[], Redis], pool: Callable[[], AsyncConnectionPool]) -> None:
        self._redis = redis
        self._pool = pool
        self._task: asyncio.Task[None] | None = None

    def init_app(self, app: App) -> None:
        """Start with the app, stop before it closes its clients (hooks run in
        registration order)."""
        app.extensions[self.key] = self
        app.before_serving(self.start)
        app.after_serving(self.stop)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        await cancel(self._task)

    async def clients_open(self) -> None:
        """Wait until the app's clients are open (the part starts before them)."""
        while True:
            try:
                self._redis(), self._pool()
                return
            except Exception:  # not open yet
                await asyncio.sleep(0.05)

    async def _run(self) -> None:
        raise NotImplementedError
