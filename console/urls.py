"""The callback URLs Warmline hands to Twilio.

Query values (conference names, dial ids) have the shape of ``console.ids.NAME``:
Twilio has been inconsistent in escaping anything else, and the signature covers the
query.
"""

from __future__ import annotations

from urllib.parse import urlencode

from console.config import Settings

VOICE_PATH = "/conference/connect/client"
WAIT_PATH = "/conference/wait"
AGENT_CONNECT_PATH = "/conference/connect/agent"
CONFERENCE_STATUS_PATH = "/conference/status"
CALL_STATUS_PATH = "/call/status"
RECORDING_STATUS_PATH = "/conference/recording"
RECORDING_NOTICE_PATH = "/conference/recording/notice"
VOICEMAIL_DONE_PATH = "/voicemail/done"
VOICEMAIL_RECORDING_PATH = "/voicemail/recording"
CHOICE_PATH = "/voice/choice"  # the callback-or-message <Gather>'s action (SPEC §9)
LONG_WAIT_PATH = "/voice/long-wait"  # where the longest wait moves a caller to

# Connection overrides: Twilio retries a status callback we could not record (503).
# Fragments are not part of the signed URL.
RETRY_FRAGMENT = "#rc=3&rp=5xx,ct,rt"


def agent_connect_url(settings: Settings, conference: str, dial: str) -> str:
    return settings.url(
        f"{AGENT_CONNECT_PATH}?{urlencode({'conference': conference, 'dial': dial})}"
    )


def call_status_url(settings: Settings, conference: str, dial: str) -> str:
    query = urlencode({"conference": conference, "dial": dial})
    return settings.url(f"{CALL_STATUS_PATH}?{query}") + RETRY_FRAGMENT


def conference_status_url(settings: Settings) -> str:
    return settings.url(CONFERENCE_STATUS_PATH) + RETRY_FRAGMENT


def wait_url(settings: Settings, call_sid: str | None = None, announced: int | None = None) -> str:
    """What a caller waiting in their conference hears. With ``call_sid`` (a customer,
    when ANNOUNCE_SECONDS is on) it tells them their place in line; ``announced`` is
    when it last did (ms), carried from one request of the loop to the next."""
    if call_sid is None:
        return settings.url(WAIT_PATH)
    query = {"call": call_sid} if announced is None else {"call": call_sid, "announced": announced}
    return settings.url(f"{WAIT_PATH}?{urlencode(query)}")


def hold_url(settings: Settings) -> str:
    """Music for a caller held mid-call: no "all agents are busy" greeting."""
    return settings.url(f"{WAIT_PATH}?greeting=no")


def recording_status_url(settings: Settings, conference: str) -> str:
    """Where Twilio reports a conference's recording: its callbacks name no
    FriendlyName, so the conference travels in the (signed) query."""
    query = urlencode({"conference": conference})
    return settings.url(f"{RECORDING_STATUS_PATH}?{query}") + RETRY_FRAGMENT


def recording_notice_url(settings: Settings) -> str:
    """The RECORDING_NOTICE as TwiML: the ``announce_url`` for a leg the app dials
    into a recorded conference (callbacks, external parties)."""
    return settings.url(RECORDING_NOTICE_PATH)


def voicemail_done_url(settings: Settings) -> str:
    """The ``<Record>``'s action: thanks and goodbye (without one, Twilio would fetch the
    Voice URL again, a loop)."""
    return settings.url(VOICEMAIL_DONE_PATH)


def voicemail_recording_url(settings: Settings, call_sid: str) -> str:
    """Where Twilio reports a caller's message; the call travels in the signed query,
    as a conference's does for its recording."""
    query = urlencode({"call": call_sid})
    return settings.url(f"{VOICEMAIL_RECORDING_PATH}?{query}") + RETRY_FRAGMENT


def choice_url(settings: Settings, call_sid: str, long_wait: bool) -> str:
    """The callback-or-message choice's action: the caller's CallSid, and whether they
    come from the longest wait (where no key leaves a message)."""
    query = {"call": call_sid, "long": "1" if long_wait else "0"}
    return settings.url(f"{CHOICE_PATH}?{urlencode(query)}")


def long_wait_url(settings: Settings, call_sid: str) -> str:
    """Where the Calls API moves a caller who waited MAX_WAIT_SECONDS."""
    return settings.url(f"{LONG_WAIT_PATH}?{urlencode({'call': call_sid})}")
