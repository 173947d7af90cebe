"""Callbacks in history and timelines (SPEC §8, §9; console/history/calls.py,
console/domain/timeline.py): one call row per callback across its conferences, the
origin call ending as ``callback-requested``, reports counting inbound calls only, and
the callback's timeline entries."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from console.domain import history_log, timeline
from console.domain.events import Event
from console.history import reports
from console.history.calls import conference_of, derive_call
from console.history.queries import Viewer, get_call
from console.history.writer import HistoryWriter
from console.postgres_ext import make_pool
from tests.conftest import PUBLIC_BASE_URL, make_settings
from tests.support.flow_helpers import (
    AppVoice,
    agent_answers,
    asks_callback,
    events,
    login,
    set_available,
)
from warmline.app import create_app

pytestmark = pytest.mark.timeout(120)

CB = "CB" + "0" * 31 + "1"
ORIGIN = "CA00000000000000000000000000000007"
NUMBER = "+12025550143"
REQUESTED = 1_000
OTHER = "+12025550144"


class Log:
    """Hand-written events of a callback (any of its conferences) and of its origin."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, kind: str, ts: int, conference: str | None = None, /, **data: Any) -> Log:
        self.events.append(
            {
                "id": f"{1000 + len(self.events)}-0",
                "type": kind,
                "ts": ts,
                "conference": conference,
                "data": data,
            }
        )
        return self

    def callback(self, ts: int, conference: str, status: str, **changes: Any) -> Log:
        data = {"id": CB, "number": NUMBER, "requested_at": REQUESTED, "attempts": 0}
        data |= {"status": status, "agent": None, "origin": ORIGIN, "result": None}
        data |= {"disposition": None, "conference": conference, **changes}
        return self.add("callback.updated", ts, conference, **data)

    def person(self, kind: str, ts: int, conference: str, sid: str, role: str, agent=None):
        data = {"conference": conference, "call_sid": sid, "role": role, "agent": agent}
        data |= {"from": NUMBER if role == "customer" else None}
        data |= {"muted": False, "hold": False, "coaching": False}
        return self.add(f"participant.{kind}", ts, conference, **data)

    def conference(self, kind: str, ts: int, name: str, /, **extra: Any) -> Log:
        data = {"name": name, "sid": f"CF{name[-2:]}", "kind": "callback", "callback": CB}
        return self.add(f"conference.{kind}", ts, name, **data, **extra)

    def line(self, kind: str, ts: int, /, **data: Any) -> Log:
        return self.add(kind, ts, None, call_sid=ORIGIN, callback=CB, **data)


def two_sessions() -> Log:
    """alice takes the callback; a machine answers the first dial; she hangs up while
    the second rings: it goes on in ``CB-2``, where bob takes it, the number answers,
    is held 1 s, hangs up; bob closes it with a disposition."""
    s2 = f"{CB}-2"
    return (
        Log()
        .callback(1_000, CB, "waiting")
        .line("call.queued", 1_000, **{"from": NUMBER}, position=1, kind="callback")
        .line("call.dequeued", 2_000, reason="routed")
        .callback(2_000, CB, "waiting", agent="alice")
        .person("joined", 3_000, CB, "CAalice", "agent", "alice")
        .conference("started", 3_000, CB)
        .callback(3_000, CB, "dialing", agent="alice", attempts=1)
        .person("joined", 4_000, CB, "CAmachine", "customer")
        .person("left", 4_500, CB, "CAmachine", "customer")
        .callback(4_500, CB, "waiting", agent="alice", attempts=1, result="machine")
        .callback(5_000, CB, "dialing", agent="alice", attempts=2)
        .person("left", 6_000, CB, "CAalice", "agent", "alice")
        .conference("ended", 6_000, CB, reason="participant-left")
        .callback(6_000, s2, "waiting", attempts=2, result="canceled")
        .line("call.queued", 6_000, **{"from": NUMBER}, position=1, kind="callback")
        .line("call.dequeued", 7_000, reason="routed")
        .callback(7_000, s2, "waiting", agent="bob", attempts=2, result="canceled")
        .person("joined", 8_000, s2, "CAbob", "agent", "bob")
        .conference("started", 8_000, s2)
        .callback(9_000, s2, "dialing", agent="bob", attempts=3)
        .person("joined", 10_000, s2, "CAnumber", "customer")
        .callback(10_000, s2, "connected", agent="bob", attempts=3)
        .add("participant.updated", 11_000, s2, **_held(s2, True))
        .add("participant.updated", 12_000, s2, **_held(s2, False))
        .person("left", 15_000, s2, "CAnumber", "customer")
        .person("left", 15_000, s2, "CAbob", "agent", "bob")
        .conference("ended", 15_000, s2, reason="participant-with-end-conference-on-exit-left")
        .callback(15_000, s2, "done", agent="bob", attempts=3)
        .callback(20_000, s2, "done", agent="bob", attempts=3, disposition="Resolved")
    )


