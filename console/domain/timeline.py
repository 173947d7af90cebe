"""Per-conference timelines: what happened in one call, when, and who did it
(docs/api.md, timelines).

The timeline is a read model folded from the events a unit of work emits, queued on
the unit's own MULTI so an entry commits exactly when the change it describes does
(a unit that loses a race and retries leaves no stray entry). Entries are appended
in commit order to a Redis list and sorted by ``at`` when read.

An entry is ``{"at", "type", "actor", "call_sid", "detail"}``:

- ``at``: ms since epoch, the ``ts`` of the event (when the app received the webhook
  or request that caused it), so every entry is on the app's clock.
- ``type``: the type of the event it comes from (``call.queued``, ``call.dequeued``,
  ``conference.started``, ``conference.ended``, ``participant.joined``,
  ``participant.left``, ``participant.updated``, ``transfer.updated``,
  ``supervisor.action``, ``recording.updated``: started, paused, resumed, ended;
  a deletion is not part of the call's story and has no entry; ``call.diverted``,
  ``voicemail.created``, ``voicemail.updated``, ``callback.updated``,
  ``call.disposition``, ``call.wrapped-up``).
- ``actor``: the username of the agent or supervisor who did it, ``"customer"``, or
  ``"system"`` for what the app or Twilio did on its own.
- ``call_sid``: the call concerned, or null (transfers, supervisor actions, start/end).
- ``detail``: a short human-readable sentence.

Each stored entry also carries ``agents``, the agents it involves (an agent
participant, a transfer's two agents), so the route can tell whether an agent may
read the timeline without loading anything else; it is not part of the response.
An entry about a supervisor's leg or action carries ``for``: ``supervisors`` (agents
never learn of a supervisor listening in) or ``agents`` (the copies made for agents of
a supervisor they hear, which supervisors skip); ``readable_by`` applies it.

A callback (SPEC §9) has one timeline under its id, whichever of its conferences
(``<id>``, ``<id>-2``…) an event comes from; its line events (which name the call
that asked, as its queued shape does) are filed there too, by their ``callback``.

Retention: 24 hours after the conference ends (set by the batch holding
``conference.ended``). While the conference is live the list carries a safety TTL
(``LIVE_TTL_SECONDS``) set once when it is created, so a call whose end never
arrives does not leave a timeline behind forever. The TTL logic is a small Lua
script queued on the MULTI: it reads the list's TTL inside Redis at EXEC time (no
read from Python, and no ``EXPIRE NX`` which Redis 6.2 lacks), so an entry arriving
after the end never stretches the 24 hours.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from console.domain import keys
from console.domain.events import Event
from console.domain.positions import SUBSTITUTE, Positions

ENDED_TTL_SECONDS = 24 * 3600
LIVE_TTL_SECONDS = 7 * 24 * 3600
SYSTEM = "system"
CUSTOMER = "customer"
SUPERVISORS = "supervisors"
AGENTS = "agents"

# KEYS[1]: the timeline. ARGV[1]: TTL to set now ("0": the call has not ended in this
# batch), ARGV[2]: the live safety TTL, ARGV[3..]: entries to append.
_EXPIRE = """
if ARGV[1] ~= '0' then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
elseif redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_APPEND = "redis.call('RPUSH', KEYS[1], unpack(ARGV, 3))" + _EXPIRE
# The same with KEYS[2] the line and ARGV[3] the 'token offset' pairs of callers whose
# place in line is known at EXEC time (console/domain/positions.py), entries from ARGV[4].
_APPEND_POSITIONED = (
    SUBSTITUTE + "redis.call('RPUSH', KEYS[1], unpack(positioned_args(4, ARGV[3], KEYS[2])))"
) + _EXPIRE

# Order of entries committed by one unit (stable sort; unlisted types rank 2).
_BATCH_RANK = {
    "conference.started": 0,
    "participant.joined": 1,
    "participant.left": 1,
    "participant.updated": 1,
    "conference.ended": 3,
}

_MONITOR_WORDS = {
    "listen": "listens in",
    "whisper": "whispers to the agent",
    "barge": "barges in",
    "left": "stops monitoring",
}


LINE_EVENTS = ("call.queued", "call.dequeued")
# A callback's later sessions: its id (console/domain/callbacks.py new_id) and a number.
_CALLBACK_SESSION = re.compile(r"(CB[0-9a-f]{32})-[0-9]+")


