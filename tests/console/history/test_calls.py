"""A call's history rows derived from its events (console/history/calls.py): times on
the events' clock only, outcomes, legs, transfers, and the same rows whatever the
order or repetition of the events."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from console.domain import keys
from console.history.calls import conference_of, derive_call
from tests.support.flow_helpers import (
    agent_answers,
    customer_waits,
    leg_leaves,
    login,
    set_available,
)

NAME = "CA00000000000000000000000000000001"
TWILIO_TIME = 42  # Twilio's Timestamp (participant joined_at): never used for history


class Log:
    """Hand-written events of one call, with stream ids in order."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, kind: str, ts: int, **data: Any) -> Log:
        self.events.append(
            {"id": f"{1000 + len(self.events)}-0", "type": kind, "ts": ts, "data": data}
        )
        return self

    def queued(self, ts: int) -> Log:
        return self.add("call.queued", ts, call_sid=NAME, **{"from": "+15551230000"}, position=1)

    def person(self, kind: str, ts: int, call_sid: str, role: str, agent: str | None, **flags):
        data = {"conference": NAME, "call_sid": call_sid, "role": role, "agent": agent}
        data |= {"from": None, "muted": False, "hold": False, "coaching": False}
        data |= {"joined_at": TWILIO_TIME, **flags}
        return self.add(f"participant.{kind}", ts, **data)

    def customer(self, kind: str, ts: int, **flags: Any) -> Log:
        return self.person(kind, ts, NAME, "customer", None, **flags)

    def conference(self, kind: str, ts: int, **extra: Any) -> Log:
        data = {"name": NAME, "sid": "CF1", "from": "+15551230000", "created_at": TWILIO_TIME}
        return self.add(f"conference.{kind}", ts, **data, started_at=TWILIO_TIME, **extra)

    def transfer(self, ts: int, tid: str, status: str, **extra: Any) -> Log:
        data = {"id": tid, "conference": NAME, "from_agent": "alice", "to_agent": "bob"}
        return self.add("transfer.updated", ts, **data, status=status, **extra)


def answered_call() -> Log:
    """Waits 4 s, talks with alice, is held 2 s, alice hangs up: the call ends."""
    return (
        Log()
        .queued(1_000)
        .customer("joined", 1_100)
        .person("joined", 5_000, "CAalice", "agent", "alice")
        .conference("started", 5_000)
        .customer("updated", 6_000, hold=True)
        .customer("updated", 8_000, hold=False)
        .person("left", 10_000, "CAalice", "agent", "alice")
        .conference("ended", 10_500, reason="last-participant-left")
        .customer("left", 10_500)
    )


def test_an_answered_call_is_measured_on_the_events_clock_only():
    rows = derive_call(NAME, answered_call().events)
    assert rows is not None
    call = rows.call
    assert call["arrived_at"] == 1_000
    assert (call["answered_at"], call["answered_by"]) == (5_000, "alice")
    assert call["wait_ms"] == 4_000
    assert call["hold_ms"] == 2_000
    assert call["talk_ms"] == 10_500 - 5_000 - 2_000
    assert (call["ended_at"], call["outcome"]) == (10_500, "completed")
    assert call["from_number"] == "+15551230000"
    assert call["agents"] == ["alice"]
    assert call["updated_at"] == 10_500
    assert rows.legs == [
        {
            "call_id": NAME,
            "position": 0,
            "call_sid": "CAalice",
            "agent": "alice",
            "role": "agent",
            "joined_at": 5_000,
            "left_at": 10_000,
            "hold_ms": 0,
        }
    ]


def test_a_caller_who_hangs_up_while_waiting_is_abandoned_without_conference_end():
    log = (
        Log()
        .queued(1_000)
        .customer("joined", 1_100)
        .add("call.dequeued", 4_000, call_sid=NAME, reason="hung-up")
        .customer("left", 4_000)
    )
    call = derive_call(NAME, log.events).call  # type: ignore[union-attr]
    assert (call["outcome"], call["ended_at"], call["wait_ms"]) == ("abandoned", 4_000, 3_000)
    assert (call["answered_at"], call["answered_by"], call["talk_ms"]) == (None, None, 0)


