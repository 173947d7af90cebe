"""Reports (GET /api/reports and /api/reports.csv, docs/history.md): a seeded day in
New York against figures worked out by hand from the seed, the 23- and 25-hour days
of daylight saving, agents' occupancy and breaks from their status changes, the CSV
carrying the same rows, and what is refused.

The tables are filled with INSERTs (schema 0001), not by the history writer, except
where a test says so. The per-agent figures kept for reports (migration 0005) are
checked against a recount of the rows after every kind of write."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from console.history import reports
from console.history.migrate import CREATE_TABLE, migrations, upgrade
from console.history.reports import ReportRange
from console.history.store import StreamEvent, store_batch, write_calls
from console.postgres_ext import make_pool
from tests.conftest import make_settings
from tests.support.flow_helpers import login
from warmline.app import create_app
from warmline.embedded_postgres import url_for

NEW_YORK = ZoneInfo("America/New_York")
SECOND, MINUTE = 1000, 60_000


def at(text: str) -> int:
    """ms of a New York wall-clock time (``2026-06-10 09:05``); ``+0400`` style
    offsets may be given to pick one side of a repeated hour."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=NEW_YORK)
    return int(moment.timestamp() * 1000)


async def insert_call(pg: Any, call_id: str, arrived: int, **values: Any) -> None:
    row = {
        "id": call_id,
        "kind": "inbound",
        "arrived_at": arrived,
        "offered": True,
        "answered_at": None,
        "answered_by": None,
        "ended_at": arrived + 10 * MINUTE,
        "outcome": "completed",
        "wait_ms": None,
        "talk_ms": 0,
        "hold_ms": 0,
        "wrap_up_ms": 0,
        "agents": [],
        "updated_at": arrived + 10 * MINUTE,
        **values,
    }
    columns = ", ".join(row)
    await pg.execute(
        f"INSERT INTO calls ({columns}) VALUES ({', '.join(['%s'] * len(row))})",
        list(row.values()),
    )


async def answered(
    pg: Any, call_id: str, arrived: int, agent: str, wait: int, talk: int, hold: int, wrap: int
) -> None:
    await insert_call(
        pg,
        call_id,
        arrived,
        answered_at=arrived + wait,
        answered_by=agent,
        wait_ms=wait,
        talk_ms=talk,
        hold_ms=hold,
        wrap_up_ms=wrap,
        agents=[agent],
    )
    await leg(pg, call_id, 0, agent, arrived + wait)


async def leg(pg: Any, call_id: str, position: int, agent: str, joined: int) -> None:
    await pg.execute(
        "INSERT INTO call_legs (call_id, position, call_sid, agent, role, joined_at)"
        " VALUES (%s, %s, %s, %s, 'agent', %s)",
        (call_id, position, f"CAleg{call_id}{position}", agent, joined),
    )


async def transfer(
    pg: Any, call_id: str, transfer_id: str, status: str, requested: int, who: str, to: str
) -> None:
    data = {"id": transfer_id, "from_agent": who, "to_agent": to, "status": status}
    await pg.execute(
        "INSERT INTO call_transfers (call_id, id, status, requested_at, ended_at, data)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (call_id, transfer_id, status, requested, requested + MINUTE, Jsonb(data)),
    )


async def statuses(pg: Any, agent: str, changes: list[tuple[str, str]]) -> None:
    """agent.updated events, as the writer stores them, for (New York time, status)."""
    for when, status in changes:
        ts = at(when)
        count = (await (await pg.execute("SELECT count(*) AS n FROM events")).fetchone())["n"]
        data = {"username": agent, "status": status, "since": ts}
        await pg.execute(
            "INSERT INTO events (id, ms, seq, type, ts, conference, audience, data)"
            " VALUES (%s, %s, %s, 'agent.updated', %s, NULL, '*', %s)",
            (f"{ts}-{count}", ts, count, ts, Jsonb(data)),
        )


@pytest.fixture
async def clients(redis, twilio, redis_server, database_url) -> AsyncIterator[dict[str, Any]]:
    """A New York center with the test's database; a supervisor and an agent signed in."""
    settings = make_settings(
        twilio.base_url, center_timezone="America/New_York", service_level_seconds=20
    )
    app = create_app(settings, redis_url=redis_server.url, database_url=database_url)
    async with app.test_app():
        sue = await login(app, redis, "sue", role="supervisor")
        alice = await login(app, redis, "alice")
        yield {"supervisor": sue, "agent": alice, "anonymous": app.test_client()}


async def report(client: Any, query: str) -> dict[str, Any]:
    response = await client.get(f"/api/reports?{query}")
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()


