"""Read models kept beside the event log: per-conference timelines and daily figures.

Placeholder until the timeline/figures work lands: the unit of work already calls
``project`` inside its MULTI so these read models commit with the events they fold.
"""

from __future__ import annotations

from redis.asyncio.client import Pipeline

from console.events import Event


def project(pipe: Pipeline, events: list[Event], now: int) -> None:
    """Queue the read-model writes for ``events`` on the unit's MULTI pipeline."""
