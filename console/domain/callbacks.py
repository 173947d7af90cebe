"""Callbacks (SPEC §9): a caller who would rather not wait asks to be called back, and
keeps their place in line; an agent calls back a voicemail's number.

A callback is served in a conference of its own (named by its id, ``CB`` + hex), whose
record carries it (``ConferenceRecord.callback``). It waits in the line like a call;
routing rings an agent, who joins the conference alone; settling then dials the
number into it (console/domain/settle.py, ``Settler._callback``). A conference that
ended never starts again under its name (Twilio would open a new one whose
SequenceNumbers start over, and the derive model keeps one participation per call per
conference), so a callback whose agent left before the number answered goes back to
the line in a new conference, ``<id>-<session>``, keeping its place at the front.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from redis.asyncio import Redis

from console.domain import keys
from console.domain.derive import derive
from console.domain.effects import PlaceCall
from console.domain.errors import Conflict, NotFound
from console.domain.events import Event
from console.domain.records import (
    AgentStatus,
    CallbackInfo,
    CallbackStatus,
    ConferenceRecord,
    Dial,
    DialKind,
    Queued,
)
from console.domain.routing import new_dial_id
from console.domain.unit import Unit

UPDATED = "callback.updated"
NEVER = 2**62  # a not_before no routing pass reaches: the caller is not in the conference
# A caller moved to the longest-wait choice who has neither chosen nor been heard of
# this long is asked about at Twilio (they may have hung up at the prompt).
CHOICE_MS = 60_000


def new_id() -> str:
    """A callback's id: its conference's name, which is never a CallSid."""
    return "CB" + secrets.token_hex(16)


def conference_name(callback: CallbackInfo) -> str:
    """The conference of the callback's current session."""
    if callback.session == 1:
        return callback.id
    return f"{callback.id}-{callback.session}"


def queued_entry(callback: CallbackInfo, queued_at: int) -> Queued:
    """The callback's place in line: the queued shape names the call that asked
    (SPEC §5, queued)."""
    return Queued(
        call_sid=callback.origin,
        from_number=callback.number,
        queued_at=queued_at,
        kind="callback",
        callback=callback.id,
    )


def announce(unit: Unit, record: ConferenceRecord) -> None:
    """``callback.updated`` for the callback's agent and supervisors (an empty
    audience is supervisors only)."""
    callback = record.callback
    assert callback is not None
    audience = frozenset({callback.agent} if callback.agent else ())
    unit.events.append(
        Event(UPDATED, callback.public(record.name), unit.now, audience, record.name)
    )


def open_session(
    unit: Unit, callback: CallbackInfo, origin: ConferenceRecord | None = None, reason: str = ""
) -> ConferenceRecord:
    """The conference the callback is served in now, created, and its place in line:
    ``origin``'s (the call that asked) when given, else the front."""
    name = conference_name(callback)
    record = unit.create_conference(name, callback.number)
    record.callback = callback
    entry = queued_entry(callback, callback.requested_at)
    if origin is None or not unit.replace_in_line(
        origin.name, name, entry, reason, origin.created_at
    ):
        unit.enqueue(name, callback.number, front=True, entry=entry)
    return record


def request(unit: Unit, origin: ConferenceRecord, number: str, reason: str) -> ConferenceRecord:
    """The caller of ``origin`` asked to be called back at ``number``: the callback takes
    their place in line (the call leaves it for ``reason``), at once."""
    callback = CallbackInfo(
        id=new_id(), number=number, origin=origin.name, requested_at=_arrival(unit, origin)
    )
    return open_session(unit, callback, origin=origin, reason=reason)


def _arrival(unit: Unit, origin: ConferenceRecord) -> int:
    """When the caller reached the line: their place counts from there."""
    if origin.name in unit.queue and origin.name in unit.queued:
        return unit.queued[origin.name].queued_at
    return origin.created_at


async def for_voicemail(
    unit: Unit, voicemail_id: str, number: str, username: str
) -> ConferenceRecord:
    """A voicemail's callback, dialed for ``username`` at once (never in line): their
    phone rings; once they join, the number is dialed (SPEC §9)."""
    agent = unit.agent(username)
    if agent.dial is not None:
        raise Conflict("you are on a call or being rung for one")
    callback = CallbackInfo(
        id=new_id(),
        number=number,
        origin=voicemail_id,
        requested_at=unit.now,
        agent=username,
        pinned=True,
    )
    record = unit.create_conference(conference_name(callback), number)
    record.callback = callback
    dial = Dial(id=new_dial_id(), kind=DialKind.AGENT, agent=username, created_at=unit.now)
    record.dials[dial.id] = dial
    unit.set_status(agent, AgentStatus.RINGING)
    agent.conference, agent.dial = record.name, dial.id
    unit.effects.append(PlaceCall(record.name, dial.id, username, DialKind.AGENT))
    return record