EMPTY = {
    "offered": 0,
    "answered": 0,
    "abandoned": 0,
    "voicemails": 0,
    "callbacks": 0,
    "service_level": None,
    "wait_mean_ms": None,
    "wait_p90_ms": None,
    "handle_mean_ms": None,
    "transfers_succeeded": 0,
    "transfers_failed": 0,
}


async def seed_day(pg: Any) -> None:
    """2026-06-10 in New York (EDT), service level threshold 20 s."""
    # 09:00-10:00
    await answered(pg, "CA1", at("2026-06-10 09:05"), "alice", 10 * SECOND, 120_000, 30_000, 10_000)
    await answered(pg, "CA2", at("2026-06-10 09:10"), "bob", 30 * SECOND, 60_000, 0, 20_000)
    await insert_call(pg, "CA3", at("2026-06-10 09:20"), outcome="abandoned", wait_ms=5 * SECOND)
    await insert_call(pg, "CA4", at("2026-06-10 09:30"), outcome="abandoned", wait_ms=45 * SECOND)
    await leg(pg, "CA1", 1, "carol", at("2026-06-10 09:08"))  # took CA1 over by transfer
    await transfer(pg, "CA1", "TR1", "completed", at("2026-06-10 09:07"), "alice", "carol")
    await transfer(pg, "CA2", "TR2", "failed", at("2026-06-10 09:12"), "bob", "alice")
    await transfer(pg, "CA2", "TR3", "canceled", at("2026-06-10 09:13"), "bob", "alice")
    # 10:00-11:00
    await answered(pg, "CA5", at("2026-06-10 10:00"), "alice", 20 * SECOND, 200_000, 0, 0)
    await insert_call(pg, "CA6", at("2026-06-10 10:15"), outcome="voicemail")
    await insert_call(pg, "CA7", at("2026-06-10 10:20"), outcome="callback-requested")
    await insert_call(
        pg, "CA8", at("2026-06-10 10:25"), offered=False, outcome="closed-hours", ended_at=None
    )
    # a callback alice placed: handled by her, but not an offered call
    await insert_call(
        pg,
        "CB9",
        at("2026-06-10 10:40"),
        kind="callback",
        offered=False,
        answered_at=at("2026-06-10 10:41"),
        answered_by="alice",
        wait_ms=MINUTE,
        talk_ms=MINUTE,
        agents=["alice"],
    )
    await leg(pg, "CB9", 0, "alice", at("2026-06-10 10:41"))
    # the days either side
    await answered(pg, "CA10", at("2026-06-09 23:59:58.999"), "bob", SECOND, MINUTE, 0, 0)
    await insert_call(pg, "CA11", at("2026-06-11 00:00"), outcome="abandoned", wait_ms=MINUTE)


async def test_a_day_by_day_and_by_hour_against_hand_computed_figures(clients, pg):
    await seed_day(pg)
    sue = clients["supervisor"]
    day = await report(sue, "from=2026-06-10&to=2026-06-10&by=day")
    assert day["from"] == day["to"] == "2026-06-10" and day["by"] == "day"
    # offered: CA1-CA7; answered CA1, CA2, CA5; abandoned CA3, CA4 (CA3 within 20 s).
    # Service level: CA1 (10 s) and CA5 (20 s) of answered 3 + CA4 abandoned after 20 s.
    # Waits 10, 30, 20 s: mean 20 s, nearest-rank 90th = the 3rd of 3 = 30 s.
    # Handle: (120+30+10) + (60+0+20) + 200 s = 440 s over 3.
    assert day["rows"] == [
        {
            "bucket": "2026-06-10",
            "offered": 7,
            "answered": 3,
            "abandoned": 2,
            "voicemails": 1,
            "callbacks": 1,
            "service_level": 0.5,
            "wait_mean_ms": 20_000,
            "wait_p90_ms": 30_000,
            "handle_mean_ms": 146_667,
            "transfers_succeeded": 1,
            "transfers_failed": 1,
        }
    ]

    hours = (await report(sue, "from=2026-06-10&to=2026-06-10&by=hour"))["rows"]
    assert len(hours) == 24
    assert hours[0]["bucket"] == "2026-06-10T00:00:00-04:00"
    by_label = {row.pop("bucket"): row for row in hours}
    assert by_label["2026-06-10T09:00:00-04:00"] == {
        **EMPTY,
        "offered": 4,
        "answered": 2,
        "abandoned": 2,
        "service_level": 0.3333,  # CA1 of CA1, CA2, CA4
        "wait_mean_ms": 20_000,
        "wait_p90_ms": 30_000,
        "handle_mean_ms": 120_000,
        "transfers_succeeded": 1,
        "transfers_failed": 1,
    }
    assert by_label["2026-06-10T10:00:00-04:00"] == {
        **EMPTY,
        "offered": 3,
        "answered": 1,
        "voicemails": 1,
        "callbacks": 1,
        "service_level": 1.0,
        "wait_mean_ms": 20_000,
        "wait_p90_ms": 20_000,
        "handle_mean_ms": 200_000,
    }
    others = [row for label, row in by_label.items() if label[11:13] not in ("09", "10")]
    assert others == [EMPTY] * 22


