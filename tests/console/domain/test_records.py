"""The stored records' JSON: a round trip keeps everything, and what another
version of Warmline wrote (fields added or dropped, ``json.dumps`` escapes) reads."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from console.domain.records import Agent, Callback, ConferenceRecord, Dial, Queued, Transfer

text = st.text(max_size=12)
maybe = st.none() | text
ints = st.integers(min_value=-(2**53), max_value=2**53)

callbacks = st.builds(
    Callback,
    seq=ints,
    event=text,
    at=ints,
    conference_sid=text,
    call_sid=maybe,
    hold=st.none() | st.booleans(),
)
dials = st.builds(Dial, id=text, kind=text, agent=text, created_at=ints, call_sid=maybe)
transfers = st.builds(
    Transfer,
    id=text,
    from_agent=text,
    from_dial=maybe,
    to_agent=maybe,
    note=text,
    created_at=ints,
    updated_at=ints,
)
hold_requests = st.dictionaries(
    text, st.fixed_dictionaries({"by": text, "hold": st.booleans(), "at": ints}), max_size=2
)
conferences = st.builds(
    ConferenceRecord,
    name=text,
    created_at=ints,
    from_number=maybe,
    callbacks=st.dictionaries(text, callbacks, max_size=4),
    dials=st.dictionaries(text, dials, max_size=3),
    transfers=st.dictionaries(text, transfers, max_size=2),
    end_on_exit_requested=st.dictionaries(text, st.booleans(), max_size=3),
    customer_auto_held=st.booleans(),
    hold_requests=hold_requests,
)


@given(conferences)
def test_a_conference_survives_the_round_trip(record: ConferenceRecord) -> None:
    raw = record.to_json()
    assert ConferenceRecord.from_json(raw) == record
    assert ConferenceRecord.from_json(raw.encode()) == record
    assert ConferenceRecord.from_json(raw).to_json() == raw  # unchanged means unwritten


@given(conferences)
def test_what_json_dumps_wrote_reads_the_same(record: ConferenceRecord) -> None:
    """Records stored before the encoder changed (``\\u`` escapes, spaces) still read."""
    older = json.dumps(json.loads(record.to_json()))
    assert ConferenceRecord.from_json(older) == record


def test_fields_added_by_a_newer_version_are_ignored_and_missing_ones_default() -> None:
    raw = json.dumps(
        {
            "name": "CA1",
            "created_at": 5,
            "added_later": [1, 2],
            "dials": {
                "d1": {"id": "d1", "kind": "agent", "agent": "alice", "created_at": 6, "x": 1}
            },
        }
    )
    record = ConferenceRecord.from_json(raw)
    assert record.dials["d1"].status == "dialing" and record.dials["d1"].seq == -1
    assert record.callbacks == {} and record.hold_requests == {}
    assert Agent.from_json('{"username":"bob","mood":"fine"}') == Agent(username="bob")


def test_compact_json_with_text_as_utf8() -> None:
    queued = Queued(call_sid="CA1", from_number="+33 6 Zoé", queued_at=7)
    assert queued.to_json() == (
        '{"call_sid":"CA1","from_number":"+33 6 Zoé","queued_at":7,"not_before":0,"kind":"call",'
        '"callback":null,"moved_at":0}'
    )
    assert Agent(username="ana").to_json() == (
        '{"username":"ana","status":"offline","since":0,"idle_since":0,'
        '"conference":null,"dial":null,"reason":null,"last_call":null,'
        '"transfer_waiting":null,"transfer_waiting_since":0}'
    )


@pytest.mark.parametrize("raw", ["", "{", '{"created_at":1}', '{"name":"x","created_at":"soon"}'])
def test_a_broken_record_raises_value_error(raw: str) -> None:
    with pytest.raises(ValueError):
        ConferenceRecord.from_json(raw)
