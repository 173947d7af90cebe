"""Read models (docs/api.md): conference timelines and queue figures, fed by real flows
through the webhooks and the API, plus the corrections late callbacks can force."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from console.domain import figures, keys
from console.domain.events import Event, now_ms
from console.domain.projections import project
from console.domain.records import ConferenceRecord
from tests.conftest import PUBLIC_BASE_URL, make_settings
from tests.support.flow_helpers import (
    AppVoice,
    agent_answers,
    customer_waits,
    dials_to,
    hang_up_customer,
    leg_leaves,
    login,
    monitored_warm_transfer,
    set_available,
)
from warmline.app import create_app

DAY = 24 * 3600


async def timeline_of(client: Any, name: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/conferences/{name}/timeline")
    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert body["conference"] == name
    return body["entries"]


async def figures_of(client: Any) -> dict[str, Any]:
    response = await client.get("/api/figures")
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()


def assert_in_order(entries: list[dict[str, Any]], expected: list[tuple[str, str, str]]) -> None:
    """Each (type, actor, words in detail) appears, in this order (others may come between)."""
    remaining = iter(entries)
    for kind, actor, words in expected:
        found = any(
            e["type"] == kind and e["actor"] == actor and words in e["detail"] for e in remaining
        )
        assert found, f"missing {kind} by {actor} ({words!r}) in order:\n" + "\n".join(
            f"{e['type']} {e['actor']} {e['detail']}" for e in entries
        )


async def test_timeline_tells_who_did_what_in_order_and_is_kept_a_day(app, redis, voice):
    call = await monitored_warm_transfer(app, redis, voice)
    name, sam, second = call["name"], call["sam"], call["second"]
    live_ttl = await redis.ttl(keys.timeline(name))
    assert live_ttl > DAY  # a generous safety net while the call lasts
    await leg_leaves(voice, name, second, end_on_exit=True)
    await hang_up_customer(voice, name, "participant-with-end-conference-on-exit-left")

    entries = await timeline_of(sam, name)
    assert_in_order(
        entries,
        [
            ("call.queued", "customer", "position 1"),
            ("participant.joined", "customer", "joined"),
            ("call.dequeued", "system", "an agent answered"),
            ("participant.joined", "alice", "alice joined"),
            ("conference.started", "system", "started"),
            ("supervisor.action", "sam", "sam listens in"),
            ("participant.joined", "sam", "as supervisor (muted)"),
            ("participant.updated", "alice", "on hold, unmuted (by alice)"),
            ("participant.updated", "alice", "off hold, unmuted (by alice)"),
            ("supervisor.action", "sam", "stops monitoring"),
            ("participant.left", "sam", "sam left"),
            ("transfer.updated", "alice", 'alice → bob: requested; note: "vip"'),
            ("transfer.updated", "bob", "answered"),
            ("participant.joined", "bob", "bob joined"),
            ("transfer.updated", "bob", "joined"),
            ("participant.left", "alice", "alice left"),
            ("transfer.updated", "system", "completed"),
            ("participant.left", "bob", "bob left"),
            ("participant.left", "customer", "left"),
            ("conference.ended", "system", "participant-with-end-conference-on-exit-left"),
        ],
    )
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
    assert set(entries[0]) == {"at", "type", "actor", "call_sid", "detail"}
    holds = [e for e in entries if e["type"] == "participant.updated"]
    assert {e["call_sid"] for e in holds} == {name}
    assert entries[-1]["type"] == "conference.ended" and entries[-1]["call_sid"] is None
    # kept 24 hours after the end, and a late entry does not stretch that
    ttl = await redis.ttl(keys.timeline(name))
    assert DAY - 60 < ttl <= DAY


async def test_a_hold_twilio_refused_is_not_attributed_to_whoever_asked(app, redis, voice):
    """alice's hold fails at Twilio: nothing is remembered, so the hold Twilio then
    reports (the app's, or anyone's outside Warmline) is not hers."""
    alice = await login(app, redis, "alice")
    await set_available(alice)
    name = await customer_waits(voice)
    await agent_answers(voice, name, "alice")
    voice.double.fail_next("/Participants/", status=500, method="POST")
    response = await alice.post(
        f"/api/conferences/{name}/hold", json={"call_sid": name, "hold": True}
    )
    assert response.status_code == 502
    record = ConferenceRecord.from_json(await redis.get(keys.conference(name)))
    assert record.hold_requests == {}
    await voice.event(name, "participant-hold", name, Hold=True, ParticipantLabel="customer")
    holds = [e for e in await timeline_of(alice, name) if e["type"] == "participant.updated"]
    assert [(e["actor"], "by" in e["detail"]) for e in holds] == [("system", False)]


async def test_timeline_access_rules(app, redis, voice):
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    carol = await login(app, redis, "carol")
    sam = await login(app, redis, "sam", role="supervisor")
    await set_available(alice)
    name = await customer_waits(voice)
    await agent_answers(voice, name, "alice")
    await set_available(bob)
    response = await alice.post("/api/transfers", json={"conference": name, "to": "bob"})
    assert response.status_code == 201
    create = dials_to(voice, "bob")[-1]
    await voice.decline(create, await voice.ring(create), "no-answer")
    await voice.settle()

    for client in (alice, bob, sam):  # its agent, the transfer's target, a supervisor
        assert await timeline_of(client, name)
    denied = await carol.get(f"/api/conferences/{name}/timeline")
    assert denied.status_code == 403 and "error" in await denied.get_json()
    anonymous = await app.test_client().get(f"/api/conferences/{name}/timeline")
    assert anonymous.status_code == 401
    for client in (sam, carol):
        unknown = await client.get("/api/conferences/CAunknown/timeline")
        assert unknown.status_code == 404
        junk = await client.get("/api/conferences/CA!!'/timeline")
        assert junk.status_code == 400
        assert "error" in await junk.get_json()
    failed = [e for e in await timeline_of(sam, name) if "failed" in e["detail"]]
    assert [e["detail"] for e in failed] == ["transfer alice → bob: failed (no-answer)"]


async def test_figures_are_for_supervisors_only(app, redis):
    anonymous = await app.test_client().get("/api/figures")
    assert anonymous.status_code == 401
    alice = await login(app, redis, "alice")
    assert (await alice.get("/api/figures")).status_code == 403
    sam = await login(app, redis, "sam", role="supervisor")
    empty = await figures_of(sam)
    assert (empty["answered"], empty["abandoned"], empty["waiting"]) == (0, 0, 0)
    assert empty["service_level"] is None and empty["longest_wait_ms"] is None


async def test_figures_count_answered_abandoned_and_service_level(redis, twilio, redis_server):
    settings = make_settings(twilio.base_url, service_level_seconds=1)
    app = create_app(settings, redis_url=redis_server.url)
    async with app.test_app(), app.test_client() as client:
        voice = AppVoice(client, twilio, app, PUBLIC_BASE_URL)
        alice = await login(app, redis, "alice")
        bob = await login(app, redis, "bob")
        sam = await login(app, redis, "sam", role="supervisor")
        # answered at once, though Twilio's clock says 3 s: waits are the app's clock
        voice.clock = datetime.now(UTC) - timedelta(seconds=3)
        await set_available(alice)
        quick = await customer_waits(voice)
        await agent_answers(voice, quick, "alice")
        # answered after more than the 1 s service level by the app's clock
        await set_available(bob)
        slow = await customer_waits(voice)
        await asyncio.sleep(1.2)
        await agent_answers(voice, slow, "bob")
        # nobody is free: one caller gives up, one still waits
        gone = await customer_waits(voice)
        await hang_up_customer(voice, gone, "last-participant-left")
        await customer_waits(voice)

        result = await figures_of(sam)
    assert result["day"] == datetime.now(UTC).strftime("%Y-%m-%d")
    assert (result["answered"], result["abandoned"]) == (2, 1)
    assert result["service_level_seconds"] == 1
    assert result["answered_within_service_level"] == 1
    assert result["service_level"] == pytest.approx(1 / 3, abs=1e-3)
    assert 600 <= result["mean_wait_ms"] < 30_000  # (~0 s + ~1.2 s) / 2
    assert result["waiting"] == 1
    assert 0 <= result["longest_wait_ms"] < 60_000


async def test_figures_count_transfer_outcomes_and_answer_time(app, redis, voice):
    alice = await login(app, redis, "alice")
    bob = await login(app, redis, "bob")
    sam = await login(app, redis, "sam", role="supervisor")
    await set_available(alice)
    name = await customer_waits(voice)
    first = await agent_answers(voice, name, "alice")

    async def transfer() -> dict[str, Any]:
        await set_available(bob)
        response = await alice.post("/api/transfers", json={"conference": name, "to": "bob"})
        assert response.status_code == 201, await response.get_data(as_text=True)
        return await response.get_json()

    for outcome in ("no-answer", "busy", "no-answer"):
        await transfer()
        create = dials_to(voice, "bob")[-1]
        await voice.decline(create, await voice.ring(create), outcome)
        await voice.settle()
    canceled = await transfer()
    create = dials_to(voice, "bob")[-1]
    sid = await voice.ring(create)
    assert (await alice.delete(f"/api/transfers/{canceled['id']}")).status_code == 200
    await voice.decline(create, sid, "canceled")
    await voice.settle()
    await transfer()
    await agent_answers(voice, name, "bob", start=False)
    await leg_leaves(voice, name, first)

    result = await figures_of(sam)
    assert result["transfers"] == {
        "succeeded": 1,
        "failed": 3,
        "failed_reasons": {"busy": 1, "no-answer": 2},
        "canceled": 1,
    }
    assert result["transfer_answer"]["count"] == 1
    assert result["transfer_answer"]["mean_ms"] >= 0
    assert (result["answered"], result["abandoned"]) == (1, 0)


# -- the projection itself: late and repeated outcomes --------------------------------


async def commit(redis: Redis, *events: Event) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        project(pipe, list(events), now_ms(), UTC)
        await pipe.execute()


def conference_event(kind: str, started_at: int | None, created_at: int) -> Event:
    data = {
        "name": "CAlate",
        "sid": "CFlate",
        "status": "ended",
        "from": None,
        "created_at": created_at,
        "started_at": started_at,
        "ended_at": created_at + 9000,
    }
    # the app sees the start when Twilio says it happened (the wait is measured on its clock)
    ts = started_at if kind == "conference.started" and started_at else created_at + 9000
    return Event(kind, data, ts, frozenset(), "CAlate")


def transfer_event(status: str, reason: str | None, created_at: int) -> Event:
    data = {
        "id": "TRlate",
        "conference": "CAlate",
        "from_agent": "alice",
        "to_agent": "bob",
        "status": status,
        "reason": reason,
        "note": "",
        "created_at": created_at,
        "updated_at": created_at + 4000,
    }
    return Event("transfer.updated", data, created_at + 4000, frozenset({"alice"}), "CAlate")


async def test_a_late_outcome_replaces_the_counted_one(redis):
    created = now_ms() - 10_000
    # The end arrived before the (earlier) start: first counted abandoned, then answered.
    await commit(redis, conference_event("conference.ended", None, created))
    await commit(redis, conference_event("conference.started", created + 2000, created))
    # A transfer first derived as failed turns out completed; a repeat changes nothing.
    await commit(redis, transfer_event("failed", "customer-hung-up", created))
    await commit(redis, transfer_event("completed", None, created))
    await commit(redis, transfer_event("completed", None, created))
    result = await figures.read(redis, now_ms(), service_level_seconds=2, zone=UTC)
    assert (result["answered"], result["abandoned"]) == (1, 0)
    assert result["answered_within_service_level"] == 1
    assert result["transfers"] == {
        "succeeded": 1,
        "failed": 0,
        "failed_reasons": {},
        "canceled": 0,
    }
    ttl = await redis.ttl(keys.figures(figures.local_day(created, UTC)))
    assert 7 * DAY < ttl <= 8 * DAY


async def test_an_entry_after_the_end_keeps_the_day_of_retention(redis):
    created = now_ms() - 10_000
    await commit(redis, conference_event("conference.started", created + 1000, created))
    assert await redis.ttl(keys.timeline("CAlate")) > DAY
    await commit(redis, conference_event("conference.ended", created + 1000, created))
    await commit(redis, transfer_event("failed", "customer-hung-up", created))
    assert DAY - 60 < await redis.ttl(keys.timeline("CAlate")) <= DAY
    assert await redis.llen(keys.timeline("CAlate")) == 3


async def test_webhook_health_is_for_supervisors(app, redis, voice):
    from console.domain import webhook_health

    webhook_health._last_written.clear()  # written at most once a second per process
    await voice.call_in()
    await asyncio.gather(*webhook_health._pending)  # recorded off the request's path
    sam = await login(app, redis, "sam", role="supervisor")
    alice = await login(app, redis, "alice")
    response = await sam.get("/api/webhooks")
    assert response.status_code == 200
    health = await response.get_json()
    assert "/conference/connect/client" in health["last_request"]
    assert health["signature_failures"] == []
    assert (await alice.get("/api/webhooks")).status_code == 403
