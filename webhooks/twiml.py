"""Pure TwiML builders: values in, XML text out, built with the twilio package.

Every ``<Conference>`` carries the same statusCallback and event list, whoever
joins first, because Twilio takes those settings from the first participant only;
with RECORD_CALLS on, the same recording attributes too.
"""

from __future__ import annotations

import functools
import math

from twilio.twiml.voice_response import VoiceResponse

from console.config import Settings
from console.ids import CALL_SID
from console.intake import CONFERENCE_EVENTS, CUSTOMER_LABEL, Place
from console.urls import (
    choice_url,
    conference_status_url,
    recording_status_url,
    voicemail_done_url,
    voicemail_recording_url,
    wait_url,
)

# Recording callbacks asked for: the SID as soon as it records (pausing needs to know
# it is on), then how it ended (a silent or too short one is ``absent``).
RECORDING_EVENTS = "in-progress completed absent"


def recording_attrs(settings: Settings, name: str) -> dict[str, object]:
    """``<Conference>`` attributes recording the conference from its start, with a
    signed status callback naming it (SPEC §8); none when RECORD_CALLS is off."""
    if not settings.record_calls:
        return {}
    return {
        "record": "record-from-start",
        "recording_status_callback": recording_status_url(settings, name),
        "recording_status_callback_method": "POST",
        "recording_status_callback_event": RECORDING_EVENTS,
    }


def _conference(
    response: VoiceResponse,
    settings: Settings,
    name: str,
    waits: str | None = None,
    **attrs: object,
) -> None:
    """``waits``: the CallSid of a caller who waits in line (and hears their place)."""
    attrs.update(recording_attrs(settings, name))
    dial = response.dial()
    announcing = waits is not None and settings.announce_seconds > 0
    dial.conference(
        name,
        wait_url=wait_url(settings, waits if announcing else None),
        wait_method="POST",
        status_callback=conference_status_url(settings),
        status_callback_method="POST",
        # A space-separated string: the builder renders a list as "['start', ...]".
        status_callback_event=CONFERENCE_EVENTS,
        **attrs,
    )


def customer_conference(settings: Settings, call_sid: str, notice: bool = True) -> str:
    """The caller waits in their own conference, named by their CallSid, until an
    agent starts it; their leaving ends it. When calls are recorded they hear the
    notice first (unless they heard it already: ``notice`` False).

    Every incoming call answers this: built once per deployment for a stand-in
    CallSid, which each call's replaces (a CallSid is letters and digits, written
    the same in the XML and in its URLs' queries)."""
    template = _customer_template(settings, notice) if CALL_SID.fullmatch(call_sid) else None
    if template is None:
        return _customer_conference(settings, call_sid, notice)
    return template.replace(_STAND_IN_SIDS[0], call_sid)


_STAND_IN_SIDS = ("CA" + "5ca1ab1e" * 4, "CA" + "0dd5" * 8)


@functools.lru_cache(maxsize=16)
def _customer_template(settings: Settings, notice: bool) -> str | None:
    """The answer for a stand-in CallSid; None if the settings' own text could be
    mistaken for it (two stand-ins must give answers that differ only by them)."""
    first, second = (_customer_conference(settings, sid, notice) for sid in _STAND_IN_SIDS)
    return first if first.replace(*_STAND_IN_SIDS) == second else None


def _customer_conference(settings: Settings, call_sid: str, notice: bool) -> str:
    response = VoiceResponse()
    if settings.record_calls and notice:
        response.say(settings.recording_notice)
    _join_line(response, settings, call_sid)
    return str(response)


def _join_line(response: VoiceResponse, settings: Settings, call_sid: str) -> None:
    _conference(
        response,
        settings,
        call_sid,
        waits=call_sid,
        start_conference_on_enter=False,
        end_conference_on_exit=True,
        beep=False,
        participant_label=CUSTOMER_LABEL,
    )


# The callback-or-message choice (SPEC §9): one digit, a few seconds to press it.
CHOICE_TIMEOUT_SECONDS = 6
OFFER_AT_ARRIVAL = (
    "All our agents are busy. To be called back without losing your place in line, "
    "press 1. To leave a message, press 2. Or stay on the line to wait."
)
OFFER_AFTER_LONG_WAIT = (
    "We are sorry to keep you waiting so long. To be called back without losing your "
    "place in line, press 1. Or stay on the line to leave a message."
)
LONG_WAIT_MESSAGE = "We are sorry to keep you waiting so long."
MESSAGE_INSTEAD = "Nobody is free to take your call yet."


def _choice(response: VoiceResponse, settings: Settings, call_sid: str, long_wait: bool) -> None:
    gather = response.gather(
        action=choice_url(settings, call_sid, long_wait),
        method="POST",
        num_digits=1,
        timeout=CHOICE_TIMEOUT_SECONDS,
    )
    gather.say(OFFER_AFTER_LONG_WAIT if long_wait else OFFER_AT_ARRIVAL)


