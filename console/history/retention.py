"""The daily purge (docs/history.md, retention): every process with a database runs
this in the background; once a day of CENTER_TIMEZONE one of them purges
(console/history/purge.py) under the purge's advisory lock and notes the day in
Redis, so the others find it done. A process that finds the lock taken skips: the
holder is purging."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from redis.asyncio import Redis
from redis.exceptions import RedisError

from console.domain import keys
from console.domain.events import now_ms
from console.history import purge
from console.history.background import App, BackgroundPart

log = logging.getLogger(__name__)

# The day (ISO date in CENTER_TIMEZONE) of the last purge.
PURGED_ON = keys.PREFIX + "history:purged-on"
FIRST_DELAY_SECONDS = 60.0  # after start-up, when the app has settled
CHECK_EVERY_SECONDS = 3_600.0


class DailyPurge(BackgroundPart):
    """Runs ``purge`` once a day across the deployment. ``redis``, ``pool`` and
    ``delete_recording`` give the app's parts once it serves (warmline/app.py)."""

    key = "history_retention"
    task_name = "warmline-daily-purge"

    def __init__(
        self,
        redis: Callable[[], Redis],
        pool: Callable[[], AsyncConnectionPool],
        delete_recording: purge.DeleteRecording,
        retention_days: int,
        zone: ZoneInfo,
        app: App | None = None,
    ) -> None:
        super().__init__(redis, pool)
        self.delete_recording = delete_recording
        self.retention_days = retention_days
        self.zone = zone
        self.first_delay = FIRST_DELAY_SECONDS
        self.check_every = CHECK_EVERY_SECONDS
        self.last: purge.Purged | None = None  # what this process last purged
        if app is not None:
            self.init_app(app)

    async def _run(self) -> None:
        await asyncio.sleep(self.first_delay)
        await self.clients_open()
        while True:
            try:
                await self.run_once()
            except (RedisError, OSError, psycopg.Error, PoolTimeout) as exc:
                log.warning("daily purge: not run (%s); trying again later", exc)
            except Exception:
                log.exception("daily purge failed; trying again later")
            await asyncio.sleep(self.check_every)

    def today(self) -> str:
        return datetime.now(self.zone).date().isoformat()

    async def run_once(self) -> purge.Purged | None:
        """Purge unless today's purge is done or running elsewhere; what was purged,
        or None when this process did not purge."""
        day = self.today()
        redis = self._redis()
        if await redis.get(PURGED_ON) == day:
            return None
        async with self._pool().connection() as conn:
            if not await purge.try_lock(conn):
                return None
            try:
                if await redis.get(PURGED_ON) == day:  # done by the holder just before
                    return None
                cutoff = purge.cutoff_ms(self.retention_days, now_ms())
                done = await purge.purge(conn, cutoff, self.delete_recording)
                await redis.set(PURGED_ON, day)
            finally:
                await purge.unlock(conn)
        log.info("daily purge: %s", done.summary())
        if done.kept:
            log.warning("daily purge: kept %d calls whose recordings remain", len(done.kept))
        self.last = done
        return done
