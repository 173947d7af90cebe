"""Reading calls back from PostgreSQL (docs/history.md, reading calls): the list,
newest first and paged by an opaque keyset cursor, one call with its timeline, and
the same list streamed in chunks for CSV. Supervisors see every call; an agent only
the calls whose ``agents`` name them, and never a supervisor's leg or entries."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from console.domain import timeline
from console.domain.errors import BadRequest
from console.domain.events import Event
from console.ids import NAME

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
EXPORT_CHUNK = 500
OUTCOMES = (
    "completed",
    "abandoned",
    "voicemail",
    "callback-requested",
    "closed-hours",
    "no-agents",
    "failed",  # a callback whose number never connected (SPEC §9; not in §8's list)
)
# The playback route of the app (console/web), never Twilio's URL.
RECORDING_URL = "/api/recordings/{sid}"

# Each call row with its legs and transfers in one statement, so a page is one round
# trip and the export can run it through one server-side cursor. An agent's answer
# leaves supervisors' legs out ({legs}).
_SELECT = """
SELECT c.id, c.kind, c.from_number, c.arrived_at, c.answered_at, c.answered_by,
       c.ended_at, c.outcome, c.wait_ms, c.talk_ms, c.hold_ms, c.disposition, c.notes,
       c.recording, c.voicemail,
       COALESCE((SELECT json_agg(json_build_object(
                     'agent', l.agent, 'role', l.role, 'joined_at', l.joined_at,
                     'left_at', l.left_at, 'hold_ms', l.hold_ms) ORDER BY l.position)
                 FROM call_legs l WHERE l.call_id = c.id {legs}), '[]'::json) AS legs,
       COALESCE((SELECT json_agg(t.data ORDER BY t.requested_at NULLS LAST, t.id)
                 FROM call_transfers t WHERE t.call_id = c.id), '[]'::json) AS transfers
FROM calls c
WHERE {where}
"""
_AGENT_LEGS = "AND l.role <> 'supervisor'"


@dataclass(frozen=True)
class Viewer:
    """Who is reading: supervisors see everything, an agent only their own calls."""

    username: str
    supervisor: bool


@dataclass(frozen=True)
class CallFilter:
    """Which calls: arrived in ``[start, end)`` (ms), with ``agent`` on them, from a
    number containing ``number``'s digits, ending in one of ``outcomes``."""

    start: int | None = None
    end: int | None = None
    agent: str | None = None
    number: str | None = None
    outcomes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the last call's arrival and id (the list's order)."""

    arrived_at: int
    id: str

    def encode(self) -> str:
        raw = json.dumps({"at": self.arrived_at, "id": self.id}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor ``encode`` wrote, or BadRequest for anything else."""
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
            data = json.loads(raw)
        except (binascii.Error, ValueError):
            raise BadRequest("cursor: not a cursor this API gave") from None
        if (
            not isinstance(data, dict)
            or set(data) != {"at", "id"}
            or type(data["at"]) is not int
            or not isinstance(data["id"], str)
            or not NAME.fullmatch(data["id"])
        ):
            raise BadRequest("cursor: not a cursor this API gave")
        cursor = cls(data["at"], data["id"])
        if cursor.encode() != text:
            raise BadRequest("cursor: not a cursor this API gave")
        return cursor


def parse_number(text: str) -> str:
    """The digits of a number to search for (punctuation and spaces ignored)."""
    digits = "".join(ch for ch in text if ch.isdigit())
    if len(digits) < 3 or any(not (ch.isdigit() or ch in "+-(). ") for ch in text):
        raise BadRequest("number: give at least 3 digits of a phone number")
    return digits


def parse_outcomes(text: str) -> tuple[str, ...]:
    """``outcome``: one end reason, or several separated by commas."""
    chosen = tuple(part.strip() for part in text.split(","))
    unknown = [o for o in chosen if o not in OUTCOMES]
    if unknown:
        raise BadRequest(f"outcome: {unknown[0][:40]!r} is not one of {', '.join(OUTCOMES)}")
    return chosen


