"""A record that keeps its older callbacks folded (console/domain/folding.py) gives the
picture the fold of every callback gives: for any callbacks (gaps, negative
SequenceNumbers, the app's own conference-end), delivered in any order with
duplicates and late ones below the checkpoint, while the dials change under them.
Then the same through the real app and Redis."""

from __future__ import annotations

import dataclasses
import os
import random
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.domain import folding, keys
from console.domain.derive import ConferenceView, derive
from console.domain.flow import NO_CUSTOMER, customer_joined
from console.domain.records import (
    APP_END_SEQ,
    Callback,
    CallbackInfo,
    ConferenceRecord,
    Dial,
    DialKind,
    Transfer,
)
from tests.conftest import PUBLIC_BASE_URL
from tests.console.domain.legacy_fold import legacy_derive
from tests.support.flow_helpers import (
    AppVoice,
    agent_answers,
    customer_waits,
    login,
    set_available,
    state,
)
from webhooks.params import CONFERENCE_EVENTS

NAME = "CA" + "c" * 32  # the customer's CallSid, the conference's name
ALICE, BOB, SUPERVISOR, NUMBER = ("CA" + x * 32 for x in "abse")
CALLS = [NAME, ALICE, BOB, SUPERVISOR, NUMBER, None]
LABELS = [None, "customer", "DLa", "DLb", "DLs", "DLn"]
EVENTS = sorted(CONFERENCE_EVENTS)
RECONCILED = -1_000_000  # reconcile's rebuilt facts fold before Twilio's (reconcile.py)

