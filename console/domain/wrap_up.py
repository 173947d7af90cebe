"""Wrap-up (SPEC §10): the agent's disposition and notes for a call they took, stored
with the call in history through the event log (``call.disposition``). Given during
wrap-up, or for the call afterwards while Redis keeps it (a day after it ended)."""

from __future__ import annotations

from typing import Any

from console.domain.errors import BadRequest, NotFound
from console.domain.events import Event
from console.domain.records import ConferenceRecord, DialKind
from console.domain.unit import Unit

DISPOSED = "call.disposition"
NOTES_MAX = 2000


def check_disposition(dispositions: tuple[str, ...], disposition: str) -> None:
    """400 unless ``disposition`` is one of DISPOSITIONS (calls, voicemails, callbacks)."""
    if disposition not in dispositions:
        raise BadRequest(f"disposition must be one of: {', '.join(dispositions)}")


def took(record: ConferenceRecord, username: str) -> bool:
    """``username`` answered a ring for this call (an agent's or a transfer's)."""
    return any(
        d.agent == username and d.answered and d.kind in (DialKind.AGENT, DialKind.TRANSFER)
        for d in record.dials.values()
    )


async def dispose(
    unit: Unit, username: str, call_id: str, disposition: str, notes: str
) -> dict[str, Any]:
    """Record ``username``'s disposition and notes for call ``call_id`` (the latest
    given wins); 404 as for an unknown call when they did not take it."""
    check_disposition(unit.settings.dispositions, disposition)
    record = await unit.conference(call_id)
    if record is None or not took(record, username):
        raise NotFound(f"no call {call_id} of yours")
    data = {
        "call": call_id,
        "agent": username,
        "disposition": disposition,
        "notes": notes.strip(),
        "at": unit.now,
    }
    # Its agent and supervisors see it (an empty audience is supervisors only).
    unit.events.append(Event(DISPOSED, data, unit.now, frozenset({username}), call_id))
    return data
