"""What Warmline stores in Redis: the conference aggregate and the agent record.

A conference aggregate keeps the *facts* the app has learnt (every conference
callback by SequenceNumber, every call it dialed with the latest call-status by
SequenceNumber, every transfer requested) and nothing derived from their order of
arrival; ``console.domain.derive`` computes the live picture from those facts. That is
what makes late, duplicated and reordered callbacks end in one state.

A long call's older callbacks are kept folded (``Folded``, console/domain/folding.py):
the record holds the fold of every callback up to a SequenceNumber and the callbacks
above it; the folded ones themselves are in a list of their own, read only when a
callback arrives below that SequenceNumber.
"""

from __future__ import annotations

import functools
from enum import StrEnum
from typing import Any, Self

import msgspec


class AgentStatus(StrEnum):
    OFFLINE = "offline"
    AVAILABLE = "available"
    RINGING = "ringing"
    BUSY = "busy"
    MISSED = "missed"
    WRAP_UP = "wrap-up"  # after a call, for at most WRAP_UP_SECONDS (SPEC §10)
    BREAK = "break"  # with a reason from BREAK_REASONS


class DialKind(StrEnum):
    AGENT = "agent"  # an agent dialed to take a queued customer
    TRANSFER = "transfer"  # a colleague dialed by a warm transfer
    SUPERVISOR = "supervisor"  # a supervisor added to listen, whisper or barge
    CUSTOMER = "customer"  # the number a callback dials (SPEC §9), label "customer"
    EXTERNAL = "external"  # a number outside the center an external transfer dials (§10)


class TransferStatus(StrEnum):
    REQUESTED = "requested"
    RINGING = "ringing"
    ANSWERED = "answered"
    JOINED = "joined"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (TransferStatus.COMPLETED, TransferStatus.FAILED, TransferStatus.CANCELED)


# AnsweredBy values of a number's call that are not a person (machine detection).
MACHINE_ANSWERS = ("machine", "fax")
# The conference-end the app records itself (a customer who never came, a callback's
# conference closed before it started): it folds after any SequenceNumber Twilio sends.
APP_END_SEQ = 2**62

# Twilio CallStatus values that end a call, and those meaning it was never answered.
CALL_ENDED = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
CALL_UNANSWERED = frozenset({"busy", "no-answer", "failed", "canceled"})
# The order Twilio's call-progress statuses move through, to never step back.
CALL_PROGRESS = {"queued": 0, "initiated": 1, "ringing": 2, "in-progress": 3}


class _Record(msgspec.Struct):
    """JSON round trip for the records below, tolerant of fields added later (unknown
    keys are ignored, missing ones take their defaults).

    msgspec Structs, not dataclasses: every unit of work decodes and encodes its
    conferences and agents, and msgspec does that fastest for its own Structs. Output
    is compact JSON with non-ASCII text as UTF-8.
    """

    def to_json(self) -> str:
        return _ENCODER.encode(self).decode()

    @classmethod
    def from_json(cls, raw: str | bytes) -> Self:
        return _decoder(cls).decode(raw)


_ENCODER = msgspec.json.Encoder()


@functools.cache
def _decoder(cls: type[_Record]) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(cls)


class Callback(_Record):
    """One conference status callback, as Twilio sent it."""

    seq: int
    event: str
    at: int
    conference_sid: str
    call_sid: str | None = None
    label: str | None = None
    muted: bool | None = None
    hold: bool | None = None
    coaching: bool | None = None
    end_on_exit: bool | None = None
    participant_status: str | None = None
    reason: str | None = None


class Dial(_Record):
    """One call the app placed (to an agent, a colleague or a supervisor)."""

    id: str
    kind: str
    agent: str
    created_at: int
    call_sid: str | None = None
    status: str = "dialing"  # Twilio CallStatus once known; "api-error" if never placed
    seq: int = -1  # highest call-status SequenceNumber applied
    answered: bool = False  # the answering side fetched our connect TwiML
    cancel_reason: str | None = None  # why the app itself hung this call up
    transfer: str | None = None
    mode: str | None = None  # supervisors: listen | whisper | barge
    answered_by: str | None = None  # a number's AnsweredBy (machine detection)
    number: str | None = None  # the number dialed (an external party's)

    @property
    def ended(self) -> bool:
        return self.status in CALL_ENDED or self.status == "api-error"

    @property
    def machine(self) -> bool:
        """A number's call answered by a machine, not a person."""
        return bool(self.answered_by) and self.answered_by.startswith(MACHINE_ANSWERS)


