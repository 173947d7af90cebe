"""The `warmline` command: serve, demo, check, reconcile, user, db. Errors are one clear
line on stderr and a non-zero exit code, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import psycopg
import redis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from console.config import (
    ConfigError,
    RedisSentinels,
    Settings,
    database_url,
    redis_sentinels,
    redis_tls_verify,
)
from console.domain.events import now_ms
from console.history import migrate, purge
from console.redis_ext import connect
from warmline import cli_users, logs
from warmline.access_log import AccessLogger
from warmline.diagnosis import (
    check,
    database_problem,
    ok,
    problem,
    redis_problem,
    say_unreachable,
    settings_or_report,
)
from warmline.embedded_postgres import EmbeddedPostgres, EmbeddedPostgresError, start_or_reuse
from warmline.embedded_redis import EmbeddedRedis, EmbeddedRedisError, cache_dir, start_redis
from warmline.history_process import writer_process
from warmline.worker_metrics import MULTIPROC_DIR, shared_metrics_dir


def data_dir() -> Path:
    """Where the embedded Redis keeps its data: the user's cache directory."""
    return cache_dir("redis")


def embedded_redis_url(
    sentinels: RedisSentinels | None = None,
) -> tuple[str | RedisSentinels, EmbeddedRedis | None]:
    """The Sentinels (REDIS_SENTINELS) when given; else REDIS_URL; else the embedded
    server another warmline command already runs on the same data (so `user add`
    reaches a running `serve`); else a new one, which the caller stops."""
    if sentinels is not None:
        return sentinels, None
    url = os.environ.get("REDIS_URL", "").strip()
    if url:
        return url, None
    directory = data_dir()
    running = _running_embedded(directory)
    if running:
        os.environ["REDIS_URL"] = running
        return running, None
    server = start_redis(directory)
    (directory / PORT_FILE).write_text(str(server.port))
    os.environ["REDIS_URL"] = server.url
    return server.url, server


PORT_FILE = "warmline-port"


def _running_embedded(directory: Path) -> str | None:
    try:
        port = int((directory / PORT_FILE).read_text())
    except (OSError, ValueError):
        return None
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    try:
        info = client.config_get("dir")
        same = (
            Path(
                info.get("dir", b"").decode()
                if isinstance(info.get("dir"), bytes)
                else info.get("dir", "")
            ).resolve()
            == directory.resolve()
        )
    except (RedisError, OSError):
        return None
    finally:
        client.close()
    return f"redis://127.0.0.1:{port}/0" if same else None


def embedded_database_url() -> tuple[str, EmbeddedPostgres | None]:
    """DATABASE_URL (``postgres://`` spelled ``postgresql://``); else the embedded
    PostgreSQL another warmline command already runs on the same data; else a new one,
    which the caller stops. Raises ConfigError or EmbeddedPostgresError."""
    url = database_url()
    if url:
        return url, None
    return start_or_reuse(cache_dir("postgres"))


