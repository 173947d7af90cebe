"""The simulator's picture of the world: calls, conferences and participants.

Plain records with no behaviour beyond small queries; the modules that change
them (``calls``, ``conference``) own the rules, and ``resources`` renders them
as Twilio's REST JSON."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from simulator.wire import new_sid

T = TypeVar("T")
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


MESSAGE_ENDS = ("#", "hangup", "silence")


class Clock:
    """Simulated time: sleeps scaled by ``time_scale``, counting those under way (a
    Say, a Pause, a message being spoken, a number ringing) so ``Simulator.idle``
    knows the simulation is still moving on its own."""

    def __init__(self, time_scale: float = 1.0) -> None:
        self.time_scale = time_scale
        self.running = 0
        self.changed: Callable[[], None] = lambda: None

    async def sleep(self, seconds: float) -> None:
        with self.busy():
            await asyncio.sleep(seconds * self.time_scale)

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Count something under way that ends on its own (e.g. a TwiML fetch)."""
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self.changed()

    async def wait_for(self, future: asyncio.Future[T], seconds: float) -> T:
        """``future``'s result within ``seconds`` (scaled), else TimeoutError; the
        future itself is not cancelled."""
        with self.busy():
            return await asyncio.wait_for(asyncio.shield(future), seconds * self.time_scale)


@dataclass
class CallerPlan:
    """What the person on a call does when TwiML asks: ``keys`` holds one answer per
    ``<Gather>`` in order ("" presses nothing; none left = presses nothing);
    ``message_seconds`` is how long they speak at a ``<Record>`` (None or 0: say
    nothing), ending with ``#``, by hanging up or by falling ``silence``. ``waiting``
    is set while a Gather or Record listens, so a person (the control page) can
    answer live."""

    keys: deque[str] = field(default_factory=deque)
    message_seconds: float | None = None
    message_end: str = "#"
    listening: str | None = None  # "keys" or "message" while a verb waits for input
    waiting: asyncio.Future[tuple[str, float]] | None = None

    def __post_init__(self) -> None:
        if self.message_end not in MESSAGE_ENDS:
            raise ValueError(f"message_end must be one of {', '.join(MESSAGE_ENDS)}")


def plan_of(
    keys: str | list[str] | tuple[str, ...] | None,
    message_seconds: float | None,
    message_end: str = "#",
) -> CallerPlan:
    """A ``CallerPlan`` from the friendly arguments: a string is one Gather's answer."""
    answers = [keys] if isinstance(keys, str) else list(keys or ())
    return CallerPlan(deque(answers), message_seconds, message_end)


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
    plan: CallerPlan = field(default_factory=CallerPlan)
    machine_detection: str | None = None  # Enable or DetectMessageEnd when asked
    answered_by: str | None = None  # AnsweredBy, once answered with detection on
    record_loops: int = 0  # <Record> without action re-requesting its document

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