async def list_calls(
    pool: AsyncConnectionPool,
    chosen: CallFilter,
    viewer: Viewer,
    limit: int = DEFAULT_LIMIT,
    after: Cursor | None = None,
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """One page of calls, newest first, and the cursor of the next (None: the last)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit: must be between 1 and {MAX_LIMIT}")
    query, params = _query(chosen, viewer, after)
    query = query + sql.SQL(" LIMIT {}").format(sql.Literal(limit + 1))
    async with pool.connection() as conn:
        rows = await _fetch(conn, query, params)
    calls = [_shape(row) for row in rows[:limit]]
    more = len(rows) > limit
    return calls, Cursor(calls[-1]["arrived_at"], calls[-1]["id"]) if more else None


async def stream_calls(
    pool: AsyncConnectionPool, chosen: CallFilter, viewer: Viewer, chunk: int = EXPORT_CHUNK
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every matching call, newest first, ``chunk`` at a time through a server-side
    cursor: memory stays bounded by the chunk, whatever the number of calls. Close
    the iterator (``aclose``) if it is not run to the end, to give the connection back."""
    query, params = _query(chosen, viewer, None)
    async with (
        pool.connection() as conn,
        conn.transaction(),
        conn.cursor(name="calls_export", row_factory=dict_row) as cur,
    ):
        await cur.execute(query, params)
        while rows := await cur.fetchmany(chunk):
            yield [_shape(row) for row in rows]


async def get_call(
    pool: AsyncConnectionPool, call_id: str, viewer: Viewer
) -> dict[str, Any] | None:
    """One call with its timeline, or None when there is none this viewer may read
    (an agent gets None for another's call, exactly as for an unknown id)."""
    query, params = _query(CallFilter(), viewer, None, call_id=call_id)
    async with pool.connection() as conn:
        rows = await _fetch(conn, query, params)
        if not rows:
            return None
        entries = await _stored_entries(conn, call_id)
    call = _shape(rows[0])
    readable = timeline.readable_by(entries, viewer.supervisor)
    call["timeline"] = [timeline.public(entry) for entry in readable]
    return call


async def stored_timeline(pool: AsyncConnectionPool, name: str) -> list[dict[str, Any]]:
    """The timeline entries of conference ``name`` rebuilt from its stored events, as
    ``console.domain.timeline.read`` gives them from Redis (``agents``, ``for`` kept)."""
    async with pool.connection() as conn:
        return await _stored_entries(conn, name)


def timeline_of(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Entries of ``events`` (in log order) in the order the Redis timeline has them:
    a unit's events (consecutive, one ``ts``) by the rank the projection sorts them
    by, then all by time, stably."""
    entries: list[dict[str, Any]] = []
    run: list[dict[str, Any]] = []
    for event in events:
        made = timeline.entry_for(event)
        if made is None:
            continue
        entry = made[1]
        if run and run[-1]["at"] != entry["at"]:
            entries.extend(_by_rank(run))
            run = []
        run.append(entry)
    entries.extend(_by_rank(run))
    entries.sort(key=lambda e: e["at"])
    return entries


def _by_rank(run: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(run, key=lambda e: timeline._BATCH_RANK.get(e["type"], 2))


async def _stored_entries(conn: AsyncConnection[Any], name: str) -> list[dict[str, Any]]:
    name = timeline.call_name(name)  # a callback's later conference: the callback's call
    rows = await _fetch(
        conn,
        sql.SQL("SELECT type, ts, conference, data FROM events WHERE conference = %(name)s")
        + sql.SQL(" ORDER BY ms, seq"),
        {"name": name},
    )
    events = [Event(r["type"], r["data"], r["ts"], conference=r["conference"]) for r in rows]
    return timeline_of(events)


def _query(
    chosen: CallFilter, viewer: Viewer, after: Cursor | None, call_id: str | None = None
) -> tuple[sql.Composed, dict[str, Any]]:
    """The SELECT for ``chosen`` (or the one call ``call_id``) as ``viewer`` sees it,
    newest first."""
    where = ["TRUE"]
    params: dict[str, Any] = {}
    if call_id is not None:
        where.append("c.id = %(call_id)s")
        params["call_id"] = call_id
    if not viewer.supervisor:
        where.append("c.agents @> ARRAY[%(viewer)s]::text[]")
        params["viewer"] = viewer.username
    if chosen.start is not None:
        where.append("c.arrived_at >= %(start)s")
        params["start"] = chosen.start
    if chosen.end is not None:
        where.append("c.arrived_at < %(end)s")
        params["end"] = chosen.end
    if chosen.agent is not None:
        where.append("c.agents @> ARRAY[%(agent)s]::text[]")
        params["agent"] = chosen.agent
    if chosen.number is not None:
        # digits only: nothing in it is a LIKE wildcard
        where.append("regexp_replace(c.from_number, '[^0-9]', '', 'g') LIKE %(number)s")
        params["number"] = f"%{chosen.number}%"
    if chosen.outcomes:
        where.append("c.outcome = ANY(%(outcomes)s)")
        params["outcomes"] = list(chosen.outcomes)
    if after is not None:
        where.append("(c.arrived_at, c.id) < (%(after_at)s, %(after_id)s)")
        params["after_at"], params["after_id"] = after.arrived_at, after.id
    query = sql.SQL(_SELECT).format(
        legs=sql.SQL("" if viewer.supervisor else _AGENT_LEGS),
        where=sql.SQL(" AND ".join(where)),
    )
    return query + sql.SQL(" ORDER BY c.arrived_at DESC, c.id DESC"), params


async def _fetch(
    conn: AsyncConnection[Any], query: sql.Composable, params: dict[str, Any]
) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


def _shape(row: dict[str, Any]) -> dict[str, Any]:
    """A call as the API gives it (SPEC §8 shapes)."""
    return {
        "id": row["id"],
        "kind": row["kind"],
        "from": row["from_number"],
        "arrived_at": row["arrived_at"],
        "answered_at": row["answered_at"],
        "answered_by": row["answered_by"],
        "ended_at": row["ended_at"],
        "outcome": row["outcome"],
        "wait_ms": row["wait_ms"],
        "talk_ms": row["talk_ms"],
        "hold_ms": row["hold_ms"],
        "legs": row["legs"],
        "transfers": row["transfers"],
        "disposition": row["disposition"],
        "notes": row["notes"],
        "recording": _audio(row["recording"]),
        "voicemail": _audio(row["voicemail"]),
    }


def _audio(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """A recording or voicemail as the API gives it: its SID, duration (s) and the
    app's playback URL; null when there is none (or it was deleted)."""
    if not stored or not stored.get("sid") or stored.get("status") == "deleted":
        return None
    sid = stored["sid"]
    return {"sid": sid, "duration": stored.get("duration"), "url": RECORDING_URL.format(sid=sid)}
