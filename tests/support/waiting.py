"""Waiting in tests for something another process or task brings about."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(check: Callable[[], Awaitable[T]], within: float = 30.0, every: float = 0.05) -> T:
    """Poll ``check`` until it returns something true, and return that; fail the test
    after ``within`` seconds (a bound on a hang, not a timed assertion)."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(every)
