"""Supervisor alerts (SPEC §10): each raised once when its measure crosses the
threshold, cleared once when it is back past the margin and has been up long enough
(no flapping), raised once even when processes check at the same time; supervisors
see them in the snapshot, agents never."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from console.domain import alerts, keys
from console.domain.alerts import HOLD_MS, Alert, readings
from console.domain.events import now_ms
from console.domain.records import Agent, AgentStatus, Queued
from console.domain.snapshot import read_snapshot
from tests.conftest import make_settings
from tests.support.flow_helpers import events

pytestmark = pytest.mark.timeout(30)

SETTINGS = make_settings(
    alert_queue_size=10, alert_longest_wait_seconds=120, alert_service_level=80
)


def by_kind(found: list[alerts.Reading]) -> dict[str, alerts.Reading]:
    return {r.kind: r for r in found}


def test_thresholds_and_their_margins():
    line = lambda n: by_kind(readings(SETTINGS, n, None, None, 1))["queue-size"]  # noqa: E731
    assert (line(10).breached, line(11).breached) == (False, True)
    # Cleared only a fifth under the threshold: 9 is not enough, 8 is.
    assert (line(9).recovered, line(8).recovered) == (False, True)
    wait = lambda ms: by_kind(readings(SETTINGS, 1, ms, None, 1))["longest-wait"]  # noqa: E731
    assert (wait(120_000).breached, wait(120_001).breached) == (False, True)
    assert wait(120_001).value == 121  # whole seconds, rounded up
    assert (wait(91_000).recovered, wait(90_000).recovered) == (False, True)
    level = lambda x: by_kind(readings(SETTINGS, 0, None, x, 1))["service-level"]  # noqa: E731
    assert (level(0.80).breached, level(0.799).breached) == (False, True)
    assert (level(0.81).recovered, level(0.82).recovered) == (False, True)
    assert not by_kind(readings(SETTINGS, 0, None, None, 1))["service-level"].breached

    def nobody(waiting: int, free: int, waited_ms: int = 10_000) -> alerts.Reading:
        return by_kind(readings(SETTINGS, waiting, waited_ms, None, free))["nobody-available"]

    assert nobody(1, 0).breached and not nobody(0, 0).breached and not nobody(1, 1).breached
    assert not nobody(1, 0, waited_ms=9_999).breached  # a moment: the floor working


async def _line(redis: Any, size: int, waited_ms: int, now: int) -> None:
    await redis.delete(keys.QUEUE, keys.QUEUE_INFO)
    names = [f"CA{i:032x}" for i in range(size)]
    if names:
        await redis.rpush(keys.QUEUE, *names)
        await redis.hset(
            keys.QUEUE_INFO,
            mapping={
                n: Queued(call_sid=n, from_number=None, queued_at=now - waited_ms).to_json()
                for n in names
            },
        )


async def test_raised_once_cleared_once_around_a_threshold(redis):
    now = now_ms()
    free = Agent(username="ann", status=AgentStatus.AVAILABLE).to_json()
    await redis.hset(keys.AGENTS, "ann", free)
    await _line(redis, 11, 1_000, now)
    # Two processes checking at once raise it once.
    raised = await asyncio.gather(*(alerts.check(redis, SETTINGS, now) for _ in range(3)))
    assert sum(len(r) for r in raised) == 1
    assert await alerts.check(redis, SETTINGS, now + 1_000) == []  # still up: nothing new
    [event] = [e for e in await events(redis) if e["type"] == alerts.RAISED]
    assert event["audience"] == ""  # supervisors only
    assert event["data"]["kind"] == "queue-size"
    assert (event["data"]["value"], event["data"]["threshold"]) == (11, 10)
    # Back to 9, then 8: within the margin it stays; past it, only after HOLD_MS.
    await _line(redis, 9, 1_000, now)
    assert await alerts.check(redis, SETTINGS, now + HOLD_MS) == []
    await _line(redis, 8, 1_000, now)
    assert await alerts.check(redis, SETTINGS, now + 5_000) == []  # too soon
    [cleared] = await alerts.check(redis, SETTINGS, now + HOLD_MS)
    assert cleared.type == alerts.CLEARED
    assert (cleared.data["id"], cleared.data["value"]) == (event["data"]["id"], 8)
    assert await alerts.check(redis, SETTINGS, now + HOLD_MS + 1) == []
    # Up again: a new alert, with a new id.
    await _line(redis, 12, 1_000, now)
    [again] = await alerts.check(redis, SETTINGS, now + HOLD_MS + 2)
    assert again.data["id"] != event["data"]["id"]


async def test_nobody_available_and_the_snapshot_shows_supervisors_alone(redis):
    now = now_ms()
    busy = Agent(username="ann", status=AgentStatus.BUSY).to_json()
    await redis.hset(keys.AGENTS, "ann", busy)
    await _line(redis, 1, 200_000, now)
    kinds = {e.data["kind"] for e in await alerts.check(redis, SETTINGS, now)}
    assert kinds == {"nobody-available", "longest-wait"}
    snapshot = await read_snapshot(redis)
    shown = snapshot.visible_to("sue", supervisor=True)["alerts"]
    assert sorted(a["kind"] for a in shown) == ["longest-wait", "nobody-available"]
    assert all(isinstance(Alert(**a), Alert) for a in shown)
    assert snapshot.visible_to("ann", supervisor=False)["alerts"] == []
