"""Load generation: customers calling at a rate, or N calls kept in flight, with
auto-answering softphones for named agents. Every customer hangs up after
``patience`` simulated seconds if the call has not ended by then, so a load run
never leaves calls behind."""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from simulator.calls import Switchboard
from simulator.parties import AutoAnswer, Phone

POLL_SECONDS = 0.05


@dataclass
class LoadPlan:
    """``rate`` calls per real second, or ``in_flight`` live customer calls."""

    rate: float | None = None
    in_flight: int | None = None
    agents: tuple[str, ...] = ()
    answer_delay: float = 2.0
    talk: float = 30.0
    patience: float = 120.0
    message_seconds: float | None = 6.0  # a caller asked for a message leaves one this long
    # This share of callers call from a number the app may call back (+1 202 555-01xx)
    # and press 1 when offered a callback; the others press nothing.
    callback_share: float = 0.0


class Exchange(Protocol):
    """What load generation needs of the simulator (``server.Simulator`` is one)."""

    board: Switchboard
    rng: random.Random  # the simulator's (seeded with --seed)

    async def call_in(
        self,
        from_number: str | None = None,
        *,
        keys: str | None = None,
        message_seconds: float | None = None,
    ) -> str: ...

    def phone(
        self, identity: str, *, register: bool = True, auto: AutoAnswer | None = None
    ) -> Phone: ...


class LoadGenerator:
    """Runs one ``LoadPlan`` at a time against an ``Exchange``."""

    def __init__(self, sim: Exchange) -> None:
        self.sim = sim
        self.plan: LoadPlan | None = None
        self.placed = 0
        self._task: asyncio.Task[None] | None = None
        self._live: set[str] = set()

    def start(self, plan: LoadPlan) -> None:
        if plan.rate is None and plan.in_flight is None:
            raise ValueError("give a rate or an in_flight count")
        self._cancel()
        self.plan = plan
        for agent in plan.agents:
            self.sim.phone(agent, auto=AutoAnswer(delay=plan.answer_delay, talk=plan.talk))
        self._task = asyncio.create_task(self._run(plan))

    async def stop(self) -> None:
        task = self._task
        self._cancel()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.plan = None

    def describe(self) -> dict[str, Any] | None:
        if self.plan is None:
            return None
        return {**asdict(self.plan), "placed": self.placed, "live": len(self._live_calls())}

    def _live_calls(self) -> set[str]:
        calls = self.sim.board.calls
        self._live = {sid for sid in self._live if sid in calls and not calls[sid].ended}
        return self._live

    async def _run(self, plan: LoadPlan) -> None:
        while True:
            if plan.rate is not None:
                await self._place(plan)
                await asyncio.sleep(1 / plan.rate)
            else:
                while len(self._live_calls()) < (plan.in_flight or 0):
                    await self._place(plan)
                await asyncio.sleep(POLL_SECONDS)

    async def _place(self, plan: LoadPlan) -> None:
        if self.sim.rng.random() < plan.callback_share:
            number = f"+1202555{self.sim.rng.randrange(100, 200):04d}"
            sid = await self.sim.call_in(number, keys="1", message_seconds=plan.message_seconds)
        else:
            sid = await self.sim.call_in(message_seconds=plan.message_seconds)
        self.placed += 1
        self._live.add(sid)
        loop = asyncio.get_running_loop()
        loop.call_later(plan.patience * self.sim.board.time_scale, self._give_up, sid)

    def _give_up(self, call_sid: str) -> None:
        call = self.sim.board.calls.get(call_sid)
        if call is not None and not call.ended:
            self.sim.board.hangup(call_sid)
