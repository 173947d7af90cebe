"""The live picture of a conference, computed from its recorded facts.

``derive`` folds the conference callbacks in SequenceNumber order, whatever order
they arrived in, and combines the result with the calls the app dialed. It is a
pure function of the record, so two records holding the same facts give the same
picture: the basis of Warmline's order independence. Events are the differences
between the picture before and after a change.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from console.domain.records import (
    CALL_UNANSWERED,
    Callback,
    ConferenceRecord,
    Dial,
    DialKind,
    Folded,
    FoldedParticipant,
    Transfer,
    TransferStatus,
)

CUSTOMER_LABEL = "customer"
MOVED_OUT = "choosing"  # left_for of a caller moved to the longest-wait choice (SPEC §9)
HEARD_MODES = ("whisper", "barge")
# Marks the copies of supervisor-leg events made for agents (see ``heard_changes``):
# they go to agents only (Event.agents_only), supervisors having the true events.
AGENTS_VIEW = {"view": "agents"}


@dataclass
class Participant:
    """A call in the conference right now, in the participant shape (docs/websocket.md)."""

    call_sid: str
    role: str
    agent: str | None
    from_number: str | None
    muted: bool
    hold: bool
    coaching: bool
    end_on_exit: bool | None
    joined_at: int
    dial: str | None
    unmuted_since: int | None = None  # when Twilio last reported it unmuted
    silent: bool = False  # a supervisor agents must not know of: listening, or not yet heard

    def public(self, conference: str) -> dict[str, Any]:
        return {
            "conference": conference,
            "call_sid": self.call_sid,
            "role": self.role,
            "agent": self.agent,
            "from": self.from_number,
            "muted": self.muted,
            "hold": self.hold,
            "coaching": self.coaching,
            "joined_at": self.joined_at,
        }

    def seen_by_agents(self, conference: str) -> dict[str, Any] | None:
        """The participant as agents see it: a supervisor only while heard (whisper,
        barge), as if they joined when they were first heard, so no listening before
        it shows; None while they listen."""
        if self.role != "supervisor":
            return self.public(conference)
        if self.silent:
            return None
        return {**self.public(conference), "joined_at": self.unmuted_since or self.joined_at}


@dataclass
class Milestones:
    """SequenceNumbers at which things happened, for ordering facts of one conference."""

    joined: dict[str, int] = field(default_factory=dict)  # call_sid -> join seq
    left: dict[str, int] = field(default_factory=dict)  # call_sid -> leave seq
    left_ending: set[str] = field(default_factory=set)  # left with endConferenceOnExit
    customer_gone: int | None = None  # seq the customer left or the conference ended


@dataclass
class ConferenceView:
    """The derived picture of one conference."""

    name: str
    sid: str | None
    status: str  # waiting | in-progress | ended
    created_at: int  # when the customer's call reached the app
    from_number: str | None
    started_at: int | None
    ended_at: int | None
    end_reason: str | None
    participants: dict[str, Participant]
    milestones: Milestones
    transfers: dict[str, tuple[str, str | None]]  # id -> (status, reason)
    callback: str | None = None  # the callback's id in a callback's conference (SPEC §9)
    left_for: str | None = None  # left the line for a callback, a message, or the choice

    @property
    def customer_gone(self) -> bool:
        return self.milestones.customer_gone is not None

    def agents_present(self) -> list[Participant]:
        return [p for p in self.participants.values() if p.role == "agent"]

    def with_customer(self) -> list[Participant]:
        """Who is with the customer for them: agents, and an external party an agent
        transferred them to (SPEC §10)."""
        return [p for p in self.participants.values() if p.role in ("agent", "external")]

    def public(self) -> dict[str, Any]:
        """The conference shape of events and snapshots (docs/websocket.md)."""
        return {
            **self.summary(),
            "participants": [p.public(self.name) for p in self.participants.values()],
        }

    def public_for_agents(self) -> dict[str, Any]:
        """The conference shape as agents see it: no listening supervisor."""
        seen = (p.seen_by_agents(self.name) for p in self.participants.values())
        return {**self.summary(), "participants": [p for p in seen if p is not None]}

    def summary(self) -> dict[str, Any]:
        """The conference without participants (conference.started / .ended data)."""
        return {
            "name": self.name,
            "sid": self.sid,
            "status": self.status,
            "from": self.from_number,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "kind": "callback" if self.callback else "call",
            "callback": self.callback,
            "left_for": self.left_for,
        }


def derive(record: ConferenceRecord) -> ConferenceView:
    """Fold the record's facts into the live picture: its folded callbacks (if any),
    then the callbacks above them, in SequenceNumber order."""
    state = copy_folded(record.folded) if record.folded else Folded(through=FOLD_START)
    fold(state, sorted(record.callbacks.values(), key=_seq), record.name)
    return resolve(state, record)


FOLD_START = -(2**63)  # the ``through`` of a fold of no callbacks


def _seq(callback: Callback) -> int:
    return callback.seq


def copy_folded(state: Folded) -> Folded:
    """A copy to fold further without touching ``state`` (the record's)."""
    participants = {c: copy.copy(p) for c, p in state.participants.items()}
    return msgspec.structs.replace(
        state,
        participants=participants,
        joined=dict(state.joined),
        left=dict(state.left),
        left_ending=list(state.left_ending),
        customer_left=dict(state.customer_left),
    )


def fold(state: Folded, callbacks: Iterable[Callback], name: str) -> None:
    """Fold ``callbacks`` (in SequenceNumber order, all above what ``state`` holds) into
    ``state``. Uses nothing of the record but its ``name``, so a fold kept in the
    record stays true whatever the record learns later (``resolve`` reads the rest)."""
    for cb in callbacks:
        _apply_callback(state, cb, name)


def _apply_callback(state: Folded, cb: Callback, name: str) -> None:
    state.sid = state.sid or cb.conference_sid
    event = cb.event
    if event == "conference-start":
        if state.status != "ended":
            state.status = "in-progress"
        state.started_at = state.started_at or cb.at
    elif event == "conference-end":
        state.status = "ended"
        state.ended_at = cb.at
        state.end_reason = cb.reason
        for call_sid in state.participants:
            state.left.setdefault(call_sid, cb.seq)
        state.participants.clear()
        if state.ended is None:
            state.ended = cb.seq
    elif event == "participant-join":
        if cb.call_sid == name or cb.label == CUSTOMER_LABEL:
            state.customer_joined = True
        if not cb.call_sid or cb.call_sid in state.left or state.status == "ended":
            return
        state.joined.setdefault(cb.call_sid, cb.seq)
        state.participants[cb.call_sid] = FoldedParticipant(
            call_sid=cb.call_sid,
            label=cb.label,
            muted=bool(cb.muted),
            hold=bool(cb.hold),
            coaching=bool(cb.coaching),
            end_on_exit=cb.end_on_exit,
            joined_at=cb.at,
            unmuted_since=None if cb.muted else cb.at,
        )
    elif event == "participant-leave" and cb.call_sid:
        state.left.setdefault(cb.call_sid, cb.seq)
        gone = state.participants.pop(cb.call_sid, None)
        ending = cb.end_on_exit or (gone and gone.end_on_exit and cb.end_on_exit is None)
        if ending and cb.call_sid not in state.left_ending:
            state.left_ending.append(cb.call_sid)
        if _is_customer(name, cb.call_sid, cb.label):
            state.customer_left.setdefault(cb.call_sid, cb.seq)
    elif cb.call_sid in state.participants:
        _update_flags(state.participants[cb.call_sid], cb)


def _update_flags(participant: FoldedParticipant, cb: Callback) -> None:
    """participant-mute/-unmute/-hold/-unhold/-modify carry the full flag set."""
    if cb.event == "participant-mute":
        participant.muted = True
    elif cb.event == "participant-unmute":
        participant.muted = False
    elif cb.event == "participant-hold":
        participant.hold = True
    elif cb.event == "participant-unhold":
        participant.hold = False
    if cb.event == "participant-modify":
        for flag in ("muted", "hold", "coaching"):
            value = getattr(cb, flag)
            if value is not None:
                setattr(participant, flag, value)
    if cb.end_on_exit is not None:
        participant.end_on_exit = cb.end_on_exit
    if participant.muted:
        participant.unmuted_since = None
    elif participant.unmuted_since is None:
        participant.unmuted_since = cb.at


def resolve(state: Folded, record: ConferenceRecord) -> ConferenceView:
    """The picture from a fold of the record's callbacks and the rest of the record:
    who each participant is (their dial), whether a customer leg's leaving was the
    customer's going, the transfers. ``state`` is handed over, not copied."""
    marks = Milestones(
        joined=state.joined,
        left=state.left,
        left_ending=set(state.left_ending),
        customer_gone=_customer_gone(state, record),
    )
    view = ConferenceView(
        name=record.name,
        sid=state.sid,
        status=state.status,
        created_at=record.created_at,
        from_number=record.from_number,
        started_at=state.started_at,
        ended_at=state.ended_at,
        end_reason=state.end_reason,
        participants={c: _participant(record, p) for c, p in state.participants.items()},
        milestones=marks,
        transfers={},
        callback=record.callback.id if record.callback else None,
        left_for=record.left_for or (MOVED_OUT if record.moved_out else None),
    )
    for transfer in record.transfers.values():
        view.transfers[transfer.id] = transfer_outcome(record, view, transfer)
    for participant in view.participants.values():
        if participant.role == "supervisor":
            dial = record.dials.get(participant.dial or "")
            mode = dial.mode if dial else None
            participant.silent = participant.muted or mode not in HEARD_MODES
    return view


def _customer_gone(state: Folded, record: ConferenceRecord) -> int | None:
    """The first SequenceNumber at which the customer was gone: the conference ended,
    or a customer leg left that was the customer's (see ``_customer_left``)."""
    gone = [] if state.ended is None else [state.ended]
    gone += [
        seq
        for call_sid, seq in state.customer_left.items()
        if _customer_left(record, state.joined, call_sid)
    ]
    return min(gone, default=None)


def _is_customer(name: str, call_sid: str | None, label: str | None) -> bool:
    return label == CUSTOMER_LABEL or call_sid == name


def _customer_left(record: ConferenceRecord, joined: dict[str, int], call_sid: str) -> bool:
    """A customer leg's leaving is the customer's: always for a caller; for a
    callback's number (SPEC §9) only once a person was on the line. A dial that never
    joined (no answer) or a machine the app hung up leaves the callback going on: the
    agent may dial again. (A leg that left never joins again, so ``joined`` is as it
    was when it left.)"""
    if record.callback is None:
        return True
    dial = record.dial_for_call(call_sid)
    return call_sid in joined and not (dial is not None and dial.machine)


def _participant(record: ConferenceRecord, folded: FoldedParticipant) -> Participant:
    dial = record.dial_for_call(folded.call_sid, folded.label)
    if _is_customer(record.name, folded.call_sid, folded.label):
        role, agent, number = "customer", None, record.from_number
    elif dial is not None and dial.kind == DialKind.EXTERNAL:
        role, agent, number = "external", None, dial.number
    elif dial is not None:
        role = "supervisor" if dial.kind == DialKind.SUPERVISOR else "agent"
        agent, number = dial.agent, None
    else:
        role, agent, number = "agent", None, None
    return Participant(
        call_sid=folded.call_sid,
        role=role,
        agent=agent,
        from_number=number,
        muted=folded.muted,
        hold=folded.hold,
        coaching=folded.coaching,
        end_on_exit=folded.end_on_exit,
        joined_at=folded.joined_at,
        dial=dial.id if dial else None,
        unmuted_since=folded.unmuted_since,
    )


def heard_changes(
    before: dict[str, Participant], after: dict[str, Participant], conference: str
) -> list[tuple[str, dict[str, Any]]]:
    """The participant events agents get about supervisors' legs, whose true events go
    to supervisors only: joined when a supervisor starts being heard, updated while
    heard, left when they stop (going back to listen looks like leaving)."""
    changes: list[tuple[str, dict[str, Any]]] = []
    for call_sid in [*after, *(c for c in before if c not in after)]:
        old, new = before.get(call_sid), after.get(call_sid)
        if (new or before[call_sid]).role != "supervisor":
            continue
        was = old.seen_by_agents(conference) if old else None
        now = new.seen_by_agents(conference) if new else None
        if was == now:
            continue
        if now is not None:
            kind = "participant.joined" if was is None else "participant.updated"
            changes.append((kind, {**now, **AGENTS_VIEW}))
        elif was is not None:
            changes.append(("participant.left", {**was, **AGENTS_VIEW}))
    return changes


def dial_call_sid(record: ConferenceRecord, dial_id: str | None) -> str | None:
    dial = record.dials.get(dial_id) if dial_id else None
    return dial.call_sid if dial else None


def dial_finished(view: ConferenceView, dial: Dial) -> bool:
    """The dialed call is over: Twilio said so, or it left the conference."""
    return dial.ended or bool(dial.call_sid and dial.call_sid in view.milestones.left)


def dial_active(view: ConferenceView, dial: Dial) -> bool:
    return not dial_finished(view, dial)


def dials_under_way(record: ConferenceRecord, view: ConferenceView) -> list[Dial]:
    """The agents' and colleagues' dials neither over nor called off: someone is being
    rung for the customer, or is on the call with them."""
    return [
        d
        for d in record.dials.values()
        if d.kind != DialKind.SUPERVISOR and dial_active(view, d) and not d.cancel_reason
    ]


def involved_agents(record: ConferenceRecord, view: ConferenceView) -> set[str]:
    """Agents who may see this conference: dialed into it, in it, or transferring from it.
    ``view`` is ``derive(record)``, which the caller already has."""
    people = {p.agent for p in view.participants.values() if p.agent and p.role == "agent"}
    ringing = {d.agent for d in dials_under_way(record, view)}
    transferring = {
        t.from_agent
        for t in record.transfers.values()
        if not TransferStatus(view.transfers[t.id][0]).terminal
    }
    return people | ringing | transferring


def transfer_outcome(
    record: ConferenceRecord, view: ConferenceView, transfer: Transfer
) -> tuple[str, str | None]:
    """The status and reason of a transfer, from facts only (see module docstring)."""
    marks = view.milestones
    dial = record.dials.get(transfer.dial) if transfer.dial else None
    if transfer.error:
        return TransferStatus.FAILED, "api-error"
    if transfer.mode == "queue":
        return _queue_outcome(record, view, transfer)
    colleague = dial.call_sid if dial else None
    first = dial_call_sid(record, transfer.from_dial)
    joined = marks.joined.get(colleague) if colleague else None
    if joined is not None:
        colleague_left = marks.left.get(colleague)
        first_left = marks.left.get(first) if first else None
        if first_left is not None and (colleague_left is None or colleague_left > first_left):
            done_at = max(joined, first_left)
            gone = marks.customer_gone
            if gone is not None and gone < done_at:
                return TransferStatus.FAILED, "customer-hung-up"
            return TransferStatus.COMPLETED, None
        if colleague_left is not None:
            if marks.customer_gone is not None and marks.customer_gone <= colleague_left:
                return TransferStatus.FAILED, "customer-hung-up"
            return TransferStatus.FAILED, "colleague-left"
        if marks.customer_gone is not None:
            return TransferStatus.FAILED, "customer-hung-up"
        return TransferStatus.JOINED, None
    if dial is None and first is not None and first in marks.left and not view.customer_gone:
        return TransferStatus.CANCELED, None  # left before any agent freed up for it
    return _unjoined_outcome(view, transfer, dial)


def _unjoined_outcome(
    view: ConferenceView, transfer: Transfer, dial: Dial | None
) -> tuple[str, str | None]:
    """A transfer whose colleague has not (or not yet) joined the conference."""
    if dial is not None and dial.ended:
        if dial.cancel_reason == "transfer-canceled":
            return TransferStatus.CANCELED, None
        if dial.cancel_reason == "customer-hung-up":
            return TransferStatus.FAILED, "customer-hung-up"
        if dial.status in CALL_UNANSWERED:
            return TransferStatus.FAILED, dial.status
        if dial.status == "api-error":
            return TransferStatus.FAILED, "api-error"
        # Answered, then hung up before reaching the conference.
        return TransferStatus.FAILED, "colleague-left"
    if view.customer_gone:
        return TransferStatus.FAILED, "customer-hung-up"
    if transfer.canceled:
        return TransferStatus.CANCELED, None
    if transfer.expired:
        return TransferStatus.FAILED, "no-agent-available"
    if dial is None:
        return TransferStatus.REQUESTED, None  # waiting for any agent to free up
    if dial.answered or dial.status == "in-progress":
        return TransferStatus.ANSWERED, None
    if dial.call_sid:
        return TransferStatus.RINGING, None
    return TransferStatus.REQUESTED, None


def _queue_outcome(
    record: ConferenceRecord, view: ConferenceView, transfer: Transfer
) -> tuple[str, str | None]:
    """A transfer back to the line (SPEC §10): done once the first agent left the
    customer there; failed if the customer hung up first."""
    marks = view.milestones
    first = dial_call_sid(record, transfer.from_dial)
    first_left = marks.left.get(first) if first else None
    gone = marks.customer_gone
    if gone is not None and (first_left is None or gone < first_left):
        return TransferStatus.FAILED, "customer-hung-up"
    if first_left is not None:
        return TransferStatus.COMPLETED, None
    return TransferStatus.REQUESTED, None
