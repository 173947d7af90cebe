"""Call legs from start to end, and their call-progress callbacks.

* A customer's inbound call fetches the Voice URL (``CallStatus=ringing``), is
  answered as its TwiML runs, and completes when the TwiML ends or it hangs up.
* A REST-created call (``outbound-api``) is ``queued``, then ``initiated`` and
  ``ringing`` at the softphone (``client:``) or the ``Person`` at a phone number,
  then ``in-progress`` (``answered``) and runs its ``Url``/``Twiml``, or ends
  ``busy``/``no-answer``/``failed``/``canceled``. A call created by the
  Participants API joins its conference directly when answered. With
  ``MachineDetection`` the answered call carries ``AnsweredBy``.
* A call moved by the Calls API (``Url``/``Twiml``) leaves its conference
  (``participant_updated_via_api``, with the conference's end rules) and runs the
  new TwiML.
* Call-progress callbacks go only for the events asked for (``completed`` alone if
  none were), with a per-call ``SequenceNumber`` from 0; a call canceled while
  still ``queued`` sends none at all (docs/twilio.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Coroutine
from typing import Any

from simulator.callbacks import Deliverer
from simulator.conference import ConferenceHub
from simulator.model import Call, CallerPlan, plan_of, utcnow
from simulator.params import progress_params, voice_params
from simulator.parties import ANSWER, People, Person, Phones, is_number
from simulator.twiml import TwimlEngine
from simulator.wire import rfc2822

SIP_CODES = {"completed": "200", "busy": "486", "no-answer": "487", "canceled": "487"}
PROGRESS_STATUS = {"initiated": "initiated", "ringing": "ringing", "answered": "in-progress"}
Script = Callable[[Call], Coroutine[Any, Any, None]]


class CallEnded(Exception):
    """Twilio error 21220: the call is not in progress."""


class Switchboard:
    """Owns every call, the conference hub and the TwiML engine."""

    def __init__(
        self,
        account_sid: str,
        deliverer: Deliverer,
        phones: Phones,
        time_scale: float = 1.0,
    ) -> None:
        self.account_sid = account_sid
        self.deliverer = deliverer
        self.phones = phones
        self.time_scale = time_scale
        self.calls: dict[str, Call] = {}
        self.hub = ConferenceHub(account_sid, deliverer, self._play)
        self.engine = TwimlEngine(deliverer, self.hub, self.voice_params, time_scale)
        self.people = People(self.engine.clock)
        self.changed: Callable[[], None] = lambda: None

    def voice_params(self, call: Call) -> dict[str, str]:
        """Twilio's standard voice request parameters for this call."""
        to = call.to.split("?", 1)[0]
        params = voice_params(
            self.account_sid, call.sid, call.status, call.direction, call.from_, to
        )
        if call.answered_by is not None:
            params["AnsweredBy"] = call.answered_by
        return params

    def _start(self, call: Call, script: Script) -> Call:
        self.calls[call.sid] = call
        self._launch(call, script)
        self.changed()
        return call

    def _launch(self, call: Call, script: Script) -> None:
        """Run what the call does next (ring, TwiML) as its task. The one place a call
        progresses on its own: ``simulator.testing`` overrides it to hold every call."""
        call.task = asyncio.create_task(script(call))

    # -- inbound: a customer calls the number --------------------------------------------

    def call_in(self, voice_url: str, from_: str, to: str, plan: CallerPlan | None = None) -> Call:
        call = Call(to=to, from_=from_, direction="inbound", account_sid=self.account_sid)
        call.plan = plan or CallerPlan()
        call.status = "ringing"
        call.url = voice_url
        return self._start(call, self._inbound)

    async def _inbound(self, call: Call) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            document = await self.engine.fetch(call, call.url or "", call.method)
            if document is not None:
                self._answered(call)
                await self.engine.run_document(call, document)
            self.finish(call, "completed" if document is not None else "failed")

    # -- outbound: the REST API dials a softphone ------------------------------------------

    def dial(self, call: Call) -> Call:
        """Start ringing a REST-created call (``call.status`` is ``queued``)."""
        return self._start(call, self._outbound)

    async def _outbound(self, call: Call) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)  # the REST answer (201, queued) goes out first
            self.progress(call, "initiated")
            person = self.people.get(call.to) if is_number(call.to) else None
            if person is not None and person.fails:
                self._not_answered(call, "failed")
                return
            call.status = "ringing"
            self.progress(call, "ringing")
            self.changed()
            if person is not None:
                outcome = await self.people.ring(call, person)
            else:
                outcome = await self.phones.ring(call)
            if outcome != ANSWER:
                self._not_answered(call, outcome)
                return
            if person is not None:
                call.answered_by = person.answered_by(call.machine_detection)
                call.plan = plan_of(person.keys, person.message_seconds)
            elif call.machine_detection is not None:
                call.answered_by = "human"
            self._answered(call)
            self.phones.connected(call)
            self.progress(call, "answered")
            await self._connected_script(call, person)
            self.finish(call, "completed")

    async def _connected_script(self, call: Call, person: Person | None = None) -> None:
        self._schedule_auto_hangup(call, person)
        if call.join is not None:
            participant = self.hub.join(call.sid, call.join)
            call.conference = call.join.name
            await participant.left.wait()
        elif call.twiml is not None:
            await self.engine.run_text(call, call.twiml)
        elif call.url is not None:
            await self.engine.run_url(call, call.url, call.method)

    def _not_answered(self, call: Call, outcome: str) -> None:
        if call.join is not None:
            self.hub.add_failed(call.sid, call.join, outcome)
        self.finish(call, outcome)

    def _answered(self, call: Call) -> None:
        call.status = "in-progress"
        call.start_time = utcnow()
        call.answered_at = asyncio.get_running_loop().time()
        self.changed()

    def _schedule_auto_hangup(self, call: Call, person: Person | None = None) -> None:
        phone = self.phones.owner(call.sid)
        talk = phone.auto.talk if phone and phone.auto else None
        if person is not None:
            talk = person.talk
        if talk is not None:
            loop = asyncio.get_running_loop()
            loop.call_later(talk * self.time_scale, self.hangup, call.sid)

    # -- ending and redirecting ------------------------------------------------------------

    def hangup(self, call_sid: str, status: str | None = None) -> Call | None:
        """End a call as a party or the REST API would: ``canceled`` only stops a call
        that has not been answered; ``completed`` (or None) ends any call."""
        call = self.calls.get(call_sid)
        if call is None or call.ended:
            return call
        unanswered = call.status in ("queued", "ringing")
        if status == "canceled" and not unanswered:
            return call  # Twilio ignores `canceled` for a call in progress
        final = "canceled" if unanswered and call.direction != "inbound" else "completed"
        self._stop(call)
        self.finish(call, final)
        return call

    def redirect(self, call: Call, url: str | None, method: str, twiml: str | None) -> None:
        """New TwiML for a live call: it leaves any conference (participant_updated_via_api)."""
        if call.ended:
            raise CallEnded(call.sid)
        call.url, call.method, call.twiml, call.join = url, method, twiml, None
        if call.status != "in-progress":
            return  # a ringing call runs the new TwiML once answered
        self.hub.leave(call.sid, "participant_updated_via_api", "in-progress")
        call.conference, call.record_loops = None, 0
        self._stop(call)
        self._launch(call, self._redirected)

    async def _redirected(self, call: Call) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            if call.twiml is not None:
                await self.engine.run_text(call, call.twiml)
            elif call.url is not None:
                await self.engine.run_url(call, call.url, call.method)
            self.finish(call, "completed")

    def _stop(self, call: Call) -> None:
        task = call.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def finish(self, call: Call, status: str) -> None:
        """The call is over: out of its conference, off the phone, ``completed`` sent."""
        if call.ended:
            return
        previous = call.status
        call.status = status
        call.end_time = call.updated = utcnow()
        self.hub.leave(call.sid, "participant_hung_up", status)
        self.phones.ended(call)
        if not (status == "canceled" and previous == "queued"):
            self.progress(call, "completed")
        self.changed()

    # -- callbacks ---------------------------------------------------------------------------

    def progress(self, call: Call, event: str) -> None:
        """One call-progress callback, if the call asked for this event."""
        target = call.progress
        if target is None or not target.url:
            return
        if event not in (target.events or {"completed"}):
            return
        status = PROGRESS_STATUS.get(event, call.status)
        params = progress_params(self.voice_params(call), status, call.seq, rfc2822())
        if event == "completed":
            seconds = self.duration(call)
            params.update(CallDuration=str(seconds), Duration=str(math.ceil(seconds / 60)))
            params["SipResponseCode"] = SIP_CODES.get(call.status, "500")
        call.seq += 1
        self.deliverer.send(call.sid, target.url, params, target.method)

    def duration(self, call: Call) -> int:
        if call.answered_at is None:
            return 0
        elapsed = asyncio.get_running_loop().time() - call.answered_at
        return max(0, round(elapsed / (self.time_scale or 1)))

    async def _play(self, call_sid: str, url: str, method: str) -> None:
        """Wait or hold music: the TwiML at ``url`` played to the call."""
        call = self.calls.get(call_sid)
        if call is not None:
            await self.engine.play(call, url, method)
