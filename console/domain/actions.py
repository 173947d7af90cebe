"""What people do from the views: presence, transfers, leave, hold, monitor.

Each action validates against the current state inside a unit of work (so a 409
reflects the state the change would have applied to), then carries out the
Twilio REST steps in the order the call flow needs them.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from typing import Any

from console.domain import help_requests
from console.domain.derive import ConferenceView, Participant, derive, dial_active
from console.domain.effects import HangUp
from console.domain.errors import BadRequest, Conflict, DomainError, NotFound
from console.domain.events import Event
from console.domain.records import (
    AgentStatus,
    ConferenceRecord,
    Dial,
    DialKind,
    HelpRequest,
    Transfer,
    TransferStatus,
)
from console.domain.routing import new_dial_id
from console.domain.unit import Unit


async def set_presence(
    unit: Unit, username: str, status: str, reason: str | None = None
) -> dict[str, Any]:
    """An agent sets themself available, offline or on break with a reason (not in
    the middle of a call); available or a break also ends their wrap-up (SPEC §10)."""
    if status == AgentStatus.BREAK:
        if reason not in unit.settings.break_reasons:
            choices = ", ".join(unit.settings.break_reasons)
            raise BadRequest(f"a break needs a reason, one of: {choices}")
    elif reason is not None:
        raise BadRequest("a reason is given for a break only")
    agent = unit.agent(username)
    if agent.status in (AgentStatus.RINGING, AgentStatus.BUSY) and status != agent.status:
        raise Conflict(f"you are {agent.status}; finish the call first")
    unit.set_status(agent, AgentStatus(status), reason)
    return agent.public()


async def live_conference(unit: Unit, name: str) -> tuple[ConferenceRecord, ConferenceView]:
    record = await unit.conference(name)
    if record is None:
        raise NotFound(f"no conference {name}")
    view = derive(record)
    if view.status == "ended" or view.customer_gone:
        raise Conflict(f"conference {name} has ended")
    return record, view


def present_as(view: ConferenceView, username: str, role: str | None = None) -> Participant | None:
    """The user's participant in the conference, if they are in it now."""
    for participant in view.participants.values():
        if participant.agent == username and (role is None or participant.role == role):
            return participant
    return None


@dataclass(frozen=True)
class TransferStart:
    """What the API does once the transfer is recorded: ring ``to_agent`` or dial
    ``number`` (the dial ``dial``), and have the first agent leave when ``leave``."""

    transfer: str
    conference_sid: str
    from_call_sid: str
    dial: str | None  # None: waiting for any agent to free up, or back to the line
    to_agent: str | None
    mode: str = "warm"
    number: str | None = None
    leave: bool = False


async def start_transfer(
    unit: Unit,
    username: str,
    name: str,
    to: str | None,
    note: str,
    mode: str = "warm",
    to_number: str | None = None,
    leave_after_dial: bool = False,
) -> TransferStart:
    """Create a transfer (SPEC §10) and, for an agent, ring them atomically with their
    choice; ``to_number`` was checked against the directory and the allowed prefixes."""
    record, view = await live_conference(unit, name)
    me = present_as(view, username, "agent")
    if me is None or me.dial is None:
        raise Conflict("you are not in this conference")
    if any(not TransferStatus(s).terminal for s, _ in view.transfers.values()):
        raise Conflict("a transfer is already under way in this conference")
    target = None if mode in ("queue", "external") else _transfer_target(unit, username, to)
    if mode == "blind" and target is None:
        mode = "queue"  # nobody free to ring: the customer waits at the front of the line
    transfer = Transfer(
        id="TR" + secrets.token_hex(12),
        from_agent=username,
        from_dial=me.dial,
        to_agent=target,
        note=note,
        created_at=unit.now,
        updated_at=unit.now,
        mode=mode,
        to_number=to_number if mode == "external" else None,
    )
    record.transfers[transfer.id] = transfer
    unit.register_transfer(transfer.id, name)
    # Until someone else has taken over, leaving must not end the customer's call.
    record.end_on_exit_requested[me.call_sid] = False
    start = functools.partial(TransferStart, transfer.id, view.sid or name, me.call_sid)
    if mode == "queue":
        return start(None, None, mode, leave=True)
    if mode == "external":
        dial = _dial(record, transfer, DialKind.EXTERNAL, username, unit.now)
        dial.number = to_number
        return start(dial.id, None, mode, number=to_number, leave=leave_after_dial)
    if target is None:  # every other signed-in agent is busy: wait ahead of the line
        first = unit.agents[username]
        first.transfer_waiting, first.transfer_waiting_since = transfer.id, unit.now
        return start(None, None, mode)
    dial = _dial(record, transfer, DialKind.TRANSFER, target, unit.now)
    agent = unit.agents[target]
    unit.set_status(agent, AgentStatus.RINGING)
    agent.conference, agent.dial = name, dial.id
    return start(dial.id, target, mode, leave=mode == "blind")


