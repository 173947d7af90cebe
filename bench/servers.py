"""The processes a benchmark measures: `warmline serve` and the baselines (the bare
broadcast, the hello-world form app), each a Hypercorn master with one worker process
(or ``workers`` of them), plus the Redis and the Twilio stand-in."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from simulator.testing import ACCOUNT_SID, API_KEY, API_SECRET, AUTH_TOKEN
from warmline import localserver
from warmline.embedded_redis import free_port
from warmline.localserver import wait_healthy

START_TIMEOUT_SECONDS = 60.0


@dataclass
class Server:
    """One server process (``process``); ``worker()`` is what gets measured."""

    kind: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    healthy_s: float = 0.0  # from spawning to the first 200 on /healthz (polled every 0.1 s)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def worker(self) -> psutil.Process:
        """The one process serving requests (benchmarks of a single worker)."""
        workers = self.workers()
        if len(workers) != 1:
            raise RuntimeError(f"expected one Hypercorn worker, found {workers}")
        return workers[0]

    def master(self) -> psutil.Process:
        return psutil.Process(self.process.pid)

    def workers(self) -> list[psutil.Process]:
        """Every process serving requests: the master itself when it serves in-process
        (one worker), else the worker processes Hypercorn spawned (multiprocessing's
        spawn_main; not the history writer, an embedded PostgreSQL or the resource
        tracker, which are children too)."""
        master = self.master()
        children = [
            child
            for child in master.children(recursive=True)
            if "spawn_main" in " ".join(child.cmdline())
        ]
        return children or [master]

    def processes(self) -> list[psutil.Process]:
        """The master and every process under it (workers, multiprocessing helpers)."""
        master = self.master()
        return [master, *master.children(recursive=True)]

    def stop(self, grace_seconds: float = 2.0) -> None:
        """SIGTERM, then SIGKILL to the worker and the master after ``grace_seconds``:
        a `warmline serve` worker that has served a WebSocket waits out Hypercorn's
        whole graceful_timeout (10 s) on SIGTERM, which would only slow the bench."""
        if self.process.poll() is not None:
            return
        try:
            workers = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            workers = []
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            for worker in workers:
                with contextlib.suppress(psutil.Error):
                    worker.kill()
            self.process.kill()
            self.process.wait()


async def start_server(
    kind: str,
    log_dir: Path,
    redis_url: str,
    twilio_url: str,
    refuse_deflate: bool = False,
    workers: int = 1,
) -> Server:
    """``kind`` is "warmline" (`warmline serve`), "bare" (the broadcast baseline under
    ``bench.serve``) or "hello" (the hello-world form app under ``bench.serve``).
    ``refuse_deflate`` serves warmline or bare through ``bench.refuse_deflate``.
    ``workers`` is passed as WEB_CONCURRENCY."""
    port = free_port()
    # The fan-out bench opens every socket with one supervisor's cookie.
    env = server_env(
        redis_url, twilio_url, port, WEB_CONCURRENCY=str(workers), MAX_SOCKETS_PER_USER="100000"
    )
    if refuse_deflate:
        env["BENCH_APP"] = kind
        args = [sys.executable, "-m", "bench.serve", "bench.refuse_deflate:app"]
    elif kind == "warmline":
        args = [sys.executable, "-m", "warmline.cli", "serve"]
    elif kind == "hello":
        args = [sys.executable, "-m", "bench.serve", "bench.hello_app:app"]
    else:
        args = [sys.executable, "-m", "bench.serve", "bench.broadcast_app:app"]
    return await started(kind, port, args, env, log_dir / f"{kind}-{port}.log")


async def started(kind: str, port: int, args: list[str], env: dict[str, str], log: Path) -> Server:
    """Spawn ``args`` (a server on ``port``) and wait until /healthz answers; the time
    that took is its ``healthy_s``. A server that never does is stopped."""
    spawned = time.monotonic()
    server = Server(kind, f"http://127.0.0.1:{port}", spawn(args, env, log), log)
    try:
        await wait_healthy(server, START_TIMEOUT_SECONDS)
    except BaseException:
        server.stop()
        raise
    server.healthy_s = time.monotonic() - spawned
    return server


def server_env(redis_url: str, twilio_url: str, port: int, **extra: str) -> dict[str, str]:
    """The environment of a server under test: the made-up account of
    ``simulator.testing``, Twilio at ``twilio_url``."""
    return localserver.server_env(
        redis_url,
        twilio_url,
        port,
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        api_key=API_KEY,
        api_secret=API_SECRET,
        **extra,
    )


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a server with its output in ``log`` (Popen returns at once)."""
    with log.open("wb") as sink:
        return subprocess.Popen(args, env=env, stdout=sink, stderr=subprocess.STDOUT)
