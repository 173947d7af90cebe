"""An available agent's presence is their dashboard socket (SPEC §1.1).

Each process stamps, every few seconds, the agents it holds a live socket for;
the routing sweep marks offline the available agents nobody has stamped within
``AGENT_GRACE_SECONDS`` (counted from when they became available, so an agent set
available through the API alone has the same grace). A brief network blip costs
nothing, but callers never ring into a tab that was closed or has frozen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from quart import Quart, current_app
from redis.asyncio import Redis
from redis.exceptions import RedisError

from console import keys
from console.events import now_ms
from console.records import AgentStatus
from console.unit import Unit

log = logging.getLogger(__name__)

MAX_BEAT_SECONDS = 5.0


class Presence:
    """Stamps this process's live agent sockets into Redis, under ``app.extensions``."""

    def __init__(self, app: Quart | None = None) -> None:
        self.app: Quart | None = None
        self._task: asyncio.Task[None] | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        self.app = app
        app.extensions["presence"] = self
        app.before_serving(self._start)
        app.after_serving(self._stop)

    @property
    def grace_seconds(self) -> float:
        assert self.app is not None
        return float(self.app.config["WARMLINE"].agent_grace_seconds)

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
        agents = self.app.extensions["hub"].present_agents(self.grace_seconds) | set(extra)
        if agents:
            redis: Redis = self.app.extensions["redis"].client
            await redis.hset(keys.SOCKETS, mapping=dict.fromkeys(agents, now_ms()))


def mark_absent_offline(unit: Unit, last_seen: dict[str, str], grace_seconds: float) -> list[str]:
    """Available agents whose socket has been gone past the grace period go offline."""
    cutoff = unit.now - int(grace_seconds * 1000)
    gone = []
    for agent in unit.agents.values():
        if agent.status != AgentStatus.AVAILABLE or agent.dial is not None:
            continue
        seen = max(int(last_seen.get(agent.username, 0)), agent.since)
        if seen < cutoff:
            unit.set_status(agent, AgentStatus.OFFLINE)
            gone.append(agent.username)
    return gone


def get_presence() -> Presence:
    return current_app.extensions["presence"]
