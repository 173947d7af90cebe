"""Reports (GET /api/reports and /api/reports.csv, docs/history.md): a seeded day in
New York against figures worked out by hand from the seed, the 23- and 25-hour days
of daylight saving, agents' occupancy and breaks from their status changes, the CSV
carrying the same rows, and what is refused.

The tables are filled with INSERTs (schema 0001), not by the history writer."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from psycopg.types.json import Jsonb

from tests.conftest import make_settings
from tests.support.flow_helpers import login
from warmline.app import create_app

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