def _dial(
    record: ConferenceRecord, transfer: Transfer, kind: DialKind, agent: str, now: int
) -> Dial:
    dial = Dial(id=new_dial_id(), kind=kind, agent=agent, created_at=now, transfer=transfer.id)
    transfer.dial = dial.id
    record.dials[dial.id] = dial
    return dial


def _transfer_target(unit: Unit, username: str, to: str | None) -> str | None:
    """The colleague to ring; None for "any available agent" when none is free but
    another is signed in (the transfer then waits for one)."""
    if to is None:
        candidates = [a for a in unit.routable() if a.username != username]
        if candidates:
            return candidates[0].username
        signed_in = [
            a
            for a in unit.agents.values()
            if a.username != username and a.status != AgentStatus.OFFLINE
        ]
        if not signed_in:
            raise Conflict("no agent is available")
        return None
    if to == username:
        raise Conflict("you cannot transfer to yourself")
    agent = unit.agents.get(to)
    if agent is None:
        raise Conflict(f"{to} is not available (offline)")
    if agent not in unit.routable():
        raise Conflict(f"{to} is not available ({agent.status})")
    return to


async def fail_transfer(unit: Unit, name: str, transfer_id: str) -> None:
    """A REST step of the transfer failed: it fails visibly, the colleague is freed."""
    record = await unit.conference(name)
    if record is None or transfer_id not in record.transfers:
        return
    transfer = record.transfers[transfer_id]
    transfer.error = True
    dial = record.dials.get(transfer.dial or "")
    if dial is not None and dial_active(derive(record), dial):
        dial.cancel_reason = "api-error"
        if dial.call_sid:
            unit.effects.append(HangUp(name, dial.call_sid, "canceled"))


async def cancel_transfer(
    unit: Unit, username: str, supervisor: bool, name: str, transfer_id: str
) -> dict[str, Any]:
    """The first agent (or a supervisor) cancels a transfer that is still ringing."""
    record = await unit.conference(name)
    transfer = record.transfers.get(transfer_id) if record else None
    if record is None or transfer is None:
        raise NotFound(f"no transfer {transfer_id}")
    if not supervisor and transfer.from_agent != username:
        raise DomainError("only the agent who started this transfer can cancel it", 403)
    status, _ = derive(record).transfers[transfer_id]
    if status not in (TransferStatus.REQUESTED, TransferStatus.RINGING):
        raise Conflict(f"the transfer is {status}, not ringing")
    transfer.canceled = True
    transfer.status, transfer.reason, transfer.updated_at = TransferStatus.CANCELED, None, unit.now
    dial = record.dials.get(transfer.dial or "")
    if dial is not None:
        dial.cancel_reason = "transfer-canceled"
        if dial.call_sid:
            unit.effects.append(HangUp(name, dial.call_sid, "canceled"))
    return transfer.public(name)


@dataclass(frozen=True)
class Leaving:
    conference_sid: str
    call_sid: str
    keep_call_alive: bool  # someone else stays with the customer: clear endConferenceOnExit


async def prepare_leave(unit: Unit, username: str, name: str) -> Leaving:
    record, view = await live_conference(unit, name)
    me = present_as(view, username)
    if me is None:
        raise Conflict("you are not in this conference")
    others = [p for p in view.agents_present() if p.call_sid != me.call_sid]
    ringing = any(not TransferStatus(s).terminal for s, _ in view.transfers.values())
    keep = me.role == "supervisor" or bool(others) or ringing
    if keep and me.role == "agent":
        record.end_on_exit_requested[me.call_sid] = False
    if me.role == "supervisor":
        _supervisor_event(unit, username, name, "left")
    return Leaving(view.sid or name, me.call_sid, keep)


async def prepare_hold(
    unit: Unit, username: str, supervisor: bool, name: str, call_sid: str, hold: bool
) -> str:
    """Check a hold request and remember who made it (the timeline names them when
    Twilio reports the change); returns the ConferenceSid to address."""
    record, view = await live_conference(unit, name)
    if not supervisor and present_as(view, username, "agent") is None:
        raise DomainError("you can only hold participants of your own conference", 403)
    target = view.participants.get(call_sid)
    # A supervisor's leg is answered to an agent as a call that is not there.
    if target is None or (not supervisor and target.role == "supervisor"):
        raise NotFound(f"no participant {call_sid} in conference {name}")
    record.hold_requests[call_sid] = {"by": username, "hold": hold, "at": unit.now}
    return view.sid or name


