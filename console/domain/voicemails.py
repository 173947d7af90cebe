"""Voicemails (SPEC §9): messages callers left, live in Redis from the recording's
``completed`` callback until an agent or supervisor closes them; their history
reaches PostgreSQL through the event log like everything else.

A voicemail is named by the CallSid of the call that left it (one ``<Record>`` per
call), so a repeated callback finds it. Each change is one optimistic transaction
on the voicemails hash (WATCH, then MULTI with its event): a claim is atomic, two
agents claiming at once give one winner. Events (``voicemail.created`` /
``voicemail.updated``) go to everyone while a message is unclaimed, and once
claimed to its agent (supervisors see all), except the claim itself, which every
agent is told so that the message leaves their lists.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from console.config import Settings
from console.domain import keys
from console.domain.errors import Conflict, DomainError, NotFound
from console.domain.events import Event, append_events, log_cap

NEW, CLAIMED, CLOSED = "new", "claimed", "closed"
CREATED, UPDATED = "voicemail.created", "voicemail.updated"
CALLER_SECONDS = 24 * 3600  # how long a diverted caller's number waits for their message
# A closed voicemail's marker: a recording callback Twilio repeats (a retry, a replay)
# within this long does not bring the message back.
CLOSED_SECONDS = 7 * 24 * 3600


def recording_url(sid: str) -> str:
    """The app's own playback route of a recording (never Twilio's URL)."""
    return f"/api/recordings/{sid}"


@dataclass
class Voicemail:
    """The voicemail shape of SPEC §9, plus ``reason`` (why the caller left it)."""

    id: str
    from_number: str | None
    at: int
    duration: int | None
    sid: str
    status: str = NEW
    claimed_by: str | None = None
    disposition: str | None = None
    reason: str = "voicemail"

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.from_number,
            "at": self.at,
            "duration": self.duration,
            "recording": {
                "sid": self.sid,
                "duration": self.duration,
                "url": recording_url(self.sid),
            },
            "status": self.status,
            "claimed_by": self.claimed_by,
            "disposition": self.disposition,
            "reason": self.reason,
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> Voicemail:
        return cls(**json.loads(raw))

    def visible_to(self, username: str | None, supervisor: bool) -> bool:
        return supervisor or self.status == NEW or self.claimed_by == username


@dataclass(frozen=True)
class Caller:
    """A caller the Voice URL sent to leave a message: who, when, and why."""

    from_number: str | None
    at: int
    reason: str


async def note_caller(redis: Redis, call_sid: str, caller: Caller) -> None:
    """Remember a diverted caller's number for their message (a recording callback
    carries no ``From``)."""
    await redis.set(keys.voicemail_caller(call_sid), json.dumps(asdict(caller)), ex=CALLER_SECONDS)


async def by_recording(redis: Redis, sid: str) -> Voicemail | None:
    """The open voicemail whose message is recording ``sid`` (open ones are few)."""
    for raw in (await redis.hgetall(keys.VOICEMAILS)).values():
        voicemail = Voicemail.from_json(raw)
        if voicemail.sid == sid:
            return voicemail
    return None


# (the voicemail as stored, or None; whether it was closed before) -> (it after the
# change, or None; the events announcing it)
Change = Callable[[Voicemail | None, bool], tuple[Voicemail | None, list[Event]]]


async def _change(
    redis: Redis, settings: Settings, voicemail_id: str, change: Change
) -> Voicemail | None:
    """Run ``change`` on the voicemail as stored and commit what it returns with its
    events in one MULTI (a closed one leaves the hash and leaves its marker); again
    from the start if either changed meanwhile."""
    closed_key = keys.voicemail_closed(voicemail_id)
    while True:
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(keys.VOICEMAILS, closed_key)
                raw = await pipe.hget(keys.VOICEMAILS, voicemail_id)
                was_closed = bool(await pipe.exists(closed_key))
                before = Voicemail.from_json(raw) if raw else None
                after, events = change(before, was_closed)
                if not events:
                    return after  # nothing changed: nothing to write
                pipe.multi()
                if after is None or after.status == CLOSED:
                    pipe.hdel(keys.VOICEMAILS, voicemail_id)
                    pipe.set(closed_key, "1", ex=CLOSED_SECONDS)
                else:
                    pipe.hset(keys.VOICEMAILS, voicemail_id, after.to_json())
                append_events(pipe, events, log_cap(settings))
                await pipe.execute()
                return after
            except WatchError:
                await asyncio.sleep(0)


def _event(kind: str, voicemail: Voicemail, now: int, audience: frozenset[str] | None) -> Event:
    return Event(kind, voicemail.public(), now, audience, voicemail.id)


async def record_message(
    redis: Redis,
    settings: Settings,
    call_sid: str,
    recording_sid: str,
    duration: int | None,
    now: int,
) -> Voicemail | None:
    """The recording of a caller's message completed: the voicemail appears (once;
    a repeated callback changes nothing). Returns it."""
    raw = await redis.get(keys.voicemail_caller(call_sid))
    caller = Caller(**json.loads(raw)) if raw else Caller(None, now, "voicemail")

    def create(before: Voicemail | None, was_closed: bool) -> tuple[Voicemail | None, list[Event]]:
        if before is not None or was_closed:
            return before, []
        voicemail = Voicemail(
            call_sid, caller.from_number, now, duration, recording_sid, reason=caller.reason
        )
        return voicemail, [_event(CREATED, voicemail, now, None)]

    return await _change(redis, settings, call_sid, create)


async def claim(
    redis: Redis, settings: Settings, voicemail_id: str, username: str, now: int
) -> Voicemail:
    """``username`` takes the message: one agent wins when several try at once."""

    def take(before: Voicemail | None, _closed: bool) -> tuple[Voicemail | None, list[Event]]:
        # Anyone may try; who lost the race to someone else's claim is told so (409).
        voicemail = _open(before, voicemail_id, username, supervisor=True)
        if voicemail.status == CLAIMED:
            if voicemail.claimed_by == username:
                return voicemail, []
            raise Conflict(f"voicemail {voicemail_id} is already claimed")
        voicemail.status, voicemail.claimed_by = CLAIMED, username
        return voicemail, [_event(UPDATED, voicemail, now, None)]

    after = await _change(redis, settings, voicemail_id, take)
    assert after is not None
    return after


async def close(
    redis: Redis,
    settings: Settings,
    voicemail_id: str,
    username: str,
    supervisor: bool,
    disposition: str,
    now: int,
) -> Voicemail:
    """Close the message with a disposition: its claimer, or a supervisor (an
    unclaimed one: anyone who may see it, which claims it on the way)."""

    def finish(before: Voicemail | None, _closed: bool) -> tuple[Voicemail | None, list[Event]]:
        voicemail = _open(before, voicemail_id, username, supervisor)
        if voicemail.status == CLAIMED and voicemail.claimed_by != username and not supervisor:
            raise DomainError("only the agent who claimed it may close it", 403)
        audience = None if voicemail.claimed_by is None else frozenset({voicemail.claimed_by})
        voicemail.claimed_by = voicemail.claimed_by or username
        voicemail.status, voicemail.disposition = CLOSED, disposition
        return voicemail, [_event(UPDATED, voicemail, now, audience)]

    after = await _change(redis, settings, voicemail_id, finish)
    assert after is not None
    return after


def _open(
    before: Voicemail | None, voicemail_id: str, username: str, supervisor: bool
) -> Voicemail:
    """The open voicemail ``username`` may act on; 404 as for an unknown one when it
    is someone else's (an agent does not learn of others' claims beyond the claim)."""
    if before is None:
        raise NotFound(f"no voicemail {voicemail_id}")
    if not before.visible_to(username, supervisor):
        raise NotFound(f"no voicemail {voicemail_id}")
    return before
