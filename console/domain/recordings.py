"""A conference's recording (SPEC §8): what Twilio reports of it, the pauses people
ask for, its deletion. Each change is a ``recording.updated`` event (``conference``,
``sid``, ``status``, ``duration``, and ``by`` when a person made it) for supervisors
and the call's agents; history keeps the last one, timelines show them.

Twilio reports ``in-progress`` once it records and how it ended (``completed``,
``absent``, ``failed``); it does not report pauses, so a pause is recorded when
Twilio has accepted it. A final status is never undone by a late callback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from console.domain.actions import live_conference, present_as
from console.domain.derive import ConferenceView, derive, involved_agents
from console.domain.errors import Conflict, DomainError
from console.domain.events import Event
from console.domain.records import ConferenceRecord, DialKind, Recording
from console.domain.unit import Unit

# RecordingStatus values Twilio sends (and its API's others), accepted from callbacks.
STATUSES = frozenset(
    {"in-progress", "paused", "stopped", "processing", "completed", "absent", "failed"}
)
LIVE = frozenset({"in-progress", "paused"})
FINAL = frozenset({"completed", "absent", "failed", "deleted"})
EVENT = "recording.updated"


@dataclass(frozen=True)
class RecordingReport:
    """One recording status callback: the conference our URL named, and Twilio's
    RecordingSid, RecordingStatus, RecordingDuration (s) and ConferenceSid."""

    conference: str
    sid: str
    status: str
    duration: int | None
    conference_sid: str | None = None


def call_agents(record: ConferenceRecord, view: ConferenceView) -> set[str]:
    """The agents of the call, during it and after: those involved now and every
    agent (never a supervisor) whose leg joined it."""
    joined = {
        d.agent
        for d in record.dials.values()
        if d.kind != DialKind.SUPERVISOR and d.call_sid in view.milestones.joined
    }
    return joined | involved_agents(record, view)


def _emit(unit: Unit, name: str, data: dict[str, object], audience: Iterable[str]) -> None:
    unit.events.append(
        Event(EVENT, {"conference": name, **data}, unit.now, frozenset(audience), name)
    )


def _announce(unit: Unit, record: ConferenceRecord, by: str | None = None) -> None:
    assert record.recording is not None
    data: dict[str, object] = record.recording.public()
    if by is not None:
        data["by"] = by
    _emit(unit, record.name, data, call_agents(record, derive(record)))


async def apply_report(unit: Unit, report: RecordingReport) -> bool:
    """Record what Twilio reported; False when it changed nothing (a duplicate, a
    late ``in-progress``, anything after a final status)."""
    record = await unit.conference(report.conference)
    if record is None:
        # Redis has let the call go (a day after its end): history still learns of
        # it; supervisors alone are told live.
        data = {"sid": report.sid, "status": report.status, "duration": report.duration}
        _emit(unit, report.conference, data, ())
        return True
    current = record.recording
    if current is not None and current.sid == report.sid:
        if current.status in FINAL or (report.status in LIVE and current.status in LIVE):
            return False  # only people pause and resume; Twilio's in-progress is old news
        if (current.status, current.duration) == (report.status, report.duration):
            return False
        current.status = report.status
        current.duration = report.duration if report.duration is not None else current.duration
    else:
        record.recording = Recording(report.sid, report.status, report.duration)
    _announce(unit, record)
    return True


async def prepare_pause(unit: Unit, username: str, supervisor: bool, name: str) -> tuple[str, str]:
    """Check that ``username`` may pause or resume the recording of live conference
    ``name`` and that it is recording; returns the ConferenceSid and RecordingSid."""
    record, view = await live_conference(unit, name)
    if not supervisor and present_as(view, username, "agent") is None:
        raise DomainError("you can only pause the recording of your own call", 403)
    recording = record.recording
    if recording is None or recording.status not in LIVE or view.sid is None:
        raise Conflict("this call is not being recorded")
    return view.sid, recording.sid


async def record_pause(unit: Unit, name: str, sid: str, username: str, paused: bool) -> str:
    """Twilio accepted the pause (or resume) ``username`` asked for: recorded and
    announced; returns the recording's status."""
    record = await unit.conference(name)
    recording = record.recording if record is not None else None
    if record is None or recording is None or recording.sid != sid:
        return "paused" if paused else "in-progress"
    status = "paused" if paused else "in-progress"
    if recording.status in LIVE and recording.status != status:
        recording.status = status
        _announce(unit, record, by=username)
    return recording.status


async def record_deleted(
    unit: Unit, name: str, sid: str, username: str, agents: Iterable[str]
) -> None:
    """A supervisor deleted recording ``sid`` of call ``name`` (at Twilio, already):
    history drops it; a call Redis still holds forgets it too."""
    record = await unit.conference(name)
    duration = None
    if record is not None and record.recording is not None and record.recording.sid == sid:
        duration = record.recording.duration
        record.recording.status = "deleted"
    data = {"sid": sid, "status": "deleted", "duration": duration, "by": username}
    _emit(unit, name, data, agents)
