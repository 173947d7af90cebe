"""`warmline check` (and `check --config`, the Procfile's release phase): one
`warmline: <problem>` line per problem on stderr, the same line serve and db purge
print for the same problem, and a failed Twilio request told once, with where and why."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from console.history.migrate import latest_version, migrations
from simulator.testing import TwilioDouble
from tests.conftest import ACCOUNT_SID, API_KEY, API_SECRET, AUTH_TOKEN, PUBLIC_BASE_URL
from tests.support.servers import AppServer, spawn_serve
from warmline import cli
from warmline.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = str(Path(sys.executable).parent)  # where the `warmline` script is installed

# A bad environment and, independently written, what every command says of it.
BAD = {"TWILIO_ACCOUNT_SID": "XX1", "SECRET_KEY": "", "WEB_CONCURRENCY": "two"}
BAD_LINES = [
    "warmline: TWILIO_ACCOUNT_SID must be an Account SID (AC followed by 32 hex digits), got 'XX1'",
    "warmline: SECRET_KEY is required but not set",
]
WEB_CONCURRENCY_LINE = "warmline: WEB_CONCURRENCY must be a whole number of at least 1, got 'two'"


def environment(twilio_url: str, redis_url: str, database_url: str) -> dict[str, str]:
    """A complete configuration for the test account."""
    return {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_KEY": API_KEY,
        "TWILIO_API_SECRET": API_SECRET,
        "TWILIO_CALLER_ID": "+15550001111",
        "TWILIO_API_BASE_URL": twilio_url,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "SECRET_KEY": "test-secret-key",
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
    }


def unreachable() -> dict[str, str]:
    """Complete, but nothing it names answers: only a check without network passes."""
    port = free_port()
    return environment(
        f"http://127.0.0.1:{port}",
        f"redis://127.0.0.1:{port}/0",
        f"postgresql://warmline@127.0.0.1:{port}/warmline",
    )


def child_env(values: dict[str, str]) -> dict[str, str]:
    """This process's environment without any Warmline setting, plus ``values``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TWILIO_", "REDIS_", "DATABASE_", "WEB_CONCURRENCY"))
    }
    env.update(values, PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


async def run(env: dict[str, str], *command: str) -> tuple[int, str, str]:
    """Run ``command`` without blocking the loop the Twilio double serves on."""
    process = await asyncio.create_subprocess_exec(
        *command,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def set_env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_a_bad_configuration_reads_the_same_from_serve_check_and_purge(monkeypatch, capsys) -> None:
    set_env(monkeypatch, {**unreachable(), **BAD})
    assert cli.main(["serve"]) == 2
    assert capsys.readouterr() == ("", "\n".join([*BAD_LINES, WEB_CONCURRENCY_LINE, ""]))
    for check in (["check"], ["check", "--config"]):
        assert cli.main(check) == 1
        assert capsys.readouterr() == ("", "\n".join([*BAD_LINES, WEB_CONCURRENCY_LINE, ""]))
    # WEB_CONCURRENCY is serve's alone: `db purge` does not read it, nor `serve --workers`.
    assert cli.main(["db", "purge"]) == 2
    assert capsys.readouterr() == ("", "\n".join([*BAD_LINES, ""]))
    assert cli.main(["serve", "--workers", "1"]) == 2
    assert capsys.readouterr() == ("", "\n".join([*BAD_LINES, ""]))


def test_check_config_passes_a_complete_configuration_without_reaching_anything(
    monkeypatch, capsys
) -> None:
    set_env(monkeypatch, unreachable())
    assert cli.main(["check", "--config"]) == 0
    assert capsys.readouterr() == ("ok: configuration is complete\n", "")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")  # as Heroku's buildpack sets it
    assert cli.main(["check", "--config"]) == 0
    assert capsys.readouterr() == ("ok: configuration is complete\n", "")
    monkeypatch.setenv("DATABASE_URL", "mysql://u:hunter2@db/d")
    assert cli.main(["check", "--config"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("warmline: DATABASE_URL must be a postgres:// or postgresql:// URL")
    assert err.count("\n") == 1 and "hunter2" not in err


def release_command() -> str:
    [line] = [x for x in (ROOT / "Procfile").read_text().splitlines() if x.startswith("release:")]
    return line.removeprefix("release:").strip()


async def test_the_release_phase_migrates_then_fails_on_a_bad_configuration(
    empty_database_url: str,
) -> None:
    good = {**unreachable(), "DATABASE_URL": empty_database_url, "WEB_CONCURRENCY": "2"}
    code, out, err = await run(child_env({**good, **BAD}), "bash", "-c", release_command())
    assert code != 0
    assert out == "".join(f"applied {version}\n" for version, _ in migrations())
    assert err.splitlines() == [*BAD_LINES, WEB_CONCURRENCY_LINE]

    code, out, err = await run(child_env(good), "bash", "-c", release_command())
    assert (code, err) == (0, "")
    assert out == (
        f"the database schema is up to date ({latest_version()})\nok: configuration is complete\n"
    )


async def test_check_reports_the_database(
    twilio, redis, redis_server, database_url, empty_database_url, monkeypatch, capsys
) -> None:
    set_env(monkeypatch, environment(twilio.base_url, redis_server.url, database_url))
    assert await asyncio.to_thread(cli.main, ["check"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(
        "ok: configuration is complete\n"
        "ok: Redis answers\n"
        f"ok: Twilio REST API answers at {twilio.base_url}\n"
        "ok: PostgreSQL answers\n"
        f"ok: the database schema is up to date ({latest_version()})\n"
    )
    assert err == ""

    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    assert await asyncio.to_thread(cli.main, ["check"]) == 1
    out, err = capsys.readouterr()
    assert "ok: PostgreSQL answers\n" in out and "up to date" not in out
    lacks = ", ".join(v for v, _ in migrations())
    assert err == f"warmline: the database schema lacks {lacks}; run `warmline db upgrade`\n"

    port = free_port()
    monkeypatch.setenv("DATABASE_URL", f"postgresql://warmline:hunter2@127.0.0.1:{port}/x")
    assert await asyncio.to_thread(cli.main, ["check"]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("warmline: cannot reach the database: ")
    assert f"port {port} failed" in err and err.count("\n") == 1 and "hunter2" not in err
    assert "PostgreSQL" not in out
    assert "ok: Redis answers\n" in out  # the other checks still ran


async def serve_lines(env: dict[str, str], log: Path) -> list[str]:
    """The `warmline:` lines `warmline serve` prints before it serves; it is stopped then."""
    server = AppServer("", spawn_serve(env, log), log)
    try:
        deadline = time.monotonic() + 60
        while "Running on" not in server.output():
            assert server.process.poll() is None, server.output()
            assert time.monotonic() < deadline, server.output()
            await asyncio.sleep(0.1)
    finally:
        server.terminate()
    return [line for line in server.output().splitlines() if line.startswith("warmline:")]


@pytest.mark.parametrize("down", ["redis and postgres", "schema"])
async def test_serve_and_check_say_the_same_of_what_does_not_answer(
    down, twilio, redis_server, empty_database_url, tmp_path
) -> None:
    port = free_port()
    if down == "schema":
        values = environment(twilio.base_url, redis_server.url, empty_database_url)
    else:
        values = environment(
            twilio.base_url,
            f"redis://:hunter2@127.0.0.1:{port}/0",
            f"postgresql://warmline:hunter2@127.0.0.1:{port}/x",
        )
    env = child_env({**values, "PORT": str(free_port())})
    code, _, err = await run(env, "warmline", "check")
    assert code == 1
    lines = err.splitlines()
    if down == "schema":
        lacks = ", ".join(v for v, _ in migrations())
        assert lines == [f"warmline: the database schema lacks {lacks}; run `warmline db upgrade`"]
    else:
        assert lines[0] == f"warmline: cannot reach Redis at 127.0.0.1:{port}: connection refused"
        assert lines[1].startswith("warmline: cannot reach the database: ")
        assert f"port {port} failed" in lines[1] and len(lines) == 2
        assert "hunter2" not in err
    assert await serve_lines(env, tmp_path / "serve.log") == lines


@pytest.mark.parametrize("failure", ["refused", "unresolvable", "401", "404", "tls"])
async def test_a_failed_twilio_request_is_told_once_with_where_and_why(
    failure, twilio: TwilioDouble, redis_server: EmbeddedRedis, database_url: str
) -> None:
    url, token = twilio.base_url, AUTH_TOKEN
    if failure == "refused":
        url = f"http://127.0.0.1:{free_port()}"
    elif failure == "unresolvable":
        url = "http://nonexistent.invalid"
    elif failure == "401":
        token = "0" * 32
    elif failure == "404":
        url = f"{twilio.base_url}/not-twilio"
    else:
        url = twilio.base_url.replace("http://", "https://")  # TLS to a plain HTTP server
    values = {**environment(url, redis_server.url, database_url), "TWILIO_AUTH_TOKEN": token}
    code, out, err = await run(child_env(values), "warmline", "check")
    assert code == 1
    expected = {
        "refused": f"warmline: cannot reach Twilio at {url}: connection refused",
        "unresolvable": f"warmline: cannot reach Twilio at {url}: name not resolved",
        "401": f"warmline: Twilio at {url} answered HTTP 401: Authenticate;"
        " TWILIO_ACCOUNT_SID or TWILIO_AUTH_TOKEN is wrong",
        "404": f"warmline: Twilio at {url} answered HTTP 404;"
        " TWILIO_API_BASE_URL may not be Twilio's REST API",
        # OpenSSL's own words for it differ between versions.
        "tls": f"warmline: cannot reach Twilio at {url}: TLS failure: ",
    }[failure]
    [line] = err.splitlines()  # no log record, no traceback: the one line
    assert line.startswith(expected) if failure == "tls" else line == expected
    assert "Twilio REST API" not in out and token not in err
    assert "ok: Redis answers\n" in out and "ok: PostgreSQL answers\n" in out
