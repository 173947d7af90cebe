"""Why a connection could not be made, in plain words (connection refused, name not
resolved, timed out, TLS failure): what `warmline check`, `serve` and `reconcile` print
and what a failed Twilio request's GatewayError says."""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

from redis.asyncio.sentinel import MasterNotFoundError
from redis.exceptions import AuthenticationError
from redis.exceptions import TimeoutError as RedisTimeout

from console.config import RedisSentinels


def plain_reason(error: OSError) -> str:
    """The words for a socket, name-lookup or TLS error; its own message otherwise."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS failure: {error.verify_message or 'certificate not trusted'}"
    if isinstance(error, ssl.SSLError):
        return f"TLS failure: {(error.reason or 'handshake failed').lower().replace('_', ' ')}"
    if isinstance(error, socket.gaierror):
        return "name not resolved"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "timed out"
    return error.strerror or str(error) or type(error).__name__


def redis_problem(url: str | RedisSentinels, error: BaseException) -> str:
    """One line for a Redis that does not answer: where (never the password) and why."""
    if isinstance(url, RedisSentinels):
        return f"cannot reach {url.describe()}: {redis_reason(error)}"
    parts = urlsplit(url)
    if parts.scheme == "unix":
        where = parts.path
    else:
        host = parts.hostname or "localhost"
        where = f"{f'[{host}]' if ':' in host else host}:{parts.port or 6379}"
    return f"cannot reach Redis at {where}: {redis_reason(error)}"


def redis_reason(error: BaseException) -> str:
    """Why redis-py could not talk to the server, in plain words; redis-py keeps the
    socket's error as the context of its ConnectionError."""
    if isinstance(error, AuthenticationError):
        return f"the password was refused ({error})"
    if isinstance(error, RedisTimeout):
        return "timed out"
    if isinstance(error, MasterNotFoundError):
        # redis-py lists each Sentinel's failure; without any, they answered but
        # none names a master by that name that is up
        unreachable = str(error).count(" - ")
        if unreachable:
            return f"{unreachable} sentinel(s) did not answer and no other named a master up"
        return "no sentinel names a master by that name that is up"
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError):
            return plain_reason(cause)
        cause = cause.__cause__ or cause.__context__
    return str(error) or type(error).__name__
