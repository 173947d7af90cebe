"""The state snapshot (docs/websocket.md, snapshot), read consistently with the id of the last event
it reflects, and filtered to what one user may see."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from console.domain import help_requests, keys
from console.domain.alerts import Alert
from console.domain.derive import derive, involved_agents
from console.domain.records import Agent, ConferenceRecord, Queued
from console.domain.voicemails import Voicemail


@dataclass
class Snapshot:
    """Everything live, as of the event ``last_id``."""

    last_id: str
    conferences: list[ConferenceRecord]
    queue: list[Queued]
    agents: list[Agent]
    voicemails: list[Voicemail] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    def visible_to(self, username: str | None, supervisor: bool) -> dict[str, Any]:
        """The state shape (docs/websocket.md) for one user (``supervisor``: everything)."""
        conferences, transfers, callbacks, help = [], [], [], []
        for record in self.conferences:
            help += [
                r.public(record.name)
                for r in record.help.values()
                if r.status == help_requests.OPEN and (supervisor or r.agent == username)
            ]
            callback = record.callback
            shown_callback = callback is not None and not callback.successor
            if shown_callback and (supervisor or callback.agent == username):
                callbacks.append(callback.public(record.name))
            view = derive(record)
            if not supervisor and username not in involved_agents(record, view):
                continue
            # Agents never learn of a supervisor listening in (derive.seen_by_agents).
            shown = view.public() if supervisor else view.public_for_agents()
            recording = record.recording
            shown["recording"] = recording.public() if recording is not None else None
            conferences.append(shown)
            transfers += [
                t.public(record.name)
                for t in record.transfers.values()
                if supervisor or username in (t.from_agent, t.to_agent)
            ]
        return {
            "conferences": conferences,
            "queue": [q.public(i) for i, q in enumerate(self.queue, 1)],
            "agents": [a.public() for a in sorted(self.agents, key=lambda a: a.username)],
            "transfers": transfers,
            "voicemails": [
                v.public() for v in self.voicemails if v.visible_to(username, supervisor)
            ],
            "callbacks": sorted(callbacks, key=lambda c: (c["requested_at"], c["id"])),
            "alerts": [asdict(a) for a in self.alerts] if supervisor else [],
            "help": sorted(help, key=lambda r: (r["at"], r["id"])),
        }


async def read_snapshot(redis: Redis) -> Snapshot:
    """Read all live state and the newest event id in one consistent cut: every key
    read is WATCHed, and the read starts over if any of them changed meanwhile."""
    while True:
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(
                    keys.LIVE,
                    keys.AGENTS,
                    keys.QUEUE,
                    keys.QUEUE_INFO,
                    keys.VOICEMAILS,
                    keys.ALERTS,
                    keys.EVENTS,
                )
                names = sorted(await pipe.smembers(keys.LIVE))
                conference_keys = [keys.conference(n) for n in names]
                if conference_keys:
                    await pipe.watch(*conference_keys)
                pipe.multi()
                pipe.xrevrange(keys.EVENTS, count=1)
                pipe.hgetall(keys.AGENTS)
                pipe.lrange(keys.QUEUE, 0, -1)
                pipe.hgetall(keys.QUEUE_INFO)
                pipe.hgetall(keys.VOICEMAILS)
                pipe.hgetall(keys.ALERTS)
                if conference_keys:
                    pipe.mget(conference_keys)
                results = await pipe.execute()
            except WatchError:
                await asyncio.sleep(0)
                continue
        return _build(results)


def _build(results: list[Any]) -> Snapshot:
    last, agents, queue, info, messages, up = results[:6]
    raw_conferences = results[6] if len(results) > 6 else []
    return Snapshot(
        last_id=last[0][0] if last else "0-0",
        conferences=[ConferenceRecord.from_json(r) for r in raw_conferences if r],
        queue=[Queued.from_json(info[n]) for n in queue if n in info],
        agents=[Agent.from_json(raw) for raw in agents.values()],
        voicemails=sorted(
            (Voicemail.from_json(raw) for raw in messages.values()), key=lambda v: (v.at, v.id)
        ),
        alerts=sorted(
            (Alert.from_json(raw) for raw in up.values()), key=lambda a: (a.since, a.kind)
        ),
    )
