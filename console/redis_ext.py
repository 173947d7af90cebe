"""The Redis connection as a Quart extension: connects in ``before_serving``,
closes in ``after_serving``, never at import time."""

from __future__ import annotations

from urllib.parse import urlsplit

from quart import Quart, current_app
from redis.asyncio import Redis


def connect(url: str, socket_timeout: float = 5.0) -> Redis:
    """An asyncio client for ``url``; ``rediss://`` accepts self-signed certificates
    because Heroku Redis presents one. Blocking reads need a ``socket_timeout``
    longer than the block."""
    options: dict[str, object] = {
        "decode_responses": True,
        "socket_connect_timeout": 2.0,
        "socket_timeout": socket_timeout,
        "health_check_interval": 15,
        "retry_on_timeout": False,
    }
    if urlsplit(url).scheme == "rediss":
        options["ssl_cert_reqs"] = "none"
    return Redis.from_url(url, **options)


class RedisExtension:
    """Holds the app's Redis client under ``app.extensions["redis"]``."""

    def __init__(self, app: Quart | None = None, url: str | None = None) -> None:
        self.url = url
        self._client: Redis | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        app.extensions["redis"] = self
        app.before_serving(self._open)
        app.after_serving(self._close)

    async def _open(self) -> None:
        if self.url is None:
            raise RuntimeError("RedisExtension has no URL (set REDIS_URL or use the embedded one)")
        self._client = connect(self.url)

    async def _close(self) -> None:
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
    return current_app.extensions["redis"].client