def _held(conference: str, hold: bool) -> dict[str, Any]:
    data = {"conference": conference, "call_sid": "CAnumber", "role": "customer", "agent": None}
    return data | {"from": NUMBER, "muted": False, "hold": hold, "coaching": False}


def filed(log: Log) -> dict[str, list[dict[str, Any]]]:
    """The events by the call the writer files them under."""
    calls: dict[str, list[dict[str, Any]]] = {}
    for event in log.events:
        name = conference_of(event["type"], event["data"], event["conference"])
        assert name is not None
        calls.setdefault(name, []).append(event)
    return calls


def test_a_callback_over_two_conferences_is_one_call_answered_when_its_number_joined():
    calls = filed(two_sessions())
    assert list(calls) == [CB]  # the second session and the line events: filed under it
    rows = derive_call(CB, calls[CB])
    assert rows is not None
    call = rows.call
    assert (call["kind"], call["origin"], call["from_number"]) == ("callback", ORIGIN, NUMBER)
    assert call["arrived_at"] == REQUESTED
    assert (call["answered_at"], call["answered_by"]) == (10_000, "bob")
    assert (call["ended_at"], call["outcome"]) == (15_000, "completed")
    assert call["disposition"] == "Resolved"
    assert call["offered"] is False
    assert (call["wait_ms"], call["hold_ms"]) == (10_000 - REQUESTED, 1_000)
    assert call["talk_ms"] == 15_000 - 10_000 - 1_000
    assert call["agents"] == ["alice", "bob"]
    assert [(leg["agent"], leg["joined_at"], leg["left_at"]) for leg in rows.legs] == [
        ("alice", 3_000, 6_000),
        ("bob", 8_000, 15_000),
    ]


def test_a_callback_row_is_a_function_of_the_set_of_its_events():
    events = two_sessions().events
    expected = derive_call(CB, events)
    rng = random.Random(7)
    for _ in range(50):
        mixed = events + rng.sample(events, rng.randrange(len(events)))
        rng.shuffle(mixed)
        assert derive_call(CB, mixed) == expected


def test_a_callbacks_events_make_a_callback_row_however_few_are_stored_yet():
    only = Log().person("joined", 8_000, f"{CB}-2", "CAbob", "agent", "bob")
    call = derive_call(CB, filed(only)[CB]).call  # type: ignore[union-attr]
    assert (call["kind"], call["offered"], call["answered_by"]) == ("callback", False, None)


def failed_callback() -> Log:
    return (
        Log()
        .callback(1_000, CB, "waiting")
        .callback(2_000, CB, "waiting", agent="alice")
        .person("joined", 3_000, CB, "CAalice", "agent", "alice")
        .conference("started", 3_000, CB)
        .callback(3_000, CB, "dialing", agent="alice", attempts=1)
        .callback(9_000, CB, "failed", agent="alice", attempts=1, result="busy")
        .person("left", 9_500, CB, "CAalice", "agent", "alice")
        .conference("ended", 9_500, CB, reason="participant-left")
        .callback(
            12_000, CB, "failed", agent="alice", attempts=1, result="busy", disposition="Other"
        )
    )