def test_a_caller_the_app_finds_gone_is_abandoned_when_it_ends_the_conference():
    log = Log().queued(1_000).add("call.dequeued", 7_000, call_sid=NAME, reason="hung-up")
    log.conference("ended", 7_000, reason="customer-never-joined")
    call = derive_call(NAME, log.events).call  # type: ignore[union-attr]
    assert (call["outcome"], call["wait_ms"]) == ("abandoned", 6_000)


def test_an_agent_joining_after_the_caller_left_does_not_answer_the_call():
    log = Log().queued(1_000).customer("joined", 1_100).customer("left", 3_000)
    log.person("joined", 3_500, "CAalice", "agent", "alice")
    call = derive_call(NAME, log.events).call  # type: ignore[union-attr]
    assert call["outcome"] == "abandoned"
    assert call["answered_by"] is None


def test_a_call_still_waiting_has_no_outcome_or_wait_yet():
    call = derive_call(NAME, Log().queued(1_000).customer("joined", 1_100).events).call  # type: ignore[union-attr]
    assert (call["outcome"], call["ended_at"], call["wait_ms"]) == (None, None, None)
    assert call["arrived_at"] == 1_000


def test_legs_in_join_order_with_their_hold_and_transfers_with_their_final_status():
    log = (
        Log()
        .queued(1_000)
        .customer("joined", 1_100)
        .person("joined", 2_000, "CAalice", "agent", "alice")
        .transfer(3_000, "TR1", "requested")
        .person("updated", 3_000, "CAalice", "agent", "alice", hold=True)
        .transfer(4_000, "TR1", "ringing")
        .person("joined", 5_000, "CAbob", "agent", "bob")
        .transfer(5_000, "TR1", "joined")
        .person("updated", 6_000, "CAalice", "agent", "alice", hold=False)
        .person("joined", 6_500, "CAsup", "supervisor", "sue", muted=True)
        .person("left", 7_000, "CAalice", "agent", "alice")
        .transfer(7_000, "TR1", "completed")
        .transfer(7_100, "TR2", "requested")
        .transfer(7_200, "TR2", "canceled")
        .conference("ended", 9_000)
        .customer("left", 9_000)
    )
    rows = derive_call(NAME, log.events)
    assert rows is not None
    legs = [(leg["agent"], leg["role"], leg["joined_at"], leg["left_at"]) for leg in rows.legs]
    assert legs == [
        ("alice", "agent", 2_000, 7_000),
        ("bob", "agent", 5_000, 9_000),
        ("sue", "supervisor", 6_500, 9_000),
    ]
    assert [leg["hold_ms"] for leg in rows.legs] == [3_000, 0, 0]
    assert [leg["position"] for leg in rows.legs] == [0, 1, 2]
    assert rows.call["answered_by"] == "alice"
    assert rows.call["agents"] == ["alice", "bob"]  # a supervisor is not an agent on it
    transfers = {t["id"]: t for t in rows.transfers}
    assert (transfers["TR1"]["status"], transfers["TR1"]["requested_at"]) == ("completed", 3_000)
    assert transfers["TR1"]["ended_at"] == 7_000
    assert transfers["TR1"]["data"]["status"] == "completed"
    assert (transfers["TR2"]["status"], transfers["TR2"]["ended_at"]) == ("canceled", 7_200)


def test_copies_of_a_supervisor_leg_made_for_agents_are_not_legs():
    log = Log().queued(1_000).customer("joined", 1_100)
    log.person("joined", 2_000, "CAalice", "agent", "alice")
    log.person("joined", 3_000, "CAsup", "supervisor", "sue", view="agents")
    rows = derive_call(NAME, log.events)
    assert rows is not None
    assert [leg["call_sid"] for leg in rows.legs] == ["CAalice"]


