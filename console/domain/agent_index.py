"""The agents a unit of work reads, parsed only when it reads them (``AgentTable``),
and the few facts about all of them that every unit asks (is anyone free, does a
transfer wait, who is engaged, who is signed in: ``AgentIndex``), kept beside the
process's copy of the state, so a unit's cost does not grow with the agents signed in.
The index is built once per agents' state and updated with each commit's writes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field

from console.domain.records import Agent, AgentStatus


@dataclass
class AgentIndex:
    """Facts about every agent of one agents' state (a raw ``wl:agents`` mapping)."""

    free: dict[str, int] = field(default_factory=dict)  # available, no dial: idle_since
    wrapping: dict[str, int] = field(default_factory=dict)  # in wrap-up, no dial: until
    transfers: set[str] = field(default_factory=set)  # their transfer waits (SPEC §10)
    engaged: dict[str, str | None] = field(default_factory=dict)  # dialed: conference
    statuses: dict[str, str] = field(default_factory=dict)  # everyone's status

    @classmethod
    def build(cls, agents: Mapping[str, str]) -> AgentIndex:
        index = cls()
        for name, raw in agents.items():
            index._put(name, Agent.from_json(raw))
        return index

    def updated(self, written: Mapping[str, str]) -> AgentIndex:
        """The index of the state once ``written`` (name -> record JSON) replaced
        those agents; this one is left as it is (units in flight may use it)."""
        index = AgentIndex(
            dict(self.free),
            dict(self.wrapping),
            set(self.transfers),
            dict(self.engaged),
            dict(self.statuses),
        )
        for name, raw in written.items():
            index._put(name, Agent.from_json(raw))
        return index

    def _put(self, name: str, agent: Agent) -> None:
        self.statuses[name] = agent.status
        for facts, status in (
            (self.free, AgentStatus.AVAILABLE),
            (self.wrapping, AgentStatus.WRAP_UP),
        ):
            if agent.status == status and agent.dial is None:
                facts[name] = agent.idle_since
            else:
                facts.pop(name, None)
        if agent.transfer_waiting:
            self.transfers.add(name)
        else:
            self.transfers.discard(name)
        if agent.dial:
            self.engaged[name] = agent.conference
        else:
            self.engaged.pop(name, None)


class AgentTable(MutableMapping[str, Agent]):
    """A unit's agents: each parsed from ``raw`` (shared, never changed) on first
    access; new ones added by the unit. Iterating parses them all."""

    def __init__(self, raw: Mapping[str, str]) -> None:
        self._raw = raw
        self.parsed: dict[str, Agent] = {}  # every agent the unit read or added
        self._before: dict[str, Agent | None] = {}

    def __getitem__(self, name: str) -> Agent:
        agent = self.parsed.get(name)
        if agent is None:
            agent = self.parsed[name] = Agent.from_json(self._raw[name])
        return agent

    def __setitem__(self, name: str, agent: Agent) -> None:
        self.parsed[name] = agent

    def __delitem__(self, name: str) -> None:
        raise TypeError("an agent is never removed by a unit of work")

    def __contains__(self, name: object) -> bool:
        return name in self.parsed or name in self._raw

    def __iter__(self) -> Iterator[str]:
        yield from self._raw
        yield from (name for name in self.parsed if name not in self._raw)

    def __len__(self) -> int:
        return len(self._raw) + sum(name not in self._raw for name in self.parsed)

    def before(self, name: str) -> Agent | None:
        """Agent ``name`` as the unit found it (None: the unit added it)."""
        if name not in self._before:
            raw = self._raw.get(name)
            self._before[name] = None if raw is None else Agent.from_json(raw)
        return self._before[name]

    def others(self, facts: Mapping[str, object]) -> Iterator[str]:
        """The names in ``facts`` (an index's) of agents the unit has not read: their
        index entry still holds."""
        parsed = self.parsed
        return (name for name in facts if name not in parsed)
