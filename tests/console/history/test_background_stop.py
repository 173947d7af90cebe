"""A background part (the history writer, the daily purge) stops even when its task
swallows a cancellation, as redis-py 8.1.0 can when one lands just as a command
completes: the app's shutdown then hung until the task's next read was cancelled by
nobody (a test's teardown waited minutes)."""

from __future__ import annotations

import asyncio

from console.history.background import BackgroundPart


class Stubborn(BackgroundPart):
    """Swallows the first cancellation, then blocks again, like the writer did."""

    def __init__(self) -> None:
        super().__init__(lambda: None, lambda: None)  # type: ignore[arg-type, return-value]
        self.swallowed = 0
        self.running = asyncio.Event()

    async def _run(self) -> None:
        self.running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.swallowed += 1
        await asyncio.Event().wait()  # the next blocking read


async def test_stop_ends_a_task_that_swallowed_its_first_cancellation() -> None:
    part = Stubborn()
    await part.start()
    await part.running.wait()
    stopping = asyncio.create_task(part.stop())
    await asyncio.wait({stopping}, timeout=10)  # a bound on a hang, not a timing
    assert stopping.done(), "stop() still waits for a task that swallowed its cancellation"
    stopping.result()
    assert part.swallowed == 1
    assert part._task is not None and part._task.cancelled()
