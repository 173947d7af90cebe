"""The waiting line as one unit of work sees it, at a cost that does not grow with it.

Every unit reads the queue (routing needs its head), but most change one caller or
none, and a line may hold thousands. So a unit reads the list of names, and fetches
callers' records only when it needs them (routing, a whole-line queue.updated),
checked by the unit's commit like the rest; records are parsed only when looked at,
written back only when changed, and the list is changed with the few
LREM/LPUSH/RPUSH that a join or a departure needs.

``queue.updated`` carries the whole line to every dashboard. Sent on every change
of a long line it was most of the bytes on every socket, so past
``EAGER_QUEUE_UPDATES`` callers it is sent at most once per
``QUEUE_UPDATE_INTERVAL_MS`` (the sweeper sends the one held back); the small
``call.queued`` / ``call.dequeued`` events still go out with every change.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from console.domain import keys
from console.domain.records import Queued

EAGER_QUEUE_UPDATES = 25  # up to this many callers, every change sends queue.updated
QUEUE_UPDATE_INTERVAL_MS = 1000
AT_ONE_END = 4  # joins at the tail or departures from the head a unit's change is checked for


class NotFetched(LookupError):
    """A caller's record was looked at before it was fetched: a bug in the caller."""


class QueueInfo(MutableMapping[str, Queued]):
    """Queued records by conference name, from ``wl:queue:info``, fetched on demand
    (``fetch``): a plain read, which the unit's commit check covers
    (console/domain/unit_state.py)."""

    def __init__(self) -> None:
        self._before: dict[str, str] = {}  # raw records fetched (absent ones: not here)
        self._fetched: set[str] = set()  # names asked for, present or not
        self._parsed: dict[str, Queued] = {}
        self._removed: set[str] = set()

    async def fetch(self, redis: Redis, names: Iterable[str]) -> None:
        """Read the records of ``names`` not read yet, in one HMGET."""
        wanted = [n for n in dict.fromkeys(names) if not self._seen(n)]
        if not wanted:
            return
        for name, raw in zip(wanted, await redis.hmget(keys.QUEUE_INFO, wanted), strict=True):
            if raw is not None:
                self._before[name] = raw
        self._fetched.update(wanted)

    def _seen(self, name: str) -> bool:
        """Fetched, set or removed in this unit: nothing more to read for it."""
        return name in self._fetched or name in self._parsed or name in self._removed

    def _known(self, name: str) -> None:
        if not self._seen(name):
            raise NotFetched(f"queue record of {name} looked at before it was fetched")

    def __getitem__(self, name: str) -> Queued:
        record = self._parsed.get(name)
        if record is None:
            self._known(name)
            if name in self._removed:
                raise KeyError(name)
            record = Queued.from_json(self._before[name])
            self._parsed[name] = record
        return record

    def __setitem__(self, name: str, record: Queued) -> None:
        self._removed.discard(name)
        self._parsed[name] = record

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self.discard(name)

    def discard(self, name: str) -> None:
        """Remove ``name``'s record, fetched or not (a caller leaving the line)."""
        self._parsed.pop(name, None)
        self._removed.add(name)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self._parsed:
            return True
        self._known(name)
        return name in self._before and name not in self._removed

    def __iter__(self) -> Iterator[str]:
        """The records fetched or set in this unit (not the whole hash)."""
        yield from (n for n in self._before if n not in self._removed)
        yield from (n for n in self._parsed if n not in self._before)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def changed(self) -> set[str]:
        """The names whose records ``write`` would write or delete."""
        upserts, deletes = self._changes()
        return {*upserts, *deletes}

    def write(self, pipe: Pipeline) -> bool:
        """Queue the records that changed; False when none did."""
        upserts, deletes = self._changes()
        if upserts:
            pipe.hset(keys.QUEUE_INFO, mapping=upserts)
        if deletes:
            pipe.hdel(keys.QUEUE_INFO, *deletes)
        return bool(upserts or deletes)

    def _changes(self) -> tuple[dict[str, str], list[str]]:
        """The records to write (name: JSON) and the names to delete."""
        upserts = {}
        for name, record in self._parsed.items():
            raw = record.to_json()
            if raw != self._before.get(name):
                upserts[name] = raw
        # A record removed unseen may or may not be stored: HDEL of a missing field is
        # a no-op.
        deletes = [n for n in self._removed if n in self._before or n not in self._fetched]
        return upserts, deletes


@dataclass
class LineChange:
    """How a unit changed the line: who left, who joined at the head or the tail, or
    ``rewrite`` for anything else (a reconciled caller put back in arrival order).
    Worked out once per unit, with set operations and C-level list methods, never a
    Python loop over the line."""

    left: set[str]
    front: list[str]
    back: list[str]
    rewrite: bool

    def joined(self, after: list[str]) -> list[tuple[int, str]]:
        """(position from 1, name) of each newcomer."""
        if self.rewrite:
            newcomers = set(self.front)
            return [(i, n) for i, n in enumerate(after, 1) if n in newcomers]
        tail = len(after) - len(self.back)
        return [*enumerate(self.front, 1), *enumerate(self.back, tail + 1)]


def line_change(before: list[str], after: list[str]) -> LineChange | None:
    """None when the line is unchanged (see LineChange)."""
    if before == after:
        return None
    return _at_one_end(before, after) or _worked_out(before, after)


def _at_one_end(before: list[str], after: list[str]) -> LineChange | None:
    """The two usual changes, told apart without a set of the whole line: a few
    callers joined at the tail (incoming calls) or left from the head (routing).
    None for anything else. These are most units' changes, and the sets of
    ``_worked_out`` cost time that grows with the line."""
    grown = len(after) - len(before)
    if before and 0 < grown <= AT_ONE_END and after[: len(before)] == before:
        back = after[len(before) :]
        if len(set(back)) == grown and not any(name in before for name in back):
            return LineChange(set(), [], back, rewrite=False)
    elif -AT_ONE_END <= grown < 0 and before[-grown:] == after:
        left = before[:-grown]
        if len(set(left)) == -grown and not any(name in after for name in left):
            return LineChange(set(left), [], [], rewrite=False)
    return None


def _worked_out(before: list[str], after: list[str]) -> LineChange:
    """Any change, from the sets of who was and who is in the line."""
    old, new = set(before), set(after)
    joined, left = new - old, old - new
    head = 0
    while head < len(after) and after[head] in joined:
        head += 1
    tail = len(after)
    while tail > head and after[tail - 1] in joined:
        tail -= 1
    kept = list(before)
    if len(left) <= 8:
        for name in left:
            kept.remove(name)
    else:
        kept = [n for n in before if n not in left]
    if head + len(after) - tail != len(joined) or after[head:tail] != kept:
        # Anything else: the whole list is written anew; ``front`` holds who joined.
        return LineChange(left, [n for n in after if n in joined], [], rewrite=True)
    return LineChange(left, after[:head], after[tail:], rewrite=False)


def write_change(pipe: Pipeline, change: LineChange, after: list[str]) -> None:
    """Queue the list commands for ``change``, which made the line ``after``."""
    if change.rewrite:
        pipe.delete(keys.QUEUE)
        if after:
            pipe.rpush(keys.QUEUE, *after)
        return
    for name in change.left:
        pipe.lrem(keys.QUEUE, 1, name)
    if change.front:
        pipe.lpush(keys.QUEUE, *reversed(change.front))
    if change.back:
        pipe.rpush(keys.QUEUE, *change.back)
