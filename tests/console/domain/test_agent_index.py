"""A unit reads only the agents it touches (console/domain/agent_index.py): what it
answers about all of them (who is routable, engaged, signed in; whether a transfer
waits; whose wrap-up is over) and what it writes must be what reading every agent
gave, whatever the agents and whatever the unit changed. And an index updated with a
commit's writes is the index of the state after them."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.domain.agent_index import AgentIndex
from console.domain.records import Agent, AgentStatus
from console.domain.unit import Unit
from console.domain.unit_state import Start, StateCopy, Versions
from tests.conftest import make_settings

NOW = 1_000_000
NAMES = [f"agent{i}" for i in range(8)]

agents = st.builds(
    Agent,
    username=st.just("x"),
    status=st.sampled_from(list(AgentStatus)),
    since=st.integers(0, NOW),
    idle_since=st.integers(NOW - 5, NOW + 5),
    conference=st.one_of(st.none(), st.sampled_from(["CA1", "CA2", "CA3"])),
    dial=st.one_of(st.none(), st.just("d1")),
    transfer_waiting=st.one_of(st.none(), st.just("t1")),
)
floors = st.dictionaries(st.sampled_from(NAMES), agents, max_size=len(NAMES)).map(
    lambda found: {name: _named(agent, name) for name, agent in found.items()}
)
# What a unit may do to an agent: read it, or change it (status, dial, idle time).
changes = st.lists(
    st.tuples(
        st.sampled_from([*NAMES, "newcomer"]),
        st.one_of(st.none(), st.sampled_from(list(AgentStatus))),
        st.one_of(st.none(), st.just("d9")),
        st.integers(NOW - 5, NOW + 5),
    ),
    max_size=6,
)


def _named(agent: Agent, name: str) -> Agent:
    agent.username = name
    return agent


def _unit(redis, raw: dict[str, str], copy: StateCopy | None) -> Unit:
    start = Start(Versions("a", "q"), raw, [], {}, {}, from_copy=copy is not None)
    if copy is not None:
        copy.agents = raw
        start.agents_index = copy.agents_index
    return Unit(redis, make_settings(), NOW, start, copy)


def _apply(unit: Unit, steps) -> None:
    for name, status, dial, idle in steps:
        agent = unit.agent(name)
        if status is not None:
            agent.status, agent.dial, agent.idle_since = status, dial, idle


def _reference(raw: dict[str, str], steps) -> dict[str, Agent]:
    """Every agent parsed, the changes applied: what units did before."""
    everyone = {name: Agent.from_json(value) for name, value in raw.items()}
    for name, status, dial, idle in steps:
        agent = everyone.setdefault(name, Agent(username=name, since=NOW))
        if status is not None:
            agent.status, agent.dial, agent.idle_since = status, dial, idle
    return everyone


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(floor=floors, steps=changes, from_copy=st.booleans())
def test_a_unit_answers_as_if_it_read_every_agent(redis, floor, steps, from_copy):
    raw = {name: agent.to_json() for name, agent in floor.items()}
    unit = _unit(redis, raw, StateCopy() if from_copy else None)
    _apply(unit, steps)
    everyone = _reference(raw, steps)
    free = [
        a
        for a in everyone.values()
        if a.status == AgentStatus.AVAILABLE and a.dial is None and a.idle_since <= NOW
    ]
    assert unit.any_routable() == bool(free)
    assert unit.transfer_waits() == any(a.transfer_waiting for a in everyone.values())
    assert unit.engaged() == {a.conference for a in everyone.values() if a.dial}
    assert sorted(unit.statuses()) == sorted(a.status for a in everyone.values())
    waiting = [a.username for a in unit.transfers_waiting()]
    assert sorted(waiting) == sorted(n for n, a in everyone.items() if a.transfer_waiting)
    routable = unit.routable()
    assert [a.username for a in routable] == [
        a.username for a in sorted(free, key=lambda a: (a.idle_since, a.username))
    ]
    unit.end_wrap_ups()
    for agent in everyone.values():
        if agent.status == AgentStatus.WRAP_UP and agent.dial is None and agent.idle_since <= NOW:
            agent.status, agent.since, agent.idle_since = AgentStatus.AVAILABLE, NOW, NOW
    changed = {
        name: agent.to_json()
        for name, agent in everyone.items()
        if name not in raw or Agent.from_json(raw[name]) != agent
    }
    unit.write()
    assert unit.agents_written == changed
    assert {name: Agent.from_json(v) for name, v in unit.after().agents.items()} == everyone


@settings(max_examples=300, deadline=None)
@given(floor=floors, written=floors)
def test_an_updated_index_is_the_index_of_the_state_after_the_writes(floor, written):
    raw = {name: agent.to_json() for name, agent in floor.items()}
    writes = {name: agent.to_json() for name, agent in written.items()}
    assert AgentIndex.build(raw).updated(writes) == AgentIndex.build({**raw, **writes})
