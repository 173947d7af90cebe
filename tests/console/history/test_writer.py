"""The history writer (console/history/writer.py) against a real Redis and a real
PostgreSQL: idempotent in any batch split, nothing lost through a PostgreSQL outage,
writers sharing the group, lag in /metrics and /healthz, and the event log kept for
it (console/domain/history_log.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from console.config import Settings
from console.domain import history_log, keys
from console.domain.events import log_cap
from console.history.calls import NOT_STORED
from console.history.store import StreamEvent, store_batch
from console.history.writer import HistoryWriter, history_writer
from console.postgres_ext import make_pool
from simulator.testing import TwilioDouble
from tests.conftest import PUBLIC_BASE_URL, make_settings
from tests.support.flow_helpers import (
    AppVoice,
    agent_answers,
    customer_waits,
    hang_up_customer,
    leg_leaves,
    login,
    set_available,
)
from tests.support.waiting import until
from warmline.app import create_app
from warmline.embedded_redis import free_port

pytestmark = pytest.mark.timeout(120)


class TcpProxy:
    """PostgreSQL as the app sees it, through a port the test can close (an outage:
    open connections cut, new ones refused) and open again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url_for(self) -> Callable[[str], str]:
        return lambda url: url.replace(f":{self.target_port}/", f":{self.port}/")

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        self._writers -= {writer, up_writer}


@pytest.fixture
async def pg_proxy(postgres_server) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(postgres_server.port)
    await proxy.open()
    yield proxy
    await proxy.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = make_pool(database_url, max_size=4)
    await pool.open()
    yield pool
    await pool.close()


def writer_for(redis: Redis, pool: AsyncConnectionPool, batch: int = 500) -> HistoryWriter:
    """A writer driven by the test, one ``step`` at a time (no background task)."""
    writer = HistoryWriter(lambda: redis, lambda: pool, batch=batch)
    writer.block_ms = 10
    return writer


async def run_until_caught_up(writer: HistoryWriter) -> None:
    """Steps until three in a row find nothing: its own pending, claims, new entries."""
    await history_log.create_group(writer.redis)
    idle = 0
    while idle < 3:
        idle = idle + 1 if await writer.step() == 0 else 0


async def stored_events(pg) -> list[str]:
    cur = await pg.execute("SELECT id FROM events ORDER BY ms, seq")
    return [row["id"] for row in await cur.fetchall()]


async def log_ids(redis: Redis) -> list[str]:
    """Ids of the log's events the history stores (all but the whole-line pictures)."""
    return [i for i, f in await redis.xrange(keys.EVENTS) if f["type"] not in NOT_STORED]


async def tables(pg) -> dict[str, list[dict[str, Any]]]:
    """Every history row, in a stable order."""
    found = {}
    for table, order in (
        ("events", "id"),
        ("calls", "id"),
        ("call_legs", "call_id, position"),
        ("call_transfers", "call_id, id"),
    ):
        cur = await pg.execute(f"SELECT * FROM {table} ORDER BY {order}")
        found[table] = await cur.fetchall()
    return found


async def calls_by_id(pg) -> dict[str, dict[str, Any]]:
    cur = await pg.execute("SELECT * FROM calls")
    return {row["id"]: row for row in await cur.fetchall()}


