"""Where a unit of work starts from, and its commit: one round trip to Redis when
this process already holds the state the unit reads.

Every unit reads the agents, the queue and the conferences it changes, and in a
process that handles the calls most of that was last written by the process
itself. So each process keeps, per Redis client, a copy of that state as of a
*version*: ``wl:version``, which every commit sets to a new random token inside its
MULTI. A unit
starts from the copy without asking Redis, and commits in one pipelined send:

    WATCH wl:version wl:unit-conflicts
    EVAL check   the version is still the copy's and the conferences the unit took
                 for new are still absent; if not, it increments wl:unit-conflicts,
                 a watched key, which makes the EXEC below abort, and answers the
                 current state for the retry
    MULTI, SET wl:version <new token>, the unit's writes, EXEC

A copy that is missing, or that other processes keep outdating, makes the unit read
first (the state and its version, in one script), then commit the same way: two
trips, as WATCH-and-read then MULTI/EXEC took before.

The invariant the copy rests on: every write to a key a unit reads is a unit's
commit, so it moves the version. Keys that expire (an ended conference, a day on)
are not trusted from the copy after ``COPY_SECONDS``. Versions are random tokens,
not a counter, so that a Redis taken back to an earlier state (a FLUSHALL, a backup
restored, a failover to a replica that lagged) and written on from there can never
show a version a copy holds for different contents.
"""

from __future__ import annotations

import secrets
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from console import keys

COPY_CONFERENCES = 4096  # conferences kept in a process's copy, least recently used dropped
COPY_SECONDS = 3600.0  # well inside the day an ended conference is kept (console.unit)
MAX_DISTRUST = 64  # after repeated stale copies, units read first for up to this many units

# KEYS: version, conflicts, agents, queue, queue announced, conferences...
# ARGV: the version expected ('' for a plain read), then one character per conference,
# '1' where the unit took it for new (absent). Answers {1} when the expectation
# holds, else {0, version, agents, queue names, queue announced, conferences...}.
_READ_OR_CHECK = """
local version = redis.call('GET', KEYS[1]) or '0'
if ARGV[1] ~= '' then
    local holds = version == ARGV[1]
    for i = 1, #ARGV[2] do
        if not holds then break end
        if string.sub(ARGV[2], i, i) == '1' and redis.call('EXISTS', KEYS[5 + i]) == 1 then
            holds = false
        end
    end
    if holds then return {1} end
    redis.call('INCR', KEYS[2])
end
local out = {
    0,
    version,
    redis.call('HGETALL', KEYS[3]),
    redis.call('LRANGE', KEYS[4], 0, -1),
    redis.call('HGETALL', KEYS[5]),
}
for i = 6, #KEYS do
    out[i] = redis.call('GET', KEYS[i])
end
return out
"""


@dataclass
class Start:
    """The state a unit starts from: what Redis held at ``version``, the
    conferences in ``assumed_new`` excepted (taken for absent, checked at commit)."""

    version: str
    agents: dict[str, str]
    queue: list[str]
    announced: dict[str, str]
    conferences: dict[str, str | None]
    assumed_new: set[str] = field(default_factory=set)
    from_copy: bool = False


@dataclass
class After:
    """What a committed unit left in Redis, for the process's copy."""

    agents: dict[str, str]
    queue: list[str]
    announced: dict[str, str]
    conferences: dict[str, str | None]


class LostRace(Exception):
    """Someone committed between the check and the EXEC: start over from a read."""


def _pairs(flat: list[str]) -> dict[str, str]:
    """A flat HGETALL reply as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _script_keys(names: list[str]) -> list[str]:
    fixed = [keys.VERSION, keys.UNIT_CONFLICTS, keys.AGENTS, keys.QUEUE, keys.QUEUE_ANNOUNCED]
    return fixed + [keys.conference(name) for name in names]


def _start(reply: list[Any], names: list[str]) -> Start:
    """A Start from the script's state reply (``{0, version, ...}``)."""
    _, version, agents, queue, announced, *raws = reply
    return Start(
        version=str(version),
        agents=_pairs(agents),
        queue=list(queue),
        announced=_pairs(announced),
        conferences=dict(zip(names, raws, strict=True)),
    )