def test_a_callback_never_connected_fails_and_is_no_abandon():
    rows = derive_call(CB, failed_callback().events)
    assert rows is not None
    call = rows.call
    assert (call["outcome"], call["ended_at"]) == ("failed", 9_000)
    assert (call["answered_at"], call["answered_by"], call["wait_ms"]) == (None, None, None)
    assert call["disposition"] == "Other"
    assert call["agents"] == ["alice"]


def test_the_call_that_asked_ends_as_callback_requested_when_it_leaves_the_line():
    log = (
        Log()
        .add("call.queued", 500, None, call_sid=ORIGIN, **{"from": NUMBER}, position=1)
        .add("call.dequeued", 1_000, None, call_sid=ORIGIN, reason="callback-requested")
        .add("conference.ended", 1_200, ORIGIN, name=ORIGIN, reason="customer-never-joined")
    )
    calls = filed(log)
    assert list(calls) == [ORIGIN]
    call = derive_call(ORIGIN, calls[ORIGIN]).call  # type: ignore[union-attr]
    assert (call["kind"], call["outcome"], call["offered"]) == (
        "inbound",
        "callback-requested",
        True,
    )
    assert (call["arrived_at"], call["ended_at"], call["wait_ms"]) == (500, 1_000, 500)
    assert call["answered_at"] is None


# -- timelines --------------------------------------------------------------------------


def entries(log: Log) -> list[tuple[str, str, str]]:
    """(filed under, actor, detail) of each event's timeline entry."""
    found = []
    for e in log.events:
        made = timeline.entry_for(Event(e["type"], e["data"], e["ts"], conference=e["conference"]))
        if made is not None:
            found.append((made[0], made[1]["actor"], made[1]["detail"]))
    return found


def test_a_callbacks_timeline_tells_each_step_under_its_id():
    told = entries(two_sessions())
    assert {name for name, _, _ in told} == {CB}
    callback_steps = [
        (actor, detail)
        for (_, actor, detail), e in zip(told, two_sessions().events, strict=True)
        if e["type"] in ("callback.updated", "call.queued", "call.dequeued")
    ]
    assert callback_steps == [
        ("customer", f"asked to be called back at {NUMBER}"),
        ("system", "callback waiting in the queue at position 1"),
        ("system", "callback taken from the queue: an agent answered"),
        ("alice", f"alice takes the callback to {NUMBER}"),
        ("system", f"dialing {NUMBER} (attempt 1)"),
        ("system", "attempt 1: an answering machine answered; alice may dial again or close it"),
        ("system", f"dialing {NUMBER} (attempt 2)"),
        ("system", "callback back in the queue: its agent left before the number answered"),
        ("system", "callback waiting in the queue at position 1"),
        ("system", "callback taken from the queue: an agent answered"),
        ("system", "attempt 2: the dial was stopped; bob may dial again or close it"),
        ("system", f"dialing {NUMBER} (attempt 3)"),
        ("customer", f"{NUMBER} answered: connected to bob"),
        ("system", "callback done: the call ended"),
        ("bob", "callback closed (Resolved)"),
    ]


def test_a_failed_callback_and_the_origins_ask_in_timelines():
    told = [(actor, detail) for name, actor, detail in entries(failed_callback())]
    assert ("system", "callback failed after 1 attempt (last: busy)") in told
    assert told[-1] == ("alice", "callback closed as failed (Other)")
    asked = Event("call.dequeued", {"call_sid": ORIGIN, "reason": "callback-requested"}, 1)
    name, entry = timeline.entry_for(asked)  # type: ignore[misc]
    assert (name, entry["actor"], entry["call_sid"]) == (ORIGIN, "customer", ORIGIN)
    assert entry["detail"] == "asked to be called back"


# -- through the app, the writer, PostgreSQL and the reports -----------------------------


def dialed(voice: AppVoice, number: str) -> Any:
    """The last dial of ``number`` (Participants API)."""
    return [r for r in voice.double.numbers_dialed() if r.param("To") == number][-1]


