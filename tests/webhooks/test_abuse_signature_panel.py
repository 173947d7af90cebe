"""The signature-failure panel (docs/webhooks.md, webhook health): a refused request is
kept as its route, time, reason and client, never text the sender chose beyond the
path, and one client cannot push the others' entries out."""

from __future__ import annotations

import asyncio
import json

import pytest

from console.domain import keys, webhook_health
from console.urls import VOICE_PATH, WAIT_PATH
from simulator.testing import call_sid, sign
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE_URL, make_settings
from tests.support.flow_helpers import login
from warmline.diagnosis import print_health

ATTACKER_QUERY = "<b>CALL+1-555-0100-NOW</b>"
# "-555-", not "555": a bare 555 can turn up in a millisecond timestamp.
ATTACKER_TEXT = ("CALL", "-555-", "<b>", "NOW", "evil", "forged", "attacker")
HEADERS = {
    "X-Forwarded-For": "evil.example <i>forged</i>",
    "User-Agent": "CALL 1-555-0100 NOW",
    "Referer": "https://attacker.example/CALL-NOW",
    "Host": "attacker.example",
}
GENUINE = "198.51.100.20"
FLOODER = "203.0.113.66"


def _from(address: str) -> dict[str, object]:
    return {"client": (address, 40000)}


async def refused(voice, path: str, address: str, signature: str | None = None, form=None):
    """POST ``path`` from ``address``; the answer must be 403."""
    headers = dict(HEADERS)
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    response = await voice.client.post(
        path,
        form=form if form is not None else {"AccountSid": ACCOUNT_SID, "CallSid": call_sid()},
        headers=headers,
        scope_base=_from(address),
    )
    assert response.status_code == 403, await response.get_data(as_text=True)


async def stored(redis) -> list[dict[str, object]]:
    return [json.loads(f) for f in await redis.lrange(keys.SIGNATURE_FAILURES, 0, -1)]


def assert_no_sender_text(text: str) -> None:
    for word in ATTACKER_TEXT:
        assert word not in text, (word, text)


async def test_refused_requests_keep_route_time_reason_and_client_only(app, redis, voice, capsys):
    path = f"{VOICE_PATH}?{ATTACKER_QUERY}"
    signed_url = PUBLIC_BASE_URL + path
    params = {"AccountSid": ACCOUNT_SID, "CallSid": call_sid()}
    foreign = {"AccountSid": "AC" + "0" * 32, "CallSid": call_sid()}
    await refused(voice, path, FLOODER)
    await refused(voice, path, FLOODER, sign(signed_url, params, "the-wrong-token"), params)
    await refused(voice, path, FLOODER, sign(signed_url, foreign, AUTH_TOKEN), foreign)
    wait = await voice.client.get(
        f"{WAIT_PATH}?greeting={ATTACKER_QUERY}", headers=HEADERS, scope_base=_from(FLOODER)
    )
    assert wait.status_code == 403

    raw = await redis.lrange(keys.SIGNATURE_FAILURES, 0, -1)
    assert len(raw) == 4
    assert_no_sender_text("".join(raw))
    entries = [json.loads(r) for r in raw]
    assert [e["reason"] for e in entries] == [
        "missing signature",
        "wrong account",
        "signature does not match",
        "missing signature",
    ]
    assert [e["route"] for e in entries] == [WAIT_PATH, VOICE_PATH, VOICE_PATH, VOICE_PATH]
    for entry in entries:
        assert set(entry) == {"route", "at", "reason", "client", "url"}
        assert entry["client"] == FLOODER
        assert entry["url"] == PUBLIC_BASE_URL + entry["route"]
        assert isinstance(entry["at"], int) and entry["at"] > 0

    sam = await login(app, redis, "sam", role="supervisor")
    response = await sam.get("/api/webhooks")
    assert response.status_code == 200
    served = (await response.get_json())["signature_failures"]
    assert served == entries
    assert_no_sender_text(await response.get_data(as_text=True))

    print_health(await webhook_health.read_health(redis), make_settings())
    printed = capsys.readouterr().out
    assert_no_sender_text(printed)
    assert f"signature failure on {VOICE_PATH} at " in printed
    assert f"from {FLOODER}: signature does not match" in printed
    assert f"checked against {PUBLIC_BASE_URL}{VOICE_PATH})" in printed


async def test_a_flood_from_one_client_leaves_the_others_entries_in_place(app, redis, voice):
    for _ in range(3):
        await refused(voice, VOICE_PATH, GENUINE, "bm90IGEgc2lnbmF0dXJl")
    for _ in range(20):
        await refused(voice, f"{VOICE_PATH}?{ATTACKER_QUERY}", FLOODER)
    entries = await stored(redis)
    by_client = [e["client"] for e in entries]
    assert by_client.count(GENUINE) == 3
    assert by_client.count(FLOODER) == webhook_health.FAILURES_PER_CLIENT
    assert by_client[: webhook_health.FAILURES_PER_CLIENT] == [FLOODER] * 5  # newest first
    sam = await login(app, redis, "sam", role="supervisor")
    served = (await (await sam.get("/api/webhooks")).get_json())["signature_failures"]
    assert [e["client"] for e in served] == by_client


async def test_the_list_stays_bounded_under_concurrent_failures_from_many_clients(redis):
    clients = [f"192.0.2.{n}" for n in range(12)]
    await asyncio.gather(
        *(
            webhook_health.note_signature_failure(
                redis, VOICE_PATH, "missing signature", client, PUBLIC_BASE_URL + VOICE_PATH
            )
            for client in clients * 4
        )
    )
    entries = await stored(redis)
    assert len(entries) == webhook_health.FAILURES_KEPT
    counts = {c: [e["client"] for e in entries].count(c) for c in clients}
    assert max(counts.values()) <= webhook_health.FAILURES_PER_CLIENT


@pytest.mark.parametrize(
    "legacy",
    [
        {"route": VOICE_PATH, "url": f"{PUBLIC_BASE_URL}{VOICE_PATH}?{ATTACKER_QUERY}", "at": 1},
        "not json",
    ],
)
async def test_entries_kept_before_this_shape_are_served_without_their_query(redis, legacy):
    await redis.lpush(
        keys.SIGNATURE_FAILURES, json.dumps(legacy) if isinstance(legacy, dict) else legacy
    )
    await webhook_health.note_signature_failure(
        redis, VOICE_PATH, "missing signature", GENUINE, PUBLIC_BASE_URL + VOICE_PATH
    )
    health = await webhook_health.read_health(redis)
    assert_no_sender_text(json.dumps(health))
    failures = health["signature_failures"]
    assert failures[0]["client"] == GENUINE
    if isinstance(legacy, dict):
        assert failures[1] == {
            "route": VOICE_PATH,
            "at": 1,
            "reason": "signature check failed",
            "client": "unknown",
            "url": PUBLIC_BASE_URL + VOICE_PATH,
        }
    else:
        assert len(failures) == 1
