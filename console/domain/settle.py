"""Settling: the call center's rules, applied to every conference a unit of work
loaded once its change is made, whatever the change was (docs/call-flow.md).

For each conference: a customer who hung up leaves the queue and every ring meant
for them stops; an agent whose call is over is free again, or missed if they let it
ring; a customer still on the line whom nobody is with or coming to goes back to the
front of the queue, so a transfer never ends with a customer in silence; a customer
left alone in a started conference hears the wait music; the one agent alone with
the customer ends the call by hanging up (endConferenceOnExit), and nobody does while
a transfer is under way. The conference's events are then derived from the
difference between its picture before and after. Last, routing is asked for when a
customer waits and an agent is free, and the unit announces its agents and its line.
"""

from __future__ import annotations

from console.domain import callbacks, help_requests
from console.domain.derive import (
    ConferenceView,
    Participant,
    derive,
    dial_active,
    dial_finished,
    dials_under_way,
    heard_changes,
    involved_agents,
)
from console.domain.effects import DialNumber, HangUp, Route, UpdateParticipant
from console.domain.events import Event
from console.domain.records import (
    CALL_UNANSWERED,
    CallbackInfo,
    CallbackStatus,
    ConferenceRecord,
    Dial,
    DialKind,
    TransferStatus,
)
from console.domain.routing import new_dial_id
from console.domain.unit import Unit
from console.urls import hold_url, recording_notice_url

HOLD_REQUEST_MS = 60_000  # a hold change this long after the request is not its doing


async def settle(unit: Unit) -> None:
    """Apply the rules to every conference ``unit`` loaded, ask for routing when it
    can offer someone a call, and have the unit announce its agents and its line."""
    for record in unit.loaded():
        Settler(unit, record).run()
    if unit.any_routable() and (unit.transfer_waits() or await unit.waiting(1)):
        unit.effects.append(Route())
    await unit.announce()


def _callback_needs_agent(callback: CallbackInfo, view: ConferenceView) -> bool:
    """Back to the line: a connected customer nobody is with, or a callback whose agent
    let the phone ring before its conference ever started (a voicemail's never)."""
    if callback.successor or CallbackStatus(callback.status).closed:
        return False
    if callback.status == CallbackStatus.CONNECTED:
        return True
    # Nobody ever joined its conference: it still exists under its name.
    return not callback.pinned and not view.milestones.joined


def call_off(unit: Unit, conference: str, dial: Dial, reason: str) -> None:
    """A call the app placed no longer counts: Twilio ends it (``canceled`` while it
    rings, ``completed`` once answered)."""
    dial.cancel_reason = reason
    if dial.call_sid:
        status = "completed" if dial.answered else "canceled"
        unit.effects.append(HangUp(conference, dial.call_sid, status))


