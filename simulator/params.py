"""The form parameters of the webhooks Twilio Voice sends, built in one place.

The simulator's calls and conferences use these to send their callbacks, and the
step-by-step driver in ``simulator.testing`` uses them to build the same requests
by hand, so a change to Twilio's wire format is made once. Values are strings as
on the wire: booleans ``true``/``false``, timestamps RFC 2822 (see ``wire``). The
parameters themselves are described in docs/twilio.md.
"""

from __future__ import annotations

from simulator.wire import API_VERSION, flag


def voice_params(
    account_sid: str, call_sid: str, status: str, direction: str, from_: str, to: str
) -> dict[str, str]:
    """Twilio's standard voice request parameters (the Voice URL, a call's ``Url``,
    and the base of every call-progress callback). ``to`` without custom parameters."""
    return {
        "AccountSid": account_sid,
        "ApiVersion": API_VERSION,
        "CallSid": call_sid,
        "CallStatus": status,
        "Called": to,
        "Caller": from_,
        "Direction": direction,
        "From": from_,
        "To": to,
    }


def progress_params(voice: dict[str, str], status: str, seq: int, timestamp: str) -> dict[str, str]:
    """A call-progress callback: the voice parameters with ``CallStatus``, the call's
    own ``SequenceNumber`` (from 0) and ``Timestamp``."""
    return {
        **voice,
        "CallStatus": status,
        "CallbackSource": "call-progress-events",
        "SequenceNumber": str(seq),
        "Timestamp": timestamp,
    }


def conference_params(
    account_sid: str, conference_sid: str, name: str, event: str, seq: int, timestamp: str
) -> dict[str, str]:
    """A conference status callback without participant fields: ``SequenceNumber``
    counts per conference from 1."""
    return {
        "AccountSid": account_sid,
        "ConferenceSid": conference_sid,
        "FriendlyName": name,
        "StatusCallbackEvent": event,
        "SequenceNumber": str(seq),
        "Timestamp": timestamp,
    }


def participant_params(
    call_sid: str,
    *,
    muted: bool = False,
    hold: bool = False,
    coaching: bool = False,
    end_on_exit: bool = False,
    start_on_enter: bool = True,
    label: str | None = None,
    call_sid_to_coach: str | None = None,
) -> dict[str, str]:
    """The participant fields of a participant-* conference callback."""
    params = {
        "CallSid": call_sid,
        "Muted": flag(muted),
        "Hold": flag(hold),
        "Coaching": flag(coaching),
        "EndConferenceOnExit": flag(end_on_exit),
        "StartConferenceOnEnter": flag(start_on_enter),
    }
    if label:
        params["ParticipantLabel"] = label
    if coaching and call_sid_to_coach:
        params["CallSidToCoach"] = call_sid_to_coach
    return params
