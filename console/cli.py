"""The `warmline` command: serve, check, user. Errors are one clear line on stderr
and a non-zero exit code, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from redis.exceptions import RedisError

from console import cli_users
from console.config import ConfigError, Settings
from console.embedded_redis import EmbeddedRedis, EmbeddedRedisError, start_redis
from console.redis_ext import connect


def data_dir() -> Path:
    """Where the embedded Redis keeps its data: the user's cache directory."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "warmline" / "redis"


def embedded_redis_url() -> tuple[str, EmbeddedRedis | None]:
    """REDIS_URL, or a started embedded server when it is unset."""
    url = os.environ.get("REDIS_URL", "").strip()
    if url:
        return url, None
    server = start_redis(data_dir())
    os.environ["REDIS_URL"] = server.url
    return server.url, server


def fail(message: str, code: int = 2) -> int:
    print(f"warmline: {message}", file=sys.stderr)
    return code


def cmd_serve(args: argparse.Namespace) -> int:
    from hypercorn.config import Config
    from hypercorn.run import run

    try:
        settings = Settings.from_env()
    except ConfigError as error:
        for problem in error.problems:
            print(f"warmline: {problem}", file=sys.stderr)
        return 2
    try:
        _, server = embedded_redis_url()
    except EmbeddedRedisError as error:
        return fail(str(error))
    config = Config()
    config.application_path = "console.asgi:app"
    config.bind = [f"0.0.0.0:{args.port or settings.port}"]
    config.workers = args.workers or int(os.environ.get("WEB_CONCURRENCY", "1") or 1)
    config.graceful_timeout = 10.0
    config.accesslog = "-"
    config.errorlog = "-"
    try:
        return run(config)
    finally:
        if server is not None:
            server.stop()


async def _check(settings: Settings) -> int:
    from console.gateway import GatewayError, TwilioGateway
    from console.webhook_health import read_health

    problems = 0
    redis = connect(os.environ["REDIS_URL"])
    try:
        await redis.ping()
        print("ok: Redis answers")
        health = await read_health(redis)
    except (RedisError, OSError) as exc:
        print(f"problem: Redis does not answer ({type(exc).__name__}: {exc})")
        problems += 1
        health = None
    finally:
        await redis.aclose()
    gateway = TwilioGateway(settings=settings)
    await gateway.open()
    try:
        await gateway.live_conferences()
        print(f"ok: Twilio REST API answers at {settings.api_base_url}")
    except GatewayError as exc:
        print(f"problem: {exc}")
        problems += 1
    finally:
        await gateway.close()
    if health is not None:
        _print_health(health, settings)
    return 1 if problems else 0


def _print_health(health: dict[str, object], settings: Settings) -> None:
    last = health["last_request"]
    print(f"webhooks are checked against PUBLIC_BASE_URL={settings.public_base_url}")
    if not last:
        print("note: Twilio has not reached any webhook yet")
    for route, at in sorted(last.items()):  # type: ignore[union-attr]
        print(f"  last request on {route}: {at} ms")
    for failure in health["signature_failures"]:  # type: ignore[union-attr]
        print(f"  signature failure on {failure['route']}, checked against {failure['url']}")


def cmd_check(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        for problem in error.problems:
            print(f"problem: {problem}")
        return 1
    print("ok: configuration is complete")
    try:
        _, server = embedded_redis_url()
    except EmbeddedRedisError as error:
        return fail(str(error), 1)
    try:
        return asyncio.run(_check(settings))
    finally:
        if server is not None:
            server.stop()


def cmd_user(args: argparse.Namespace) -> int:
    try:
        url, server = embedded_redis_url()
    except EmbeddedRedisError as error:
        return fail(str(error))

    async def go() -> int:
        redis = connect(url)
        try:
            return await cli_users.run(args, redis)
        except (RedisError, OSError) as exc:
            return fail(f"cannot reach Redis: {type(exc).__name__}", 1)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(go())
    finally:
        if server is not None:
            server.stop()


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="warmline", description=__doc__.split(".")[0])
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the app with Hypercorn on $PORT")
    serve.add_argument("--port", type=int, help="default: $PORT or 5000")
    serve.add_argument("--workers", type=int, help="default: $WEB_CONCURRENCY or 1")
    serve.set_defaults(handler=cmd_serve)
    check = commands.add_parser("check", help="validate configuration, reach Redis and Twilio")
    check.set_defaults(handler=cmd_check)
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
