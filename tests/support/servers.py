"""Real app processes for tests that cross process boundaries: `warmline serve`
started as a subprocess (Hypercorn, its own event loop and Redis clients) against
the test session's redis-server and a Twilio stand-in reached over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp

from tests.conftest import ACCOUNT_SID, API_KEY, API_SECRET, AUTH_TOKEN
from warmline.embedded_redis import free_port

START_TIMEOUT_SECONDS = 30.0


@dataclass
class AppServer:
    """One running `warmline serve`; ``url`` is also its PUBLIC_BASE_URL."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self) -> int:
        """SIGTERM, as a platform stops a dyno; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def server_env(redis_url: str, twilio_base_url: str, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TWILIO_REGION", "TWILIO_EDGE")}
    env.update(
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_API_KEY=API_KEY,
        TWILIO_API_SECRET=API_SECRET,
        TWILIO_CALLER_ID="+15550001111",
        TWILIO_API_BASE_URL=twilio_base_url,
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        SECRET_KEY="test-secret-key",
        REDIS_URL=redis_url,
        PORT=str(port),
        WEB_CONCURRENCY="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@asynccontextmanager
async def app_server(
    redis_url: str, twilio_base_url: str, log_dir: Path, **extra_env: str
) -> AsyncIterator[AppServer]:
    """Start `warmline serve` on a free port, wait for a healthy /healthz, stop it after."""
    port = free_port()
    log = log_dir / f"app-{port}.log"
    env = server_env(redis_url, twilio_base_url, port, **extra_env)
    server = AppServer(f"http://127.0.0.1:{port}", spawn_serve(env, log), log)
    try:
        await wait_healthy(server)
        yield server
    finally:
        server.terminate()


def spawn_serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `warmline serve` with its output in ``log`` (Popen returns at once; the
    process is stopped and reaped synchronously by AppServer.terminate)."""
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "warmline.cli", "serve"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


class Serving(Protocol):
    """A started server: what ``wait_healthy`` needs of it."""

    url: str
    process: subprocess.Popen[bytes]

    def output(self) -> str: ...


async def wait_healthy(server: Serving, seconds: float = START_TIMEOUT_SECONDS) -> None:
    """Poll /healthz until 200; fail with the server's output if it exits or is late."""
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{server.output()}")
            try:
                async with session.get(f"{server.url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"server not healthy within {seconds}s:\n{server.output()}")
