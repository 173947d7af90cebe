"""This process's side of agent presence: it stamps, every few seconds, the agents it
holds a live dashboard socket for (console.domain.presence has the rules)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from quart import Quart
from redis.exceptions import RedisError

from console.domain.presence import stamp_agents
from console.extension import Extension, settings_of
from console.realtime.hub import Hub
from console.redis_ext import RedisExtension

log = logging.getLogger(__name__)

MAX_BEAT_SECONDS = 5.0


class Presence(Extension):
    """Stamps this process's live agent sockets into Redis every few seconds."""

    key = "presence"

    def __init__(self, app: Quart | None = None) -> None:
        self.app: Quart | None = None
        self._task: asyncio.Task[None] | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        self.app = app
        self.register(app)
        app.before_serving(self._start)
        app.after_serving(self._stop)

    @property
    def grace_seconds(self) -> float:
        assert self.app is not None
        return float(settings_of(self.app).agent_grace_seconds)

    def beat_seconds(self) -> float:
        return min(MAX_BEAT_SECONDS, max(self.grace_seconds / 4, 0.2))

    async def _start(self) -> None:
        self._task = asyncio.create_task(self._beat_forever(), name="warmline-presence")

    async def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _beat_forever(self) -> None:
        while True:
            try:
                await self.stamp()
            except (RedisError, OSError) as exc:
                log.warning("could not stamp agent presence: %s", exc)
            await asyncio.sleep(self.beat_seconds())

    async def stamp(self, *extra: str) -> None:
        """Record now as the last time this process saw each of its agents' sockets."""
        assert self.app is not None
        agents = Hub.of(self.app).present_agents(self.grace_seconds) | set(extra)
        await stamp_agents(RedisExtension.of(self.app).client, agents)
