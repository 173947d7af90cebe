"""What Twilio's requests change: each function is the body of one unit of work
(``console.domain.transaction``), given already-validated, typed values by ``webhooks/``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from console.domain import callbacks, dialable, expected_wait, hours
from console.domain.derive import CUSTOMER_LABEL, ConferenceView, derive, dial_active
from console.domain.effects import HangUp
from console.domain.events import Event
from console.domain.folding import callback_key as callback_key  # reconcile's
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

NO_CUSTOMER = "customer-never-joined"


class Arrival(StrEnum):
    """What the Voice URL does with a caller (SPEC §9)."""

    QUEUED = "queued"  # their conference, in the line (as in §1)
    ENDED = "ended"  # this CallSid's call is over: a replay, hung up on
    CLOSED = "closed-hours"  # outside BUSINESS_HOURS or on a holiday: a message, voicemail
    NO_AGENTS = "no-agents"  # every agent offline, NOBODY_SIGNED_IN=voicemail: the same
    OFFERED = "offered"  # in the line, and first offered a callback or a message (§9)


class Choice(StrEnum):
    """What a caller's key press at the callback-or-message choice does (SPEC §9)."""

    CALLBACK = "callback-requested"  # called back, their place kept: they hang up
    VOICEMAIL = "voicemail"  # they leave a message
    WAIT = "wait"  # they join (stay in) the line
    ENDED = "ended"  # their call is no longer in the line: nothing to choose


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
    if await _offers_callback(unit, from_number):
        return Arrival.OFFERED
    return Arrival.QUEUED


async def _offers_callback(unit: Unit, from_number: str | None) -> bool:
    """CALLBACK_OFFER_SECONDS is set, the caller's number may be dialed back, and the
    wait expected at their place is longer (0: whenever they must wait at all)."""
    settings = unit.settings
    if settings.callback_offer_seconds is None:
        return False
    if dialable.callback_number(from_number, settings.caller_id) is None:
        return False
    position = len(unit.queue)
    statuses = unit.statuses()
    if not expected_wait.must_wait(position, statuses):
        return False
    if settings.callback_offer_seconds == 0:
        return True
    handled = await expected_wait.handled_figures(unit.redis, unit.now, settings.center_zone)
    wait = expected_wait.estimate(position, statuses, *handled)
    return wait is not None and wait > settings.callback_offer_seconds * 1000


async def choose(unit: Unit, call_sid: str, digits: str, long_wait: bool) -> Choice:
    """The caller pressed ``digits`` at the choice: 1 a callback keeping their place
    in line, 2 a message; anything else (or nothing) waits in line as before, except
    after the longest wait, where it leaves a message. Idempotent for a repeated
    request: a choice made is not made again."""
    record = await unit.conference(call_sid)
    await unit.queued.fetch(unit.redis, [call_sid])
    if record is None or call_sid not in unit.queue:
        return Choice.ENDED
    number = dialable.callback_number(record.from_number, unit.settings.caller_id)
    choice = Choice.VOICEMAIL if long_wait else Choice.WAIT
    if digits == "1" and number is not None:
        choice = Choice.CALLBACK
    elif digits == "2":
        choice = Choice.VOICEMAIL
    if choice == Choice.WAIT:
        return choice
    if choice == Choice.CALLBACK:
        callbacks.request(unit, record, number or "", Choice.CALLBACK.value)
    else:
        unit.dequeue(call_sid, Choice.VOICEMAIL.value, arrived_at=record.created_at)
    record.left_for = choice.value
    _leave_conference(unit, record)
    return choice


def _leave_conference(unit: Unit, record: ConferenceRecord) -> None:
    """The caller will not be back in their conference (a call that left one does not
    return, SPEC §9): it ends; anyone rung for it or waiting in it is hung up."""
    record.moved_out = True
    view = derive(record)
    if view.status == "ended":
        return
    if customer_joined(record) and not view.customer_gone:
        return  # still in it: Twilio reports the leaving the move causes
    _end_unjoined(unit, record, view)


def _end_unjoined(unit: Unit, record: ConferenceRecord, view: ConferenceView) -> None:
    """End a conference its customer never reached (or will not be back in): settling
    stops the rings; an agent already in it is hung up here (Twilio will not end a
    conference for a customer who never came)."""
    record.end_here(unit.now, view.sid or "", NO_CUSTOMER)
    for dial in record.dials.values():
        if dial_active(view, dial) and not dial.cancel_reason:
            call_off(unit, record.name, dial, "customer-hung-up")


