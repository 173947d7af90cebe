"""Simulated parties: softphones (``client:<identity>``) and their event streams,
and the people who answer phone numbers (``Person``, ``People``).

A softphone rings for a call until someone decides: ``answer``, ``decline``
(Twilio reports ``busy``), or nothing until the call's Timeout (``no-answer``).
Decisions come from Python (tests), from HTTP (the browser demo softphone, via
``control``), or from an auto-answer policy (load generation). Every change is
published to the phone's subscribers as ``incoming``, ``connected``, ``ended``
and ``muted`` events, the shape the demo softphone renders.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from simulator.model import Call, Clock

ANSWER, DECLINE = "answer", "busy"


@dataclass
class AutoAnswer:
    """A policy for unattended phones: answer (or decline) after ``delay`` seconds and
    hang up after ``talk`` seconds (None: stay until the other side ends it)."""

    action: str = ANSWER
    delay: float = 0.0
    talk: float | None = None


def call_event(kind: str, call: Call, **extra: Any) -> dict[str, Any]:
    """One softphone event; custom parameters come from ``client:name?key=value``."""
    _, _, query = call.to.partition("?")
    return {
        "type": kind,
        "call_sid": call.sid,
        "from": call.from_,
        "to": call.to.split("?", 1)[0],
        "status": call.status,
        "parameters": dict(parse_qsl(query)),
        **extra,
    }


@dataclass
class Phone:
    """One softphone identity; see the module docstring."""

    identity: str
    registered: bool = False
    auto: AutoAnswer | None = None
    ringing: dict[str, asyncio.Future[str]] = field(default_factory=dict)
    calls: dict[str, Call] = field(default_factory=dict)  # ringing or connected
    muted: set[str] = field(default_factory=set)
    subscribers: list[asyncio.Queue[dict[str, Any]]] = field(default_factory=list)
    incoming: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    on_hangup: Callable[[str], object] = field(default=lambda sid: None, repr=False)

    def register(self, auto: AutoAnswer | None = None) -> Phone:
        """Ready to receive calls (as ``device.register()``), optionally unattended."""
        self.registered = True
        self.auto = auto
        self.publish({"type": "registered", "identity": self.identity})
        return self

    def unregister(self) -> None:
        self.registered = False
        self.publish({"type": "unregistered", "identity": self.identity})

    def publish(self, event: dict[str, Any]) -> None:
        for queue in self.subscribers:
            queue.put_nowait(event)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        with contextlib.suppress(ValueError):
            self.subscribers.remove(queue)

    def _pick(self, call_sid: str | None) -> str:
        """The named ringing call, or the only/oldest one ringing."""
        if call_sid is not None:
            if call_sid not in self.ringing:
                raise KeyError(call_sid)
            return call_sid
        if not self.ringing:
            raise KeyError(f"{self.identity} has no ringing call")
        return next(iter(self.ringing))

    def answer(self, call_sid: str | None = None) -> str:
        """Pick up a ringing call; returns its CallSid."""
        sid = self._pick(call_sid)
        future = self.ringing[sid]
        if not future.done():
            future.set_result(ANSWER)
        return sid

    def decline(self, call_sid: str | None = None) -> str:
        """Reject a ringing call; Twilio reports it as ``busy``."""
        sid = self._pick(call_sid)
        future = self.ringing[sid]
        if not future.done():
            future.set_result(DECLINE)
        return sid

    def hangup(self, call_sid: str | None = None) -> str:
        """Hang up a connected call (or reject a ringing one, as ``disconnect()``)."""
        sid = call_sid or next(iter(self.calls), None)
        if sid is None or sid not in self.calls:
            raise KeyError(f"{self.identity} has no call {sid}")
        if sid in self.ringing:
            return self.decline(sid)
        self.on_hangup(sid)
        return sid

    def mute(self, call_sid: str, muted: bool = True) -> None:
        """The softphone's own microphone mute: local, so Twilio reports nothing."""
        if call_sid not in self.calls:
            raise KeyError(call_sid)
        (self.muted.add if muted else self.muted.discard)(call_sid)
        self.publish({**call_event("muted", self.calls[call_sid]), "muted": muted})

    async def next_call(self, within: float = 5.0) -> str:
        """Wait until a call rings here; returns its CallSid."""
        return await asyncio.wait_for(self.incoming.get(), within)


