"""One reader of the event log per process, fanning entries out to its sockets.

A single blocking XREAD follows the Redis Stream, so each process reads every
event once however many dashboards it serves, and none while it serves none (a
process answering only webhooks would read the whole log for nobody): the first
socket makes it start again from the log's end, before that socket reads its
snapshot. Every socket has a bounded backlog:
a socket that cannot keep up is cut off from the live flow and told to resync
(it then gets a fresh snapshot), so it can neither stall the others nor grow the
process's memory. The reader outlives Redis restarts: it backs off, reconnects and
resumes after the last id it read, so nothing committed meanwhile is skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Final

from quart import Quart
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from console.domain import keys
from console.domain.events import AGENTS_ONLY, EVERYONE
from console.domain.sessions import Revocation
from console.extension import ServingExtension
from console.realtime.ws_frames import DirectWriter, text_frame
from console.redis_ext import RedisExtension, connect, stop_reader

log = logging.getLogger(__name__)

BLOCK_MS = 5_000
READ_COUNT = 100  # per XREAD; a socket's backlog must hold at least one read
MAX_BACKOFF_SECONDS = 5.0
STOP_WAIT_SECONDS = 0.5
READY_SECONDS = 5.0  # how long a socket waits for the reader to find the log's end

StreamId = tuple[int, int]


def parse_id(raw: str) -> StreamId:
    """A stream id as the pair of integers it is ordered by; ValueError if malformed."""
    ms, _, seq = raw.partition("-")
    if not (ms.isdigit() and seq.isdigit()) or len(raw) > 41:
        raise ValueError(f"not a stream id: {raw!r}")
    return int(ms), int(seq)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One event of the log, with its WebSocket message encoded once for every socket."""

    id: StreamId
    raw_id: str
    audience: frozenset[str] | None  # None: everyone; empty: supervisors only
    agents_only: bool  # for the agents in ``audience`` and not supervisors
    text: str
    frame: bytes  # ``text`` as a WebSocket frame, for sockets written directly

    @classmethod
    def from_stream(cls, raw_id: str, fields: dict[str, str]) -> LogEntry:
        audience = fields.get("audience", EVERYONE)
        agents_only = audience.startswith(AGENTS_ONLY)
        audience = audience.removeprefix(AGENTS_ONLY)
        text = (
            f'{{"id":"{raw_id}","type":{json.dumps(fields["type"])},'
            f'"ts":{int(fields["ts"])},"data":{fields["data"]}}}'
        )
        return cls(
            id=parse_id(raw_id),
            raw_id=raw_id,
            audience=None if audience == EVERYONE else frozenset(filter(None, audience.split(","))),
            agents_only=agents_only,
            text=text,
            frame=text_frame(text),
        )

    def visible_to(self, username: str, supervisor: bool) -> bool:
        if self.agents_only:
            return not supervisor and self.audience is not None and username in self.audience
        return supervisor or self.audience is None or username in self.audience


class _Resync:
    """Marker put in a backlog that overflowed."""


RESYNC: Final = _Resync()


@dataclass(frozen=True)
class Close:
    """Marker that closes the socket at once with ``code``."""

    code: int


SERVICE_RESTART = 1012  # RFC 6455: the browser reconnects (elsewhere) and resumes
SESSION_ENDED = 4401  # ours: the session ended; the browser goes back to the login page

CLOSE: Final = Close(SERVICE_RESTART)
"""Put in every backlog when the process stops, so the browser resumes on another."""

REVOKED: Final = Close(SESSION_ENDED)
"""Put in the backlog of a socket whose session ended."""


