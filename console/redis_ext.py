"""The Redis connection as a Quart extension: connects in ``before_serving``,
closes in ``after_serving``, never at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from quart import Quart
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import RedisError

from console.config import DEFAULT_REDIS_MAX_CONNECTIONS, RedisSentinels
from console.extension import ServingExtension, settings_of

log = logging.getLogger(__name__)

POOL_WAIT_SECONDS = 5.0
SENTINEL_TIMEOUT_SECONDS = 1.0  # one Sentinel's answer; the next is asked after it

# After a failover: forget that this Redis was reconciled with Twilio (KEYS[1], the
# reconcile marker), unless a process is reconciling it now ("running:…").
_FORGET_RECONCILED = """
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 1, 5) == 'done:' then return redis.call('DEL', KEYS[1]) end
return 0
"""


def describe(target: str | RedisSentinels) -> str:
    """Where a client of ``target`` goes, for log lines (never a password)."""
    if isinstance(target, RedisSentinels):
        return target.describe()
    parts = urlsplit(target)
    return parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's Sentinel pool (the master's address asked of the Sentinels on each
    new connection) with its BlockingConnectionPool's bounded wait for a free one.

    ``on_switch`` is called with the new address when the Sentinels name another
    master than the one this pool connected to: a failover happened."""

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)
        self.on_switch: Callable[[tuple[str, int]], None] | None = None

    async def get_master_address(self) -> tuple[str, int]:
        # SentinelConnectionPool's, noting the switch: no await between the comparison
        # and the update, so a switch is seen once however many connections race.
        address = await self.sentinel_manager.discover_master(self.service_name)
        if self.is_master and self.master_address != address:
            switched = self.master_address is not None
            self.master_address = address
            await self.disconnect(inuse_connections=False)
            if switched and self.on_switch is not None:
                self.on_switch(address)
        return address


class SentinelRedis(Redis):
    """A master client that also closes its Sentinel clients when closed."""

    sentinel: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel is not None:
            await self.sentinel.aclose()


def connect(
    target: str | RedisSentinels,
    socket_timeout: float = 5.0,
    max_connections: int = DEFAULT_REDIS_MAX_CONNECTIONS,
    tls_verify: bool = True,
) -> Redis:
    """An asyncio client for ``target``: a Redis URL, or the master the Sentinels name
    (asked again on every new connection, so the client follows a failover; commands
    on the old master fail meanwhile, as on any lost connection). Every Redis client
    of the app and the CLI is made here.

    For a URL: a ``rediss://`` server's certificate and host
    name are verified against the system's trust store (OpenSSL's default paths, so
    ``SSL_CERT_FILE`` too) unless ``tls_verify`` is false (REDIS_TLS_VERIFY=false):
    Heroku Redis presents a self-signed certificate, and then the connection is
    encrypted but not authenticated. Blocking reads need a ``socket_timeout`` longer
    than the block.

    The pool is bounded and blocking: a burst of webhooks would otherwise open one
    connection per request (each API read, each unit's round trip, each socket),
    past a hosted Redis's client limit (redis-py's own pool raises at 100). Past
    ``max_connections`` a request waits up to ``POOL_WAIT_SECONDS`` for one to come
    back, and only then fails (a ConnectionError, answered 503)."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 2.0,
        "socket_timeout": socket_timeout,
        "health_check_interval": 15,
        "retry_on_timeout": False,
    }
    if isinstance(target, RedisSentinels):
        return _sentinel_client(target, max_connections, options)
    url = target
    if urlsplit(url).scheme == "rediss":
        # "required" also checks the host name (redis-py's defaults); "none" neither.
        options["ssl_cert_reqs"] = "required" if tls_verify else "none"
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=POOL_WAIT_SECONDS, **options
    )
    return Redis.from_pool(pool)


async def stop_reader(task: asyncio.Task[Any] | None, client: Redis | None, wait: float) -> None:
    """Stop a background reader and close its own client. redis-py can hold a
    cancellation back while it (re)connects: wait for the task ``wait`` seconds at most
    (the reader's loop also stops by a flag of its own)."""
    if task is not None:
        task.cancel()
        await asyncio.wait({task}, timeout=wait)
    if client is not None:
        await client.aclose()


def _sentinel_client(
    target: RedisSentinels, max_connections: int, options: dict[str, Any]
) -> SentinelRedis:
    sentinel = Sentinel(
        list(target.addresses),
        sentinel_kwargs={
            "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
            "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
        },
    )
    client = sentinel.master_for(
        target.master,
        redis_class=SentinelRedis,
        connection_pool_class=BlockingSentinelConnectionPool,
        max_connections=max_connections,
        timeout=POOL_WAIT_SECONDS,
        password=target.password,
        **options,
    )
    client.sentinel = sentinel
    return client


def watch_failovers(client: Redis, marker: str) -> None:
    """When ``client``'s Sentinels name a new master, log it and delete ``marker`` (the
    reconcile's "done" mark) there: the writes the old master had not replicated are
    gone, and the app's reconcile then rebuilds what Twilio still has live."""
    pool = client.connection_pool
    if not isinstance(pool, BlockingSentinelConnectionPool):
        return
    tasks: set[asyncio.Task[None]] = set()

    async def forget() -> None:
        with contextlib.suppress(RedisError, OSError):
            await client.eval(_FORGET_RECONCILED, 1, marker)  # type: ignore[misc]

    def switched(address: tuple[str, int]) -> None:
        log.warning(
            "Redis failover: the Sentinels name %s:%s as master %s; reconciling with Twilio "
            "what the old master had not replicated",
            *address,
            pool.service_name,
        )
        task = asyncio.get_running_loop().create_task(forget(), name="warmline-failover")
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    pool.on_switch = switched


class RedisExtension(ServingExtension):
    """Holds the app's Redis client."""

    key = "redis"

    def __init__(
        self,
        app: Quart | None = None,
        url: str | RedisSentinels | None = None,
        max_connections: int = DEFAULT_REDIS_MAX_CONNECTIONS,
        tls_verify: bool = True,
    ) -> None:
        self.url = url  # None: the settings' Sentinels (``target``)
        self.max_connections = max_connections
        self.tls_verify = tls_verify  # the hub's own connection follows it too
        self._client: Redis | None = None
        if app is not None:
            self.init_app(app)

    @property
    def target(self) -> str | RedisSentinels:
        """The URL given, else the Sentinels of the app's settings."""
        sentinels = settings_of(self.app).redis_sentinels if self.app is not None else None
        target = self.url or sentinels
        if target is None:
            raise RuntimeError(
                "RedisExtension has no URL (set REDIS_URL or REDIS_SENTINELS, "
                "or use the embedded one)"
            )
        return target

    async def start(self) -> None:
        self._client = connect(
            self.target, max_connections=self.max_connections, tls_verify=self.tls_verify
        )

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> Redis:
        if self._client is None:
            raise RuntimeError("Redis is not connected: the app is not serving")
        return self._client


def get_redis() -> Redis:
    """The current app's Redis client."""
    return RedisExtension.current().client