def call_name(name: str) -> str:
    """The call a conference is part of: itself, or for a callback's later session
    (``<id>-<n>``; a CallSid never holds ``-``) the callback's id."""
    session = _CALLBACK_SESSION.fullmatch(name)
    return session.group(1) if session else name


def filed_under(kind: str, data: Mapping[str, Any], conference: str | None) -> str | None:
    """The call (timeline, history row) an event belongs to: a caller's line events by
    their CallSid, a callback's by its id, the rest by their conference."""
    if kind in LINE_EVENTS:
        name = data.get("callback") or data.get("call_sid")
    else:
        name = conference or data.get("conference") or data.get("name")
    return call_name(name) if name else None


def project(pipe: Pipeline, events: list[Event], positions: Positions | None = None) -> None:
    """Queue the timeline appends for ``events``, one script call per conference;
    ``positions``: the tokens of callers whose place in line is known at EXEC time."""
    batches: dict[str, list[dict[str, Any]]] = {}
    ended: set[str] = set()
    for event in events:
        made = entry_for(event)
        if made is None:
            continue
        name, entry = made
        batches.setdefault(name, []).append(entry)
        if event.type == "conference.ended":
            ended.add(name)
    for name, entries in batches.items():
        # Within one unit, tell causes before what follows from them: people join or
        # leave, then the transfer that this completes or fails, then the end.
        entries.sort(key=lambda e: _BATCH_RANK.get(e["type"], 2))
        ttl = ENDED_TTL_SECONDS if name in ended else 0
        encoded = [json.dumps(e, separators=(",", ":")) for e in entries]
        pairs = " ".join(p for e in encoded if (p := positions.pairs(e))) if positions else ""
        if pairs:
            line = (keys.timeline(name), keys.QUEUE)
            pipe.eval(_APPEND_POSITIONED, 2, *line, ttl, LIVE_TTL_SECONDS, pairs, *encoded)
        else:
            pipe.eval(_APPEND, 1, keys.timeline(name), ttl, LIVE_TTL_SECONDS, *encoded)


def entry_for(event: Event) -> tuple[str, dict[str, Any]] | None:
    """The conference an event belongs to and its timeline entry; None for events no
    timeline shows (presence, the whole-queue picture)."""
    data = event.data
    kind = event.type
    name = filed_under(kind, data, event.conference)
    if not name:
        return None
    described = _describe(kind, data)
    if described is None:
        return None
    actor, call_sid, detail, agents = described
    entry = {
        "at": event.ts,
        "type": kind,
        "actor": actor,
        "call_sid": call_sid,
        "detail": detail,
        "agents": agents,
    }
    readers = _readers(kind, data)
    if readers is not None:
        entry["for"] = readers
    return name, entry


def _readers(kind: str, data: dict[str, Any]) -> str | None:
    """Who alone may read the entry of this event (None: whoever may read the timeline)."""
    if kind == "supervisor.action":
        return SUPERVISORS
    if kind.startswith("participant.") and data.get("role") == "supervisor":
        return AGENTS if data.get("view") == AGENTS else SUPERVISORS
    return None


Described = tuple[str, str | None, str, list[str]]


def _describe(kind: str, data: dict[str, Any]) -> Described | None:
    if kind in LINE_EVENTS and data.get("callback"):
        return _callback_line(kind, data)
    if kind == "call.queued":
        detail = f"waiting in the queue at position {data['position']}"
        return CUSTOMER, data["call_sid"], detail, []
    if kind == "call.dequeued":
        reason = data["reason"]
        if reason in _LEFT_LINE_WORDS:
            return CUSTOMER, data["call_sid"], _LEFT_LINE_WORDS[reason], []
        return SYSTEM, data["call_sid"], "taken from the queue: an agent answered", []
    if kind == "call.wrapped-up":
        agent, seconds = data["agent"], round(data.get("wrap_up_ms", 0) / 1000)
        return agent, None, f"{agent} finished wrap-up after {seconds} s", [agent]
    if kind == "call.disposition":  # an agent's wrap-up (SPEC §10)
        agent, notes = data["agent"], data.get("notes")
        detail = f"{agent} gave it the disposition {data['disposition']}"
        return agent, None, detail + (f": {notes}" if notes else ""), [agent]
    if kind == "conference.started":
        return SYSTEM, None, "conference started", []
    if kind == "conference.ended":
        reason = data.get("reason")
        return SYSTEM, None, f"conference ended ({reason})" if reason else "conference ended", []
    if kind.startswith("participant."):
        return _participant(kind, data)
    if kind == "transfer.updated":
        return _transfer(data)
    if kind == "recording.updated":
        return _recording(data)
    if kind == "supervisor.action":
        supervisor = data["supervisor"]
        words = _MONITOR_WORDS.get(data["mode"], data["mode"])
        return supervisor, None, f"{supervisor} {words}", []
    if kind == "call.diverted":
        why = _DIVERTED_WORDS.get(data.get("reason") or "", "sent to voicemail")
        return CUSTOMER, data["call_sid"], f"called {why}: offered voicemail", []
    if kind in ("voicemail.created", "voicemail.updated"):
        return _voicemail(kind, data)
    if kind == "callback.updated":
        return _callback(data)
    return None


