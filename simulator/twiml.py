"""TwiML execution: fetch the app's TwiML for a call and carry it out.

Supported verbs: ``<Say>``, ``<Play>``, ``<Pause>``, ``<Redirect>``, ``<Hangup>``,
``<Reject>`` and ``<Dial><Conference>`` (with the Dial ``action``/``method``/
``timeLimit``). Anything else is skipped, as an unknown verb would be logged and
skipped by a lenient player. Media is never downloaded: ``<Play>`` and ``<Say>``
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
from simulator.model import Call, CallbackTarget, JoinSpec, RecordingSpec
from simulator.wire import parse_flag

log = logging.getLogger(__name__)

SAY_SECONDS_PER_WORD = 0.4
PLAY_SECONDS = 30.0
MIN_LOOP_SECONDS = 0.01  # a Redirect loop never spins faster than this
MUSIC_VERBS = frozenset({"Say", "Play", "Pause", "Redirect"})
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

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds * self.time_scale)

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
            if verb.tag == "Dial":
                took_over, document = await self._dial(call, verb, base)
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

    async def _media(self, verb: ElementTree.Element) -> None:
        """Say, Play and Pause take (scaled) time; ``loop="0"`` plays until interrupted."""
        if verb.tag == "Pause":
            await self.sleep(float(verb.get("length") or 1))
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
            await self.sleep(length)

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
                await self._media(verb)
            if following is None:
                return  # silence: Twilio does not loop the wait URL on its own
            root, base = following
