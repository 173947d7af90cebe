"""What `warmline serve` and `warmline check` say about the environment, one line per
problem in the same words from both: the configuration, Redis, PostgreSQL and Twilio.
Problems go to stderr as ``warmline: <problem>``; check's findings to stdout as ``ok:``."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import UTC, datetime

import psycopg
from redis.exceptions import RedisError

from console.config import ConfigError, RedisSentinels, Settings
from console.history import migrate
from console.network_errors import redis_problem
from console.redis_ext import connect


def database_problem(error: psycopg.Error) -> str:
    """One line for a database that cannot be reached or refused the work."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"cannot reach the database: {first}"


def database_state(url: str) -> tuple[bool, str | None]:
    """Whether PostgreSQL at ``url`` answers, and the problem keeping the history from
    working (unreachable, or migrations missing), in the words serve and check share."""
    try:
        missing = migrate.pending(url)
    except psycopg.Error as error:
        return False, database_problem(error)
    if missing:
        return True, f"the database schema lacks {', '.join(missing)}; run `warmline db upgrade`"
    return True, None


async def redis_state(
    url: str | RedisSentinels, tls_verify: bool
) -> tuple[str | None, dict[str, object] | None]:
    """The problem line when Redis at ``url`` (or the Sentinels' master) does not
    answer, else its webhook health."""
    from console.domain.webhook_health import read_health

    client = connect(url, tls_verify=tls_verify)
    try:
        await client.ping()
        return None, await read_health(client)
    except (RedisError, OSError) as error:
        return redis_problem(url, error), None
    finally:
        await client.aclose()


def problem(line: str) -> None:
    """A problem, as every command says it: ``warmline: <problem>`` on stderr."""
    print(f"warmline: {line}", file=sys.stderr, flush=True)


def ok(line: str) -> None:
    """One of `warmline check`'s findings, on stdout (flushed: it interleaves with the
    problems on stderr in the order found)."""
    print(f"ok: {line}", flush=True)


def configuration_problems(serving: bool) -> tuple[Settings | None, list[str]]:
    """The settings (None when incomplete) and every problem of the environment:
    console.config's, and with ``serving`` WEB_CONCURRENCY, which only serve reads."""
    settings: Settings | None = None
    problems: list[str] = []
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        problems += error.problems
    raw = os.environ.get("WEB_CONCURRENCY", "").strip() or "1"
    if serving and not (raw.isdigit() and int(raw) >= 1):
        problems.append(f"WEB_CONCURRENCY must be a whole number of at least 1, got {raw!r}")
    return settings, problems


def settings_or_report(serving: bool = False) -> Settings | None:
    """The settings, or None after one line per problem on stderr."""
    settings, problems = configuration_problems(serving)
    for line in problems:
        problem(line)
    return None if problems else settings


def say_unreachable(
    settings: Settings, redis_url: str | RedisSentinels | None, db_url: str | None
) -> None:
    """Serve starts whether or not the Redis and PostgreSQL it is given answer (the app
    waits for them), but says at once, in `warmline check`'s words, what does not."""
    if redis_url:
        line, _ = asyncio.run(redis_state(redis_url, settings.redis_tls_verify))
        if line:
            problem(line)
    if db_url:
        _, line = database_state(db_url)
        if line:
            problem(line)


async def check(settings: Settings, db_url: str) -> int:
    problems = 0
    target = settings.redis_sentinels or os.environ["REDIS_URL"]
    line, health = await redis_state(target, settings.redis_tls_verify)
    if line:
        problem(line)
        problems += 1
    elif isinstance(target, RedisSentinels):
        ok(f"{target.describe()} answers")
    else:
        ok("Redis answers")
    line = await twilio_problem(settings)
    if line:
        problem(line)
        problems += 1
    else:
        ok(f"Twilio REST API answers at {settings.api_base_url}")
    answers, line = await asyncio.to_thread(database_state, db_url)
    if answers:
        ok("PostgreSQL answers")
    if line:
        problem(line)
        problems += 1
    else:
        ok(f"the database schema is up to date ({migrate.latest_version()})")
    if health is not None:
        print_health(health, settings)
    return 1 if problems else 0


async def twilio_problem(settings: Settings) -> str | None:
    """None when Twilio lists the live conferences; else one line naming the URL tried
    and why it failed (the gateway's own log record of it is kept quiet)."""
    from console.telephony.gateway import GatewayError, TwilioGateway

    gateway = TwilioGateway(settings=settings)
    gateway_log = logging.getLogger("console.telephony.gateway")
    level = gateway_log.level
    gateway_log.setLevel(logging.ERROR)
    await gateway.open()
    try:
        await gateway.live_conferences()
    except GatewayError as error:
        return error.says(settings.api_base_url)
    finally:
        await gateway.close()
        gateway_log.setLevel(level)
    return None


def print_health(health: dict[str, object], settings: Settings) -> None:
    last = health["last_request"]
    print(f"webhooks are checked against PUBLIC_BASE_URL={settings.public_base_url}")
    if not last:
        print("note: Twilio has not reached any webhook yet")
    for route, at in sorted(last.items()):  # type: ignore[union-attr]
        print(f"  last request on {route}: {at} ms")
    for failure in health["signature_failures"]:  # type: ignore[union-attr]
        when = datetime.fromtimestamp(failure["at"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"  signature failure on {failure['route']} at {when} UTC from {failure['client']}:"
            f" {failure['reason']} (checked against {failure['url']})"
        )
