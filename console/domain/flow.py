"""What Twilio's requests change: each function is the body of one unit of work
(``console.domain.transaction``), given already-validated, typed values by ``webhooks/``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from console.domain import hours
from console.domain.derive import CUSTOMER_LABEL, derive, dial_active
from console.domain.effects import HangUp
from console.domain.events import Event
from console.domain.records import (
    CALL_ENDED,
    CALL_PROGRESS,
    AgentStatus,
    Callback,
    ConferenceRecord,
    DialKind,
    TransferStatus,
)
from console.domain.settle import call_off
from console.domain.unit import Unit

# The conference-end the app records for a customer who never reached their
# conference: it folds after any SequenceNumber Twilio sends (derive.py).
NO_CUSTOMER_SEQ = 2**62
NO_CUSTOMER = "customer-never-joined"


class Arrival(StrEnum):
    """What the Voice URL does with a caller (SPEC §9)."""

    QUEUED = "queued"  # their conference, in the line (as in §1)
    ENDED = "ended"  # this CallSid's call is over: a replay, hung up on
    CLOSED = "closed-hours"  # outside BUSINESS_HOURS or on a holiday: a message, voicemail
    NO_AGENTS = "no-agents"  # every agent offline, NOBODY_SIGNED_IN=voicemail: the same


DIVERTED = "call.diverted"  # a caller sent to voicemail at arrival, never in the line


async def enqueue_call(unit: Unit, call_sid: str, from_number: str | None) -> Arrival:
    """A customer called: their conference exists and they wait in the queue, unless
    the center is closed or nobody is signed in (and callers are to leave a message
    then). A replay never queues an ended call again (SPEC §11). Idempotent: Twilio may
    fetch the Voice URL again for the same call."""
    record = await unit.conference(call_sid)
    if unit.call_ended(call_sid):
        return Arrival.ENDED
    if record is not None:
        return Arrival.QUEUED
    diverted = _diverted(unit)
    if diverted is not None:
        data = {"call_sid": call_sid, "from": from_number, "reason": diverted.value}
        # Supervisors only (an empty audience): no agent could have taken the call.
        unit.events.append(Event(DIVERTED, data, unit.now, frozenset(), call_sid))
        return diverted
    unit.create_conference(call_sid, from_number)
    unit.enqueue(call_sid, from_number)
    return Arrival.QUEUED


def _diverted(unit: Unit) -> Arrival | None:
    settings = unit.settings
    if not hours.is_open(
        settings.business_hours, settings.holidays, settings.center_zone, unit.now
    ):
        return Arrival.CLOSED
    if settings.nobody_signed_in == "voicemail" and all(
        agent.status == AgentStatus.OFFLINE for agent in unit.agents.values()
    ):
        return Arrival.NO_AGENTS
    return None


def callback_key(callback: Callback) -> str:
    """One key per distinct callback, so a duplicate delivery is recognised."""
    return f"{callback.seq}:{callback.event}:{callback.call_sid or ''}"


async def apply_conference_callback(unit: Unit, name: str, callback: Callback) -> bool:
    """Record a conference status callback; False when it was a duplicate.

    A conference the app has no record of (its Voice URL ran while Redis was
    unreachable) is recorded from its callbacks: the customer is queued then."""
    record = await unit.conference(name)
    if record is None:
        if unit.call_ended(name):
            return False  # a replay for a call long over: nothing comes back
        record = unit.create_conference(name, None)
    key = callback_key(callback)
    if key in record.callbacks:
        return False
    record.callbacks[key] = callback
    return True


async def apply_call_status(
    unit: Unit, conference: str, dial_id: str, call_sid: str, status: str, seq: int | None
) -> bool:
    """Record a call-progress callback of a call the app placed; False if it changed
    nothing (unknown, duplicate or stale)."""
    record = await unit.conference(conference)
    dial = record.dials.get(dial_id) if record else None
    if dial is None:
        return False
    dial.call_sid = dial.call_sid or call_sid
    if seq is not None:
        if seq <= dial.seq:
            return False
        dial.seq = seq
    if dial.status == "api-error":
        # The REST call looked failed but Twilio placed it: stop the ghost ring.
        if status not in CALL_ENDED:
            unit.effects.append(HangUp(conference, call_sid, "canceled"))
        return False
    if dial.ended:
        return False
    if status in CALL_ENDED or CALL_PROGRESS.get(status, -1) > CALL_PROGRESS.get(dial.status, -1):
        dial.status = status
        return True
    return False


@dataclass(frozen=True)
class Answer:
    """What the agent connect route tells Twilio: join the conference, or hang up."""

    join: bool
    kind: str | None = None
    label: str | None = None
    end_on_exit: bool = False
    message: str = ""


async def accept_answer(unit: Unit, conference: str, dial_id: str, call_sid: str) -> Answer:
    """An agent picked up: join them if this ring is still the one that counts."""
    record = await unit.conference(conference)
    dial = record.dials.get(dial_id) if record else None
    if record is None or dial is None:
        return Answer(False, message="This call is no longer available.")
    view = derive(record)
    agent = unit.agents.get(dial.agent)
    if view.customer_gone or view.status == "ended":
        return Answer(False, message="The caller has hung up.")
    if dial.ended or dial.cancel_reason or agent is None or agent.dial != dial.id:
        return Answer(False, message="This call is no longer available.")
    if dial.kind == DialKind.TRANSFER:
        transfer = record.transfers.get(dial.transfer or "")
        if transfer is None or transfer.canceled or TransferStatus(transfer.status).terminal:
            return Answer(False, message="This transfer was canceled.")
    dial.answered = True
    dial.call_sid = dial.call_sid or call_sid
    if CALL_PROGRESS.get(dial.status, -1) < CALL_PROGRESS["in-progress"]:
        dial.status = "in-progress"
    unit.set_status(agent, AgentStatus.BUSY)
    if dial.kind == DialKind.AGENT:
        unit.dequeue(conference, "routed")
    # Alone with the customer, the agent ends the call by hanging up (docs/call-flow.md,
    # endConferenceOnExit);
    # a colleague joining a transfer must not, until the first agent has left.
    return Answer(True, dial.kind, dial.id, end_on_exit=dial.kind == DialKind.AGENT)


async def record_dial_result(
    unit: Unit, conference: str, dial_id: str, call_sid: str | None
) -> None:
    """The REST dial returned: remember the CallSid, or that no call was placed."""
    record = await unit.conference(conference)
    dial = record.dials.get(dial_id) if record else None
    if dial is None:
        return
    if call_sid is None:
        if dial.call_sid is None and not dial.ended:
            dial.status = "api-error"
            await unit.queued.fetch(unit.redis, [conference])
            if conference in unit.queued:
                unit.queued[conference].not_before = unit.now + 3000
        return
    dial.call_sid = dial.call_sid or call_sid
    if dial.status == "dialing":
        dial.status = "queued"
    if dial.cancel_reason and not dial.ended:
        # The customer hung up (or the transfer was canceled) while we were dialing.
        unit.effects.append(HangUp(conference, call_sid, "canceled"))


async def forget_participant_request(
    unit: Unit, conference: str, call_sid: str, params: dict[str, object]
) -> None:
    """A participant update failed: forget we asked, so the next change asks again."""
    record = await unit.conference(conference)
    if record is None:
        return
    if "end_conference_on_exit" in params:
        record.end_on_exit_requested.pop(call_sid, None)
    if "hold" in params:
        record.customer_auto_held = not params["hold"]


def customer_joined(record: ConferenceRecord) -> bool:
    """Twilio reported the customer joining their conference (at any time)."""
    return any(
        c.event == "participant-join" and (c.call_sid == record.name or c.label == CUSTOMER_LABEL)
        for c in record.callbacks.values()
    )


def engaged_conferences(unit: Unit) -> set[str]:
    """The conferences an agent is being dialed into or is in: where an agent could be
    stranded by a customer who never arrives (the sweeper watches them)."""
    return {a.conference for a in unit.agents.values() if a.dial and a.conference}


async def end_without_customer(unit: Unit, name: str) -> bool:
    """Twilio says the customer's call is over and it never reached its conference
    (a replayed Voice URL, or a caller who hung up at the wrong instant): the
    conference ends, the calls placed for it are hung up, their agents are free and
    the call leaves the line. False when the customer did arrive, or it is over."""
    record = await unit.conference(name)
    if record is None or customer_joined(record):
        return False
    view = derive(record)
    if view.status == "ended":
        return False
    end = Callback(NO_CUSTOMER_SEQ, "conference-end", unit.now, view.sid or "", reason=NO_CUSTOMER)
    record.callbacks[callback_key(end)] = end
    for dial in record.dials.values():
        # Settling stops the rings; an agent already in the empty conference is hung
        # up here (Twilio will not end a conference for a customer who never came).
        if dial_active(view, dial) and not dial.cancel_reason:
            call_off(unit, name, dial, "customer-hung-up")
    return True