def worker_class() -> str:
    """uvloop where it is installed (Linux, macOS): its socket writes are in C, which
    the WebSocket fan-out spends most of its time in; asyncio elsewhere."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def fail(message: str, code: int = 2) -> int:
    problem(message)
    return code


LISTEN_BACKLOG = 1024  # the kernel caps it at net.core.somaxconn (4096 by default)


def cmd_serve(args: argparse.Namespace) -> int:
    from hypercorn.config import Config
    from hypercorn.run import run

    settings = settings_or_report(serving=not args.workers)
    if settings is None:
        return 2
    try:
        redis_url, server = embedded_redis_url(settings.redis_sentinels)
    except EmbeddedRedisError as error:
        return fail(str(error))
    try:
        db_url, db_server = _serve_database(settings)
    except (EmbeddedPostgresError, psycopg.Error) as error:
        if server is not None:
            server.stop()
        return fail(database_problem(error) if isinstance(error, psycopg.Error) else str(error))
    config = Config()
    config.application_path = "warmline.asgi:app"
    config.bind = [f"0.0.0.0:{args.port or settings.port}"]
    config.workers = args.workers or int(os.environ.get("WEB_CONCURRENCY", "").strip() or "1")
    config.graceful_timeout = 10.0
    # Hypercorn listens with a backlog of 100, little for a burst of Twilio callbacks
    # on new connections.
    config.backlog = LISTEN_BACKLOG
    config.worker_class = worker_class()
    config.accesslog = "-"
    config.logger_class = AccessLogger
    config.errorlog = "-"
    say_unreachable(
        settings,
        redis_url if server is None else None,
        db_url if db_server is None else None,
    )
    logs.configure()
    try:
        # Several workers share their metrics through files (warmline.worker_metrics).
        shared = config.workers > 1 or bool(os.environ.get(MULTIPROC_DIR, "").strip())
        with (
            shared_metrics_dir() if shared else contextlib.nullcontext(),
            writer_process() if db_url else contextlib.nullcontext(),
        ):
            if config.workers > 1:
                return run(config)
            from warmline.app import create_app
            from warmline.heap import freeze_start_up_heap
            from warmline.proxies import served
            from warmline.shutdown import run_in_process

            # With Sentinels the app finds them in its settings.
            url = redis_url if isinstance(redis_url, str) else None
            app = create_app(settings, redis_url=url, database_url=db_url)
            freeze_start_up_heap(app)
            run_in_process(app, config, served(app))
            return 0
    finally:
        if server is not None:
            server.stop()
        if db_server is not None:
            db_server.stop()


def _serve_database(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """DATABASE_URL as given (the release phase migrates it); else the embedded server,
    migrated here, since nothing else would."""
    if settings.database_url:
        return settings.database_url, None
    url, server = embedded_database_url()
    os.environ["DATABASE_URL"] = url  # the workers of a multi-process `serve` read it
    try:
        migrate.upgrade(url)
    except psycopg.Error:
        if server is not None:
            server.stop()
        raise
    return url, server


def cmd_check(args: argparse.Namespace) -> int:
    """The configuration, then (without --config) Redis, Twilio and PostgreSQL: an
    ``ok:`` line per finding on stdout, a ``warmline:`` line per problem on stderr."""
    settings = settings_or_report(serving=True)
    if settings is None:
        return 1
    ok("configuration is complete")
    if args.config:
        return 0
    try:
        _, server = embedded_redis_url(settings.redis_sentinels)
    except EmbeddedRedisError as error:
        return fail(str(error), 1)
    try:
        db_url, db_server = embedded_database_url()
    except EmbeddedPostgresError as error:
        if server is not None:
            server.stop()
        return fail(str(error), 1)
    try:
        return asyncio.run(check(settings, db_url))
    finally:
        if server is not None:
            server.stop()
        if db_server is not None:
            db_server.stop()


def with_database(work: Callable[[str], int]) -> int:
    """Run ``work`` with DATABASE_URL or the embedded server's URL (started if need be,
    and stopped after); a bad URL exits 2, a server that cannot start 1."""
    try:
        url, server = embedded_database_url()
    except ConfigError as error:
        return fail(str(error), 2)
    except EmbeddedPostgresError as error:
        return fail(str(error), 1)
    try:
        return work(url)
    finally:
        if server is not None:
            server.stop()


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Apply the migrations the database lacks (Heroku's release phase runs it)."""
    return with_database(_upgrade)


def _upgrade(url: str) -> int:
    try:
        applied = migrate.upgrade(url)
    except psycopg.Error as error:
        return fail(database_problem(error), 1)
    for version in applied:
        print(f"applied {version}")
    if not applied:
        print(f"the database schema is up to date ({migrate.latest_version()})")
    return 0


def cmd_db_purge(args: argparse.Namespace) -> int:
    """Remove what is older than HISTORY_RETENTION_DAYS, recordings at Twilio included."""
    settings = settings_or_report()
    if settings is None:
        return 2
    return with_database(lambda url: asyncio.run(_purge(settings, url)))


async def _purge(settings: Settings, url: str) -> int:
    from console.telephony.gateway import TwilioGateway  # twilio: only when needed

    try:
        if not await asyncio.to_thread(migrate.applied_versions, url):
            return fail("the database has no history schema; run `warmline db upgrade`", 1)
        gateway = TwilioGateway(settings=settings)
        await gateway.open()
        try:
            async with await psycopg.AsyncConnection.connect(
                url, autocommit=True, connect_timeout=migrate.CONNECT_TIMEOUT_SECONDS
            ) as conn:
                if not await purge.try_lock(conn):
                    return fail("a purge is already running: another process holds its lock", 1)
                try:
                    cutoff = purge.cutoff_ms(settings.history_retention_days, now_ms())
                    done = await purge.purge(conn, cutoff, gateway.delete_recording)
                finally:
                    await purge.unlock(conn)
        finally:
            await gateway.close()
    except psycopg.Error as error:
        return fail(database_problem(error), 1)
    print(done.summary())
    if done.kept:
        return fail(
            f"kept {len(done.kept)} calls whose recordings Twilio did not delete "
            f"(at {settings.api_base_url}); the next purge tries again",
            1,
        )
    return 0


def with_redis(work: Callable[[Redis], Awaitable[int]], embedded_failure_code: int) -> int:
    """Run ``work`` against REDIS_URL or the embedded server (started if need be, and
    stopped after), with one client opened and closed around it."""
    try:
        tls_verify = redis_tls_verify()
        sentinels = redis_sentinels()
    except ConfigError as error:
        return fail(str(error), 2)
    try:
        url, server = embedded_redis_url(sentinels)
    except EmbeddedRedisError as error:
        return fail(str(error), embedded_failure_code)

    async def go() -> int:
        redis = connect(url, tls_verify=tls_verify)
        try:
            return await work(redis)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(go())
    finally:
        if server is not None:
            server.stop()


def cmd_reconcile(args: argparse.Namespace) -> int:
    from console.telephony.reconcile import run_command

    settings = settings_or_report()
    if settings is None:
        return 2
    # The command reports Twilio failures in its own words; no second, logged copy.
    logging.getLogger("console.telephony.gateway").setLevel(logging.ERROR)
    return with_redis(lambda redis: run_command(settings, redis), embedded_failure_code=1)