# Why a caller left the line other than to an agent (their own doing).
_LEFT_LINE_WORDS = {
    "hung-up": "hung up while waiting in the queue",
    "callback-requested": "asked to be called back",
    "voicemail": "left the queue to leave a message",
}
_DIAL_RESULT_WORDS = {
    "no-answer": "no answer",
    "busy": "busy",
    "machine": "an answering machine answered",
    "failed": "the call failed",
    "canceled": "the dial was stopped",
}
_CALLBACK_DONE_WORDS = {
    "agent-missed": "callback over: its agent did not answer",
    "agent-left": "callback over: its agent left before the number answered",
}


def _callback_line(kind: str, data: dict[str, Any]) -> Described:
    """A callback's place in line (its events name the call that asked: no call_sid)."""
    if kind == "call.queued":
        return SYSTEM, None, f"callback waiting in the queue at position {data['position']}", []
    reason = data["reason"]
    if reason == "routed":
        return SYSTEM, None, "callback taken from the queue: an agent answered", []
    if reason == "hung-up":
        return CUSTOMER, None, "hung up while waiting in the queue", []
    return SYSTEM, None, f"callback left the queue ({reason})", []


def _callback(data: dict[str, Any]) -> Described:
    """One ``callback.updated``, told from its state alone (the event carries no
    previous one): requested, taken, dialing attempt n, how a dial failed, connected,
    failed after its attempts, closed with a disposition."""
    status, agent, number = data["status"], data.get("agent"), data.get("number")
    attempts, result = data.get("attempts") or 0, data.get("result")
    agents = [agent] if agent else []
    if data.get("disposition") is not None:
        failed = " as failed" if status == "failed" else ""
        return agent or SYSTEM, None, f"callback closed{failed} ({data['disposition']})", agents
    if status == "failed":
        last = _DIAL_RESULT_WORDS.get(result or "", result or "failed")
        detail = f"callback failed after {_attempts(attempts)} (last: {last})"
        return SYSTEM, None, detail, agents
    if status == "done":
        detail = _CALLBACK_DONE_WORDS.get(result or "", "callback done: the call ended")
        return SYSTEM, None, detail, agents
    if status == "connected":
        return CUSTOMER, None, f"{number} answered: connected to {agent}", agents
    if status == "dialing":
        return SYSTEM, None, f"dialing {number} (attempt {attempts})", agents  # the app dials
    if agent is None:
        if data.get("conference") not in (None, data.get("id")):
            detail = "callback back in the queue: its agent left before the number answered"
            return SYSTEM, None, detail, agents
        return CUSTOMER, None, f"asked to be called back at {number}", agents
    if result:
        words = _DIAL_RESULT_WORDS.get(result, result)
        detail = f"attempt {attempts}: {words}; {agent} may dial again or close it"
        return SYSTEM, None, detail, agents
    so_far = f" ({_attempts(attempts)} so far)" if attempts else ""
    return agent, None, f"{agent} takes the callback to {number}{so_far}", agents


def _attempts(n: int) -> str:
    return f"{n} attempt" + ("" if n == 1 else "s")


_DIVERTED_WORDS = {"closed-hours": "outside business hours", "no-agents": "with nobody signed in"}