async def test_the_90th_percentile_is_nearest_rank(clients, pg):
    for n in range(1, 11):  # waits of 1 s to 10 s
        arrived = at("2026-06-10 12:00") + n * MINUTE
        await answered(pg, f"CA{n}", arrived, "alice", n * SECOND, MINUTE, 0, 0)
    [row] = (await report(clients["supervisor"], "from=2026-06-10&to=2026-06-10"))["rows"]
    # rank ceil(0.9 x 10) = 9: the 9th wait, not an interpolated 9.1 s
    assert (row["wait_p90_ms"], row["wait_mean_ms"]) == (9_000, 5_500)


async def test_by_agent_occupancy_breaks_and_missed_rings(clients, pg):
    await seed_day(pg)
    await statuses(
        pg,
        "alice",
        [
            ("2026-06-09 23:30", "available"),  # signed in before the day: counts from 00:00
            ("2026-06-10 00:30", "offline"),
            ("2026-06-10 09:00", "available"),
            ("2026-06-10 09:05", "ringing"),
            ("2026-06-10 09:06", "busy"),
            ("2026-06-10 09:46", "wrap-up"),
            ("2026-06-10 09:51", "available"),
            ("2026-06-10 10:00", "break"),
            ("2026-06-10 10:30", "available"),
            ("2026-06-10 10:40", "ringing"),
            ("2026-06-10 10:41", "missed"),
            ("2026-06-10 10:42", "available"),
            ("2026-06-10 10:50", "ringing"),
            ("2026-06-10 10:51", "missed"),
            ("2026-06-10 10:51:30", "missed"),  # the same miss announced again
            ("2026-06-10 10:55", "available"),
            ("2026-06-10 12:00", "offline"),
        ],
    )
    await statuses(
        pg,
        "bob",
        [
            ("2026-06-10 22:00", "available"),  # signed in past the day's end: to 24:00
            ("2026-06-10 23:00", "busy"),
            ("2026-06-10 23:20", "available"),
            ("2026-06-11 01:00", "offline"),
        ],
    )
    await statuses(pg, "dave", [("2026-06-10 08:00", "available"), ("2026-06-10 08:30", "offline")])
    await statuses(pg, "eve", [("2026-06-09 08:00", "offline"), ("2026-06-10 08:00", "offline")])

    answer = await report(clients["supervisor"], "from=2026-06-10&to=2026-06-10&by=agent")
    rows = {row.pop("bucket"): row for row in answer["rows"]}
    assert list(rows) == ["alice", "bob", "carol", "dave"]  # eve never signed in
    # alice: signed in 00:00-00:30 and 09:00-12:00 = 210 min, 30 of them on break;
    # busy 40 min + wrap-up 5 min = 45 of the 180 working minutes.
    assert rows["alice"] == {
        **EMPTY,
        "offered": 2,
        "answered": 2,
        "service_level": 1.0,  # CA1 (10 s), CA5 (20 s)
        "wait_mean_ms": 15_000,
        "wait_p90_ms": 20_000,
        "handle_mean_ms": 180_000,  # (160 s + 200 s) / 2
        "transfers_succeeded": 1,
        "handled": 3,  # CA1, CA5 and the callback CB9
        "missed": 2,
        "occupancy": 0.25,
        "break_ms": 30 * MINUTE,
    }
    # bob: CA2 only (CA10 was the day before); signed in 22:00-24:00, busy 20 min.
    assert rows["bob"] == {
        **EMPTY,
        "offered": 1,
        "answered": 1,
        "service_level": 0.0,
        "wait_mean_ms": 30_000,
        "wait_p90_ms": 30_000,
        "handle_mean_ms": 80_000,
        "transfers_failed": 1,
        "handled": 1,
        "missed": 0,
        "occupancy": 0.1667,
        "break_ms": 0,
    }
    # carol joined CA1 by transfer and has no status changes
    assert rows["carol"] == {**EMPTY, "handled": 1, "missed": 0, "occupancy": None, "break_ms": 0}
    assert rows["dave"] == {**EMPTY, "handled": 0, "missed": 0, "occupancy": 0.0, "break_ms": 0}