async def three_calls(app, redis: Redis, voice: AppVoice) -> list[str]:
    """An answered call, a transfer to a colleague, and a caller who hangs up unanswered
    (Twilio sends no conference-end): the conference names."""
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    await set_available(alice)
    answered = await customer_waits(voice)
    leg = await agent_answers(voice, answered, "alice")
    await leg_leaves(voice, answered, leg, end_on_exit=True)
    await hang_up_customer(voice, answered, "participant-with-end-conference-on-exit-left")

    await set_available(alice)
    transferred = await customer_waits(voice)
    first = await agent_answers(voice, transferred, "alice")
    await set_available(bob)
    response = await alice.post(
        "/api/transfers", json={"conference": transferred, "to": "bob", "note": "billing"}
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    second = await agent_answers(voice, transferred, "bob", start=False)
    await leg_leaves(voice, transferred, first)
    await leg_leaves(voice, transferred, second, end_on_exit=True)
    await hang_up_customer(voice, transferred, "participant-with-end-conference-on-exit-left")

    abandoned = await customer_waits(voice)
    await voice.event(
        abandoned,
        "participant-leave",
        abandoned,
        ParticipantLabel="customer",
        EndConferenceOnExit=True,
        ParticipantCallStatus="completed",
    )
    await voice.settle()
    return [answered, transferred, abandoned]


# -- idempotence ------------------------------------------------------------------------


async def test_the_writer_stores_every_event_and_derives_each_call(
    history_app, redis, pg, voice_history
):
    names = await three_calls(history_app, redis, voice_history)
    expected = await log_ids(redis)

    async def all_stored() -> bool:
        return await stored_events(pg) == expected

    await until(all_stored)
    calls = await calls_by_id(pg)
    assert [calls[n]["outcome"] for n in names] == ["completed", "completed", "abandoned"]
    assert calls[names[1]]["agents"] == ["alice", "bob"]
    cur = await pg.execute("SELECT status FROM call_transfers WHERE call_id = %s", [names[1]])
    assert [r["status"] for r in await cur.fetchall()] == ["completed"]
    # Nothing is left unacknowledged once stored.
    await until(lambda: _nothing_pending(redis))


async def _nothing_pending(redis: Redis) -> bool:
    return (await redis.xpending(keys.EVENTS, history_log.GROUP))["pending"] == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_every_event_delivered_twice_in_another_batch_split_gives_the_same_rows(
    app, redis, voice, pg, seed
):
    await three_calls(app, redis, voice)
    entries = await redis.xrange(keys.EVENTS)
    events = [StreamEvent.from_stream(i, f) for i, f in entries]
    for batch in _splits(events, random.Random(seed), smallest=1, largest=9):
        await store_batch(pg, batch)
    once = await tables(pg)
    assert [e["id"] for e in once["events"]] == sorted(await log_ids(redis))

    await pg.execute("TRUNCATE events, calls CASCADE")
    rng = random.Random(seed + 100)
    twice = _splits(events, rng, 2, 13) + _splits(events, rng, 1, 5)
    rng.shuffle(twice)  # and the batches out of order
    for batch in twice:
        await store_batch(pg, batch)
    assert await tables(pg) == once


def _splits(events: list[Any], rng: random.Random, smallest: int, largest: int) -> list[list]:
    batches, at = [], 0
    while at < len(events):
        size = rng.randint(smallest, largest)
        batches.append(events[at : at + size])
        at += size
    return batches


async def test_writers_committing_the_same_call_at_once_end_with_its_final_rows(
    app, redis, voice, pg, pool
):
    """Two transactions storing halves of one call concurrently: whichever commits last
    must see the other's events (the call's advisory lock), or its rows would lack them."""
    names = await three_calls(app, redis, voice)
    events = [
        StreamEvent.from_stream(i, f)
        for i, f in await redis.xrange(keys.EVENTS)
        if f["type"] not in NOT_STORED
    ]
    await store_batch(pg, events)
    expected = await tables(pg)
    mine = [e for e in events if e.conference == names[1]]
    others = [e for e in events if e.conference != names[1]]
    for attempt in range(15):
        await pg.execute("TRUNCATE events, calls CASCADE")
        await store_batch(pg, others)
        half = len(mine) // 2 + attempt % 3 - 1
        async with pool.connection() as one, pool.connection() as two:
            await asyncio.gather(store_batch(one, mine[:half]), store_batch(two, mine[half:]))
        assert await tables(pg) == expected


async def test_a_redelivered_log_through_the_group_changes_no_row(app, redis, voice, pg, pool):
    """The group delivers everything a second time, in other batches: same rows."""
    await three_calls(app, redis, voice)
    writer = writer_for(redis, pool, batch=7)
    await run_until_caught_up(writer)
    first = await tables(pg)
    assert writer.stored == len(await log_ids(redis))
    await redis.xgroup_setid(keys.EVENTS, history_log.GROUP, "0")
    again = writer_for(redis, pool, batch=5)
    await run_until_caught_up(again)
    assert again.stored == 0  # every event was already there
    assert await tables(pg) == first


# -- outages and sharing ----------------------------------------------------------------


@pytest.fixture
async def voice_history(history_app, twilio: TwilioDouble):
    async with history_app.test_client() as client:
        yield AppVoice(client, twilio, history_app, PUBLIC_BASE_URL)


@contextlib.asynccontextmanager
async def serving(settings: Settings, redis_url: str, database_url: str):
    app = create_app(settings, redis_url=redis_url, database_url=database_url)
    async with app.test_app():
        yield app


async def test_a_postgresql_outage_mid_flow_loses_nothing(
    settings, redis, redis_server, database_url, pg, pg_proxy, twilio, caplog
):
    caplog.set_level(logging.WARNING, logger="console.history.writer")
    url = pg_proxy.url_for(database_url)
    async with serving(settings, redis_server.url, url) as app, app.test_client() as client:
        if True:
            voice = AppVoice(client, twilio, app, PUBLIC_BASE_URL)
            alice = await login(app, redis, "alice")
            await set_available(alice)
            first = await customer_waits(voice)
            await until(lambda: _stored(pg, first))

            await pg_proxy.close()  # PostgreSQL goes away mid-call
            leg = await agent_answers(voice, first, "alice")  # webhooks answer as ever
            await leg_leaves(voice, first, leg, end_on_exit=True)
            await hang_up_customer(voice, first, "participant-with-end-conference-on-exit-left")
            second = await customer_waits(voice)
            await hang_up_customer(voice, second, "participant-left")
            metrics = await _metrics(client)
            assert metrics["warmline_history_lag_events"] > 0
            assert (await calls_by_id(pg))[first]["outcome"] is None  # not stored yet

            # The writer failed on a batch, and retries it (the log keeps it meanwhile).
            await until(lambda: _logged(caplog, "PostgreSQL unavailable"))
            await pg_proxy.open()  # it comes back: the writer catches up
            expected = await log_ids(redis)

            async def caught_up() -> bool:
                return await stored_events(pg) == expected

            await until(caught_up, within=60)
            calls = await calls_by_id(pg)
            assert calls[first]["outcome"] == "completed"
            assert calls[first]["answered_by"] == "alice"
            assert calls[second]["outcome"] == "abandoned"
            await until(lambda: _nothing_pending(redis))
            assert (await _metrics(client))["warmline_history_lag_events"] == 0


async def _logged(caplog, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)


async def _stored(pg, name: str) -> bool:
    return name in await calls_by_id(pg)


async def _metrics(client) -> dict[str, float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    figures = {}
    for line in (await response.get_data(as_text=True)).splitlines():
        if line.startswith("warmline_history"):
            name, value = line.split()
            figures[name] = float(value)
    return figures


async def test_two_writers_share_the_group_and_store_each_event_once(
    history_app, settings, redis, redis_server, database_url, pg, voice_history
):
    async with serving(settings, redis_server.url, database_url) as other:
        names = await three_calls(history_app, redis, voice_history)
        expected = await log_ids(redis)

        async def all_stored() -> bool:
            return await stored_events(pg) == expected

        await until(all_stored)
        await until(lambda: _nothing_pending(redis))
        writers = [history_writer(history_app), history_writer(other)]
        assert all(w is not None for w in writers)
        consumers = await redis.xinfo_consumers(keys.EVENTS, history_log.GROUP)
        assert {c["name"] for c in consumers} == {w.consumer for w in writers}  # type: ignore[union-attr]
        # Each event was delivered to one writer: together they stored each once.
        assert sum(w.stored for w in writers) == len(expected)  # type: ignore[union-attr]
        assert set(await calls_by_id(pg)) == set(names)


async def test_two_writers_stepping_in_turn_take_disjoint_batches(app, redis, voice, pg, pool):
    await three_calls(app, redis, voice)
    one, two = writer_for(redis, pool, batch=4), writer_for(redis, pool, batch=4)
    await history_log.create_group(redis)
    expected = await log_ids(redis)
    for _ in range(100):
        await one.step()
        await two.step()
        if await stored_events(pg) == expected:
            break
    assert await stored_events(pg) == expected
    assert one.stored > 0 and two.stored > 0
    assert one.stored + two.stored == len(expected)  # no event went to both


async def test_a_dead_writers_batch_is_claimed_and_stored(app, redis, voice, pg, pool):
    await three_calls(app, redis, voice)
    await history_log.create_group(redis)
    taken = await redis.xreadgroup(history_log.GROUP, "dead", {keys.EVENTS: ">"}, count=10)
    assert len(taken[0][1]) == 10
    writer = writer_for(redis, pool)
    writer.claim_idle_ms = 0  # the dead one's entries are idle enough at once
    await run_until_caught_up(writer)
    assert await stored_events(pg) == await log_ids(redis)
    assert await _nothing_pending(redis)


async def test_an_entry_it_cannot_store_as_it_is_never_stops_the_writer(redis, pg, pool, caplog):
    """A stray entry (not an event) is skipped and logged; a NUL character, which
    PostgreSQL's jsonb refuses, is dropped from the event's data."""
    await history_log.create_group(redis)
    await redis.xadd(keys.EVENTS, {"stray": "entry"})
    nul = _agent_event(1) | {"data": json.dumps({"username": "a\u0000b", "status": "busy"})}
    await redis.xadd(keys.EVENTS, nul)
    await redis.xadd(keys.EVENTS, _agent_event(2))
    caplog.set_level(logging.ERROR, logger="console.history.writer")
    writer = writer_for(redis, pool)
    await run_until_caught_up(writer)
    cur = await pg.execute("SELECT data->>'username' AS name FROM events ORDER BY ms, seq")
    assert [r["name"] for r in await cur.fetchall()] == ["ab", "agent2"]
    assert await _nothing_pending(redis)
    assert any("is not an event" in r.getMessage() for r in caplog.records)


async def test_after_a_short_batch_the_writer_gathers_before_reading_on(redis, pg, pool):
    """Under a steady trickle a writer stores a batch per ``gather_seconds``, not one
    per event: events already waiting when it comes back from a short batch are not
    read at once, the ones that follow within the gather join them."""
    await history_log.create_group(redis)
    writer = writer_for(redis, pool)
    writer.gather_seconds = 0.5
    await redis.xadd(keys.EVENTS, _agent_event(0))
    while not (stored := await writer.step()):  # its own pending, then claims: none
        pass
    assert stored == 1  # a short batch
    await redis.xadd(keys.EVENTS, _agent_event(1))  # waiting before the next step
    step = asyncio.create_task(writer.step())
    for n in (2, 3):
        await asyncio.sleep(0.05)
        await redis.xadd(keys.EVENTS, _agent_event(n))
    assert await step == 3
    assert len(await stored_events(pg)) == 4


# -- the event log kept for the history -------------------------------------------------


async def test_the_log_keeps_unstored_events_beyond_its_length_then_trims_them(redis, pg, pool):
    await history_log.create_group(redis)
    for n in range(500):
        await redis.xadd(keys.EVENTS, _agent_event(n))
    await history_log.trim(redis, maxlen=100, max_age_hours=24)
    assert await redis.xlen(keys.EVENTS) == 500  # none stored yet: all kept
    writer = writer_for(redis, pool, batch=200)
    while writer.stored < 200:  # the first batch
        await writer.step()
    await history_log.trim(redis, maxlen=100, max_age_hours=24)
    length = await redis.xlen(keys.EVENTS)
    assert 300 <= length < 500  # stored ones went, unstored ones stayed
    await run_until_caught_up(writer)
    await history_log.trim(redis, maxlen=100, max_age_hours=24)
    assert 100 <= await redis.xlen(keys.EVENTS) < 300
    assert await redis.hget(keys.COUNTERS, history_log.LOST) is None


async def test_trimming_past_unstored_events_is_logged_and_counted(
    history_app, redis, pg, pool, caplog
):
    """The append's cap (10 x EVENT_LOG_MAXLEN) reached while the writer was away:
    the events lost are counted once, logged at ERROR and shown in /metrics."""
    writer = history_writer(history_app)
    assert writer is not None
    await writer.stop()  # this app's writer is away (as if PostgreSQL were down)
    await history_log.create_group(redis)
    cap = 100
    for n in range(1_000):
        await redis.xadd(keys.EVENTS, _agent_event(n), maxlen=cap, approximate=False)
    survivors = await redis.xlen(keys.EVENTS)
    assert survivors == cap
    caplog.set_level(logging.ERROR, logger="console.domain.history_log")
    reader = writer_for(redis, pool)
    await run_until_caught_up(reader)
    assert int(await redis.hget(keys.COUNTERS, history_log.LOST)) == 1_000 - cap
    assert any("trimmed from the event log" in r.getMessage() for r in caplog.records)
    assert len(await stored_events(pg)) == cap
    await history_log.trim(redis, maxlen=cap, max_age_hours=24)  # noticed again: counted once
    assert int(await redis.hget(keys.COUNTERS, history_log.LOST)) == 1_000 - cap
    metrics = await _metrics(history_app.test_client())
    assert metrics["warmline_history_events_lost_total"] == 1_000 - cap


async def test_a_dead_writers_batch_trimmed_before_it_was_claimed_is_counted(
    redis, pg, pool, caplog
):
    await history_log.create_group(redis)
    for n in range(50):
        await redis.xadd(keys.EVENTS, _agent_event(n))
    await redis.xreadgroup(history_log.GROUP, "dead", {keys.EVENTS: ">"}, count=20)
    await redis.xtrim(keys.EVENTS, maxlen=30, approximate=False)  # its 20 are gone
    caplog.set_level(logging.ERROR, logger="console.domain.history_log")
    writer = writer_for(redis, pool)
    writer.claim_idle_ms = 0
    await run_until_caught_up(writer)
    assert int(await redis.hget(keys.COUNTERS, history_log.LOST)) == 20
    assert len(await stored_events(pg)) == 30
    assert await _nothing_pending(redis)
    assert any("before they were stored" in r.getMessage() for r in caplog.records)


def test_without_a_database_the_log_is_capped_as_ever():
    plain = make_settings(event_log_maxlen=1_000)
    assert log_cap(plain) == 1_000
    assert log_cap(make_settings(event_log_maxlen=1_000, database_url="postgresql://x/y")) == 10_000


async def test_without_a_database_the_trim_is_the_age_limit_alone(redis):
    await history_log.create_group(redis)  # even a group left by a past history
    for n in range(300):
        await redis.xadd(keys.EVENTS, _agent_event(n))
    await history_log.trim_log(redis, make_settings(event_log_maxlen=100))
    assert await redis.xlen(keys.EVENTS) == 300


def _agent_event(n: int) -> dict[str, str]:
    data = {"username": f"agent{n % 7}", "status": "available", "since": n}
    return {
        "type": "agent.updated",
        "ts": str(1_700_000_000_000 + n),
        "data": json.dumps(data),
        "audience": "*",
        "conference": "",
    }


# -- lag --------------------------------------------------------------------------------


async def test_lag_shows_in_metrics_and_healthz_degrades_past_a_minute(
    settings, redis, redis_server, database_url, pg, pg_proxy
):
    await pg_proxy.close()  # the writer cannot store anything
    async with serving(settings, redis_server.url, pg_proxy.url_for(database_url)) as app:
        client = app.test_client()
        await until(lambda: _group_exists(redis))
        old = int(time.time() * 1000) - 125_000  # an event written 125 s ago, not stored
        await redis.xadd(keys.EVENTS, _agent_event(1), id=f"{old}-0")
        await redis.xadd(keys.EVENTS, _agent_event(2))
        response = await client.get("/healthz")
        assert response.status_code == 200
        body = await response.get_json()
        assert body["status"] == "degraded"
        assert 125 <= body["history_lag_seconds"] < 200
        metrics = await _metrics(client)
        assert metrics["warmline_history_lag_events"] == 2
        assert metrics["warmline_history_lag_seconds"] >= 125

        await pg_proxy.open()

        async def both_stored() -> bool:  # a batch of one may wait out the writer's gather
            return len(await stored_events(pg)) == 2 and await _nothing_pending(redis)

        await until(both_stored)

        async def healthy() -> bool:
            return (await (await client.get("/healthz")).get_json())["status"] == "ok"

        await until(healthy)
        metrics = await _metrics(client)
        assert metrics["warmline_history_lag_events"] == 0
        assert metrics["warmline_history_lag_seconds"] == 0
        assert len(await stored_events(pg)) == 2


async def _group_exists(redis: Redis) -> bool:
    return await history_log.position(redis) is not None


async def test_without_history_healthz_and_metrics_are_as_before(app):
    client = app.test_client()
    assert await (await client.get("/healthz")).get_json() == {"status": "ok"}
    assert await _metrics(client) == {}
