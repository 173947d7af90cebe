"""``GET /ws``: the event log served live to one dashboard (docs/websocket.md).

A socket subscribes to the process's hub *before* it reads its starting point (a
snapshot, or the replay after ``since``), so every event after that point is
either in what it reads or in its backlog: no gap. Entries up to the starting
point are skipped, so no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from quart import Blueprint, Response, websocket
from redis.asyncio import Redis
from redis.exceptions import RedisError

from console.domain import keys
from console.domain.events import now_ms
from console.domain.snapshot import read_snapshot
from console.domain.sockets import claim_socket, release_socket
from console.extension import get_settings
from console.realtime.hub import (
    RESYNC,
    REVOKED,
    Close,
    LogEntry,
    StreamId,
    Subscriber,
    get_hub,
    parse_id,
)
from console.realtime.presence import Presence
from console.realtime.ws_frames import direct_writer
from console.redis_ext import get_redis
from console.web.auth import SessionUser, current_user, origin_allowed, session_time_left_ms
from console.web.errors import error_response
from console.web.json_limits import MAX_JSON_BYTES, TOO_BIG, TOO_DEEP, too_deep

log = logging.getLogger(__name__)
blueprint = Blueprint("ws", __name__)

REPLAY_PAGE = 500
TRY_AGAIN_LATER = 1013


@blueprint.websocket("/ws")
async def ws() -> Response | None:
    if not origin_allowed(websocket.headers.get("Origin")):
        return error_response("cross-origin WebSocket refused", 403)
    try:
        user = await current_user()
    except (RedisError, OSError):
        return error_response("state store unavailable, try again shortly", 503)
    if user is None:
        return error_response("login required", 401)
    since = websocket.args.get("since")
    if since is not None:
        try:
            parse_id(since)
        except ValueError:
            return error_response("since must be an event id like 1700000000000-0", 400)
    settings = get_settings()
    redis = get_redis()
    socket_id = uuid.uuid4().hex
    try:
        admitted = await claim_socket(
            redis, user.username, socket_id, settings.max_sockets_per_user
        )
    except (RedisError, OSError):
        return error_response("state store unavailable, try again shortly", 503)
    if not admitted:
        log.warning(
            "refused a /ws socket: %s holds %d already",
            user.username,
            settings.max_sockets_per_user,
        )
        return error_response(
            f"too many open sockets (at most {settings.max_sockets_per_user} per user)", 429
        )
    hub = get_hub()
    subscriber = hub.subscribe(
        user.username, user.is_supervisor, settings.ws_backlog, socket_id, user.session
    )
    expiry: asyncio.TimerHandle | None = None
    accepted = False
    try:
        # Subscribed, with the hub following the revocations: a session ended from now
        # on closes this socket via the hub; one that ended before is seen here.
        await hub.ready()
        time_left_ms = await session_time_left_ms(user)
        if time_left_ms <= 0:
            return error_response("login required", 401)
        expiry = asyncio.get_running_loop().call_later(
            time_left_ms / 1000, subscriber.close, REVOKED
        )
        await websocket.accept()
        accepted = True
        subscriber.writer = direct_writer(websocket)
        if not user.is_supervisor:
            await Presence.current().stamp(user.username)
        await _Feed(user, subscriber, redis).run(since)
    except (RedisError, OSError) as exc:
        # The browser reconnects with `since` once Redis answers again.
        log.warning("closing a dashboard socket, Redis failed: %s", exc)
        if not accepted:
            return error_response("state store unavailable, try again shortly", 503)
        await websocket.close(TRY_AGAIN_LATER)
    finally:
        if expiry is not None:
            expiry.cancel()
        hub.unsubscribe(subscriber)
        # Unstamped, the entry stops counting within EXPIRY_MS should this fail.
        with contextlib.suppress(RedisError, OSError, RuntimeError):
            await release_socket(redis, user.username, socket_id)
    return None


class _Feed:
    """What one socket is sent, in id order."""

    def __init__(self, user: SessionUser, subscriber: Subscriber, redis: Redis) -> None:
        self.user = user
        self.subscriber = subscriber
        self.redis = redis
        self.position: StreamId = (0, 0)
        self.hub = get_hub()

    async def run(self, since: str | None) -> None:
        await self.hub.ready()
        if since is not None and await replayable(self.redis, since):
            await self._replay(since)
        else:
            await self._snapshot()
        listener = asyncio.create_task(self._listen())
        try:
            await self._follow()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener

    async def _follow(self) -> None:
        while True:
            self.subscriber.go_live()
            item = await self.subscriber.next()
            if isinstance(item, Close):
                await websocket.close(item.code)
                return
            if item is RESYNC:
                await websocket.send('{"type":"resync"}')
                await self._snapshot()
            elif isinstance(item, LogEntry) and item.id > self.position:
                await self._send(item)

    async def _send(self, entry: LogEntry) -> None:
        await websocket.send(entry.text)
        self.position = entry.id
        self.hub.delivered += 1

    async def _snapshot(self) -> None:
        snapshot = await read_snapshot(self.redis)
        state = snapshot.visible_to(self.user.username, self.user.is_supervisor)
        message = {"id": snapshot.last_id, "type": "snapshot", "ts": now_ms(), "data": state}
        await websocket.send(json.dumps(message, separators=(",", ":")))
        self.position = parse_id(snapshot.last_id)

    async def _replay(self, since: str) -> None:
        self.position = parse_id(since)
        cursor = since
        while True:
            page = await self.redis.xrange(
                keys.EVENTS, min=f"({cursor}", max="+", count=REPLAY_PAGE
            )
            for raw_id, fields in page:
                entry = LogEntry.from_stream(raw_id, fields)
                if entry.visible_to(self.user.username, self.user.is_supervisor):
                    await self._send(entry)
                self.position = entry.id
            if len(page) < REPLAY_PAGE:
                return
            cursor = page[-1][0]

    async def _listen(self) -> None:
        """Client messages only keep the socket alive; a client that sends
        ``{"type": "ping"}`` is expected to keep doing so (see Subscriber.alive).
        A message too big or nested too deeply to read is answered with an error
        message, and the socket goes on: this loop never ends but with the socket."""
        while True:
            message = await websocket.receive()
            refusal = _refusal(message)
            self.subscriber.heard(pinged=refusal is None and _is_ping(message))
            if refusal is not None:
                log.info("refused a /ws message from %s: %s", self.user.username, refusal)
                await websocket.send(json.dumps({"type": "error", "error": refusal}))


def _refusal(message: Any) -> str | None:
    """Why a client's message cannot be read, or None. The size is counted in UTF-8
    bytes, as it came over the wire."""
    if isinstance(message, str):
        size = len(message)
        if size <= MAX_JSON_BYTES:  # a character is one to four bytes
            size = len(message.encode(errors="replace"))
    elif isinstance(message, bytes):
        size = len(message)
    else:
        return None
    if size > MAX_JSON_BYTES:
        return TOO_BIG
    return TOO_DEEP if too_deep(message) else None


def _is_ping(message: Any) -> bool:
    try:
        return json.loads(message).get("type") == "ping"
    except (ValueError, AttributeError, TypeError, RecursionError):
        return False


async def replayable(redis: Redis, since: str) -> bool:
    """True when every event after ``since`` is still in the log. The log is trimmed
    from its old end, so that holds exactly when ``since`` itself is still in it (not
    trimmed away, not from another log, not lost with a Redis failover before newer
    events were written); ``0-0`` qualifies only while the log was never trimmed (as
    many entries kept as ever published)."""
    if parse_id(since) != (0, 0):
        return bool(await redis.xrange(keys.EVENTS, min=since, max=since))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xlen(keys.EVENTS)
        pipe.hget(keys.COUNTERS, "events_published")
        length, published = await pipe.execute()
    return length == int(published or 0)
