"""Start `warmline serve` as a child process and wait until it answers: for tests,
benchmarks and local scripts that need the real server (Hypercorn, its own event
loop and Redis clients) rather than an app object in their own process.

The caller gives the Twilio account and where Twilio is (a stand-in's base URL), and
the database for the call history (else the child inherits DATABASE_URL, or starts or
reuses the embedded PostgreSQL); ``server_env`` builds the environment,
``spawn_serve`` starts the process with its output in a log file, ``wait_healthy``
polls ``/healthz``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol

import aiohttp

START_TIMEOUT_SECONDS = 30.0
# The twilio client rewrites API hosts when these are set; a child must not inherit them.
_REWRITING = ("TWILIO_REGION", "TWILIO_EDGE")


def server_env(
    redis_url: str,
    twilio_base_url: str,
    port: int,
    *,
    account_sid: str,
    auth_token: str,
    api_key: str,
    api_secret: str,
    caller_id: str = "+15550001111",
    secret_key: str = "local-secret-key",
    database_url: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """This process's environment for one `warmline serve` on ``port`` (which is also
    its PUBLIC_BASE_URL), one worker unless ``extra`` says otherwise. Its history goes
    to ``database_url``, else to this process's DATABASE_URL, else to the embedded
    PostgreSQL (one per cache folder, shared by the servers started at once)."""
    env = {k: v for k, v in os.environ.items() if k not in _REWRITING}
    env.update(
        TWILIO_ACCOUNT_SID=account_sid,
        TWILIO_AUTH_TOKEN=auth_token,
        TWILIO_API_KEY=api_key,
        TWILIO_API_SECRET=api_secret,
        TWILIO_CALLER_ID=caller_id,
        TWILIO_API_BASE_URL=twilio_base_url,
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        SECRET_KEY=secret_key,
        REDIS_URL=redis_url,
        PORT=str(port),
        WEB_CONCURRENCY="1",
        PYTHONUNBUFFERED="1",
    )
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    env.update(extra)
    return env


def spawn_serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `warmline serve` with its output in ``log``. Returns at once; the caller
    stops and reaps the process."""
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
