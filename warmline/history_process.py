"""The history writer in a process of its own. `warmline serve` starts one beside its
web workers, so storing history never takes the workers' event loops from webhooks
and sockets (bench/RESULTS.md, the status callbacks with the writer running). The
child reads REDIS_URL and DATABASE_URL as the workers do, and ends with its parent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

from console.config import Settings
from console.history.writer import HistoryWriter
from console.postgres_ext import make_pool
from console.redis_ext import connect
from warmline import logs

log = logging.getLogger(__name__)

# Set by `serve` for its web workers (and by bench.serve): a writer process runs
# beside them, so theirs would only compete with it.
WRITER_ELSEWHERE = "WARMLINE_HISTORY_WRITER_ELSEWHERE"
RESTART_SECONDS = (1.0, 30.0)  # the first and the longest wait before restarting a child
# The writer yields the CPU to the web workers when both want it: history may lag a
# little under a burst (it catches up after, and /healthz says when it lags a minute),
# webhooks may not.
WRITER_NICENESS = 10
HEALTHY_SECONDS = 60.0  # a child that ran this long before exiting restarts after the first wait
PARENT_POLL_SECONDS = 1.0


def writer_in_workers() -> bool:
    """Whether this process's app runs its own writer (no writer process beside it)."""
    return not os.environ.get(WRITER_ELSEWHERE, "").strip()


@contextlib.contextmanager
def writer_process() -> Iterator[WriterProcess]:
    """A writer process for as long as the block runs; the apps built in it (and the
    workers it starts) leave the writing to it."""
    child = WriterProcess()
    os.environ[WRITER_ELSEWHERE] = "1"
    child.start()
    try:
        yield child
    finally:
        child.stop()
        os.environ.pop(WRITER_ELSEWHERE, None)


class WriterProcess:
    """Runs ``python -m warmline.history_process`` and starts it again if it exits
    before ``stop``, waiting longer each time it fails again soon."""

    def __init__(self) -> None:
        self._child: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # a restart and ``stop`` never cross
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        self._child = self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="history-writer", daemon=True)
        self._watcher.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopping.set()
            child = self._child
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if self._watcher is not None:
            self._watcher.join(timeout)

    def _spawn(self) -> subprocess.Popen[bytes]:
        # The parent's pid travels with it: a parent gone while the child was still
        # starting would otherwise never be noticed (the child's parent is then init).
        args = [sys.executable, "-m", "warmline.history_process", str(os.getpid())]
        return subprocess.Popen(args)

    def _watch(self) -> None:
        wait = RESTART_SECONDS[0]
        while self._child is not None:
            started = time.monotonic()
            code = self._child.wait()
            if time.monotonic() - started > HEALTHY_SECONDS:
                wait = RESTART_SECONDS[0]  # it had been running well: not a crash loop
            if self._stopping.wait(wait):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                log.error("the history writer process exited (code %s); starting it again", code)
                self._child = self._spawn()
            wait = min(wait * 2, RESTART_SECONDS[1])


async def run(settings: Settings, parent: int) -> None:
    """One writer on the deployment's Redis and PostgreSQL until SIGTERM, SIGINT or
    the end of the process ``parent``."""
    if not settings.redis_target or not settings.database_url:
        raise SystemExit("the history writer needs REDIS_URL (or REDIS_SENTINELS) and DATABASE_URL")
    redis = connect(settings.redis_target, tls_verify=settings.redis_tls_verify, max_connections=4)
    pool = make_pool(settings.database_url, max_size=2)
    await pool.open(wait=False)
    writer = HistoryWriter(lambda: redis, lambda: pool)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await writer.start()
    try:
        while os.getppid() == parent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PARENT_POLL_SECONDS)
                break
    finally:
        await writer.stop()
        await pool.close()
        await redis.aclose()


def main() -> None:
    logs.configure()
    with contextlib.suppress(OSError):
        os.nice(WRITER_NICENESS)
    parent = int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid()
    asyncio.run(run(Settings.from_env(), parent))


if __name__ == "__main__":
    main()