async def test_the_23_hour_day_and_its_neighbours(clients, pg):
    await insert_call(pg, "CAest", at("2026-03-08 01:30"), outcome="abandoned")
    await insert_call(pg, "CAedt", at("2026-03-08 03:30"), outcome="abandoned")
    # 00:30 on the 9th: a day boundary found by adding 24 h to the 8th's midnight
    # (05:00 UTC + 24 h = 01:00 EDT) would count it on the 8th
    await insert_call(pg, "CAnext", at("2026-03-09 00:30"), outcome="abandoned")
    await insert_call(pg, "CAlast", at("2026-03-08 23:59:59.999"), outcome="abandoned")
    sue = clients["supervisor"]
    hours = (await report(sue, "from=2026-03-08&to=2026-03-08&by=hour"))["rows"]
    assert len(hours) == 23
    labels = [row["bucket"] for row in hours]
    assert labels[:4] == [
        "2026-03-08T00:00:00-05:00",
        "2026-03-08T01:00:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T04:00:00-04:00",
    ]
    assert labels[-1] == "2026-03-08T23:00:00-04:00"
    offered = {row["bucket"][11:]: row["offered"] for row in hours if row["offered"]}
    assert offered == {"01:00:00-05:00": 1, "03:00:00-04:00": 1, "23:00:00-04:00": 1}
    days = (await report(sue, "from=2026-03-07&to=2026-03-09&by=day"))["rows"]
    assert [(row["bucket"], row["abandoned"]) for row in days] == [
        ("2026-03-07", 0),
        ("2026-03-08", 3),
        ("2026-03-09", 1),
    ]


async def test_the_25_hour_day_has_its_repeated_hour_twice(clients, pg):
    await insert_call(pg, "CAfirst", at("2026-11-01 01:30-04:00"), outcome="abandoned")
    await insert_call(pg, "CAsecond", at("2026-11-01 01:30-05:00"), outcome="abandoned")
    await insert_call(pg, "CAsecond2", at("2026-11-01 01:45-05:00"), outcome="abandoned")
    # 23:30 EST on the 1st, 24.5 h after its midnight: still the 1st
    await insert_call(pg, "CAlate", at("2026-11-01 23:30"), outcome="abandoned")
    await insert_call(pg, "CAnext", at("2026-11-02 00:00"), outcome="abandoned")
    sue = clients["supervisor"]
    hours = (await report(sue, "from=2026-11-01&to=2026-11-01&by=hour"))["rows"]
    assert len(hours) == 25
    offered = {row["bucket"][11:]: row["offered"] for row in hours if row["offered"]}
    assert offered == {"01:00:00-04:00": 1, "01:00:00-05:00": 2, "23:00:00-05:00": 1}
    assert [row["bucket"][11:] for row in hours[1:3]] == ["01:00:00-04:00", "01:00:00-05:00"]
    days = (await report(sue, "from=2026-10-31&to=2026-11-02&by=day"))["rows"]
    assert [(row["bucket"], row["abandoned"]) for row in days] == [
        ("2026-10-31", 0),
        ("2026-11-01", 4),
        ("2026-11-02", 1),
    ]


@pytest.mark.parametrize("by", ["hour", "day", "agent"])
async def test_the_csv_holds_the_same_rows(clients, pg, by):
    await seed_day(pg)
    await statuses(pg, "alice", [("2026-06-10 09:00", "available"), ("2026-06-10 10:00", "break")])
    sue = clients["supervisor"]
    query = f"from=2026-06-09&to=2026-06-10&by={by}"
    answer = await report(sue, query)
    response = await sue.get(f"/api/reports.csv?{query}")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    table = list(csv.reader(io.StringIO(await response.get_data(as_text=True))))
    header, body = table[0], table[1:]
    assert header[0] == "bucket" and sorted(header) == sorted(answer["rows"][0])
    assert len(body) == {"hour": 48, "day": 2, "agent": 3}[by]
    read_back = [dict(zip(header, cells, strict=True)) for cells in body]
    for row, cells in zip(answer["rows"], read_back, strict=True):
        assert {k: "" if v is None else json.dumps(v) for k, v in row.items() if k != "bucket"} == {
            k: v for k, v in cells.items() if k != "bucket"
        }
        assert cells["bucket"] == row["bucket"]


