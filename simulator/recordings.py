"""Recordings: of conferences and of ``<Record>`` (voicemail).

A conference with ``record="record-from-start"`` starts one when it starts, the
conference Recordings API pauses and resumes it, the conference's end completes it
with a signed ``recordingStatusCallback`` (``in-progress`` too when asked for). A
``<Record>`` makes one per message (``RecordingSource=RecordVerb``, ``CallSid``, no
``ConferenceSid``): ``completed`` with its duration, or ``absent`` when too short.
The Recordings API serves both: the resource's JSON, its media (a real WAV made with
``wave``: a 3 s tone for a conference, the message's own length for a ``<Record>``,
byte ranges honoured) and DELETE."""

from __future__ import annotations

import array
import functools
import io
import math
import sys
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from simulator.callbacks import Deliverer
from simulator.model import CallbackTarget, utcnow
from simulator.wire import API_VERSION, new_sid, rfc2822

JSON = dict[str, Any]
RATE = 8000  # Hz, mono, 16-bit: Twilio's recordings are 8 kHz too
TONE_HZ = 440
TONE_SECONDS = 3
MAX_MEDIA_SECONDS = 600  # a longer message is served as its first ten minutes
TOO_SHORT, SILENT = "16101", "16102"  # ErrorCode of an absent recording
PUBLIC_API = "https://api.twilio.com"  # RecordingUrl, as Twilio sends it


@functools.cache
def tone_wav(seconds: int = TONE_SECONDS) -> bytes:
    """A WAV file of a quiet 440 Hz tone, fading in and out, ``seconds`` long."""
    total = max(0, seconds) * RATE
    step = 2 * math.pi * TONE_HZ / RATE
    frames = array.array(
        "h",
        (
            int(6000 * min(1.0, i / 800, (total - i) / 800) * math.sin(step * i))
            for i in range(total)
        ),
    )
    if sys.byteorder == "big":
        frames.byteswap()  # WAV samples are little-endian
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(frames.tobytes())
    return out.getvalue()


