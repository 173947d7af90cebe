"""Stopping a background task for good (no web framework, no client: every layer may
use it)."""

from __future__ import annotations

import asyncio
from typing import Any

CANCEL_AGAIN_SECONDS = 0.5  # a stopping task not ended by then is cancelled again


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` until it has ended, then raise what it ended with (as awaiting it
    would), a cancellation aside. Once is not enough: redis-py 8.1.0 can swallow one
    that lands as a command completes, and the task goes on to its next wait."""
    while task is not None and not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_AGAIN_SECONDS)
    if task is not None and not task.cancelled():
        task.result()