async def store_the_log(redis: Any, database_url: str) -> None:
    """A writer driven by the test copies the whole event log into PostgreSQL."""
    pool = make_pool(database_url, max_size=2)
    await pool.open()
    try:
        writer = HistoryWriter(lambda: redis, lambda: pool)
        writer.block_ms = 10
        await history_log.create_group(redis)
        idle = 0
        while idle < 3:
            idle = idle + 1 if await writer.step() == 0 else 0
    finally:
        await pool.close()


async def test_real_callbacks_are_stored_as_their_own_calls_and_never_offered(
    twilio, redis, redis_server, database_url, pg
):
    settings = make_settings(
        api_base_url=twilio.base_url, callback_offer_seconds=0, callback_attempts=2
    )
    app = create_app(settings, redis_url=redis_server.url)
    async with app.test_app(), app.test_client() as client:
        voice = AppVoice(client, twilio, app, PUBLIC_BASE_URL)
        alice = await login(app, redis, "alice")
        bob = await login(app, redis, "bob")
        carol = await login(app, redis, "carol")
        caller, callback = await asks_callback(voice, redis, NUMBER)
        other_caller, other = await asks_callback(voice, redis, OTHER)
        await set_available(alice)
        alice_leg = await agent_answers(voice, callback, "alice")
        await set_available(bob)
        await agent_answers(voice, other, "bob")
        await set_available(carol)  # the line is empty: she will be the longest free
        # The other callback: both dials busy, it fails; bob closes it.
        await voice.person_misses(dialed(voice, OTHER), "busy")
        await voice.settle()
        assert (await bob.post(f"/api/callbacks/{other}/retry")).status_code == 200
        await voice.settle()
        await voice.person_misses(dialed(voice, OTHER), "busy")
        await voice.settle()
        response = await bob.post(f"/api/callbacks/{other}/close", json={"disposition": "Other"})
        assert response.status_code == 200, await response.get_data(as_text=True)
        await voice.settle()
        # The first: alice hangs up while its number rings; carol (free the longest)
        # serves its second session, the number is dialed again, answers, hangs up.
        await voice.ring(dialed(voice, NUMBER))
        await voice.event(
            callback,
            "participant-leave",
            alice_leg.call_sid,
            ParticipantLabel=alice_leg.label,
            EndConferenceOnExit=True,
        )
        await voice.event(callback, "conference-end", ReasonConferenceEnded="participant-left")
        await voice.settle()
        second = f"{callback}-2"
        await agent_answers(voice, second, "carol")
        await voice.settle()  # the number is dialed once she is in
        number = await voice.person_answers(dialed(voice, NUMBER), "human")
        await voice.event(second, "participant-join", number, ParticipantLabel="customer")
        await voice.settle()
        await voice.event(
            second,
            "participant-leave",
            number,
            ParticipantLabel="customer",
            EndConferenceOnExit=True,
        )
        await voice.event(second, "conference-end", ReasonConferenceEnded="participant-left")
        await voice.settle()
        assert alice and carol
        live = [(e["actor"], e["detail"]) for e in await timeline.read(redis, second)]

    # The live timeline of the second conference is the whole callback's.
    assert ("alice", f"alice takes the callback to {NUMBER}") in live
    assert ("customer", f"{NUMBER} answered: connected to carol") in live
    assert (
        "system",
        "callback back in the queue: its agent left before the number answered",
    ) in live
    log = await events(redis)
    await store_the_log(redis, database_url)
    cur = await pg.execute("SELECT * FROM calls ORDER BY arrived_at, id")
    rows = {row["id"]: row for row in await cur.fetchall()}
    assert set(rows) == {caller, callback, other_caller, other}, json.dumps(log, indent=1)
    served = rows[callback]
    connected = next(
        e for e in log if e["type"] == "callback.updated" and e["data"]["status"] == "connected"
    )
    assert (served["kind"], served["origin"], served["from_number"]) == ("callback", caller, NUMBER)
    assert served["arrived_at"] == connected["data"]["requested_at"]
    assert (served["answered_by"], served["outcome"]) == ("carol", "completed")
    cur = await pg.execute(
        "SELECT ts FROM events WHERE conference = %s AND type = 'participant.joined'"
        " AND data->>'role' = 'customer'",
        [callback],
    )
    [joined] = await cur.fetchall()  # the number, in the second session, filed here
    assert served["answered_at"] == joined["ts"]
    cur = await pg.execute(
        "SELECT agent FROM call_legs WHERE call_id = %s ORDER BY position", [callback]
    )
    assert [row["agent"] for row in await cur.fetchall()] == ["alice", "carol"]
    failed = rows[other]
    assert (failed["kind"], failed["origin"], failed["outcome"]) == (
        "callback",
        other_caller,
        "failed",
    )
    assert (failed["answered_at"], failed["disposition"]) == (None, "Other")
    for origin in (caller, other_caller):
        assert (rows[origin]["kind"], rows[origin]["outcome"]) == ("inbound", "callback-requested")

    # Reports: the two callers reached the line (offered) and asked for callbacks; the
    # callbacks themselves are neither offered, answered nor abandoned.
    day = datetime.fromtimestamp(served["arrived_at"] / 1000, UTC).date()
    chosen = reports.ReportRange(day, day, "day", ZoneInfo("UTC"))
    pool = make_pool(database_url, max_size=2)
    await pool.open()
    try:
        answer = await reports.report(pool, chosen, 20_000, served["ended_at"] + 1)
        [row] = answer["rows"]
        assert (row["offered"], row["answered"], row["abandoned"]) == (2, 0, 0)
        assert (row["callbacks"], row["voicemails"], row["service_level"]) == (2, 0, None)
        by_agent = await reports.report(
            pool,
            reports.ReportRange(day, day, "agent", ZoneInfo("UTC")),
            20_000,
            served["ended_at"] + 1,
        )
        carol_row = next(r for r in by_agent["rows"] if r["bucket"] == "carol")
        assert (carol_row["offered"], carol_row["answered"], carol_row["abandoned"]) == (0, 0, 0)
        assert carol_row["handled"] == 1  # she did serve it
        stored = await get_call(pool, callback, Viewer("sue", supervisor=True))
        assert stored is not None
        details = [e["detail"] for e in stored["timeline"]]
        assert f"{NUMBER} answered: connected to carol" in details
        assert "callback done: the call ended" in details
        assert details.index(f"asked to be called back at {NUMBER}") < details.index(
            "callback back in the queue: its agent left before the number answered"
        )
        asked = await get_call(pool, caller, Viewer("sue", supervisor=True))
        assert asked is not None
        assert "asked to be called back" in [e["detail"] for e in asked["timeline"]]
    finally:
        await pool.close()