async def test_who_may_read_reports_and_bad_parameters(clients):
    sue, alice, anonymous = clients["supervisor"], clients["agent"], clients["anonymous"]
    for path in ("/api/reports", "/api/reports.csv"):
        assert (await anonymous.get(path)).status_code == 401
        assert (await alice.get(path)).status_code == 403
        assert (await sue.get(path)).status_code == 200
    for query in (
        "by=week",
        "from=2026-02-30",
        "from=yesterday",
        "to=2026-6-1",
        "from=2026-06-10&to=2026-06-09",
        "from=2025-01-01&to=2026-02-05",  # 401 days
        "from=0001-01-01&to=0001-01-02",
        "colour=blue",
    ):
        for path in ("/api/reports", "/api/reports.csv"):
            response = await sue.get(f"{path}?{query}")
            assert response.status_code == 400, (path, query)
            assert (await response.get_json())["error"], (path, query)
    assert (await sue.get("/api/reports?from=2025-01-01&to=2026-02-04")).status_code == 200
    today = await report(sue, "")
    assert today["from"] == today["to"] == datetime.now(NEW_YORK).date().isoformat()


async def test_without_a_database_reports_are_unavailable(app, redis):
    sue = await login(app, redis, "sue", role="supervisor")
    for path in ("/api/reports", "/api/reports.csv"):
        response = await sue.get(path)
        assert response.status_code == 503
        assert (await response.get_json()) == {"error": "history is unavailable"}


async def test_an_agent_still_on_break_counts_up_to_now(clients, pg):
    now = datetime.now(NEW_YORK)
    started = int(now.timestamp() * 1000)
    for ts, status in ((started - 2 * 3_600_000, "available"), (started - 3_600_000, "break")):
        data = {"username": "alice", "status": status, "since": ts}
        await pg.execute(
            "INSERT INTO events (id, ms, seq, type, ts, conference, audience, data)"
            " VALUES (%s, %s, 0, 'agent.updated', %s, NULL, '*', %s)",
            (f"{ts}-0", ts, ts, Jsonb(data)),
        )
    # from yesterday, in case two hours ago was before today's midnight
    query = f"from={now.date() - timedelta(days=1)}&to={now.date()}&by=agent"
    [row] = (await report(clients["supervisor"], query))["rows"]
    # on break for the last hour, not until the end of today
    assert 3_600_000 <= row["break_ms"] < 3_600_000 + 5 * MINUTE
    assert row["occupancy"] == 0.0


# The per-agent figures kept for reports by agent (migration 0005): calls handled
# (handled_*) from the legs, the answered waits (call_wait_days) from the calls. They
# must stay equal to a recount of the stored rows however the rows are written, and
# reports from them equal to the definitions (reports.py's queries over the rows).

QUARTER, UTC_DAY = 900_000, 86_400_000


async def kept_handled(pg: Any) -> dict[str, Any]:
    """What migration 0005 keeps for calls handled, zero counts left out."""
    tables = {
        "pairs": "SELECT call_id, agent, quarters AS v FROM handled_pairs",
        "quarters": "SELECT quarter, agent, pairs AS v FROM handled_quarters WHERE pairs <> 0",
        "days": "SELECT day, agent, pairs AS v FROM handled_days WHERE pairs <> 0",
        "spread": "SELECT quarter, agent, call_id, 1 AS v FROM handled_spread",
    }
    found = {}
    for name, query in tables.items():
        rows = await (await pg.execute(query)).fetchall()
        found[name] = {tuple(list(r.values())[:-1]): r["v"] for r in rows}
    return found


async def recounted_handled(pg: Any) -> dict[str, Any]:
    """The same, worked out in Python from every stored leg."""
    legs = await (
        await pg.execute("SELECT call_id, agent, role, joined_at FROM call_legs")
    ).fetchall()
    pairs: dict[tuple[str, str], set[int]] = {}
    for leg in legs:
        if leg["role"] == "agent":
            joined = leg["joined_at"]
            pairs.setdefault((leg["call_id"], leg["agent"]), set()).add(joined - joined % QUARTER)
    quarters: dict[tuple[int, str], int] = {}
    days: dict[tuple[int, str], int] = {}
    spread = {}
    for (call_id, agent), seen in pairs.items():
        for q in seen:
            quarters[(q, agent)] = quarters.get((q, agent), 0) + 1
            if len(seen) > 1:
                spread[(q, agent, call_id)] = 1
        for d in {q - q % UTC_DAY for q in seen}:
            days[(d, agent)] = days.get((d, agent), 0) + 1
    return {
        "pairs": {pair: sorted(seen) for pair, seen in pairs.items()},
        "quarters": quarters,
        "days": days,
        "spread": spread,
    }


async def kept_waits(pg: Any) -> dict[tuple[int, str], list[int]]:
    rows = await (await pg.execute("SELECT day, agent, waits FROM call_wait_days")).fetchall()
    return {(r["day"], r["agent"]): r["waits"] for r in rows if r["waits"]}


