"""A unit of work: read, change and commit Warmline's state in one atomic step.

Every state change runs as a unit: it starts from the agents, the queue and each
conference it loads (console/unit_state.py: read in one trip, or taken from this
process's own copy), changes them in memory, *settles* the consequences (an agent
released when their call ends, a customer requeued when nobody is with them, the
endConferenceOnExit flags SPEC §1.8 asks for), derives the events from the
difference between before and after, and commits state and events in one MULTI,
which runs only if what the unit started from is still so. If anything changed
meanwhile, the unit runs again from the current state, so two processes can never
both dial one agent or give one customer to two agents.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from console.config import Settings
from console.domain import keys
from console.domain.derive import (
    ConferenceView,
    Participant,
    derive,
    dial_active,
    dial_finished,
)
from console.domain.effects import Effect, HangUp, Route, UpdateParticipant
from console.domain.errors import Contended
from console.domain.events import Event, append_events, now_ms
from console.domain.projections import project
from console.domain.records import (
    CALL_UNANSWERED,
    Agent,
    AgentStatus,
    ConferenceRecord,
    DialKind,
    Queued,
    TransferStatus,
)
from console.domain.unit_state import (
    After,
    LostRace,
    Start,
    StateCopy,
    check,
    commit,
    read_start,
    state_copy,
    what_changed,
)
from console.domain.waiting_line import (
    EAGER_QUEUE_UPDATES,
    QUEUE_UPDATE_INTERVAL_MS,
    LineChange,
    QueueInfo,
    line_change,
    write_change,
)
from console.urls import hold_url

T = TypeVar("T")

MAX_ATTEMPTS = 64
ENDED_RETENTION_SECONDS = 24 * 3600  # timelines are kept a day after the call
RAISED_ON_COPY = "raised on the process's copy"
HOLD_REQUEST_MS = 60_000  # a hold change this long after the request is not its doing


@dataclass
class _Loaded:
    raw: str | None
    record: ConferenceRecord | None
    view: ConferenceView | None


class Unit:
    """One attempt at an atomic change; see the module docstring."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        now: int,
        start: Start,
        copy: StateCopy | None = None,
    ) -> None:
        self.redis = redis  # reads beyond the start; the commit's check covers them
        self.pipe: Pipeline = redis.pipeline(transaction=True)  # collects the writes
        self.settings = settings
        self.now = now
        self.start = start
        self._copy = copy if start.from_copy else None
        self._agents_raw = start.agents
        self._agents_before = {n: Agent.from_json(raw) for n, raw in start.agents.items()}
        self.agents = {n: Agent.from_json(raw) for n, raw in start.agents.items()}
        self.queue = list(start.queue)
        self._queue_before = list(start.queue)
        self.queued = QueueInfo()
        self._queue_announced = dict(start.announced)
        self._announced_before = start.announced
        self._flush_queue = False
        self.events: list[Event] = []
        self.effects: list[Effect] = []
        self._conferences: dict[str, ConferenceRecord | None] = {}
        self._before: dict[str, _Loaded] = {}
        self._dequeued: dict[str, str] = {}
        self._new_transfers: dict[str, str] = {}
        self._settled_status: dict[str, str] = {}  # conference -> status after settling
        self._line: LineChange | None = None  # how settle() found the line changed
        self._settled = False
        self._written: dict[str, str] = {}  # conferences the commit writes, for the copy
        self._agents_written: dict[str, str] = {}
        self.wrote: set[str] = set()  # "agents", "queue": the versions the commit moves
        for name, raw in start.conferences.items():
            self._remember(name, raw)

    async def conference(self, name: str) -> ConferenceRecord | None:
        """Load one conference aggregate; cached for the unit."""
        if name not in self._conferences:
            await self.preload([name])
        return self._conferences[name]

    async def preload(self, names: list[str]) -> None:
        """Load several conferences in one trip (none when the process's copy holds
        them): routing offers up to one customer per available agent."""
        missing = []
        for name in dict.fromkeys(names):
            if name in self._conferences:
                continue
            digests: dict[str, str] = {}
            found, raw = self._copy.conference(name, digests) if self._copy else (False, None)
            if found:
                self.start.digests.update(digests)
                self._remember(name, raw)
            else:
                missing.append(name)
        if missing:
            raws = await self.redis.mget([keys.conference(name) for name in missing])
            for name, raw in zip(missing, raws, strict=True):
                self._remember(name, raw)

    def first_seen(self) -> dict[str, str | None]:
        """Each conference this unit read or created, as it first saw it (None:
        absent): what the commit checks is still so."""
        return {n: self._before[n].raw if n in self._before else None for n in self._conferences}

    def _remember(self, name: str, raw: str | None) -> None:
        record = ConferenceRecord.from_json(raw) if raw else None
        before = ConferenceRecord.from_json(raw) if raw else None
        self._before[name] = _Loaded(raw, before, derive(before) if before else None)
        self._conferences[name] = record

    def create_conference(self, name: str, from_number: str | None) -> ConferenceRecord:
        record = ConferenceRecord(name=name, created_at=self.now, from_number=from_number)
        self._conferences[name] = record
        return record

    def agent(self, username: str) -> Agent:
        """The agent's record, created offline on first sight."""
        if username not in self.agents:
            self.agents[username] = Agent(username=username, since=self.now)
        return self.agents[username]

    def enqueue(self, name: str, from_number: str | None, front: bool = False) -> None:
        if name in self.queue:
            return
        self.queued[name] = Queued(call_sid=name, from_number=from_number, queued_at=self.now)
        if front:
            self.queue.insert(0, name)
        else:
            self.queue.append(name)

    def dequeue(self, name: str, reason: str) -> None:
        if name in self.queue:
            self.queue.remove(name)
            self.queued.discard(name)
            self._dequeued[name] = reason

    def register_transfer(self, transfer_id: str, conference: str) -> None:
        self._new_transfers[transfer_id] = conference

    async def waiting(self, count: int) -> list[str]:
        """Up to ``count`` queued customers nobody is being dialed for, in queue order.
        Routing looks at no more of the line than it has agents for: records are
        fetched a slice at a time."""
        engaged = {a.conference for a in self.agents.values() if a.dial}
        found: list[str] = []
        step = max(2 * count, 16)
        for start in range(0, len(self.queue), step):
            if len(found) >= count:
                break
            names = [n for n in self.queue[start : start + step] if n not in engaged]
            await self.queued.fetch(self.redis, names)
            found += [n for n in names if self.queued[n].not_before <= self.now]
        return found[:count]

    def routable(self) -> list[Agent]:
        """Available agents, longest idle first."""
        ready = [
            a
            for a in self.agents.values()
            if a.status == AgentStatus.AVAILABLE and a.dial is None and a.idle_since <= self.now
        ]
        return sorted(ready, key=lambda a: (a.idle_since, a.username))

    def release(self, agent: Agent, missed: bool, back_of_line: bool = False) -> None:
        """End an agent's engagement: available again (after wrap-up) or missed."""
        agent.dial = None
        agent.conference = None
        agent.since = self.now
        if missed:
            agent.status = AgentStatus.MISSED
            return
        wrap_up = 0 if back_of_line else self.settings.wrap_up_seconds * 1000
        # During wrap-up the agent stays busy; the sweeper makes them available.
        agent.status = AgentStatus.BUSY if wrap_up else AgentStatus.AVAILABLE
        agent.idle_since = self.now + wrap_up

    def end_wrap_ups(self) -> None:
        """Agents whose wrap-up time is over become available (and routable)."""
        for agent in self.agents.values():
            wrapping = agent.status == AgentStatus.BUSY and agent.dial is None
            if wrapping and agent.idle_since <= self.now:
                agent.status, agent.since = AgentStatus.AVAILABLE, self.now

    def set_status(self, agent: Agent, status: AgentStatus) -> None:
        if agent.status != status:
            agent.status = status
            agent.since = self.now
        if status == AgentStatus.AVAILABLE:
            agent.idle_since = max(agent.idle_since, self.now) if agent.idle_since else self.now

    # -- settling -------------------------------------------------------------

    async def settle(self) -> None:
        for record in self._conferences.values():
            if record is not None:
                _Settler(self, record).run()
        if self.routable() and await self.waiting(1):
            self.effects.append(Route())
        self._announce_agents()
        line = self._line = line_change(self._queue_before, self.queue)
        self._settled = True
        update = self._queue_update(line)
        if update:  # the whole line goes out: every caller's record is needed
            await self.queued.fetch(self.redis, self.queue)
        elif line is not None:  # who joined (set here, so no trip)
            await self.queued.fetch(self.redis, [name for _, name in line.joined(self.queue)])
        self._announce_queue(update, line)

    def _announce_agents(self) -> None:
        for name, agent in self.agents.items():
            before = self._agents_before.get(name)
            if before is None or before.public() != agent.public():
                self.events.append(Event("agent.updated", agent.public(), self.now))

    def _queue_update(self, line: LineChange | None) -> bool | None:
        """Whether this unit sends queue.updated (True), holds it back (False: a long
        line had one less than ``QUEUE_UPDATE_INTERVAL_MS`` ago), or has nothing to
        announce (None). A held-back one is sent when the sweeper asks."""
        if line is None:
            if not (self._flush_queue and self._queue_announced.get("stale") == "1"):
                return None
            held_back_ok = True
        else:
            held_back_ok = len(self.queue) > EAGER_QUEUE_UPDATES
        last = int(self._queue_announced.get("at", 0))
        return not (held_back_ok and self.now - last < QUEUE_UPDATE_INTERVAL_MS)

    def _announce_queue(self, update: bool | None, line: LineChange | None) -> None:
        if line is not None:
            self._announce_line_changes(line)
        if update:
            self.events.append(Event("queue.updated", {"queue": self.public_queue()}, self.now))
            self._queue_announced = {"at": str(self.now), "stale": "0"}
        elif update is False:
            self._queue_announced = {**self._queue_announced, "stale": "1"}

    def _announce_line_changes(self, line: LineChange) -> None:
        """call.dequeued for who left the line, call.queued for who joined it."""
        for name, reason in self._dequeued.items():
            if name in line.left:
                self.events.append(
                    Event("call.dequeued", {"call_sid": name, "reason": reason}, self.now)
                )
        for position, name in line.joined(self.queue):
            self.events.append(Event("call.queued", self.queued[name].public(position), self.now))

    def announce_held_back_queue(self) -> None:
        """Send the queue.updated a busy line held back, once its interval is over (the
        sweeper asks every unit it runs)."""
        self._flush_queue = True

    def public_queue(self) -> list[dict[str, object]]:
        return [self.queued[n].public(i) for i, n in enumerate(self.queue, 1) if n in self.queued]

    # -- committing -----------------------------------------------------------

    def write(self) -> bool:
        """Collect every changed key and the events for the commit; False when nothing
        changed."""
        pipe = self.pipe
        changed = False
        for name, record in self._conferences.items():
            if record is None:
                continue
            raw = record.to_json()
            if raw == self._before.get(name, _Loaded(None, None, None)).raw:
                continue
            changed = True
            key = keys.conference(name)
            self._written[name] = raw
            pipe.set(key, raw)
            if self._settled_status[name] == "ended":
                pipe.expire(key, ENDED_RETENTION_SECONDS)
                pipe.srem(keys.LIVE, name)
            else:
                pipe.sadd(keys.LIVE, name)
        if self._write_agents():
            self.wrote.add("agents")
        if self._write_queue():
            self.wrote.add("queue")
        changed = bool(self.wrote) or changed
        if self._new_transfers:
            pipe.hset(keys.TRANSFERS, mapping=self._new_transfers)
            changed = True
        if self.events:
            append_events(pipe, self.events, self.settings.event_log_maxlen)
            project(pipe, self.events, self.now)
            changed = True
        return changed

    def writes(self) -> list[tuple[Any, ...]]:
        """The commands ``write`` collected, as sent."""
        return [args for args, _options in self.pipe.command_stack]

    def after(self) -> After:
        """What Redis holds once this unit committed, for the process's copy."""
        conferences = {
            name: self._written.get(name)
            or (self._before[name].raw if name in self._before else None)
            for name in self._conferences
        }
        agents = {**self._agents_raw, **self._agents_written}
        return After(agents, self.queue, self._queue_announced, conferences)

    def _write_agents(self) -> bool:
        updates = {
            name: agent.to_json()
            for name, agent in self.agents.items()
            if agent != self._agents_before.get(name)
        }
        if updates:
            self.pipe.hset(keys.AGENTS, mapping=updates)
        self._agents_written = updates
        return bool(updates)

    def _write_queue(self) -> bool:
        # Settling is the last step that changes the line: its change is the one to write.
        line = self._line if self._settled else line_change(self._queue_before, self.queue)
        changed = line is not None
        if line is not None:
            write_change(self.pipe, line, self.queue)
        changed = self.queued.write(self.pipe) or changed
        if self._queue_announced != self._announced_before:
            self.pipe.hset(keys.QUEUE_ANNOUNCED, mapping=self._queue_announced)
            changed = True
        return changed


