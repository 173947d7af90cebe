"""The simulator's picture of the world: calls, conferences and participants.

Plain records with no behaviour beyond small queries; the modules that change
them (``calls``, ``conference``) own the rules, and ``resources`` renders them
as Twilio's REST JSON."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from simulator.wire import new_sid

CALL_ENDED = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class CallbackTarget:
    """Where and how a status callback goes, and which events it asked for."""

    url: str
    method: str = "POST"
    events: frozenset[str] = frozenset()


@dataclass
class RecordingSpec:
    """A ``<Conference>``'s recording attributes (the first participant's count)."""

    record: bool = False
    callback: CallbackTarget | None = None


@dataclass
class JoinSpec:
    """How a call joins a conference: from ``<Conference>`` attributes or the
    Participants API."""

    name: str
    label: str | None = None
    muted: bool = False
    beep: str = "true"
    start_on_enter: bool = True
    end_on_exit: bool = False
    coaching: bool = False
    call_sid_to_coach: str | None = None
    wait_url: str | None = None
    wait_method: str = "POST"
    status_callback: CallbackTarget | None = None
    recording: RecordingSpec | None = None


@dataclass
class Call:
    """One call leg, inbound (a customer) or outbound-api (a softphone being dialed)."""

    to: str
    from_: str
    direction: str
    account_sid: str
    status: str = "queued"
    sid: str = field(default_factory=lambda: new_sid("CA"))
    url: str | None = None
    method: str = "POST"
    twiml: str | None = None
    progress: CallbackTarget | None = None
    timeout: int = 60
    join: JoinSpec | None = None  # set for calls created by the Participants API
    parent_call_sid: str | None = None
    created: datetime = field(default_factory=utcnow)
    updated: datetime = field(default_factory=utcnow)
    start_time: datetime | None = None
    end_time: datetime | None = None
    answered_at: float | None = None
    seq: int = 0
    conference: str | None = None  # friendly name of the conference it is in
    task: asyncio.Task[None] | None = None

    @property
    def ended(self) -> bool:
        return self.status in CALL_ENDED

    @property
    def identity(self) -> str:
        """Who the call rings: a ``client:`` identity without custom parameters (any
        other number rings a simulated phone named by the number)."""
        return self.to.removeprefix("client:").split("?", 1)[0]


@dataclass
class Participant:
    """A call in a conference; ``left`` is set once it is no longer in it."""

    call_sid: str
    conference_sid: str
    spec: JoinSpec
    muted: bool = False
    hold: bool = False
    coaching: bool = False
    call_sid_to_coach: str | None = None
    end_on_exit: bool = False
    hold_url: str | None = None
    hold_method: str = "GET"
    status: str = "connected"
    created: datetime = field(default_factory=utcnow)
    updated: datetime = field(default_factory=utcnow)
    left: asyncio.Event = field(default_factory=asyncio.Event)
    music: asyncio.Task[None] | None = None

    @property
    def label(self) -> str | None:
        return self.spec.label


@dataclass
class Conference:
    """A conference room; the callback settings are the first participant's."""

    friendly_name: str
    account_sid: str
    callback: CallbackTarget | None
    sid: str = field(default_factory=lambda: new_sid("CF"))
    status: str = "init"
    created: datetime = field(default_factory=utcnow)
    updated: datetime = field(default_factory=utcnow)
    participants: dict[str, Participant] = field(default_factory=dict)
    seq: int = 0
    reason_ended: str | None = None
    call_sid_ending: str | None = None
    recording: RecordingSpec | None = None

    def labelled(self, label: str) -> Participant | None:
        return next((p for p in self.participants.values() if p.label == label), None)

    def member(self, call_sid_or_label: str) -> Participant | None:
        return self.participants.get(call_sid_or_label) or self.labelled(call_sid_or_label)