def cmd_user(args: argparse.Namespace) -> int:
    logs.configure()  # the audit lines of user changes go to stderr, as the app's do

    async def work(redis: Redis) -> int:
        try:
            return await cli_users.run(args, redis)
        except (RedisError, OSError) as exc:
            where = redis_sentinels() or os.environ.get("REDIS_URL", "")
            return fail(redis_problem(where, exc), 1)

    return with_redis(work, embedded_failure_code=2)


def cmd_demo(args: argparse.Namespace) -> int:
    from warmline.demo import DemoOptions, run_demo

    try:
        tls_verify = redis_tls_verify()
        db_url = database_url()
    except ConfigError as error:
        return fail(str(error))
    options = DemoOptions(
        host=args.host,
        port=args.port,
        simulator_port=args.simulator_port,
        calls_per_minute=args.rate,
        chaos=args.chaos,
        seed=args.seed,
        redis_url=os.environ.get("REDIS_URL", "").strip() or None,
        redis_tls_verify=tls_verify,
        database_url=db_url,
        bots=args.bots,
    )
    if args.rate < 0:
        return fail(f"--rate must not be negative, got {args.rate:g}")
    if args.bots < 0:
        return fail(f"--bots must not be negative, got {args.bots}")
    for option, port in (("--port", args.port), ("--simulator-port", args.simulator_port)):
        if port and not port_free(args.host, port):
            return fail(f"{args.host}:{port} is taken: choose another port with {option}")
    logs.configure()
    try:
        asyncio.run(run_demo(options))
    except (EmbeddedRedisError, EmbeddedPostgresError) as error:
        return fail(str(error))
    except psycopg.Error as error:
        return fail(database_problem(error))
    except OSError as error:
        return fail(f"cannot listen on {args.host}:{args.port} or reach Redis: {error.strerror}")
    return 0


def port_free(host: str, port: int) -> bool:
    """Nothing listens on ``host:port`` now (checked before the demo starts anything,
    so a taken port is said plainly, before any banner)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


DEMO_CALLS_PER_MINUTE = 2.0  # a gentle rate, so a first look shows the floor moving


def add_demo_parser(commands: argparse._SubParsersAction) -> None:
    """`warmline demo`'s options: here, so that commands other than the demo (the
    `serve` master above all) do not import the demo's app and simulator."""
    demo = commands.add_parser(
        "demo",
        help="the app, an embedded Redis and PostgreSQL and a simulated Twilio, with demo users",
    )
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on")
    demo.add_argument("--port", type=int, default=5000, help="the app's port (default 5000)")
    demo.add_argument(
        "--simulator-port", type=int, default=0, help="the simulator's port (default: free)"
    )
    demo.add_argument(
        "--rate",
        type=float,
        default=DEMO_CALLS_PER_MINUTE,
        metavar="CALLS_PER_MINUTE",
        help=f"generate customer calls at this rate (default {DEMO_CALLS_PER_MINUTE:g}; "
        "0: place them from the simulator's page only)",
    )
    demo.add_argument(
        "--chaos", action="store_true", help="deliver callbacks late, duplicated, reordered"
    )
    demo.add_argument("--seed", type=int, help="seed for chaos and generated callers")
    demo.add_argument(
        "--bots",
        type=int,
        default=3,
        metavar="N",
        help="simulated agents bot1..botN who sign in, answer, transfer, wrap up and take "
        "breaks (default 3; 0: none)",
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="warmline", description=__doc__.split(".")[0])
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the app with Hypercorn on $PORT")
    serve.add_argument("--port", type=int, help="default: $PORT or 5000")
    serve.add_argument("--workers", type=int, help="default: $WEB_CONCURRENCY or 1")
    serve.set_defaults(handler=cmd_serve)
    add_demo_parser(commands)
    commands.choices["demo"].set_defaults(handler=cmd_demo)
    check = commands.add_parser(
        "check", help="validate configuration, reach Redis, PostgreSQL and Twilio"
    )
    check.add_argument(
        "--config",
        action="store_true",
        help="the configuration only, no network (Heroku's release phase)",
    )
    check.set_defaults(handler=cmd_check)
    reconcile = commands.add_parser(
        "reconcile", help="rebuild live conferences from Twilio after Redis lost its data"
    )
    reconcile.set_defaults(handler=cmd_reconcile)
    db = commands.add_parser("db", help="the history database")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser(
        "upgrade", help="apply the schema migrations the database lacks ($DATABASE_URL)"
    )
    upgrade.set_defaults(handler=cmd_db_upgrade)
    purge = db_commands.add_parser(
        "purge",
        help="remove calls, events and recordings older than $HISTORY_RETENTION_DAYS",
    )
    purge.set_defaults(handler=cmd_db_purge)
    cli_users.add_parser(commands)
    for name, sub in commands.choices.items():
        if name == "user":
            sub.set_defaults(handler=cmd_user)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