class _Settler:
    """The consequences of a change to one conference (see the module docstring)."""

    def __init__(self, unit: Unit, record: ConferenceRecord) -> None:
        self.unit = unit
        self.record = record
        self.before = unit._before.get(record.name, _Loaded(None, None, None))
        self.audience: set[str] = set()

    def run(self) -> None:
        view = derive(self.record)
        self._customer_gone(view)
        self._release_agents(view)
        self._serve_customer(view)
        self._manage_participants(view)
        view = derive(self.record)  # the reactions above changed the facts
        self.unit._settled_status[self.record.name] = view.status
        # Whoever was involved before or after sees the change (an agent sees their
        # own leaving); computed once, not per event.
        self.audience = involved_agents(self.record, view)
        if self.before.record is not None and self.before.view is not None:
            self.audience |= involved_agents(self.before.record, self.before.view)
        self._announce_transfers(view)
        self._announce_conference(view)

    def _customer_gone(self, view: ConferenceView) -> None:
        """The customer hung up: leave the queue, stop every ring meant for them."""
        if not view.customer_gone:
            return
        self.unit.dequeue(self.record.name, "hung-up")
        for dial in self.record.dials.values():
            if not dial_active(view, dial) or dial.cancel_reason:
                continue
            if dial.call_sid and dial.call_sid in view.milestones.joined:
                continue  # in the conference: Twilio ends it with the conference
            dial.cancel_reason = "customer-hung-up"
            if dial.call_sid:
                status = "completed" if dial.answered else "canceled"
                self.unit.effects.append(HangUp(self.record.name, dial.call_sid, status))

    def _release_agents(self, view: ConferenceView) -> None:
        """An agent whose dial is over is routable again, or missed if they let it ring."""
        for dial in self.record.dials.values():
            agent = self.unit.agents.get(dial.agent)
            if agent is None or agent.dial != dial.id:
                continue
            if not (dial_finished(view, dial) or dial.cancel_reason):
                continue
            missed = (
                dial.kind != DialKind.SUPERVISOR
                and not dial.answered
                and dial.cancel_reason is None
                and dial.status in CALL_UNANSWERED
                and dial.call_sid not in view.milestones.joined
            )
            self.unit.release(agent, missed, back_of_line=dial.status == "api-error")

    def _serve_customer(self, view: ConferenceView) -> None:
        """Nobody is with (or coming to) a customer still on the line: queue them again,
        at the front, so a transfer never ends with a customer in silence."""
        name = self.record.name
        if view.customer_gone or view.status == "ended" or name in self.unit.queue:
            return
        if view.milestones.left_ending:
            return  # someone with endConferenceOnExit left: Twilio is ending it
        if view.agents_present():
            return
        if any(
            dial_active(view, d) and not d.cancel_reason
            for d in self.record.dials.values()
            if d.kind != DialKind.SUPERVISOR
        ):
            return
        self.unit.enqueue(name, self.record.from_number, front=bool(self.record.dials))

    def _manage_participants(self, view: ConferenceView) -> None:
        if view.status != "in-progress" or view.customer_gone:
            return
        customer = next((p for p in view.participants.values() if p.role == "customer"), None)
        if customer is not None:
            self._hold_music(view, customer)
        self._end_on_exit_flags(view)

    def _hold_music(self, view: ConferenceView, customer: Participant) -> None:
        """A customer left alone in a started conference hears the wait music."""
        record = self.record
        alone = not view.agents_present()
        if alone and not record.customer_auto_held and not view.milestones.left_ending:
            record.customer_auto_held = True
            params = {
                "hold": True,
                "hold_url": hold_url(self.unit.settings),
                "hold_method": "POST",
            }
            self._update(view, customer.call_sid, params)
        elif not alone and record.customer_auto_held:
            record.customer_auto_held = False
            self._update(view, customer.call_sid, {"hold": False})

    def _end_on_exit_flags(self, view: ConferenceView) -> None:
        """The one agent alone with the customer ends the call by hanging up; while a
        transfer is under way nobody does, so nobody drops the customer."""
        agents = view.agents_present()
        in_flight = any(
            not TransferStatus(status).terminal for status, _ in view.transfers.values()
        )
        desired = len(agents) == 1 and not in_flight
        for participant in agents:
            if participant.hold:
                continue  # Twilio ignores this flag while on hold; settled again on unhold
            current = self.record.end_on_exit_requested.get(
                participant.call_sid, participant.end_on_exit
            )
            if current != desired:
                self.record.end_on_exit_requested[participant.call_sid] = desired
                self._update(view, participant.call_sid, {"end_conference_on_exit": desired})

    def _update(self, view: ConferenceView, call_sid: str, params: dict[str, object]) -> None:
        sid = view.sid or self.record.name
        self.unit.effects.append(UpdateParticipant(self.record.name, sid, call_sid, params))

    def _announce_transfers(self, view: ConferenceView) -> None:
        for transfer in self.record.transfers.values():
            status, reason = view.transfers[transfer.id]
            before = self.before.record.transfers.get(transfer.id) if self.before.record else None
            if (status, reason) != (transfer.status, transfer.reason):
                transfer.status, transfer.reason = status, reason
                transfer.updated_at = self.unit.now
            if before != transfer:
                audience = {transfer.from_agent} | ({transfer.to_agent} - {None})
                self._emit("transfer.updated", transfer.public(self.record.name), audience)

    def _announce_conference(self, view: ConferenceView) -> None:
        old = self.before.view
        old_started = old.started_at if old else None
        if view.started_at is not None and old_started is None:
            self._emit("conference.started", {**view.summary(), "status": "in-progress"})
        if view.status == "ended" and (old is None or old.status != "ended"):
            self._emit("conference.ended", {**view.summary(), "reason": view.end_reason})
        old_people = old.participants if old else {}
        for call_sid, person in view.participants.items():
            previous = old_people.get(call_sid)
            if previous is None:
                self._emit("participant.joined", person.public(view.name))
            elif previous.public(view.name) != person.public(view.name):
                data = person.public(view.name)
                if previous.hold != person.hold:
                    data |= self._hold_requester(call_sid, person.hold)
                self._emit("participant.updated", data)
        for call_sid, person in old_people.items():
            if call_sid not in view.participants:
                self._emit("participant.left", person.public(view.name))

    def _hold_requester(self, call_sid: str, hold: bool) -> dict[str, object]:
        """``{"by": username}`` when someone asked for this hold change through the
        API within the last minute; the request is used up. Else Twilio or the app
        did it (hold music for a customer left alone): nothing is added."""
        request = self.record.hold_requests.pop(call_sid, None)
        if request is None or request["hold"] != hold:
            return {}
        if self.unit.now - request["at"] > HOLD_REQUEST_MS:
            return {}
        return {"by": request["by"]}

    def _emit(self, kind: str, data: dict[str, object], extra: set[str] | None = None) -> None:
        audience = self.audience | (extra or set())
        self.unit.events.append(
            Event(kind, data, self.unit.now, frozenset(audience), self.record.name)
        )