@dataclass(eq=False)
class Subscriber:
    """One socket's view of the live flow.

    While the socket is ``live`` (caught up, its feed idle, a ``writer`` available),
    the hub writes each entry straight onto it; otherwise entries wait in ``queue``
    for the feed, which sends them the ordinary way and goes live again once the
    queue is empty (see console/realtime/ws_frames.py).
    """

    username: str
    supervisor: bool
    backlog: int
    socket_id: str = ""  # its entry among the user's open sockets (console.domain.sockets)
    session: str = ""  # digest of the login session that opened it
    queue: asyncio.Queue[LogEntry | _Resync | Close] = field(init=False)
    writer: DirectWriter | None = None
    live: bool = False
    behind: bool = False
    closing: bool = False
    pinging: bool = False  # the client sends keep-alive pings, so silence means frozen
    last_seen: float = field(default_factory=lambda: asyncio.get_running_loop().time())

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.backlog + 1)

    def offer(self, entry: LogEntry) -> bool:
        """Write or queue ``entry`` if this user may see it (True: written now). On
        overflow, drop the backlog for a resync (never block the reader)."""
        if self.behind or self.closing or not entry.visible_to(self.username, self.supervisor):
            return False
        if self.live:
            assert self.writer is not None
            if self.writer.write(entry.frame):
                return True
            self.live = False  # not keeping up: the feed sends it, with flow control
        if self.queue.qsize() < self.backlog:
            self.queue.put_nowait(entry)
            return False
        self.resync()
        return False

    def resync(self) -> None:
        """Drop the backlog: the feed sends ``resync`` and a fresh snapshot next."""
        if self.behind or self.closing:
            return
        self.behind = True
        self.live = False
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(RESYNC)

    def go_live(self) -> None:
        """Called by the feed between sends: with nothing queued (everything offered
        so far is on the socket), let the hub write the next entries directly."""
        self.live = self.writer is not None and self.queue.empty() and not self.closing

    def close(self, reason: Close = CLOSE) -> None:
        """Stop the feed: nothing queued matters any more."""
        if self.closing:
            return
        self.closing = True
        self.live = False
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(reason)

    async def next(self) -> LogEntry | _Resync | Close:
        item = await self.queue.get()
        if item is RESYNC:
            self.behind = False  # entries from now on are queued again, after the snapshot
        return item

    def heard(self, pinged: bool) -> None:
        self.last_seen = asyncio.get_running_loop().time()
        self.pinging = self.pinging or pinged

    def alive(self, grace_seconds: float) -> bool:
        """Open sockets count as presence, unless a client that pings has gone quiet."""
        quiet = asyncio.get_running_loop().time() - self.last_seen
        return not self.pinging or quiet < grace_seconds