class Transfer(_Record):
    """A warm transfer as requested; status and reason are the last ones announced."""

    id: str
    from_agent: str
    from_dial: str | None
    to_agent: str | None
    note: str
    created_at: int
    updated_at: int
    dial: str | None = None
    canceled: bool = False
    error: bool = False
    status: str = TransferStatus.REQUESTED
    reason: str | None = None
    mode: str = "warm"  # warm | blind | queue | external (SPEC §10)
    to_number: str | None = None  # an external transfer's number
    expired: bool = False  # waited TRANSFER_WAIT_SECONDS for any agent: none freed up

    def public(self, conference: str) -> dict[str, Any]:
        """The transfer shape of events and snapshots (docs/websocket.md)."""
        return {
            "id": self.id,
            "conference": conference,
            "from_agent": self.from_agent,
            "to_agent": self.to_agent,
            "status": self.status,
            "reason": self.reason,
            "note": self.note,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "mode": self.mode,
            "to_number": self.to_number,
        }


class Recording(_Record):
    """The conference's recording (SPEC §8): its SID, its status as Twilio last
    reported it or as someone paused it, and its length in seconds once known."""

    sid: str
    status: str  # in-progress | paused | completed | absent | failed | deleted
    duration: int | None = None

    def public(self) -> dict[str, Any]:
        """The recording shape of events and snapshots (docs/websocket.md)."""
        return {"sid": self.sid, "status": self.status, "duration": self.duration}


class HelpRequest(_Record):
    """An agent on a call asking supervisors for help (SPEC §10)."""

    id: str  # "HP" + hex
    agent: str
    text: str
    at: int
    status: str = "open"  # or taken | canceled | ended

    def public(self, conference: str) -> dict[str, Any]:
        """The help shape of ``help.requested`` / ``help.updated`` and the snapshot."""
        return {
            "id": self.id,
            "agent": self.agent,
            "conference": conference,
            "text": self.text,
            "at": self.at,
            "status": self.status,
        }


class CallbackStatus(StrEnum):
    WAITING = "waiting"  # in line, or its agent decides what next after a failed dial
    DIALING = "dialing"  # the number rings
    CONNECTED = "connected"  # the customer answered and joined
    FAILED = "failed"  # CALLBACK_ATTEMPTS dials failed
    DONE = "done"  # the call happened, or the agent closed it

    @property
    def closed(self) -> bool:
        return self in (CallbackStatus.FAILED, CallbackStatus.DONE)


class CallbackInfo(_Record):
    """A callback (SPEC §9): the number to dial for a caller who asked for one (or
    left a voicemail), carried by the conference it is served in."""

    id: str  # "CB" + hex; its first conference is named by it
    number: str
    origin: str  # the CallSid of the call that asked for it (or left the voicemail)
    requested_at: int
    attempts: int = 0  # dials of the number so far
    status: str = CallbackStatus.WAITING
    agent: str | None = None  # who serves it (set when they answer, or from the start)
    pinned: bool = False  # a voicemail's callback: its agent alone, never in line
    result: str | None = None  # why the last dial failed: no-answer, busy, failed, machine
    retry: bool = False  # the agent asked to dial again
    disposition: str | None = None
    dial: str | None = None  # the dial of the number under way (or last made)
    session: int = 1  # its conference's number: the line gives it a new one after a session
    # ended unconnected (a conference that ended never starts again under its name)
    successor: str | None = None  # the conference the callback moved on to

    def public(self, conference: str) -> dict[str, Any]:
        """The callback shape of events and snapshots (SPEC §9, docs/websocket.md)."""
        return {
            "id": self.id,
            "number": self.number,
            "requested_at": self.requested_at,
            "attempts": self.attempts,
            "status": self.status,
            "agent": self.agent,
            "origin": self.origin,
            "result": self.result,
            "disposition": self.disposition,
            "conference": conference,
        }


class FoldedParticipant(_Record):
    """A participant as the folded callbacks left it, before the record names its role
    (console/domain/derive.py ``resolve``: from the dials, which may change later)."""

    call_sid: str
    label: str | None
    muted: bool
    hold: bool
    coaching: bool
    end_on_exit: bool | None
    joined_at: int
    unmuted_since: int | None = None


