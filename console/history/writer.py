"""The history writer (docs/history.md, how history is written): `warmline serve` runs
one in a process of its own (warmline/history_process.py), the demo on its app's loop;
together they copy the event log into PostgreSQL through the Redis consumer group
``history``, each event to one of them.

A writer reads batches (XREADGROUP), stores each in one transaction
(console/history/store.py) and acknowledges it only once committed. On start it
first takes back what it was given and did not acknowledge; every so often it
claims what writers that died were holding. PostgreSQL down or slow holds up only
the writer: it backs off and retries the same batch, nothing else waits for it,
and the log keeps what it has not stored (console/domain/history_log.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from console.domain import history_log, keys
from console.domain.history_log import GROUP
from console.history.background import App, BackgroundPart
from console.history.store import StreamEvent, store_batch

log = logging.getLogger(__name__)

BATCH = 500
BLOCK_MS = 2_000
# After a short batch (or the first new event once caught up), a writer waits this long
# before reading on: a call's rows are recomputed once a batch, not once an event, and
# the writer does not wake per event, preempting the web workers on shared cores.
# History lags by at most this much more.
GATHER_SECONDS = 0.25
CLAIM_IDLE_MS = 60_000  # a batch unacknowledged this long: its writer is presumed dead
CLAIM_EVERY_SECONDS = 30.0
FORGET_CONSUMER_MS = 3_600_000  # consumers idle this long holding nothing are removed
MAX_BACKOFF_SECONDS = 5.0
DOWN = (psycopg.OperationalError, PoolTimeout, OSError)

Entries = list[tuple[str, dict[str, str]]]
_WRITERS = itertools.count(1)


def consumer_name() -> str:
    """This writer's name in the group: host, process and its rank in the process (two
    apps in one process are two writers). A process restarted with the same name (a
    dyno's) takes back on start what it held before."""
    return f"{socket.gethostname()}:{os.getpid()}:{next(_WRITERS)}"


class HistoryWriter(BackgroundPart):
    """Copies the event log into PostgreSQL in the background (module docstring)."""

    key = "history_writer"
    task_name = "warmline-history-writer"

    def __init__(
        self,
        redis: Callable[[], Redis],
        pool: Callable[[], AsyncConnectionPool],
        app: App | None = None,
        batch: int = BATCH,
    ) -> None:
        super().__init__(redis, pool)
        self.batch = batch
        self.block_ms = BLOCK_MS
        self.gather_seconds = GATHER_SECONDS
        self.claim_idle_ms = CLAIM_IDLE_MS
        self.claim_every = CLAIM_EVERY_SECONDS
        self.consumer = consumer_name()
        self.stored = 0  # events this writer inserted (first time stored)
        self._claimed_at = 0.0
        self._own_pending = True  # on start, first what this consumer was given before
        self._short = False  # the last read of new entries filled less than a batch
        if app is not None:
            self.init_app(app)

    @property
    def redis(self) -> Redis:
        return self._redis()

    async def _run(self) -> None:
        await self.clients_open()
        backoff = 0.1
        while True:
            try:
                await history_log.create_group(self.redis)
                while True:
                    await self.step()
                    backoff = 0.1
            except (RedisError, OSError) as exc:
                log.warning("history writer: Redis unavailable (%s); retrying", exc)
            except Exception:
                log.exception("history writer failed; restarting it")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def step(self) -> int:
        """Read one batch (own unacknowledged entries first, then claimed, then new),
        store and acknowledge it; returns how many entries it handled."""
        if self._own_pending:
            entries = await self._read("0", block=False)
            if not entries:
                self._own_pending = False
                return 0
        elif time.monotonic() - self._claimed_at >= self.claim_every:
            entries = await self._claim()
            if not entries:
                self._claimed_at = time.monotonic()
                await self._forget_idle_consumers()
                return 0
        else:
            entries = await self._read_new()
        await self._store(entries)
        return len(entries)

    async def _read(self, start: str, block: bool, count: int | None = None) -> Entries:
        try:
            reply = await self.redis.xreadgroup(
                GROUP,
                self.consumer,
                {keys.EVENTS: start},
                count=count or self.batch,
                block=self.block_ms if block else None,
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await history_log.create_group(self.redis)  # the log was deleted
            return []
        return reply[0][1] if reply else []

    async def _read_new(self) -> Entries:
        """New entries; first in one MULTI with a look at the log, so a stretch trimmed
        before the group read it is noticed (and counted) before it is read past.
        After a short batch, the next one gathers for ``gather_seconds`` first."""
        if self._short and self.gather_seconds > 0:
            await asyncio.sleep(self.gather_seconds)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                history_log.queue_position(pipe)
                pipe.xreadgroup(GROUP, self.consumer, {keys.EVENTS: ">"}, count=self.batch)
                replies = await pipe.execute()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc) and "no such key" not in str(exc).lower():
                raise
            await history_log.create_group(self.redis)
            return []
        at = history_log.parse_position(replies)
        if at is not None and at.gap:
            await history_log.note_lost_undelivered(self.redis, at)
        entries = replies[-1][0][1] if replies[-1] else []
        if not entries:  # caught up: wait for the next event, then for the rest of its burst
            entries = await self._read(">", block=True)
            if entries and len(entries) < self.batch and self.gather_seconds > 0:
                await asyncio.sleep(self.gather_seconds)
                entries += await self._read(">", block=False, count=self.batch - len(entries))
        self._short = 0 < len(entries) < self.batch
        return entries

    async def _claim(self) -> Entries:
        """Entries given to writers that have not acknowledged them for
        ``claim_idle_ms`` (presumed dead), now this writer's; those the log has lost
        meanwhile are counted."""
        reply = await self.redis.xautoclaim(
            keys.EVENTS, GROUP, self.consumer, self.claim_idle_ms, "0-0", count=self.batch
        )
        entries, deleted = reply[1], (reply[2] if len(reply) > 2 else [])
        await history_log.count_lost(self.redis, list(deleted))
        return entries

    async def _forget_idle_consumers(self) -> None:
        for consumer in await self.redis.xinfo_consumers(keys.EVENTS, GROUP):
            idle_long = int(consumer.get("idle", 0)) > FORGET_CONSUMER_MS
            if idle_long and not consumer["pending"] and consumer["name"] != self.consumer:
                await self.redis.xgroup_delconsumer(keys.EVENTS, GROUP, consumer["name"])

    async def _store(self, entries: Entries) -> None:
        """Store ``entries`` until it works, then acknowledge them. Entries the log no
        longer holds (trimmed while unacknowledged) are counted as lost."""
        if not entries:
            return
        ids = [event_id for event_id, _ in entries]
        gone = [event_id for event_id, fields in entries if not fields]
        events = [e for e in (_parsed(i, f) for i, f in entries if f) if e is not None]
        backoff = 0.1
        while True:
            try:
                self.stored += await self._commit(events)
                break
            except DOWN as exc:
                log.warning(
                    "history writer: PostgreSQL unavailable (%s); %d events wait in the event log",
                    exc,
                    len(entries),
                )
            except Exception:
                log.exception("history writer: storing %s … %s failed; retrying", ids[0], ids[-1])
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            await self._keep(ids)
        await history_log.count_lost(self.redis, gone)
        await self.redis.xack(keys.EVENTS, GROUP, *ids)

    async def _commit(self, events: list[StreamEvent]) -> int:
        async with self._pool().connection() as conn:
            return await store_batch(conn, events)

    async def _keep(self, ids: list[str]) -> None:
        """While retrying, keep the batch this writer's (reset its idle time), so no
        other writer takes it for a dead one's."""
        try:
            await self.redis.xclaim(keys.EVENTS, GROUP, self.consumer, 0, ids, justid=True)
        except (RedisError, OSError) as exc:
            log.warning("history writer: could not keep its batch: %s", exc)


def _parsed(event_id: str, fields: dict[str, str]) -> StreamEvent | None:
    """The entry as an event, or None (logged) for one that is not an event of ours:
    it cannot be stored, and must not stop the writer."""
    try:
        return StreamEvent.from_stream(event_id, fields)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        log.error("history writer: entry %s of the event log is not an event (%r)", event_id, exc)
        return None


def history_writer(app: App) -> HistoryWriter | None:
    """The app's writer; None when it keeps no history (no database)."""
    part: Any = app.extensions.get(HistoryWriter.key)
    return part if isinstance(part, HistoryWriter) else None
