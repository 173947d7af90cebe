"""Routing: the next waiting customer goes to the longest-idle available agent.

Assignment happens inside a unit of work (see ``console.domain.transaction``), so the choice of
agent and the agent's move to ``ringing`` commit together or not at all: no two
processes can offer one customer twice or one agent two customers.
"""

from __future__ import annotations

import secrets

from console.domain import keys
from console.domain.derive import derive
from console.domain.effects import PlaceCall
from console.domain.records import Agent, AgentStatus, Dial, DialKind
from console.domain.unit import Unit


def new_dial_id() -> str:
    """A participant label that can never look like a CallSid (error 16024)."""
    return "dial-" + secrets.token_hex(8)


async def _still_users(unit: Unit, agents: list[Agent]) -> list[Agent]:
    """The agents whose user still exists; a removed one (``warmline user remove``) is
    set offline here rather than dialed until their presence runs out (their softphone
    may still be registered with Twilio)."""
    if not agents:
        return agents
    records = await unit.redis.hmget(keys.USERS, [a.username for a in agents])
    kept = []
    for agent, record in zip(agents, records, strict=True):
        if record is None:
            unit.set_status(agent, AgentStatus.OFFLINE)
        else:
            kept.append(agent)
    return kept


async def assign(unit: Unit) -> int:
    """Offer waiting customers to available agents; returns how many were offered."""
    unit.end_wrap_ups()
    offered = 0
    routable = await _still_users(unit, unit.routable())
    if not routable:
        return 0
    offers = list(zip(await unit.waiting(len(routable)), routable, strict=False))
    await unit.preload([name for name, _ in offers])
    for name, agent in offers:
        record = await unit.conference(name)
        if record is None:
            unit.dequeue(name, "hung-up")  # no record: nothing could ever connect it
            continue
        if derive(record).customer_gone:
            continue
        dial = Dial(
            id=new_dial_id(), kind=DialKind.AGENT, agent=agent.username, created_at=unit.now
        )
        record.dials[dial.id] = dial
        agent.status, agent.since = AgentStatus.RINGING, unit.now
        agent.conference, agent.dial = name, dial.id
        unit.effects.append(PlaceCall(name, dial.id, agent.username, DialKind.AGENT))
        offered += 1
    return offered
