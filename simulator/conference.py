"""Conference rooms with Twilio's semantics, and their status callbacks.

* The callback URL, method and event list are the FIRST participant's; later
  participants' settings are ignored (docs/twilio.md).
* ``conference-start`` once at least two participants are in and one of them has
  ``startConferenceOnEnter``; until then everyone hears their ``waitUrl``.
* ``conference-end`` when a participant with ``endConferenceOnExit`` leaves or the
  last one leaves; everyone still in is dropped (their ``<Dial>`` completes).
* Participant updates fire hold/unhold, mute/unmute and modify; a change of
  ``endConferenceOnExit`` while the participant is on hold is ignored, as on Twilio.
* ``ReasonConferenceEnded`` uses hyphens, ``ReasonParticipantLeft`` underscores.
* ``record="record-from-start"`` (the first participant's) records from the start
  to the end (``recordings``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from simulator.callbacks import Deliverer
from simulator.model import Conference, JoinSpec, Participant, utcnow
from simulator.params import conference_params, participant_params
from simulator.recordings import Recordings
from simulator.wire import rfc2822

# StatusCallbackEvent sent -> the statusCallbackEvent value that enables it.
ENABLED_BY = {
    "conference-start": "start",
    "conference-end": "end",
    "participant-join": "join",
    "participant-leave": "leave",
    "participant-mute": "mute",
    "participant-unmute": "mute",
    "participant-hold": "hold",
    "participant-unhold": "hold",
    "participant-modify": "modify",
}
Player = Callable[[str, str, str], Coroutine[Any, Any, None]]


class DuplicateLabel(Exception):
    """Twilio error 16025: the label is taken in this conference."""


class ConferenceHub:
    """All conferences, live and ended; see the module docstring."""

    def __init__(self, account_sid: str, deliverer: Deliverer, player: Player) -> None:
        self.account_sid = account_sid
        self.deliverer = deliverer
        self.player = player  # plays a wait/hold URL to a call until cancelled
        self.conferences: dict[str, Conference] = {}
        self.recordings = Recordings(account_sid, deliverer)
        self.changed: Callable[[], None] = lambda: None

    # -- lookups ------------------------------------------------------------------------

    def live(self, name: str) -> Conference | None:
        """The conference with this FriendlyName that has not ended."""
        for conference in reversed(self.conferences.values()):
            if conference.friendly_name == name and conference.status != "completed":
                return conference
        return None

    def find(self, sid_or_name: str) -> Conference | None:
        """By CF sid, else the live one with that FriendlyName (as Twilio allows)."""
        return self.conferences.get(sid_or_name) or self.live(sid_or_name)

    def where(self, call_sid: str) -> tuple[Conference, Participant] | None:
        for conference in self.conferences.values():
            participant = conference.participants.get(call_sid)
            if participant is not None:
                return conference, participant
        return None

    # -- joining and leaving --------------------------------------------------------------

    def open(self, spec: JoinSpec) -> Conference:
        """The live conference of that name, or a new one (``init``) taking this
        participant's callback settings: the first participant's win."""
        conference = self.live(spec.name)
        if conference is None:
            conference = Conference(spec.name, self.account_sid, spec.status_callback)
            conference.recording = spec.recording
            self.conferences[conference.sid] = conference
            self.changed()
        return conference

    def join(self, call_sid: str, spec: JoinSpec) -> Participant:
        """Put a call in the named conference (see ``open``)."""
        conference = self.open(spec)
        if spec.label and conference.labelled(spec.label):
            raise DuplicateLabel(spec.label)
        participant = Participant(
            call_sid,
            conference.sid,
            spec,
            muted=spec.muted,
            coaching=spec.coaching,
            call_sid_to_coach=spec.call_sid_to_coach,
            end_on_exit=spec.end_on_exit,
        )
        conference.participants[call_sid] = participant
        self._emit(conference, "participant-join", participant)
        if self._should_start(conference):
            conference.status = "in-progress"
            conference.updated = utcnow()
            self._emit(conference, "conference-start")
            if conference.recording is not None and conference.recording.record:
                self.recordings.start(conference.sid, conference.recording.callback)
        self._refresh_music(conference)
        self.changed()
        return participant

    @staticmethod
    def _should_start(conference: Conference) -> bool:
        members = conference.participants.values()
        return (
            conference.status == "init"
            and len(conference.participants) >= 2
            and any(p.spec.start_on_enter for p in members)
        )

    def leave(
        self, call_sid: str, reason: str, call_status: str, conference: Conference | None = None
    ) -> None:
        """The call left (hung up, kicked, redirected): from ``conference`` if given (a
        kick), else from wherever it is. May end the conference."""
        rooms = [conference] if conference is not None else list(self.conferences.values())
        for room in rooms:
            participant = room.participants.get(call_sid)
            if participant is None:
                continue
            self._remove(room, participant, reason, call_status)
            if participant.end_on_exit:
                ended = "participant-with-end-conference-on-exit-" + _verb(reason)
                self.end(room, ended, participant)
            elif not room.participants:
                self.end(room, "last-participant-" + _verb(reason), participant)
            self.changed()

    def add_failed(self, call_sid: str, spec: JoinSpec, call_status: str) -> None:
        """A Participants-API add that was never answered still reports a
        ``participant-leave`` (ParticipantCallStatus no-answer, busy...)."""
        conference = self.live(spec.name)
        if conference is None:
            return
        ghost = Participant(call_sid, conference.sid, spec, muted=spec.muted)
        ghost.status = "failed"
        self._emit(
            conference,
            "participant-leave",
            ghost,
            ParticipantCallStatus=call_status,
            ReasonParticipantLeft="participant_add_failed",
        )

    def end(self, conference: Conference, reason: str, ending: Participant | None = None) -> None:
        """Drop everyone still in, then ``conference-end``."""
        if conference.status == "completed":
            return
        why = (
            "conference_ended_via_api"
            if reason.endswith("via-api")
            else "moderator_ended_conference"
        )
        for participant in list(conference.participants.values()):
            self._remove(conference, participant, why, "in-progress")
        conference.status = "completed"
        conference.reason_ended = reason
        conference.call_sid_ending = ending.call_sid if ending else None
        conference.updated = utcnow()
        extra = {"ReasonConferenceEnded": reason, "Reason": _reason_text(reason, ending)}
        if ending is not None:
            extra["CallSidEndingConference"] = ending.call_sid
            if ending.label:
                extra["ParticipantLabelEndingConference"] = ending.label
        self._emit(conference, "conference-end", **extra)
        self.recordings.finish(conference.sid)
        self.changed()

    def _remove(
        self, conference: Conference, participant: Participant, reason: str, call_status: str
    ) -> None:
        conference.participants.pop(participant.call_sid, None)
        participant.status = "complete"
        self._stop_music(participant)
        self._emit(
            conference,
            "participant-leave",
            participant,
            ParticipantCallStatus=call_status,
            ReasonParticipantLeft=reason,
        )
        participant.left.set()

    # -- updates --------------------------------------------------------------------------

    def update(self, conference: Conference, participant: Participant, changes: dict[str, Any]):
        """Apply a Participants-API update and fire its events."""
        if participant.hold and "end_on_exit" in changes and "hold" not in changes:
            changes.pop("end_on_exit")  # Twilio ignores it while on hold
        if changes.get("hold") and "hold_url" in changes:
            participant.hold_url = changes["hold_url"]
            participant.hold_method = changes.get("hold_method") or "GET"
        events: list[str] = []
        for name, on, off in (("hold", "hold", "unhold"), ("muted", "mute", "unmute")):
            if name in changes and changes[name] != getattr(participant, name):
                setattr(participant, name, changes[name])
                events.append("participant-" + (on if changes[name] else off))
        modified = False
        for name in ("coaching", "call_sid_to_coach", "end_on_exit"):
            if name in changes and changes[name] != getattr(participant, name):
                setattr(participant, name, changes[name])
                modified = True
        if modified:
            events.append("participant-modify")
        participant.updated = utcnow()
        for event in events:
            self._emit(conference, event, participant)
        self._refresh_music(conference)
        self.changed()

    # -- music ------------------------------------------------------------------------------

    def _refresh_music(self, conference: Conference) -> None:
        """Hold music for held participants, wait music before the start, else none."""
        for participant in conference.participants.values():
            want: tuple[str, str] | None = None
            if participant.hold:
                want = (participant.hold_url or "", participant.hold_method)
            elif conference.status == "init":
                want = (participant.spec.wait_url or "", participant.spec.wait_method)
            playing = participant.music
            if want is None or not want[0]:
                self._stop_music(participant)
            elif playing is None or playing.get_name() != "|".join(want):
                self._stop_music(participant)
                coroutine = self.player(participant.call_sid, *want)
                participant.music = asyncio.create_task(coroutine, name="|".join(want))

    @staticmethod
    def _stop_music(participant: Participant) -> None:
        if participant.music is not None:
            participant.music.cancel()
            participant.music = None

    # -- callbacks --------------------------------------------------------------------------

    def _emit(
        self,
        conference: Conference,
        event: str,
        participant: Participant | None = None,
        **extra: str,
    ) -> None:
        target = conference.callback
        if target is None or not target.url or ENABLED_BY[event] not in target.events:
            return
        conference.seq += 1
        params = conference_params(
            self.account_sid,
            conference.sid,
            conference.friendly_name,
            event,
            conference.seq,
            rfc2822(),
        )
        if participant is not None:
            params.update(
                participant_params(
                    participant.call_sid,
                    muted=participant.muted,
                    hold=participant.hold,
                    coaching=participant.coaching,
                    end_on_exit=participant.end_on_exit,
                    start_on_enter=participant.spec.start_on_enter,
                    label=participant.label,
                    call_sid_to_coach=participant.call_sid_to_coach,
                )
            )
        params.update(extra)
        self.deliverer.send(conference.sid, target.url, params, target.method)


def _verb(reason: str) -> str:
    """How the ending participant went: ``kicked`` for API removals, else ``left``."""
    return "kicked" if reason == "participant_updated_via_api" else "left"


def _reason_text(reason: str, ending: Participant | None) -> str:
    who = f" {ending.call_sid}" if ending else ""
    texts = {
        "conference-ended-via-api": "Conference ended via API",
        "last-participant-left": f"Participant{who} with end_conference_on_exit=false left",
        "last-participant-kicked": f"Participant{who} was kicked",
    }
    return texts.get(reason, f"Participant{who} with end_conference_on_exit=true left")
