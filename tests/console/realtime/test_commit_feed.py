"""Each process hears the conferences other processes' commits wrote
(console/realtime/commit_feed.py): callbacks about one conference that alternate
between two processes each commit from the process's copy in one round trip."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from console.config import DEFAULT_BREAK_REASONS
from console.domain import keys
from console.domain.unit_state import state_copy
from console.realtime.commit_feed import CommitFeed
from console.redis_ext import RedisExtension
from tests.conftest import PUBLIC_BASE_URL
from tests.support.flow_helpers import (
    AppVoice,
    agent_answers,
    customer_waits,
    login,
    set_available,
)
from tests.support.processes import follow_each_other
from tests.support.waiting import until
from warmline.app import create_app


@pytest.fixture(autouse=True)
def no_background_sweeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sweeps run only when a test asks: one landing mid-burst, on a copy the other
    process's commits outdated, would count a refused check of its own."""
    monkeypatch.setattr("console.telephony.runner.SWEEP_SECONDS", 3600.0)


TOGGLES = 12
BREAK = DEFAULT_BREAK_REASONS[0]


async def reads_and_conflicts(redis: Redis) -> tuple[int, int]:
    """(units that read their state first, commits refused by their check) so far."""
    stats = await redis.info("commandstats")
    reads = int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    return reads, int(await redis.get(keys.UNIT_CONFLICTS) or 0)


async def test_callbacks_alternating_between_processes_start_from_a_current_copy(
    settings, redis: Redis, redis_server, twilio
) -> None:
    one = create_app(settings, redis_url=redis_server.url)
    two = create_app(settings, redis_url=redis_server.url)
    async with one.test_app(), two.test_app(), one.test_client() as c1, two.test_client() as c2:
        await follow_each_other(one, two)
        apps, voices = (
            [one, two],
            [
                AppVoice(c1, twilio, one, PUBLIC_BASE_URL),
                AppVoice(c2, twilio, two, PUBLIC_BASE_URL),
            ],
        )
        name = await customer_waits(voices[0])
        await voices[0].settle()
        for i in range(TOGGLES + 1):
            if i == 1:  # the second process read its state once, at its first unit
                before = await reads_and_conflicts(redis)
            app = apps[(i + 1) % 2]  # the other process than the last callback's
            copy = state_copy(RedisExtension.of(app).client)
            stored = await redis.get(keys.conference(name))

            async def heard(copy=copy, stored=stored) -> bool:
                return copy.conference(name, {})[1] == stored

            await until(heard)
            hold = i % 2 == 0
            event = "participant-hold" if hold else "participant-unhold"
            # Twilio numbers one conference's callbacks in one sequence: made by one
            # voice, sent to either process (both check the same signature).
            delivery = voices[0].conference_event(
                name, event, name, Hold=hold, ParticipantLabel="customer"
            )
            response = await voices[(i + 1) % 2].send(delivery)
            assert response.status_code == 204
        assert await reads_and_conflicts(redis) == before
        assert CommitFeed.of(one).heard >= TOGGLES // 2 and CommitFeed.of(two).heard >= TOGGLES // 2


async def test_a_call_in_progress_is_not_outdated_by_callers_joining_elsewhere(
    settings, redis: Redis, redis_server, twilio
) -> None:
    """Hold toggles of a connected call neither look at the line nor change it: callers
    joining through the other process meanwhile make none of them start over."""
    one = create_app(settings, redis_url=redis_server.url)
    two = create_app(settings, redis_url=redis_server.url)
    async with one.test_app(), two.test_app(), one.test_client() as c1, two.test_client() as c2:
        await follow_each_other(one, two)
        first = AppVoice(c1, twilio, one, PUBLIC_BASE_URL)
        second = AppVoice(c2, twilio, two, PUBLIC_BASE_URL)
        await set_available(await login(one, redis, "alice"))
        name = await customer_waits(first)
        await agent_answers(first, name, "alice")
        await customer_waits(second)  # the second process reads its state once
        before = await reads_and_conflicts(redis)
        for i in range(TOGGLES):
            await customer_waits(second)  # moves the queue's version
            hold = i % 2 == 0
            event = "participant-hold" if hold else "participant-unhold"
            await first.event(name, event, name, Hold=hold, ParticipantLabel="customer")
        assert await reads_and_conflicts(redis) == before
        assert await redis.llen(keys.QUEUE) == TOGGLES + 1


