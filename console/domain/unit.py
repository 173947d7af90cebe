"""A unit of work's state and its writes: the agents, the queue and the conferences one
change reads, changed in memory, then collected for one commit.

A unit starts from the agents, the queue and the conferences named up front
(console/domain/unit_state.py: read in one trip, or taken from this process's own
copy), loads any other conference it needs, and is changed in memory; an agent's
record is parsed when the unit first reads it, and the questions about all the agents
are answered from their index (console/domain/agent_index.py). Once settled
(console/domain/settle.py) it announces what changed among its agents and in the
waiting line, and ``write`` collects every changed key and the events for the
commit. console/domain/transaction.py runs a change on a unit and commits it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from console.config import Settings
from console.domain import folding, keys
from console.domain.agent_index import AgentIndex, AgentTable
from console.domain.derive import ConferenceView, derive
from console.domain.effects import Effect
from console.domain.events import Event, append_events, log_cap
from console.domain.positions import Positions
from console.domain.projections import project
from console.domain.records import (
    Agent,
    AgentStatus,
    Callback,
    CallbackInfo,
    ConferenceRecord,
    Queued,
)
from console.domain.unit_state import (
    ENDED,
    LINE_FULL,
    LINE_JOINS,
    LINE_UNREAD,
    After,
    Start,
    StateCopy,
)
from console.domain.waiting_line import (
    EAGER_QUEUE_UPDATES,
    QUEUE_UPDATE_INTERVAL_MS,
    LineChange,
    QueueInfo,
    line_change,
    write_change,
)

WRAPPED_UP = "call.wrapped-up"  # an agent's wrap-up of a call ended (its length)
ENDED_RETENTION_SECONDS = 24 * 3600  # an ended conference's record is kept a day
# Its call's ended marker (keys.ended_call), a key of ~150 bytes, is kept a week: a
# replayed CallSid is never queued again for that long. When history (§8) exists it
# keeps the call longer, and Unit.call_ended may ask it once the marker is gone.
ENDED_CALL_RETENTION_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Loaded:
    """A conference as the unit first saw it: its JSON, its record and its picture
    (all None: absent)."""

    raw: str | None = None
    record: ConferenceRecord | None = None
    view: ConferenceView | None = None


_ABSENT = Loaded()


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
        self._copy = copy if start.from_copy else None  # conferences come from it
        self._state_copy = copy  # also after a read: its index and pictures hold by content
        self._agents_raw = start.agents
        self._agent_index = start.agents_index
        self.agents = AgentTable(start.agents)  # parsed as they are read
        self._queue = list(start.queue)  # the unit's own, changed in place
        self._queue_before = start.queue  # never changed: the copy's, shared
        self._queued = QueueInfo()
        self._queue_announced = dict(start.announced)
        self._announced_before = start.announced
        self._flush_queue = False
        self.events: list[Event] = []
        self.effects: list[Effect] = []
        self._conferences: dict[str, ConferenceRecord | None] = {}
        self._before: dict[str, Loaded] = {}
        self._dequeued: dict[str, tuple[str, CallbackInfo | None, int | None]] = {}
        self._new_transfers: dict[str, str] = {}
        self._new_help: dict[str, str] = {}  # help request id -> conference
        self._status: dict[str, str] = {}  # conference -> status after settling
        self._pictures: dict[str, tuple[str, ConferenceView]] = {}  # settled: JSON, view
        self.pictures: dict[str, ConferenceView] = {}  # of written conferences, for the copy
        self._line: LineChange | None = None  # how announce() found the line changed
        self._line_known = False
        # Whether anything this unit decided depended on the line (``queue``, ``queued``
        # looked at): if not, its commit does not check the line (console/domain/
        # unit_state.py), and when all it did to the line was new callers joining its
        # back, ``joins_commute``: other processes' joins may come first
        # (console/domain/positions.py).
        self.line_read = False
        self.joins_commute = False
        self._positions: Positions | None = None
        self.written: dict[str, str] = {}  # conferences the commit writes, for the copies
        self.agents_written: dict[str, str] = {}
        self.wrote: set[str] = set()  # "agents", "queue": the versions the commit moves
        # Conferences' folded callbacks (console/domain/folding.py): read, and to append.
        self._histories: dict[str, list[Callback]] = {}
        self._appended: dict[str, list[Callback]] = {}
        for name, raw in start.conferences.items():
            self._remember(name, raw)

    @property
    def queue(self) -> list[str]:
        """The line's names, head first (looking at it makes the commit check it)."""
        self.line_read = True
        return self._queue

    @property
    def queued(self) -> QueueInfo:
        """Callers' records in the line (looking at them makes the commit check it)."""
        self.line_read = True
        return self._queued

    def in_line(self, name: str) -> bool:
        """Whether conference ``name`` waits in the line. Looking makes the commit check
        the line, except for a conference this unit created: no other process can have
        queued it without creating it too, and then one of the two commits fails its
        check of the conference."""
        if not self._created(name):
            self.line_read = True
        return name in self._queue

    def _created(self, name: str) -> bool:
        return self.before(name).raw is None and self._conferences.get(name) is not None

    def line_check(self) -> str:
        """How the commit checks the line (console/domain/unit_state.py): in full, by
        its order alone (joins that commute), or not at all (not looked at, not
        changed). Known once ``write`` ran."""
        if self.joins_commute:
            return LINE_JOINS
        return LINE_FULL if self.line_read or "queue" in self.wrote else LINE_UNREAD

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
            found_keys = [keys.conference(name) for name in missing]
            found_keys += [keys.ended_call(name) for name in missing]
            found = await self.redis.mget(found_keys)
            raws, ended = found[: len(missing)], found[len(missing) :]
            for name, raw, marker in zip(missing, raws, ended, strict=True):
                self._remember(name, raw or (ENDED if marker else None))

    def first_seen(self) -> dict[str, str | None]:
        """Each conference this unit read or created, as it first saw it (None:
        absent): what the commit checks is still so."""
        return {name: self.before(name).raw for name in self._conferences}

    def before(self, name: str) -> Loaded:
        """Conference ``name`` as this unit first saw it (all None: not there, or
        created by this unit)."""
        return self._before.get(name, _ABSENT)

    def loaded(self) -> list[ConferenceRecord]:
        """The conferences this unit read or created, as they are now (absent ones
        left out)."""
        return [record for record in self._conferences.values() if record is not None]

    def call_ended(self, name: str) -> bool:
        """Loaded conference ``name``'s call is over: its record says so, or only its
        ended-call marker is left (a replay of its CallSid must not bring it back)."""
        record = self._conferences[name]
        if record is None:
            return self.before(name).raw == ENDED
        return derive(record).status == "ended"

    def _remember(self, name: str, raw: str | None) -> None:
        known = raw is not None and raw != ENDED
        record = ConferenceRecord.from_json(raw) if known else None
        before = ConferenceRecord.from_json(raw) if known else None
        view = None
        if before is not None:
            # A picture the copy holds for this very JSON is derive's answer for it.
            copy = self._state_copy
            view = copy.picture(name, raw) if copy is not None else None
            view = view or derive(before)
        self._before[name] = Loaded(raw, before, view)
        self._conferences[name] = record

    async def add_callback(self, record: ConferenceRecord, callback: Callback) -> bool:
        """Record a conference callback; False when it was a duplicate. One at or below
        the record's folded callbacks reads them (console/domain/folding.py)."""
        if not folding.needs_history(record, callback):
            return folding.add(record, callback, None)
        added = folding.add(record, callback, await self._history(record.name))
        if added:
            self._appended.setdefault(record.name, []).append(callback)
        return added

    async def _history(self, name: str) -> list[Callback]:
        """Conference ``name``'s folded callbacks, as many as its record first seen
        counts (the list may hold more: a record lost, then made again)."""
        if name not in self._histories:
            before = self.before(name).record
            count = before.folded.count if before and before.folded else 0
            raws = (
                await self.redis.lrange(keys.folded_callbacks(name), 0, count - 1) if count else []
            )
            self._histories[name] = [Callback.from_json(raw) for raw in raws]
        return self._histories[name]

    async def fold_callbacks(self) -> None:
        """Before the commit: fold the older callbacks of long tails, and place any
        callback written straight into ``callbacks`` below the folded ones."""
        for name, record in self._conferences.items():
            if record is None:
                continue
            appended = self._appended.setdefault(name, [])
            lowest = min((c.seq for c in record.callbacks.values()), default=None)
            if lowest is not None and folding.below(record, lowest):
                appended += folding.settle_below(record, await self._history(name))
            appended += folding.advance(record)

    def create_conference(self, name: str, from_number: str | None) -> ConferenceRecord:
        record = ConferenceRecord(name=name, created_at=self.now, from_number=from_number)
        self._conferences[name] = record
        return record

    def agent(self, username: str) -> Agent:
        """The agent's record, created offline on first sight."""
        if username not in self.agents:
            self.agents[username] = Agent(username=username, since=self.now)
        return self.agents[username]

    def enqueue(
        self, name: str, from_number: str | None, front: bool = False, entry: Queued | None = None
    ) -> None:
        """Put conference ``name`` in the line (at the back, or the front); ``entry``:
        its queued record when it is not a plain call (a callback, SPEC §9)."""
        if self.in_line(name):
            return
        self._queued[name] = entry or Queued(
            call_sid=name, from_number=from_number, queued_at=self.now
        )
        if front:
            self._queue.insert(0, name)
        else:
            self._queue.append(name)

    def replace_in_line(
        self, name: str, successor: str, entry: Queued, reason: str, arrived_at: int | None = None
    ) -> bool:
        """``successor`` takes ``name``'s place in the line (a callback keeps the place
        of the call that asked for it); ``name`` leaves for ``reason``. False when
        ``name`` is not in the line."""
        if name not in self.queue:
            return False
        self.queue[self.queue.index(name)] = successor
        self.queued.discard(name)
        self.queued[successor] = entry
        self._dequeued[name] = (reason, None, arrived_at)
        return True

    def dequeue(
        self,
        name: str,
        reason: str,
        callback: CallbackInfo | None = None,
        arrived_at: int | None = None,
    ) -> None:
        """``name`` leaves the line for ``reason``; ``callback``: the callback it was
        (its call.dequeued names the call that asked for it, as its queued shape does);
        ``arrived_at``: the call's arrival, when the departure settles how the call is
        counted (a caller who chose to leave, console/domain/figures.py)."""
        if name in self.queue:
            self.queue.remove(name)
            self.queued.discard(name)
            self._dequeued[name] = (reason, callback, arrived_at)

    def register_transfer(self, transfer_id: str, conference: str) -> None:
        self._new_transfers[transfer_id] = conference

    def register_help(self, help_id: str, conference: str) -> None:
        self._new_help[help_id] = conference

    def agent_index(self) -> AgentIndex:
        """The facts about every agent as the unit found them (the agents it read
        may have changed since: ask ``self.agents`` about those)."""
        if self._agent_index is None:
            copy = self._state_copy
            if copy is not None:
                self._agent_index = copy.agent_index(self._agents_raw)
            else:
                self._agent_index = AgentIndex.build(self._agents_raw)
        return self._agent_index

    def engaged(self) -> set[str | None]:
        """The conferences an agent is being dialed into or is in."""
        index, table = self.agent_index(), self.agents
        engaged = {index.engaged[name] for name in table.others(index.engaged)}
        return engaged | {a.conference for a in table.parsed.values() if a.dial}

    def statuses(self) -> list[str]:
        """Every agent's status."""
        index, table = self.agent_index(), self.agents
        statuses = [index.statuses[name] for name in table.others(index.statuses)]
        return statuses + [a.status for a in table.parsed.values()]

    def any_routable(self) -> bool:
        """Whether ``routable`` would name anyone (without reading any agent)."""
        index, table, now = self.agent_index(), self.agents, self.now
        if any(index.free[name] <= now for name in table.others(index.free)):
            return True
        return any(self._routable(a) for a in table.parsed.values())

    def transfers_waiting(self) -> list[Agent]:
        """The agents whose transfer to "any available agent" may wait (read: routing
        changes them)."""
        index, table = self.agent_index(), self.agents
        names = list(table.others(index.transfers))
        found = [table[name] for name in names]
        chosen = set(names)
        found += [a for n, a in table.parsed.items() if n not in chosen and a.transfer_waiting]
        return found

    def transfer_waits(self) -> bool:
        """Whether some agent's transfer to "any available agent" waits."""
        index, table = self.agent_index(), self.agents
        if any(True for _ in table.others(index.transfers)):
            return True
        return any(a.transfer_waiting for a in table.parsed.values())

    async def waiting(self, count: int) -> list[str]:
        """Up to ``count`` queued customers nobody is being dialed for, in queue order.
        Routing looks at no more of the line than it has agents for: records are
        fetched a slice at a time."""
        engaged = self.engaged()
        found: list[str] = []
        step = max(2 * count, 16)
        for start in range(0, len(self.queue), step):
            if len(found) >= count:
                break
            names = [n for n in self.queue[start : start + step] if n not in engaged]
            queued = self.queued
            await queued.fetch(self.redis, names)
            # A name without a record: another process dequeued them since this unit
            # read the line. Not waiting; the commit's check of the line (looked at)
            # refuses any decision taken on the old one.
            found += [n for n in names if n in queued and queued[n].not_before <= self.now]
        return found[:count]

    def routable(self) -> list[Agent]:
        """Available agents, longest idle first (read: routing may change them)."""
        index, table, now = self.agent_index(), self.agents, self.now
        free = [name for name in table.others(index.free) if index.free[name] <= now]
        ready = [table[name] for name in free]  # read now: no longer "others"
        chosen = set(free)
        ready += [a for name, a in table.parsed.items() if name not in chosen and self._routable(a)]
        return sorted(ready, key=lambda a: (a.idle_since, a.username))

    def _routable(self, agent: Agent) -> bool:
        return (
            agent.status == AgentStatus.AVAILABLE
            and agent.dial is None
            and agent.idle_since <= self.now
        )

    def release(
        self, agent: Agent, missed: bool, back_of_line: bool = False, took_call: bool = False
    ) -> None:
        """End an agent's engagement: available again (after wrap-up), or missed.
        ``took_call``: they were on the call, so wrap-up (WRAP_UP_SECONDS) is about it."""
        if took_call:
            agent.last_call = agent.conference
        agent.dial = None
        agent.conference = None
        agent.since = self.now
        if missed:
            agent.status = AgentStatus.MISSED
            return
        wrap_up = self.settings.wrap_up_seconds * 1000 if took_call and not back_of_line else 0
        # In wrap-up for at most that long: the sweeper (or their Ready) ends it.
        agent.status = AgentStatus.WRAP_UP if wrap_up else AgentStatus.AVAILABLE
        agent.idle_since = self.now + wrap_up

    def end_wrap_ups(self) -> None:
        """Agents whose wrap-up time is over become available (and routable)."""
        index, table = self.agent_index(), self.agents
        over = [name for name in table.others(index.wrapping) if index.wrapping[name] <= self.now]
        for agent in [*(table[name] for name in over), *table.parsed.values()]:
            wrapping = agent.status == AgentStatus.WRAP_UP and agent.dial is None
            if wrapping and agent.idle_since <= self.now:
                self.set_status(agent, AgentStatus.AVAILABLE)

    def set_status(self, agent: Agent, status: AgentStatus, reason: str | None = None) -> None:
        """Move ``agent`` to ``status`` (``reason``: a break's); available also ends a
        wrap-up early, whose length goes to the call's history (``call.wrapped-up``)."""
        if agent.status == AgentStatus.WRAP_UP and status != AgentStatus.WRAP_UP:
            self._wrapped_up(agent)
        if agent.status != status or agent.reason != reason:
            agent.status = status
            agent.since = self.now
        agent.reason = reason
        if status == AgentStatus.AVAILABLE:
            agent.idle_since = self.now

    def _wrapped_up(self, agent: Agent) -> None:
        """The wrap-up of the agent's last call is over: how long it took counts in the
        call's handle time (SPEC §8)."""
        if agent.last_call is None:
            return
        data = {
            "call": agent.last_call,
            "agent": agent.username,
            "wrap_up_ms": max(0, self.now - agent.since),
        }
        audience = frozenset({agent.username})
        self.events.append(Event(WRAPPED_UP, data, self.now, audience, agent.last_call))

    # -- announcing (after settling) -------------------------------------------

    def settled(self, name: str, view: ConferenceView, facts: str) -> None:
        """Settling left conference ``name`` pictured as ``view``, derived from the
        record whose JSON was ``facts``. An ended one is written to expire and leaves
        ``keys.LIVE``; if the record is written as ``facts``, the picture goes with it
        into the copy, and the next unit need not derive it again."""
        self._status[name] = view.status
        self._pictures[name] = (facts, view)

    async def announce(self) -> None:
        """Announce what changed among the agents and in the waiting line. Called once
        settling is done: nothing changes them afterwards, so the line's change worked
        out here is also the one ``write`` writes."""
        self._announce_agents()
        line = self._line = line_change(self._queue_before, self._queue)
        self._line_known = True
        update = self._queue_update(line)
        if not self.line_read and update is False and line is not None and self._only_new(line):
            self.joins_commute = True
            self._positions = Positions()
        if update:  # the whole line goes out: every caller's record is needed
            await self._queued.fetch(self.redis, self._queue)
        elif line is not None:  # who joined (set here, so no trip)
            await self._queued.fetch(self.redis, [name for _, name in line.joined(self._queue)])
        self._announce_queue(update, line)

    def _only_new(self, line: LineChange) -> bool:
        """The line's change is callers joining its back, each with a conference this
        unit created (a rival join of the same caller creates it too, and one of the
        two commits fails its check), and only their queued records are written."""
        if line.rewrite or line.left or line.front:
            return False
        joined = set(line.back)
        return all(map(self._created, joined)) and self._queued.changed() <= joined

    def _announce_agents(self) -> None:
        for name, agent in self.agents.parsed.items():  # one not read did not change
            before = self.agents.before(name)
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
            held_back_ok = len(self._queue) > EAGER_QUEUE_UPDATES
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
        for name, (reason, callback, arrived_at) in self._dequeued.items():
            if name in line.left:
                data: dict[str, object] = {"call_sid": name, "reason": reason}
                if callback is not None:
                    data = {"call_sid": callback.origin, "reason": reason, "callback": callback.id}
                if arrived_at is not None:
                    data["arrived_at"] = arrived_at
                self.events.append(Event("call.dequeued", data, self.now))
        joined = line.joined(self._queue)
        for position, name in joined:
            place: int | str = position
            if self._positions is not None:  # known at EXEC time: others may join first
                place = self._positions.token(len(self._queue) - position)
            self.events.append(Event("call.queued", self._queued[name].public(place), self.now))

    def announce_held_back_queue(self) -> None:
        """Send the queue.updated a busy line held back, once its interval is over (the
        sweeper asks every unit it runs)."""
        self._flush_queue = True
        self.line_read = True  # whether one is held back is the line's state

    def public_queue(self) -> list[dict[str, object]]:
        queued = self._queued
        return [queued[n].public(i) for i, n in enumerate(self._queue, 1) if n in queued]

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
            if raw == self.before(name).raw:
                continue
            changed = True
            key = keys.conference(name)
            self.written[name] = raw
            settled = self._pictures.get(name)
            if settled is not None and settled[0] == raw:
                self.pictures[name] = settled[1]
            pipe.set(key, raw)
            self._write_history(name, record)
            if self._status.get(name) == "ended":
                pipe.expire(key, ENDED_RETENTION_SECONDS)
                if record.folded is not None:
                    pipe.expire(keys.folded_callbacks(name), ENDED_RETENTION_SECONDS)
                pipe.srem(keys.LIVE, name)
                pipe.set(keys.ended_call(name), self.now, ex=ENDED_CALL_RETENTION_SECONDS)
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
        if self._new_help:
            pipe.hset(keys.HELP, mapping=self._new_help)
            changed = True
        if self.events:
            positions = self._positions
            append_events(pipe, self.events, log_cap(self.settings), positions)
            project(pipe, self.events, self.now, self.settings.center_zone, positions)
            changed = True
        return changed

    def _write_history(self, name: str, record: ConferenceRecord) -> None:
        """Append the callbacks folded by this unit to the conference's list, cut first
        to the length its record counted (nothing, for a record made by this unit)."""
        appended = self._appended.get(name)
        if not appended:
            return
        key = keys.folded_callbacks(name)
        before = self.before(name).record
        count = before.folded.count if before and before.folded else 0
        if count:
            self.pipe.ltrim(key, 0, count - 1)
        else:
            self.pipe.delete(key)
        self.pipe.rpush(key, *(callback.to_json() for callback in appended))

    def writes(self) -> list[tuple[Any, ...]]:
        """The commands ``write`` collected, as sent."""
        return [args for args, _options in self.pipe.command_stack]

    def after(self, line: list[str] | None = None) -> After:
        """What Redis holds once this unit committed, for the process's copy; ``line``:
        the line as the commit found it, when other callers may have joined first."""
        conferences = {
            name: self.written.get(name) or self.before(name).raw for name in self._conferences
        }
        written, index = self.agents_written, self._agent_index
        agents = {**self._agents_raw, **written} if written else self._agents_raw
        if written and index is not None:
            index = index.updated(written)
        queue = self._queue if line is None else line
        # The pictures of what it wrote, and of what it read and left: still true.
        pictures = {name: loaded.view for name, loaded in self._before.items() if loaded.view}
        pictures = {n: v for n, v in pictures.items() if n not in self.written} | self.pictures
        return After(agents, queue, self._queue_announced, conferences, index, pictures)

    def _write_agents(self) -> bool:
        updates = {
            name: agent.to_json()
            for name, agent in self.agents.parsed.items()  # one not read did not change
            if agent != self.agents.before(name)
        }
        if updates:
            self.pipe.hset(keys.AGENTS, mapping=updates)
        self.agents_written = updates
        return bool(updates)

    def _write_queue(self) -> bool:
        # Announcing comes after the last change to the line: its change is the one to write.
        line = self._line if self._line_known else line_change(self._queue_before, self._queue)
        changed = line is not None
        if line is not None:
            write_change(self.pipe, line, self._queue)
        changed = self._queued.write(self.pipe) or changed
        if self._queue_announced != self._announced_before:
            self.pipe.hset(keys.QUEUE_ANNOUNCED, mapping=self._queue_announced)
            changed = True
        return changed
