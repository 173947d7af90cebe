"""The simulator as one object: REST API, TwiML engine, conferences, parties and the
control API on one aiohttp server, driven from Python or HTTP.

    sim = Simulator("http://127.0.0.1:5000", ACCOUNT_SID, AUTH_TOKEN, seed=7, chaos=True)
    await sim.start("127.0.0.1", 8765)        # the app's TWILIO_API_BASE_URL = sim.base_url
    alice = sim.phone("alice")                # registered softphone
    customer = await sim.call_in("+15557654321")
    await alice.next_call(); alice.answer()
    await sim.idle()                          # every callback delivered, app quiet
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from typing import Any, Self

from aiohttp import web

from simulator.callbacks import Chaos, Deliverer
from simulator.calls import Switchboard
from simulator.conference import ConferenceHub
from simulator.control import ControlApi
from simulator.load import LoadGenerator
from simulator.model import MESSAGE_ENDS, Call, plan_of
from simulator.parties import AutoAnswer, Person, Phone, Phones
from simulator.recordings import recording_json
from simulator.resources import call_json, conference_json, participant_json
from simulator.rest import RestApi

VOICE_PATH = "/conference/connect/client"
TWILIO_NUMBER = "+15550001111"


class Simulator:
    """A local Twilio Voice for one app; see the module docstring.

    ``time_scale`` multiplies every simulated duration (Say, Play, Pause, ring
    timeouts, auto-answer delays): 0.05 makes a 20 s ring time out in 1 s.
    ``chaos`` is True (a default ``Chaos`` seeded with ``seed``) or a ``Chaos``.
    """

    def __init__(
        self,
        app_base_url: str,
        account_sid: str,
        auth_token: str,
        *,
        seed: int | None = None,
        chaos: Chaos | bool | None = None,
        time_scale: float = 1.0,
        api_keys: Mapping[str, str] | None = None,
        number: str = TWILIO_NUMBER,
        voice_path: str = VOICE_PATH,
        cors_origins: tuple[str, ...] | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.number = number
        self.voice_path = voice_path
        self.point_at(app_base_url)
        self.rng = random.Random(seed)
        if chaos is True:
            chaos = Chaos(seed=seed)
        self.deliverer = Deliverer(auth_token, chaos or None)
        self.phones = Phones(time_scale)
        self.board = Switchboard(account_sid, self.deliverer, self.phones, time_scale)
        self.phones.on_hangup = self.hangup
        self.rest = RestApi(self.board, account_sid, auth_token, api_keys)
        self.cors_origins = cors_origins
        self.control = ControlApi(self)
        self.load = LoadGenerator(self)
        self.host = "127.0.0.1"
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._activity = asyncio.Event()
        self.board.changed = self.hub.changed = self.rest.touched = self._activity.set
        self.board.engine.clock.changed = self.hub.recordings.changed = self._activity.set

    def point_at(self, app_base_url: str) -> None:
        """Set the app customers call (its PUBLIC_BASE_URL), e.g. once its port is known."""
        self.app_base_url = app_base_url.rstrip("/")
        self.voice_url = self.app_base_url + self.voice_path

    def allowed_origins(self) -> tuple[str, ...]:
        """Origins the control API answers with CORS: the app's, unless configured."""
        return self.cors_origins or (_origin(self.app_base_url),)

    @property
    def hub(self) -> ConferenceHub:
        return self.board.hub

    @property
    def base_url(self) -> str:
        """What the app's ``TWILIO_API_BASE_URL`` must be (also the control page)."""
        return f"http://{self.host}:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Self:
        await self.deliverer.open()
        app = web.Application(middlewares=[self.control.cors, self.rest.middleware])
        app.add_routes(self.rest.routes())
        app.add_routes(self.control.routes())
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.host, self.port = host, self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        """Stop load, end every call's task, close the server and the HTTP session."""
        await self.load.stop()
        tasks = [c.task for c in self.board.calls.values() if c.task and not c.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.control.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.deliverer.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- parties -----------------------------------------------------------------------------

    async def call_in(
        self,
        from_number: str | None = None,
        *,
        keys: str | Sequence[str] | None = None,
        message_seconds: float | None = None,
        message_end: str = "#",
    ) -> str:
        """A customer calls the number; returns the CallSid (the app's conference name).

        ``keys``: what they press at each ``<Gather>`` in turn (a string is the first
        Gather's; "" presses nothing). ``message_seconds``: how long they speak at a
        ``<Record>`` (None/0: nothing), ending with ``message_end`` (``#``,
        ``hangup`` or ``silence``)."""
        caller = from_number or f"+1555{self.rng.randrange(10**7):07d}"
        plan = plan_of(keys, message_seconds, message_end)
        return self.board.call_in(self.voice_url, caller, self.number, plan).sid

    def person(
        self,
        number: str,
        *,
        answer: bool = True,
        busy: bool = False,
        machine: bool | str = False,
        fails: bool = False,
        after: float = 1.0,
        talk: float | None = None,
        keys: str | tuple[str, ...] | None = None,
        message_seconds: float | None = None,
    ) -> Person:
        """Who answers ``number`` when the app dials it (see ``parties.Person``); numbers
        not set answer after a second."""
        return self.board.people.set(
            Person(number, answer, busy, machine, fails, after, talk, keys, message_seconds)
        )

    def press(self, call_sid: str, digits: str) -> bool:
        """The caller on ``call_sid`` presses keys: answers the ``<Gather>`` listening
        now (True), else they are kept for the next one (False)."""
        plan = self._call(call_sid).plan
        if plan.listening == "keys" and plan.waiting is not None and not plan.waiting.done():
            plan.waiting.set_result((digits, 0.0))
            return True
        plan.keys.append(digits)
        return False

    def speak(self, call_sid: str, seconds: float, end: str = "#") -> bool:
        """The caller leaves a ``seconds`` message ending with ``end`` (``#``,
        ``hangup``, ``silence``): at the ``<Record>`` listening now (True), else at the
        next one (False)."""
        if end not in MESSAGE_ENDS:
            raise ValueError(f"end must be one of {', '.join(MESSAGE_ENDS)}")
        plan = self._call(call_sid).plan
        if plan.listening == "message" and plan.waiting is not None and not plan.waiting.done():
            plan.waiting.set_result((end, float(seconds)))
            return True
        plan.message_seconds, plan.message_end = float(seconds), end
        return False

    def _call(self, call_sid: str) -> Call:
        call = self.board.calls.get(call_sid)
        if call is None or call.ended:
            raise KeyError(call_sid)
        return call

    def hangup(self, call_sid: str) -> None:
        """The party on ``call_sid`` hangs up (a customer, or an agent's softphone)."""
        if call_sid not in self.board.calls:
            raise KeyError(call_sid)
        self.board.hangup(call_sid)

    def phone(
        self, identity: str, *, register: bool = True, auto: AutoAnswer | None = None
    ) -> Phone:
        """The softphone ``client:<identity>``, registered unless told otherwise."""
        phone = self.phones.get(identity)
        if register and (not phone.registered or auto is not None):
            phone.register(auto)
        return phone

    async def idle(self, quiet: float = 0.2, within: float = 15.0) -> None:
        """Every queued callback delivered, no simulated time under way (Say, Pause,
        a message spoken, a number ringing; not a softphone waiting for a decision
        nor a Gather waiting for a person) and nothing changed for ``quiet`` seconds
        (so the app's reactions, e.g. a REST dial, have landed too)."""
        async with asyncio.timeout(within):
            while True:
                await self.deliverer.idle()
                self._activity.clear()
                try:
                    await asyncio.wait_for(self._activity.wait(), quiet)
                except TimeoutError:
                    moving = self.board.engine.clock.running or self._activity.is_set()
                    if self.deliverer.pending == 0 and not moving:
                        return

    # -- introspection ---------------------------------------------------------------------

    def conferences(self, live_only: bool = False) -> list[dict[str, Any]]:
        """Conferences as Twilio's REST JSON, each with its ``participants``."""
        out = []
        for conference in self.hub.conferences.values():
            if live_only and conference.status == "completed":
                continue
            item = conference_json(conference)
            item["participants"] = [
                participant_json(self.account_sid, p) for p in conference.participants.values()
            ]
            out.append(item)
        return out

    def conference(self, name: str) -> dict[str, Any] | None:
        return next((c for c in reversed(self.conferences()) if c["friendly_name"] == name), None)

    def calls(self) -> list[dict[str, Any]]:
        """Calls as Twilio's REST JSON, with ``listening`` (``keys`` while a
        ``<Gather>`` waits, ``message`` while a ``<Record>`` does, else None)."""
        return [{**call_json(c), "listening": c.plan.listening} for c in self.board.calls.values()]

    def recordings(self) -> list[dict[str, Any]]:
        """Every recording (conferences' and messages') as Twilio's REST JSON."""
        return [recording_json(r) for r in self.hub.recordings.recordings.values()]

    def state(self) -> dict[str, Any]:
        """What the control page shows."""
        phones = [
            {
                "identity": p.identity,
                "registered": p.registered,
                "ringing": list(p.ringing),
                "calls": list(p.calls),
                "auto": p.auto is not None,
            }
            for p in self.phones.phones.values()
        ]
        return {
            "conferences": self.conferences(),
            "calls": self.calls(),
            "phones": phones,
            "recordings": self.recordings(),
            "load": self.load.describe(),
        }


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"
