"""Retention (docs/history.md, retention): what is older than HISTORY_RETENTION_DAYS
leaves PostgreSQL, and the calls' recordings leave Twilio, in small batches that each
commit on their own, so no lock is held for long.

Calls that arrived before the cutoff go with their legs, transfers and events, once
Twilio has deleted their recording and voicemail (a call whose recording Twilio would
not delete stays, with its events, for the next purge). Then the events before the
cutoff that belong to no stored call, except each agent's last ``agent.updated``
before the cutoff: the status interval that crosses the cutoff keeps its start. Last,
the agents' quarter-hour and daily totals (migration 0003) that end by the cutoff.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row, tuple_row

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
CALL_BATCH = 500
EVENT_BATCH = 5_000
# Agents' totals per UTC quarter hour and day (migration 0003): table, column, span.
_TOTALS = (("agent_quarters", "quarter", 900_000), ("agent_days", "day", DAY_MS))
# pg_advisory_lock key of the purge (distinct from the migrations' and the writer's).
LOCK_KEY = 0x776C_7075_7267_65  # "wlpurge"

DeleteRecording = Callable[[str], Awaitable[None]]  # raises when Twilio did not delete it


@dataclass
class Purged:
    """What one purge removed."""

    cutoff: int
    calls: int = 0
    legs: int = 0
    transfers: int = 0
    events: int = 0
    recordings: int = 0
    totals: int = 0  # rows of agents' quarter-hour and daily totals
    kept: list[str] = field(default_factory=list)  # calls kept: Twilio kept a recording

    def summary(self) -> str:
        return (
            f"removed {self.calls} calls ({self.legs} legs, {self.transfers} transfers), "
            f"{self.events} events, {self.totals} agents' totals and {self.recordings} "
            "recordings from before "
            f"{datetime.fromtimestamp(self.cutoff / 1000, UTC):%Y-%m-%d %H:%M} UTC"
        )


def cutoff_ms(retention_days: int, now_ms: int) -> int:
    """Rows before this instant are past retention."""
    return now_ms - retention_days * DAY_MS


async def try_lock(conn: AsyncConnection[Any]) -> bool:
    """Take the purge's session lock if no other connection holds it."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute("SELECT pg_try_advisory_lock(%s) AS locked", (LOCK_KEY,))
        row = await cursor.fetchone()
    return bool(row and row["locked"])


async def unlock(conn: AsyncConnection[Any]) -> None:
    await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


_OLD_CALLS = """
SELECT id, arrived_at, recording->>'sid' AS recording, voicemail->>'sid' AS voicemail
FROM calls
WHERE arrived_at < %(cutoff)s AND (arrived_at, id) > (%(at)s, %(id)s)
ORDER BY arrived_at, id
LIMIT %(limit)s
"""

_DELETE_CALLS = """
WITH legs AS (DELETE FROM call_legs WHERE call_id = ANY(%(ids)s) RETURNING 1),
     transfers AS (DELETE FROM call_transfers WHERE call_id = ANY(%(ids)s) RETURNING 1),
     events AS (DELETE FROM events WHERE conference = ANY(%(ids)s) RETURNING 1),
     gone AS (DELETE FROM calls WHERE id = ANY(%(ids)s) RETURNING 1)
SELECT (SELECT count(*) FROM gone) AS calls, (SELECT count(*) FROM legs) AS legs,
       (SELECT count(*) FROM transfers) AS transfers, (SELECT count(*) FROM events) AS events
"""

_LAST_AGENT_STATUS = """
SELECT DISTINCT ON (data->>'username') id
FROM events
WHERE type = 'agent.updated' AND ts < %(cutoff)s
ORDER BY data->>'username', ms DESC, seq DESC
"""

_DELETE_EVENTS = """
WITH gone AS (
  DELETE FROM events WHERE id IN (
    SELECT e.id FROM events e
    WHERE e.ts < %(cutoff)s AND e.id <> ALL(%(keep)s)
      AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.id = e.conference)
    LIMIT %(limit)s)
  RETURNING 1)
SELECT count(*) AS events FROM gone
"""


async def purge(
    conn: AsyncConnection[Any],
    cutoff: int,
    delete_recording: DeleteRecording,
    call_batch: int = CALL_BATCH,
    event_batch: int = EVENT_BATCH,
) -> Purged:
    """Remove what is older than ``cutoff`` (module docstring). ``conn`` is in
    autocommit mode: each batch is its own short transaction."""
    done = Purged(cutoff)
    at, last = -1, ""
    while True:
        async with conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(
                _OLD_CALLS, {"cutoff": cutoff, "at": at, "id": last, "limit": call_batch}
            )
            calls = await cursor.fetchall()
        if not calls:
            break
        at, last = calls[-1]["arrived_at"], calls[-1]["id"]
        ids: list[str] = []
        for call in calls:
            sids = [sid for sid in (call["recording"], call["voicemail"]) if sid]
            deleted = await _delete_recordings(sids, delete_recording)
            if deleted is None:
                done.kept.append(call["id"])
                continue
            done.recordings += deleted
            ids.append(call["id"])
        if ids:
            async with conn.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(_DELETE_CALLS, {"ids": ids})
                counts = await cursor.fetchone()
            assert counts is not None
            done.calls += counts["calls"]
            done.legs += counts["legs"]
            done.transfers += counts["transfers"]
            done.events += counts["events"]
        if len(calls) < call_batch:
            break
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(_LAST_AGENT_STATUS, {"cutoff": cutoff})
        keep = [row["id"] for row in await cursor.fetchall()]
    while True:
        async with conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(
                _DELETE_EVENTS, {"cutoff": cutoff, "keep": keep, "limit": event_batch}
            )
            row = await cursor.fetchone()
        assert row is not None
        done.events += row["events"]
        if row["events"] < event_batch:
            break
    for table, column, span in _TOTALS:
        done.totals += await _delete_totals(conn, table, column, span, cutoff, event_batch)
    return done


async def _delete_totals(
    conn: AsyncConnection[Any], table: str, column: str, span: int, cutoff: int, batch: int
) -> int:
    """Rows of a table of agents' totals (migration 0003) wholly before the cutoff."""
    async with conn.cursor(row_factory=tuple_row) as plain:
        await plain.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
        exists = await plain.fetchone()
    if not (exists and exists[0]):
        return 0
    statement = sql.SQL(
        "WITH gone AS (DELETE FROM {t} WHERE ctid IN (SELECT ctid FROM {t}"
        " WHERE {c} + %(span)s <= %(cutoff)s LIMIT %(limit)s) RETURNING 1)"
        " SELECT count(*) FROM gone"
    ).format(t=sql.Identifier(table), c=sql.Identifier(column))
    removed = 0
    while True:
        async with conn.cursor(row_factory=tuple_row) as plain:
            await plain.execute(statement, {"span": span, "cutoff": cutoff, "limit": batch})
            row = await plain.fetchone()
        count = int(row[0]) if row else 0
        removed += count
        if count < batch:
            return removed


async def _delete_recordings(sids: list[str], delete_recording: DeleteRecording) -> int | None:
    """Delete each recording at Twilio: how many, or None when one was not deleted."""
    for sid in sids:
        try:
            await delete_recording(sid)
        except Exception as error:  # the gateway's error: the history knows no Twilio
            log.warning("purge: Twilio did not delete recording %s (%s); kept", sid, error)
            return None
    return len(sids)
