"""The call history over HTTP (console/web/calls.py, docs/api.md): pages, filters in
CENTER_TIMEZONE, refused parameters, what agents and supervisors see, the CSV export,
timelines served from PostgreSQL once Redis has let the call go, and 503 when there is
no database or it is down. The tables are seeded by hand (tests/support/history_seed.py)."""

from __future__ import annotations

import csv
import io
import json
import socket
from typing import Any

import pytest

from console.domain import keys
from console.web.calls import CSV_COLUMNS
from tests.conftest import make_settings
from tests.support.flow_helpers import (
    PASSWORD,
    hang_up_customer,
    leg_leaves,
    login,
    monitored_warm_transfer,
)
from tests.support.history_seed import Call, Leg, answered, insert_calls, store_stream_events
from warmline.app import create_app

T0 = 1_772_900_000_000  # 2026-03-07T16:13:20Z
MINUTE = 60_000
UNAVAILABLE = {"error": "history is unavailable"}
INT_COLUMNS = {"arrived_at", "answered_at", "ended_at", "wait_ms", "talk_ms", "hold_ms"}
JSON_COLUMNS = {"legs", "transfers", "recording", "voicemail"}


def sid(n: int) -> str:
    return f"CA{n:032x}"


async def get_json(client: Any, path: str, status: int = 200) -> Any:
    response = await client.get(path)
    body = await response.get_json()
    assert response.status_code == status, (path, body)
    return body


async def all_pages(client: Any, path: str) -> list[list[dict[str, Any]]]:
    """Every page of ``path``, following ``next``."""
    pages = []
    joiner = "&" if "?" in path else "?"
    body = await get_json(client, path)
    pages.append(body["calls"])
    while body["next"] is not None:
        body = await get_json(client, f"{path}{joiner}cursor={body['next']}")
        pages.append(body["calls"])
    return pages