async def recounted_waits(pg: Any) -> dict[tuple[int, str], list[int]]:
    rows = await (
        await pg.execute(
            "SELECT arrived_at, answered_by, wait_ms FROM calls WHERE kind = 'inbound' AND offered"
            " AND answered_at IS NOT NULL AND answered_by IS NOT NULL AND wait_ms IS NOT NULL"
        )
    ).fetchall()
    waits: dict[tuple[int, str], list[int]] = {}
    for r in rows:
        day = r["arrived_at"] - r["arrived_at"] % UTC_DAY
        waits.setdefault((day, r["answered_by"]), []).append(r["wait_ms"])
    return {key: sorted(values) for key, values in waits.items()}


async def assert_kept(pg: Any) -> None:
    assert await kept_handled(pg) == await recounted_handled(pg)
    assert await kept_waits(pg) == await recounted_waits(pg)


async def rewrite_legs(pg: Any, call_id: str, legs: list[tuple[str, str, int]]) -> None:
    """As the writer does (console/history/store.py): in one transaction, delete the
    call's legs, then insert each (agent, role, joined_at), one statement a leg."""
    async with pg.transaction():
        await pg.execute("DELETE FROM call_legs WHERE call_id = ANY(%s::text[])", ([call_id],))
        for position, (agent, role, joined) in enumerate(legs):
            await pg.execute(
                "INSERT INTO call_legs (call_id, position, call_sid, agent, role, joined_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (call_id, position, f"CAleg{call_id}{position}", agent, role, joined),
            )


async def test_handled_counts_each_call_once_however_its_legs_are_rewritten(clients, pg):
    sue = clients["supervisor"]
    nine = at("2026-06-10 09:05")
    await answered(pg, "CA1", nine, "alice", 10 * SECOND, MINUTE, 0, 0)
    # alice joins CA1 again 40 minutes later (another quarter hour), carol once,
    # and a supervisor listens in (not handled)
    legs = [
        ("alice", "agent", nine + 10 * SECOND),
        ("carol", "agent", nine + 20 * MINUTE),
        ("alice", "agent", nine + 40 * MINUTE),
        ("sue", "supervisor", nine + 41 * MINUTE),
    ]
    expected = {"alice": 1, "carol": 1}
    for _ in range(3):  # the writer rewriting the same legs: nothing moves
        await rewrite_legs(pg, "CA1", legs)
        await assert_kept(pg)
        rows = (await report(sue, "from=2026-06-10&to=2026-06-10&by=agent"))["rows"]
        assert {row["bucket"]: row["handled"] for row in rows} == expected
    spread = await (await pg.execute("SELECT count(*) AS n FROM handled_spread")).fetchone()
    assert spread["n"] == 2  # alice's two quarter hours of CA1
    # the legs as a later event shows them: carol's leg gone, alice's first moved
    await rewrite_legs(pg, "CA1", [("alice", "agent", nine + 50 * MINUTE), legs[2]])
    await assert_kept(pg)
    rows = (await report(sue, "from=2026-06-10&to=2026-06-10&by=agent"))["rows"]
    assert {row["bucket"]: row["handled"] for row in rows} == {"alice": 1}
    # a leg's agent changed in place, then the call deleted (its legs cascade)
    await pg.execute("UPDATE call_legs SET agent = 'bob' WHERE call_id = 'CA1' AND position = 1")
    await assert_kept(pg)
    await pg.execute("DELETE FROM calls WHERE id = 'CA1'")
    await assert_kept(pg)
    assert await kept_handled(pg) == {"pairs": {}, "quarters": {}, "days": {}, "spread": {}}


async def test_a_call_whose_legs_span_days_counts_once_in_each_range(clients, pg):
    """alice joins CA1 at 23:50 on the 9th and again at 00:10 on the 10th (New York):
    one call on either day and one over both; bob joins CA2 at 23:55 UTC and 00:05
    UTC (two UTC days, one New York day)."""
    sue = clients["supervisor"]
    first = at("2026-06-09 23:50")
    await answered(pg, "CA1", first, "alice", 0, MINUTE, 0, 0)
    await leg(pg, "CA1", 1, "alice", at("2026-06-10 00:10"))
    utc_midnight = at("2026-06-10 20:00")  # 00:00 UTC on the 11th
    await answered(pg, "CA2", utc_midnight - 5 * MINUTE, "bob", 0, MINUTE, 0, 0)
    await leg(pg, "CA2", 1, "bob", utc_midnight + 5 * MINUTE)
    await assert_kept(pg)
    for query, expected in (
        ("from=2026-06-09&to=2026-06-09", {"alice": 1}),
        ("from=2026-06-10&to=2026-06-10", {"alice": 1, "bob": 1}),
        ("from=2026-06-09&to=2026-06-10", {"alice": 1, "bob": 1}),
        ("from=2026-06-01&to=2026-06-30", {"alice": 1, "bob": 1}),
        ("from=2026-06-11&to=2026-06-12", {}),
    ):
        rows = (await report(sue, f"{query}&by=agent"))["rows"]
        assert {row["bucket"]: row["handled"] for row in rows if row["handled"]} == expected, query