class StateCopy:
    """One process's copy of the state as of ``version`` (see the module docstring).
    Units take turns per process (console.unit), so it is never used by two at once."""

    def __init__(self) -> None:
        self.version: str | None = None
        self.agents: dict[str, str] = {}
        self.queue: list[str] = []
        self.announced: dict[str, str] = {}
        self._conferences: OrderedDict[str, tuple[str | None, float]] = OrderedDict()
        self._skip = 0  # units still to start with a read
        self._distrust = 1  # units to skip after the next stale copy
        self.script: AsyncScript | None = None

    def start(self, names: tuple[str, ...]) -> Start | None:
        """A Start from the copy, or None when the unit should read first."""
        if self.version is None:
            return None
        if self._skip > 0:
            self._skip -= 1
            return None
        conferences: dict[str, str | None] = {}
        assumed_new: set[str] = set()
        for name in names:
            found, raw = self.conference(name)
            conferences[name] = raw
            if not found:
                assumed_new.add(name)
        return Start(
            self.version,
            dict(self.agents),
            list(self.queue),
            dict(self.announced),
            conferences,
            assumed_new,
            from_copy=True,
        )

    def conference(self, name: str) -> tuple[bool, str | None]:
        """(True, raw) when the copy holds ``name`` (raw None: known absent)."""
        entry = self._conferences.get(name)
        if entry is None:
            return False, None
        raw, stored = entry
        if time.monotonic() - stored > COPY_SECONDS:
            del self._conferences[name]
            return False, None
        self._conferences.move_to_end(name)
        return True, raw

    def outdated(self, fresh: Start | None) -> None:
        """A unit's copy was stale: the next units read first, more of them each time
        in a row (other processes are committing), and the copy takes ``fresh``."""
        self._skip = self._distrust
        self._distrust = min(2 * self._distrust, MAX_DISTRUST)
        if fresh is None:
            self.forget()
        else:
            self.replace(fresh)

    def replace(self, start: Start) -> None:
        """Take what a read found, as of its version; conferences cached at another
        version are dropped."""
        self.version = start.version
        self.agents, self.queue, self.announced = start.agents, start.queue, start.announced
        self._conferences.clear()
        self._store(start.conferences)

    def committed(self, start: Start, version: str, after: After) -> None:
        """A unit that started from ``start`` left ``after`` at ``version``."""
        if start.from_copy:
            self._distrust = 1
        elif start.version != self.version:
            self._conferences.clear()  # kept as of an older version
        self.version = version
        self.agents, self.queue, self.announced = after.agents, after.queue, after.announced
        self._store(after.conferences)

    def forget(self) -> None:
        self.version = None
        self._conferences.clear()

    def _store(self, conferences: dict[str, str | None]) -> None:
        now = time.monotonic()
        for name, raw in conferences.items():
            self._conferences[name] = (raw, now)
            self._conferences.move_to_end(name)
        while len(self._conferences) > COPY_CONFERENCES:
            self._conferences.popitem(last=False)


_copies: weakref.WeakKeyDictionary[Redis, StateCopy] = weakref.WeakKeyDictionary()


def state_copy(redis: Redis) -> StateCopy:
    """This process's copy for ``redis`` (one per client, as units' turns are)."""
    copy = _copies.get(redis)
    if copy is None:
        copy = _copies[redis] = StateCopy()
    return copy


async def read_start(redis: Redis, names: tuple[str, ...]) -> Start:
    """The state and its version, read in one script."""
    listed = list(names)
    reply = await _script(redis)(keys=_script_keys(listed), args=["", ""])
    return _start(reply, listed)


def _script(redis: Redis) -> AsyncScript:
    """The read-or-check script as EVALSHA (alone in its trip, so a NOSCRIPT is
    retried by redis-py; inside a commit it goes as EVAL, see ``commit``)."""
    copy = state_copy(redis)
    if copy.script is None:
        copy.script = redis.register_script(_READ_OR_CHECK)
    return copy.script


def _check(start: Start, names: list[str]) -> tuple[str | int, ...]:
    script_keys = _script_keys(names)
    mask = "".join("1" if name in start.assumed_new else "0" for name in names)
    return ("EVAL", _READ_OR_CHECK, len(script_keys), *script_keys, start.version, mask)


async def check(redis: Redis, start: Start, names: list[str]) -> Start | None:
    """For a unit with nothing to write: None when what it started from still holds,
    else the current state."""
    mask = "".join("1" if name in start.assumed_new else "0" for name in names)
    reply = await _script(redis)(keys=_script_keys(names), args=[start.version, mask])
    return None if reply[0] == 1 else _start(reply, names)


async def commit(
    redis: Redis, start: Start, names: list[str], writes: list[tuple[Any, ...]]
) -> str | Start:
    """Send the check and the writes in one trip (see the module docstring). Returns
    the new version, or the current state when the check failed; raises LostRace
    when the check held but a commit slipped in before the EXEC."""
    version = secrets.token_hex(8)
    # EVAL, never EVALSHA, here: a NOSCRIPT would skip the check and let the EXEC run.
    commands = [
        ("WATCH", keys.VERSION, keys.UNIT_CONFLICTS),
        _check(start, names),
        ("MULTI",),
        ("SET", keys.VERSION, version),
        *writes,
        ("EXEC",),
    ]
    replies = await _send(redis, commands)
    checked, executed = replies[1], replies[-1]
    if isinstance(checked, Exception):
        raise checked
    if checked[0] != 1:
        return _start(checked, names)
    if isinstance(executed, Exception):
        raise executed
    failed = next((r for r in replies[2:-1] if isinstance(r, Exception)), None)
    if failed is not None:
        raise failed
    if executed is None:
        raise LostRace("a commit came between the check and the EXEC")
    failed = next((r for r in executed if isinstance(r, Exception)), None)
    if failed is not None:
        raise failed
    return version


async def _send(redis: Redis, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Send ``commands`` in one write and read every reply, errors included (each in
    its place), on a connection of the client's pool."""
    pool = redis.connection_pool
    connection = await pool.get_connection()
    try:
        await connection.send_packed_command(connection.pack_commands(commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
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
