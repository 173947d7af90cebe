"""Read models kept beside the event log: per-conference timelines and daily figures.

``Unit.write`` calls ``project`` inside its MULTI, after the XADDs, so the read
models commit with the events they fold, or not at all: a unit that loses a race
retries from scratch and nothing is counted twice. Everything here only queues
commands on the pipeline; the little that depends on what Redis already holds (the
timeline's TTL, a corrected outcome's old counts) runs in Lua at EXEC time.
"""

from __future__ import annotations

from datetime import tzinfo

from redis.asyncio.client import Pipeline

from console.domain import figures, timeline
from console.domain.events import Event
from console.domain.positions import Positions


def project(
    pipe: Pipeline, events: list[Event], now: int, zone: tzinfo, positions: Positions | None = None
) -> None:
    """Queue the read-model writes for ``events`` on the unit's MULTI pipeline; the
    figures' days are days in ``zone`` (CENTER_TIMEZONE). ``now`` is unused: entries
    and counters take their times from the events, so a retried unit or a late
    callback lands where the event says it belongs."""
    timeline.project(pipe, events, positions)
    figures.project(pipe, events, zone)
