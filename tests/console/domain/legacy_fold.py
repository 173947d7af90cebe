"""The fold as it was before a record kept its older callbacks folded: every callback
of the record, in SequenceNumber order, each read with the record as it is now. The
oracle of test_folding.py (a copy of console/domain/derive.py's ``derive`` then)."""

from __future__ import annotations

from typing import Any

from console.domain.derive import (
    CUSTOMER_LABEL,
    HEARD_MODES,
    MOVED_OUT,
    ConferenceView,
    Milestones,
    Participant,
    transfer_outcome,
)
from console.domain.records import ConferenceRecord, DialKind


def legacy_derive(record: ConferenceRecord) -> ConferenceView:
    """The live picture, folding every callback of ``record``."""
    view = ConferenceView(
        name=record.name,
        sid=None,
        status="waiting",
        created_at=record.created_at,
        from_number=record.from_number,
        started_at=None,
        ended_at=None,
        end_reason=None,
        participants={},
        milestones=Milestones(),
        transfers={},
        callback=record.callback.id if record.callback else None,
        left_for=record.left_for or (MOVED_OUT if record.moved_out else None),
    )
    for callback in sorted(record.callbacks.values(), key=lambda c: c.seq):
        _apply_callback(view, record, callback)
    for transfer in record.transfers.values():
        view.transfers[transfer.id] = transfer_outcome(record, view, transfer)
    for participant in view.participants.values():
        if participant.role == "supervisor":
            dial = record.dials.get(participant.dial or "")
            mode = dial.mode if dial else None
            participant.silent = participant.muted or mode not in HEARD_MODES
    return view


def _apply_callback(view: ConferenceView, record: ConferenceRecord, cb: Any) -> None:
    view.sid = view.sid or cb.conference_sid
    marks = view.milestones
    event = cb.event
    if event == "conference-start":
        if view.status != "ended":
            view.status = "in-progress"
        view.started_at = view.started_at or cb.at
    elif event == "conference-end":
        view.status = "ended"
        view.ended_at = cb.at
        view.end_reason = cb.reason
        for call_sid in view.participants:
            marks.left.setdefault(call_sid, cb.seq)
        view.participants.clear()
        if marks.customer_gone is None:
            marks.customer_gone = cb.seq
    elif event == "participant-join" and cb.call_sid:
        if cb.call_sid in marks.left or view.status == "ended":
            return
        marks.joined.setdefault(cb.call_sid, cb.seq)
        view.participants[cb.call_sid] = _participant(record, cb)
    elif event == "participant-leave" and cb.call_sid:
        marks.left.setdefault(cb.call_sid, cb.seq)
        gone = view.participants.pop(cb.call_sid, None)
        if cb.end_on_exit or (gone and gone.end_on_exit and cb.end_on_exit is None):
            marks.left_ending.add(cb.call_sid)
        customer = _is_customer(record, cb.call_sid, cb.label)
        if customer and marks.customer_gone is None and _customer_left(record, marks, cb.call_sid):
            marks.customer_gone = cb.seq
    elif cb.call_sid in view.participants:
        _update_flags(view.participants[cb.call_sid], cb)


def _update_flags(participant: Participant, cb: Any) -> None:
    """participant-mute/-unmute/-hold/-unhold/-modify carry the full flag set."""
    if cb.event == "participant-mute":
        participant.muted = True
    elif cb.event == "participant-unmute":
        participant.muted = False
    elif cb.event == "participant-hold":
        participant.hold = True
    elif cb.event == "participant-unhold":
        participant.hold = False
    for name in ("muted", "hold", "coaching"):
        value = getattr(cb, name)
        if value is not None and cb.event == "participant-modify":
            setattr(participant, name, value)
    if cb.end_on_exit is not None:
        participant.end_on_exit = cb.end_on_exit
    if participant.muted:
        participant.unmuted_since = None
    elif participant.unmuted_since is None:
        participant.unmuted_since = cb.at


def _is_customer(record: ConferenceRecord, call_sid: str | None, label: str | None) -> bool:
    return label == CUSTOMER_LABEL or call_sid == record.name


def _customer_left(record: ConferenceRecord, marks: Milestones, call_sid: str) -> bool:
    """A customer leg's leaving is the customer's: always for a caller; for a
    callback's number (SPEC §9) only once a person was on the line. A dial that never
    joined (no answer) or a machine the app hung up leaves the callback going on: the
    agent may dial again."""
    if record.callback is None:
        return True
    dial = record.dial_for_call(call_sid)
    return call_sid in marks.joined and not (dial is not None and dial.machine)


def _participant(record: ConferenceRecord, cb: Any) -> Participant:
    dial = record.dial_for_call(cb.call_sid, cb.label)
    if _is_customer(record, cb.call_sid, cb.label):
        role, agent, number = "customer", None, record.from_number
    elif dial is not None and dial.kind == DialKind.EXTERNAL:
        role, agent, number = "external", None, dial.number
    elif dial is not None:
        role = "supervisor" if dial.kind == DialKind.SUPERVISOR else "agent"
        agent, number = dial.agent, None
    else:
        role, agent, number = "agent", None, None
    return Participant(
        call_sid=cb.call_sid,
        role=role,
        agent=agent,
        from_number=number,
        muted=bool(cb.muted),
        hold=bool(cb.hold),
        coaching=bool(cb.coaching),
        end_on_exit=cb.end_on_exit,
        joined_at=cb.at,
        dial=dial.id if dial else None,
        unmuted_since=None if cb.muted else cb.at,
    )
