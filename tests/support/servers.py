"""Real app processes for tests that cross process boundaries: `warmline serve`
started as a subprocess (warmline.localserver) against the test session's
redis-server and a Twilio stand-in reached over HTTP, with the made-up account of
simulator.testing."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from simulator.testing import ACCOUNT_SID, API_KEY, API_SECRET, AUTH_TOKEN
from warmline import localserver
from warmline.embedded_redis import free_port
from warmline.localserver import spawn_serve, wait_healthy

__all__ = ["AppServer", "app_server", "server_env", "spawn_serve", "wait_healthy"]


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
    """``localserver.server_env`` with the test account and the tests' secret key."""
    return localserver.server_env(
        redis_url,
        twilio_base_url,
        port,
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        api_key=API_KEY,
        api_secret=API_SECRET,
        secret_key="test-secret-key",
        **extra,
    )


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
