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
from console.domain.records import Agent, AgentStatus, Dial, DialKind, TransferStatus
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
    """Offer waiting transfers, then waiting customers, to available agents; returns
    how many were offered."""
    unit.end_wrap_ups()
    await expire_waiting_transfers(unit)
    routable = await _still_users(unit, unit.routable())
    if not routable:
        return 0
    offered = await _assign_transfers(unit, routable)
    routable = [a for a in routable if a.dial is None]
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


def waiting_transfers(unit: Unit) -> list[Agent]:
    """The agents whose transfer to "any available agent" waits, oldest first."""
    waiting = [a for a in unit.transfers_waiting() if a.transfer_waiting and a.conference]
    return sorted(waiting, key=lambda a: (a.transfer_waiting_since, a.username))


async def _assign_transfers(unit: Unit, routable: list[Agent]) -> int:
    """Waiting transfers go first, ahead of every caller in the line (SPEC §10): each
    takes the longest-idle agent free, who is rung as for any transfer."""
    offered = 0
    for first in waiting_transfers(unit):
        colleague = next((a for a in routable if a.dial is None and a is not first), None)
        if colleague is None:
            break
        name = first.conference or ""
        record = await unit.conference(name)
        transfer = record.transfers.get(first.transfer_waiting or "") if record else None
        first.transfer_waiting, first.transfer_waiting_since = None, 0
        if record is None or transfer is None or transfer.canceled or transfer.expired:
            continue
        if TransferStatus(transfer.status).terminal or derive(record).customer_gone:
            continue
        dial = Dial(
            id=new_dial_id(),
            kind=DialKind.TRANSFER,
            agent=colleague.username,
            created_at=unit.now,
            transfer=transfer.id,
        )
        record.dials[dial.id] = dial
        transfer.to_agent, transfer.dial = colleague.username, dial.id
        colleague.status, colleague.since = AgentStatus.RINGING, unit.now
        colleague.conference, colleague.dial = name, dial.id
        unit.effects.append(PlaceCall(name, dial.id, colleague.username, DialKind.TRANSFER))
        offered += 1
    return offered


async def expire_waiting_transfers(unit: Unit) -> None:
    """A transfer that waited TRANSFER_WAIT_SECONDS for an agent fails
    (``no-agent-available``); the customer stays with the first agent."""
    cutoff = unit.now - unit.settings.transfer_wait_seconds * 1000
    for first in waiting_transfers(unit):
        if first.transfer_waiting_since > cutoff:
            continue
        record = await unit.conference(first.conference or "")
        transfer = record.transfers.get(first.transfer_waiting or "") if record else None
        if transfer is not None:
            transfer.expired = True
        first.transfer_waiting, first.transfer_waiting_since = None, 0