async def test_agents_changed_elsewhere_reach_the_copy(
    settings, redis: Redis, redis_server, twilio
) -> None:
    """An agent going on a break and back offline through one process: the other
    process's copy takes each change, and its next unit starts from it."""
    one = create_app(settings, redis_url=redis_server.url)
    two = create_app(settings, redis_url=redis_server.url)
    async with one.test_app(), two.test_app(), two.test_client() as c2:
        await follow_each_other(one, two)
        second = AppVoice(c2, twilio, two, PUBLIC_BASE_URL)
        bob = await login(one, redis, "bob")
        name = await customer_waits(second)
        copy = state_copy(RedisExtension.of(two).client)
        for i in range(TOGGLES + 1):
            if i == 1:  # the first process read its state once, at its first unit
                before = await reads_and_conflicts(redis)
            status = {"status": "break", "reason": BREAK} if i % 2 == 0 else {"status": "offline"}
            assert (await bob.post("/api/me/status", json=status)).status_code == 200
            version = await redis.hget(keys.VERSION, "agents")

            async def heard(version=version) -> bool:
                return copy.versions is not None and copy.versions.agents == version

            await until(heard)
            hold = i % 2 == 0
            event = "participant-hold" if hold else "participant-unhold"
            await second.event(name, event, name, Hold=hold, ParticipantLabel="customer")
        assert await reads_and_conflicts(redis) == before


async def test_a_message_not_understood_leaves_the_feed_following(
    settings, redis: Redis, redis_server, twilio
) -> None:
    """Anyone with the Redis may publish on the channel: a message that is not a
    commit's is skipped, and the next commit's is still heard."""
    app = create_app(settings, redis_url=redis_server.url)
    async with app.test_app(), app.test_client() as client:
        voice = AppVoice(client, twilio, app, PUBLIC_BASE_URL)
        feed = CommitFeed.of(app)
        await until(lambda: _subscribed(redis))
        for junk in ("no newline at all", "x\ny z w\n{not json}\n"):
            await redis.publish(keys.COMMITS, junk)
        heard = feed.heard
        await redis.publish(keys.COMMITS, "someone-else\n\n\nCFname\n{}")
        await until(lambda: _more(feed, heard))
        await customer_waits(voice)  # and the app's own commits still go through


async def test_a_process_alone_publishes_nothing_and_starts_when_another_follows(
    settings, redis: Redis, redis_server, twilio
) -> None:
    """The only follower of the channel tells nobody its commits; once a second
    process follows, both publish again."""
    one = create_app(settings, redis_url=redis_server.url)
    async with one.test_app(), one.test_client() as c1:
        voice = AppVoice(c1, twilio, one, PUBLIC_BASE_URL)
        copy = state_copy(RedisExtension.of(one).client)
        await until(lambda: _alone(copy))
        before = await _publishes(redis)
        await customer_waits(voice)
        assert await _publishes(redis) == before
        two = create_app(settings, redis_url=redis_server.url)
        async with two.test_app():
            await follow_each_other(one, two)
            heard = CommitFeed.of(two).heard
            await customer_waits(voice)
            assert await _publishes(redis) > before
            await until(lambda: _more(CommitFeed.of(two), heard))


async def _alone(copy) -> bool:
    return not copy.others_listen


async def _publishes(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_publish", {}).get("calls", 0))


async def _subscribed(redis: Redis) -> bool:
    return (await redis.pubsub_numsub(keys.COMMITS))[0][1] > 0


async def _more(feed: CommitFeed, heard: int) -> bool:
    return feed.heard > heard