class Phones:
    """All softphones by identity, created on first use (unregistered)."""

    def __init__(self, time_scale: float = 1.0) -> None:
        self.time_scale = time_scale
        self.phones: dict[str, Phone] = {}
        self.on_hangup: Callable[[str], object] = lambda sid: None

    def get(self, identity: str) -> Phone:
        if identity not in self.phones:
            self.phones[identity] = Phone(identity, on_hangup=self.on_hangup)
        return self.phones[identity]

    def owner(self, call_sid: str) -> Phone | None:
        return next((p for p in self.phones.values() if call_sid in p.calls), None)

    async def ring(self, call: Call) -> str:
        """Ring the call's softphone until a decision or the (scaled) Timeout; returns
        ``answer``, ``busy`` or ``no-answer``. Cancelling this (the caller gave up or
        the app canceled the call) leaves the phone showing ``ended``."""
        phone = self.get(call.identity)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        phone.ringing[call.sid] = future
        phone.calls[call.sid] = call
        auto: asyncio.Task[None] | None = None
        try:
            if phone.registered:
                phone.incoming.put_nowait(call.sid)
                phone.publish(call_event("incoming", call))
                if phone.auto is not None:
                    auto = asyncio.create_task(self._auto(phone, call.sid, phone.auto))
            try:
                return await asyncio.wait_for(
                    asyncio.shield(future), call.timeout * self.time_scale
                )
            except TimeoutError:
                return "no-answer"
        finally:
            phone.ringing.pop(call.sid, None)
            if auto is not None:
                auto.cancel()

    async def _auto(self, phone: Phone, call_sid: str, policy: AutoAnswer) -> None:
        await asyncio.sleep(policy.delay * self.time_scale)
        future = phone.ringing.get(call_sid)
        if future is not None and not future.done():
            future.set_result(policy.action)

    def connected(self, call: Call) -> None:
        phone = self.owner(call.sid)
        if phone is not None:
            phone.publish(call_event("connected", call))

    def ended(self, call: Call) -> None:
        phone = self.owner(call.sid)
        if phone is not None:
            phone.calls.pop(call.sid, None)
            phone.muted.discard(call.sid)
            phone.publish(call_event("ended", call))


# -- people at phone numbers ---------------------------------------------------------------


@dataclass
class Person:
    """Whoever answers a phone number the app dials (a customer called back, an
    external party). ``answer=False`` lets it ring to the call's Timeout
    (``no-answer``); ``busy`` and ``fails`` end it ``busy``/``failed``; ``machine``
    (True, or an ``AnsweredBy`` value such as ``"fax"``) is a machine that answers.
    ``after`` seconds of ringing before answering (or busy); ``talk`` seconds before
    hanging up (None: until the app or ``Simulator.hangup`` ends it). ``keys`` and
    ``message_seconds`` are what they do at a ``<Gather>``/``<Record>``."""

    number: str
    answer: bool = True
    busy: bool = False
    machine: bool | str = False
    fails: bool = False
    after: float = 1.0
    talk: float | None = None
    keys: str | tuple[str, ...] | None = None
    message_seconds: float | None = None

    def answered_by(self, detection: str | None) -> str | None:
        """``AnsweredBy`` for answering-machine detection (None when not asked for)."""
        if detection is None:
            return None
        if isinstance(self.machine, str):
            return self.machine
        if self.machine:
            return "machine_end_beep" if detection == "DetectMessageEnd" else "machine_start"
        return "human"


def is_number(to: str) -> bool:
    """A phone number (``+15551230000``), not ``client:``/``sip:``: a ``Person`` answers."""
    return not to.startswith(("client:", "sip:"))


class People:
    """Who answers each phone number: ``Person(number)`` (answers after a second)
    unless told otherwise with ``set``."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.people: dict[str, Person] = {}

    def set(self, person: Person) -> Person:
        self.people[person.number] = person
        return person

    def get(self, number: str) -> Person:
        return self.people.get(number) or Person(number)

    async def ring(self, call: Call, person: Person) -> str:
        """``answer``, ``busy`` or ``no-answer`` (the call's Timeout, scaled)."""
        timeout = call.timeout
        if person.busy:
            await self.clock.sleep(min(person.after, timeout))
            return DECLINE
        if not person.answer or person.after >= timeout:
            await self.clock.sleep(timeout)
            return "no-answer"
        await self.clock.sleep(person.after)
        return ANSWER