def involved_agents(record: ConferenceRecord, view: ConferenceView) -> set[str]:
    """Agents who may see this conference: dialed into it, in it, or transferring from it.
    ``view`` is ``derive(record)``, which the caller already has."""
    people = {p.agent for p in view.participants.values() if p.agent and p.role == "agent"}
    ringing = {
        d.agent
        for d in record.dials.values()
        if d.kind != DialKind.SUPERVISOR and dial_active(view, d) and not d.cancel_reason
    }
    transferring = {
        t.from_agent
        for t in record.transfers.values()
        if not TransferStatus(view.transfers[t.id][0]).terminal
    }
    return people | ringing | transferring


# One unit at a time per client (per process, in the app): every unit reads the
# agents and the queue, so two running side by side in one process mostly made one
# of them start over; a burst of a hundred incoming calls cost ~10 attempts each.
# Units of other processes still race, and the commit's version check decides.
_turns: weakref.WeakKeyDictionary[Redis, asyncio.Lock] = weakref.WeakKeyDictionary()


def _turn(redis: Redis) -> asyncio.Lock:
    lock = _turns.get(redis)
    if lock is None:
        lock = _turns[redis] = asyncio.Lock()
    return lock


async def run_unit(
    redis: Redis,
    settings: Settings,
    change: Callable[[Unit], Awaitable[T]],
    received_at: int | None = None,
    conferences: tuple[str, ...] = (),
) -> tuple[T, list[Effect]]:
    """Run ``change`` as one atomic unit, retrying it when it lost a race.
    ``received_at`` (default: now) stamps its events: SPEC §5's ``ts`` is when the
    app received what caused them, not when a retry finally committed.
    ``conferences`` the change will load are read with the rest, in one trip (or
    taken from the process's copy: console/unit_state.py)."""
    received_at = received_at or now_ms()
    copy = state_copy(redis)
    fresh: Start | None = None  # the current state, as a failed check answered it
    read_first = False  # the change raised on the copy: what it raises on a read stands
    refused: tuple[Unit, Start | str] | None = None  # the last attempt, for the log
    for attempt in range(MAX_ATTEMPTS):
        async with _turn(redis):
            start = fresh or (None if read_first else copy.start(conferences))
            start = start or await read_start(redis, conferences)
            unit = Unit(redis, settings, received_at, start, copy)
            outcome = await _attempt(unit, change)
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


async def _attempt(unit: Unit, change: Callable[[Unit], Awaitable[T]]) -> _Done[T] | Start | str:
    """One attempt: done, or the current state to start again from, or why not
    (the next attempt reads the state)."""
    redis, start, copy = unit.redis, unit.start, state_copy(unit.redis)
    try:
        result = await change(unit)
        await unit.settle()
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
            outcome = await commit(redis, start, seen, unit.writes(), unit.wrote)
        elif start.from_copy:
            outcome = await check(redis, start, seen) or start.versions
        else:
            outcome = start.versions  # read just now, nothing to write: done
    except LostRace:
        copy.outdated(None)
        return "a commit came between its check and its EXEC"
    if isinstance(outcome, Start):
        copy.outdated(outcome)
        return outcome
    copy.committed(start, outcome, unit.after())
    return _Done(result)
