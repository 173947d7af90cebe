"""The unit of work's transaction: a change to Warmline's state made as one atomic
step, and made again from the current state when it lost a race.

A change runs on a Unit (console/domain/unit.py) started from the agents, the queue
and the conferences it names, is settled (console/domain/settle.py), and commits its
state and events in one MULTI, which runs only if what the unit started from is
still so (console/domain/unit_state.py). If anything changed meanwhile, the change
runs again from the current state, so two processes can never both dial one agent or
give one customer to two agents.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from redis.asyncio import Redis

from console.config import Settings
from console.domain.effects import Effect
from console.domain.errors import Contended
from console.domain.events import now_ms
from console.domain.settle import settle
from console.domain.unit import Unit
from console.domain.unit_state import (
    Committed,
    LostRace,
    Start,
    check,
    commit,
    read_start,
    state_copy,
    what_changed,
)

T = TypeVar("T")

MAX_ATTEMPTS = 64
RAISED_ON_COPY = "raised on the process's copy"

# One unit at a time per client (per process, in the app): every unit reads the
# agents and the queue, so two running side by side in one process would mostly make
# one of them start over. Units of other processes still race; the commit's check
# decides. A unit whose commit moves no version (it wrote conferences only: most
# callbacks of a call in progress) gives its turn back once the commit is sent, its
# conferences in the copy as they will be, so the next unit computes while that round
# trip is under way (a commit that then fails leaves the copy stale, which the next
# check finds). Not an incoming call's: with several processes that measured slower
# (bench/RESULTS.md).
_turns: weakref.WeakKeyDictionary[Redis, asyncio.Lock] = weakref.WeakKeyDictionary()


def _turn(redis: Redis) -> asyncio.Lock:
    lock = _turns.get(redis)
    if lock is None:
        lock = _turns[redis] = asyncio.Lock()
    return lock


class _Turn:
    """A unit's turn, which it may give back before its attempt is over."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock = lock
        self.given_back = False

    async def __aenter__(self) -> _Turn:
        await self._lock.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.give_back()

    def give_back(self) -> None:
        if not self.given_back:
            self.given_back = True
            self._lock.release()


async def run_unit(
    redis: Redis,
    settings: Settings,
    change: Callable[[Unit], Awaitable[T]],
    received_at: int | None = None,
    conferences: tuple[str, ...] = (),
) -> tuple[T, list[Effect]]:
    """Run ``change`` as one atomic unit, retrying it when it lost a race.
    ``received_at`` (default: now) stamps its events: an event's ``ts``
    (docs/websocket.md) is when the app received what caused it, not when a retry
    finally committed. ``conferences`` the change will load are read with the rest,
    in one trip (or taken from the process's copy: console/domain/unit_state.py)."""
    received_at = received_at or now_ms()
    copy = state_copy(redis)
    fresh: Start | None = None  # the current state, as a failed check answered it
    read_first = False  # the change raised on the copy: what it raises on a read stands
    refused: tuple[Unit, Start | str] | None = None  # the last attempt, for the log
    for attempt in range(MAX_ATTEMPTS):
        async with _Turn(_turn(redis)) as turn:
            start = fresh or (None if read_first else copy.start(conferences))
            start = start or await read_start(redis, conferences)
            unit = Unit(redis, settings, received_at, start, copy)
            outcome = await _attempt(unit, change, turn)
        if isinstance(outcome, _Done):
            return outcome.result, unit.effects
        refused = unit, outcome
        if isinstance(outcome, Start) and unit.start.from_copy and attempt == 0:
            fresh = outcome  # only the copy was behind: go again at once from Redis's state
            continue
        if outcome == RAISED_ON_COPY:
            # Go again at once from a read. Not from the copy: other units may have
            # brought it up to date meanwhile, and a refusal that holds (409, no agent
            # available) would then be retried until the unit gave up (a 503).
            read_first, fresh = True, None
            continue
        # Lost a race with another process: exponential backoff with jitter, so that
        # the two do not retry in step (every unit reads the agents and the queue),
        # then a new read. The turn is given back meanwhile, for a unit that may win.
        fresh = None
        await asyncio.sleep(random.uniform(0, min(0.001 * 2**attempt, 0.05)))
    raise Contended(f"state kept changing under this request (last: {_why(refused)}); try again")


def _why(refused: tuple[Unit, Start | str] | None) -> str:
    """Why the last attempt did not commit: worked out once, for the unit that gave
    up, not on every retry."""
    if refused is None:
        return "no attempt"
    unit, outcome = refused
    if isinstance(outcome, Start):
        return what_changed(unit.start, unit.first_seen(), outcome)
    return outcome


@dataclass
class _Done(Generic[T]):
    result: T


async def _attempt(
    unit: Unit, change: Callable[[Unit], Awaitable[T]], turn: _Turn
) -> _Done[T] | Start | str:
    """One attempt: done, or the current state to start again from, or why not
    (the next attempt reads the state)."""
    redis, start, copy = unit.redis, unit.start, state_copy(unit.redis)
    try:
        result = await change(unit)
        await settle(unit)
        await unit.fold_callbacks()
    except Exception:
        if not start.from_copy:
            raise
        # Decided on the process's copy, a refusal (404, 409...) must hold on what
        # Redis holds now, and a failure may come from a copy that disagrees with
        # Redis in a way no version shows (a hand-made edit): run once more from a
        # read, and what that raises stands.
        copy.forget()
        return RAISED_ON_COPY
    seen = unit.first_seen()
    try:
        if unit.write():
            writes, line = unit.writes(), unit.line_check()
            sent = None
            if start.from_copy and not unit.wrote:  # conferences only: see _turns

                def sent() -> None:
                    copy.expect(unit.written, unit.pictures)
                    turn.give_back()

            outcome = await commit(
                redis,
                start,
                seen,
                writes,
                unit.wrote,
                line,
                unit.written,
                unit.agents_written,
                sent,
            )
        elif start.from_copy:
            held = await check(redis, start, seen, unit.line_check())
            outcome = held or Committed(start.versions)
        else:
            outcome = Committed(start.versions)  # read just now, nothing to write: done
    except LostRace:
        copy.outdated(None)
        return "a commit came between its check and its EXEC"
    if isinstance(outcome, Start):
        copy.outdated(outcome)
        return outcome
    if turn.given_back:  # later units may have moved the copy on: it holds this one's
        copy.kept(start)
    else:
        copy.committed(start, outcome.versions, unit.after(outcome.line))
    return _Done(result)
