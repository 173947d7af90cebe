"""A conference's picture kept with the process's copy (console/domain/unit_state.py)
stands in for derive's: whenever a unit takes one instead of deriving, it must be what
deriving the stored record gives, through a call with some of everything (a
supervisor listening, holds, a warm transfer, the caller hanging up)."""

from __future__ import annotations

import pytest

from console.domain.derive import derive
from console.domain.records import ConferenceRecord
from console.domain.unit_state import StateCopy
from tests.support.flow_helpers import hang_up_customer, monitored_warm_transfer


async def test_every_picture_taken_is_derive_s_answer(app, redis, voice, monkeypatch):
    taken = []
    picture = StateCopy.picture

    def checked(self: StateCopy, name: str, raw: str):
        view = picture(self, name, raw)
        if view is not None:
            assert view == derive(ConferenceRecord.from_json(raw)), name
            taken.append(name)
        return view

    monkeypatch.setattr(StateCopy, "picture", checked)
    call = await monitored_warm_transfer(app, redis, voice)
    for hold, event in ((True, "participant-hold"), (False, "participant-unhold")):
        await voice.event(call["name"], event, call["name"], Hold=hold, ParticipantLabel="customer")
    await hang_up_customer(voice, call["name"], "participant-with-end-conference-on-exit-left")
    await voice.settle()
    assert len(taken) >= 5  # most units of the call took one: the cache is used


@pytest.mark.parametrize("changed", [True, False])
def test_a_picture_is_kept_only_for_the_json_it_was_taken_for(changed):
    copy = StateCopy()
    record = ConferenceRecord(name="CA1", created_at=1, from_number=None)
    raw = record.to_json()
    view = derive(record)
    copy.expect({"CA1": raw}, {"CA1": view})
    assert copy.picture("CA1", raw) is view
    if changed:
        copy.heard(f"other\n\n\nCA1\n{raw}")  # another process wrote it again
        assert copy.picture("CA1", raw) is None
    assert copy.picture("CA1", raw + " ") is None