@dataclass(frozen=True)
class Owned:
    record: ConferenceRecord
    callback: CallbackInfo


async def owned(unit: Unit, conference: str, username: str, supervisor: bool) -> Owned:
    """The open callback of ``conference`` that ``username`` serves (or any, for a
    supervisor); 404 as for an unknown one otherwise."""
    record = await unit.conference(conference)
    callback = record.callback if record is not None else None
    if record is None or callback is None or callback.successor:
        raise NotFound(f"no callback in {conference}")
    if not supervisor and callback.agent != username:
        raise NotFound(f"no callback in {conference}")
    return Owned(record, callback)


async def retry(unit: Unit, conference: str, username: str, supervisor: bool) -> CallbackInfo:
    """Dial the number again (settling dials it while the agent is in the conference)."""
    found = await owned(unit, conference, username, supervisor)
    callback = found.callback
    if CallbackStatus(callback.status).closed:
        raise Conflict(f"the callback is {callback.status}")
    if callback.status != CallbackStatus.WAITING or callback.attempts == 0:
        raise Conflict("the number is being dialed or is on the line")
    if callback.attempts >= unit.settings.callback_attempts:
        raise Conflict("no dial attempts are left: close it")
    if not any(p.agent == callback.agent for p in derive(found.record).agents_present()):
        raise Conflict("nobody is in the callback's call to dial the number for")
    callback.retry = True
    return callback


async def close(
    unit: Unit, conference: str, username: str, supervisor: bool, disposition: str
) -> CallbackInfo:
    """Close the callback with a disposition (``done``, or ``failed`` kept): settling
    hangs up its calls still up and announces it."""
    found = await owned(unit, conference, username, supervisor)
    callback = found.callback
    if CallbackStatus(callback.status).closed and callback.disposition is not None:
        raise Conflict(f"the callback is already {callback.status}")
    if callback.status == CallbackStatus.CONNECTED:
        raise Conflict("the customer is on the line: hang up to end the call")
    if not CallbackStatus(callback.status).closed:
        callback.status = CallbackStatus.DONE
    callback.disposition = disposition
    callback.retry = False
    unit.dequeue(found.record.name, "closed", callback)
    return callback


def long_waiters(unit: Unit, names: list[str], max_wait_ms: int) -> list[str]:
    """Of the callers at ``names`` (the head of the line, fetched), those who have
    waited ``max_wait_ms`` in their conference and nobody is being rung for: marked
    moved (routing passes them by) for the Calls API to move them out."""
    engaged = unit.engaged()
    moving = []
    for name in names:
        if name not in unit.queued or name in engaged:
            continue
        entry = unit.queued[name]
        if entry.kind != "call" or entry.moved_at:
            continue
        if unit.now - entry.queued_at < max_wait_ms:
            continue
        entry.moved_at, entry.not_before = unit.now, NEVER
        moving.append(name)
    return moving


def unanswered_choices(unit: Unit, names: list[str]) -> list[str]:
    """Callers moved to the choice that long ago and still in line (nothing came of it)."""
    return [
        n
        for n in names
        if n in unit.queued
        and unit.queued[n].moved_at
        and unit.now - unit.queued[n].moved_at >= CHOICE_MS
    ]


async def find(redis: Redis, callback_id: str) -> str | None:
    """The conference callback ``callback_id`` is served in now: its live one (the
    latest session), else its first if Redis still keeps it; None when unknown."""
    live = [
        name
        async for name in redis.sscan_iter(keys.LIVE, match=f"{callback_id}*", count=1000)
        if name == callback_id or name.startswith(callback_id + "-")
    ]
    if live:
        return max(live, key=lambda name: (len(name), name))
    # Over: its last conference still kept, found from the first by its successors.
    name: str | None = callback_id
    found = None
    while name is not None:
        raw = await redis.get(keys.conference(name))
        record = ConferenceRecord.from_json(raw) if raw else None
        if record is None or record.callback is None:
            break
        found, name = name, record.callback.successor
    return found
