"""Filling the history's tables by hand (schema 0001) for tests that read them, so
they do not depend on the history writer: calls with their legs and transfers, and
events copied from the Redis event log."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from redis.asyncio import Redis

from console.domain import keys, timeline
from console.domain.events import Event


@dataclass
class Leg:
    agent: str
    joined_at: int
    left_at: int | None = None
    role: str = "agent"
    hold_ms: int = 0
    call_sid: str = ""


@dataclass
class Call:
    """A row of ``calls``; ``agents`` defaults to the legs' and transfers' agents. Rows
    already there (the writer's) are left as they are."""

    id: str
    arrived_at: int
    kind: str = "inbound"
    from_number: str | None = "+15550100"
    answered_at: int | None = None
    answered_by: str | None = None
    ended_at: int | None = None
    outcome: str | None = "completed"
    wait_ms: int | None = None
    talk_ms: int = 0
    hold_ms: int = 0
    disposition: str | None = None
    notes: str | None = None
    recording: dict[str, Any] | None = None
    voicemail: dict[str, Any] | None = None
    legs: list[Leg] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    agents: list[str] | None = None


def answered(call_id: str, arrived_at: int, agent: str, **more: Any) -> Call:
    """A call ``agent`` answered after 5 s and talked on for a minute."""
    values: dict[str, Any] = {
        "answered_at": arrived_at + 5_000,
        "answered_by": agent,
        "ended_at": arrived_at + 65_000,
        "wait_ms": 5_000,
        "talk_ms": 60_000,
        "legs": [Leg(agent, arrived_at + 5_000, arrived_at + 65_000)],
    }
    values.update(more)
    return Call(call_id, arrived_at, **values)


async def insert_calls(pg: AsyncConnection[Any], calls: list[Call]) -> None:
    for call in calls:
        agents = call.agents
        if agents is None:
            named = [leg.agent for leg in call.legs if leg.role == "agent"]
            for transfer in call.transfers:
                named += [transfer.get("from_agent"), transfer.get("to_agent")]
            agents = sorted({a for a in named if a})
        await pg.execute(
            "INSERT INTO calls (id, kind, from_number, arrived_at, answered_at, answered_by,"
            " ended_at, outcome, wait_ms, talk_ms, hold_ms, disposition, notes, recording,"
            " voicemail, agents, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (
                call.id,
                call.kind,
                call.from_number,
                call.arrived_at,
                call.answered_at,
                call.answered_by,
                call.ended_at,
                call.outcome,
                call.wait_ms,
                call.talk_ms,
                call.hold_ms,
                call.disposition,
                call.notes,
                None if call.recording is None else Jsonb(call.recording),
                None if call.voicemail is None else Jsonb(call.voicemail),
                agents,
                call.ended_at or call.arrived_at,
            ),
        )
        for position, leg in enumerate(call.legs):
            await pg.execute(
                "INSERT INTO call_legs (call_id, position, call_sid, agent, role, joined_at,"
                " left_at, hold_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (
                    call.id,
                    position,
                    leg.call_sid or f"CA{call.id[-8:]}{position}",
                    leg.agent,
                    leg.role,
                    leg.joined_at,
                    leg.left_at,
                    leg.hold_ms,
                ),
            )
        for transfer in call.transfers:
            await pg.execute(
                "INSERT INTO call_transfers (call_id, id, status, requested_at, ended_at, data)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    call.id,
                    transfer["id"],
                    transfer["status"],
                    transfer.get("created_at"),
                    transfer.get("updated_at"),
                    Jsonb(transfer),
                ),
            )


async def store_stream_events(pg: AsyncConnection[Any], redis: Redis) -> int:
    """Copy the whole event log (``wl:events``) into ``events``, as the writer would;
    an event without a conference is filed under the one its timeline entry names
    (a caller's ``call.queued``/``call.dequeued``). Returns how many were stored."""
    entries = await redis.xrange(keys.EVENTS)
    stored = 0
    for entry_id, fields in entries:
        if fields["type"] == "queue.updated":
            continue  # the writer does not store them either
        ms, seq = (int(part) for part in entry_id.split("-"))
        data = json.loads(fields["data"])
        conference = fields.get("conference") or None
        if conference is None:
            event = Event(fields["type"], data, int(fields["ts"]))
            made = timeline.entry_for(event)
            conference = made[0] if made else None
        await pg.execute(
            "INSERT INTO events (id, ms, seq, type, ts, conference, audience, data)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (
                entry_id,
                ms,
                seq,
                fields["type"],
                int(fields["ts"]),
                conference,
                fields["audience"],
                Jsonb(data),
            ),
        )
        stored += 1
    return stored
