"""A serving process's heap. What start-up builds (modules, routes, the app and its
extensions) lives as long as the process, yet every full garbage collection walks it
all, holding each request in flight up for as long; frozen, it is left out."""

from __future__ import annotations

import gc

from quart import Quart


def freeze_start_up_heap(app: Quart) -> None:
    """Once ``app`` has started (register this after everything else that starts),
    collect once and freeze what is left, so full collections walk only what serving
    made since. For a serving process only: frozen cycles are never collected."""

    async def freeze() -> None:
        gc.collect()
        gc.freeze()

    app.before_serving(freeze)