class Settler:
    """The rules applied to one conference, and its events (see the module docstring)."""

    def __init__(self, unit: Unit, record: ConferenceRecord) -> None:
        self.unit = unit
        self.record = record
        self.before = unit.before(record.name)
        self.audience: set[str] = set()

    def run(self) -> None:
        view = derive(self.record)
        facts = self.record.to_json()
        self._customer_gone(view)
        self._release_agents(view)
        if self.record.callback is not None:
            self._callback(view)
            view, facts = self._again(view, facts)
        self._serve_customer(view)
        self._manage_participants(view)
        view, facts = self._again(view, facts)  # the reactions may have changed the facts
        self.unit.settled(self.record.name, view, facts)
        # Whoever was involved before or after sees the change (an agent sees their
        # own leaving); computed once, not per event.
        self.audience = involved_agents(self.record, view)
        if self.before.record is not None and self.before.view is not None:
            self.audience |= involved_agents(self.before.record, self.before.view)
        self._announce_transfers(view)
        self._announce_conference(view)
        self._announce_callback()
        if self.record.help:
            help_requests.end_with_call(self.unit, self.record, view)

    def _again(self, view: ConferenceView, facts: str) -> tuple[ConferenceView, str]:
        """The picture once more if the record changed since ``facts`` (its JSON):
        derive is a pure function of the record, and far dearer than encoding it."""
        now = self.record.to_json()
        return (view, facts) if now == facts else (derive(self.record), now)

    def _customer_gone(self, view: ConferenceView) -> None:
        """The customer hung up: leave the queue, stop every ring meant for them."""
        if not view.customer_gone:
            return
        if not self.record.moved_out:  # moved to the longest-wait choice: it dequeues them
            self.unit.dequeue(self.record.name, "hung-up", self.record.callback)
        for dial in self.record.dials.values():
            if not dial_active(view, dial) or dial.cancel_reason:
                continue
            if dial.call_sid and dial.call_sid in view.milestones.joined:
                continue  # in the conference: Twilio ends it with the conference
            call_off(self.unit, self.record.name, dial, "customer-hung-up")

    def _release_agents(self, view: ConferenceView) -> None:
        """An agent whose dial is over is routable again, or missed if they let it ring."""
        for dial in self.record.dials.values():
            agent = self.unit.agents.get(dial.agent)
            if agent is None or agent.dial != dial.id:
                continue
            if not (dial_finished(view, dial) or dial.cancel_reason):
                continue
            pinned = self.record.callback is not None and self.record.callback.pinned
            missed = (
                dial.kind != DialKind.SUPERVISOR
                and not pinned  # a voicemail's callback they asked for themselves
                and not dial.answered
                and dial.cancel_reason is None
                and dial.status in CALL_UNANSWERED
                and dial.call_sid not in view.milestones.joined
            )
            took_call = dial.answered and dial.kind in (DialKind.AGENT, DialKind.TRANSFER)
            self.unit.release(
                agent, missed, back_of_line=dial.status == "api-error", took_call=took_call
            )

    def _serve_customer(self, view: ConferenceView) -> None:
        """Nobody is with (or coming to) a customer still on the line: queue them again,
        at the front, so a transfer never ends with a customer in silence."""
        name = self.record.name
        if view.customer_gone or view.status == "ended":
            return
        if view.milestones.left_ending:
            return  # someone with endConferenceOnExit left: Twilio is ending it
        if self.record.moved_out:
            return  # moved to the choice (SPEC §9): they will not be back in this conference
        if view.with_customer():
            return
        if dials_under_way(self.record, view):
            return
        if self.unit.in_line(name):  # last: looking at the line may make the commit check it
            return
        callback = self.record.callback
        if callback is None:
            self.unit.enqueue(name, self.record.from_number, front=bool(self.record.dials))
        elif _callback_needs_agent(callback, view):
            entry = callbacks.queued_entry(callback, callback.requested_at)
            self.unit.enqueue(name, callback.number, front=True, entry=entry)

    # -- callbacks (SPEC §9; console/domain/callbacks.py) ------------------------------

    def _callback(self, view: ConferenceView) -> None:
        """A callback's number is dialed once its agent is in the conference (again
        when they ask); how the dial went is the callback's status; it ends with its
        conference, or goes back to the line in a new one if it never connected."""
        callback = self.record.callback
        assert callback is not None
        if callback.successor:
            return
        dial = self.record.dials.get(callback.dial or "")
        if dial is not None and callback.status in (
            CallbackStatus.DIALING,
            CallbackStatus.CONNECTED,
        ):
            self._number_dial(view, callback, dial)
        if CallbackStatus(callback.status).closed:
            self._hang_up_all(view, "callback-closed")
            return
        if view.status != "ended" and self._left_alone(view, callback):
            # The conference had people and has none now: it is over at Twilio (which
            # may not say so of one that never started), and the number's ring stops:
            # nobody is there to take it.
            self._call_off_all(view, "agent-left")
            number = self.record.dials.get(callback.dial or "")
            if number is not None and callback.status == CallbackStatus.DIALING:
                self._attempt_failed(callback, number)
            self.record.end_here(self.unit.now, view.sid or "", "callback-agent-left")
            view = derive(self.record)
        if view.status == "ended":
            self._callback_ended(callback)
        elif callback.status == CallbackStatus.WAITING:
            if (
                callback.pinned
                and not view.milestones.joined
                and not dials_under_way(self.record, view)
            ):
                # A voicemail's callback whose agent did not answer: over (the
                # voicemail stays theirs to call back again).
                callback.status, callback.result = CallbackStatus.DONE, "agent-missed"
                self.record.end_here(self.unit.now, view.sid or "", "callback-not-answered")
            elif self._agent_waits(view, callback) and (callback.attempts == 0 or callback.retry):
                self._dial_number(view, callback)

    def _agent_waits(self, view: ConferenceView, callback: CallbackInfo) -> bool:
        """Its agent is in the conference (alone: Twilio starts a conference with two
        people), whose sid the Participants API needs."""
        if view.status == "ended" or view.sid is None or view.milestones.left_ending:
            return False
        return any(p.agent == callback.agent for p in view.agents_present())

    def _left_alone(self, view: ConferenceView, callback: CallbackInfo) -> bool:
        """Someone was in the callback's conference, nobody is now, and no agent is on
        the way: before the number connected, its agent left."""
        if callback.status == CallbackStatus.CONNECTED or not view.milestones.joined:
            return False
        if view.participants:
            return False
        return not any(
            d.kind != DialKind.CUSTOMER and d.call_sid not in view.milestones.joined
            for d in dials_under_way(self.record, view)
        )

    def _dial_number(self, view: ConferenceView, callback: CallbackInfo) -> None:
        assert view.sid is not None and callback.agent is not None
        dial = Dial(
            id=new_dial_id(), kind=DialKind.CUSTOMER, agent=callback.agent, created_at=self.unit.now
        )
        self.record.dials[dial.id] = dial
        callback.dial, callback.attempts = dial.id, callback.attempts + 1
        callback.status, callback.result, callback.retry = CallbackStatus.DIALING, None, False
        effect = DialNumber(self.record.name, view.sid, dial.id, callback.number)
        self.unit.effects.append(effect)

    def _number_dial(self, view: ConferenceView, callback: CallbackInfo, dial: Dial) -> None:
        """The number's call: a machine is hung up; a person who joined is the
        customer (whose leaving now ends the call, as an inbound caller's does); an
        attempt that failed is counted, and the last one fails the callback."""
        joined = bool(dial.call_sid) and dial.call_sid in view.milestones.joined
        if dial.machine and not dial.cancel_reason and not dial.ended:
            call_off(self.unit, self.record.name, dial, "machine")
        if dial.machine or not joined:
            # Over once Twilio says how it ended (a leave may come first) or we ended it.
            over = dial.machine or dial.ended or dial.cancel_reason
            if callback.status == CallbackStatus.DIALING and over:
                self._attempt_failed(callback, dial)
            return
        if callback.status == CallbackStatus.DIALING:
            callback.status = CallbackStatus.CONNECTED
        present = [p.agent for p in view.agents_present() if p.agent]
        if callback.agent not in present and len(present) == 1:
            callback.agent = present[0]  # handed over (a transfer): theirs to see now
        customer = view.participants.get(dial.call_sid or "")
        if customer is not None and dial.call_sid not in self.record.end_on_exit_requested:
            self.record.end_on_exit_requested[dial.call_sid or ""] = True
            params: dict[str, object] = {"end_conference_on_exit": True}
            if self.unit.settings.record_calls:  # a dialed leg hears the notice as it joins
                params |= {"announce_url": recording_notice_url(self.unit.settings)}
                params |= {"announce_method": "POST"}
            self._update(view, customer.call_sid, params)

    def _attempt_failed(self, callback: CallbackInfo, dial: Dial) -> None:
        if dial.machine:
            callback.result = "machine"
        elif dial.status in CALL_UNANSWERED:
            callback.result = dial.status
        elif dial.cancel_reason:
            callback.result = "canceled"
        else:
            callback.result = "failed"  # api-error, or answered and gone before joining
        if callback.attempts >= self.unit.settings.callback_attempts:
            callback.status = CallbackStatus.FAILED
        else:
            callback.status = CallbackStatus.WAITING

    def _callback_ended(self, callback: CallbackInfo) -> None:
        """Its conference is over: the call happened, or the callback goes back to the
        line in a new conference (a voicemail's ends: its agent is the one to call)."""
        if callback.status == CallbackStatus.CONNECTED:
            callback.status = CallbackStatus.DONE
            return
        if callback.pinned:
            callback.status, callback.result = CallbackStatus.DONE, callback.result or "agent-left"
            return
        successor = CallbackInfo.from_json(callback.to_json())
        successor.session += 1
        successor.status, successor.agent, successor.dial = CallbackStatus.WAITING, None, None
        successor.retry = True  # dialed as soon as its next agent is in
        callback.successor = callbacks.conference_name(successor)
        record = callbacks.open_session(self.unit, successor)
        callbacks.announce(self.unit, record)  # created while settling: not settled itself

    def _hang_up_all(self, view: ConferenceView, reason: str) -> None:
        """A closed callback's calls end: its agent's, and the number's if it rings;
        its conference with the last of them (Twilio may not report the end of one
        that never started)."""
        self._call_off_all(view, reason)
        if view.status != "ended" and not view.participants:
            self.record.end_here(self.unit.now, view.sid or "", "callback-closed")

    def _call_off_all(self, view: ConferenceView, reason: str) -> None:
        for dial in self.record.dials.values():
            if dial_active(view, dial) and not dial.cancel_reason:
                call_off(self.unit, self.record.name, dial, reason)

    def _announce_callback(self) -> None:
        callback = self.record.callback
        if callback is None or callback.successor:
            return
        before = self.before.record.callback if self.before.record else None
        if before is None or before.public(self.record.name) != callback.public(self.record.name):
            callbacks.announce(self.unit, self.record)

    def _manage_participants(self, view: ConferenceView) -> None:
        if view.status != "in-progress" or view.customer_gone:
            return
        customer = next((p for p in view.participants.values() if p.role == "customer"), None)
        if customer is not None:
            self._hold_music(view, customer)
        self._end_on_exit_flags(view)

    def _hold_music(self, view: ConferenceView, customer: Participant) -> None:
        """A customer left alone in a started conference hears the wait music."""
        record = self.record
        alone = not view.with_customer()
        if alone and not record.customer_auto_held and not view.milestones.left_ending:
            record.customer_auto_held = True
            params = {
                "hold": True,
                "hold_url": hold_url(self.unit.settings),
                "hold_method": "POST",
            }
            self._update(view, customer.call_sid, params)
        elif not alone and record.customer_auto_held:
            record.customer_auto_held = False
            self._update(view, customer.call_sid, {"hold": False})

    def _end_on_exit_flags(self, view: ConferenceView) -> None:
        """The one agent alone with the customer ends the call by hanging up; while a
        transfer is under way nobody does, so nobody drops the customer."""
        agents = view.agents_present()
        in_flight = any(
            not TransferStatus(status).terminal for status, _ in view.transfers.values()
        )
        desired = len(agents) == 1 and not in_flight
        for participant in agents:
            if participant.hold:
                continue  # Twilio ignores this flag while on hold; settled again on unhold
            current = self.record.end_on_exit_requested.get(
                participant.call_sid, participant.end_on_exit
            )
            if current != desired:
                self.record.end_on_exit_requested[participant.call_sid] = desired
                self._update(view, participant.call_sid, {"end_conference_on_exit": desired})

    def _update(self, view: ConferenceView, call_sid: str, params: dict[str, object]) -> None:
        sid = view.sid or self.record.name
        self.unit.effects.append(UpdateParticipant(self.record.name, sid, call_sid, params))

    def _announce_transfers(self, view: ConferenceView) -> None:
        for transfer in self.record.transfers.values():
            status, reason = view.transfers[transfer.id]
            before = self.before.record.transfers.get(transfer.id) if self.before.record else None
            if (status, reason) != (transfer.status, transfer.reason):
                transfer.status, transfer.reason = status, reason
                transfer.updated_at = self.unit.now
            first = self.unit.agents.get(transfer.from_agent)
            waiting = first is not None and first.transfer_waiting == transfer.id
            if waiting and (transfer.dial or TransferStatus(status).terminal):
                first.transfer_waiting, first.transfer_waiting_since = None, 0
            if before != transfer:
                audience = {transfer.from_agent} | ({transfer.to_agent} - {None})
                self._emit("transfer.updated", transfer.public(self.record.name), audience)

    def _announce_conference(self, view: ConferenceView) -> None:
        old = self.before.view
        old_started = old.started_at if old else None
        if view.started_at is not None and old_started is None:
            self._emit("conference.started", {**view.summary(), "status": "in-progress"})
        if view.status == "ended" and (old is None or old.status != "ended"):
            self._emit("conference.ended", {**view.summary(), "reason": view.end_reason})
        old_people = old.participants if old else {}
        for call_sid, person in view.participants.items():
            previous = old_people.get(call_sid)
            if previous is None:
                self._emit("participant.joined", person.public(view.name))
            elif previous.public(view.name) != person.public(view.name):
                data = person.public(view.name)
                if previous.hold != person.hold:
                    data |= self._hold_requester(call_sid, person.hold)
                self._emit("participant.updated", data)
        for call_sid, person in old_people.items():
            if call_sid not in view.participants:
                self._emit("participant.left", person.public(view.name))
        if self.audience:  # agents hear a supervisor only in whisper or barge
            for kind, data in heard_changes(old_people, view.participants, view.name):
                self._emit(kind, data)

    def _hold_requester(self, call_sid: str, hold: bool) -> dict[str, object]:
        """``{"by": username}`` when someone asked for this hold change through the
        API within the last minute; the request is used up. Else Twilio or the app
        did it (hold music for a customer left alone): nothing is added."""
        request = self.record.hold_requests.pop(call_sid, None)
        if request is None or request["hold"] != hold:
            return {}
        if self.unit.now - request["at"] > HOLD_REQUEST_MS:
            return {}
        return {"by": request["by"]}

    def _emit(self, kind: str, data: dict[str, object], extra: set[str] | None = None) -> None:
        audience = self.audience | (extra or set())
        if data.get("role") == "supervisor" and "view" not in data:
            audience = set()  # a supervisor's leg: agents get heard_changes' copies only
        agents_only = data.get("view") == "agents"  # derive.AGENTS_VIEW: a copy for agents
        self.unit.events.append(
            Event(kind, data, self.unit.now, frozenset(audience), self.record.name, agents_only)
        )
