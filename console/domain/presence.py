"""An available agent's presence is their dashboard socket (docs/call-flow.md, presence).

Each process stamps, every few seconds, the agents it holds a live socket for;
the routing sweep marks offline the available agents nobody has stamped within
``AGENT_GRACE_SECONDS`` (counted from when they became available, so an agent set
available through the API alone has the same grace). A brief network blip costs
nothing, but callers never ring into a tab that was closed or has frozen.
"""

from __future__ import annotations

from redis.asyncio import Redis

from console.domain import keys
from console.domain.events import now_ms
from console.domain.records import AgentStatus
from console.domain.unit import Unit


async def stamp_agents(redis: Redis, agents: set[str]) -> None:
    """Record now as the last time a live socket of each of ``agents`` was seen."""
    if agents:
        await redis.hset(keys.SOCKETS, mapping=dict.fromkeys(agents, now_ms()))


# Signed-in statuses kept only while the agent's dashboard is there: on break or in
# wrap-up an agent who closed the tab must not count as signed in (SPEC §10).
PRESENT = frozenset({AgentStatus.AVAILABLE, AgentStatus.BREAK, AgentStatus.WRAP_UP})


def mark_absent_offline(unit: Unit, last_seen: dict[str, str], grace_seconds: float) -> list[str]:
    """Agents signed in without a call (available, on break, in wrap-up) whose socket
    has been gone past the grace period go offline."""
    cutoff = unit.now - int(grace_seconds * 1000)
    gone = []
    for agent in unit.agents.values():
        if agent.status not in PRESENT or agent.dial is not None:
            continue
        seen = max(int(last_seen.get(agent.username, 0)), agent.since)
        if seen < cutoff:
            unit.set_status(agent, AgentStatus.OFFLINE)
            gone.append(agent.username)
    return gone
