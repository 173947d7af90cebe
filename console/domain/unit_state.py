"""Where a unit of work starts from, and its commit: one round trip to Redis when
this process already holds the state the unit reads.

Every unit reads the agents, the queue and the conferences it changes, and in a
process that handles the calls most of that was last written by the process
itself. So each process keeps, per Redis client, a copy of that state, and a unit
starts from it without asking Redis. What the copy must still match is checked at
commit time:

- the agents and the queue (its names, callers' records, when queue.updated went
  out) by their *versions*, two fields of ``wl:version`` that a commit sets to new
  random tokens when it writes that part (a unit changes the agents or the queue far
  less often than it reads them, so other processes' commits rarely outdate them);
- or, for a unit whose only change to the line is callers joining its back (an
  incoming call: ``Unit.joins_commute``), the line's *order* version instead of the
  queue's: ``keys.LINE_VERSION``, which every change to the line moves except such
  joins, and the line's length and last caller as the unit saw them. Other
  processes' callers joining meanwhile then do not outdate it: the joins commute,
  and their positions are worked out at EXEC time (console/domain/positions.py);
  and a unit that neither looked at the line nor changed it (most callbacks of a
  call in progress: ``Unit.line_check``) does not check the line at all;
- each conference by its contents (a SHA-1 of the JSON, '' for absent): a conference
  the copy has never seen is taken for new, and must still be absent. A conference
  whose record has expired but whose call ended reads as ``ENDED`` (its
  ``keys.ended_call`` marker, checked in the same script), so a replayed CallSid is
  recognised without a trip of its own.

The unit commits in one pipelined send:

    WATCH   the keys it read, and the process's poison key
    EVAL    the check; when it fails it sets the poison key, a watched key, which
            makes the EXEC below abort, counts the conflict in wl:unit-conflicts,
            and answers the current state
    MULTI, the new versions, the unit's writes, a PUBLISH of the conferences and
            agents it wrote (``keys.COMMITS``), EXEC

so the EXEC runs only if the state was as the unit saw it when the check ran and
stayed so until the EXEC. A copy that keeps failing its check (other processes are
busy with the same agents or conferences) makes the next units read first: the
state and its versions in one script, then the commit as above, two trips. Each
process hears what the others published (console/realtime/commit_feed.py), so
a callback about a conference another process took last still starts from a current
copy.

The invariant the copy rests on: the agents and the queue are written only by units'
commits, which move their versions. Versions are random tokens, not counters, so a
Redis taken back to an earlier state (a FLUSHALL, a backup restored, a failover to a
replica that lagged) and written on from there never shows a version that a copy
holds for different contents. Conferences are compared by contents, so their
expiry needs no version.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import secrets
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from console.domain import keys
from console.domain.agent_index import AgentIndex
from console.domain.derive import ConferenceView

# How a commit checks the line (Unit.line_check): its version (anything the unit saw of
# it), its order (callers joining its back, which commute), or not at all.
LINE_FULL, LINE_JOINS, LINE_UNREAD = "full", "joins", "unread"

COPY_CONFERENCES = 4096  # conferences kept in a process's copy, least recently used dropped
MAX_DISTRUST = 64  # after repeated stale copies, units read first for up to this many units
ABSENT = ""  # the digest of a conference that does not exist
# What a unit reads for a conference whose record has expired but whose call ended
# (never JSON; _READ_OR_CHECK answers the same word): such a CallSid is never queued
# again (Unit.call_ended).
ENDED = "ended"

# (HGET, not HMGET, for the versions: an HMGET is a read of callers' records mid-unit,
# which the tests and the webhook benchmark count.)
# KEYS: versions, poison, conflicts, agents, queue, queue announced, line version,
# conferences..., then each conference's ended-call marker. ARGV: the agents' and the
# queue's versions expected ('' for a plain read; the queue's '' for a unit whose joins
# commute or that left the line alone), the line version ('' when the line is not
# checked), the line's length and last name as the unit saw them (joins that commute:
# the line only grew since, and from what the unit saw), then the digest expected of
# each conference. Answers {1} when the expectation holds, else {0,
# agents version, queue version, line version, agents, queue names, queue announced,
# conferences...}, a conference being its JSON, else ENDED when its marker exists, else
# false. The poison is the process's own key, watched by its commits only, so that a
# failed check aborts no other process's EXEC.
_READ_OR_CHECK = """
local agents_version = redis.call('HGET', KEYS[1], 'agents') or '0'
local queue_version = redis.call('HGET', KEYS[1], 'queue') or '0'
local count = (#KEYS - 7) / 2
local function conference(i)
    local raw = redis.call('GET', KEYS[i])
    if raw then return raw end
    if redis.call('EXISTS', KEYS[i + count]) == 1 then return 'ended' end
    return false
end
local function line_version() return redis.call('GET', KEYS[7]) or '0' end
local function grew_from(length, last)
    if line_version() ~= ARGV[3] or redis.call('LLEN', KEYS[5]) < length then return false end
    return length == 0 or redis.call('LINDEX', KEYS[5], length - 1) == last
end
if ARGV[1] ~= '' then
    local holds = agents_version == ARGV[1]
    if ARGV[2] ~= '' then
        holds = holds and queue_version == ARGV[2]
    elseif ARGV[3] ~= '' then
        holds = holds and grew_from(tonumber(ARGV[4]), ARGV[5])
    end
    for i = 8, 7 + count do
        if not holds then break end
        local raw = conference(i)
        holds = (raw and redis.sha1hex(raw) or '') == ARGV[i - 2]
    end
    if holds then return {1} end
    redis.call('SET', KEYS[2], '1', 'PX', 60000)
    redis.call('INCR', KEYS[3])
end
local out = {
    0,
    agents_version,
    queue_version,
    line_version(),
    redis.call('HGETALL', KEYS[4]),
    redis.call('LRANGE', KEYS[5], 0, -1),
    redis.call('HGETALL', KEYS[6]),
}
for i = 8, 7 + count do
    out[i] = conference(i)
end
return out
"""


def digest(raw: str | None) -> str:
    """What the check compares a conference by (Redis's ``redis.sha1hex``)."""
    return ABSENT if raw is None else hashlib.sha1(raw.encode()).hexdigest()


@dataclass(frozen=True)
class Versions:
    agents: str
    queue: str
    line: str = "0"  # keys.LINE_VERSION: moved by every change to the line but joins


@dataclass
class Start:
    """The state a unit starts from: the agents and the queue at ``versions``, and
    the conferences as they were read or copied (None: absent, or never seen)."""

    versions: Versions
    agents: dict[str, str]
    queue: list[str]
    announced: dict[str, str]
    conferences: dict[str, str | None]
    from_copy: bool = False
    digests: dict[str, str] = field(default_factory=dict)  # of conferences, when known
    agents_index: AgentIndex | None = None  # of ``agents``, when the copy has it


@dataclass
class After:
    """What a committed unit left in Redis, for the process's copy."""

    agents: dict[str, str]
    queue: list[str]
    announced: dict[str, str]
    conferences: dict[str, str | None]
    agents_index: AgentIndex | None = None  # of ``agents``, when known
    pictures: dict[str, ConferenceView] = field(default_factory=dict)  # of ``conferences``


class LostRace(Exception):
    """Someone committed between the check and the EXEC: start over from a read."""


def _pairs(flat: list[str]) -> dict[str, str]:
    """A flat HGETALL reply as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _script_keys(redis: Redis, names: list[str]) -> list[str]:
    poison = state_copy(redis).poison
    fixed = [keys.VERSION, poison, keys.UNIT_CONFLICTS]
    fixed += [keys.AGENTS, keys.QUEUE, keys.QUEUE_ANNOUNCED, keys.LINE_VERSION]
    return fixed + [keys.conference(n) for n in names] + [keys.ended_call(n) for n in names]


def _start(reply: list[Any], names: list[str]) -> Start:
    """A Start from the script's state reply (``{0, versions..., state...}``)."""
    _, agents_version, queue_version, line_version, agents, queue, announced, *raws = reply
    return Start(
        versions=Versions(str(agents_version), str(queue_version), str(line_version)),
        agents=_pairs(agents),
        queue=list(queue),
        announced=_pairs(announced),
        conferences=dict(zip(names, raws, strict=True)),
    )


def what_changed(seen: Start, first_seen: dict[str, str | None], now: Start) -> str:
    """What a failed check found changed since ``seen`` (and the conferences as the
    unit ``first_seen`` them), for the log of a unit that gave up."""
    changed = [
        family
        for family in ("agents", "queue")
        if getattr(seen.versions, family) != getattr(now.versions, family)
    ]
    changed += [
        f"conference {name}"
        for name, raw in now.conferences.items()
        if name in first_seen and digest(raw) != digest(first_seen[name])
    ]
    return ", ".join(changed) or "nothing it read"


class StateCopy:
    """One process's copy of the state (see the module docstring). Units take turns
    per process (console.domain.transaction), so it is never used by two at once."""

    def __init__(self) -> None:
        self.versions: Versions | None = None
        self.agents: dict[str, str] = {}  # replaced, never changed in place
        self.agents_index: AgentIndex | None = None  # of ``agents``, once built
        self.queue: list[str] = []
        self.announced: dict[str, str] = {}
        self._conferences: OrderedDict[str, tuple[str | None, str]] = OrderedDict()
        # A conference's picture (derive's answer) for the JSON the copy holds, when a
        # unit had it: the next unit need not derive it again.
        self._pictures: dict[str, tuple[str, ConferenceView]] = {}
        self._skip = 0  # units still to start with a read
        self._distrust = 1  # units to skip after the next stale copy
        self.script: AsyncScript | None = None
        self.poison = keys.unit_poison(secrets.token_hex(8))  # see _READ_OR_CHECK
        # Whether another process follows keys.COMMITS (console/realtime/commit_feed.py
        # counts its subscribers): alone, a process's commits tell nobody.
        self.others_listen = True

    def start(self, names: tuple[str, ...]) -> Start | None:
        """A Start from the copy, or None when the unit should read first."""
        if self.versions is None:
            return None
        if self._skip > 0:
            self._skip -= 1
            return None
        start = Start(
            self.versions,
            self.agents,  # shared, not copied: nothing changes these in place
            self.queue,
            dict(self.announced),
            {},
            from_copy=True,
            agents_index=self.agents_index,
        )
        for name in names:  # one the copy never saw is taken for new (an incoming call)
            _, start.conferences[name] = self.conference(name, start.digests)
        return start

    def conference(self, name: str, digests: dict[str, str]) -> tuple[bool, str | None]:
        """(True, raw) when the copy holds ``name`` (raw None: absent), its digest
        noted in ``digests``; (False, None) when it never saw it (digest: absent)."""
        entry = self._conferences.get(name)
        if entry is None:
            digests[name] = ABSENT
            return False, None
        self._conferences.move_to_end(name)
        digests[name] = entry[1]
        return True, entry[0]

    def outdated(self, fresh: Start | None) -> None:
        """A unit's copy was stale: the next units read first, more of them each time
        in a row (other processes are busy with the same state), and the copy takes
        ``fresh``."""
        self._skip = self._distrust
        self._distrust = min(2 * self._distrust, MAX_DISTRUST)
        if fresh is None:
            self.forget()
        else:
            self.replace(fresh)

    def agent_index(self, agents: dict[str, str]) -> AgentIndex:
        """The index of ``agents``: kept when they are this copy's agents."""
        if agents is not self.agents:
            return AgentIndex.build(agents)
        if self.agents_index is None:
            self.agents_index = AgentIndex.build(agents)
        return self.agents_index

    def forget(self) -> None:
        """The next unit reads the state (and the copy takes it)."""
        self.versions = None

    def replace(self, start: Start) -> None:
        """Take what a read found."""
        self.versions = start.versions
        self.agents, self.queue, self.announced = start.agents, start.queue, start.announced
        self.agents_index = start.agents_index
        self._store(start.conferences)

    def expect(
        self, conferences: dict[str, str], pictures: dict[str, ConferenceView] | None = None
    ) -> None:
        """Take the conferences a commit just sent writes (and their pictures, when
        known), before its answer."""
        self._store(conferences, pictures)

    def kept(self, start: Start) -> None:
        """A unit that started from ``start`` committed what ``expect`` took."""
        if start.from_copy:
            self._distrust = 1

    def committed(self, start: Start, versions: Versions, after: After) -> None:
        """A unit that started from ``start`` left ``after``, at ``versions``."""
        if start.from_copy:
            self._distrust = 1
        self.versions = versions
        self.agents, self.queue, self.announced = after.agents, after.queue, after.announced
        self.agents_index = after.agents_index
        self._store(after.conferences, after.pictures)

    def told(
        self, conferences: dict[str, str], agents: dict[str, str], moved: tuple[str, str] | None
    ) -> str:
        """What a commit publishes of what it wrote: this copy's poison key (whose copy
        it came from); the agents' versions before and after and the agents written
        (JSON), or two empty lines; then each conference's name and JSON. A line each:
        compact JSON holds no newline."""
        head = [f"{moved[0]} {moved[1]}", json.dumps(agents)] if moved else ["", ""]
        pairs = (x for pair in conferences.items() for x in pair)
        return "\n".join([self.poison, *head, *pairs])

    def heard(self, message: str) -> None:
        """Take what another process's commit wrote (``told``): its conferences, and
        its agents when this copy holds the agents it changed. A message that arrives
        late may leave the copy stale, which a unit's check then finds: it costs a
        round trip, never a wrong commit."""
        if message.startswith(self.poison + "\n"):
            return  # this copy's own commit
        _, moved, agents, *lines = message.split("\n")
        if len(lines) % 2:
            return
        if moved and self.versions is not None:
            before, after = moved.split(" ")
            if self.versions.agents == before:
                written = json.loads(agents)
                index = self.agents_index
                # Raises on a message not ours before anything changes.
                index = index.updated(written) if index is not None else None
                self.agents, self.agents_index = {**self.agents, **written}, index
                self.versions = dataclasses.replace(self.versions, agents=after)
        self._store(dict(zip(lines[::2], lines[1::2], strict=True)))

    def picture(self, name: str, raw: str) -> ConferenceView | None:
        """Conference ``name``'s picture when the copy has one for exactly ``raw``."""
        entry = self._pictures.get(name)
        return entry[1] if entry is not None and entry[0] == raw else None

    def _store(
        self,
        conferences: dict[str, str | None],
        pictures: dict[str, ConferenceView] | None = None,
    ) -> None:
        for name, raw in conferences.items():
            self._conferences[name] = (raw, digest(raw))
            self._conferences.move_to_end(name)
            view = pictures.get(name) if pictures and raw is not None else None
            if view is not None:
                self._pictures[name] = (raw, view)
            else:
                self._pictures.pop(name, None)
        while len(self._conferences) > COPY_CONFERENCES:
            gone, _ = self._conferences.popitem(last=False)
            self._pictures.pop(gone, None)


_copies: weakref.WeakKeyDictionary[Redis, StateCopy] = weakref.WeakKeyDictionary()


def state_copy(redis: Redis) -> StateCopy:
    """This process's copy for ``redis`` (one per client, as units' turns are)."""
    copy = _copies.get(redis)
    if copy is None:
        copy = _copies[redis] = StateCopy()
    return copy


def _script(redis: Redis) -> AsyncScript:
    """The read-or-check script as EVALSHA (alone in its trip, so a NOSCRIPT is
    retried by redis-py; inside a commit it goes as EVAL, see ``commit``)."""
    copy = state_copy(redis)
    if copy.script is None:
        copy.script = redis.register_script(_READ_OR_CHECK)
    return copy.script


async def read_start(redis: Redis, names: tuple[str, ...]) -> Start:
    """The state and its versions, read in one script."""
    listed = list(names)
    reply = await _script(redis)(keys=_script_keys(redis, listed), args=["", "", "", "", ""])
    return _start(reply, listed)


def _expected(
    start: Start, names: list[str], raws: dict[str, str | None], line: str = LINE_FULL
) -> list[str]:
    """The check's ARGV: the versions as ``line`` says to check the line (see
    LINE_FULL), then each conference's digest as first seen."""
    digests = [start.digests.get(n) or digest(raws[n]) for n in names]
    versions = start.versions
    if line == LINE_FULL:
        return [versions.agents, versions.queue, "", "", "", *digests]
    if line == LINE_UNREAD:
        return [versions.agents, "", "", "", "", *digests]
    last = start.queue[-1] if start.queue else ""
    return [versions.agents, "", versions.line, str(len(start.queue)), last, *digests]


async def check(
    redis: Redis, start: Start, raws: dict[str, str | None], line: str = LINE_FULL
) -> Start | None:
    """For a unit with nothing to write: None when what it started from still holds,
    else the current state. ``raws``: each conference as the unit first saw it;
    ``line``: how to check the line (LINE_FULL...)."""
    names = list(raws)
    args = _expected(start, names, raws, line)
    reply = await _script(redis)(keys=_script_keys(redis, names), args=args)
    return None if reply[0] == 1 else _start(reply, names)


@dataclass(frozen=True)
class Committed:
    """A commit's new versions, and for a unit whose joins commute the line as it
    stood after them (``line``: None when the unit's view of it was exact)."""

    versions: Versions
    line: list[str] | None = None


async def commit(
    redis: Redis,
    start: Start,
    raws: dict[str, str | None],
    writes: list[tuple[Any, ...]],
    wrote: set[str],
    line: str = LINE_FULL,
    conferences: dict[str, str] | None = None,
    agents: dict[str, str] | None = None,
    sent: Callable[[], None] | None = None,
) -> Committed | Start:
    """Send the check and the writes in one trip (see the module docstring). ``raws``:
    each conference as the unit first saw it; ``wrote``: "agents" and/or "queue"
    when the unit wrote them; ``line``: how to check the line (LINE_FULL...);
    ``conferences`` and ``agents``: those it wrote, told to other processes
    (``keys.COMMITS``); ``sent``: called once the commit is sent. Returns the new
    versions, or the current state when the check failed; raises LostRace when the
    check held but a commit came before the EXEC."""
    names, copy = list(raws), state_copy(redis)
    script_keys = _script_keys(redis, names)
    moved = {family: secrets.token_hex(8) for family in ("agents", "queue") if family in wrote}
    commutes = line == LINE_JOINS
    order = start.versions.line
    if "queue" in wrote and not commutes:
        order = secrets.token_hex(8)
    versions = Versions(
        moved.get("agents", start.versions.agents), moved.get("queue", start.versions.queue), order
    )
    # Joins that commute watch not the line but its order (the line version: a change
    # to who waits or to when queue.updated went out moves it).
    line_keys = {
        LINE_FULL: [keys.QUEUE, keys.QUEUE_INFO, keys.QUEUE_ANNOUNCED],
        LINE_JOINS: [keys.LINE_VERSION],
        LINE_UNREAD: [],
    }[line]
    watched = [keys.AGENTS, *line_keys, *script_keys[7:]]
    expected = _expected(start, names, raws, line)
    # EVAL, never EVALSHA, here: a NOSCRIPT would skip the check and let the EXEC run.
    commands: list[tuple[Any, ...]] = [
        ("WATCH", copy.poison, *watched),
        ("EVAL", _READ_OR_CHECK, len(script_keys), *script_keys, *expected),
        ("MULTI",),
    ]
    if moved:
        commands.append(("HSET", keys.VERSION, *(x for pair in moved.items() for x in pair)))
    if order != start.versions.line:
        commands.append(("SET", keys.LINE_VERSION, order))
    commands += writes
    if (conferences or "agents" in moved) and copy.others_listen:
        before_after = (start.versions.agents, versions.agents) if "agents" in moved else None
        told = copy.told(conferences or {}, agents or {}, before_after)
        commands.append(("PUBLISH", keys.COMMITS, told))
    if commutes:  # the line from where the unit saw it end: others' joins, then its own
        commands.append(("LRANGE", keys.QUEUE, len(start.queue), -1))
    commands.append(("EXEC",))
    replies = await _send(redis, commands, sent)
    checked, executed = replies[1], replies[-1]
    if isinstance(checked, Exception):
        raise checked
    if checked[0] != 1:
        return _start(checked, names)
    failed = next((r for r in replies[2:] if isinstance(r, Exception)), None)
    if failed is not None:
        raise failed
    if executed is None:
        raise LostRace("a commit came between the check and the EXEC")
    failed = next((r for r in executed if isinstance(r, Exception)), None)
    if failed is not None:
        raise failed
    return Committed(versions, [*start.queue, *executed[-1]] if commutes else None)


_PLAIN = frozenset({str, int, bytes})  # what hiredis packs exactly as redis-py would


def _packed(connection: Any, commands: list[tuple[Any, ...]]) -> list[bytes]:
    """``commands`` in Redis's protocol: packed by hiredis at once when every argument
    is plain (redis-py's packer encodes each argument in Python first, most of a
    commit's own CPU), else by redis-py."""
    plain = all(type(arg) in _PLAIN for command in commands for arg in command)
    if plain and all(type(command[0]) is str and " " not in command[0] for command in commands):
        return [hiredis.pack_command(command) for command in commands]
    return connection.pack_commands(commands)


async def _send(
    redis: Redis, commands: list[tuple[Any, ...]], sent: Callable[[], None] | None = None
) -> list[Any]:
    """Send ``commands`` in one write and read every reply, errors included (each in
    its place), on a connection of the client's pool; ``sent`` is called in between."""
    pool = redis.connection_pool
    connection = await pool.get_connection()
    try:
        await connection.send_packed_command(_packed(connection, commands))
        if sent is not None:
            sent()
        replies: list[Any] = []
        # One timeout for the whole answer, not one per reply (redis-py's default):
        # a commit has a reply per command, and each timeout costs more than its reply.
        async with asyncio.timeout(connection.socket_timeout):
            for _ in commands:
                try:
                    replies.append(await connection.read_response(timeout=math.inf))
                except ResponseError as error:
                    replies.append(error)
        return replies
    except BaseException:
        # Cancelled or broken mid-way, replies may be left unread (and a WATCH or a
        # MULTI open): the connection must not serve anyone else.
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)