async def move_out(unit: Unit, names: list[str]) -> list[str]:
    """Callers at ``names`` who waited MAX_WAIT_SECONDS: marked to be moved to the
    choice (their leaving is not hanging up); returns whom the Calls API moves."""
    max_wait = unit.settings.max_wait_seconds
    if max_wait is None:
        return []
    await unit.queued.fetch(unit.redis, names)
    moving = callbacks.long_waiters(unit, names, max_wait * 1000)
    await unit.preload(moving)
    for name in moving:
        record = await unit.conference(name)
        if record is not None:
            record.moved_out = True
    return moving


async def not_moved(unit: Unit, call_sid: str, gone: bool) -> None:
    """The move failed: back to waiting as before, or out of the line when Twilio
    says the call is over (``gone``)."""
    record = await unit.conference(call_sid)
    await unit.queued.fetch(unit.redis, [call_sid])
    if call_sid not in unit.queue or call_sid not in unit.queued:
        return
    if gone:  # an abandon after all, counted by its departure (its end was not)
        arrived_at = record.created_at if record is not None else None
        unit.dequeue(call_sid, "hung-up", arrived_at=arrived_at)
        if record is not None:
            _leave_conference(unit, record)
        return
    entry = unit.queued[call_sid]
    entry.moved_at, entry.not_before = 0, 0
    if record is not None:
        record.moved_out = False


def _diverted(unit: Unit) -> Arrival | None:
    settings = unit.settings
    if not hours.is_open(
        settings.business_hours, settings.holidays, settings.center_zone, unit.now
    ):
        return Arrival.CLOSED
    if settings.nobody_signed_in == "voicemail" and all(
        status == AgentStatus.OFFLINE for status in unit.statuses()
    ):
        return Arrival.NO_AGENTS
    return None


async def apply_conference_callback(unit: Unit, name: str, callback: Callback) -> bool:
    """Record a conference status callback; False when it was a duplicate.

    A conference the app has no record of (its Voice URL ran while Redis was
    unreachable) is recorded from its callbacks: the customer is queued then."""
    record = await unit.conference(name)
    if record is None:
        if unit.call_ended(name):
            return False  # a replay for a call long over: nothing comes back
        record = unit.create_conference(name, None)
    return await unit.add_callback(record, callback)


async def apply_call_status(
    unit: Unit,
    conference: str,
    dial_id: str,
    call_sid: str,
    status: str,
    seq: int | None,
    answered_by: str | None = None,
) -> bool:
    """Record a call-progress callback of a call the app placed; False if it changed
    nothing (unknown, duplicate or stale). A number's answer carries ``AnsweredBy``
    (machine detection, SPEC §9)."""
    record = await unit.conference(conference)
    dial = record.dials.get(dial_id) if record else None
    if dial is None:
        return False
    if dial.kind in (DialKind.CUSTOMER, DialKind.EXTERNAL) and status == "in-progress":
        dial.answered = True  # a number's call joins by itself: nothing fetches TwiML
        dial.answered_by = dial.answered_by or answered_by
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
        unit.dequeue(conference, "routed", record.callback)
        if record.callback is not None:
            record.callback.agent = dial.agent  # the number is dialed once they joined
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
    if record.folded is not None and record.folded.customer_joined:
        return True
    return any(
        c.event == "participant-join" and (c.call_sid == record.name or c.label == CUSTOMER_LABEL)
        for c in record.callbacks.values()
    )


def engaged_conferences(unit: Unit) -> set[str]:
    """The conferences an agent is being dialed into or is in: where an agent could be
    stranded by a customer who never arrives (the sweeper watches them)."""
    return {name for name in unit.engaged() if name}


async def end_without_customer(unit: Unit, name: str) -> bool:
    """Twilio says the customer's call is over and it never reached its conference
    (a replayed Voice URL, or a caller who hung up at the wrong instant): the
    conference ends, the calls placed for it are hung up, their agents are free and
    the call leaves the line. False when the customer did arrive, or it is over."""
    record = await unit.conference(name)
    if record is None or record.callback is not None or customer_joined(record):
        return False  # a callback's customer is dialed once its agent is there (§11)
    view = derive(record)
    if view.status == "ended":
        return False
    _end_unjoined(unit, record, view)
    return True
