"""This process's side of agent presence: it stamps, every few seconds, the agents it
holds a live dashboard socket for (console.domain.presence has the rules), and every
socket it holds, so that each user's count of open sockets stays true across the
deployment (console.domain.sockets)."""

from __future__ import annotations

import asyncio
import logging

from quart import Quart
from redis.exceptions import RedisError

from console.domain.presence import stamp_agents
from console.domain.sockets import stamp_sockets
from console.extension import ServingExtension, settings_of
from console.realtime.hub import Hub
from console.redis_ext import RedisExtension
from console.tasks import cancel

log = logging.getLogger(__name__)

MAX_BEAT_SECONDS = 5.0


class Presence(ServingExtension):
    """Stamps this process's live agent sockets into Redis every few seconds."""

    key = "presence"

    def __init__(self, app: Quart | None = None) -> None:
        self._task: asyncio.Task[None] | None = None
        if app is not None:
            self.init_app(app)

    @property
    def grace_seconds(self) -> float:
        assert self.app is not None
        return float(settings_of(self.app).agent_grace_seconds)

    def beat_seconds(self) -> float:
        return min(MAX_BEAT_SECONDS, max(self.grace_seconds / 4, 0.2))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._beat_forever(), name="warmline-presence")

    async def stop(self) -> None:
        await cancel(self._task)

    async def _beat_forever(self) -> None:
        while True:
            try:
                await self.stamp()
            except (RedisError, OSError) as exc:
                log.warning("could not stamp agent presence: %s", exc)
            try:
                await self.stamp_sockets()
            except (RedisError, OSError) as exc:
                log.warning("could not stamp open sockets: %s", exc)
            await asyncio.sleep(self.beat_seconds())

    async def stamp(self, *extra: str) -> None:
        """Record now as the last time this process saw each of its agents' sockets."""
        assert self.app is not None
        agents = Hub.of(self.app).present_agents(self.grace_seconds) | set(extra)
        await stamp_agents(RedisExtension.of(self.app).client, agents)

    async def stamp_sockets(self) -> None:
        """Record now as the last time this process saw each of its open sockets."""
        assert self.app is not None
        held = Hub.of(self.app).open_sockets()
        await stamp_sockets(RedisExtension.of(self.app).client, held)
