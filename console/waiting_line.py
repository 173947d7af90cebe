"""The waiting line as one unit of work sees it, at a cost that does not grow with it.

Every unit reads the queue (routing needs its head), but most change one caller or
none. With a thousand callers waiting, parsing every caller's record and rewriting
the whole list and hash on each change made a status callback cost ~6 ms of CPU and
an incoming call ~40 ms (bench/RESULTS.md, webhooks); only reading the hash of
1,100 records still cost a unit ~0.7 ms of CPU and ~1.7 ms of waiting on Redis. So a
unit reads the list of names, and fetches callers' records only when it needs them
(routing, a whole-line queue.updated), checked by the unit's commit like the rest;
records are parsed only when looked at, written back only when changed, and the
list is changed with the few LREM/LPUSH/RPUSH that a join or a departure needs.

``queue.updated`` carries the whole line to every dashboard. Sent on every change
of a long line it was most of the bytes on every socket, so past
``EAGER_QUEUE_UPDATES`` callers it is sent at most once per
``QUEUE_UPDATE_INTERVAL_MS`` (the sweeper sends the one held back); the small
``call.queued`` / ``call.dequeued`` events still go out with every change.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from console import keys
from console.records import Queued

EAGER_QUEUE_UPDATES = 25  # up to this many callers, every change sends queue.updated
QUEUE_UPDATE_INTERVAL_MS = 1000


class NotFetched(LookupError):
    """A caller's record was looked at before it was fetched: a bug in the caller."""


class QueueInfo(MutableMapping[str, Queued]):
    """Queued records by conference name, from ``wl:queue:info``, fetched on demand
    (``fetch``): a plain read, which the unit's commit check covers (console/unit_state.py)."""

    def __init__(self) -> None:
        self._before: dict[str, str] = {}  # raw records fetched (absent ones: not here)
        self._fetched: set[str] = set()  # names asked for, present or not
        self._parsed: dict[str, Queued] = {}
        self._removed: set[str] = set()

    async def fetch(self, redis: Redis, names: Iterable[str]) -> None:
        """Read the records of ``names`` not read yet, in one HMGET."""
        wanted = [
            n
            for n in dict.fromkeys(names)
            if n not in self._fetched and n not in self._parsed and n not in self._removed
        ]
        if not wanted:
            return
        for name, raw in zip(wanted, await redis.hmget(keys.QUEUE_INFO, wanted), strict=True):
            if raw is not None:
                self._before[name] = raw
        self._fetched.update(wanted)

    def _known(self, name: str) -> None:
        if name not in self._fetched and name not in self._parsed and name not in self._removed:
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

    def write(self, pipe: Pipeline) -> bool:
        """Queue the records that changed; False when none did."""
        upserts = {}
        for name, record in self._parsed.items():
            raw = record.to_json()
            if raw != self._before.get(name):
                upserts[name] = raw
        # A record removed unseen may or may not be stored: HDEL of a missing field is
        # a no-op.
        deletes = [n for n in self._removed if n in self._before or n not in self._fetched]
        if upserts:
            pipe.hset(keys.QUEUE_INFO, mapping=upserts)
        if deletes:
            pipe.hdel(keys.QUEUE_INFO, *deletes)
        return bool(upserts or deletes)


def write_line(pipe: Pipeline, before: list[str], after: list[str]) -> bool:
    """Queue the list commands that turn ``before`` into ``after``: the few a join at
    either end or a departure anywhere needs, or a rewrite for anything else (a
    reconciled caller put back in arrival order). False when nothing changed."""
    if before == after:
        return False
    kept_names = set(after)
    old_names = set(before)
    kept = [n for n in before if n in kept_names]
    start, end = 0, len(after)
    while start < end and after[start] not in old_names:
        start += 1
    while end > start and after[end - 1] not in old_names:
        end -= 1
    if after[start:end] != kept:
        pipe.delete(keys.QUEUE)
        if after:
            pipe.rpush(keys.QUEUE, *after)
        return True
    for name in before:
        if name not in kept_names:
            pipe.lrem(keys.QUEUE, 1, name)
    if start:
        pipe.lpush(keys.QUEUE, *reversed(after[:start]))
    if end < len(after):
        pipe.rpush(keys.QUEUE, *after[end:])
    return True
