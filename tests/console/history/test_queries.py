"""Reading calls from PostgreSQL (console/history/queries.py, docs/history.md): pages
newest first with no duplicate or gap, each filter, what an agent may see, the cursor
refusing anything it did not write, one call's shape, and the export's chunks."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from console.domain.errors import BadRequest
from console.history import queries
from console.history.queries import CallFilter, Cursor, Viewer
from console.postgres_ext import make_pool
from tests.support.history_seed import Call, Leg, answered, insert_calls

T0 = 1_772_900_000_000  # 2026-03-07T16:13:20Z
MINUTE = 60_000
SUE = Viewer("sue", supervisor=True)
ALICE = Viewer("alice", supervisor=False)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = make_pool(database_url, max_size=2)
    await pool.open(wait=True)
    yield pool
    await pool.close()


def sid(n: int) -> str:
    return f"CA{n:032x}"


async def every_page(
    pool: AsyncConnectionPool, chosen: CallFilter, viewer: Viewer, limit: int
) -> list[list[str]]:
    pages, after = [], None
    while True:
        calls, after = await queries.list_calls(pool, chosen, viewer, limit, after)
        pages.append([c["id"] for c in calls])
        if after is None:
            return pages


async def test_pages_through_120_calls_newest_first_without_duplicates_or_gaps(pg, pool):
    # every third call shares its arrival with the next: ties are broken by id
    seeded = [answered(sid(n), T0 + (n // 3) * MINUTE, ("alice", "bob")[n % 2]) for n in range(120)]
    await insert_calls(pg, seeded)
    expected = [c.id for c in sorted(seeded, key=lambda c: (c.arrived_at, c.id), reverse=True)]

    pages = await every_page(pool, CallFilter(), SUE, limit=50)
    assert [len(p) for p in pages] == [50, 50, 20]
    assert [i for p in pages for i in p] == expected
    # a page size that divides the total exactly: the last page says there is no next
    pages = await every_page(pool, CallFilter(), SUE, limit=40)
    assert [len(p) for p in pages] == [40, 40, 40]
    assert [i for p in pages for i in p] == expected
    assert await every_page(pool, CallFilter(), SUE, limit=500) == [expected]


async def test_each_filter_selects_its_calls(pg, pool):
    await insert_calls(
        pg,
        [
            answered(sid(1), T0, "alice", from_number="+1 (555) 010-0001"),
            answered(sid(2), T0 + MINUTE, "bob", from_number="+15550100002"),
            Call(sid(3), T0 + 2 * MINUTE, outcome="abandoned", wait_ms=30_000),
            Call(sid(4), T0 + 3 * MINUTE, outcome="voicemail", from_number=None),
            Call(sid(5), T0 + 4 * MINUTE, outcome=None),  # still live
            answered(
                sid(6),
                T0 + 5 * MINUTE,
                "bob",
                transfers=[transfer("TR1", "bob", "alice", "completed", T0 + 5 * MINUTE)],
            ),
        ],
    )

    async def ids(**chosen: object) -> list[str]:
        calls, _ = await queries.list_calls(pool, CallFilter(**chosen), SUE)  # type: ignore[arg-type]
        return [c["id"] for c in calls]

    assert await ids() == [sid(n) for n in (6, 5, 4, 3, 2, 1)]
    assert await ids(start=T0 + MINUTE, end=T0 + 3 * MINUTE) == [sid(3), sid(2)]
    assert await ids(start=T0 + 5 * MINUTE) == [sid(6)]
    assert await ids(end=T0 + 1) == [sid(1)]
    # an agent is "on" a call by a leg or a transfer
    assert await ids(agent="alice") == [sid(6), sid(1)]
    assert await ids(agent="bob") == [sid(6), sid(2)]
    assert await ids(agent="nobody") == []
    # the digits given, anywhere in the number, punctuation ignored on both sides
    assert await ids(number="5550100") == [sid(6), sid(5), sid(3), sid(2), sid(1)]
    assert await ids(number="0100002") == [sid(2)]
    assert await ids(number="5550100001") == [sid(1)]
    assert await ids(outcomes=("abandoned",)) == [sid(3)]
    assert await ids(outcomes=("voicemail", "abandoned")) == [sid(4), sid(3)]
    assert await ids(agent="bob", outcomes=("completed",), start=T0 + 2 * MINUTE) == [sid(6)]


async def test_an_agent_sees_only_the_calls_they_were_on_and_no_supervisor_leg(pg, pool):
    mine = answered(sid(1), T0, "alice")
    mine.legs.append(Leg("sue", T0 + 10_000, T0 + 20_000, role="supervisor"))
    transferred_to_me = answered(
        sid(2),
        T0 + MINUTE,
        "bob",
        transfers=[transfer("TR1", "bob", "alice", "completed", T0 + MINUTE)],
    )
    others = answered(sid(3), T0 + 2 * MINUTE, "bob")
    await insert_calls(pg, [mine, transferred_to_me, others])

    calls, _ = await queries.list_calls(pool, CallFilter(), ALICE)
    assert [c["id"] for c in calls] == [sid(2), sid(1)]
    assert [leg["agent"] for leg in calls[1]["legs"]] == ["alice"]
    assert await queries.get_call(pool, sid(3), ALICE) is None
    assert await queries.get_call(pool, "CAnothing", ALICE) is None
    assert (await queries.get_call(pool, sid(1), ALICE))["legs"] == calls[1]["legs"]  # type: ignore[index]
    # an agent filtering on another agent still sees only their own calls
    calls, _ = await queries.list_calls(pool, CallFilter(agent="bob"), ALICE)
    assert [c["id"] for c in calls] == [sid(2)]
    # a supervisor sees every call, and the supervisor's leg
    calls, _ = await queries.list_calls(pool, CallFilter(), SUE)
    assert [c["id"] for c in calls] == [sid(3), sid(2), sid(1)]
    assert [(leg["agent"], leg["role"]) for leg in calls[2]["legs"]] == [
        ("alice", "agent"),
        ("sue", "supervisor"),
    ]


async def test_one_call_has_the_shape_of_the_spec(pg, pool):
    moved = transfer("TR1", "alice", "bob", "completed", T0 + 20_000)
    call = answered(
        sid(7),
        T0,
        "alice",
        hold_ms=4_000,
        disposition="Resolved",
        notes="asked about billing",
        recording={"sid": "RE0123", "duration": 65, "status": "completed"},
        legs=[
            Leg("alice", T0 + 5_000, T0 + 30_000, hold_ms=4_000),
            Leg("bob", T0 + 25_000, T0 + 65_000),
        ],
        transfers=[moved],
    )
    await insert_calls(pg, [call])
    got = await queries.get_call(pool, sid(7), SUE)
    assert got == {
        "id": sid(7),
        "kind": "inbound",
        "from": "+15550100",
        "arrived_at": T0,
        "answered_at": T0 + 5_000,
        "answered_by": "alice",
        "ended_at": T0 + 65_000,
        "outcome": "completed",
        "wait_ms": 5_000,
        "talk_ms": 60_000,
        "hold_ms": 4_000,
        "legs": [
            {
                "agent": "alice",
                "role": "agent",
                "joined_at": T0 + 5_000,
                "left_at": T0 + 30_000,
                "hold_ms": 4_000,
            },
            {
                "agent": "bob",
                "role": "agent",
                "joined_at": T0 + 25_000,
                "left_at": T0 + 65_000,
                "hold_ms": 0,
            },
        ],
        "transfers": [moved],
        "disposition": "Resolved",
        "notes": "asked about billing",
        "recording": {"sid": "RE0123", "duration": 65, "url": "/api/recordings/RE0123"},
        "voicemail": None,
        "timeline": [],  # no events stored for it
    }
    listed, _ = await queries.list_calls(pool, CallFilter(), SUE)
    assert listed == [{k: v for k, v in got.items() if k != "timeline"}]


async def test_a_deleted_recording_is_null(pg, pool):
    await insert_calls(
        pg,
        [
            Call(
                sid(8),
                T0,
                outcome="voicemail",
                recording={"sid": "RE1", "duration": 3, "status": "deleted"},
                voicemail={"sid": "RE2", "duration": 12},
            )
        ],
    )
    got = await queries.get_call(pool, sid(8), SUE)
    assert got is not None
    assert got["recording"] is None
    assert got["voicemail"] == {"sid": "RE2", "duration": 12, "url": "/api/recordings/RE2"}


async def test_the_export_streams_every_call_in_chunks_in_list_order(pg, pool):
    seeded = [answered(sid(n), T0 + n * MINUTE, "alice") for n in range(23)]
    seeded.append(answered(sid(99), T0, "bob"))
    await insert_calls(pg, seeded)
    listed, _ = await queries.list_calls(pool, CallFilter(), ALICE, limit=500)
    chunks = [c async for c in queries.stream_calls(pool, CallFilter(), ALICE, chunk=5)]
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 3]
    assert [call for chunk in chunks for call in chunk] == listed
    # left half-way, the iterator gives its connection back
    rows = queries.stream_calls(pool, CallFilter(), SUE, chunk=5)
    assert len(await anext(rows)) == 5
    await rows.aclose()
    assert pool.get_stats()["pool_available"] == pool.get_stats()["pool_size"]


def test_the_cursor_refuses_what_it_did_not_write():
    cursor = Cursor(T0, sid(1))
    assert Cursor.decode(cursor.encode()) == cursor

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    text = cursor.encode()
    tampered = [
        "",
        "not a cursor!",
        text[:-3],
        text + "A",
        text + "==",  # padding it never writes
        b64(b"[1, 2]"),
        b64(b'{"at": "1", "id": "CA1"}'),
        b64(b'{"at": true, "id": "CA1"}'),
        b64(b'{"at": 1, "id": "CA 1"}'),
        b64(b'{"at": 1, "id": "CA1", "more": 1}'),
        b64(b'{"at":1,"id":"CA1"} '),
        b64(b"\xff\xfe"),
    ]
    for bad in tampered:
        with pytest.raises(BadRequest, match="cursor"):
            Cursor.decode(bad)


async def test_limits_and_parameters_are_checked(pool):
    for limit in (0, queries.MAX_LIMIT + 1):
        with pytest.raises(BadRequest, match="limit"):
            await queries.list_calls(pool, CallFilter(), SUE, limit)
    assert queries.parse_number(" +1 (555) 010-0001 ") == "15550100001"
    for bad in ("12", "555-abc", "=1+1", "%555%"):
        with pytest.raises(BadRequest, match="number"):
            queries.parse_number(bad)
    assert queries.parse_outcomes("abandoned, voicemail") == ("abandoned", "voicemail")
    for bad in ("", "lost", "abandoned,"):
        with pytest.raises(BadRequest, match="outcome"):
            queries.parse_outcomes(bad)


def transfer(ident: str, source: str, target: str, status: str, at: int) -> dict[str, object]:
    """A transfer as docs/api.md shapes it."""
    return {
        "id": ident,
        "conference": "CFx",
        "from_agent": source,
        "to_agent": target,
        "status": status,
        "reason": None,
        "note": "",
        "created_at": at,
        "updated_at": at + 10_000,
    }