async def test_the_90th_percentile_by_agent_over_days_is_nearest_rank(clients, pg):
    """alice's waits over three days in New York, each day's unlike the others' (the
    band between the days' own 90th percentiles is wide), and a few in the hours
    at the ends that the kept UTC days do not cover."""
    waits = {
        "2026-06-09": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        "2026-06-10": [100, 100, 101, 300, 2, 2],
        "2026-06-11": [50, 60, 70],
    }
    n = 0
    for day, seconds in waits.items():
        for k, wait in enumerate(seconds):
            n += 1
            # 22:00-23:59 local (past midnight UTC) for some, mornings for others
            arrived = at(f"{day} {'23' if k % 3 == 0 else '09'}:{k:02d}")
            await answered(pg, f"CA{n}", arrived, "alice", wait * SECOND, MINUTE, 0, 0)
    await assert_kept(pg)
    sue = clients["supervisor"]
    for first, last in (("2026-06-09", "2026-06-11"), ("2026-06-10", "2026-06-11")):
        chosen = sorted(w * SECOND for day, ws in waits.items() if first <= day <= last for w in ws)
        rank = -(-9 * len(chosen) // 10)  # ceil(0.9 n)
        within = sum(1 for w in chosen if w <= 20 * SECOND)
        [row] = (await report(sue, f"from={first}&to={last}&by=agent"))["rows"]
        assert row["wait_p90_ms"] == chosen[rank - 1], (first, last)
        assert row["service_level"] == round(within / len(chosen), 4)
    # 19 waits: the 18th, 101 s; stored again (the same rows), nothing moves
    for n in range(1, 20):
        await pg.execute("UPDATE calls SET updated_at = updated_at + 1 WHERE id = %s", (f"CA{n}",))
    await pg.execute(
        "INSERT INTO calls (id, arrived_at, updated_at, answered_at, answered_by, wait_ms)"
        " SELECT id, arrived_at, updated_at, answered_at, answered_by, wait_ms FROM calls"
        " ON CONFLICT (id) DO UPDATE SET wait_ms = EXCLUDED.wait_ms"
    )
    await assert_kept(pg)
    [row] = (await report(sue, "from=2026-06-09&to=2026-06-11&by=agent"))["rows"]
    assert row["wait_p90_ms"] == 101 * SECOND


async def test_a_call_stored_again_by_the_writer_moves_no_total(clients, pg):
    """A call's events through store_batch (the writer), then the same call's rows
    written again (write_calls, as every later batch touching it does)."""
    base = at("2026-06-10 09:00")
    name = "CA00000000000000000000000000000001"
    person = {"conference": name, "from": None, "muted": False, "hold": False}
    person |= {"coaching": False, "joined_at": 42}
    conference = {"name": name, "sid": "CF1", "from": "+15551230000", "created_at": 42}
    log = [
        ("call.queued", 0, {"call_sid": name, "from": "+15551230000", "position": 1}),
        ("participant.joined", 100, {**person, "call_sid": name, "role": "customer"}),
        (
            "participant.joined",
            7_000,
            {**person, "call_sid": "CAa", "role": "agent", "agent": "alice"},
        ),
        ("conference.started", 7_000, {**conference, "started_at": 42}),
        (
            "participant.left",
            30 * MINUTE,
            {**person, "call_sid": "CAa", "role": "agent", "agent": "alice"},
        ),
        (
            "conference.ended",
            30 * MINUTE + 500,
            {**conference, "started_at": 42, "reason": "last-participant-left"},
        ),
        ("participant.left", 30 * MINUTE + 500, {**person, "call_sid": name, "role": "customer"}),
    ]
    for entry in log:
        entry[2].setdefault("agent", None)
    events = [
        StreamEvent.from_stream(
            f"{base + ts}-{n}", {"type": kind, "ts": str(base + ts), "data": json.dumps(data)}
        )
        for n, (kind, ts, data) in enumerate(log)
    ]
    await store_batch(pg, events[:3])
    await store_batch(pg, events[2:])
    await store_batch(pg, events)  # delivered again: nothing new
    for _ in range(2):
        async with pg.transaction():
            await write_calls(pg, [name])
    await assert_kept(pg)
    [row] = (await report(clients["supervisor"], "from=2026-06-10&to=2026-06-10&by=agent"))["rows"]
    assert (row["bucket"], row["handled"], row["answered"], row["wait_p90_ms"]) == (
        "alice",
        1,
        1,
        7_000,  # queued at 0, alice joined at 7 s
    )


@pytest.mark.parametrize("seed", [1, 2])
async def test_kept_figures_by_agent_equal_the_definitions(database_url, pg, seed):
    """Random calls and legs over the 25-hour day of 2026 and its neighbours, written,
    rewritten, updated and deleted: after each step the kept rows equal a recount,
    and reports by agent over several ranges equal reports.py's queries over the
    rows themselves (the fallback for ranges off the quarter hours)."""
    rng = random.Random(seed)
    start = at("2026-10-31 00:00")
    agents = ("alice", "bob", "carol")
    for step in range(8):
        for n in range(25):
            call_id = f"CA{rng.randrange(60):03d}"
            arrived = start + rng.randrange(0, 4 * UTC_DAY)
            agent = rng.choice(agents)
            wait = rng.choice((None, rng.randrange(0, 60_000), 20_000))
            values = {
                "answered_at": arrived + (wait or 0),
                "answered_by": agent,
                "wait_ms": wait,
                "agents": [agent],
                "offered": rng.random() < 0.9,
            }
            if rng.random() < 0.2:
                values |= {"answered_at": None, "outcome": "abandoned"}
            await pg.execute("DELETE FROM calls WHERE id = %s", (call_id,))
            await insert_call(pg, call_id, arrived, **values)
            legs = [
                (
                    rng.choice(agents),
                    rng.choice(("agent", "agent", "supervisor")),
                    arrived + rng.randrange(0, 3 * 3_600_000),
                )
                for _ in range(rng.randrange(0, 4))
            ]
            await rewrite_legs(pg, call_id, legs)
            if n % 5 == 0:
                await rewrite_legs(pg, call_id, legs)  # the same again
        await pg.execute(
            "UPDATE calls SET wait_ms = wait_ms + 1000 WHERE id < %s", (f"CA{step * 7:03d}",)
        )
        await assert_kept(pg)
    pool = make_pool(database_url)
    await pool.open()
    try:
        for first, last in (
            (date(2026, 11, 1), date(2026, 11, 1)),
            (date(2026, 10, 31), date(2026, 11, 3)),
        ):
            chosen = ReportRange(first, last, "agent", NEW_YORK)
            answer = await reports.report(pool, chosen, 20_000, chosen.end + UTC_DAY)
            params = {"lo": chosen.start, "hi": chosen.end, "threshold": 20_000}
            async with pool.connection() as conn:
                calls = await reports._fetch(conn, reports._CALLS_BY_AGENT, params)
                handled = await reports._fetch(conn, reports._HANDLED, params)
            expected = {row["bucket"]: reports._call_figures(row) for row in calls}
            count = {row["bucket"]: row["handled"] for row in handled}
            for row in answer["rows"]:
                figures = {k: row[k] for k in reports._call_figures(None)}
                assert figures == expected.get(row["bucket"], reports._call_figures(None))
                assert row["handled"] == count.get(row["bucket"], 0)
            assert set(expected) | set(count) <= {row["bucket"] for row in answer["rows"]}
    finally:
        await pool.close()


async def test_the_migration_keeps_what_is_already_stored(postgres_server):
    """A history written before migration 0005 (calls, legs of one agent in two
    quarter hours), then upgraded: the kept rows equal a recount, and writes after
    it keep them so."""
    name = "before_agent_waits"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = url_for(postgres_server.port, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(CREATE_TABLE)
            for version, text in migrations():
                if version < "0005":
                    conn.execute(text.encode())
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, row_factory=dict_row
        ) as conn:
            nine = at("2026-06-10 09:05")
            for n, agent in enumerate(("alice", "bob", "alice")):
                await answered(conn, f"CA{n}", nine + n * MINUTE, agent, n * SECOND, MINUTE, 0, 0)
            await leg(conn, "CA0", 1, "alice", nine + 30 * MINUTE)
            await leg(conn, "CA1", 1, "carol", nine + 2 * MINUTE)
            assert "0005_agent_waits_handled" in upgrade(url)
            await assert_kept(conn)
            assert (await kept_handled(conn))["pairs"][("CA0", "alice")] == [
                at("2026-06-10 09:00"),
                at("2026-06-10 09:30"),
            ]
            await rewrite_legs(conn, "CA2", [("bob", "agent", nine)])
            await conn.execute("UPDATE calls SET wait_ms = 9000 WHERE id = 'CA0'")
            await assert_kept(conn)
    finally:
        with psycopg.connect(postgres_server.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
