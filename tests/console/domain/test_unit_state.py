"""A process's copy of the state: units start from it and commit in one round trip,
and a copy gone stale (another process, a FLUSHALL, time) is never committed upon."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from console.domain import keys
from console.domain.errors import NotFound
from console.domain.records import ConferenceRecord
from console.domain.transaction import run_unit
from console.domain.unit import Unit
from console.domain.unit_state import _packed
from console.redis_ext import connect
from simulator.testing import call_sid


async def commands(redis: Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    names = ("watch", "evalsha", "eval", "hgetall", "lrange", "mget", "get", "exec")
    return {c: int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in names}


def used(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {c: after[c] - before[c] for c in after}


async def join(unit: Unit, username: str) -> None:
    unit.agent(username)


async def create(unit: Unit, name: str) -> None:
    if await unit.conference(name) is None:
        unit.create_conference(name, "+15550001111")


@pytest.fixture
async def other(redis_server):
    """Another process's client: its own copy, its own turns."""
    client = connect(redis_server.url)
    yield client
    await client.aclose()


async def test_units_of_one_process_commit_in_one_round_trip(settings, redis) -> None:
    """After the first unit, each unit sends one batch: WATCH, the check (EVAL) and
    MULTI/EXEC; it reads nothing else, however many conferences it touched before."""
    names = [call_sid() for _ in range(5)]
    await run_unit(redis, settings, lambda u: join(u, "alice"))
    for name in names:
        await run_unit(redis, settings, lambda u, n=name: create(u, n), conferences=(name,))
    before = await commands(redis)
    for i, name in enumerate(names * 2):
        await run_unit(redis, settings, lambda u, i=i: join(u, f"agent{i}"), conferences=(name,))
    spent = used(before, await commands(redis))
    assert spent["watch"] == spent["exec"] == 10
    assert spent["evalsha"] == spent["hgetall"] == spent["lrange"] == 0, spent
    assert spent["mget"] == 0 and spent["get"] == 10, spent  # the check's GET of the version
    assert await redis.hlen(keys.AGENTS) == 11


async def test_a_commit_by_another_process_makes_the_stale_copy_start_over(
    settings, redis, other
) -> None:
    seen: list[set[str]] = []

    async def look_and_join(unit: Unit) -> None:
        seen.append(set(unit.agents))
        unit.agent("carol")

    await run_unit(redis, settings, lambda u: join(u, "alice"))
    await run_unit(other, settings, lambda u: join(u, "bob"))  # this process's copy is stale
    await run_unit(redis, settings, look_and_join)
    assert seen == [{"alice"}, {"alice", "bob"}]  # from the copy, then from the check's answer
    assert set(await redis.hkeys(keys.AGENTS)) == {"alice", "bob", "carol"}
    assert int(await redis.get(keys.UNIT_CONFLICTS)) == 1
    # Another process is active: the next unit reads first instead of trusting the copy.
    before = await commands(redis)
    await run_unit(redis, settings, lambda u: join(u, "dave"))
    spent = used(before, await commands(redis))
    assert spent["evalsha"] == 1 and spent["watch"] == 1, spent


async def test_a_conference_taken_for_new_is_checked_absent(settings, redis, other) -> None:
    """The copy has never seen this conference, so the unit takes it for new; another
    process created it meanwhile: the unit must not overwrite it."""
    name = call_sid()
    await run_unit(redis, settings, lambda u: join(u, "alice"))  # a copy exists
    await run_unit(other, settings, lambda u: create(u, name), conferences=(name,))
    found: list[ConferenceRecord | None] = []

    async def note(unit: Unit) -> None:
        record = await unit.conference(name)
        found.append(record)
        if record is None:
            unit.create_conference(name, "+15559999999")

    await run_unit(redis, settings, note, conferences=(name,))
    assert found[0] is None and found[1] is not None
    stored = ConferenceRecord.from_json(await redis.get(keys.conference(name)))
    assert stored.from_number == "+15550001111"


async def test_a_flush_never_lets_the_copy_match_again(settings, redis, other) -> None:
    """Versions are random tokens: after a FLUSHALL, another process's commits cannot
    bring back the one this process's copy holds (a counter would, in as many)."""
    await run_unit(redis, settings, lambda u: join(u, "alice"))
    first = await redis.hget(keys.VERSION, "agents")
    assert first is not None and len(first) == 16
    await redis.flushall()
    await run_unit(other, settings, lambda u: join(u, "bob"))
    assert await redis.hget(keys.VERSION, "agents") not in (first, None)
    seen: list[set[str]] = []

    async def look(unit: Unit) -> None:
        seen.append(set(unit.agents))
        unit.agent("carol")

    await run_unit(redis, settings, look)
    assert seen[-1] == {"bob"}
    assert set(await redis.hkeys(keys.AGENTS)) == {"bob", "carol"}


async def test_a_unit_with_nothing_to_write_still_checks_its_copy(settings, redis, other) -> None:
    """A decision taken from the copy (here: who is there) is checked even when the
    unit writes nothing, and taken again from the current state when stale."""
    await run_unit(redis, settings, lambda u: join(u, "alice"))
    await run_unit(other, settings, lambda u: join(u, "bob"))

    async def who(unit: Unit) -> set[str]:
        return set(unit.agents)

    result, _ = await run_unit(redis, settings, who)
    assert result == {"alice", "bob"}


