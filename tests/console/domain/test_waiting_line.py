"""A long waiting line costs each unit of work only what changed
(console/domain/waiting_line.py): the list edits replay exactly in Redis, and
queue.updated is held back and then sent whole while call.queued / call.dequeued go
out with every change."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from console.domain import keys, waiting_line
from console.domain.records import Queued
from console.domain.transaction import run_unit
from console.domain.unit import Unit
from console.domain.waiting_line import (
    AT_ONE_END,
    EAGER_QUEUE_UPDATES,
    NotFetched,
    QueueInfo,
    _worked_out,
    line_change,
    write_change,
)
from console.telephony.runner import Runner
from tests.support.flow_helpers import customer_waits, events, hang_up_customer


def write_line(pipe: Pipeline, before: list[str], after: list[str]) -> bool:
    """Queue the list commands that turn ``before`` into ``after``, as a unit's write
    does; False when nothing changed."""
    change = line_change(before, after)
    if change is None:
        return False
    write_change(pipe, change, after)
    return True


async def replay(redis: Redis, before: list[str], after: list[str]) -> list[str]:
    """Store ``before``, apply write_line's commands in a MULTI, read the list back."""
    await redis.delete(keys.QUEUE)
    if before:
        await redis.rpush(keys.QUEUE, *before)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.multi()
        changed = write_line(pipe, before, after)
        await pipe.execute()
    assert changed == (before != after)
    return await redis.lrange(keys.QUEUE, 0, -1)


def edited(rng: random.Random, before: list[str], fresh: list[str]) -> list[str]:
    """What units do to the line: departures anywhere, joins at either end, and now
    and then an arbitrary reorder (reconcile putting a caller back in arrival order)."""
    after = [n for n in before if rng.random() > 0.2]
    for name in fresh[: rng.randint(0, 3)]:
        if rng.random() < 0.3:
            after.insert(0, name)
        else:
            after.append(name)
    if rng.random() < 0.1 and after:
        moved = after.pop(rng.randrange(len(after)))
        after.insert(rng.randrange(len(after) + 1), moved)
    return after


async def test_list_edits_turn_any_line_into_the_new_one(redis: Redis) -> None:
    rng = random.Random(7)
    for case in range(400):
        before = [f"CA{case}-{i}" for i in range(rng.randint(0, 12))]
        after = edited(rng, before, [f"CA{case}-new{i}" for i in range(3)])
        assert await replay(redis, before, after) == after, (before, after)


def test_line_change_names_who_left_and_who_joined_where() -> None:
    """The change the announcements use (call.dequeued, call.queued with positions)."""
    rng = random.Random(11)
    for case in range(2000):
        before = [f"CA{case}-{i}" for i in range(rng.randint(0, 40))]
        after = edited(rng, before, [f"CA{case}-new{i}" for i in range(3)])
        change = line_change(before, after)
        if before == after:
            assert change is None
            continue
        assert change is not None
        assert change.left == set(before) - set(after)
        positions = {name: i for i, name in enumerate(after, 1)}
        expected = sorted((positions[n], n) for n in set(after) - set(before))
        assert sorted(change.joined(after)) == expected, (before, after)


NAMES = st.sampled_from([f"CA{i}" for i in range(8)])


@settings(max_examples=500, deadline=None)
@given(
    before=st.lists(NAMES, max_size=10),
    joined=st.lists(NAMES, max_size=AT_ONE_END + 1),
    left=st.integers(0, AT_ONE_END + 1),
)
def test_the_shortcut_for_either_end_finds_what_the_sets_find(before, joined, left) -> None:
    """Joins at the tail and departures from the head, duplicates included (a hand-edited
    list), give the change the general way gives."""
    for after in (before + joined, before[left:]):
        if after != before:
            assert line_change(before, after) == _worked_out(before, after), (before, after)


def test_the_usual_changes_of_a_long_line_are_told_at_one_end() -> None:
    before = [f"CA{i}" for i in range(2000)]
    assert line_change(before, [*before, "CAnew"]) == waiting_line.LineChange(
        set(), [], ["CAnew"], rewrite=False
    )
    assert line_change(before, before[2:]) == waiting_line.LineChange(
        {"CA0", "CA1"}, [], [], rewrite=False
    )


@pytest.fixture
def hold_back_for_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting_line, "QUEUE_UPDATE_INTERVAL_MS", 60_000)
    monkeypatch.setattr("console.domain.unit.QUEUE_UPDATE_INTERVAL_MS", 60_000)