@dataclass
class Recording:
    """One recording: of a conference, or of a call's ``<Record>`` (``call_sid`` set,
    ``source`` ``RecordVerb``)."""

    account_sid: str
    conference_sid: str | None
    callback: CallbackTarget | None
    call_sid: str | None = None
    source: str = "Conference"
    error_code: str | None = None
    sid: str = field(default_factory=lambda: new_sid("RE"))
    status: str = "in-progress"  # in-progress | paused | completed | absent
    created: datetime = field(default_factory=utcnow)
    updated: datetime = field(default_factory=utcnow)
    duration: int | None = None
    started: float = field(default_factory=time.monotonic)
    paused_at: float | None = None
    paused_total: float = 0.0

    @property
    def path(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{self.sid}"

    def media(self) -> bytes:
        """The WAV served for it: a message is as long as it was (at least a second)."""
        if self.source != "RecordVerb":
            return tone_wav()
        return tone_wav(min(MAX_MEDIA_SECONDS, max(1, self.duration or 0)))


class Recordings:
    """Every recording, by SID; see the module docstring."""

    def __init__(self, account_sid: str, deliverer: Deliverer) -> None:
        self.account_sid = account_sid
        self.deliverer = deliverer
        self.recordings: dict[str, Recording] = {}
        self.changed: Callable[[], None] = lambda: None

    def current(self, conference_sid: str) -> Recording | None:
        """The conference's recording still going (recording or paused)."""
        for recording in reversed(self.recordings.values()):
            live = recording.status in ("in-progress", "paused")
            if recording.conference_sid == conference_sid and live:
                return recording
        return None

    def start(self, conference_sid: str, callback: CallbackTarget | None) -> Recording:
        recording = Recording(self.account_sid, conference_sid, callback)
        self.recordings[recording.sid] = recording
        self._report(recording, "in-progress")
        self.changed()
        return recording

    def set_paused(self, recording: Recording, paused: bool) -> None:
        now = time.monotonic()
        if paused and recording.status == "in-progress":
            recording.status, recording.paused_at = "paused", now
        elif not paused and recording.status == "paused":
            recording.paused_total += now - (recording.paused_at or now)
            recording.status, recording.paused_at = "in-progress", None
        recording.updated = utcnow()
        self.changed()

    def finish(self, conference_sid: str) -> None:
        """The conference ended: its recording is complete, with its length (at least
        a second; the media is the same tone whatever the length)."""
        recording = self.current(conference_sid)
        if recording is None:
            return
        self.set_paused(recording, False)
        seconds = time.monotonic() - recording.started - recording.paused_total
        recording.duration = max(1, round(seconds))
        recording.status = "completed"
        recording.updated = utcnow()
        self._report(recording, "completed")
        self.changed()

    def begin_message(self, call_sid: str, callback: CallbackTarget | None) -> Recording:
        """A ``<Record>`` starts recording the caller (``in-progress`` if asked for)."""
        recording = Recording(self.account_sid, None, callback, call_sid, "RecordVerb")
        self.recordings[recording.sid] = recording
        self._report(recording, "in-progress")
        self.changed()
        return recording

    def end_message(self, recording: Recording, seconds: float, minimum: float) -> None:
        """The message is over: ``completed`` with its length, or ``absent`` when it is
        empty or shorter than ``minimum`` (reported only to a callback asking for it)."""
        recording.updated = utcnow()
        if seconds < minimum:
            recording.status, recording.duration = "absent", 0
            recording.error_code = SILENT if seconds <= 0 else TOO_SHORT
        else:
            recording.status, recording.duration = "completed", max(1, round(seconds))
        self._report(recording, recording.status)
        self.changed()

    def _report(self, recording: Recording, status: str) -> None:
        target = recording.callback
        if target is None or not target.url or status not in target.events:
            return
        self.deliverer.send(recording.sid, target.url, status_params(recording), target.method)


def status_params(recording: Recording) -> dict[str, str]:
    """A recordingStatusCallback's parameters (no SequenceNumber, no FriendlyName):
    ``ConferenceSid`` for a conference's, ``CallSid`` for a ``<Record>``'s."""
    where = {"ConferenceSid": recording.conference_sid or ""}
    if recording.call_sid is not None:
        where = {"CallSid": recording.call_sid}
    return {
        "AccountSid": recording.account_sid,
        **where,
        "RecordingSid": recording.sid,
        "RecordingUrl": PUBLIC_API + recording.path,
        "RecordingStatus": recording.status,
        "RecordingDuration": str(recording.duration if recording.duration is not None else -1),
        "RecordingChannels": "1",
        "RecordingStartTime": rfc2822(recording.created),
        "RecordingSource": recording.source,
        "RecordingTrack": "both",
        "ErrorCode": recording.error_code or "0",
    }


def recording_json(recording: Recording) -> JSON:
    """The Recording resource (``/Recordings/{sid}.json`` and the conference's)."""
    return {
        "account_sid": recording.account_sid,
        "api_version": API_VERSION,
        "call_sid": recording.call_sid,
        "conference_sid": recording.conference_sid,
        "date_created": rfc2822(recording.created),
        "date_updated": rfc2822(recording.updated),
        "start_time": rfc2822(recording.created),
        "duration": str(recording.duration) if recording.duration is not None else "-1",
        "sid": recording.sid,
        "price": None,
        "price_unit": "USD",
        "status": recording.status,
        "channels": 1,
        "source": recording.source,
        "error_code": int(recording.error_code) if recording.error_code else None,
        "track": "both",
        "uri": f"{recording.path}.json",
        "encryption_details": None,
        "media_url": PUBLIC_API + recording.path,
        "subresource_uris": {
            "add_on_results": f"{recording.path}/AddOnResults.json",
            "transcriptions": f"{recording.path}/Transcriptions.json",
        },
    }


def byte_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """The ``(first, last)`` bytes a ``Range: bytes=a-b`` asks for; None to send the
    whole file (no header, or one not understood); False when it cannot be met (416)."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first_text, _, last_text = header[6:].strip().partition("-")
    try:
        if first_text == "":
            length = int(last_text)
            if length <= 0:
                return False
            return max(0, size - length), size - 1
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
    except ValueError:
        return None
    if first >= size or last < first:
        return False
    return first, min(last, size - 1)