async def test_a_conference_gone_from_redis_is_noticed_by_its_contents(settings, redis) -> None:
    """Ended conferences expire a day on, and an expiry moves no version: the check
    compares each conference's contents, so the copy's is not trusted once gone."""
    name = call_sid()
    await run_unit(redis, settings, lambda u: create(u, name), conferences=(name,))
    await redis.delete(keys.conference(name))  # as its expiry would
    found: list[ConferenceRecord | None] = []

    async def note(unit: Unit) -> None:
        found.append(await unit.conference(name))

    await run_unit(redis, settings, note, conferences=(name,))
    assert found[0] is not None and found[-1] is None


async def test_status_callbacks_of_two_processes_do_not_outdate_each_other(
    settings, redis, other
) -> None:
    """Units that change only their own conference leave the agents' and the queue's
    versions alone: two processes' copies both stay good, one trip per unit."""
    names = [call_sid() for _ in range(6)]
    for i, name in enumerate(names):  # queues them: the queue's version moves
        client = (redis, other)[i % 2]
        await run_unit(client, settings, lambda u, n=name: create(u, n), conferences=(name,))

    async def touch(unit: Unit, name: str, mark: str) -> None:
        record = await unit.conference(name)
        record.end_on_exit_requested[mark] = True

    async def round_of_touches(mark: str) -> None:
        for i, name in enumerate(names):
            client = (redis, other)[i % 2]
            await run_unit(
                client, settings, lambda u, n=name: touch(u, n, mark), conferences=(name,)
            )

    await round_of_touches("CA1")  # both copies catch up with the creations
    before = await commands(redis)
    conflicts = int(await redis.get(keys.UNIT_CONFLICTS) or 0)
    await round_of_touches("CA2")
    await round_of_touches("CA3")
    spent = used(before, await commands(redis))
    assert spent["watch"] == 12 and spent["evalsha"] == 0, spent
    assert int(await redis.get(keys.UNIT_CONFLICTS) or 0) == conflicts


async def test_a_refusal_decided_on_a_stale_copy_is_decided_again(settings, redis, other) -> None:
    """An API action refused from the copy (404: no such conference) is taken again
    from the current state when another process created the conference meanwhile."""
    name = call_sid()

    async def need(unit: Unit) -> str:
        if await unit.conference(name) is None:
            raise NotFound(f"no conference {name}")
        return name

    await run_unit(redis, settings, lambda u: join(u, "alice"))  # a copy exists
    with pytest.raises(NotFound):
        await run_unit(redis, settings, need, conferences=(name,))  # the copy: absent
    await run_unit(other, settings, lambda u: create(u, name), conferences=(name,))
    assert (await run_unit(redis, settings, need, conferences=(name,)))[0] == name


async def test_a_failure_on_a_copy_edited_behind_its_back_runs_again_from_a_read(
    settings, redis
) -> None:
    """The waiting line deleted by hand (no unit, so no version moved): the copy still
    lists the caller, whose record is gone. The unit that trips on it runs once more
    from what Redis holds instead of failing the request."""
    name = call_sid()
    await run_unit(redis, settings, lambda u: create(u, name), conferences=(name,))
    assert await redis.lrange(keys.QUEUE, 0, -1) == [name]
    await redis.delete(keys.QUEUE, keys.QUEUE_INFO, keys.conference(name))

    async def waiting(unit: Unit) -> list[str]:
        return await unit.waiting(5)

    assert (await run_unit(redis, settings, waiting))[0] == []
    assert await redis.exists(keys.QUEUE, keys.QUEUE_INFO, keys.conference(name)) == 0


async def test_a_refusal_that_holds_is_not_retried_while_other_units_refresh_the_copy(
    settings, redis
) -> None:
    """A refusal decided on the copy runs once more from a read, and what that raises
    stands, even when other units of the process bring the copy up to date meanwhile
    (else the refusal would go round until the unit gave up with a 503)."""
    await run_unit(redis, settings, lambda u: join(u, "alice"))  # a copy exists
    tries = 0

    async def refuse(unit: Unit) -> None:
        nonlocal tries
        tries += 1
        raise NotFound("no such conference")

    stop = asyncio.Event()

    async def busy() -> None:
        for i in itertools.count():
            if stop.is_set():
                return
            await run_unit(redis, settings, lambda u, i=i: join(u, f"busy{i}"))

    task = asyncio.create_task(busy())
    try:
        await asyncio.sleep(0.01)
        with pytest.raises(NotFound):
            await run_unit(redis, settings, refuse)
    finally:
        stop.set()
        await task
    assert tries == 2


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["SET", "XADD", "EVAL", "HSET"]),
            st.lists(st.one_of(st.text(), st.integers(), st.binary()), max_size=6),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_a_commit_is_packed_as_redis_py_packs_it(commands: list[tuple[str, list]]) -> None:
    """hiredis packs a commit's plain arguments in one call: the bytes are redis-py's."""
    connection = Redis().connection_pool.make_connection()
    flat = [(name, *args) for name, args in commands]
    assert b"".join(_packed(connection, flat)) == b"".join(connection.pack_commands(flat))