class Folded(_Record):
    """The conference callbacks with SequenceNumber <= ``through``, folded in
    SequenceNumber order (console/domain/derive.py ``fold``), and nothing that depends
    on the rest of the record. The callbacks themselves are the first ``count`` of the
    conference's folded list (console/domain/folding.py)."""

    through: int
    count: int = 0
    sid: str | None = None
    status: str = "waiting"
    started_at: int | None = None
    ended_at: int | None = None
    end_reason: str | None = None
    participants: dict[str, FoldedParticipant] = msgspec.field(default_factory=dict)
    joined: dict[str, int] = msgspec.field(default_factory=dict)  # call_sid -> first join seq
    left: dict[str, int] = msgspec.field(default_factory=dict)  # call_sid -> first leave seq
    left_ending: list[str] = msgspec.field(default_factory=list)  # left with endConferenceOnExit
    ended: int | None = None  # the first conference-end's seq
    # call_sid -> seq of its first leave as the customer's leg (label or CallSid): whether
    # it was the customer's going depends on the dials (derive ``resolve``).
    customer_left: dict[str, int] = msgspec.field(default_factory=dict)
    customer_joined: bool = False  # a participant-join of the customer's leg was folded


class ConferenceRecord(_Record):
    """Everything known about one customer's conference (named by the customer's CallSid)."""

    name: str
    created_at: int
    from_number: str | None = None
    # "seq:event:call" -> callback: all of them, or those above ``folded.through``.
    callbacks: dict[str, Callback] = msgspec.field(default_factory=dict)
    dials: dict[str, Dial] = msgspec.field(default_factory=dict)
    transfers: dict[str, Transfer] = msgspec.field(default_factory=dict)
    end_on_exit_requested: dict[str, bool] = msgspec.field(default_factory=dict)
    customer_auto_held: bool = False
    # call_sid -> {"by": username, "hold": bool, "at": ms}: holds people asked for
    # through the API, so that the change Twilio reports names who asked for it.
    hold_requests: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    recording: Recording | None = None
    callback: CallbackInfo | None = None  # set: this conference is a callback's (SPEC §9)
    # The customer left the conference because the app moved their call out of it
    # (the longest-wait exit, SPEC §9): they did not hang up.
    moved_out: bool = False
    # Why the caller left the line without an agent, when they chose to: a callback
    # (``callback-requested``) or a message (``voicemail``). Not an abandon.
    left_for: str | None = None
    help: dict[str, HelpRequest] = msgspec.field(default_factory=dict)  # by id (SPEC §10)
    # The callbacks up to a SequenceNumber, folded; ``callbacks`` holds those above it.
    folded: Folded | None = None

    def end_here(self, at: int, conference_sid: str, reason: str) -> None:
        """Record a conference end the app decided (Twilio will report none)."""
        end = Callback(APP_END_SEQ, "conference-end", at, conference_sid, reason=reason)
        self.callbacks[f"{end.seq}:{end.event}:"] = end

    def dial_for_call(self, call_sid: str | None, label: str | None = None) -> Dial | None:
        """The dial a conference participant belongs to, by label first (set by us)."""
        if label and label in self.dials:
            return self.dials[label]
        if call_sid:
            for dial in self.dials.values():
                if dial.call_sid == call_sid:
                    return dial
        return None


class Agent(_Record):
    """An agent's presence: the routing state machine (docs/call-flow.md, routing)."""

    username: str
    status: str = AgentStatus.OFFLINE
    since: int = 0
    idle_since: int = 0  # "longest idle" counts from here; may lie ahead during wrap-up
    conference: str | None = None  # the conference the agent is dialed into or in
    dial: str | None = None  # the dial (ringing or answered) engaging the agent
    reason: str | None = None  # why they are on break (BREAK_REASONS)
    last_call: str | None = None  # the call they last took: what wrap-up is about
    # Their transfer to "any available agent" waits, ahead of the line, since then
    # (SPEC §10): routing offers it the next free agent first.
    transfer_waiting: str | None = None
    transfer_waiting_since: int = 0

    def public(self) -> dict[str, Any]:
        """The agent shape of events and snapshots (docs/websocket.md)."""
        return {
            "username": self.username,
            "status": self.status,
            "since": self.since,
            "reason": self.reason,
        }


class Queued(_Record):
    """A customer waiting for an agent."""

    call_sid: str
    from_number: str | None
    queued_at: int
    not_before: int = 0  # after a failed dial, routing waits until then (no hot loop)
    kind: str = "call"  # or "callback" (SPEC §9), whose call_sid is the call that asked
    callback: str | None = None  # a callback's id
    moved_at: int = 0  # moved out to the longest-wait choice then (SPEC §9); 0: not

    def public(self, position: int | str) -> dict[str, Any]:
        """The queued shape of events and snapshots (docs/websocket.md); ``position``:
        a token for one known at EXEC time (console/domain/positions.py)."""
        shape = {
            "call_sid": self.call_sid,
            "from": self.from_number,
            "queued_at": self.queued_at,
            "position": position,
            "kind": self.kind,
        }
        if self.callback is not None:
            shape["callback"] = self.callback
        if self.moved_at:
            shape["moved_at"] = self.moved_at
        return shape