async def forget_hold_request(unit: Unit, name: str, call_sid: str) -> None:
    """Twilio refused the hold: no change will come to attribute."""
    record = await unit.conference(name)
    if record is not None:
        record.hold_requests.pop(call_sid, None)


@dataclass(frozen=True)
class Monitoring:
    conference_sid: str
    dial: str
    call_sid: str | None  # set: already in the conference, update in place
    params: dict[str, Any]


async def prepare_monitor(unit: Unit, username: str, name: str, mode: str) -> Monitoring:
    """A supervisor joins (or switches mode in) a live conference."""
    record, view = await live_conference(unit, name)
    if view.status != "in-progress":
        raise Conflict("the conference has not started yet")
    params = _monitor_params(view, mode)
    existing = next(
        (
            d
            for d in record.dials.values()
            if d.kind == DialKind.SUPERVISOR and d.agent == username and dial_active(view, d)
        ),
        None,
    )
    help_requests.take_all(unit, record)  # monitoring the call takes its help requests
    if existing is not None:
        if existing.call_sid is None:
            raise Conflict("still connecting you; try again in a moment")
        existing.mode = mode
        _supervisor_event(unit, username, name, mode)
        return Monitoring(view.sid or name, existing.id, existing.call_sid, params)
    dial = Dial(
        id=new_dial_id(), kind=DialKind.SUPERVISOR, agent=username, created_at=unit.now, mode=mode
    )
    record.dials[dial.id] = dial
    _supervisor_event(unit, username, name, mode)
    return Monitoring(view.sid or name, dial.id, None, params)


def _monitor_params(view: ConferenceView, mode: str) -> dict[str, Any]:
    if mode == "listen":
        return {"muted": True, "coaching": False}
    if mode == "barge":
        return {"muted": False, "coaching": False}
    agents = sorted(view.agents_present(), key=lambda p: view.milestones.joined[p.call_sid])
    if not agents:
        raise Conflict("no agent to whisper to")
    # Coach the agent now handling the customer: the one who joined last.
    return {"muted": False, "coaching": True, "call_sid_to_coach": agents[-1].call_sid}


def _supervisor_event(unit: Unit, username: str, name: str, mode: str) -> None:
    data = {"supervisor": username, "conference": name, "mode": mode}
    # An empty audience: supervisors only. Agents are not told who listens.
    unit.events.append(Event("supervisor.action", data, unit.now, frozenset(), name))


async def record_monitor_call(unit: Unit, name: str, dial_id: str, call_sid: str | None) -> None:
    record = await unit.conference(name)
    dial = record.dials.get(dial_id) if record else None
    if dial is None:
        return
    if call_sid is None:
        dial.status = "api-error"
    else:
        dial.call_sid = dial.call_sid or call_sid
        if dial.status == "dialing":
            dial.status = "queued"


# -- asking for help (SPEC §10; console/domain/help_requests.py) -----------------------


async def ask_for_help(unit: Unit, username: str, conference: str, text: str) -> HelpRequest:
    """``username``, on the call, asks for help; one open request per agent and call."""
    record, view = await live_conference(unit, conference)
    if present_as(view, username, "agent") is None:
        raise Conflict("you are not on this call")
    if any(r.agent == username and r.status == help_requests.OPEN for r in record.help.values()):
        raise Conflict("you have already asked for help on this call")
    request = HelpRequest("HP" + secrets.token_hex(16), username, text.strip(), unit.now)
    record.help[request.id] = request
    unit.register_help(request.id, conference)
    help_requests.announce(unit, record, request, help_requests.REQUESTED)
    return request


async def withdraw_help(
    unit: Unit, conference: str, help_id: str, username: str, supervisor: bool
) -> HelpRequest:
    """The agent cancels their request, or a supervisor dismisses it (taken)."""
    record = await unit.conference(conference)
    request = record.help.get(help_id) if record is not None else None
    if record is None or request is None or not (supervisor or request.agent == username):
        raise NotFound(f"no help request {help_id}")
    if request.status != help_requests.OPEN:
        raise Conflict(f"the request is already {request.status}")
    status = help_requests.TAKEN if supervisor else help_requests.CANCELED
    help_requests.close(unit, record, request, status)
    return request
