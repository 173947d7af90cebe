"""TwiML execution: fetch the app's TwiML for a call and carry it out.

Supported verbs: ``<Say>``, ``<Play>``, ``<Pause>``, ``<Redirect>``, ``<Hangup>``,
``<Reject>``, ``<Dial><Conference>`` (with the Dial ``action``/``method``/
``timeLimit``), ``<Gather>`` (keys from the caller's ``CallerPlan`` or pressed live)
and ``<Record>`` (a message of the planned length, recorded by ``recordings``).
Anything else is skipped, as an unknown verb would be logged and skipped by a
lenient player. Media is never downloaded: ``<Play>`` and ``<Say>``
only take simulated time, multiplied by ``time_scale`` so tests run fast.
A wait or hold URL is run by ``play``: only Say/Play/Pause/Redirect, and silence
once the verbs run out (Twilio does not loop it by itself).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from urllib.parse import urljoin
from xml.etree import ElementTree

from simulator.callbacks import Answer, Deliverer
from simulator.conference import ConferenceHub, DuplicateLabel
from simulator.model import Call, CallbackTarget, Clock, JoinSpec, RecordingSpec
from simulator.recordings import PUBLIC_API, Recording
from simulator.wire import parse_flag

log = logging.getLogger(__name__)

SAY_SECONDS_PER_WORD = 0.4
PLAY_SECONDS = 30.0
MIN_LOOP_SECONDS = 0.01  # a Redirect loop never spins faster than this
MUSIC_VERBS = frozenset({"Say", "Play", "Pause", "Redirect"})
PROMPT_VERBS = frozenset({"Say", "Play", "Pause"})  # what a <Gather> may nest
MAX_RECORD_LOOPS = 5  # <Record> without action: re-requests allowed before hanging up
MIN_MESSAGE_SECONDS = 1.0  # shorter messages are `absent` (too short to keep)
Document = tuple[ElementTree.Element, str | None]  # the <Response> and the URL it came from


def parse(text: str) -> ElementTree.Element | None:
    """The ``<Response>`` element, or None for anything Twilio would reject (12100)."""
    try:
        root = ElementTree.fromstring(text.strip())
    except ElementTree.ParseError:
        return None
    return root if root.tag == "Response" else None


def _bool(element: ElementTree.Element, name: str, default: bool) -> bool:
    try:
        value = parse_flag(element.get(name))
    except ValueError:
        return default
    return default if value is None else value


def _url(base: str | None, value: str | None) -> str | None:
    if value is None:
        return None
    return urljoin(base, value) if base else value


def join_spec(conference: ElementTree.Element, base: str | None) -> JoinSpec:
    """A ``<Conference>`` noun's attributes, with Twilio's defaults."""
    events = (conference.get("statusCallbackEvent") or "").split()
    callback_url = _url(base, conference.get("statusCallback"))
    coach = conference.get("coach")
    recording_url = _url(base, conference.get("recordingStatusCallback"))
    recording_events = conference.get("recordingStatusCallbackEvent") or "completed"
    recording = RecordingSpec(
        record=conference.get("record") == "record-from-start",
        callback=CallbackTarget(
            recording_url,
            (conference.get("recordingStatusCallbackMethod") or "POST").upper(),
            frozenset(recording_events.split()),
        )
        if recording_url
        else None,
    )
    return JoinSpec(
        name=(conference.text or "").strip(),
        label=conference.get("participantLabel"),
        muted=_bool(conference, "muted", False),
        beep=conference.get("beep") or "true",
        start_on_enter=_bool(conference, "startConferenceOnEnter", True),
        end_on_exit=_bool(conference, "endConferenceOnExit", False),
        coaching=coach is not None,
        call_sid_to_coach=coach,
        wait_url=_url(base, conference.get("waitUrl")),
        wait_method=(conference.get("waitMethod") or "POST").upper(),
        status_callback=CallbackTarget(
            callback_url,
            (conference.get("statusCallbackMethod") or "POST").upper(),
            frozenset(events),
        )
        if callback_url
        else None,
        recording=recording,
    )


class TwimlEngine:
    """Runs a call's TwiML; ``voice_params`` gives the request parameters for a call."""

    def __init__(
        self,
        deliverer: Deliverer,
        hub: ConferenceHub,
        voice_params: Callable[[Call], dict[str, str]],
        time_scale: float = 1.0,
    ) -> None:
        self.deliverer = deliverer
        self.hub = hub
        self.voice_params = voice_params
        self.time_scale = time_scale
        self.clock = Clock(time_scale)

    async def sleep(self, seconds: float) -> None:
        await self.clock.sleep(seconds)

    # -- the call's script ------------------------------------------------------------------

    async def run_url(self, call: Call, url: str, method: str, **extra: str) -> None:
        """Fetch and execute until the TwiML ends the call; returning means hang up."""
        document = await self.fetch(call, url, method, **extra)
        await self.run_document(call, document)

    async def run_text(self, call: Call, text: str) -> None:
        root = parse(text)
        await self.run_document(call, (root, None) if root is not None else None)

    async def run_document(self, call: Call, document: Document | None) -> None:
        while document is not None:
            document = await self._execute(call, *document)

    async def fetch(self, call: Call, url: str, method: str, **extra: str) -> Document | None:
        """The TwiML document at ``url``, or None (an application error ends the call)."""
        params = {**self.voice_params(call), **extra}
        with self.clock.busy():
            answer: Answer = await self.deliverer.fetch(url, params, method)
        root = parse(answer.text) if 200 <= answer.status < 300 else None
        if root is None:
            log.warning("call %s: no valid TwiML from %s (HTTP %s)", call.sid, url, answer.status)
            return None
        return root, url.partition("#")[0]

    async def _execute(
        self, call: Call, root: ElementTree.Element, base: str | None
    ) -> Document | None:
        """Carry out the verbs in order; returns the next document (Redirect, action)."""
        for verb in root:
            if verb.tag in ("Hangup", "Reject"):
                return None
            if verb.tag == "Redirect":
                return await self._redirect(call, verb, base)
            if verb.tag in ("Dial", "Gather", "Record"):
                step = {"Dial": self._dial, "Gather": self._gather, "Record": self._record}
                took_over, document = await step[verb.tag](call, verb, base)
                if took_over:
                    return document
                continue
            await self._media(verb)
        return None

    async def _redirect(
        self, call: Call, verb: ElementTree.Element, base: str | None
    ) -> Document | None:
        await asyncio.sleep(MIN_LOOP_SECONDS)
        target = _url(base, (verb.text or "").strip() or base)
        if target is None:
            return None
        return await self.fetch(call, target, (verb.get("method") or "POST").upper())

    async def _media(self, verb: ElementTree.Element, music: bool = False) -> None:
        """Say, Play and Pause take (scaled) time; ``loop="0"`` plays until interrupted.
        ``music`` (wait/hold URLs, which loop on purpose) is not counted by the clock,
        so ``Simulator.idle`` does not wait for it."""
        sleep = self.sleep if not music else self._uncounted
        if verb.tag == "Pause":
            await sleep(float(verb.get("length") or 1))
            return
        if verb.tag not in ("Say", "Play"):
            return  # unsupported verbs are skipped
        loops = int(verb.get("loop") or 1)
        length = PLAY_SECONDS
        if verb.tag == "Say":
            length = max(1.0, len((verb.text or "").split()) * SAY_SECONDS_PER_WORD)
        if loops <= 0:
            await asyncio.Event().wait()  # forever, until the call moves on
        for _ in range(loops):
            await sleep(length)

    async def _uncounted(self, seconds: float) -> None:
        await asyncio.sleep(seconds * self.time_scale)

    # -- <Dial><Conference> -----------------------------------------------------------------

    async def _dial(
        self, call: Call, dial: ElementTree.Element, base: str | None
    ) -> tuple[bool, Document | None]:
        """Join the conference and wait until the call is out of it. With an ``action``
        its answer takes over the call (``(True, document)``); without one the verbs
        after ``<Dial>`` go on (``(False, None)``)."""
        noun = dial.find("Conference")
        if noun is None:
            log.info("call %s: <Dial> without <Conference> is not simulated", call.sid)
            return False, None
        try:
            participant = self.hub.join(call.sid, join_spec(noun, base))
        except DuplicateLabel:
            log.info("call %s: label taken (16025); next verb", call.sid)
            return False, None
        call.conference = noun.text
        limit = float(dial.get("timeLimit") or 14400)
        try:
            await asyncio.wait_for(participant.left.wait(), limit * self.time_scale)
        except TimeoutError:
            self.hub.leave(call.sid, "participant_hung_up", "completed")
        call.conference = None
        action = _url(base, dial.get("action"))
        if action is None:
            return False, None
        method = (dial.get("method") or "POST").upper()
        return True, await self.fetch(call, action, method, DialCallStatus="answered")

    # -- <Gather> ------------------------------------------------------------------------

    async def _gather(
        self, call: Call, gather: ElementTree.Element, base: str | None
    ) -> tuple[bool, Document | None]:
        """Play the nested prompts, then take the caller's planned keys (or keys pressed
        live, which also cut the prompts short); wait ``timeout`` for them. Keys:
        ``action`` gets ``Digits`` and its answer takes over. None: the next verb, or
        ``action`` with empty ``Digits`` when ``actionOnEmptyResult`` is true."""
        plan = call.plan
        digits: str | None = None
        live = self._listen(call, "keys")
        try:
            if "dtmf" in (gather.get("input") or "dtmf").split():
                digits = await self._prompts_or_keys(call, gather, live)
            else:
                await self._prompts_or_keys(call, gather, None)
        finally:
            plan.listening, plan.waiting = None, None
        digits = _keys(digits or "", gather)
        action = _url(base, gather.get("action")) or base
        if not digits and not _bool(gather, "actionOnEmptyResult", False):
            return False, None
        if action is None:
            return True, None
        method = (gather.get("method") or "POST").upper()
        return True, await self.fetch(call, action, method, Digits=digits)

    async def _prompts_or_keys(
        self, call: Call, gather: ElementTree.Element, live: asyncio.Future | None
    ) -> str | None:
        """The keys pressed for this Gather, or None after the silence ``timeout``."""
        prompts = asyncio.ensure_future(self._prompts(gather))
        waiters: set[asyncio.Future] = {prompts} | ({live} if live else set())
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            prompts.cancel()
        if live is None:
            return None
        if live.done():
            return live.result()[0]
        planned = call.plan.keys.popleft() if call.plan.keys else ""
        if planned:
            return planned  # pressed once the prompt is heard
        try:
            keys, _ = await self.clock.wait_for(live, float(gather.get("timeout") or 5))
            return keys
        except TimeoutError:
            return None

    async def _prompts(self, gather: ElementTree.Element) -> None:
        for verb in gather:
            if verb.tag in PROMPT_VERBS:
                await self._media(verb)

    def _listen(self, call: Call, what: str) -> asyncio.Future[tuple[str, float]]:
        """A future a person can answer (``press``/``speak``) while the verb waits."""
        future: asyncio.Future[tuple[str, float]] = asyncio.get_running_loop().create_future()
        call.plan.listening, call.plan.waiting = what, future
        return future

    # -- <Record> ---------------------------------------------------------------------------

    async def _record(
        self, call: Call, record: ElementTree.Element, base: str | None
    ) -> tuple[bool, Document | None]:
        """Record the caller's message (see ``CallerPlan``). An empty message goes on with
        the next verb (Twilio requests no ``action``); otherwise ``action`` (default: the
        current document, a loop, bounded here) gets RecordingUrl, RecordingDuration,
        RecordingSid and Digits, and its answer takes over; after a hang-up the
        ``action`` is still requested and its answer ignored."""
        plan = call.plan
        max_length = float(record.get("maxLength") or 3600)
        silence = float(record.get("timeout") or 5)
        finish_keys = record.get("finishOnKey")
        finish_keys = "1234567890*#" if finish_keys is None else finish_keys
        recording = self.hub.recordings.begin_message(call.sid, _record_callback(record, base))
        started = asyncio.get_running_loop().time()
        live = self._listen(call, "message")
        spoken, end = 0.0, "silence"
        try:
            if plan.message_seconds is None:
                try:
                    end, seconds = await self.clock.wait_for(live, silence)
                except TimeoutError:
                    seconds = 0.0
            else:
                seconds, end = plan.message_seconds, plan.message_end
            if seconds > max_length:
                end = "maxLength"  # cut off: no key, no hang-up
            spoken = min(max(0.0, seconds), max_length)
            await self.sleep(spoken)
        except asyncio.CancelledError:  # hung up (or moved on by the Calls API)
            elapsed = (asyncio.get_running_loop().time() - started) / (self.time_scale or 1)
            if call.ended:
                self._hung_up(call, record, base, recording, min(elapsed, max_length))
            else:
                self.hub.recordings.end_message(
                    recording, min(elapsed, max_length), MIN_MESSAGE_SECONDS
                )
            raise
        finally:
            plan.listening, plan.waiting = None, None
        if end == "#" and "#" not in finish_keys:
            end = "silence"  # the key does not end this recording: silence does
        length = spoken
        if end == "silence" and spoken and record.get("trim") == "do-not-trim":
            length += silence
        if end == "hangup":
            self._hung_up(call, record, base, recording, length)
            return True, None
        self.hub.recordings.end_message(recording, length, MIN_MESSAGE_SECONDS)
        if length <= 0:
            return False, None  # an empty recording: no action, the next verb
        action = _url(base, record.get("action"))
        if action is None:
            call.record_loops += 1
            if base is None or call.record_loops > MAX_RECORD_LOOPS:
                log.warning(
                    "call %s: <Record> without action requested its document %d times; hanging up",
                    call.sid,
                    call.record_loops - 1,
                )
                return True, None
            action = base
        extra = _message_params(recording, "#" if end == "#" else None)
        method = (record.get("method") or "POST").upper()
        return True, await self.fetch(call, action, method, **extra)

    def _hung_up(
        self,
        call: Call,
        record: ElementTree.Element,
        base: str | None,
        recording: Recording,
        seconds: float,
    ) -> None:
        """The caller hung up during ``<Record>``: the message is kept, ``action`` is
        requested (as a queued webhook: its TwiML is ignored) with ``Digits=hangup``."""
        self.hub.recordings.end_message(recording, seconds, MIN_MESSAGE_SECONDS)
        action = _url(base, record.get("action")) or base
        if seconds <= 0 or action is None:
            return
        params = {**self.voice_params(call), "CallStatus": "completed"}
        params.update(_message_params(recording, "hangup"))
        method = (record.get("method") or "POST").upper()
        self.deliverer.send(call.sid, action, params, method)

    # -- wait and hold music ----------------------------------------------------------------

    async def play(self, call: Call, url: str, method: str) -> None:
        """Run a waitUrl/holdUrl until cancelled: Say/Play/Pause/Redirect only."""
        answer = await self.deliverer.fetch(url, self.voice_params(call), method)
        if answer.content_type.startswith("audio/"):
            await asyncio.Event().wait()
        root = parse(answer.text) if 200 <= answer.status < 300 else None
        base = url.partition("#")[0]
        while root is not None:
            following: Document | None = None
            for verb in root:
                if verb.tag not in MUSIC_VERBS:
                    continue
                if verb.tag == "Redirect":
                    following = await self._redirect(call, verb, base)
                    break
                await self._media(verb, music=True)
            if following is None:
                return  # silence: Twilio does not loop the wait URL on its own
            root, base = following


