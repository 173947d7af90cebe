"""This process's ear on the other processes' commits: the conferences and agents each
unit of work wrote (``keys.COMMITS``) go into this process's copy of the state, so that the
next callback about one of them starts from what Redis holds and commits in one
round trip (console/domain/unit_state.py), whichever process took the last one.

Nothing depends on hearing every message: a copy that missed one (a reconnect, a
message still on its way, a process that started within the last
``COUNT_SECONDS``) is found stale by the commit's check, which costs a round trip,
never a wrong commit. So a process that is the channel's only follower does not
publish at all (the feed counts the followers every ``COUNT_SECONDS``)."""

from __future__ import annotations

import asyncio
import logging

from quart import Quart
from redis.asyncio import Redis
from redis.exceptions import RedisError

from console.domain import keys
from console.domain.unit_state import state_copy
from console.extension import ServingExtension
from console.redis_ext import RedisExtension, connect, stop_reader
from console.tasks import cancel

log = logging.getLogger(__name__)

WAIT_SECONDS = 30.0  # one read's wait for a message; the socket's timeout is longer
RETRY_SECONDS = 1.0
STOP_WAIT_SECONDS = 1.0
COUNT_SECONDS = 1.0  # how often the channel's followers are counted


class CommitFeed(ServingExtension):
    """Follows ``keys.COMMITS`` into the copy of the app's Redis client."""

    key = "commit-feed"

    def __init__(self, app: Quart | None = None) -> None:
        self._redis: Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._counter: asyncio.Task[None] | None = None
        self._stopping = False
        self._subscribed = False
        self.heard = 0
        self.counted = 0  # times the followers were counted
        if app is not None:
            self.init_app(app)

    async def start(self) -> None:
        assert self.app is not None
        redis = RedisExtension.of(self.app)
        self._redis = connect(
            redis.target, socket_timeout=WAIT_SECONDS + 5, tls_verify=redis.tls_verify
        )
        self._task = asyncio.create_task(self._follow(redis.client), name="warmline-commits")
        self._counter = asyncio.create_task(
            self._count_followers(redis.client), name="warmline-commit-followers"
        )

    async def stop(self) -> None:
        self._stopping = True
        await cancel(self._counter)
        await stop_reader(self._task, self._redis, STOP_WAIT_SECONDS)

    async def _count_followers(self, units: Redis) -> None:
        """Tell the copy whether another process follows the channel (PUBSUB NUMSUB:
        this feed is one of its subscribers once subscribed)."""
        copy = state_copy(units)
        while not self._stopping:
            try:
                [(_, followers)] = await units.pubsub_numsub(keys.COMMITS)
                copy.others_listen = followers > (1 if self._subscribed else 0)
            except (RedisError, OSError):
                copy.others_listen = True  # unknown: tell them
            self.counted += 1
            await asyncio.sleep(COUNT_SECONDS)

    async def _follow(self, units: Redis) -> None:
        assert self._redis is not None
        copy = state_copy(units)
        while not self._stopping:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.COMMITS)
                self._subscribed = True
                while True:
                    message = await pubsub.get_message(timeout=WAIT_SECONDS)
                    if message is None:
                        continue
                    try:
                        copy.heard(message["data"])
                    except (ValueError, TypeError, AttributeError) as exc:
                        # Not one of ours (anyone with the Redis may publish): skip it.
                        log.warning("commit feed: a message not understood: %s", exc)
                        continue
                    self.heard += 1
            except (RedisError, OSError) as exc:
                self._subscribed = False
                log.warning("commit feed lost (copies may lag a round trip): %s", exc)
                await asyncio.sleep(RETRY_SECONDS)
            finally:
                await pubsub.aclose()
