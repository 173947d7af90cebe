"""Supervisor alerts (SPEC §10): the longest wait, the line's length, today's service
level and callers waiting with nobody available, each raised once when it crosses its
threshold and cleared once when it is back (``alert.raised`` / ``alert.cleared``,
for supervisors; history keeps them with every event).

No flapping: an alert is raised as soon as its measure crosses the threshold, but
cleared only once the measure is back past it by a margin (the hysteresis below) and
it has been up at least ``HOLD_MS``. Every process's sweeper checks every few
seconds; the open alerts live in one hash changed under WATCH, so two processes
never raise or clear one twice.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
from dataclasses import asdict, dataclass

from redis.asyncio import Redis
from redis.exceptions import WatchError

from console.config import Settings
from console.domain import keys
from console.domain.events import Event, append_events, log_cap
from console.domain.figures import local_day, service_level
from console.domain.records import Agent, AgentStatus, Queued

RAISED, CLEARED = "alert.raised", "alert.cleared"
HOLD_MS = 30_000  # an alert stays up at least this long
HEAD = 32  # the head of the line read for the longest wait (the oldest are there)
# Callers wait with nobody available once the oldest has waited this long so: agents
# all busy for a moment while a call comes in is the floor working, not an alert.
NOBODY_AVAILABLE_AFTER_MS = 10_000


@dataclass(frozen=True)
class Reading:
    """One measure now: its value (in its setting's units), its threshold, whether it
    is past it (raise) and whether it is back past it by the margin (may clear)."""

    kind: str
    value: float
    threshold: float
    breached: bool
    recovered: bool


@dataclass
class Alert:
    """The alert shape of SPEC §10."""

    id: str
    kind: str
    value: float
    threshold: float
    since: int

    @classmethod
    def from_json(cls, raw: str) -> Alert:
        return cls(**json.loads(raw))


def readings(
    settings: Settings,
    waiting: int,
    longest_wait_ms: int | None,
    level: float | None,
    available: int,
) -> list[Reading]:
    """The four measures. Margins: a wait back to three quarters of its threshold; a
    line a fifth (at least one caller) shorter than its threshold; a service level two
    points above its threshold; nobody waiting, or an agent available. Nobody
    available is raised once the oldest caller has waited 10 s so."""
    wait_s = math.ceil((longest_wait_ms or 0) / 1000)
    wait_limit = settings.alert_longest_wait_seconds
    size_limit = settings.alert_queue_size
    level_limit = settings.alert_service_level
    found = [
        Reading(
            "longest-wait", wait_s, wait_limit, wait_s > wait_limit, wait_s <= wait_limit * 3 / 4
        ),
        Reading(
            "queue-size",
            waiting,
            size_limit,
            waiting > size_limit,
            waiting <= size_limit - max(1, size_limit // 5),
        ),
        Reading(
            "nobody-available",
            waiting,
            0,
            waiting > 0 and available == 0 and (longest_wait_ms or 0) >= NOBODY_AVAILABLE_AFTER_MS,
            not waiting or available > 0,
        ),
    ]
    if level is not None:
        percent = round(level * 100, 1)
        found.append(
            Reading(
                "service-level",
                percent,
                level_limit,
                percent < level_limit,
                percent >= level_limit + 2,
            )
        )
    else:  # no call yet today: nothing to be under
        found.append(Reading("service-level", 100.0, level_limit, False, True))
    return found


async def measure(redis: Redis, settings: Settings, now: int) -> list[Reading]:
    """Read the line's head, the agents and today's counters, and measure."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.llen(keys.QUEUE)
        pipe.lrange(keys.QUEUE, 0, HEAD - 1)
        pipe.hvals(keys.AGENTS)
        pipe.hgetall(keys.figures(local_day(now, settings.center_zone)))
        waiting, head, agents, counters = await pipe.execute()
    info = await redis.hmget(keys.QUEUE_INFO, head) if head else []
    queued_at = [Queued.from_json(raw).queued_at for raw in info if raw]
    longest = max(0, now - min(queued_at)) if queued_at else None
    available = sum(Agent.from_json(raw).status == AgentStatus.AVAILABLE for raw in agents)
    _, level = service_level(
        {field: int(value) for field, value in counters.items()}, settings.service_level_seconds
    )
    return readings(settings, waiting, longest, level, available)


def _changes(
    current: dict[str, Alert], found: list[Reading], now: int
) -> tuple[dict[str, Alert], list[str], list[Event]]:
    """(alerts to write, kinds to drop, events) for the readings against the alerts up."""
    write: dict[str, Alert] = {}
    drop: list[str] = []
    events: list[Event] = []
    for reading in found:
        alert = current.get(reading.kind)
        if alert is None and reading.breached:
            alert = Alert(
                "AL" + secrets.token_hex(8), reading.kind, reading.value, reading.threshold, now
            )
            write[reading.kind] = alert
            events.append(Event(RAISED, asdict(alert), now, frozenset(), None))
        elif alert is not None and reading.recovered and now - alert.since >= HOLD_MS:
            drop.append(reading.kind)
            cleared = {**asdict(alert), "value": reading.value}
            events.append(Event(CLEARED, cleared, now, frozenset(), None))
    return write, drop, events


async def check(redis: Redis, settings: Settings, now: int) -> list[Event]:
    """Raise and clear alerts for the measures now; returns the events written."""
    found = await measure(redis, settings, now)
    while True:
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(keys.ALERTS)
                raw = await pipe.hgetall(keys.ALERTS)
                current = {kind: Alert.from_json(v) for kind, v in raw.items()}
                write, drop, events = _changes(current, found, now)
                if not events:
                    return []
                pipe.multi()
                if write:
                    pipe.hset(
                        keys.ALERTS,
                        mapping={kind: json.dumps(asdict(a)) for kind, a in write.items()},
                    )
                if drop:
                    pipe.hdel(keys.ALERTS, *drop)
                append_events(pipe, events, log_cap(settings))
                await pipe.execute()
                return events
            except WatchError:
                await asyncio.sleep(0)
