"""``warmline user add|list|passwd|remove``: managing console users from a shell.

Passwords are prompted for (twice) on a terminal, or read as one line from a pipe
for scripts, so they need not appear in the shell history or the process list.
Failures print one line to stderr and give an exit code, never a traceback:
2 for a usage error (bad name, role or password), 1 for everything else. Each
change leaves an audit line (console.domain.audit) naming the shell's user.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from console.domain import audit, users
from console.domain.users import Role, User, UserError, UserExists
from console.ids import USERNAME_RULE
from console.network_errors import redis_reason

USAGE_ERROR = 2
FAILURE = 1


class CommandError(Exception):
    """A failure to report as ``error: <message>`` with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``user`` and its subcommands (dest ``user_command``) to the main parser."""
    user = subparsers.add_parser(
        "user",
        help="manage console users",
        description="Add, list or remove console users, or change a password. Passwords are "
        "stored only as slow salted (argon2) hashes; without --password, add and passwd "
        "prompt for one.",
    )
    commands = user.add_subparsers(dest="user_command", metavar="COMMAND", required=True)

    add = commands.add_parser("add", help="add a user")
    add.add_argument("name", help=f"username: {USERNAME_RULE}")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument(
        "--password",
        help="the password (default: prompt twice, or read one line from stdin when piped)",
    )

    commands.add_parser("list", help="list users")

    passwd = commands.add_parser(
        "passwd", help="change a user's password (ends all their sessions, closes their sockets)"
    )
    passwd.add_argument("name", help="username")
    passwd.add_argument(
        "--password",
        help="the new password (default: prompt twice, or read one line from stdin when piped)",
    )

    remove = commands.add_parser("remove", help="remove a user (ends their sessions)")
    remove.add_argument("name", help="username")


async def run(args: argparse.Namespace, redis: Redis) -> int:
    """Run the ``user`` subcommand in ``args`` against ``redis``; the exit code."""
    handlers = {"add": _add, "list": _list, "passwd": _passwd, "remove": _remove}
    handler = handlers.get(getattr(args, "user_command", None) or "")
    if handler is None:
        return _fail("choose a user command: add, list, passwd or remove", USAGE_ERROR)
    try:
        await handler(args, redis)
    except CommandError as error:
        return _fail(str(error), error.exit_code)
    except UserExists as error:
        return _fail(str(error), FAILURE)
    except UserError as error:
        return _fail(str(error), USAGE_ERROR)
    except RedisError as error:
        return _fail(f"cannot reach Redis: {redis_reason(error)}", FAILURE)
    return 0


async def _add(args: argparse.Namespace, redis: Redis) -> None:
    # Validate and check for a duplicate before asking for a password, so nobody
    # types one twice only to learn the name was wrong.
    username = users.validate_username(args.name)
    role = users.validate_role(args.role)
    if await users.get_user(redis, username) is not None:
        raise UserExists(f"user {username!r} already exists")
    password = args.password if args.password is not None else _read_password()
    user = await users.add_user(redis, username, role, password)
    audit.record("user.added", actor=_operator(), username=user.username, role=user.role.value)
    print(f"added {user.role.value} {user.username!r}")


async def _list(args: argparse.Namespace, redis: Redis) -> None:
    found = await users.list_users(redis)
    if not found:
        print("no users yet; add one with: warmline user add NAME --role agent|supervisor")
        return
    print(format_table(found))


async def _passwd(args: argparse.Namespace, redis: Redis) -> None:
    # As for add: a missing user is reported before anyone types a password.
    if await users.get_user(redis, args.name) is None:
        raise CommandError(f"no user named {args.name!r}")
    password = args.password if args.password is not None else _read_password()
    user = await users.change_password(redis, args.name, password)
    audit.record("user.password-changed", actor=_operator(), username=user.username)
    print(f"changed the password of {user.username!r}; their sessions have ended")


async def _remove(args: argparse.Namespace, redis: Redis) -> None:
    if not await users.remove_user(redis, args.name):
        raise CommandError(f"no user named {args.name!r}")
    audit.record("user.removed", actor=_operator(), username=args.name)
    print(f"removed {args.name!r}")


def _operator() -> str:
    """Who ran the command, for the audit line: the shell's user."""
    try:
        return f"shell:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (e.g. a container)
        return f"shell:uid {os.getuid()}"


def format_table(found: list[User]) -> str:
    """Users as an aligned text table: username, role, created (UTC)."""
    rows = [("USERNAME", "ROLE", "CREATED")]
    rows += [(u.username, u.role.value, _format_time(u.created_at)) for u in found]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(
        f"{name:<{widths[0]}}  {role:<{widths[1]}}  {created}" for name, role, created in rows
    )


def _format_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _read_password() -> str:
    """Prompt twice on a terminal; otherwise take one line from stdin (for scripts)."""
    if sys.stdin is None:
        raise CommandError("no password: pass --password or pipe one on stdin", USAGE_ERROR)
    if sys.stdin.isatty():
        return _prompt_password()
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise CommandError("no password: pass --password or pipe one on stdin", USAGE_ERROR)
    return line


def _prompt_password() -> str:
    try:
        first = getpass.getpass("Password: ")
        users.validate_password(first)
        second = getpass.getpass("Repeat password: ")
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)
        raise CommandError("aborted: no password given") from None
    if first != second:
        raise CommandError("passwords do not match", USAGE_ERROR)
    return first


def _fail(message: str, exit_code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return exit_code
