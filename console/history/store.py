"""Writing a batch of the event log into PostgreSQL, in one transaction: the events
(an event stored twice counts once), then the rows of every call they touched,
recomputed from all of that call's stored events (console/history/calls.py).

Two writers may store events of one call at once: each takes the call's advisory
lock after inserting its events and before reading them back, so the one that
takes it last sees both batches and writes the final rows.

The totals reports read are kept by triggers of migration 0003 on these same
statements: the events insert recomputes the agents' status intervals (under each
agent's advisory lock, the same way), the calls upserts move the calls' totals.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from console.history.calls import NOT_STORED, CallRows, conference_of, derive_call, id_key

log = logging.getLogger(__name__)

LOCK_CLASS = 0x574C  # first key of pg_advisory_xact_lock(int, int): "a call's rows"

_INSERT_EVENTS = """
INSERT INTO events (id, ms, seq, type, ts, conference, audience, data)
SELECT id, ms, seq, type, ts, conference, audience, data::jsonb
FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::bigint[], %s::text[],
            %s::text[], %s::text[]) AS t(id, ms, seq, type, ts, conference, audience, data)
ORDER BY ms, seq
ON CONFLICT (id) DO NOTHING
RETURNING conference
"""

_LOCK = "SELECT pg_advisory_xact_lock(%s, hashtext(c)) FROM unnest(%s::text[]) AS c ORDER BY c"

_EVENTS_OF = """
SELECT id, type, ts, data, conference FROM events
WHERE conference = ANY(%s::text[]) ORDER BY conference, ms, seq
"""

# Each table's rows of a batch go in one statement (rows as a JSON array, typed by
# jsonb_to_recordset): the report triggers of migrations 0003 and 0005 are statement
# triggers, so they run once a batch, not once a call or a leg.
_CALL_COLUMNS = {
    "id": "text",
    "kind": "text",
    "origin": "text",
    "from_number": "text",
    "arrived_at": "bigint",
    "offered": "boolean",
    "answered_at": "bigint",
    "answered_by": "text",
    "ended_at": "bigint",
    "outcome": "text",
    "wait_ms": "bigint",
    "talk_ms": "bigint",
    "hold_ms": "bigint",
    "agents": "text[]",
    "recording": "jsonb",
    "voicemail": "jsonb",
    "disposition": "text",
    "notes": "text",
    "wrap_up_ms": "bigint",
    "updated_at": "bigint",
}
_LEG_COLUMNS = {
    "call_id": "text",
    "position": "int",
    "call_sid": "text",
    "agent": "text",
    "role": "text",
    "joined_at": "bigint",
    "left_at": "bigint",
    "hold_ms": "bigint",
}
_TRANSFER_COLUMNS = {
    "call_id": "text",
    "id": "text",
    "status": "text",
    "requested_at": "bigint",
    "ended_at": "bigint",
    "data": "jsonb",
}


def _insert(table: str, columns: dict[str, str], order: str) -> str:
    names = ", ".join(columns)
    typed = ", ".join(f"{name} {kind}" for name, kind in columns.items())
    return (
        f"INSERT INTO {table} ({names}) SELECT {names} "
        f"FROM jsonb_to_recordset(%s::jsonb) AS r({typed}) ORDER BY {order}"
    )


_UPSERT_CALLS = (
    _insert("calls", _CALL_COLUMNS, "id")
    + " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _CALL_COLUMNS if c != "id")
)
_INSERT_LEGS = _insert("call_legs", _LEG_COLUMNS, "call_id, position")
_INSERT_TRANSFERS = _insert("call_transfers", _TRANSFER_COLUMNS, "call_id, id")


@dataclass(frozen=True)
class StreamEvent:
    """One entry of the log as the writer read it (its data still JSON text)."""

    id: str
    type: str
    ts: int
    conference: str | None
    audience: str
    data: str

    @classmethod
    def from_stream(cls, event_id: str, fields: dict[str, str]) -> StreamEvent:
        data = _without_nul(fields.get("data") or "{}")
        kind = fields["type"]
        conference = conference_of(kind, json.loads(data), fields.get("conference") or None)
        return cls(
            event_id,
            kind,
            int(fields["ts"]),
            conference,
            fields.get("audience", ""),
            data,
        )


def _without_nul(data: str) -> str:
    """PostgreSQL's jsonb refuses the NUL character: one in a caller's input would
    stop the writer on that event for ever. It is dropped (rare: checked cheaply)."""
    if "\\u0000" not in data:
        return data
    return json.dumps(_strip(json.loads(data)), ensure_ascii=False, separators=(",", ":"))


def _strip(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_strip(v) for v in value]
    if isinstance(value, dict):
        return {_strip(k): _strip(v) for k, v in value.items()}
    return value


async def store_batch(conn: AsyncConnection[Any], batch: Sequence[StreamEvent]) -> int:
    """Store ``batch`` and the rows of the calls it brought news of, in one
    transaction; returns how many events were new."""
    events = sorted((e for e in batch if e.type not in NOT_STORED), key=lambda e: id_key(e.id))
    if not events:
        return 0
    async with conn.transaction():
        cur = await conn.execute(
            _INSERT_EVENTS,
            [
                [e.id for e in events],
                [id_key(e.id)[0] for e in events],
                [id_key(e.id)[1] for e in events],
                [e.type for e in events],
                [e.ts for e in events],
                [e.conference for e in events],
                [e.audience for e in events],
                [e.data for e in events],
            ],
        )
        inserted = await cur.fetchall()
        touched = sorted({_column(row, 0) for row in inserted} - {None})
        if touched:
            await conn.execute(_LOCK, [LOCK_CLASS, touched])
            await write_calls(conn, touched)
    return len(inserted)


def _column(row: Any, index: int) -> Any:
    """A value of a row, whether rows come as tuples or dicts (the pool's)."""
    return next(iter(row.values())) if isinstance(row, dict) else row[index]


async def write_calls(conn: AsyncConnection[Any], names: Sequence[str]) -> None:
    """Recompute and write the rows of calls ``names`` from all their stored events."""
    cur = conn.cursor()
    await cur.execute(_EVENTS_OF, [list(names)])
    by_call: dict[str, list[dict[str, Any]]] = {}
    for row in await cur.fetchall():
        event_id, kind, ts, data, conference = _fields(row)
        by_call.setdefault(conference, []).append(
            {"id": event_id, "type": kind, "ts": ts, "data": data}
        )
    rows = [r for r in (_derived(n, by_call.get(n, [])) for n in names) if r is not None]
    await _write_rows(conn, rows)


def _derived(name: str, events: list[dict[str, Any]]) -> CallRows | None:
    """The call's rows; None (logged) if its events cannot be read as a call: its
    events stay stored, and the batch (and the writer) goes on."""
    try:
        return derive_call(name, events)
    except Exception:
        log.exception("history: the rows of call %s could not be derived", name)
        return None


def _fields(row: Any) -> tuple[Any, ...]:
    if isinstance(row, dict):
        return row["id"], row["type"], row["ts"], row["data"], row["conference"]
    return tuple(row)


async def _write_rows(conn: AsyncConnection[Any], rows: Iterable[CallRows]) -> None:
    rows = list(rows)
    if not rows:
        return
    ids = [r.call["id"] for r in rows]
    cur = conn.cursor()
    await cur.execute(_UPSERT_CALLS, [_json([r.call for r in rows])])
    await cur.execute("DELETE FROM call_legs WHERE call_id = ANY(%s::text[])", [ids])
    await cur.execute("DELETE FROM call_transfers WHERE call_id = ANY(%s::text[])", [ids])
    legs = [leg for r in rows for leg in r.legs]
    if legs:
        await cur.execute(_INSERT_LEGS, [_json(legs)])
    transfers = [t for r in rows for t in r.transfers]
    if transfers:
        await cur.execute(_INSERT_TRANSFERS, [_json(transfers)])


def _json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
