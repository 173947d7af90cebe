"""The HTTP control API and page: what the demo, the browser demo softphone and
load tools use to drive the simulator (JSON, CORS for the app's origin).

    GET  /                               the live page (static JS/CSS, CSP-friendly)
    GET  /sim/state                      conferences, participants, calls, phones, load
    POST /sim/calls {"from"?, "keys"?, "message_seconds"?, "message_end"?}
                                         a customer calls in -> 201 {"call_sid"}
    POST /sim/calls/{CA}/hangup          that party hangs up
    POST /sim/calls/{CA}/keys {"digits"} the caller presses keys (a <Gather>)
    POST /sim/calls/{CA}/message {"seconds", "end"?}  the caller leaves a message
    POST /sim/people/{number} {"answer"?, "busy"?, "machine"?, "fails"?, "after"?, "talk"?}
                                         who answers that number when the app dials it
    POST /sim/phones/{id}/register       {"auto"?: "answer"|"decline", "delay"?, "talk"?}
    POST /sim/phones/{id}/unregister
    GET  /sim/phones/{id}/events         Server-Sent Events for that softphone
    POST /sim/phones/calls/{CA}/answer|decline|hangup|mute {"muted"?: bool}
    POST /sim/load {"rate"|"in_flight", "agents", ...}; DELETE /sim/load
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from simulator.load import LoadGenerator, LoadPlan
from simulator.parties import ANSWER, DECLINE, AutoAnswer, Phone, Phones

STATIC = Path(__file__).parent / "static"
HEARTBEAT_SECONDS = 15.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(
            text='{"error": "invalid JSON"}', content_type="application/json"
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text='{"error": "expected an object"}', content_type="application/json"
        )
    return body


class Controlled(Protocol):
    """What the control API drives (``server.Simulator`` is one)."""

    phones: Phones
    load: LoadGenerator

    async def call_in(
        self,
        from_number: str | None = None,
        *,
        keys: str | Sequence[str] | None = None,
        message_seconds: float | None = None,
        message_end: str = "#",
    ) -> str: ...

    def hangup(self, call_sid: str) -> None: ...

    def press(self, call_sid: str, digits: str) -> bool: ...

    def speak(self, call_sid: str, seconds: float, end: str = "#") -> bool: ...

    def person(self, number: str, **behaviour: Any) -> Any: ...

    def allowed_origins(self) -> tuple[str, ...]: ...

    def state(self) -> dict[str, Any]: ...


class ControlApi:
    """Routes over a ``Controlled`` simulator; see the module docstring."""

    def __init__(self, sim: Controlled) -> None:
        self.sim = sim
        self._streams: set[web.StreamResponse] = set()
        self._closing = asyncio.Event()

    def routes(self) -> list[web.RouteDef]:
        calls = "/sim/phones/calls/{sid}"
        return [
            web.get("/", self.index),
            web.static("/static", STATIC),
            web.get("/sim/state", self.state),
            web.post("/sim/calls", self.call_in),
            web.post("/sim/calls/{sid}/hangup", self.hangup),
            web.post("/sim/calls/{sid}/keys", self.press),
            web.post("/sim/calls/{sid}/message", self.speak),
            web.post("/sim/people/{number}", self.person),
            web.post("/sim/phones/{identity}/register", self.register),
            web.post("/sim/phones/{identity}/unregister", self.unregister),
            web.get("/sim/phones/{identity}/events", self.events),
            web.post(calls + "/answer", self.answer),
            web.post(calls + "/decline", self.decline),
            web.post(calls + "/hangup", self.hangup),
            web.post(calls + "/mute", self.mute),
            web.post("/sim/load", self.start_load),
            web.delete("/sim/load", self.stop_load),
        ]

    def close(self) -> None:
        """End open event streams so the server can stop promptly."""
        self._closing.set()

    @web.middleware
    async def cors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """CORS for the app's origin (the browser demo softphone) on /sim/ only."""
        if request.method == "OPTIONS" and request.path.startswith("/sim/"):
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = await handler(request)
        if not response.prepared:  # an event stream set its headers before sending
            self.allow(request, response)
        return response

    def allow(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        if origin is None or not request.path.startswith("/sim/"):
            return
        origins = self.sim.allowed_origins()
        if origin in origins or "*" in origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
            response.headers["Vary"] = "Origin"

    # -- page and state ---------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(self.sim.state())

    # -- customers --------------------------------------------------------------------------

    async def call_in(self, request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            seconds = body.get("message_seconds")
            sid = await self.sim.call_in(
                body.get("from") or None,
                keys=_keys(body.get("keys")),
                message_seconds=float(seconds) if seconds is not None else None,
                message_end=str(body.get("message_end") or "#"),
            )
        except (TypeError, ValueError) as exc:
            return _error(400, str(exc))
        return web.json_response({"call_sid": sid}, status=201)

    async def press(self, request: web.Request) -> web.Response:
        """Keys from the page: they answer the <Gather> listening now, or the next one."""
        sid = request.match_info["sid"]
        digits = (await _body(request)).get("digits")
        if not isinstance(digits, str) or not re.fullmatch(r"[0-9*#]{1,32}", digits):
            return _error(400, "digits: 1 to 32 of 0-9 * #")
        try:
            heard = self.sim.press(sid, digits)
        except KeyError:
            return _error(404, f"no live call {sid}")
        return web.json_response({"call_sid": sid, "digits": digits, "heard": heard})

    async def speak(self, request: web.Request) -> web.Response:
        """A message from the page: ``seconds`` long, ending with ``end``."""
        sid = request.match_info["sid"]
        body = await _body(request)
        try:
            seconds = float(body.get("seconds"))  # type: ignore[arg-type]
            if not 0 <= seconds <= 3600:
                raise ValueError("seconds: 0 to 3600")
            heard = self.sim.speak(sid, seconds, str(body.get("end") or "#"))
        except (TypeError, ValueError) as exc:
            return _error(400, str(exc))
        except KeyError:
            return _error(404, f"no live call {sid}")
        return web.json_response({"call_sid": sid, "seconds": seconds, "heard": heard})

    async def person(self, request: web.Request) -> web.Response:
        """Who answers a phone number the app dials."""
        number = request.match_info["number"]
        body = await _body(request)
        flags = {k: bool(body[k]) for k in ("answer", "busy", "fails") if k in body}
        if "machine" in body:
            machine = body["machine"]
            flags["machine"] = machine if isinstance(machine, str) else bool(machine)
        try:
            for name in ("after", "talk"):
                if body.get(name) is not None:
                    flags[name] = float(body[name])
        except (TypeError, ValueError):
            return _error(400, "after and talk are seconds")
        person = self.sim.person(number, **flags)
        return web.json_response(dataclasses.asdict(person))

    async def hangup(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        phone = self.sim.phones.owner(sid)
        try:
            if phone is not None:
                phone.hangup(sid)
            else:
                self.sim.hangup(sid)
        except KeyError:
            return _error(404, f"no call {sid}")
        return web.json_response({"call_sid": sid, "hung_up": True})

    # -- softphones -------------------------------------------------------------------------

    def _phone(self, request: web.Request) -> Phone:
        return self.sim.phones.get(request.match_info["identity"])

    async def register(self, request: web.Request) -> web.Response:
        body = await _body(request)
        action = body.get("auto")
        auto = None
        if action in ("answer", "decline"):
            auto = AutoAnswer(
                ANSWER if action == "answer" else DECLINE,
                float(body.get("delay", 0)),
                float(body["talk"]) if body.get("talk") is not None else None,
            )
        phone = self._phone(request).register(auto)
        return web.json_response({"identity": phone.identity, "registered": True})

    async def unregister(self, request: web.Request) -> web.Response:
        phone = self._phone(request)
        phone.unregister()
        return web.json_response({"identity": phone.identity, "registered": False})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: ``incoming``, ``connected``, ``ended``, ``muted``..."""
        phone = self._phone(request)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        self.allow(request, response)
        await response.prepare(request)
        queue = phone.subscribe()
        self._streams.add(response)
        try:
            await _send(
                response,
                {
                    "type": "hello",
                    "identity": phone.identity,
                    "registered": phone.registered,
                    "calls": list(phone.calls),
                },
            )
            while not self._closing.is_set():
                try:
                    event = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                await _send(response, event)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            phone.unsubscribe(queue)
            self._streams.discard(response)
        return response

    def _ringing_or_live(self, sid: str) -> Phone:
        phone = self.sim.phones.owner(sid)
        if phone is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": f"no softphone call {sid}"}),
                content_type="application/json",
            )
        return phone

    async def answer(self, request: web.Request) -> web.Response:
        return self._decide(request, "answer")

    async def decline(self, request: web.Request) -> web.Response:
        return self._decide(request, "decline")

    def _decide(self, request: web.Request, what: str) -> web.Response:
        sid = request.match_info["sid"]
        phone = self._ringing_or_live(sid)
        try:
            (phone.answer if what == "answer" else phone.decline)(sid)
        except KeyError:
            return _error(409, f"call {sid} is not ringing")
        return web.json_response({"call_sid": sid, what: True})

    async def mute(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        muted = bool((await _body(request)).get("muted", True))
        self._ringing_or_live(sid).mute(sid, muted)
        return web.json_response({"call_sid": sid, "muted": muted})

    # -- load ---------------------------------------------------------------------------------

    async def start_load(self, request: web.Request) -> web.Response:
        body = await _body(request)
        fields = ("rate", "in_flight", "answer_delay", "talk", "patience")
        try:
            plan = LoadPlan(
                agents=tuple(body.get("agents") or ()),
                **{k: body[k] for k in fields if body.get(k) is not None},
            )
            self.sim.load.start(plan)
        except (TypeError, ValueError) as exc:
            return _error(400, str(exc))
        return web.json_response(self.sim.load.describe(), status=201)

    async def stop_load(self, request: web.Request) -> web.Response:
        await self.sim.load.stop()
        return web.json_response({"stopped": True})


async def _send(response: web.StreamResponse, event: dict[str, Any]) -> None:
    data = json.dumps(event)
    await response.write(f"event: {event['type']}\ndata: {data}\n\n".encode())


def _keys(value: Any) -> str | list[str] | None:
    """``keys`` of a new call: a string (the first Gather's) or a list of strings."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ValueError("keys: a string or a list of strings")