def test_an_agents_wrap_up_gives_the_call_its_disposition_and_notes_the_latest_winning():
    """SPEC §10: call.disposition events reach the call's row; the last one given wins,
    whatever order the events are delivered in; the timeline says who gave it."""
    call = "CA00000000000000000000000000000009"
    log = Log()
    log.add(
        "call.disposition",
        20_000,
        call,
        call=call,
        agent="alice",
        disposition="Follow-up",
        notes="call back Monday",
        at=20_000,
    )
    log.add(
        "call.disposition",
        25_000,
        call,
        call=call,
        agent="alice",
        disposition="Resolved",
        notes="sorted",
        at=25_000,
    )
    log.add("call.wrapped-up", 26_000, call, call=call, agent="alice", wrap_up_ms=6_000)
    log.add("call.wrapped-up", 27_000, call, call=call, agent="bob", wrap_up_ms=1_500)
    rows = derive_call(call, reversed(log.events))
    assert rows is not None
    assert (rows.call["disposition"], rows.call["notes"]) == ("Resolved", "sorted")
    assert rows.call["wrap_up_ms"] == 7_500  # every agent's wrap-up, in the handle time
    made = timeline.entry_for(
        Event("call.disposition", log.events[0]["data"], 20_000, conference=call)
    )
    assert made is not None
    name, entry = made
    assert name == call
    assert (entry["actor"], entry["agents"]) == ("alice", ["alice"])
    assert entry["detail"] == "alice gave it the disposition Follow-up: call back Monday"
