"""Any delivery order of a flow's callbacks, with duplicates, ends in the state that
in-order delivery gives, and announces each change once (docs/twilio.md, callbacks)."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.domain import keys
from console.domain.derive import derive
from console.domain.records import ConferenceRecord
from simulator.testing import Delivery, TwilioVoice, conference_of
from tests.conftest import PUBLIC_BASE_URL
from tests.support.flow_helpers import (
    AppVoice,
    agent_status,
    dials_to,
    events,
    login,
    set_available,
    state,
)

EXAMPLES = settings(
    max_examples=int(os.environ.get("WARMLINE_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def shuffled_with_duplicates(size: int) -> st.SearchStrategy[list[int]]:
    """A permutation of range(size) with some items delivered twice."""
    return st.tuples(
        st.permutations(range(size)), st.lists(st.integers(0, size - 1), max_size=size)
    ).flatmap(lambda pair: st.permutations([*pair[0], *pair[1]]))


async def deliver(voice: TwilioVoice, batch: list[Delivery], order: list[int]) -> None:
    for index in order:
        response = await voice.send(batch[index])
        assert response.status_code == 204, await response.get_data(as_text=True)
    await voice.settle()


async def answer_in_order(voice: TwilioVoice, username: str) -> tuple[str, str, object]:
    """Twilio fetches the connect URL synchronously before the leg can join."""
    await voice.settle()
    create = dials_to(voice, username)[-1]
    sid = voice.created_sid(create)
    response = await voice.send(voice.answer(create, sid))
    label = conference_of(_xml(await response.get_data(as_text=True))).get("participantLabel")
    return sid, label or "", create


def _xml(text: str):
    from xml.etree import ElementTree

    return ElementTree.fromstring(text)


@pytest.mark.timeout(900)
@given(first=shuffled_with_duplicates(6), second=shuffled_with_duplicates(8))
@EXAMPLES
async def test_any_order_with_duplicates_ends_in_the_in_order_state(
    app, redis, twilio, first, second
):
    await redis.flushdb()
    async with app.test_client() as client:
        voice = AppVoice(client, twilio, app, PUBLIC_BASE_URL)
        alice = await login(app, redis, "alice")
        bob = await login(app, redis, "bob")
        await set_available(alice)
        name, _ = await voice.call_in()
        a_sid, a_label, a_create = await answer_in_order(voice, "alice")
        phase_one = [
            voice.conference_event(
                name,
                "participant-join",
                name,
                ParticipantLabel="customer",
                EndConferenceOnExit=True,
                StartConferenceOnEnter=False,
            ),
            voice.call_status(a_create, a_sid, "initiated"),
            voice.call_status(a_create, a_sid, "ringing"),
            voice.call_status(a_create, a_sid, "in-progress"),
            voice.conference_event(
                name, "participant-join", a_sid, ParticipantLabel=a_label, EndConferenceOnExit=True
            ),
            voice.conference_event(name, "conference-start"),
        ]
        await deliver(voice, phase_one, first)
        middle = await state(alice)
        [conference] = middle["conferences"]
        assert conference["status"] == "in-progress"
        assert sorted(p["role"] for p in conference["participants"]) == ["agent", "customer"]
        assert agent_status(middle, "alice") == "busy"
        assert middle["queue"] == []

        await set_available(bob)
        response = await alice.post("/api/transfers", json={"conference": name, "to": "bob"})
        assert response.status_code == 201
        b_sid, b_label, b_create = await answer_in_order(voice, "bob")
        phase_two = [
            voice.call_status(b_create, b_sid, "initiated"),
            voice.call_status(b_create, b_sid, "ringing"),
            voice.call_status(b_create, b_sid, "in-progress"),
            voice.conference_event(name, "participant-join", b_sid, ParticipantLabel=b_label),
            voice.conference_event(
                name,
                "participant-leave",
                a_sid,
                ParticipantLabel=a_label,
                ParticipantCallStatus="completed",
            ),
            voice.call_status(a_create, a_sid, "completed"),
            voice.conference_event(
                name,
                "participant-leave",
                name,
                ParticipantLabel="customer",
                EndConferenceOnExit=True,
                ParticipantCallStatus="completed",
            ),
            voice.conference_event(
                name,
                "conference-end",
                ReasonConferenceEnded="participant-with-end-conference-on-exit-left",
            ),
        ]
        await deliver(voice, phase_two, second)

        final = await state(alice)
        assert final["conferences"] == [] and final["queue"] == []
        assert agent_status(final, "alice") == "available"
        record = ConferenceRecord.from_json(await redis.get(keys.conference(name)))
        view = derive(record)
        assert view.status == "ended" and view.participants == {}
        [transfer] = record.transfers.values()
        assert (transfer.status, transfer.reason) == ("completed", None)

        log = await events(redis)
        announced = Counter(json.dumps([e["type"], e["data"]], sort_keys=True) for e in log)
        assert max(announced.values()) == 1, "an event was announced twice"
        kinds = Counter(e["type"] for e in log)
        assert kinds["conference.started"] == 1
        assert kinds["conference.ended"] == 1
        completed = [
            e for e in log if e["type"] == "transfer.updated" and e["data"]["status"] == "completed"
        ]
        assert len(completed) == 1
