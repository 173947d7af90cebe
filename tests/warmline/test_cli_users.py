"""``warmline user add|list|remove`` through argparse, against the test Redis."""

from __future__ import annotations

import argparse
import io

import pytest
from redis.asyncio import Redis

from console.domain import users
from console.domain.users import Role
from warmline import cli_users

PASSWORD = "correct horse battery"


def parse(*argv: str) -> argparse.Namespace:
    root = argparse.ArgumentParser(prog="warmline")
    commands = root.add_subparsers(dest="command", required=True)
    cli_users.add_parser(commands)
    return root.parse_args(argv)


class FakeStdin(io.StringIO):
    def __init__(self, text: str = "", tty: bool = False) -> None:
        super().__init__(text)
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


async def run(redis: Redis, *argv: str) -> int:
    return await cli_users.run(parse(*argv), redis)


async def test_add_with_password_option(redis: Redis, capsys: pytest.CaptureFixture[str]) -> None:
    code = await run(redis, "user", "add", "alice", "--role", "agent", "--password", PASSWORD)

    assert code == 0
    assert "added agent 'alice'" in capsys.readouterr().out
    assert await users.verify_password(redis, "alice", PASSWORD) is not None


async def test_add_reads_one_line_from_a_pipe(
    redis: Redis, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", FakeStdin(PASSWORD + "\nignored\n"))

    assert await run(redis, "user", "add", "sue", "--role", "supervisor") == 0

    user = await users.verify_password(redis, "sue", PASSWORD)
    assert user is not None and user.role is Role.SUPERVISOR


async def test_add_prompts_twice_on_a_terminal(
    redis: Redis, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts: list[str] = []

    def fake_getpass(prompt: str) -> str:
        prompts.append(prompt)
        return PASSWORD

    monkeypatch.setattr("sys.stdin", FakeStdin(tty=True))
    monkeypatch.setattr("getpass.getpass", fake_getpass)

    assert await run(redis, "user", "add", "alice", "--role", "agent") == 0
    assert len(prompts) == 2
    assert await users.verify_password(redis, "alice", PASSWORD) is not None


async def test_add_refuses_mismatched_prompts(
    redis: Redis, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter([PASSWORD, PASSWORD + "!"])
    monkeypatch.setattr("sys.stdin", FakeStdin(tty=True))
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))

    assert await run(redis, "user", "add", "alice", "--role", "agent") == 2
    assert capsys.readouterr().err == "error: passwords do not match\n"
    assert await users.get_user(redis, "alice") is None


async def test_add_without_any_password(
    redis: Redis, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", FakeStdin(""))

    assert await run(redis, "user", "add", "alice", "--role", "agent") == 2
    assert "no password" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("user", "add", "a b", "--role", "agent", "--password", PASSWORD), "invalid username"),
        (("user", "add", "alice", "--role", "agent", "--password", "short"), "too short"),
    ],
)
async def test_add_usage_errors_exit_2_with_one_line(
    redis: Redis, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    assert await run(redis, *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1
    assert await redis.hlen("wl:users") == 0


async def test_add_duplicate_exits_1(redis: Redis, capsys: pytest.CaptureFixture[str]) -> None:
    await users.add_user(redis, "alice", Role.AGENT, PASSWORD)

    code = await run(redis, "user", "add", "alice", "--role", "supervisor", "--password", PASSWORD)

    assert code == 1
    assert capsys.readouterr().err == "error: user 'alice' already exists\n"


def test_role_must_be_a_known_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("user", "add", "alice", "--role", "admin")
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


async def test_list(redis: Redis, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(redis, "user", "list") == 0
    assert "no users yet" in capsys.readouterr().out

    await users.add_user(redis, "zoe_supervisor", Role.SUPERVISOR, PASSWORD)
    await users.add_user(redis, "adam", Role.AGENT, PASSWORD)
    assert await run(redis, "user", "list") == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["USERNAME", "ROLE", "CREATED"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["adam", "agent"],
        ["zoe_supervisor", "supervisor"],
    ]
    assert lines[1].index("agent") == lines[0].index("ROLE")  # aligned columns
    assert lines[1].endswith("UTC")
    assert PASSWORD not in "\n".join(lines) and "argon2" not in "\n".join(lines)


async def test_remove(redis: Redis, capsys: pytest.CaptureFixture[str]) -> None:
    await users.add_user(redis, "alice", Role.AGENT, PASSWORD)

    assert await run(redis, "user", "remove", "alice") == 0
    assert "removed 'alice'" in capsys.readouterr().out
    assert await users.get_user(redis, "alice") is None

    assert await run(redis, "user", "remove", "alice") == 1
    assert capsys.readouterr().err == "error: no user named 'alice'\n"


def test_a_subcommand_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("user")
    assert exit_info.value.code == 2


async def test_unreachable_redis_is_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    dead = Redis(host="127.0.0.1", port=9, decode_responses=True, socket_connect_timeout=1)
    try:
        assert await run(dead, "user", "list") == 1
    finally:
        await dead.aclose()
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach Redis") and err.count("\n") == 1
    assert "Traceback" not in err
