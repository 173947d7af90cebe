"""Several app processes in one test (``create_app`` twice over one Redis)."""

from __future__ import annotations

from redis.asyncio import Redis

from console.domain import keys
from console.domain.unit_state import state_copy
from console.realtime.commit_feed import CommitFeed
from console.redis_ext import RedisExtension
from tests.support.waiting import until


async def follow_each_other(*apps) -> None:
    """Wait until each process knows the others follow the channel (the feeds count
    its followers every second): from then on every commit is told."""
    redis = RedisExtension.of(apps[0]).client
    await until(lambda: _followers(redis, len(apps)))
    for app in apps:
        feed, copy = CommitFeed.of(app), state_copy(RedisExtension.of(app).client)
        counted = feed.counted
        await until(lambda feed=feed, counted=counted: _counted_since(feed, counted))
        assert copy.others_listen


async def _followers(redis: Redis, count: int) -> bool:
    return (await redis.pubsub_numsub(keys.COMMITS))[0][1] >= count


async def _counted_since(feed: CommitFeed, counted: int) -> bool:
    return feed.counted > counted