def _keys(digits: str, gather: ElementTree.Element) -> str:
    """What a Gather collects: up to ``finishOnKey`` (default ``#``), at most
    ``numDigits`` keys."""
    finish = gather.get("finishOnKey")
    finish = "#" if finish is None else finish
    for index, key in enumerate(digits):
        if finish and key in finish:
            digits = digits[:index]
            break
    try:
        limit = int(gather.get("numDigits") or 0)
    except ValueError:
        limit = 0
    return digits[:limit] if limit > 0 else digits


def _record_callback(record: ElementTree.Element, base: str | None) -> CallbackTarget | None:
    url = _url(base, record.get("recordingStatusCallback"))
    if url is None:
        return None
    events = record.get("recordingStatusCallbackEvent") or "completed"
    method = (record.get("recordingStatusCallbackMethod") or "POST").upper()
    return CallbackTarget(url, method, frozenset(events.replace(",", " ").split()))


def _message_params(recording: Recording, digits: str | None) -> dict[str, str]:
    """What a ``<Record>``'s action gets besides the call's parameters."""
    params = {
        "RecordingUrl": PUBLIC_API + recording.path,
        "RecordingDuration": str(recording.duration or 0),
        "RecordingSid": recording.sid,
    }
    if digits is not None:
        params["Digits"] = digits
    return params
