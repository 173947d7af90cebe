"""Recordings in the history (SPEC §8): the call a recording or voicemail belongs to,
found by its SID (indexes ``calls_by_recording``, ``calls_by_voicemail``), and its
removal once deleted at Twilio."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

_CALL_OF = """
SELECT id, agents FROM calls WHERE recording IS NOT NULL AND recording->>'sid' = %(sid)s
UNION ALL
SELECT id, agents FROM calls WHERE voicemail IS NOT NULL AND voicemail->>'sid' = %(sid)s
LIMIT 1
"""
# The writer derives the same null from the recording.updated "deleted" event; this
# makes it so at once, for the answers that follow the delete.
_CLEAR = """
UPDATE calls SET
  recording = CASE WHEN recording->>'sid' = %(sid)s THEN NULL ELSE recording END,
  voicemail = CASE WHEN voicemail->>'sid' = %(sid)s THEN NULL ELSE voicemail END
WHERE id = %(id)s
"""


@dataclass(frozen=True)
class RecordedCall:
    """The call a recording is of, and the agents who were on it (who may play it)."""

    id: str
    agents: tuple[str, ...]


async def call_of(pool: AsyncConnectionPool[Any], sid: str) -> RecordedCall | None:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(_CALL_OF, {"sid": sid})
        row = await cur.fetchone()
    return None if row is None else RecordedCall(row["id"], tuple(row["agents"] or ()))


async def clear(pool: AsyncConnectionPool[Any], call_id: str, sid: str) -> None:
    async with pool.connection() as conn:
        await conn.execute(_CLEAR, {"id": call_id, "sid": sid})
