"""Simulated agents for the demo (SPEC §7, `warmline demo --bots N`): each bot signs in
to the app over HTTP, keeps a dashboard socket (`/ws`) open as its presence, goes
available, answers its softphone (``client:<name>``, auto-answered by the simulator),
now and then hands the call on with a warm transfer, gives each call a disposition,
goes Ready again and sometimes takes a break.

Bots talk to the app only as a browser would (login form, JSON API, WebSocket); they
drive their softphone through the simulator object they run beside. A bot never
raises: failures are logged and it tries again, until ``Bots.stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from simulator.calls import Switchboard
from simulator.parties import AutoAnswer, Phone

log = logging.getLogger(__name__)

PING_SECONDS = 10.0  # as the browser's dashboard (static/js/ws.js)
RETRY_SECONDS = 2.0  # real seconds between attempts after a failure
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass(frozen=True)
class BotPlan:
    """How bots behave; durations in simulated seconds (scaled by the simulator's
    ``time_scale``), ranges as ``(low, high)`` drawn uniformly."""

    answer_delay: tuple[float, float] = (1.0, 4.0)
    talk: tuple[float, float] = (20.0, 60.0)
    wrap_up: tuple[float, float] = (2.0, 6.0)  # from the call's end to the disposition
    transfer_share: float = 0.2  # calls handed on to any available colleague
    transfer_after: tuple[float, float] = (0.2, 0.4)  # share of the talk time
    break_share: float = 0.15  # after a call, a break instead of Ready
    break_length: tuple[float, float] = (30.0, 90.0)
    notes: str = ""


class Exchange(Protocol):
    """What bots need of the simulator (``server.Simulator`` is one)."""

    board: Switchboard  # its time_scale scales the bots' durations too
    rng: random.Random

    def phone(
        self, identity: str, *, register: bool = True, auto: AutoAnswer | None = None
    ) -> Phone: ...


class RequestRefused(Exception):
    """The app answered an API request with an error status."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body[:200]}")
        self.status = status


