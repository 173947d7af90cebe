"""Twilio's form parameters, parsed into typed values or rejected with a clear 400.

Twilio may add parameters at any time; only the ones Warmline relies on are read.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from console.ids import CALL_SID, CONFERENCE_SID, NAME, RECORDING_SID
from console.intake import RECORDING_STATUSES, Callback, RecordingReport, now_ms

CALL_STATUSES = frozenset(
    {
        "queued",
        "initiated",
        "ringing",
        "in-progress",
        "completed",
        "busy",
        "failed",
        "no-answer",
        "canceled",
    }
)
CONFERENCE_EVENTS = frozenset(
    {
        "conference-start",
        "conference-end",
        "participant-join",
        "participant-leave",
        "participant-mute",
        "participant-unmute",
        "participant-hold",
        "participant-unhold",
        "participant-modify",
    }
)
PARTICIPANT_EVENTS = CONFERENCE_EVENTS - {"conference-start", "conference-end"}


class BadParams(ValueError):
    """A required parameter is missing or malformed; the message names it."""


def required(form: Mapping[str, str], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = form.get(name)
    if value is None or value == "":
        raise BadParams(f"missing parameter {name}")
    if pattern is not None and not pattern.fullmatch(value):
        raise BadParams(f"malformed parameter {name}")
    return value


def flag(form: Mapping[str, str], name: str) -> bool | None:
    value = form.get(name)
    if value is None or value == "":
        return None
    if value.lower() not in ("true", "false"):
        raise BadParams(f"parameter {name} must be true or false")
    return value.lower() == "true"


CACHED_TIMESTAMP_LENGTH = 64  # Twilio's are 31 characters; longer ones are not kept


def timestamp_ms(form: Mapping[str, str]) -> int:
    """Twilio's RFC 2822 Timestamp, so times do not depend on delivery order."""
    raw = form.get("Timestamp")
    if not raw:
        return now_ms()
    at = _cached_timestamp(raw) if len(raw) <= CACHED_TIMESTAMP_LENGTH else _timestamp(raw)
    if at is None:
        raise BadParams("malformed parameter Timestamp")
    return at


def _timestamp(raw: str) -> int | None:
    """``raw`` in ms, None when malformed."""
    try:
        return int(parsedate_to_datetime(raw).timestamp() * 1000)
    except (TypeError, ValueError, IndexError):
        return None


# A second's callbacks carry the same text, and parsing it was most of a callback's
# parameter work.
_cached_timestamp = functools.lru_cache(maxsize=256)(_timestamp)


def sequence(form: Mapping[str, str], needed: bool) -> int | None:
    raw = form.get("SequenceNumber")
    if raw is None or raw == "":
        if needed:
            raise BadParams("missing parameter SequenceNumber")
        return None
    # ASCII only: str.isdigit() also accepts "²" (which int() rejects) and other scripts.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise BadParams("malformed parameter SequenceNumber")
    return int(raw)


@dataclass(frozen=True)
class IncomingCall:
    call_sid: str
    from_number: str | None


def incoming_call(form: Mapping[str, str]) -> IncomingCall:
    return IncomingCall(required(form, "CallSid", CALL_SID), form.get("From") or None)


@dataclass(frozen=True)
class ConferenceEvent:
    name: str
    callback: Callback | None  # None: an event Warmline does not track


def conference_event(form: Mapping[str, str]) -> ConferenceEvent:
    sid = required(form, "ConferenceSid", CONFERENCE_SID)
    name = required(form, "FriendlyName", NAME)
    event = required(form, "StatusCallbackEvent")
    seq = sequence(form, needed=True)
    assert seq is not None
    if event not in CONFERENCE_EVENTS:
        return ConferenceEvent(name, None)
    call_sid = None
    if event in PARTICIPANT_EVENTS:
        call_sid = required(form, "CallSid", CALL_SID)
    return ConferenceEvent(
        name,
        Callback(
            seq=seq,
            event=event,
            at=timestamp_ms(form),
            conference_sid=sid,
            call_sid=call_sid,
            label=form.get("ParticipantLabel") or None,
            muted=flag(form, "Muted"),
            hold=flag(form, "Hold"),
            coaching=flag(form, "Coaching"),
            end_on_exit=flag(form, "EndConferenceOnExit"),
            participant_status=form.get("ParticipantCallStatus") or None,
            reason=form.get("ReasonConferenceEnded") or None,
        ),
    )


@dataclass(frozen=True)
class CallProgress:
    call_sid: str
    status: str
    seq: int | None
    answered_by: str | None = None  # machine detection's verdict on a number's call


# AnsweredBy (machine detection): human, unknown, fax, machine_start, machine_end_*;
# a value Twilio adds later is kept as it comes (only machine_* and fax are machines).
ANSWERED_BY = re.compile(r"[a-z_]{1,32}")


