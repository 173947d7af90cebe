"""`warmline demo`: the whole product on one machine, with nothing else installed.

One event loop runs the app (Hypercorn, one worker), the Twilio Voice simulator
in its place, a Redis server of its own and a PostgreSQL for the call history, so
a newcomer sees calls flow through the real agent and supervisor views without a
Twilio account. Every secret is made up per run; the simulator is the only "Twilio"
the app talks to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from hypercorn.asyncio import serve
from hypercorn.config import Config

from console.config import Settings
from console.domain import users
from console.history import migrate
from console.redis_ext import connect
from simulator import Chaos, LoadPlan, Simulator
from simulator.bots import Bots
from warmline.app import create_app
from warmline.embedded_postgres import EmbeddedPostgres, start_or_reuse
from warmline.embedded_redis import EmbeddedRedis, cache_dir, free_port, start_redis
from warmline.proxies import served

DEMO_PASSWORD = "warmline-demo"
DEMO_USERS = (
    ("alice", "agent"),
    ("bob", "agent"),
    ("carol", "agent"),
    ("sam", "supervisor"),
)
DEMO_CALLER_ID = "+15005550006"
DEMO_ANNOUNCE_SECONDS = 30
DEMO_CALLBACK_OFFER_SECONDS = 60  # a caller expecting a longer wait is offered a callback
DEMO_MAX_WAIT_SECONDS = 240  # and after this long is moved out to the same choice
DEMO_CALLBACK_SHARE = 0.3  # generated callers who take the offer
DEMO_WRAP_UP_SECONDS = 10  # agents are in wrap-up this long after a call, unless Ready
DEMO_BOTS = 3  # simulated agents (`--bots`)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoOptions:
    host: str
    port: int
    simulator_port: int
    calls_per_minute: float
    chaos: bool
    seed: int | None
    redis_url: str | None
    redis_tls_verify: bool = True
    database_url: str | None = None  # DATABASE_URL; unset: the embedded PostgreSQL
    bots: int = 0  # simulated agents bot1..botN (simulator.bots); the CLI's default is 3


def demo_settings(options: DemoOptions, app_url: str, simulator_url: str) -> Settings:
    """Settings with made-up credentials shared only with the simulator."""
    return Settings(
        account_sid="AC" + secrets.token_hex(16),
        auth_token=secrets.token_hex(16),
        api_key="SK" + secrets.token_hex(16),
        api_secret=secrets.token_hex(16),
        caller_id=DEMO_CALLER_ID,
        public_base_url=app_url,
        secret_key=secrets.token_hex(32),
        api_base_url=simulator_url,
        port=options.port,
        redis_tls_verify=options.redis_tls_verify,
        demo=True,
        simulator_url=simulator_url,
        # The caller's wait (SPEC §9), switched on to show it: callers hear their place
        # every half minute, leave a message while no agent is signed in, are offered
        # a callback when the wait looks long, and are moved to that choice at last.
        announce_seconds=DEMO_ANNOUNCE_SECONDS,
        nobody_signed_in="voicemail",
        callback_offer_seconds=DEMO_CALLBACK_OFFER_SECONDS,
        max_wait_seconds=DEMO_MAX_WAIT_SECONDS,
        wrap_up_seconds=DEMO_WRAP_UP_SECONDS,
    )


def bot_names(count: int) -> list[str]:
    """The simulated agents' usernames: bot1..botN."""
    return [f"bot{i}" for i in range(1, count + 1)]


async def create_demo_users(
    redis_url: str, tls_verify: bool = True, bots: Sequence[str] = ()
) -> None:
    """The demo users and the ``bots`` (agents), with the demo password (replacing
    any left from a past run)."""
    client = connect(redis_url, tls_verify=tls_verify)
    try:
        for username, role in (*DEMO_USERS, *((name, "agent") for name in bots)):
            await users.remove_user(client, username)
            await users.add_user(client, username, role, DEMO_PASSWORD)
    finally:
        await client.aclose()


