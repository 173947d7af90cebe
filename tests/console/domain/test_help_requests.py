"""Asking for help (SPEC §10): an agent on a call asks; supervisors alone are told;
it clears once, as taken (a supervisor monitors the call, or dismisses it), canceled
(the agent) or ended (the call ends); the agent never learns the monitoring mode."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.flow_helpers import (
    alice_with_customer_bob_available,
    events,
    hang_up_customer,
    login,
    state,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def call(app, redis, voice):
    return await alice_with_customer_bob_available(app, redis, voice)


async def ask(client: Any, name: str, text: str = "customer wants a refund") -> Any:
    return await client.post("/api/help", json={"conference": name, "text": text})


async def help_events(redis: Any) -> list[dict[str, Any]]:
    return [e for e in await events(redis) if e["type"].startswith("help.")]


async def test_asked_shown_to_supervisors_and_taken_by_monitoring(app, redis, call):
    sue = await login(app, redis, "sue", role="supervisor")
    for body in ({"conference": call["name"], "text": "  "}, {"conference": call["name"]}):
        assert (await call["alice"].post("/api/help", json=body)).status_code == 400
    assert (await ask(call["bob"], call["name"])).status_code == 409  # not on the call
    assert (await ask(sue, call["name"])).status_code == 403
    response = await ask(call["alice"], call["name"])
    assert response.status_code == 201, await response.get_data(as_text=True)
    request = await response.get_json()
    assert (request["agent"], request["conference"], request["status"]) == (
        "alice",
        call["name"],
        "open",
    )
    assert (await ask(call["alice"], call["name"])).status_code == 409  # one at a time
    [shown] = (await state(sue))["help"]
    assert shown["id"] == request["id"]
    assert [h["id"] for h in (await state(call["alice"]))["help"]] == [request["id"]]
    assert (await state(call["bob"]))["help"] == []
    # sue whispers: the request is taken; alice is told, without the mode.
    response = await sue.post(f"/api/conferences/{call['name']}/monitor", json={"mode": "whisper"})
    assert response.status_code == 200, await response.get_data(as_text=True)
    raised, taken = await help_events(redis)
    assert (raised["type"], raised["audience"]) == ("help.requested", "")
    assert (taken["type"], taken["audience"], taken["data"]["status"]) == (
        "help.updated",
        "alice",
        "taken",
    )
    assert "mode" not in taken["data"] and "whisper" not in str(taken["data"])
    assert (await state(sue))["help"] == []
    # Taken once: dismissing it now is a conflict, and it changes nothing.
    response = await sue.delete(f"/api/help/{request['id']}")
    assert response.status_code == 409
    assert len(await help_events(redis)) == 2


async def test_canceled_by_the_agent_dismissed_by_a_supervisor_ended_with_the_call(
    app, redis, voice, call
):
    sue = await login(app, redis, "sue", role="supervisor")
    first = await (await ask(call["alice"], call["name"])).get_json()
    assert (await call["bob"].delete(f"/api/help/{first['id']}")).status_code == 404
    response = await call["alice"].delete(f"/api/help/{first['id']}")
    assert response.status_code == 200
    assert (await response.get_json())["status"] == "canceled"
    second = await (await ask(call["alice"], call["name"])).get_json()
    response = await sue.delete(f"/api/help/{second['id']}")
    assert (response.status_code, (await response.get_json())["status"]) == (200, "taken")
    third = await (await ask(call["alice"], call["name"])).get_json()
    await hang_up_customer(voice, call["name"], "participant-with-end-conference-on-exit-left")
    updates = [e["data"] for e in await help_events(redis) if e["type"] == "help.updated"]
    assert [(u["id"], u["status"]) for u in updates] == [
        (first["id"], "canceled"),
        (second["id"], "taken"),
        (third["id"], "ended"),
    ]
    assert (await state(sue))["help"] == []
