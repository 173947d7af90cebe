"""Twilio's REST API failing under the app (docs/call-flow.md, docs/webhooks.md;
issue 7 "Faults"): 5xx, 429 and a refused connection on the dial of an agent or a
colleague, and a stalled API under webhooks. The timeout case is tests/console/domain/test_flow.py's
``test_rest_timeout_on_dial_moves_on_without_redialing``; a 500 on a transfer is
tests/console/domain/test_transfers.py's ``test_rest_failure_fails_transfer_visibly``."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import pytest

from console.domain import keys
from simulator.testing import RecordedRequest, TwilioDouble, call_sid
from tests.support.flow_helpers import (
    agent_answers,
    agent_status,
    alice_with_customer_bob_available,
    customer_waits,
    dials_to,
    events,
    login,
    set_available,
    state,
)
from tests.support.waiting import until

pytestmark = pytest.mark.timeout(60)

# (status, Twilio code) of the REST answers injected; None is "connection refused"
FAULTS = {
    "500": (500, 20500),
    "503": (503, 20503),
    "429": (429, 20429),
    "refused": None,
}


async def inject(twilio: TwilioDouble, fault: tuple[int, int] | None) -> Callable[[], Awaitable]:
    """Make the next create-call fail; returns what puts Twilio back."""
    if fault is None:
        await twilio.refuse()
        return twilio.accept
    status, code = fault
    twilio.fail_next("/Calls.json", status=status, code=code, method="POST")

    async def nothing() -> None:
        return None

    return nothing


def dial_id(create: RecordedRequest) -> str:
    """The assignment a create-call POST was for (the ``dial`` of its answer URL)."""
    [dial] = parse_qs(urlsplit(create.param("Url") or "").query)["dial"]
    return dial


def each_dial_posted_once(twilio: TwilioDouble) -> list[str]:
    """Every Calls.json POST the app made, refused ones included, is for a different
    assignment: nothing is blindly retried (no double dialing)."""
    posted = [dial_id(r) for r in twilio.calls_created()]
    assert len(posted) == len(set(posted)), posted
    return posted


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
async def test_a_failed_dial_frees_the_agent_and_routing_moves_on_to_the_next(
    app, redis, voice, twilio, fault
):
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    await set_available(alice)
    await set_available(bob)
    restore = await inject(twilio, FAULTS[fault])
    name = await customer_waits(voice)
    await until(lambda: _failed_dials(redis, name, 1))
    await restore()  # Twilio is back before any other dial is tried
    snapshot = await state(alice)
    assert agent_status(snapshot, "alice") == "available"  # not missed: she never rang
    assert [q["call_sid"] for q in snapshot["queue"]] == [name]  # still waiting, first
    # after a short pause (no hot loop) the sweeper offers the customer again, to bob:
    # alice went to the back of the idle line
    await until(lambda: _dialed(twilio, "bob"))
    await voice.settle()
    assert agent_status(await state(bob), "bob") == "ringing"
    leg = await agent_answers(voice, name, "bob")
    snapshot = await state(bob)
    assert snapshot["queue"] == []
    assert agent_status(snapshot, "bob") == "busy"
    assert agent_status(snapshot, "alice") == "available"
    assert leg.label.startswith("dial-")
    assert len(each_dial_posted_once(twilio)) == (1 if fault == "refused" else 2)
    if fault == "refused":
        # the refused POST never reached the double; the one to bob did
        assert [r.param("To") for r in twilio.calls_created()] == ["client:bob"]
    else:
        assert [(r.param("To"), r.status) for r in twilio.calls_created()] == [
            ("client:alice", FAULTS[fault][0]),
            ("client:bob", 201),
        ]


async def _failed_dials(redis, name: str, count: int) -> bool:
    raw = await redis.get(keys.conference(name))
    dials = json.loads(raw)["dials"].values() if raw else []
    return sum(d["status"] == "api-error" for d in dials) == count


async def _dialed(twilio: TwilioDouble, username: str) -> bool:
    return any(
        r.param("To") == f"client:{username}" and r.status == 201 for r in twilio.calls_created()
    )


async def test_a_customer_alone_with_one_agent_is_retried_after_the_failure(
    app, redis, voice, twilio
):
    """With nobody else to move on to, the same customer is offered again to the
    same agent, as a new assignment (a new dial), not a retried POST."""
    alice = await login(app, redis, "alice")
    await set_available(alice)
    twilio.fail_next("/Calls.json", status=503, code=20503, method="POST")
    name = await customer_waits(voice)
    await until(lambda: _dialed(twilio, "alice"))
    await agent_answers(voice, name, "alice")
    snapshot = await state(alice)
    assert snapshot["queue"] == [] and agent_status(snapshot, "alice") == "busy"
    first, second = each_dial_posted_once(twilio)
    assert first != second


@pytest.fixture
async def call(app, redis, voice):
    """alice is with a customer; bob is available for a transfer."""
    return await alice_with_customer_bob_available(app, redis, voice)


@pytest.mark.parametrize("fault", ["503", "429", "refused"])
async def test_a_transfer_whose_dial_fails_is_failed_visibly_with_api_error(
    call, voice, twilio, redis, fault
):
    restore = await inject(twilio, FAULTS[fault])
    response = await call["alice"].post(
        "/api/transfers", json={"conference": call["name"], "to": "bob", "note": "vip"}
    )
    await restore()
    assert response.status_code == 201, await response.get_data(as_text=True)
    transfer = await response.get_json()
    assert (transfer["status"], transfer["reason"]) == ("failed", "api-error")
    await voice.settle()
    snapshot = await state(call["alice"])
    [shown] = snapshot["transfers"]
    assert (shown["status"], shown["reason"]) == ("failed", "api-error")
    assert agent_status(snapshot, "bob") == "available"  # not missed
    assert agent_status(snapshot, "alice") == "busy"  # still with the customer
    [conference] = snapshot["conferences"]
    assert sorted(p["role"] for p in conference["participants"]) == ["agent", "customer"]
    # the failure reached the sockets as an event
    updates = [e["data"] for e in await events(redis) if e["type"] == "transfer.updated"]
    assert (updates[-1]["status"], updates[-1]["reason"]) == ("failed", "api-error")
    each_dial_posted_once(twilio)
    # and alice can try again at once, successfully this time
    again = await call["alice"].post(
        "/api/transfers", json={"conference": call["name"], "to": "bob"}
    )
    assert again.status_code == 201
    assert (await again.get_json())["status"] == "ringing"
    assert len(dials_to(voice, "bob")) == (1 if fault == "refused" else 2)
    each_dial_posted_once(twilio)


async def test_webhooks_answer_promptly_while_the_rest_api_stalls(app, redis, voice, twilio):
    """Every REST action runs in the background: a Twilio that takes 4 s to answer
    (beyond the 1 s REST timeout of the tests) slows no webhook."""
    alice = await login(app, redis, "alice")
    await set_available(alice)
    twilio.delay_next("/Calls.json", seconds=4)  # the dial to alice stalls
    timings: list[float] = []

    async def timed(send: Callable[[], Awaitable]) -> object:
        started = time.monotonic()
        result = await send()
        timings.append(time.monotonic() - started)
        return result

    name, _ = await timed(lambda: voice.call_in())
    await timed(
        lambda: voice.event(
            name,
            "participant-join",
            name,
            EndConferenceOnExit=True,
            StartConferenceOnEnter=False,
            ParticipantLabel="customer",
        )
    )
    await timed(lambda: voice.call_in())  # a second caller meanwhile
    for _ in range(3):
        await timed(lambda: voice.send(voice.incoming(call_sid())))
    waited = await timed(
        lambda: voice.client.post(
            "/conference/wait", form={"AccountSid": voice.account_sid}, headers=_signed(voice)
        )
    )
    assert waited.status_code == 200
    # the dial to alice is stuck in the stalled API; its create was sent once
    assert len(twilio.calls_created()) == 1
    assert max(timings) < 0.5, timings
    assert len((await state(alice))["queue"]) == 5  # every caller was recorded


def _signed(voice) -> dict[str, str]:
    from simulator.testing import sign

    url = voice.base_url + "/conference/wait"
    return {"X-Twilio-Signature": sign(url, {"AccountSid": voice.account_sid}, voice.token)}
