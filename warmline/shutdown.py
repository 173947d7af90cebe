"""Stopping a process without keeping dashboards waiting.

On SIGTERM (a deploy, a dyno restart) Hypercorn stops accepting connections and
waits up to its graceful timeout for the open ones to finish; a dashboard socket
never finishes by itself, so every stop would take the full timeout and end with
cancelled sockets. Here SIGTERM first closes this process's sockets (1012: service
restart; the browsers resume on another process with ``since``), then lets the
server drain its background REST actions and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.typing import ASGIFramework
from quart import Quart

from console.realtime.hub import Hub

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def close_sockets_on_sigterm(app: Quart) -> None:
    """In a worker of a multi-process Hypercorn: its master stops it through a shared
    event the app cannot see, but platforms (Heroku) signal every process of a dyno,
    so the worker's own SIGTERM closes its sockets instead of killing it outright."""

    async def install() -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, Hub.of(app).close_all)

    app.before_serving(install)


async def serve_in_process(app: Quart, config: Config, asgi: ASGIFramework | None = None) -> None:
    """One worker: serve in this process, so the stop signal reaches the app. Hypercorn
    serves ``asgi`` (``app`` as warmline.proxies.served wraps it), default ``app``."""
    stop = asyncio.Event()

    def on_signal() -> None:
        if Hub.key in app.extensions:
            Hub.of(app).close_all()
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
    await serve(asgi or app, config, shutdown_trigger=stop.wait)


def run_in_process(app: Quart, config: Config, asgi: ASGIFramework | None = None) -> None:
    """``serve_in_process`` on uvloop when installed (see warmline.cli.worker_class)."""
    if config.worker_class == "uvloop":
        import uvloop

        uvloop.run(serve_in_process(app, config, asgi))
    else:
        asyncio.run(serve_in_process(app, config, asgi))
