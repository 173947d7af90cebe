"""Abuse of the JSON API (SPEC §4): bodies the app cannot even decode are a client
error, and a refused call changes no state."""

from __future__ import annotations

from typing import Any

import pytest

from tests.flow_helpers import agent_answers, customer_waits, login, set_available
from tests.test_abuse_webhooks import state_dump


@pytest.fixture
async def sessions(app, redis, voice) -> dict[str, Any]:
    """A live call (alice with a customer, carol available) and who is logged in."""
    alice = await login(app, redis, "alice")
    carol = await login(app, redis, "carol")
    sue = await login(app, redis, "sue", role="supervisor")
    await set_available(alice)
    name = await customer_waits(voice)
    await agent_answers(voice, name, "alice")
    await set_available(carol)
    return {"agent": alice, "supervisor": sue, "conference": name}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/me/status"),
        ("POST", "/api/transfers"),
        ("POST", "/api/conferences/{name}/hold"),
        ("POST", "/api/conferences/{name}/monitor"),
        ("POST", "/api/conferences/{name}/leave"),
        ("POST", "/login"),
    ],
)
async def test_a_json_body_that_is_not_utf8_is_a_400(app, redis, sessions, method, path):
    """Quart raises UnicodeDecodeError reading such a body: a client error, not a 500."""
    client = sessions["supervisor"]
    target = path.format(name=sessions["conference"])
    before = await state_dump(redis)
    for body in (b"\x80", b'{"status": "\xff"}', b"\xfe\xff\x00{"):
        response = await client.open(
            target, method=method, data=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, (target, body, await response.get_data())
        if target.startswith("/api/"):
            assert "error" in await response.get_json()
    assert await state_dump(redis) == before