async def test_a_supervisor_pages_through_120_calls_without_duplicates_or_gaps(
    history_app, redis, pg
):
    seeded = [
        answered(sid(n), T0 + (n // 2) * MINUTE, ("alice", "bob", "carol")[n % 3])
        for n in range(120)
    ]
    await insert_calls(pg, seeded)
    expected = [c.id for c in sorted(seeded, key=lambda c: (c.arrived_at, c.id), reverse=True)]
    sue = await login(history_app, redis, "sue", role="supervisor")

    pages = await all_pages(sue, "/api/calls")
    assert [len(p) for p in pages] == [50, 50, 20]  # 50 by default
    assert [c["id"] for p in pages for c in p] == expected
    pages = await all_pages(sue, "/api/calls?limit=33")
    assert [len(p) for p in pages] == [33, 33, 33, 21]
    assert [c["id"] for p in pages for c in p] == expected
    # filtered pages follow the filter
    pages = await all_pages(sue, "/api/calls?agent=carol&limit=7")
    assert [c["id"] for p in pages for c in p] == [i for i in expected if int(i[2:], 16) % 3 == 2]


async def test_filters_read_days_and_times_in_the_center_timezone(
    redis, redis_server, pg, twilio, database_url
):
    settings = make_settings(twilio.base_url, center_timezone="America/New_York")
    app = create_app(settings, redis_url=redis_server.url, database_url=database_url)
    night = 1_773_027_000_000  # 2026-03-08T23:30-04:00, 2026-03-09T03:30Z
    await insert_calls(
        pg,
        [
            answered(sid(1), 1_772_946_000_000, "alice"),  # 2026-03-08T00:00-05:00
            answered(sid(2), night, "bob", from_number="+4420790000"),
            Call(sid(3), night + 60 * MINUTE, outcome="abandoned"),  # 2026-03-09T00:30-04:00
            Call(sid(4), 1_772_945_999_999, outcome="voicemail"),  # 2026-03-07, last ms
        ],
    )
    async with app.test_app():
        sue = await login(app, redis, "sue", role="supervisor")

        async def ids(query: str) -> list[str]:
            body = await get_json(sue, f"/api/calls?{query}")
            return [c["id"] for c in body["calls"]]

        # the 8th of March in New York: 23 hours, 00:00-05:00 to 24:00-04:00
        assert await ids("from=2026-03-08&to=2026-03-08") == [sid(2), sid(1)]
        assert await ids("from=2026-03-09") == [sid(3)]
        assert await ids("to=2026-03-07") == [sid(4)]
        assert await ids("from=2026-03-08T23:30&to=2026-03-09T00:30") == [sid(3), sid(2)]
        assert await ids("from=2026-03-09T03:30:00.001Z") == [sid(3)]
        assert await ids("agent=bob") == [sid(2)]
        assert await ids("number=4420") == [sid(2)]
        assert await ids("outcome=abandoned,voicemail") == [sid(3), sid(4)]
        assert await ids("from=2026-03-08&outcome=completed&agent=alice") == [sid(1)]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("from=yesterday", "from:"),
        ("to=2026-02-30", "to:"),
        ("from=2026-03-09&to=2026-03-08", "from:"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("cursor=garbage!", "cursor:"),
        ("cursor=eyJhdCI6MSwiaWQiOiJDQTEifQ%3D%3D", "cursor:"),  # padded: not as written
        ("cursor=WzEsMl0", "cursor:"),  # [1,2]
        ("agent=a%20b", "agent"),
        ("number=12", "number:"),
        ("outcome=lost", "outcome:"),
        ("color=red", "color"),
        ("from=2026-03-01&from=2026-03-02", "from"),
    ],
)
async def test_bad_parameters_are_a_400_naming_them(history_app, redis, query, named):
    sue = await login(history_app, redis, "sue", role="supervisor")
    for path in ("/api/calls", "/api/calls.csv"):
        if path.endswith(".csv") and query.startswith(("limit", "cursor")):
            continue  # the export takes neither (a separate case below)
        body = await get_json(sue, f"{path}?{query}", 400)
        assert named in body["error"], (path, query, body)
    for query in ("limit=10", "cursor=x"):
        body = await get_json(sue, f"/api/calls.csv?{query}", 400)
        assert query.split("=")[0] in body["error"]


async def test_a_tampered_cursor_is_refused(history_app, redis, pg):
    await insert_calls(pg, [answered(sid(n), T0 + n, "alice") for n in range(3)])
    sue = await login(history_app, redis, "sue", role="supervisor")
    cursor = (await get_json(sue, "/api/calls?limit=1"))["next"]
    assert cursor
    assert (await get_json(sue, f"/api/calls?limit=1&cursor={cursor}"))["calls"][0]["id"] == sid(1)
    for bad in (cursor[:-2], cursor + "x", cursor[::-1], cursor.replace(cursor[5], "*")):
        body = await get_json(sue, f"/api/calls?cursor={bad}", 400)
        assert body["error"].startswith("cursor:")


async def test_agents_see_the_calls_they_were_on_and_supervisors_all(history_app, redis, pg):
    alices = answered(sid(1), T0, "alice")
    alices.legs.append(Leg("sue", T0 + 6_000, T0 + 9_000, role="supervisor"))
    transfer = {"id": "TR1", "from_agent": "bob", "to_agent": "alice", "status": "completed"}
    shared = answered(sid(2), T0 + MINUTE, "bob", transfers=[transfer])
    bobs = answered(sid(3), T0 + 2 * MINUTE, "bob")
    await insert_calls(pg, [alices, shared, bobs])
    alice = await login(history_app, redis, "alice")
    bob = await login(history_app, redis, "bob")
    sue = await login(history_app, redis, "sue", role="supervisor")

    def ids(body: dict[str, Any]) -> list[str]:
        return [c["id"] for c in body["calls"]]

    assert ids(await get_json(alice, "/api/calls")) == [sid(2), sid(1)]
    assert ids(await get_json(alice, "/api/calls?agent=bob")) == [sid(2)]
    assert ids(await get_json(bob, "/api/calls")) == [sid(3), sid(2)]
    assert ids(await get_json(sue, "/api/calls")) == [sid(3), sid(2), sid(1)]
    mine = await get_json(alice, f"/api/calls/{sid(1)}")
    assert [leg["agent"] for leg in mine["legs"]] == ["alice"]  # not the supervisor's
    assert "timeline" in mine
    full = await get_json(sue, f"/api/calls/{sid(1)}")
    assert [leg["agent"] for leg in full["legs"]] == ["alice", "sue"]
    # another's call is exactly an unknown one: nothing tells it exists
    hidden = await alice.get(f"/api/calls/{sid(3)}")
    unknown = await alice.get(f"/api/calls/{sid(4)}")
    assert hidden.status_code == unknown.status_code == 404
    assert (await hidden.get_json())["error"].replace(sid(3), "X") == (await unknown.get_json())[
        "error"
    ].replace(sid(4), "X")
    await get_json(sue, f"/api/calls/{sid(3)}")
    await get_json(alice, "/api/calls/CA!!", 400)
    assert [r[0] for r in await csv_rows(alice, "/api/calls.csv")] == ["id", sid(2), sid(1)]
    for path in ("/api/calls", "/api/calls.csv", f"/api/calls/{sid(1)}"):
        await get_json(history_app.test_client(), path, 401)


async def csv_rows(client: Any, path: str) -> list[list[str]]:
    response = await client.get(path)
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="calls.csv"'
    return list(csv.reader(io.StringIO(await response.get_data(as_text=True), newline="")))


def from_csv(header: list[str], row: list[str]) -> dict[str, Any]:
    """A CSV row read back into the JSON shape (docs/api.md, call history)."""
    call: dict[str, Any] = {}
    for column, cell in zip(header, row, strict=True):
        if cell == "":
            call[column] = None
        elif column in INT_COLUMNS:
            call[column] = int(cell)
        elif column in JSON_COLUMNS:
            call[column] = json.loads(cell)
        elif cell.startswith("'") and cell[1:2] in ("=", "@", "+", "-", "\t", "\r"):
            call[column] = cell[1:]  # a formula made harmless
        else:
            call[column] = cell
    return call


async def test_csv_round_trips_to_the_json_of_the_same_calls(history_app, redis, pg):
    recorded = {"sid": "RE9", "duration": 61, "status": "completed"}
    transfer = {
        "id": "TR1",
        "from_agent": "alice",
        "to_agent": "bob",
        "status": "failed",
        "reason": "no-answer",
        "note": 'says "hi", twice',
    }
    seeded = [answered(sid(n), T0 + n * MINUTE, "alice") for n in range(30)]
    seeded += [
        answered(
            sid(100),
            T0 - MINUTE,
            "alice",
            notes='line one, "quoted"\nline two; ünïcödé',
            disposition="Follow-up",
            recording=recorded,
            transfers=[transfer],
        ),
        answered(sid(101), T0 - 2 * MINUTE, "bob", notes='=HYPERLINK("http://x")'),
        answered(sid(102), T0 - 3 * MINUTE, "bob", notes="@SUM(A1)", disposition="-1+2"),
        Call(sid(103), T0 - 4 * MINUTE, outcome="abandoned", from_number="+15550100999"),
    ]
    await insert_calls(pg, seeded)
    sue = await login(history_app, redis, "sue", role="supervisor")

    rows = await csv_rows(sue, "/api/calls.csv")
    header, body = rows[0], rows[1:]
    assert header == list(CSV_COLUMNS)
    listed = [c for page in await all_pages(sue, "/api/calls?limit=7") for c in page]
    assert len(body) == len(listed) == 34
    assert [from_csv(header, row) for row in body] == listed
    cells = {row[0]: dict(zip(header, row, strict=True)) for row in body}
    assert cells[sid(101)]["notes"] == '\'=HYPERLINK("http://x")'
    assert cells[sid(102)]["disposition"] == "'-1+2"
    assert cells[sid(103)]["from"] == "+15550100999"  # a number stays a number
    assert cells[sid(103)]["answered_by"] == "" and cells[sid(103)]["legs"] == "[]"
    # filters apply to the export as to the list
    rows = await csv_rows(sue, "/api/calls.csv?outcome=abandoned&from=2026-03-07")
    assert [r[0] for r in rows] == ["id", sid(103)]
    rows = await csv_rows(sue, "/api/calls.csv?from=2030-01-01")
    assert rows == [list(CSV_COLUMNS)]


@pytest.mark.timeout(120)
async def test_a_timeline_redis_has_let_go_is_served_from_postgresql(
    app, voice, redis, pg, settings, redis_server, database_url
):
    """A call with a supervisor listening in, holds and a warm transfer runs on an app
    without history; its events are stored as the writer would, Redis forgets the
    call, and a history app serves the same timeline to the same people."""
    call = await monitored_warm_transfer(app, redis, voice)
    name, sam, second = call["name"], call["sam"], call["second"]
    await leg_leaves(voice, name, second, end_on_exit=True)
    await hang_up_customer(voice, name, "participant-with-end-conference-on-exit-left")
    assert await store_stream_events(pg, redis) > 0
    await insert_calls(pg, [answered(name, T0, "alice", agents=["alice", "bob"])])

    reader = create_app(settings, redis_url=redis_server.url, database_url=database_url)
    async with reader.test_app():
        clients = {who: await sign_in(reader, who) for who in ("alice", "bob", "sam")}
        clients["carol"] = await login(reader, redis, "carol")
        path = f"/api/conferences/{name}/timeline"
        live = {who: await get_json(clients[who], path) for who in ("alice", "bob", "sam")}
        assert any("sam" in e["detail"] for e in live["sam"]["entries"])
        assert not any("sam" in e["detail"] for e in live["alice"]["entries"])

        await redis.delete(keys.timeline(name), keys.conference(name))  # Redis lets it go
        for who in ("alice", "bob", "sam"):
            assert await get_json(clients[who], path) == live[who], who
            call = await get_json(clients[who], f"/api/calls/{name}")
            assert call["timeline"] == live[who]["entries"], who
        await get_json(clients["carol"], path, 403)  # not on the call
        await get_json(clients["carol"], f"/api/calls/{name}", 404)
        await get_json(clients["sam"], "/api/conferences/CAunknown/timeline", 404)

    # without a database, a call Redis has let go is unknown, as before
    await get_json(sam, f"/api/conferences/{name}/timeline", 404)


async def sign_in(app: Any, username: str) -> Any:
    """A client of ``app`` logged in as an existing user."""
    client = app.test_client()
    response = await client.post("/login", form={"username": username, "password": PASSWORD})
    assert response.status_code == 303
    return client


async def test_without_a_database_history_answers_503(app, redis):
    sue = await login(app, redis, "sue", role="supervisor")
    alice = await login(app, redis, "alice")
    for client in (sue, alice):
        for path in ("/api/calls", "/api/calls.csv", f"/api/calls/{sid(1)}"):
            assert await get_json(client, path, 503) == UNAVAILABLE
    await get_json(app.test_client(), "/api/calls", 401)


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.timeout(120)
async def test_with_the_database_down_history_answers_503(redis, redis_server, twilio):
    down = f"postgresql://warmline@127.0.0.1:{closed_port()}/warmline"
    app = create_app(make_settings(twilio.base_url), redis_url=redis_server.url, database_url=down)
    async with app.test_app():
        sue = await login(app, redis, "sue", role="supervisor")
        for path in ("/api/calls", "/api/calls.csv", "/api/conferences/CAgone/timeline"):
            response = await sue.get(path)
            assert response.status_code == 503, path
            assert await response.get_json() == UNAVAILABLE, path
        assert (await sue.get("/api/calls?limit=0")).status_code == 400  # checked first


async def test_the_openapi_document_describes_the_history_routes(history_app):
    document = await get_json(history_app.test_client(), "/openapi.json")
    listed = document["paths"]["/api/calls"]["get"]
    assert {p["name"] for p in listed["parameters"]} == {
        "from",
        "to",
        "agent",
        "number",
        "outcome",
        "limit",
        "cursor",
    }
    assert set(listed["responses"]) >= {"200", "400", "401", "503"}
    export = document["paths"]["/api/calls.csv"]["get"]
    assert list(export["responses"]["200"]["content"]) == ["text/csv"]
    one = document["paths"]["/api/calls/{call_id}"]["get"]
    assert one["parameters"][0]["schema"]["pattern"] == "^[A-Za-z0-9_-]{1,128}$"
