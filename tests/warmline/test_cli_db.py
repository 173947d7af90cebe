"""`warmline db upgrade` (Heroku's release phase) and `warmline db purge`: what was
applied or removed, one-line errors, the exit codes (`warmline check`'s database lines
are in test_cli_check)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.domain.events import now_ms
from console.history.migrate import latest_version, migrations, pending
from simulator.testing import TwilioDouble
from tests.support.history_seed import answered, insert_calls
from tests.support.servers import AppServer, server_env, spawn_serve, wait_healthy
from tests.warmline.test_cli_check import environment
from warmline import cli
from warmline.embedded_postgres import running_postgres
from warmline.embedded_redis import EmbeddedRedis, free_port


def test_db_upgrade_applies_then_says_up_to_date(empty_database_url, monkeypatch, capsys) -> None:
    # Heroku's spelling, with its query string.
    heroku = empty_database_url.replace("postgresql://", "postgres://") + "?sslmode=disable"
    monkeypatch.setenv("DATABASE_URL", heroku)
    assert cli.main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out == "".join(f"applied {v}\n" for v, _ in migrations())
    assert cli.main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out == f"the database schema is up to date ({latest_version()})\n"


def test_db_upgrade_reports_an_unreachable_database_in_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:hunter2@127.0.0.1:{free_port()}/d")
    assert cli.main(["db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("warmline: cannot reach the database: ")
    assert err.count("\n") == 1 and "hunter2" not in err


def test_db_upgrade_reports_a_bad_database_url_in_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://u:hunter2@db/d")
    assert cli.main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("warmline: DATABASE_URL must be a postgres:// or postgresql:// URL")
    assert err.count("\n") == 1 and "hunter2" not in err


@pytest.fixture
def cache() -> Iterator[Path]:
    """An XDG_CACHE_HOME an unprivileged server (we may be root) can reach."""
    path = Path(tempfile.mkdtemp(prefix="warmline-test-cache-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_db_upgrade_without_database_url_migrates_the_embedded_one(
    cache: Path, monkeypatch, capsys
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    assert cli.main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.startswith("applied 0001_initial\n")
    assert running_postgres(cache / "warmline" / "postgres") is None  # stopped after
    assert cli.main(["db", "upgrade"]) == 0  # the same data, started again
    assert "up to date" in capsys.readouterr().out


def check_env(monkeypatch, twilio: TwilioDouble, redis_server: EmbeddedRedis, db: str) -> None:
    for name, value in environment(twilio.base_url, redis_server.url, db).items():
        monkeypatch.setenv(name, value)


async def test_serve_without_database_url_runs_the_embedded_one_and_stops_it(
    redis_server: EmbeddedRedis, twilio: TwilioDouble, tmp_path: Path, cache: Path
) -> None:
    folder = cache / "warmline" / "postgres"
    port = free_port()
    env = server_env(redis_server.url, twilio.base_url, port, XDG_CACHE_HOME=str(cache))
    env.pop("DATABASE_URL", None)
    log = tmp_path / "serve.log"
    server = AppServer(f"http://127.0.0.1:{port}", spawn_serve(env, log), log)
    try:
        await wait_healthy(server)
        url = running_postgres(folder)
        assert url is not None, server.output()
        assert await asyncio.to_thread(pending, url) == []  # migrated at start
        assert server.terminate() == 0
        assert running_postgres(folder) is None  # stopped with the app
    finally:
        server.terminate()


async def test_db_purge_removes_what_is_past_retention_and_says_what(
    twilio, redis_server, database_url, pg, monkeypatch, capsys
) -> None:
    check_env(monkeypatch, twilio, redis_server, database_url)
    monkeypatch.setenv("HISTORY_RETENTION_DAYS", "30")
    old, day = now_ms() - 30 * 86_400_000, 86_400_000
    await insert_calls(
        pg,
        [
            answered("CAold1", old - day, "ann", recording={"sid": "RE01", "duration": 9}),
            answered("CAold2", old - 60_000, "bob"),
            answered("CAnew", old + 3_600_000, "ann", recording={"sid": "RE02", "duration": 9}),
        ],
    )

    assert await asyncio.to_thread(cli.main, ["db", "purge"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "removed 2 calls (2 legs, 0 transfers), 0 events, 0 agents' totals and 1 recordings"
    )
    assert out.count("\n") == 1
    cursor = await pg.execute("SELECT id FROM calls")
    assert [row["id"] for row in await cursor.fetchall()] == ["CAnew"]
    assert [r.path.rsplit("/", 1)[-1] for r in twilio.find("DELETE", "/Recordings/")] == [
        "RE01.json"
    ]


async def test_db_purge_failures_are_one_line(
    twilio, redis_server, database_url, empty_database_url, pg, monkeypatch, capsys
) -> None:
    check_env(monkeypatch, twilio, redis_server, empty_database_url)
    assert await asyncio.to_thread(cli.main, ["db", "purge"]) == 1
    assert capsys.readouterr().err == (
        "warmline: the database has no history schema; run `warmline db upgrade`\n"
    )

    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:hunter2@127.0.0.1:{free_port()}/x")
    assert await asyncio.to_thread(cli.main, ["db", "purge"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("warmline: cannot reach the database: ")
    assert err.count("\n") == 1 and "hunter2" not in err

    # Twilio refuses to delete a recording: the rest goes, that call stays, exit 1.
    monkeypatch.setenv("DATABASE_URL", database_url)
    old = now_ms() - 401 * 86_400_000
    await insert_calls(
        pg,
        [
            answered("CAold1", old, "ann", recording={"sid": "RE01", "duration": 9}),
            answered("CAold2", old, "bob"),
        ],
    )
    twilio.fail_next("/Recordings/RE01", status=500)
    assert await asyncio.to_thread(cli.main, ["db", "purge"]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("removed 1 calls")
    # The warnings logged on the way may precede it (when logging is set up): the
    # command's own answer is its last line, and nothing is a traceback.
    assert captured.err.splitlines()[-1] == (
        "warmline: kept 1 calls whose recordings Twilio did not delete "
        f"(at {twilio.base_url}); the next purge tries again"
    )
    assert "Traceback" not in captured.err

    monkeypatch.delenv("SECRET_KEY")
    assert await asyncio.to_thread(cli.main, ["db", "purge"]) == 2
    assert capsys.readouterr().err == "warmline: SECRET_KEY is required but not set\n"