def offer_at_arrival(settings: Settings, call_sid: str) -> str:
    """The callback offer before the line: a key press goes to the choice; no key
    falls through to the caller's conference (the ``<Dial>`` after the ``<Gather>``)."""
    response = VoiceResponse()
    if settings.record_calls:
        response.say(settings.recording_notice)
    _choice(response, settings, call_sid, long_wait=False)
    _join_line(response, settings, call_sid)
    return str(response)


def offer_after_long_wait(settings: Settings, call_sid: str) -> str:
    """The choice for a caller moved out after the longest wait: no key leaves a
    message (the ``<Redirect>`` reaches the choice with no Digits)."""
    response = VoiceResponse()
    _choice(response, settings, call_sid, long_wait=True)
    response.redirect(choice_url(settings, call_sid, long_wait=True), method="POST")
    return str(response)


def callback_requested(number: str) -> str:
    """The caller chose a callback: told the number they will be called at, goodbye."""
    spoken = " ".join(number.lstrip("+"))
    return hang_up(
        f"Thank you. We will call you back at {spoken} as soon as an agent is free, "
        "keeping your place in line. Goodbye."
    )


def agent_conference(settings: Settings, name: str, label: str, end_on_exit: bool) -> str:
    """An answering agent joins and starts the customer's conference."""
    response = VoiceResponse()
    _conference(
        response,
        settings,
        name,
        start_conference_on_enter=True,
        end_conference_on_exit=end_on_exit,
        beep=False,
        participant_label=label,
    )
    return str(response)


def wait_music(settings: Settings, greeting: bool = True) -> str:
    """What a waiting caller hears: the greeting, then hold music on a loop.
    Only <Say>, <Play>, <Pause> and <Redirect> are allowed in a waitUrl."""
    response = VoiceResponse()
    if greeting:
        response.say(settings.welcome_message)
    response.play(settings.hold_music_url, loop=0)
    return str(response)


# A caller's message: at most this long, ended by "#" (or silence, or hanging up).
VOICEMAIL_MAX_SECONDS = 120
VOICEMAIL_SILENCE_SECONDS = 5
NO_AGENTS_MESSAGE = "Sorry, nobody is available to take your call right now."
LEAVE_MESSAGE = "Please leave a message after the tone, and press the pound key when you are done."
THANKS_MESSAGE = "Thank you. We will get back to you. Goodbye."


def voicemail(settings: Settings, call_sid: str, message: str) -> str:
    """``message``, then a recording of the caller's message (SPEC §9): a beep, ``#`` to
    finish, a signed status callback, and an ``action`` that thanks and hangs up."""
    response = VoiceResponse()
    response.say(message)
    response.say(LEAVE_MESSAGE)
    response.record(
        action=voicemail_done_url(settings),
        method="POST",
        max_length=VOICEMAIL_MAX_SECONDS,
        timeout=VOICEMAIL_SILENCE_SECONDS,
        finish_on_key="#",
        play_beep=True,
        recording_status_callback=voicemail_recording_url(settings, call_sid),
        recording_status_callback_method="POST",
        recording_status_callback_event="completed absent",
    )
    return str(response)


def voicemail_done() -> str:
    """After the message: thanks, goodbye."""
    return hang_up(THANKS_MESSAGE)


def waiting_in_line(
    settings: Settings, call_sid: str, greeting: bool, place: Place | None, announced: int
) -> str:
    """One round of a waiting caller's loop: the greeting on the first, their place in
    line when it is due, one play of the music, and back to the wait URL (a waitUrl
    allows only Say, Play, Pause and Redirect; the app cannot know the track's length,
    so a long track spaces the announcements further)."""
    response = VoiceResponse()
    if greeting:
        response.say(settings.welcome_message)
    if place is not None:
        response.say(place_words(place))
    response.play(settings.hold_music_url)
    response.redirect(wait_url(settings, call_sid, announced), method="POST")
    return str(response)


def place_words(place: Place) -> str:
    """The announcement, e.g. 'You are number 3 in line. Your expected wait is about 4
    minutes.', without a wait when none is known or expected."""
    words = (
        "You are next in line."
        if place.position == 1
        else f"You are number {place.position} in line."
    )
    if place.expected_ms:
        minutes = max(1, math.ceil(place.expected_ms / 60_000))
        words += f" Your expected wait is about {minutes} minute{'s' if minutes > 1 else ''}."
    return words


def recording_notice(settings: Settings) -> str:
    """The notice alone: what a leg the app dials into a recorded conference hears as
    it joins (its ``announce_url``)."""
    response = VoiceResponse()
    response.say(settings.recording_notice)
    return str(response)


def hang_up(message: str) -> str:
    """Tell the answering party why there is no call for them, then end it."""
    response = VoiceResponse()
    if message:
        response.say(message)
    response.hangup()
    return str(response)
