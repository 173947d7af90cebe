"""Carries out the Twilio actions that committed state changes asked for.

Effects run as background tasks, never on a webhook's path (Twilio waits at most
15 s for an answer, and a slow REST API must not make a caller hear an error).
A failed action is itself recorded as a state change, so it becomes visible: a
dial that could not be placed frees the agent and fails the transfer. A small
sweeper re-runs routing every few seconds, for agents whose wrap-up just ended
and customers whose retry pause is over.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable

from quart import Quart
from redis.exceptions import RedisError

from console.config import Settings
from console.domain import keys
from console.domain.effects import Effect, HangUp, PlaceCall, Route, UpdateParticipant
from console.domain.errors import Contended
from console.domain.events import trim_by_age
from console.domain.transaction import run_unit
from console.domain.unit import Unit
from console.extension import ServingExtension, cancel, settings_of
from console.redis_ext import RedisExtension
from console.telephony.gateway import GatewayError, TwilioGateway
from console.urls import agent_connect_url, call_status_url

log = logging.getLogger(__name__)

SWEEP_SECONDS = 2.0
DRAIN_SECONDS = 10.0
TRIM_EVERY_SWEEPS = 30  # the log's age limit is applied about once a minute


class Runner(ServingExtension):
    """Background executor of effects."""

    key = "runner"

    def __init__(self, app: Quart | None = None) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._routing = False
        self._route_again = False
        self.app: Quart | None = None
        if app is not None:
            self.init_app(app)

    @property
    def settings(self) -> Settings:
        assert self.app is not None
        return settings_of(self.app)

    @property
    def gateway(self) -> TwilioGateway:
        assert self.app is not None
        return TwilioGateway.of(self.app)

    @property
    def redis(self):
        assert self.app is not None
        return RedisExtension.of(self.app).client

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="warmline-sweeper")

    async def stop(self) -> None:
        await cancel(self._sweeper)
        await self.drain(DRAIN_SECONDS)

    async def drain(self, seconds: float = DRAIN_SECONDS) -> None:
        """Wait for every running effect (and the effects they cause) to finish."""
        async with asyncio.timeout(seconds):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def spawn(self, effects: list[Effect]) -> None:
        seen: set[Effect] = set()
        for effect in effects:
            if effect in seen:
                continue
            seen.add(effect)
            task = asyncio.create_task(self._execute(effect))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def unit(
        self,
        change: Callable[[Unit], Awaitable[object]],
        received_at: int | None = None,
        conferences: tuple[str, ...] = (),
    ) -> object:
        """Run a unit of work and spawn the effects it asks for."""
        result, effects = await run_unit(
            self.redis, self.settings, change, received_at, conferences
        )
        self.spawn(effects)
        return result

    async def _execute(self, effect: Effect) -> None:
        try:
            match effect:
                case Route():
                    await self.route()
                case PlaceCall():
                    await self.place_call(effect.conference, effect.dial, effect.agent)
                case HangUp() | UpdateParticipant():
                    await self._request(effect)
        except (RedisError, Contended) as exc:
            log.warning("could not record the outcome of %s: %s", type(effect).__name__, exc)
        except Exception:
            log.exception("effect %s failed", type(effect).__name__)

    async def route(self) -> None:
        """Offer waiting customers to available agents. One routing pass at a time per
        process: a burst of calls each asks for one, and a pass started after another
        finished sees everything it would have (so asks that come while one runs
        become a single pass after it, never a lost one)."""
        from console.domain.routing import assign

        self._route_again = True
        if self._routing:
            return
        self._routing = True
        try:
            while self._route_again:
                self._route_again = False
                await self.unit(assign)
        finally:
            self._routing = False

    async def place_call(self, conference: str, dial: str, agent: str) -> None:
        """Ring an agent's softphone and record the CallSid, or that it failed.
        Never retried: a create that timed out may still ring, and a second one
        would ring twice (the ghost, if any, is hung up when its callback comes)."""
        from console.domain.flow import record_dial_result

        settings = self.settings
        try:
            call_sid: str | None = await self.gateway.dial_client(
                agent,
                agent_connect_url(settings, conference, dial),
                call_status_url(settings, conference, dial),
            )
        except GatewayError:
            call_sid = None
        await self.unit(lambda unit: record_dial_result(unit, conference, dial, call_sid))

    async def _request(self, effect: HangUp | UpdateParticipant) -> None:
        from console.domain.flow import forget_participant_request

        try:
            await request(self.gateway, effect)
        except GatewayError as exc:
            if isinstance(effect, HangUp):
                # A call that already ended answers 404 or "not in progress": nothing to do.
                log.info("hang-up of %s not applied: %s", effect.call_sid, exc.detail)
                return
            await self.unit(
                lambda unit: forget_participant_request(
                    unit, effect.conference, effect.call_sid, effect.params
                )
            )

    async def _sweep(self) -> None:
        for count in itertools.count(1):
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                await self.sweep()
                if count % TRIM_EVERY_SWEEPS == 0:
                    await trim_by_age(self.redis, self.settings.event_log_max_age_hours)
            except (RedisError, Contended, OSError) as exc:
                log.warning("routing sweep skipped: %s", exc)

    async def sweep(self) -> None:
        """Agents whose dashboards are gone go offline, wrap-ups end, then routing
        runs: in one unit, so nobody is dialed into a closed tab."""
        from console.domain.presence import mark_absent_offline
        from console.domain.routing import assign

        last_seen = await self.redis.hgetall(keys.SOCKETS)
        grace = self.settings.agent_grace_seconds

        async def change(unit: Unit) -> int:
            mark_absent_offline(unit, last_seen, grace)
            unit.announce_held_back_queue()
            return await assign(unit)

        await self.unit(change)


def get_runner() -> Runner:
    return Runner.current()


async def request(gateway: TwilioGateway, effect: HangUp | UpdateParticipant) -> None:
    """The REST request of a hang-up or a participant update (what settling asks of
    Twilio), for the runner and for ``warmline reconcile``, which runs without the
    app. Raises GatewayError when it failed."""
    match effect:
        case HangUp():
            await gateway.end_call(effect.call_sid, effect.status)
        case UpdateParticipant():
            await gateway.update_participant(
                effect.conference_sid, effect.call_sid, **effect.params
            )