def call_progress(form: Mapping[str, str]) -> CallProgress:
    status = required(form, "CallStatus")
    if status not in CALL_STATUSES:
        raise BadParams("unknown CallStatus")
    answered_by = form.get("AnsweredBy") or None
    if answered_by is not None and not ANSWERED_BY.fullmatch(answered_by):
        raise BadParams("malformed AnsweredBy")
    call_sid = required(form, "CallSid", CALL_SID)
    return CallProgress(call_sid, status, sequence(form, needed=False), answered_by)


@dataclass(frozen=True)
class Choice:
    """A caller's answer at the callback-or-message ``<Gather>`` (or none)."""

    call_sid: str
    from_number: str | None
    digits: str
    long_wait: bool


def choice(form: Mapping[str, str], query: Mapping[str, str]) -> Choice:
    """The ``<Gather>``'s action: our query names the caller and where they come from;
    ``Digits`` is absent when they pressed nothing (the ``<Redirect>`` after it)."""
    call_sid = required(form, "CallSid", CALL_SID)
    if required(query, "call", CALL_SID) != call_sid:
        raise BadParams("the call in the URL is not the caller's")
    digits = form.get("Digits") or ""
    if len(digits) > 8 or not all(d in "0123456789*#" for d in digits):
        raise BadParams("malformed Digits")
    return Choice(call_sid, form.get("From") or None, digits, query.get("long") == "1")


def moved_caller(form: Mapping[str, str], query: Mapping[str, str]) -> IncomingCall:
    """A caller the app moved to the longest-wait choice (our query names them)."""
    call_sid = required(form, "CallSid", CALL_SID)
    if required(query, "call", CALL_SID) != call_sid:
        raise BadParams("the call in the URL is not the caller's")
    return IncomingCall(call_sid, form.get("From") or None)


@dataclass(frozen=True)
class DialRef:
    """The conference and dial our callback URL names (set by us, signed by Twilio)."""

    conference: str
    dial: str


def dial_ref(query: Mapping[str, str]) -> DialRef:
    return DialRef(required(query, "conference", NAME), required(query, "dial", NAME))


def recording_report(form: Mapping[str, str], query: Mapping[str, str]) -> RecordingReport:
    """A recording status callback: no SequenceNumber or FriendlyName (the conference
    is in our URL's query); AccountSid, RecordingSid, RecordingStatus and a CallSid or
    ConferenceSid are required."""
    return _recording(form, required(query, "conference", NAME))


def message_report(form: Mapping[str, str], query: Mapping[str, str]) -> RecordingReport:
    """A voicemail's recording status callback (``<Record>``): the caller's CallSid is
    in our URL's query (as ``conference``: the call the message belongs to)."""
    return _recording(form, required(query, "call", CALL_SID))


def _recording(form: Mapping[str, str], conference: str) -> RecordingReport:
    required(form, "AccountSid")
    sid = required(form, "RecordingSid", RECORDING_SID)
    status = required(form, "RecordingStatus")
    if status not in RECORDING_STATUSES:
        raise BadParams("unknown RecordingStatus")
    conference_sid = form.get("ConferenceSid") or None
    call_sid = form.get("CallSid") or None
    if conference_sid is None and call_sid is None:
        raise BadParams("missing parameter CallSid or ConferenceSid")
    if conference_sid is not None and not CONFERENCE_SID.fullmatch(conference_sid):
        raise BadParams("malformed parameter ConferenceSid")
    if call_sid is not None and not CALL_SID.fullmatch(call_sid):
        raise BadParams("malformed parameter CallSid")
    return RecordingReport(conference, sid, status, _duration(form), conference_sid)


def _duration(form: Mapping[str, str]) -> int | None:
    """RecordingDuration in whole seconds; absent (or Twilio's -1) while it records."""
    raw = form.get("RecordingDuration")
    if raw is None or raw == "" or raw == "-1":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise BadParams("malformed parameter RecordingDuration")
    return int(raw)


@dataclass(frozen=True)
class WaitingCaller:
    """The wait URL's query for a caller waiting in line: their CallSid, and when they
    last heard their place (None: the loop's first round)."""

    call_sid: str
    announced: int | None


def waiting_caller(query: Mapping[str, str]) -> WaitingCaller | None:
    """None for a wait URL without a (well-formed) caller: music alone."""
    call_sid = query.get("call", "")
    if not CALL_SID.fullmatch(call_sid):
        return None
    raw = query.get("announced")
    if raw is None:
        return WaitingCaller(call_sid, None)
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 15:
        return WaitingCaller(call_sid, 0)
    return WaitingCaller(call_sid, int(raw))
