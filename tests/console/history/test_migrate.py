"""console.history.migrate: the schema is applied once, whoever upgrades and however
many at once."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from console.history.migrate import (
    LOCK_KEY,
    applied_versions,
    latest_version,
    migrations,
    pending,
    upgrade,
)


def test_upgrade_applies_every_migration_then_nothing(empty_database_url: str) -> None:
    shipped = [version for version, _ in migrations()]
    assert shipped[0] == "0001_initial" and shipped[-1] == latest_version()
    assert applied_versions(empty_database_url) == []
    assert pending(empty_database_url) == shipped
    assert upgrade(empty_database_url) == shipped
    assert upgrade(empty_database_url) == []
    assert applied_versions(empty_database_url) == shipped
    assert pending(empty_database_url) == []
    with psycopg.connect(empty_database_url) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
    assert {"events", "calls", "call_legs", "call_transfers", "agent_activity"} <= tables


async def test_two_concurrent_upgrades_both_succeed_and_apply_once(
    empty_database_url: str,
) -> None:
    # Hold the lock so that both upgrades are waiting on it when it is released.
    holder = psycopg.connect(empty_database_url, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    first = asyncio.create_task(asyncio.to_thread(upgrade, empty_database_url))
    second = asyncio.create_task(asyncio.to_thread(upgrade, empty_database_url))
    await _wait_for_lock_waiters(empty_database_url, 2)
    holder.close()
    results = sorted(await asyncio.gather(first, second))
    shipped = [version for version, _ in migrations()]
    assert results == [[], shipped]
    with psycopg.connect(empty_database_url) as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert count == (len(shipped),)


async def _wait_for_lock_waiters(url: str, count: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(400):
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()
            if row and row[0] >= count:
                return
            await asyncio.sleep(0.025)
    raise AssertionError(f"{count} upgrades never waited on the lock")


def test_an_unreachable_database_raises_a_psycopg_error() -> None:
    with pytest.raises(psycopg.OperationalError):
        upgrade("postgresql://warmline@127.0.0.1:9/nothing")


async def test_the_fixtures_give_a_migrated_empty_database(pg, database_url: str) -> None:
    assert applied_versions(database_url) == [version for version, _ in migrations()]
    row = await (await pg.execute("SELECT count(*) AS n FROM events")).fetchone()
    assert row == {"n": 0}