async def run_demo(options: DemoOptions) -> None:
    """Run until SIGINT/SIGTERM, then stop the app, the simulator, Redis and PostgreSQL."""
    embedded: EmbeddedRedis | None = None
    database: EmbeddedPostgres | None = None
    redis_url = options.redis_url
    if redis_url is None:
        # In the user's cache directory like `serve`'s, but nothing is saved: each demo
        # starts from scratch.
        embedded = start_redis(cache_dir("demo-redis"), persist=False)
        redis_url = embedded.url
    database_url = options.database_url
    try:
        if database_url is None:
            # `serve`'s: the history of past demos stays, as a real center's would.
            database_url, database = await asyncio.to_thread(start_or_reuse, cache_dir("postgres"))
        await asyncio.to_thread(migrate.upgrade, database_url)
    except BaseException:
        if embedded is not None:
            embedded.stop()
        if database is not None:
            database.stop()
        raise
    app_url = f"http://{_browser_host(options.host)}:{options.port}"
    simulator_port = options.simulator_port or free_port()
    sim_url = f"http://{_browser_host(options.host)}:{simulator_port}"
    settings = demo_settings(options, app_url, sim_url)
    chaos = Chaos(seed=options.seed) if options.chaos else None
    sim = Simulator(
        app_url, settings.account_sid, settings.auth_token, seed=options.seed, chaos=chaos
    )
    names = bot_names(options.bots)
    bots = Bots(app_url, sim, names, DEMO_PASSWORD)
    try:
        await create_demo_users(redis_url, options.redis_tls_verify, names)
        await sim.start(options.host, simulator_port)
        if options.calls_per_minute > 0:
            plan = LoadPlan(rate=options.calls_per_minute / 60, callback_share=DEMO_CALLBACK_SHARE)
            sim.load.start(plan)
        stop = _stop_on_signals()
        config = Config()
        config.bind = [f"{options.host}:{options.port}"]
        config.graceful_timeout = 5.0
        _print_banner(app_url, sim_url, options)
        app = served(create_app(settings, redis_url=redis_url, database_url=database_url))
        starter = asyncio.create_task(_start_bots(bots, app_url, stop)) if names else None

        async def shutdown() -> None:
            # The bots leave first: Hypercorn would wait out its graceful timeout
            # for their open dashboard sockets.
            await stop.wait()
            if starter is not None:
                starter.cancel()
            await bots.stop()

        await serve(app, config, shutdown_trigger=shutdown)
    finally:
        await bots.stop()
        await sim.stop()
        if embedded is not None:
            embedded.stop()
        if database is not None:
            database.stop()


async def _start_bots(bots: Bots, app_url: str, stop: asyncio.Event) -> None:
    """Start the bots once the app answers /healthz (it is served by this same loop)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while not stop.is_set():
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{app_url}/healthz") as response:
                    if response.status < 500:
                        break
            await asyncio.sleep(0.2)
    if not stop.is_set():
        bots.start()
        log.info("started %d simulated agents", len(bots.bots))


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


def _browser_host(host: str) -> str:
    """The host a browser on this machine uses for a listening address."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _print_banner(app_url: str, sim_url: str, options: DemoOptions) -> None:
    agents = ", ".join(name for name, role in DEMO_USERS if role == "agent")
    supervisors = ", ".join(name for name, role in DEMO_USERS if role == "supervisor")
    lines = [
        f"Warmline demo on {app_url}  (Ctrl-C stops everything)",
        f"  agents: {agents}   supervisor: {supervisors}   password: {DEMO_PASSWORD}",
        f"  simulated phone network: {sim_url}  (place customer calls there)",
        "  while no agent is signed in, callers leave voicemails; waiting callers hear "
        f"their place in line every {DEMO_ANNOUNCE_SECONDS} s, are offered a callback when "
        f"the wait looks longer than {DEMO_CALLBACK_OFFER_SECONDS} s, and are moved to that "
        f"choice after {DEMO_MAX_WAIT_SECONDS} s",
    ]
    if options.calls_per_minute > 0:
        lines.append(f"  generating {options.calls_per_minute:g} customer calls per minute")
    if options.bots:
        names = bot_names(options.bots)
        shown = ", ".join(names) if len(names) <= 3 else f"{names[0]}..{names[-1]}"
        lines.append(
            f"  {options.bots} simulated agents ({shown}) answer, transfer, wrap up and take "
            "breaks (--bots 0: none)"
        )
    if options.chaos:
        lines.append("  chaos: callbacks arrive late, duplicated and out of order")
    print("\n".join(lines), flush=True)
