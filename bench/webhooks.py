"""Webhook benchmark (issue 6 items 1, 2 and 6): Twilio's requests to Warmline beside
a hello-world Quart app served the same way, in one run.

Per round, for each worker count (``WEB_CONCURRENCY``) and each server in alternation
(Warmline first in odd rounds, the hello-world app first in even ones), a fresh server
is started and timed to its first healthy ``/healthz``, its idle memory is read, and
each of its routes is driven by a separate load-generator process
(``bench.webhook_load``): first closed-loop (``--concurrency`` connections, each
sending again as soon as it is answered) for the maximum throughput, then open-loop
at half of that rate, with every latency counted from its scheduled send time.
Warmline's routes are the conference status callback (hold / unhold toggles over
``--conferences`` live conferences opened as Twilio would) and the Voice URL (a new
call each request, nobody available to take it). Figures are medians over
``--rounds`` rounds. A last check starts Warmline with one agent available and
Twilio's REST API answering the agent dial after ``--dial-delay`` seconds: the Voice
URL's answer must not wait for it.

Beside them, in the same alternation, the floor (``bench/floor_app.py``, issue 21):
a minimal Quart app that parses the form, checks the signature with twilio's
RequestValidator and sends one Redis MULTI (a state write and one XADD), fed the same
signed status-callback bytes as the hello-world app; the table gives each Warmline
route's max throughput ÷ the floor's in the same round (``--no-floor``: leave it out).

``--history-ab`` measures instead the status callback with the history writer
running (DATABASE_URL: a throwaway PostgreSQL, fsync on) and without it (no
database), side by side in each round; both are ``warmline.asgi`` served by
``bench.serve``, so the database is the only difference.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from redis.asyncio import Redis

from bench.load import Conference, WarmlineProducer, call_sid
from bench.measure import TRIP_COMMANDS, busy_seconds, cpu_seconds, settle, start_py_spy
from bench.servers import Server, server_env, start_server, started
from bench.webhook_load import voice_params
from console.domain import history_log, keys
from console.domain.users import add_user
from console.history.migrate import upgrade
from console.urls import VOICE_PATH
from simulator.testing import ACCOUNT_SID, AUTH_TOKEN, TwilioDouble
from warmline.embedded_postgres import EmbeddedPostgres, start_postgres
from warmline.embedded_redis import EmbeddedRedis, free_port, start_redis

MB = 1024 * 1024
IDLE_SECONDS = 1.0  # after /healthz answers, before idle memory is read
SETUP_CONCURRENCY = 8  # conferences opened at once before a status-callback phase
PASSWORD = "bench-password-123"
TARGET_RATIO = 0.6
TARGET_P99_MS = 25.0
# Issue 21: each route's max throughput ÷ the floor's, with one worker.
FLOOR_TARGETS = {"status": 0.5, "voice": 0.4}
# Requests are signed before each closed-loop window: this many times the warm-up's
# rate (the window must not run out of them), plus a margin.
PREPARE_HEADROOM = 1.6
# The baselines (hello-world, the floor) speed up more after a 1 s warm-up than Warmline.
BASELINE_HEADROOM = 2.5
WARMUP_PREPARED = 4000
ROUTES = {
    "hello": "hello-world",
    "floor": "floor",
    "status": "status callback",
    "voice": "Voice URL",
}
# The bench.serve apps started by Bench.start_module: kind -> MODULE:APP.
BENCH_APPS = {"floor": "bench.floor_app:app"}
# What the load generator sends each route: the baselines get status-callback bytes.
LOAD_KINDS = {"hello": "hello", "floor": "hello", "status": "status", "voice": "voice"}
HISTORY_TARGETS = ("history", "nohistory")  # --history-ab: the writer on / off
HISTORY_AB_MAX_LOSS = 0.05
# What a fresh interpreter holds after importing each of these (item 6: how much of a
# server's footprint is its imports): a bare Quart server's, the hello-world server as
# bench.serve runs it (bench.serve imports warmline.cli for worker_class), and
# `warmline serve`'s (warmline.cli, which is also all a multi-worker master runs).
IMPORT_SETS = {
    "quart + hypercorn + uvloop": "quart, hypercorn.asyncio, hypercorn.run, uvloop",
    "bench.serve + bench.hello_app": "bench.serve, bench.hello_app",
    "warmline.cli": "warmline.cli",
}


@dataclass
class Phase:
    """One route on one server in one round."""

    route: str  # hello | floor | status | voice
    max_rate: float = 0.0
    closed_p50_ms: float = 0.0
    closed_p99_ms: float = 0.0
    exhausted: bool = False
    half_rate: float = 0.0
    achieved_rate: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    dispatch_lag_p99_ms: float = 0.0
    dispatch_lag_max_ms: float = 0.0
    slowest: list[list[float]] = field(default_factory=list)  # open loop: [due s, ms]
    server_cpu_ms: float = 0.0  # per request, closed loop: master + workers
    server_cores: float = 0.0
    server_cpu_ms_half: float = 0.0  # per request, open loop at half rate
    worker_cores: list[float] = field(default_factory=list)  # each worker, closed loop
    redis_cpu_ms: float = 0.0
    loadgen_cores: float = 0.0
    loadgen_cores_half: float = 0.0
    loadgen_us: float = 0.0  # the load generator's CPU per request
    others_cores: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)  # every answer, warm-up included
    unit_attempts: float = 0.0  # closed loop, per request (WATCH calls ÷ answers)
    redis_trips: float = 0.0  # closed loop, per request: the units' round trips
    unit_attempts_half: float = 0.0  # the same at half the max rate (issue 21's load)
    redis_trips_half: float = 0.0
    redis_calls: dict[str, float] = field(default_factory=dict)  # per request, closed loop
    queue_end: int = 0  # Voice URL: customers waiting at the end of the closed window
    history_lag: int | None = None  # history on: events not stored at the window's end
    request_bytes: int = 0

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not status.startswith("2"))


@dataclass
class Run:
    """One server start."""

    target: str  # warmline | hello | floor | history | nohistory
    workers: int
    round: int
    startup_s: float = 0.0  # spawn to the first healthy /healthz
    quiet_s: float = 0.0  # spawn to every server process idle (all workers started)
    master_rss_mb: float | None = None  # None: the master serves (one worker)
    worker_rss_mb: list[float] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)


class LoadGen:
    """The ``bench.webhook_load`` process."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.webhook_load"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    async def command(self, cmd: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.process.stdin.flush()
        line = await asyncio.to_thread(self.process.stdout.readline)
        if not line:
            raise RuntimeError("the load generator ended early")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"load generator: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                assert self.process.stdin is not None
                self.process.stdin.write('{"cmd": "quit"}\n')
                self.process.stdin.flush()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Meter:
    """CPU used by the server's processes, Redis, and everything else, over a window."""

    def __init__(self, server: Server, redis: psutil.Process, client: Redis) -> None:
        self.server = server.processes()
        self.workers = server.workers()
        self.redis = redis
        self.client = client

    async def __aenter__(self) -> Meter:
        self.commands0 = await command_calls(self.client)
        self.began = time.monotonic()
        self.server0 = cpu_seconds(self.server)
        self.workers0 = [cpu_seconds([w]) for w in self.workers]
        self.redis0 = cpu_seconds([self.redis])
        self.ours0 = cpu_seconds(ours())
        self.busy0 = busy_seconds()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.elapsed = time.monotonic() - self.began
        self.server_s = cpu_seconds(self.server) - self.server0
        self.worker_cores = [
            (cpu_seconds([w]) - before) / self.elapsed
            for w, before in zip(self.workers, self.workers0, strict=True)
        ]
        self.redis_s = cpu_seconds([self.redis]) - self.redis0
        ours_s = cpu_seconds(ours()) - self.ours0
        self.others_cores = max(0.0, busy_seconds() - self.busy0 - ours_s) / self.elapsed
        after = await command_calls(self.client)
        self.commands = {k: v - self.commands0.get(k, 0) for k, v in after.items()}
        self.commands = {k: v for k, v in self.commands.items() if v}


async def quiet(server: Server, limit_s: float = 15.0) -> float:
    """Wait until the server's processes use under 5 % of a core over 0.25 s; returns
    how long that took."""
    began = time.monotonic()
    while time.monotonic() - began < limit_s:
        before = cpu_seconds(server.processes())
        await asyncio.sleep(0.25)
        if cpu_seconds(server.processes()) - before < 0.0125:
            break
    return time.monotonic() - began


def unit_costs(commands: dict[str, int], answered: int) -> tuple[float, float]:
    """Units' attempts and Redis round trips (``TRIP_COMMANDS``) per request, from a
    window's command counts. A unit that writes sends one WATCH per attempt: more than
    one a request means stale copies or conflicts made units run again."""
    trips = sum(commands.get(c, 0) for c in TRIP_COMMANDS)
    return commands.get("watch", 0) / answered, trips / answered


async def command_calls(client: Redis) -> dict[str, int]:
    """Redis's count of calls per command (INFO commandstats)."""
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def ours() -> list[psutil.Process]:
    """This bench and everything it started: servers, Redis, the load generator."""
    me = psutil.Process()
    return [me, *me.children(recursive=True)]


@dataclass
class Bench:
    seconds: float
    warmup: float
    concurrency: int
    conferences: int
    workdir: Path
    redis: EmbeddedRedis
    double: TwilioDouble
    loadgen: LoadGen
    settle_s: float = 5.0
    profile: Path | None = None
    database_url: str | None = None  # --history-ab: the writer's PostgreSQL
    client: Redis = field(init=False)

    def __post_init__(self) -> None:
        self.client = Redis.from_url(self.redis.url, decode_responses=True)

    async def server_run(self, target: str, workers: int, number: int) -> Run:
        run = Run(target, workers, number)
        if self.settle_s:
            await settle(self.settle_s)
        await self.clear_state()
        if target in HISTORY_TARGETS:
            server = await self.start_asgi(target == "history", workers)
        elif target in BENCH_APPS:
            server = await self.start_module(target, workers)
        else:
            server = await start_server(
                target, self.workdir, self.redis.url, self.double.base_url, workers=workers
            )
        try:
            run.startup_s = server.healthy_s
            # With several workers /healthz answers as soon as one is up: memory is
            # read once every process has gone quiet (all imports done).
            run.quiet_s = run.startup_s + await quiet(server)
            await asyncio.sleep(IDLE_SECONDS)
            serving = server.workers()
            if serving[0].pid != server.process.pid:
                run.master_rss_mb = server.master().memory_info().rss / MB
            run.worker_rss_mb = [w.memory_info().rss / MB for w in serving]
            await self.loadgen.command("target", url=server.url)
            routes = {"hello": ["hello"], "floor": ["floor"], "warmline": ["status", "voice"]}.get(
                target, ["status"]
            )
            for route in routes:
                run.phases.append(await self.phase(server, route, f"{target}-{workers}-{number}"))
        finally:
            server.stop()
        return run

    async def phase(self, server: Server, route: str, label: str) -> Phase:
        phase = Phase(route)
        redis_process = psutil.Process(self.redis.process.pid)
        # Closed loop: warm up (connections, caches), then the measured window.
        await self.clear_state()
        conferences = await self.open_conferences(server) if route == "status" else []
        kind = LOAD_KINDS[route]
        await self.loadgen.command(
            "prepare", kind=kind, count=WARMUP_PREPARED, conferences=conferences
        )
        warm = await self.loadgen.command(
            "closed", seconds=self.warmup, concurrency=self.concurrency
        )
        phase.statuses = dict(warm["statuses"])
        if route == "voice":
            await self.clear_state()
        headroom = PREPARE_HEADROOM if route in ("status", "voice") else BASELINE_HEADROOM
        count = math.ceil(max(warm["rate"], 100.0) * headroom * self.seconds) + 500
        prepared = await self.loadgen.command("prepare", kind=kind, count=count)
        phase.request_bytes = prepared["bytes"]
        profiler = self.start_profile(server, f"{label}-{route}")
        async with Meter(server, redis_process, self.client) as meter:
            closed = await self.loadgen.command(
                "closed", seconds=self.seconds, concurrency=self.concurrency
            )
        if profiler is not None:
            profiler.wait()
        if server.kind == "history":
            phase.history_lag = await self.history_lag()
        add(phase.statuses, closed["statuses"])
        phase.max_rate = closed["rate"]
        phase.exhausted = closed["exhausted"]
        phase.closed_p50_ms = closed["latency_ms"]["p50"]
        phase.closed_p99_ms = closed["latency_ms"]["p99"]
        answered = max(1, closed["answered"])
        phase.server_cpu_ms = meter.server_s / answered * 1000
        phase.server_cores = meter.server_s / meter.elapsed
        phase.worker_cores = meter.worker_cores
        phase.redis_cpu_ms = meter.redis_s / answered * 1000
        phase.loadgen_cores = closed["cpu_s"] / closed["wall_s"]
        phase.loadgen_us = closed["cpu_s"] / answered * 1e6
        phase.others_cores = meter.others_cores
        phase.unit_attempts, phase.redis_trips = unit_costs(meter.commands, answered)
        phase.redis_calls = {k: v / answered for k, v in sorted(meter.commands.items())}
        if route == "voice":
            phase.queue_end = await self.client.llen(keys.QUEUE)
        # Open loop at half that rate, on fresh state.
        phase.half_rate = phase.max_rate / 2
        count = max(1, round(phase.half_rate * self.seconds))
        if route == "status":
            await self.clear_state()
            conferences = await self.open_conferences(server)
        elif route == "voice":
            await self.clear_state()
        await self.loadgen.command("prepare", kind=kind, count=count, conferences=conferences)
        async with Meter(server, redis_process, self.client) as meter:
            half = await self.loadgen.command(
                "open",
                rate=max(phase.half_rate, 1.0),
                seconds=self.seconds,
                concurrency=self.concurrency,
            )
        add(phase.statuses, half["statuses"])
        phase.achieved_rate = half["achieved_rate"]
        phase.p50_ms = half["latency_ms"]["p50"]
        phase.p99_ms = half["latency_ms"]["p99"]
        phase.max_ms = half["latency_ms"]["max"]
        phase.dispatch_lag_p99_ms = half["dispatch_lag_ms"]["p99"]
        phase.dispatch_lag_max_ms = half["dispatch_lag_ms"]["max"]
        phase.slowest = half["slowest"]
        phase.server_cpu_ms_half = meter.server_s / max(1, half["answered"]) * 1000
        phase.unit_attempts_half, phase.redis_trips_half = unit_costs(
            meter.commands, max(1, half["answered"])
        )
        phase.loadgen_cores_half = half["cpu_s"] / half["wall_s"]
        return phase

    async def start_asgi(self, history: bool, workers: int) -> Server:
        """``warmline.asgi`` under ``bench.serve``, with the writer's database or none.
        The event log and the writers' group start empty, so a writer never catches up
        on an earlier server's events in its window."""
        await self.client.delete(keys.EVENTS)
        port = free_port()
        env = server_env(self.redis.url, self.double.base_url, port, WEB_CONCURRENCY=str(workers))
        env.pop("DATABASE_URL", None)
        if history:
            assert self.database_url is not None
            env["DATABASE_URL"] = self.database_url
        kind = "history" if history else "nohistory"
        args = [sys.executable, "-m", "bench.serve", "warmline.asgi:quart_app"]
        return await started(kind, port, args, env, self.workdir / f"{kind}-{port}.log")

    async def start_module(self, kind: str, workers: int) -> Server:
        """A baseline of ``BENCH_APPS`` under ``bench.serve`` (Warmline's Hypercorn
        Config), with the environment `warmline serve` gets (PUBLIC_BASE_URL, the
        account's auth token, REDIS_URL) and no database."""
        port = free_port()
        env = server_env(self.redis.url, self.double.base_url, port, WEB_CONCURRENCY=str(workers))
        env.pop("DATABASE_URL", None)
        args = [sys.executable, "-m", "bench.serve", BENCH_APPS[kind]]
        return await started(kind, port, args, env, self.workdir / f"{kind}-{port}.log")

    async def history_lag(self) -> int | None:
        """Events the writers have not stored yet (given and unacknowledged, or not
        given), or None before the group exists."""
        with contextlib.suppress(Exception):
            for group in await self.client.xinfo_groups(keys.EVENTS):
                if group["name"] == history_log.GROUP:
                    return int(group["pending"]) + int(group.get("lag") or 0)
        return None

    async def open_conferences(self, server: Server) -> list[dict[str, Any]]:
        """``--conferences`` live conferences, each opened as Twilio would (Voice URL,
        conference-start, the customer's participant-join); returns what the load
        generator needs to continue each one's SequenceNumbers."""
        conferences = [Conference(call_sid()) for _ in range(self.conferences)]
        holds = len(self.double.participant_updates())
        groups = [conferences[i::SETUP_CONCURRENCY] for i in range(SETUP_CONCURRENCY)]
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(
                *(
                    WarmlineProducer(group).setup(session, server.url, self.double)
                    for group in groups
                    if group
                )
            )
        # Each join makes the app put its lone customer on hold through the REST API
        # (in the background): let those finish before anything is timed.
        deadline = time.monotonic() + 10
        while len(self.double.participant_updates()) < holds + len(conferences):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        await quiet(server)  # and the app's handling of their answers
        return [
            {"name": c.name, "sid": c.sid, "seq": next(c.seq), "held": c.held} for c in conferences
        ]

    async def clear_state(self) -> None:
        """Forget every call (conferences, queue, timelines) so that each window starts
        from the same state; users, agents and the event log stay. The versions go
        too: a server's copy of the state must not outlive a change made behind its
        back (console/domain/unit_state.py)."""
        patterns = [keys.conference("*"), keys.timeline("*"), "floor:*"]
        doomed = [keys.QUEUE, keys.QUEUE_INFO, keys.LIVE, keys.TRANSFERS]
        doomed += [keys.VERSION, keys.LINE_VERSION]
        for pattern in patterns:
            doomed.extend([key async for key in self.client.scan_iter(pattern, count=1000)])
        for start in range(0, len(doomed), 1000):
            await self.client.delete(*doomed[start : start + 1000])

    def start_profile(self, server: Server, label: str) -> subprocess.Popen[bytes] | None:
        if self.profile is None or server.kind in ("hello", "bare"):
            return None
        return start_py_spy(server.workers()[0].pid, self.seconds, self.profile / f"{label}.txt")

    # -- the REST dial is not on the Voice URL's path ---------------------------------

    async def dial_check(self, trials: int, delay: float) -> dict[str, Any]:
        """One worker, one agent available per trial, Twilio's REST API answering the
        agent dial after ``delay`` s: the Voice URL's answer time beside the same
        request with nobody available, and when the dial was sent and returned."""
        agents = [f"bench_agent{i}" for i in range(trials)]
        for name in agents:
            with contextlib.suppress(Exception):  # already there from an earlier check
                await add_user(self.client, name, "agent", PASSWORD)
        await self.client.delete(keys.AGENTS)
        await self.clear_state()  # and the versions, for the AGENTS just deleted
        server = await start_server("warmline", self.workdir, self.redis.url, self.double.base_url)
        result: dict[str, Any] = {"trials": [], "delay_s": delay}
        try:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
                for name in agents:
                    cookie = await login(session, server.url, name)
                    await self.clear_state()
                    idle_ms, _ = await voice_once(session, server.url)
                    await self.clear_state()
                    async with session.post(
                        server.url + "/api/me/status",
                        json={"status": "available"},
                        headers={"Cookie": cookie},
                    ) as response:
                        if response.status != 200:
                            raise RuntimeError(f"set available: {response.status}")
                    dials = len(self.double.calls_created())
                    self.double.delay_next("/Calls.json", delay, method="POST")
                    began = time.monotonic()
                    answer_ms, sid = await voice_once(session, server.url)
                    sent_ms = done_ms = float("nan")
                    deadline = began + delay + 5
                    while time.monotonic() < deadline:
                        now_ms = (time.monotonic() - began) * 1000
                        if math.isnan(sent_ms) and len(self.double.calls_created()) > dials:
                            sent_ms = now_ms
                        if await self.dial_recorded(sid):
                            done_ms = now_ms
                            break
                        await asyncio.sleep(0.01)
                    result["trials"].append(
                        {
                            "idle_answer_ms": idle_ms,
                            "answer_ms": answer_ms,
                            "dial_sent_ms": sent_ms,
                            "dial_returned_ms": done_ms,
                        }
                    )
        finally:
            server.stop()
        trials_ = result["trials"]
        for name in ("idle_answer_ms", "answer_ms", "dial_sent_ms", "dial_returned_ms"):
            result[name] = median([t[name] for t in trials_])
        result["ok"] = all(
            t["answer_ms"] < delay * 1000 / 4 and t["dial_returned_ms"] >= delay * 1000
            for t in trials_
        )
        return result

    async def dial_recorded(self, conference: str) -> bool:
        """The agent dial of ``conference`` has its CallSid: the REST call returned."""
        raw = await self.client.get(keys.conference(conference))
        if not raw:
            return False
        dials = json.loads(raw).get("dials", {})
        return any(d.get("call_sid") for d in dials.values())


async def login(session: aiohttp.ClientSession, url: str, username: str) -> str:
    form = {"username": username, "password": PASSWORD}
    async with session.post(url + "/login", data=form, allow_redirects=False) as response:
        if response.status != 303:
            raise RuntimeError(f"login {username}: {response.status}")
        return f"warmline_session={response.cookies['warmline_session'].value}"


async def voice_once(session: aiohttp.ClientSession, url: str) -> tuple[float, str]:
    """One signed Voice URL request; its answer time (ms) and the new CallSid."""
    sid = call_sid()
    params = voice_params(sid)
    headers = WarmlineProducer([]).signed(url + VOICE_PATH, params)
    began = time.monotonic()
    async with session.post(url + VOICE_PATH, data=params, headers=headers) as response:
        body = await response.text()
    elapsed = (time.monotonic() - began) * 1000
    if response.status != 200 or "<Conference" not in body:
        raise RuntimeError(f"Voice URL: {response.status} {body[:200]}")
    return elapsed, sid


def add(total: dict[str, int], more: dict[str, int]) -> None:
    for status, n in more.items():
        total[status] = total.get(status, 0) + n


async def run(
    args: argparse.Namespace,
) -> tuple[list[Run], dict[str, Any] | None, dict[str, dict[str, float]]]:
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    runs: list[Run] = []
    dial: dict[str, Any] | None = None
    if args.settle:
        await settle(args.settle)
    imports = await asyncio.to_thread(import_footprints)
    with tempfile.TemporaryDirectory(prefix="warmline-bench-") as tmp:
        workdir = Path(tmp)
        redis = start_redis(workdir / "redis", persist=False)
        postgres = history_database(workdir) if args.history_ab else None
        loadgen = LoadGen()
        try:
            async with TwilioDouble(ACCOUNT_SID, AUTH_TOKEN) as double:
                bench = Bench(
                    args.seconds,
                    args.warmup,
                    args.concurrency,
                    args.conferences,
                    workdir,
                    redis,
                    double,
                    loadgen,
                    settle_s=args.settle,
                    profile=args.profile,
                    database_url=postgres.url if postgres is not None else None,
                )
                try:
                    for number in range(1, args.rounds + 1):
                        order = list(HISTORY_TARGETS) if args.history_ab else ["warmline", "hello"]
                        # The floor: by default beside warmline serve, on request (--floor)
                        # beside --history-ab's servers.
                        if args.floor or (args.floor is None and not args.history_ab):
                            order.append("floor")
                        if not number % 2:
                            order.reverse()
                        for count in workers:
                            for target in order:
                                began = time.monotonic()
                                result = await bench.server_run(target, count, number)
                                runs.append(result)
                                report_run(result, time.monotonic() - began)
                    if args.dial_trials:
                        dial = await bench.dial_check(args.dial_trials, args.dial_delay)
                finally:
                    await bench.client.aclose()
        finally:
            loadgen.close()
            redis.stop()
            if postgres is not None:
                postgres.stop()
    return runs, dial, imports


def history_database(workdir: Path) -> EmbeddedPostgres:
    """--history-ab: a durable PostgreSQL (fsync on) in ``workdir``, migrated."""
    workdir.chmod(0o755)  # PostgreSQL may run as another user (we may be root)
    postgres = start_postgres(workdir / "postgres")
    upgrade(postgres.url)
    return postgres


def import_footprint(modules: str) -> dict[str, float]:
    """RSS (MB) and import time (s) of a fresh interpreter once it imported ``modules``
    (RSS from /proc, so that nothing else is imported to read it; Linux)."""
    code = (
        "import time; began = time.perf_counter()\n"
        f"import {modules}\n"
        "took = time.perf_counter() - began\n"
        "import os\n"
        "with open('/proc/self/statm') as f: pages = int(f.read().split()[1])\n"
        "print(pages * os.sysconf('SC_PAGE_SIZE'), took)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return {"rss_mb": int(out[0]) / MB, "seconds": float(out[1])}


def import_footprints(tries: int = 3) -> dict[str, dict[str, float]]:
    found: dict[str, list[dict[str, float]]] = {name: [] for name in IMPORT_SETS}
    for _ in range(tries):
        for name, modules in IMPORT_SETS.items():
            found[name].append(import_footprint(modules))
    return {
        name: {key: median([f[key] for f in figures]) for key in ("rss_mb", "seconds")}
        for name, figures in found.items()
    }


def report_run(run: Run, took: float) -> None:
    for phase in run.phases:
        print(
            f"round {run.round} {run.target:8} x{run.workers} {phase.route:6} "
            f"max {phase.max_rate:6.0f}/s  at {phase.half_rate:5.0f}/s p50 {phase.p50_ms:5.1f} "
            f"p99 {phase.p99_ms:6.1f} ms  cpu {phase.server_cpu_ms:.2f} ms/req  "
            f"loadgen {phase.loadgen_cores:.2f} cores  others {phase.others_cores:.2f}  "
            f"start-up {run.startup_s:.2f} s  ({took:.0f} s)"
            + (f"  non-2xx: {phase.statuses}" if phase.non_2xx else ""),
            file=sys.stderr,
            flush=True,
        )


def median(values: list[float]) -> float:
    values = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(values) if values else float("nan")


def summarize(runs: list[Run]) -> list[dict[str, Any]]:
    hello_max = baseline_max(runs, "hello")
    floor_max = baseline_max(runs, "floor")
    rows = []
    for workers, target in dict.fromkeys((r.workers, r.target) for r in runs):
        for route in ("hello", "floor", "status", "voice"):
            own = [r for r in runs if r.workers == workers and r.target == target]
            pairs = [(r, p) for r in own for p in r.phases if p.route == route]
            if not pairs:
                continue
            phases = [p for _, p in pairs]
            ratios = [
                p.max_rate / hello_max[(r.round, r.workers)]
                for r, p in pairs
                if hello_max.get((r.round, r.workers))
            ]
            vs_floor = [
                p.max_rate / floor_max[(r.round, r.workers)]
                for r, p in pairs
                if floor_max.get((r.round, r.workers))
            ]
            statuses: dict[str, int] = {}
            for p in phases:
                add(statuses, p.statuses)
            rows.append(
                {
                    "route": route,
                    "target": target,
                    "workers": workers,
                    "rounds": len(phases),
                    "max_rate": median([p.max_rate for p in phases]),
                    "vs_hello": median(ratios),
                    "vs_floor": median(vs_floor),
                    "vs_floor_rounds": vs_floor,
                    "closed_p50_ms": median([p.closed_p50_ms for p in phases]),
                    "closed_p99_ms": median([p.closed_p99_ms for p in phases]),
                    "half_rate": median([p.half_rate for p in phases]),
                    "achieved_rate": median([p.achieved_rate for p in phases]),
                    "p50_ms": median([p.p50_ms for p in phases]),
                    "p99_ms": median([p.p99_ms for p in phases]),
                    "max_ms": median([p.max_ms for p in phases]),
                    "dispatch_lag_p99_ms": median([p.dispatch_lag_p99_ms for p in phases]),
                    "server_cpu_ms": median([p.server_cpu_ms for p in phases]),
                    "server_cpu_ms_half": median([p.server_cpu_ms_half for p in phases]),
                    "server_cores": median([p.server_cores for p in phases]),
                    "worker_cores": [
                        median([p.worker_cores[i] for p in phases if len(p.worker_cores) > i])
                        for i in range(max(len(p.worker_cores) for p in phases))
                    ],
                    "redis_cpu_ms": median([p.redis_cpu_ms for p in phases]),
                    "unit_attempts": median([p.unit_attempts for p in phases]),
                    "redis_trips": median([p.redis_trips for p in phases]),
                    "unit_attempts_half": median([p.unit_attempts_half for p in phases]),
                    "redis_trips_half": median([p.redis_trips_half for p in phases]),
                    "loadgen_cores": median([p.loadgen_cores for p in phases]),
                    "loadgen_cores_half": median([p.loadgen_cores_half for p in phases]),
                    "loadgen_us": median([p.loadgen_us for p in phases]),
                    "others_cores": median([p.others_cores for p in phases]),
                    "queue_end": median([p.queue_end for p in phases]),
                    "history_lag": [p.history_lag for p in phases],
                    "request_bytes": median([p.request_bytes for p in phases]),
                    "exhausted": any(p.exhausted for p in phases),
                    "statuses": statuses,
                    "non_2xx": sum(p.non_2xx for p in phases),
                    "startup_s": median([r.startup_s for r, _ in pairs]),
                    "quiet_s": median([r.quiet_s for r, _ in pairs]),
                    "master_rss_mb": median(
                        [r.master_rss_mb for r, _ in pairs if r.master_rss_mb is not None]
                    ),
                    "worker_rss_mb": median([median(r.worker_rss_mb) for r, _ in pairs]),
                }
            )
    return rows


def baseline_max(runs: list[Run], target: str) -> dict[tuple[int, int], float]:
    """A baseline's max throughput by (round, workers)."""
    return {(r.round, r.workers): p.max_rate for r in runs if r.target == target for p in r.phases}


def table(
    rows: list[dict[str, Any]],
    dial: dict[str, Any] | None,
    imports: dict[str, dict[str, float]],
    args: Any,
    runs: list[Run] | None = None,
) -> str:
    header = (
        "| route (server) | workers | max req/s | x hello | x floor | ½-max rate req/s "
        "| p50 / p99 ms at ½ max | p99 ms at max | server CPU ms/req | Redis CPU ms/req "
        "| unit attempts/req (max / ½) "
        "| Redis round trips/req (max / ½) "
        "| load gen CPU "
        "cores (max / ½) | others' CPU cores | non-2xx | start-up s | idle RSS MB master "
        "/ each worker |"
    )
    lines = [header, "|" + " --- |" * 17]
    for row in rows:
        ratio = (
            ""
            if row["route"] == "hello" or math.isnan(row["vs_hello"])
            else f"{row['vs_hello']:.2f}"
        )
        floor = (
            ""
            if row["route"] == "floor" or math.isnan(row["vs_floor"])
            else f"{row['vs_floor']:.2f}"
        )
        master = "in-process" if math.isnan(row["master_rss_mb"]) else f"{row['master_rss_mb']:.0f}"
        lines.append(
            f"| {ROUTES[row['route']]} ({row['target']}) | {row['workers']} "
            f"| {row['max_rate']:,.0f}{' (ran out)' if row['exhausted'] else ''} | {ratio} "
            f"| {floor} "
            f"| {row['half_rate']:,.0f} | {row['p50_ms']:.1f} / {row['p99_ms']:.1f} "
            f"| {row['closed_p99_ms']:.1f} | {row['server_cpu_ms']:.2f} "
            f"| {row['redis_cpu_ms']:.2f} "
            f"| {row['unit_attempts']:.2f} / {row['unit_attempts_half']:.2f} "
            f"| {row['redis_trips']:.2f} / {row['redis_trips_half']:.2f} "
            f"| {row['loadgen_cores']:.2f} / "
            f"{row['loadgen_cores_half']:.2f} | {row['others_cores']:.2f} | {row['non_2xx']} "
            f"| {row['startup_s']:.2f} | {master} / {row['worker_rss_mb']:.0f} |"
        )
    lines.append("")
    lines.append(
        f"{args.concurrency} connections closed-loop for {args.seconds:g} s (after "
        f"{args.warmup:g} s warm-up), then open-loop at half that rate for {args.seconds:g} s, "
        f"latency from the scheduled send time; {args.conferences} conferences per "
        f"status-callback window; medians of {args.rounds} round(s). Targets: max "
        f"throughput ≥ {TARGET_RATIO} x hello-world at the same worker count, p99 ≤ "
        f"{TARGET_P99_MS:g} ms at half max rate, no non-2xx; with one worker, status "
        f"callbacks ≥ {FLOOR_TARGETS['status']} x floor and the Voice URL ≥ "
        f"{FLOOR_TARGETS['voice']} x floor (issue 21)."
    )
    lines.extend(floor_lines(rows))
    lines.extend(history_ab_lines(rows, runs or []))
    for row in rows:
        if row["target"] in ("hello", "floor"):
            continue
        checks = (
            []
            if math.isnan(row["vs_hello"])
            else [  # --history-ab runs no hello
                (f"≥ {TARGET_RATIO} x hello", row["vs_hello"] >= TARGET_RATIO),
            ]
        )
        checks += [
            (f"p99 ≤ {TARGET_P99_MS:g} ms", row["p99_ms"] <= TARGET_P99_MS),
            *floor_checks(row),
            ("no non-2xx", row["non_2xx"] == 0),
        ]
        verdict = ", ".join(f"{name}: {'ok' if ok else 'MISS'}" for name, ok in checks)
        extra = (
            f" (queue at the end of the max window: {row['queue_end']:.0f} callers)"
            if row["route"] == "voice"
            else ""
        )
        server = "" if row["target"] == "warmline" else f" ({row['target']})"
        lines.append(
            f"{ROUTES[row['route']]}{server}, {row['workers']} worker(s): {verdict}{extra}"
        )
    loadgen = [row for row in rows if row["route"] == "hello"]
    if loadgen:
        busiest = max(loadgen, key=lambda row: row["loadgen_cores"])
        lines.append(
            f"Load generator (a process of its own): {busiest['loadgen_us']:.0f} µs CPU per "
            f"request, {busiest['loadgen_cores']:.2f} cores at hello-world's max rate."
        )
    lines.append(
        "Imports alone, in a fresh interpreter (RSS / import time): "
        + "; ".join(
            f"{name} {figures['rss_mb']:.0f} MB / {figures['seconds']:.2f} s"
            for name, figures in imports.items()
        )
        + "."
    )
    for row in rows:
        if row["non_2xx"]:
            lines.append(f"{ROUTES[row['route']]} x{row['workers']} answers: {row['statuses']}")
    if dial is not None:
        lines.append(
            f"REST dial off the Voice URL's path ({len(dial['trials'])} trials, one agent "
            f"available, dial answered after {dial['delay_s']:g} s): Voice URL answered in "
            f"{dial['answer_ms']:.1f} ms (nobody available: {dial['idle_answer_ms']:.1f} ms); "
            f"the dial left {dial['dial_sent_ms']:.0f} ms after the request was sent and "
            f"returned after {dial['dial_returned_ms']:.0f} ms: "
            f"{'ok' if dial['ok'] else 'MISS'}"
        )
    return "\n".join(lines)


def floor_checks(row: dict[str, Any]) -> list[tuple[str, bool]]:
    """Issue 21's target for a Warmline route at one worker, when the floor ran."""
    target = FLOOR_TARGETS.get(row["route"])
    if target is None or row["workers"] != 1 or math.isnan(row["vs_floor"]):
        return []
    return [(f"≥ {target} x floor", row["vs_floor"] >= target)]


def floor_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Each Warmline route's max throughput ÷ the floor's, median and round by round."""
    lines = []
    for row in rows:
        if row["route"] not in FLOOR_TARGETS or math.isnan(row["vs_floor"]):
            continue
        target = FLOOR_TARGETS[row["route"]]
        verdict = (
            f"target ≥ {target}: {'ok' if row['vs_floor'] >= target else 'MISS'}"
            if row["workers"] == 1
            else "the target is for one worker"
        )
        lines.append(
            f"{ROUTES[row['route']]} ({row['target']}) ÷ floor, {row['workers']} worker(s): "
            f"{row['vs_floor']:.2f} (rounds: "
            f"{', '.join(f'{r:.2f}' for r in row['vs_floor_rounds'])}); {verdict}"
        )
    return lines


def history_ab_lines(rows: list[dict[str, Any]], runs: list[Run]) -> list[str]:
    """--history-ab: the status callback's max throughput with the writer ÷ without,
    from the medians and round by round."""
    lines = []
    for workers in dict.fromkeys(row["workers"] for row in rows):
        rate = {
            row["target"]: row["max_rate"]
            for row in rows
            if row["workers"] == workers and row["route"] == "status"
        }
        if not all(t in rate for t in HISTORY_TARGETS):
            continue
        per_round = {
            (r.round, r.target): p.max_rate
            for r in runs
            if r.workers == workers and r.target in HISTORY_TARGETS
            for p in r.phases
            if p.route == "status"
        }
        rounds = sorted({n for n, _ in per_round})
        ratios = [
            per_round[(n, "history")] / per_round[(n, "nohistory")]
            for n in rounds
            if (n, "history") in per_round and per_round.get((n, "nohistory"))
        ]
        ratio = rate["history"] / rate["nohistory"]
        lags = [
            lag
            for row in rows
            if row["workers"] == workers and row["target"] == "history"
            for lag in row["history_lag"]
        ]
        verdict = "ok" if ratio >= 1 - HISTORY_AB_MAX_LOSS else "MISS"
        lines.append(
            f"Status callback, {workers} worker(s), history writer on vs off: "
            f"{rate['history']:,.0f} vs {rate['nohistory']:,.0f} req/s = {ratio:.3f} "
            f"(rounds: {', '.join(f'{r:.3f}' for r in ratios)}); within "
            f"{HISTORY_AB_MAX_LOSS:.0%}: {verdict}; events not yet stored at the end of each "
            f"max window: {lags}"
        )
    return lines


def no_nan(value: Any) -> Any:
    """``value`` with every NaN (a figure that could not be measured) as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [no_nan(v) for v in value]
    return value


def register(commands: argparse._SubParsersAction) -> None:
    """``python -m bench webhooks``."""
    hooks = commands.add_parser(
        "webhooks", help="Twilio webhooks: throughput, latency, start-up, memory vs hello-world"
    )
    hooks.add_argument("--rounds", type=int, default=3)
    hooks.add_argument("--seconds", type=float, default=4.0, help="each measured window")
    hooks.add_argument("--warmup", type=float, default=1.0, help="closed-loop warm-up")
    hooks.add_argument("--concurrency", type=int, default=32, help="load connections")
    hooks.add_argument("--workers", default="1,2", help="comma list of WEB_CONCURRENCY values")
    hooks.add_argument(
        "--conferences", type=int, default=200, help="live conferences per callback window"
    )
    hooks.add_argument(
        "--dial-trials", type=int, default=5, help="slow-REST Voice URL trials (0: skip)"
    )
    hooks.add_argument("--dial-delay", type=float, default=2.0, help="REST dial delay, seconds")
    hooks.add_argument(
        "--settle",
        type=float,
        default=5.0,
        help="before each server, wait up to this long for the machine to be quiet",
    )
    hooks.add_argument("--json", type=Path, help="also write every figure here")
    hooks.add_argument(
        "--history-ab",
        action="store_true",
        help="status callback with the history writer on and off, side by side",
    )
    hooks.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure the floor (bench/floor_app.py: form, signature, one Redis MULTI) too; "
        "default: yes, but not with --history-ab",
    )
    hooks.add_argument("--profile", type=Path, help="py-spy raw stacks of Warmline's worker here")
    hooks.set_defaults(main=main)


def main(args: argparse.Namespace) -> int:
    runs, dial, imports = asyncio.run(run(args))
    rows = summarize(runs)
    print(table(rows, dial, imports, args, runs))
    if args.json:
        figures = {
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "rows": rows,
            "runs": [asdict(r) for r in runs],
            "dial_check": dial,
            "imports": imports,
        }
        figures["options"].pop("main", None)
        args.json.write_text(json.dumps(no_nan(figures), indent=2))
    return 0