def _voicemail(kind: str, data: dict[str, Any]) -> Described:
    if kind == "voicemail.created":
        return CUSTOMER, data["id"], f"left a message ({data.get('duration') or 0} s)", []
    who = data.get("claimed_by") or SYSTEM
    if data.get("status") == "closed":
        return who, data["id"], f"{who} closed the message ({data.get('disposition')})", [who]
    return who, data["id"], f"{who} claimed the message", [who]


def _participant(kind: str, data: dict[str, Any]) -> Described:
    role, username = data["role"], data.get("agent")
    if role == CUSTOMER:
        who = f"customer {data['from']}" if data.get("from") else CUSTOMER
        actor = CUSTOMER
    else:
        who = username or f"unknown {role}"
        actor = username or SYSTEM
    agents = [username] if role == "agent" and username else []
    if kind == "participant.joined":
        suffix = " as supervisor" if role == "supervisor" else ""
        flags = _flags(data, only_set=True)
        return actor, data["call_sid"], f"{who} joined{suffix}{flags}", agents
    if kind == "participant.left":
        return actor, data["call_sid"], f"{who} left", agents
    # participant.updated names who asked for a hold (``by``, from the API request);
    # a supervisor's own participant changes only by their mode switch; anything else
    # (hold music for a customer left alone) is the system's.
    requester = data.get("by")
    actor = requester or (actor if role == "supervisor" else SYSTEM)
    detail = f"{who}:{_flags(data, only_set=False)}"
    if requester:
        detail += f" (by {requester})"
    return actor, data["call_sid"], detail, agents


def _flags(data: dict[str, Any], only_set: bool) -> str:
    words = [
        "on hold" if data.get("hold") else "off hold",
        "muted" if data.get("muted") else "unmuted",
        "coaching" if data.get("coaching") else "",
    ]
    if only_set:
        words = [w for w in words if w in ("on hold", "muted", "coaching")]
        return f" ({', '.join(words)})" if words else ""
    return " " + ", ".join(w for w in words if w)


def _recording(data: dict[str, Any]) -> Described | None:
    status, by = data.get("status"), data.get("by")
    if status == "deleted":
        return None
    if by and status in ("paused", "in-progress"):
        words = "paused" if status == "paused" else "resumed"
        return by, None, f"{by} {words} the recording", []
    if status == "in-progress":
        return SYSTEM, None, "recording started", []
    if status == "completed":
        seconds = data.get("duration")
        detail = "recording completed" + (f" ({seconds} s)" if seconds is not None else "")
        return SYSTEM, None, detail, []
    return SYSTEM, None, f"recording {status}", []


def _transfer(data: dict[str, Any]) -> Described:
    status, reason = data["status"], data.get("reason")
    source, target = data["from_agent"], data.get("to_agent")
    if status in ("requested", "ringing", "canceled"):
        actor = source
    elif status in ("answered", "joined"):
        actor = target or SYSTEM
    else:  # completed, failed: outcomes the app derives from what happened
        actor = SYSTEM
    detail = f"transfer {source} → {target or 'any available agent'}: {status}"
    if reason:
        detail += f" ({reason})"
    if data.get("note"):
        detail += f'; note: "{data["note"]}"'
    return actor, None, detail, [a for a in (source, target) if a]


async def read(redis: Redis, name: str) -> list[dict[str, Any]]:
    """The stored entries of a conference in time order (``agents`` still included):
    for a callback's later session, the whole callback's."""
    raw = await redis.lrange(keys.timeline(call_name(name)), 0, -1)
    entries = [json.loads(r) for r in raw]
    entries.sort(key=lambda e: e["at"])  # stable: commit order breaks ties
    return entries


def involves(entries: list[dict[str, Any]], username: str) -> bool:
    """Was ``username`` an agent in this conference or party to one of its transfers?"""
    return any(username in entry.get("agents", ()) for entry in entries)


def readable_by(entries: list[dict[str, Any]], supervisor: bool) -> list[dict[str, Any]]:
    """The entries a supervisor (or an agent) may read: each skips the other's."""
    hidden = AGENTS if supervisor else SUPERVISORS
    return [entry for entry in entries if entry.get("for") != hidden]


def public(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry as the API returns it (docs/api.md, timelines)."""
    return {k: entry[k] for k in ("at", "type", "actor", "call_sid", "detail")}