def test_line_events_belong_to_the_callers_conference():
    assert conference_of("call.queued", {"call_sid": NAME}, None) == NAME
    assert conference_of("call.dequeued", {"call_sid": NAME}, "") == NAME
    assert conference_of("participant.joined", {"conference": NAME}, "") == NAME
    assert conference_of("conference.ended", {"name": NAME}, NAME) == NAME
    assert conference_of("agent.updated", {"username": "alice"}, "") is None


@st.composite
def delivered(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A call's events, and the same events delivered in a shuffled order with repeats."""
    events = draw(st.sampled_from([answered_call, call_with_transfer]))().events
    repeats = draw(st.lists(st.sampled_from(events), max_size=len(events)))
    mixed = events + repeats
    random.Random(draw(st.integers(0, 2**32))).shuffle(mixed)
    return events, mixed


def call_with_transfer() -> Log:
    return (
        Log()
        .queued(1_000)
        .customer("joined", 1_100)
        .person("joined", 2_000, "CAalice", "agent", "alice")
        .transfer(3_000, "TR1", "requested")
        .transfer(4_000, "TR1", "failed", reason="no-answer")
        .customer("updated", 4_500, hold=True)
        .transfer(5_000, "TR1", "completed")
        .customer("updated", 5_500, hold=False)
        .add("call.dequeued", 6_000, call_sid=NAME, reason="hung-up")
        .customer("left", 6_000)
    )


@settings(max_examples=200, deadline=None)
@given(delivered())
def test_the_rows_are_a_function_of_the_set_of_events(case):
    events, mixed = case
    assert derive_call(NAME, mixed) == derive_call(NAME, events)


async def test_a_real_caller_hanging_up_unanswered_is_abandoned_on_the_apps_clock(
    app, redis, voice
):
    """Through the app: the caller leaves their conference before anyone answers and
    Twilio sends no conference-end."""
    name = await customer_waits(voice)
    await voice.event(
        name,
        "participant-leave",
        name,
        ParticipantLabel="customer",
        EndConferenceOnExit=True,
        ParticipantCallStatus="completed",
    )
    await voice.settle()
    events = await _events_of(redis, name)
    call = derive_call(name, events).call  # type: ignore[union-attr]
    queued = next(e for e in events if e["type"] == "call.queued")
    left = next(e for e in events if e["type"] == "call.dequeued")
    assert left["data"]["reason"] == "hung-up"
    assert call["outcome"] == "abandoned"
    assert (call["arrived_at"], call["ended_at"]) == (queued["ts"], left["ts"])
    assert call["wait_ms"] == left["ts"] - queued["ts"]


async def test_a_real_answered_call_has_its_agent_leg_and_completes(app, redis, voice):
    alice = await login(app, redis, "alice")
    await set_available(alice)
    name = await customer_waits(voice)
    answered = await agent_answers(voice, name, "alice")
    await leg_leaves(voice, name, answered, end_on_exit=True)
    await voice.event(
        name, "conference-end", ReasonConferenceEnded="participant-with-end-conference-on-exit-left"
    )
    await voice.settle()
    events = await _events_of(redis, name)
    rows = derive_call(name, events)
    assert rows is not None
    joined = next(
        e for e in events if e["type"] == "participant.joined" and e["data"]["role"] == "agent"
    )
    assert rows.call["outcome"] == "completed"
    assert (rows.call["answered_at"], rows.call["answered_by"]) == (joined["ts"], "alice")
    assert [(leg["agent"], leg["call_sid"]) for leg in rows.legs] == [("alice", answered.call_sid)]


async def _events_of(redis, name: str) -> list[dict[str, Any]]:
    """Conference ``name``'s events as the writer stores them."""
    found = []
    for event_id, fields in await redis.xrange(keys.EVENTS):
        data = json.loads(fields["data"])
        if conference_of(fields["type"], data, fields["conference"]) == name:
            found.append(
                {"id": event_id, "type": fields["type"], "ts": int(fields["ts"]), "data": data}
            )
    return found