async def test_a_long_line_sends_queue_updated_held_back_then_whole(
    app, redis: Redis, voice, hold_back_for_a_minute, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [await customer_waits(voice) for _ in range(EAGER_QUEUE_UPDATES + 15)]
    await hang_up_customer(voice, names[3], "participant-with-end-conference-on-exit-left")
    log = await events(redis)
    queued = [e["data"]["call_sid"] for e in log if e["type"] == "call.queued"]
    dequeued = [e["data"]["call_sid"] for e in log if e["type"] == "call.dequeued"]
    updates = [e["data"]["queue"] for e in log if e["type"] == "queue.updated"]
    assert queued == names  # every caller announced as they joined
    assert dequeued == [names[3]]
    # one queue.updated per change while the line was short, none past it
    assert len(updates) == EAGER_QUEUE_UPDATES
    assert [q["call_sid"] for q in updates[-1]] == names[:EAGER_QUEUE_UPDATES]
    line = [n for n in names if n != names[3]]
    assert await redis.lrange(keys.QUEUE, 0, -1) == line

    runner = Runner.of(app)
    await runner.sweep()  # the interval is not over: still held back
    assert [e["type"] for e in await events(redis)].count("queue.updated") == len(updates)

    monkeypatch.setattr("console.domain.unit.QUEUE_UPDATE_INTERVAL_MS", 0)
    await runner.sweep()
    await runner.sweep()  # sent once, not again
    log = await events(redis)
    updates = [e["data"]["queue"] for e in log if e["type"] == "queue.updated"]
    assert len(updates) == EAGER_QUEUE_UPDATES + 1
    assert [(q["call_sid"], q["position"]) for q in updates[-1]] == [
        (name, i) for i, name in enumerate(line, 1)
    ]


async def calls(redis: Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {
        c: int(stats.get(f"cmdstat_{c}", {}).get("calls", 0))
        for c in ("hmget", "hgetall", "lrange", "watch")
    }


async def test_units_on_a_long_line_read_no_callers_records_they_do_not_need(
    app, redis: Redis, voice, hold_back_for_a_minute
) -> None:
    """Nobody to route to and queue.updated held back: a new caller and a callback
    about a waiting one fetch no caller's record. A unit that reads its state (rather
    than starting from the process's copy) does two HGETALLs, of the agents and of when
    queue.updated was sent, beside the LRANGE of the names: not a third of the
    callers' records."""
    names = [await customer_waits(voice) for _ in range(EAGER_QUEUE_UPDATES + 5)]
    before = await calls(redis)
    newcomer = await customer_waits(voice)
    await hang_up_customer(voice, names[7], "participant-with-end-conference-on-exit-left")
    after = await calls(redis)
    used = {c: after[c] - before[c] for c in after}
    assert used["hmget"] == 0
    # One LRANGE is the newcomer's commit reading the line's tail (its join commutes:
    # console/domain/positions.py), not a read of the state.
    assert used["watch"] > 0 and used["hgetall"] == 2 * (used["lrange"] - 1), used
    assert await redis.lrange(keys.QUEUE, 0, -1) == [n for n in names if n != names[7]] + [newcomer]
    assert not await redis.hexists(keys.QUEUE_INFO, names[7])
    assert await redis.hexists(keys.QUEUE_INFO, newcomer)


async def test_a_record_looked_at_before_it_is_fetched_is_a_loud_bug(redis: Redis) -> None:
    record = Queued(call_sid="CA1", from_number=None, queued_at=5)
    await redis.hset(keys.QUEUE_INFO, "CA1", record.to_json())
    info = QueueInfo()
    with pytest.raises(NotFetched):
        info["CA1"]
    with pytest.raises(NotFetched):
        "CA1" in info  # noqa: B015 - the membership test itself must refuse
    async with redis.pipeline(transaction=True) as pipe:
        await pipe.watch(keys.QUEUE_INFO)
        await info.fetch(pipe, ["CA1", "CA2"])
        assert info["CA1"].queued_at == 5
        assert "CA2" not in info
        info.discard("CA3")  # never fetched: removed all the same
        pipe.multi()
        assert info.write(pipe)
        await pipe.execute()


async def test_a_caller_who_left_after_the_unit_read_the_line_is_not_waiting(
    app, redis: Redis, voice, settings
) -> None:
    """Routing reads the line, then fetches the callers' records it looks at: a caller
    another process dequeued in between has a name there but no record. They are not
    waiting (once a KeyError, a 500 to Twilio); the others still are."""
    first, second = await customer_waits(voice), await customer_waits(voice)
    left = False

    async def leave(other: Unit) -> None:
        other.dequeue(first, "hung-up")

    async def look(unit: Unit) -> list[str]:
        nonlocal left
        if not left and first in unit.queue:
            left = True
            await Runner.of(app).unit(leave)  # the app's client: another process's unit
        return await unit.waiting(2)

    # The test's own client has no copy yet: its unit reads the line from Redis first.
    found, _ = await run_unit(redis, settings, look)
    assert left and found == [second]
    assert await redis.lrange(keys.QUEUE, 0, -1) == [second]
