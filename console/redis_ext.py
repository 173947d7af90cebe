"""The Redis connection as a Quart extension: connects in ``before_serving``,
closes in ``after_serving``, never at import time."""

from __future__ import annotations

from urllib.parse import urlsplit

from quart import Quart
from redis.asyncio import BlockingConnectionPool, Redis

from console.config import DEFAULT_REDIS_MAX_CONNECTIONS
from console.extension import ServingExtension

POOL_WAIT_SECONDS = 5.0


def connect(
    url: str,
    socket_timeout: float = 5.0,
    max_connections: int = DEFAULT_REDIS_MAX_CONNECTIONS,
    tls_verify: bool = True,
) -> Redis:
    """An asyncio client for ``url``. A ``rediss://`` server's certificate and host
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
    options: dict[str, object] = {
        "decode_responses": True,
        "socket_connect_timeout": 2.0,
        "socket_timeout": socket_timeout,
        "health_check_interval": 15,
        "retry_on_timeout": False,
    }
    if urlsplit(url).scheme == "rediss":
        # "required" also checks the host name (redis-py's defaults); "none" neither.
        options["ssl_cert_reqs"] = "required" if tls_verify else "none"
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=POOL_WAIT_SECONDS, **options
    )
    return Redis.from_pool(pool)


class RedisExtension(ServingExtension):
    """Holds the app's Redis client."""

    key = "redis"

    def __init__(
        self,
        app: Quart | None = None,
        url: str | None = None,
        max_connections: int = DEFAULT_REDIS_MAX_CONNECTIONS,
        tls_verify: bool = True,
    ) -> None:
        self.url = url
        self.max_connections = max_connections
        self.tls_verify = tls_verify  # the hub's own connection follows it too
        self._client: Redis | None = None
        if app is not None:
            self.init_app(app)

    async def start(self) -> None:
        if self.url is None:
            raise RuntimeError("RedisExtension has no URL (set REDIS_URL or use the embedded one)")
        self._client = connect(
            self.url, max_connections=self.max_connections, tls_verify=self.tls_verify
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