EXAMPLES = settings(
    max_examples=int(os.environ.get("WARMLINE_EXAMPLES", "500")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
APP_EXAMPLES = settings(
    max_examples=int(os.environ.get("WARMLINE_APP_EXAMPLES", "8")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

flags = st.sampled_from([None, True, False])
# Gaps (numbers Twilio took for events nobody subscribed to), ties, and reconcile's.
seqs = st.one_of(st.integers(0, 60), st.integers(RECONCILED, RECONCILED + 4))
callbacks = st.builds(
    Callback,
    seq=seqs,
    event=st.sampled_from(EVENTS),
    at=st.integers(1, 10**6),
    conference_sid=st.sampled_from(["CF" + "1" * 32, "CF" + "2" * 32]),
    call_sid=st.sampled_from(CALLS),
    label=st.sampled_from(LABELS),
    muted=flags,
    hold=flags,
    coaching=flags,
    end_on_exit=flags,
    reason=st.sampled_from([None, "participant-with-end-conference-on-exit-left"]),
)
steps = st.one_of(
    *[st.tuples(st.just("deliver"), callbacks)] * 4,  # mostly callbacks
    st.tuples(st.just("again"), st.integers(0, 10**6)),  # a duplicate of an earlier one
    st.tuples(st.just("end_here"), st.integers(1, 10**6)),  # the app's own end
    st.tuples(st.just("dial"), st.sampled_from(["DLa", "DLb", "DLs", "DLn"]), st.integers(0, 3)),
    st.tuples(st.just("fold"), st.integers(0, 3), st.integers(0, 2)),
)


def new_record(callback: bool, number: str | None) -> ConferenceRecord:
    """A conference with an agent, a colleague (a warm transfer), a supervisor and a
    number dialed, their CallSids not all known yet."""
    record = ConferenceRecord(name=NAME, created_at=1, from_number=number)
    dials = [
        Dial("DLa", DialKind.AGENT, "alice", 1, call_sid=ALICE),
        Dial("DLb", DialKind.TRANSFER, "bob", 2, transfer="TR1"),
        Dial("DLs", DialKind.SUPERVISOR, "sue", 3, mode="listen"),
        Dial("DLn", DialKind.CUSTOMER, "alice", 4, number="+15550001111"),
    ]
    record.dials = {d.id: d for d in dials}
    record.transfers["TR1"] = Transfer("TR1", "alice", "DLa", "bob", "", 1, 1, dial="DLb")
    if callback:
        record.callback = CallbackInfo("CB1", "+15550001111", "CA" + "o" * 32, 1)
    return record


def change_dial(record: ConferenceRecord, dial_id: str, how: int) -> None:
    """What call-status callbacks and actions change of a dial, later than the fold."""
    dial = record.dials[dial_id]
    own = {"DLa": ALICE, "DLb": BOB, "DLs": SUPERVISOR, "DLn": NUMBER}[dial_id]
    if how == 0:
        dial.call_sid = own if dial.call_sid is None else None
    elif how == 1:
        dial.answered_by = None if dial.answered_by else "machine_start"
    elif how == 2:
        dial.mode = {"listen": "whisper", "whisper": "barge"}.get(dial.mode or "", "listen")
    else:
        dial.status = "completed" if dial.status != "completed" else "in-progress"


def picture(view: ConferenceView) -> tuple[Any, ...]:
    """Everything a view tells, participants in their order."""
    participants = [dataclasses.asdict(p) for p in view.participants.values()]
    return view, participants, view.public(), view.public_for_agents()


def legacy_customer_joined(record: ConferenceRecord) -> bool:
    return any(
        c.event == "participant-join" and (c.call_sid == record.name or c.label == "customer")
        for c in record.callbacks.values()
    )


class Stored:
    """A record kept as Redis keeps it: JSON, the folded callbacks in a list apart."""

    def __init__(self, record: ConferenceRecord) -> None:
        self.raw = record.to_json()
        self.history: list[str] = []

    def load(self) -> ConferenceRecord:
        return ConferenceRecord.from_json(self.raw)

    def folded(self, record: ConferenceRecord) -> list[Callback]:
        count = record.folded.count if record.folded else 0
        return [Callback.from_json(raw) for raw in self.history[:count]]

    def add(self, callback: Callback) -> bool:
        record = self.load()
        history = self.folded(record) if folding.needs_history(record, callback) else None
        added = folding.add(record, callback, history)
        self.save(record, history)
        return added

    def change(self, how: Any) -> None:
        record = self.load()
        how(record)
        self.save(record, None)

    def fold(self, tail_max: int, tail_keep: int) -> None:
        record = self.load()
        history = self.folded(record)
        folding.settle_below(record, history)
        history += folding.advance(record, tail_max, tail_keep)
        self.save(record, history)

    def save(self, record: ConferenceRecord, history: list[Callback] | None) -> None:
        if history is not None:
            self.history = [c.to_json() for c in history]
        self.raw = record.to_json()
        assert len(self.history) == (record.folded.count if record.folded else 0)


@given(
    steps=st.lists(steps, min_size=10, max_size=120),
    callback=st.booleans(),
    number=st.sampled_from(["+15557654321"] * 3 + [None]),  # None: never folded
)
@EXAMPLES
def test_the_folded_record_gives_the_picture_of_the_whole_fold(steps, callback, number):
    whole = new_record(callback, number)  # every callback in ``callbacks``, never folded
    stored = Stored(new_record(callback, number))
    delivered: list[Callback] = []
    for step in steps:
        kind = step[0]
        if kind in ("deliver", "again"):
            if kind == "again" and not delivered:
                continue
            cb = step[1] if kind == "deliver" else delivered[step[1] % len(delivered)]
            delivered.append(cb)
            key = folding.callback_key(cb)
            fresh = key not in whole.callbacks
            whole.callbacks.setdefault(key, cb)
            assert stored.add(cb) == fresh
        elif kind == "end_here":
            whole.end_here(step[1], "CF" + "1" * 32, "customer-never-joined")
            stored.change(lambda r, at=step[1]: r.end_here(at, "CF" + "1" * 32, NO_CUSTOMER))
        elif kind == "dial":
            change_dial(whole, step[1], step[2])
            stored.change(lambda r, d=step[1], h=step[2]: change_dial(r, d, h))
        else:
            stored.fold(step[1], step[2])
        record = stored.load()
        seen = picture(derive(record))
        assert seen == picture(derive(whole)) == picture(legacy_derive(whole))
        assert record.to_json() == stored.raw and picture(derive(record)) == seen  # untouched
        assert customer_joined(record) == legacy_customer_joined(whole)
        if record.folded is not None:
            assert all(c.seq > record.folded.through for c in record.callbacks.values())
    record = stored.load()
    everything = {folding.callback_key(c): c for c in stored.folded(record)}
    everything.update(record.callbacks)
    assert everything == whole.callbacks  # nothing lost, nothing twice
    if number is None:
        assert record.folded is None  # reconcile reads such a record's callbacks whole


def test_the_tail_stays_short_and_the_app_end_is_never_folded():
    record = new_record(False, "+15557654321")
    history: list[Callback] = []
    for seq in range(1, 200):
        event = "participant-hold" if seq % 2 else "participant-unhold"
        folding.add(record, Callback(seq, event, seq, "CF1", call_sid=NAME), None)
        if seq == 100:
            record.end_here(seq, "CF1", "callback-closed")
        history += folding.advance(record)
        assert len(record.callbacks) <= folding.TAIL_MAX + (seq >= 100)
    assert record.folded is not None and record.folded.count == len(history)
    assert f"{APP_END_SEQ}:conference-end:" in record.callbacks
    assert record.folded.through < APP_END_SEQ
    late = Callback(3, "participant-hold", 3, "CF1", call_sid=NAME)
    assert folding.needs_history(record, late)
    assert not folding.add(record, late, history)  # delivered before: a duplicate
    with pytest.raises(ValueError, match="below its folded ones"):
        folding.add(record, Callback(4, "participant-mute", 4, "CF1", call_sid=NAME), None)


# -- through the app and Redis -------------------------------------------------------


def toggles(voice: AppVoice, name: str, legs: list[tuple[str, str]], count: int) -> list:
    """``count`` mute / hold changes of the customer's and the agent's legs."""
    batch = []
    for i in range(count):
        call, label = legs[i % len(legs)]
        event = ["participant-hold", "participant-mute", "participant-unhold", "participant-unmute"]
        chosen = event[(i // len(legs)) % 4]
        fields = {"Hold": chosen.endswith("-hold"), "Muted": chosen.endswith("-mute")}
        batch.append(voice.conference_event(name, chosen, call, ParticipantLabel=label, **fields))
    return batch


@pytest.mark.timeout(900)
@given(seed=st.integers(0, 2**32 - 1), repeats=st.integers(0, 12))
@APP_EXAMPLES
async def test_late_and_duplicate_callbacks_through_the_app_end_as_the_whole_fold(
    app, redis, twilio, monkeypatch, seed, repeats
):
    """A call with 40 changes delivered shuffled, with duplicates, at most 3 callbacks
    left unfolded: most arrive below the checkpoint and are placed from Redis's list."""
    monkeypatch.setattr(folding, "TAIL_MAX", 3)
    monkeypatch.setattr(folding, "TAIL_KEEP", 1)
    await redis.flushdb()
    async with app.test_client() as client:
        voice = AppVoice(client, twilio, app, PUBLIC_BASE_URL)
        alice = await login(app, redis, "alice")
        await set_available(alice)
        name = await customer_waits(voice)
        leg = await agent_answers(voice, name, "alice")
        batch = toggles(voice, name, [(name, "customer"), (leg.call_sid, leg.label)], 40)
        order = list(range(len(batch)))
        shuffler = random.Random(seed)
        shuffler.shuffle(order)
        order += [shuffler.randrange(len(batch)) for _ in range(repeats)]
        for index in order:
            response = await voice.send(batch[index])
            assert response.status_code == 204, await response.get_data(as_text=True)
        await voice.settle()

        record = ConferenceRecord.from_json(await redis.get(keys.conference(name)))
        assert record.folded is not None and len(record.callbacks) <= 3
        raws = await redis.lrange(keys.folded_callbacks(name), 0, -1)
        assert len(raws) == record.folded.count
        whole = msgspec.structs.replace(record, folded=None)
        whole.callbacks = {
            folding.callback_key(c): c for c in (Callback.from_json(r) for r in raws)
        }
        whole.callbacks.update(record.callbacks)
        assert len(whole.callbacks) == len(batch) + 3  # two joins and the start: once each
        assert picture(derive(record)) == picture(legacy_derive(whole))
        # In order, the last change of each leg wins: what the app shows.
        [conference] = (await state(alice))["conferences"]
        shown = {p["call_sid"]: (p["hold"], p["muted"]) for p in conference["participants"]}
        expected = {
            p.call_sid: (p.hold, p.muted) for p in legacy_derive(whole).participants.values()
        }
        assert shown == expected