class Bots:
    """N bots against one app; ``start`` once the app serves, ``stop`` before it stops."""

    def __init__(
        self,
        app_url: str,
        sim: Exchange,
        usernames: Sequence[str],
        password: str,
        *,
        rng: random.Random | None = None,
        plan: BotPlan | None = None,
    ) -> None:
        rng = rng or sim.rng
        plan = plan or BotPlan()
        scale = sim.board.time_scale
        self.bots = [Bot(app_url, sim, name, password, rng, plan, scale) for name in usernames]
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(bot.run(), name=f"bot {bot.username}") for bot in self.bots
        ]

    async def stop(self) -> None:
        """Cancel every bot and wait for it to close its socket and session."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def running(self) -> int:
        return sum(not task.done() for task in self._tasks)


@dataclass
class Bot:
    """One simulated agent; see the module docstring."""

    app_url: str
    sim: Exchange
    username: str
    password: str
    rng: random.Random
    plan: BotPlan
    time_scale: float = 1.0
    status: str = "offline"  # as the app last told this bot
    calls: int = 0  # calls answered
    dispositions: tuple[str, ...] = ()
    break_reasons: tuple[str, ...] = ()
    _http: aiohttp.ClientSession | None = field(default=None, repr=False)
    _on_break: bool = False
    _talk: float = 0.0  # the talk time the softphone is armed with
    _current: str | None = None  # the conference the bot is in now
    _transfer: str | None = None  # a conference whose transfer this bot started
    _chores: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Sign in and work until cancelled; any failure is logged and retried."""
        try:
            while True:
                try:
                    await self._session()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bot never brings the demo down
                    log.info("bot %s: %s; trying again", self.username, _describe(exc))
                await asyncio.sleep(RETRY_SECONDS)
        finally:
            await self._close()
            self.sim.phone(self.username, register=False).unregister()

    async def _session(self) -> None:
        """One login and one dashboard socket, until the socket closes."""
        await self._close()
        jar = aiohttp.CookieJar(unsafe=True)  # the app is at an IP address
        self._http = aiohttp.ClientSession(cookie_jar=jar, timeout=REQUEST_TIMEOUT)
        form = {"username": self.username, "password": self.password}
        async with self._http.post(
            f"{self.app_url}/login", data=form, allow_redirects=False
        ) as response:
            if response.status != 303:
                raise RequestRefused(response.status, await response.text())
        me = await self._api("GET", "/api/me")
        self.dispositions = tuple(me.get("dispositions") or ())
        self.break_reasons = tuple(me.get("break_reasons") or ())
        self._arm_phone()
        ws_url = self.app_url.replace("http", "ws", 1) + "/ws"
        async with self._http.ws_connect(ws_url, heartbeat=None) as socket:
            pinger = asyncio.create_task(self._ping(socket))
            try:
                await self._ready()  # a break a lost socket cut short ends here too
                async for message in socket:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        self._handle(json.loads(message.data))
                    elif message.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                        break
            finally:
                pinger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pinger
        log.info("bot %s: dashboard socket closed (%s)", self.username, socket.close_code)

    async def _ping(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        """Keep-alive pings, as the browser sends them."""
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            while not socket.closed:
                await socket.send_str('{"type":"ping"}')
                await asyncio.sleep(PING_SECONDS)

    async def _close(self) -> None:
        chores, self._chores = self._chores, set()
        for chore in chores:
            chore.cancel()
        await asyncio.gather(*chores, return_exceptions=True)
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    # -- what the dashboard says ----------------------------------------------------------

    def _handle(self, message: dict[str, Any]) -> None:
        kind, data = message.get("type"), message.get("data") or {}
        if kind == "snapshot":
            self._snapshot(data)
        elif kind == "agent.updated" and data.get("username") == self.username:
            self._status(data.get("status", "offline"))
        elif kind == "participant.joined" and data.get("role") == "agent":
            self._joined(data)
        elif kind == "participant.left" and data.get("agent") == self.username:
            if data.get("conference") == self._current:
                self._current = None
                self._chore(self._after_call(data["conference"]))
        elif (
            kind == "transfer.updated"
            and data.get("conference") == self._transfer
            and data.get("status") in ("completed", "failed", "canceled")
        ):
            self._transfer = None

    def _snapshot(self, state: dict[str, Any]) -> None:
        me = next((a for a in state.get("agents", ()) if a["username"] == self.username), None)
        self.status = me["status"] if me else "offline"
        mine = [
            c["name"]
            for c in state.get("conferences", ())
            if any(p.get("agent") == self.username for p in c.get("participants", ()))
        ]
        self._current = mine[0] if mine else None

    def _status(self, status: str) -> None:
        self.status = status
        if status in ("missed", "offline") and not self._on_break:
            # A ring let go or the presence lost: back to work, as an agent would.
            self._chore(self._later(self._ready, 1.0))

    def _joined(self, participant: dict[str, Any]) -> None:
        conference = participant.get("conference")
        if participant.get("agent") == self.username:
            self._current = conference
            self.calls += 1
            if self.rng.random() < self.plan.transfer_share:
                delay = self._talk * self.rng.uniform(*self.plan.transfer_after)
                self._chore(self._later(lambda: self._hand_on(conference), delay))
        elif conference is not None and conference == self._transfer:
            # The colleague is with the customer: leave them to it.
            self._transfer = None
            self._chore(self._call(f"/api/conferences/{conference}/leave"))

    # -- what the bot does ----------------------------------------------------------------

    def _arm_phone(self) -> None:
        """Register the softphone to answer the next call, with a fresh talk time."""
        self._talk = self.rng.uniform(*self.plan.talk)
        delay = self.rng.uniform(*self.plan.answer_delay)
        self.sim.phone(self.username, auto=AutoAnswer(delay=delay, talk=self._talk))

    async def _ready(self) -> None:
        self._on_break = False
        if self.status not in ("ringing", "busy"):
            await self._call("/api/me/status", {"status": "available"})

    async def _hand_on(self, conference: str) -> None:
        if self._current != conference:
            return
        self._transfer = conference
        body = {"conference": conference, "to": None, "note": "bot transfer"}
        if not await self._call("/api/transfers", body):
            self._transfer = None

    async def _after_call(self, conference: str) -> None:
        """Wrap-up: a disposition for the call, then Ready or a break."""
        self._transfer = None if self._transfer == conference else self._transfer
        self._arm_phone()
        await self._sleep(self.rng.uniform(*self.plan.wrap_up))
        if self.dispositions:
            disposition = self.rng.choice(self.dispositions)
            body = {"disposition": disposition, "notes": self.plan.notes}
            await self._call(f"/api/calls/{conference}/wrap-up", body)
        if self._current is not None:
            return  # already on the next call
        if self.break_reasons and self.rng.random() < self.plan.break_share:
            reason = self.rng.choice(self.break_reasons)
            length = self.rng.uniform(*self.plan.break_length)
            if await self._call("/api/me/status", {"status": "break", "reason": reason}):
                self._on_break = True
                await self._sleep(length)
        await self._ready()

    # -- plumbing -------------------------------------------------------------------------

    def _chore(self, work: Any) -> None:
        """Run ``work`` beside the socket's loop; cancelled with the session."""
        task = asyncio.create_task(work)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def _later(self, action: Any, seconds: float) -> None:
        await self._sleep(seconds)
        await action()

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds * self.time_scale)

    async def _call(self, path: str, body: dict[str, Any] | None = None) -> bool:
        """POST to the app; False (logged at debug) when it refuses or cannot be reached."""
        try:
            await self._api("POST", path, body if body is not None else {})
        except RequestRefused as exc:
            log.debug("bot %s: POST %s refused: %s", self.username, path, exc)
            return False
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("bot %s: POST %s failed: %s", self.username, path, _describe(exc))
            return False
        return True

    async def _api(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        if self._http is None:
            raise aiohttp.ClientConnectionError("not signed in")
        async with self._http.request(method, f"{self.app_url}{path}", json=body) as response:
            if response.status >= 400:
                raise RequestRefused(response.status, await response.text())
            return await response.json()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