class Hub(ServingExtension):
    """The process's log reader and its subscribers."""

    key = "hub"

    def __init__(self, app: Quart | None = None) -> None:
        self.subscribers: set[Subscriber] = set()
        self.last_id: str | None = None
        self.last_revocation_id: str | None = None
        self.published = 0
        self.delivered = 0
        self.delivered_direct = 0
        self.resyncs = 0
        self._ready = asyncio.Event()
        self._wanted = asyncio.Event()  # set while there are subscribers
        self._redis: Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failed = False  # a read failed: check the log still holds last_id
        if app is not None:
            self.init_app(app)

    async def start(self) -> None:
        self._ready = asyncio.Event()  # bound to the serving loop
        self._wanted = asyncio.Event()
        if self.subscribers:
            self._wanted.set()
        assert self.app is not None
        self._redis = connect(
            RedisExtension.of(self.app).target,
            socket_timeout=BLOCK_MS / 1000 + 5,
            tls_verify=RedisExtension.of(self.app).tls_verify,
        )
        self._task = asyncio.create_task(self._read_forever(), name="warmline-hub")

    async def stop(self) -> None:
        self._stopping = True
        await stop_reader(self._task, self._redis, STOP_WAIT_SECONDS)

    async def ready(self) -> None:
        """Wait until the reader knows where the log ends: a socket that read its
        snapshot before then could miss events between the two. Raises
        ConnectionError (a RedisError) when the reader cannot tell within
        READY_SECONDS: it cannot reach Redis (its first socket woke it meanwhile)."""
        try:
            async with asyncio.timeout(READY_SECONDS):
                await self._ready.wait()
        except TimeoutError:
            raise RedisConnectionError("the event log's reader cannot reach Redis") from None

    def subscribe(
        self, username: str, supervisor: bool, backlog: int, socket_id: str = "", session: str = ""
    ) -> Subscriber:
        subscriber = Subscriber(username, supervisor, backlog, socket_id, session)
        self.subscribers.add(subscriber)
        self._wanted.set()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        if not self.subscribers:
            self._wanted.clear()

    def close_all(self) -> None:
        """Close every socket of this process (it is shutting down)."""
        for subscriber in self.subscribers:
            subscriber.close()

    def open_sockets(self) -> list[tuple[str, str]]:
        """``(username, socket_id)`` of every socket this process holds."""
        return [(s.username, s.socket_id) for s in self.subscribers if s.socket_id]

    def present_agents(self, grace_seconds: float) -> set[str]:
        """Agents with a live dashboard socket in this process."""
        return {s.username for s in self.subscribers if not s.supervisor and s.alive(grace_seconds)}

    async def _read_forever(self) -> None:
        delay = 0.1
        while not self._stopping:
            if not self._wanted.is_set():
                await self._park()
                continue
            try:
                await self._read_once()
                delay = 0.1
            except (RedisError, OSError) as exc:
                self._failed = True
                log.warning("event log read failed (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    async def _park(self) -> None:
        """No socket to serve: stop reading until one subscribes, then start again
        from the log's end (``ready`` waits for that)."""
        self._ready.clear()
        self.last_id = self.last_revocation_id = None
        self._failed = False
        await self._wanted.wait()

    async def _find_ends(self) -> None:
        """Start reading both streams after their newest entries."""
        assert self._redis is not None
        self.last_revocation_id = await newest_id(self._redis, keys.REVOCATIONS)
        self.last_id = await newest_id(self._redis)
        self._ready.set()

    async def _read_once(self) -> None:
        """One XREAD of the event log and the revocations together."""
        assert self._redis is not None
        if self.last_id is None or self.last_revocation_id is None:
            await self._find_ends()
        assert self.last_id is not None and self.last_revocation_id is not None
        if self._failed:
            await self._check_log()
            self._failed = False
        batches = await self._redis.xread(
            {keys.EVENTS: self.last_id, keys.REVOCATIONS: self.last_revocation_id},
            count=READ_COUNT,
            block=BLOCK_MS,
        )
        for stream, entries in batches or []:
            for raw_id, fields in entries:
                if stream == keys.REVOCATIONS:
                    self.last_revocation_id = raw_id
                    self.revoke(Revocation.from_stream(fields))
                else:
                    self.last_id = raw_id
                    self.publish(LogEntry.from_stream(raw_id, fields))

    async def _check_log(self) -> None:
        """After a failed read: if the entry last read is gone, the Redis now read lost
        entries (a failover to a replica that had not received them, or a restart
        without them). Every socket was sent some of them: each gets a resync."""
        assert self._redis is not None and self.last_id is not None
        if self.last_id == "0-0":
            return
        if await self._redis.xrange(keys.EVENTS, min=self.last_id, max=self.last_id):
            return
        newest = await newest_id(self._redis)
        log.warning(
            "the event log lost its entries after %s (Redis failed over or restarted "
            "without them): resyncing %d socket(s)",
            newest,
            len(self.subscribers),
        )
        self.last_id = newest
        for subscriber in self.subscribers:
            subscriber.resync()

    def revoke(self, revocation: Revocation) -> None:
        """Close, with 4401, each socket opened by a session that has ended."""
        for subscriber in self.subscribers:
            if revocation.covers(subscriber.username, subscriber.session):
                subscriber.close(REVOKED)

    def publish(self, entry: LogEntry) -> None:
        self.published += 1
        direct = 0
        for subscriber in self.subscribers:
            was_behind = subscriber.behind
            direct += subscriber.offer(entry)
            if subscriber.behind and not was_behind:
                self.resyncs += 1
        self.delivered += direct
        self.delivered_direct += direct


async def newest_id(redis: Redis, stream: str = keys.EVENTS) -> str:
    """The id of the last entry of ``stream`` (the event log), ``0-0`` when it is empty."""
    last = await redis.xrevrange(stream, count=1)
    return last[0][0] if last else "0-0"


def get_hub() -> Hub:
    return Hub.current()
