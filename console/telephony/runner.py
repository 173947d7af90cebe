"""Carries out the Twilio actions that committed state changes asked for.

Effects run as background tasks, never on a webhook's path (Twilio waits at most
15 s for an answer, and a slow REST API must not make a caller hear an error).
A failed action is itself recorded as a state change, so it becomes visible: a
dial that could not be placed frees the agent and fails the transfer. A small
sweeper re-runs routing every few seconds, for agents whose wrap-up just ended
and customers whose retry pause is over, and frees agents dialed for a customer
who never reached the conference.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import Awaitable, Callable

from quart import Quart
from redis.exceptions import RedisError

from console.config import Settings
from console.domain import alerts, keys
from console.domain.derive import CUSTOMER_LABEL, derive
from console.domain.effects import (
    DialNumber,
    Effect,
    HangUp,
    MoveCall,
    PlaceCall,
    Route,
    UpdateParticipant,
)
from console.domain.errors import Contended
from console.domain.events import now_ms
from console.domain.history_log import trim_log
from console.domain.records import CALL_ENDED, ConferenceRecord
from console.domain.transaction import run_unit
from console.domain.unit import Unit
from console.extension import ServingExtension, settings_of
from console.redis_ext import RedisExtension
from console.tasks import cancel
from console.telephony.gateway import GatewayError, TwilioGateway
from console.urls import agent_connect_url, call_status_url, long_wait_url

log = logging.getLogger(__name__)

SWEEP_SECONDS = 2.0
DRAIN_SECONDS = 10.0
TRIM_EVERY_SWEEPS = 30  # the log's trim (console.domain.history_log) runs about once a minute
ASK_TWILIO_MIN_MS = 2000  # the least wait before asking Twilio about a customer (again)
LONG_WAIT_SCAN = 32  # the head of the line searched for MAX_WAIT_SECONDS (oldest first)


class Runner(ServingExtension):
    """Background executor of effects."""

    key = "runner"

    def __init__(self, app: Quart | None = None) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._stranded: asyncio.Task[None] | None = None  # the check of stranded agents
        self._routing = False
        self._route_again = False
        self._stop = asyncio.Event()
        self._arrived: set[str] = set()  # engaged conferences whose customer joined
        self._recheck: dict[str, int] = {}  # conference -> when to ask Twilio again (ms)
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
        self._stop = asyncio.Event()
        self._sweeper = asyncio.create_task(self._sweep(), name="warmline-sweeper")

    async def stop(self) -> None:
        # The flag as well as the cancellation: redis-py may turn a cancellation that
        # lands in a read into its own timeout error, which the loop would sleep off.
        self._stop.set()
        await cancel(self._sweeper)
        await cancel(self._stranded)
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
                case DialNumber():
                    await self.dial_number(effect)
                case MoveCall():
                    await self.move_call(effect.call_sid)
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

    async def dial_number(self, effect: DialNumber) -> None:
        """Dial a callback's number into its conference and record the CallSid, or
        that it failed (the agent is told; never retried, as for agents)."""
        from console.domain.flow import record_dial_result

        settings = self.settings
        try:
            call_sid: str | None = await self.gateway.add_number(
                effect.conference_sid,
                effect.number,
                CUSTOMER_LABEL,
                call_status_url(settings, effect.conference, effect.dial),
            )
        except GatewayError:
            call_sid = None
        conference, dial = effect.conference, effect.dial
        await self.unit(lambda unit: record_dial_result(unit, conference, dial, call_sid))

    async def dial_external(
        self, conference: str, conference_sid: str, dial: str, number: str
    ) -> None:
        """Dial an external transfer's number into the conference (labelled by its
        dial) and record the CallSid, or that it failed (the transfer fails)."""
        from console.domain.flow import record_dial_result

        try:
            call_sid: str | None = await self.gateway.add_number(
                conference_sid,
                number,
                dial,
                call_status_url(self.settings, conference, dial),
                detect_machine=False,
            )
        except GatewayError:
            call_sid = None
        await self.unit(lambda unit: record_dial_result(unit, conference, dial, call_sid))

    async def move_call(self, call_sid: str) -> None:
        """Move a caller who waited MAX_WAIT_SECONDS to the choice; if Twilio refuses,
        they wait on as before, or leave the line when their call is over."""
        from console.domain.flow import not_moved

        try:
            await self.gateway.move_call(call_sid, long_wait_url(self.settings, call_sid))
        except GatewayError as exc:
            log.info("move of %s to the longest-wait choice failed: %s", call_sid, exc.detail)
            gone = exc.status == 404 or await self._customer_call_over(call_sid)
            await self.unit(lambda unit: not_moved(unit, call_sid, gone), conferences=(call_sid,))

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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), SWEEP_SECONDS)
            if self._stop.is_set():
                return
            try:
                await self.sweep()
                if count % TRIM_EVERY_SWEEPS == 0:
                    await trim_log(self.redis, self.settings)
            except (RedisError, Contended, OSError) as exc:
                if self._stop.is_set():
                    return  # stopping: the cancellation reached a Redis read as its timeout
                log.warning("routing sweep skipped: %s", exc)

    async def sweep(self) -> None:
        """Agents whose dashboards are gone go offline, wrap-ups end, then routing
        runs: in one unit, so nobody is dialed into a closed tab. Then, in the
        background, agents dialed for a customer who never came are freed."""
        from console.domain.callbacks import unanswered_choices
        from console.domain.flow import engaged_conferences, move_out, not_moved
        from console.domain.presence import mark_absent_offline
        from console.domain.routing import assign

        last_seen = await self.redis.hgetall(keys.SOCKETS)
        grace = self.settings.agent_grace_seconds
        engaged: set[str] = set()

        head: list[str] = []
        stale: list[str] = []  # moved to the choice a minute ago, still in line

        async def change(unit: Unit) -> int:
            mark_absent_offline(unit, last_seen, grace)
            unit.announce_held_back_queue()
            engaged.clear()
            engaged.update(engaged_conferences(unit))
            head[:] = unit.queue[:LONG_WAIT_SCAN]
            for call_sid in await move_out(unit, head):
                unit.effects.append(MoveCall(call_sid))
            if self.settings.max_wait_seconds is not None:  # move_out fetched the head
                stale[:] = unanswered_choices(unit, head)
            return await assign(unit)

        await self.unit(change)
        await alerts.check(self.redis, self.settings, now_ms())
        for call_sid in stale:
            # Nothing came of their choice: one whose call is over hung up at the prompt.
            if await self._customer_call_over(call_sid):
                gone = functools.partial(not_moved, call_sid=call_sid, gone=True)
                await self.unit(gone, conferences=(call_sid,))
        if self._stranded is None or self._stranded.done():
            # In the background: asking Twilio must not hold up the next routing sweep.
            self._stranded = asyncio.create_task(self._check_stranded(engaged))

    async def _check_stranded(self, engaged: set[str]) -> None:
        try:
            await self.free_stranded_agents(engaged)
        except (RedisError, Contended, OSError) as exc:
            log.warning("check of agents without a customer skipped: %s", exc)
        except Exception:
            log.exception("check of agents without a customer failed")

    async def free_stranded_agents(self, engaged: set[str]) -> list[str]:
        """Of the conferences agents are dialed into or in (``engaged``), end those whose
        customer never joined and whose call Twilio says is over (SPEC §11): asked once
        the call is half of AGENT_GRACE_SECONDS old, so the agent is free within it.
        A customer whose call is still up is asked about again that much later (their
        join may have been lost; they may be there). Returns the conferences ended."""
        from console.domain.flow import customer_joined, end_without_customer

        # At least a sweep apart, so AGENT_GRACE_SECONDS=0 does not ask on every sweep.
        now, wait = now_ms(), max(self.settings.agent_grace_seconds * 500, ASK_TWILIO_MIN_MS)
        self._arrived &= engaged
        self._recheck = {n: at for n, at in self._recheck.items() if n in engaged}
        names = sorted(n for n in engaged - self._arrived if self._recheck.get(n, 0) <= now)
        if not names:
            return []
        ended: list[str] = []
        raws = await self.redis.mget([keys.conference(name) for name in names])
        for name, raw in zip(names, raws, strict=True):
            record = ConferenceRecord.from_json(raw) if raw else None
            # A callback's conference has no customer until its number answers
            # (SPEC §9, §11): its agent waiting alone is not stranded.
            if record is not None and (customer_joined(record) or record.callback is not None):
                self._arrived.add(name)
                continue
            if record is None or record.created_at > now - wait:
                continue
            if derive(record).status == "ended":
                continue
            if not await self._customer_call_over(name):
                self._recheck[name] = now + wait
                continue
            end = functools.partial(end_without_customer, name=name)
            await self.unit(end, conferences=(name,))
            ended.append(name)
        return ended

    async def _customer_call_over(self, call_sid: str) -> bool:
        """Twilio says the customer's call has ended, or never had it (404). False
        when it is up, or Twilio cannot say now."""
        try:
            call = await self.gateway.fetch_call(call_sid)
        except GatewayError as exc:
            return exc.status == 404
        return str(call.status) in CALL_ENDED


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
