"""Fan-out benchmark (issue 3; issue 6 item 3): Warmline against a bare Quart
broadcast, side by side in one run.

Per round, for each compression mode (permessage-deflate offered as browsers do, or
not offered) and each target (Warmline, bare), a fresh server (one Hypercorn worker)
is started, ``--sockets`` supervisor sockets are connected from two client
processes, ``--rate`` changes a second are sent for ``--seconds`` (after a short
warm-up), and every socket's messages are timed from the moment the request that
caused them was sent. Figures are the medians over ``--rounds`` rounds; targets are
run in alternation so that a noisy machine hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from redis.asyncio import Redis

from bench.load import BareProducer, Conference, Producer, WarmlineProducer, call_sid
from bench.measure import busy_seconds, cpu_seconds, percentile, settle, start_py_spy
from bench.servers import Server, start_server
from console.domain.users import add_user
from simulator.testing import ACCOUNT_SID, AUTH_TOKEN, TwilioDouble
from warmline.embedded_redis import start_redis

SUPERVISOR = "bench_supervisor"
PASSWORD = "bench-password-123"
CONFERENCES_PER_RATE = 1  # one conference per callback/s: each gets one a second
WARMUP_SECONDS = 2.0
QUIET_SECONDS = 1.0
DRAIN_SECONDS = 2.0
MB = 1024 * 1024


@dataclass
class Round:
    target: str
    mode: str
    sockets: int = 0
    connect_s: float = 0.0
    extensions: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    expected: int = 0
    delivered: int = 0
    resyncs: int = 0
    unmatched: int = 0
    window_s: float = 0.0
    rss_idle: int = 0
    rss_connected: int = 0
    rss_peak: int = 0
    worker_cpu: float = 0.0
    other_cpu: float = 0.0  # cores used meanwhile by processes outside the bench
    client_cpu: float = 0.0
    callback_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)

    @property
    def deliveries_per_s(self) -> float:
        return self.delivered / self.window_s if self.window_s else 0.0

    def per_1000(self, rss: int) -> float:
        return (rss - self.rss_idle) / MB * 1000 / self.sockets if self.sockets else 0.0


class ClientProcess:
    """One ``bench.clients`` process."""

    def __init__(self, url: str, cookie: str, count: int, compress: int) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.clients",
                "--url",
                url,
                "--cookie",
                cookie,
                "--count",
                str(count),
                "--compress",
                str(compress),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    async def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.to_thread(self.process.stdout.readline)
        if not line:
            raise RuntimeError("client process ended early")
        return json.loads(line)

    async def command(self, message: dict[str, Any]) -> dict[str, Any]:
        self.write(message)
        return await self.read()

    def write(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.write({"cmd": "close"})
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Bench:
    sockets: int
    rate: float
    seconds: float
    clients: int
    workdir: Path
    redis_url: str = ""
    double: TwilioDouble | None = None
    cookie: str = ""
    warmline: WarmlineProducer | None = None
    bare: BareProducer | None = None
    profile: Path | None = None
    settle_s: float = 0.0

    async def prepare(self) -> None:
        names = [call_sid() for _ in range(max(1, round(self.rate * CONFERENCES_PER_RATE)))]
        self.warmline = WarmlineProducer([Conference(n) for n in names])
        self.bare = BareProducer([Conference(n) for n in names])
        redis = Redis.from_url(self.redis_url, decode_responses=True)
        try:
            await add_user(redis, SUPERVISOR, "supervisor", PASSWORD)
        finally:
            await redis.aclose()

    async def first_warmline(self, server: Server) -> None:
        """Log in once (sessions live in Redis) and open the conferences once."""
        assert self.warmline is not None and self.double is not None
        async with aiohttp.ClientSession() as session:
            form = {"username": SUPERVISOR, "password": PASSWORD}
            async with session.post(
                server.url + "/login", data=form, allow_redirects=False
            ) as response:
                if response.status != 303:
                    raise RuntimeError(f"login: {response.status} {await response.text()}")
                self.cookie = f"warmline_session={response.cookies['warmline_session'].value}"
            await self.warmline.setup(session, server.url, self.double)

    async def round(self, target: str, mode: str) -> Round:
        assert self.double is not None
        result = Round(target, mode)
        if self.settle_s:
            await settle(self.settle_s)
        server = await start_server(
            target,
            self.workdir,
            self.redis_url,
            self.double.base_url,
            refuse_deflate=mode == "refused",
        )
        clients: list[ClientProcess] = []
        try:
            if target == "warmline" and not self.cookie:
                await self.first_warmline(server)
            producer = self.warmline if target == "warmline" else self.bare
            assert producer is not None
            worker = server.worker()
            await asyncio.sleep(0.5)
            result.rss_idle = worker.memory_info().rss
            started = time.monotonic()
            ws_url = server.url.replace("http://", "ws://") + "/ws"
            compress = 0 if mode == "none" else 15  # offered as browsers do
            share = [self.sockets // self.clients] * self.clients
            share[0] += self.sockets - sum(share)
            cookie = self.cookie if target == "warmline" else ""
            clients = [ClientProcess(ws_url, cookie, n, compress) for n in share]
            ready = await asyncio.gather(*(c.read() for c in clients))
            result.connect_s = time.monotonic() - started
            result.sockets = sum(r["connected"] for r in ready)
            result.extensions = sorted({e for r in ready for e in r["extensions"]})
            result.errors = [e for r in ready for e in r["errors"]]
            await asyncio.sleep(0.5)
            result.rss_connected = worker.memory_info().rss
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
                await self.send_for(session, server.url, producer, WARMUP_SECONDS)
                await asyncio.sleep(QUIET_SECONDS)
                await asyncio.gather(*(c.command({"cmd": "mark"}) for c in clients))
                cpu_before = worker.cpu_times()
                cpu_began = time.monotonic()
                ours = bench_processes(server, clients)
                ours_before = cpu_seconds(ours)
                system_before = busy_seconds()
                peak = [worker.memory_info().rss]
                sampler = asyncio.create_task(sample_rss(worker, peak))
                profiler = self.start_profile(worker, target, mode)
                sent, result.window_s = await self.send_for(
                    session, server.url, producer, self.seconds
                )
                cpu_after = worker.cpu_times()
                cpu_elapsed = time.monotonic() - cpu_began
                ours_used = cpu_seconds(ours) - ours_before
                result.other_cpu = (busy_seconds() - system_before - ours_used) / cpu_elapsed
                await asyncio.sleep(DRAIN_SECONDS)
                sampler.cancel()
                if profiler is not None:
                    profiler.wait()
            result.rss_peak = max(peak)
            result.worker_cpu = (
                cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system
            ) / cpu_elapsed
            result.sent = len(sent)
            result.callback_ms = [s.response_ms for s in sent]
            bad = [s for s in sent if s.status not in (200, 204)]
            if bad:
                result.errors.append(f"{len(bad)} callbacks answered {bad[0].status}")
            sends: dict[str, list[float]] = {}
            for s in sent:
                sends.setdefault(s.conference, []).append(s.at_ms)
            reports = await asyncio.gather(
                *(c.command({"cmd": "report", "sends": sends}) for c in clients)
            )
            for report in reports:
                result.latencies.extend(report["latencies"])
                result.delivered += len(report["latencies"])
                result.resyncs += report["resyncs"]
                result.unmatched += report["unmatched"]
                result.client_cpu += report["cpu_s"] / report["wall_s"]
                result.errors.extend(report["errors"])
            result.expected = result.sent * result.sockets
            return result
        finally:
            for client in clients:
                client.close()
            server.stop()

    async def send_for(
        self, session: aiohttp.ClientSession, base_url: str, producer: Producer, seconds: float
    ) -> tuple[list[Any], float]:
        """``rate`` requests a second, each on its own schedule (a slow answer does not
        delay the next request). Returns what was sent and the window it was sent in
        (from the first request to one interval after the last)."""
        interval = 1.0 / self.rate
        count = max(1, round(seconds * self.rate))
        start = time.monotonic()
        tasks = []
        for i in range(count):
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(producer.send(session, base_url)))
        window = time.monotonic() - start + interval
        return list(await asyncio.gather(*tasks)), window

    def start_profile(self, worker: Any, target: str, mode: str) -> subprocess.Popen[bytes] | None:
        if self.profile is None or target != "warmline":
            return None
        out = self.profile / f"{target}-{mode}-{int(time.time())}.txt"
        return start_py_spy(worker.pid, self.seconds, out)


def bench_processes(server: Server, clients: list[ClientProcess]) -> list[psutil.Process]:
    """This run's processes: itself, the server (master and worker), clients, Redis."""
    me = psutil.Process()
    found = [me, *me.children(recursive=True)]
    return [p for p in found if p.pid != 0]


async def sample_rss(worker: Any, peak: list[int]) -> None:
    while True:
        await asyncio.sleep(0.25)
        peak.append(worker.memory_info().rss)


async def run(
    sockets: int,
    rate: float,
    seconds: float,
    rounds: int,
    modes: list[str],
    clients: int,
    profile: Path | None,
    settle_s: float = 0.0,
) -> list[Round]:
    results: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="warmline-bench-") as tmp:
        workdir = Path(tmp)
        redis = start_redis(workdir / "redis", persist=False)
        try:
            async with TwilioDouble(ACCOUNT_SID, AUTH_TOKEN) as double:
                bench = Bench(
                    sockets, rate, seconds, clients, workdir, profile=profile, settle_s=settle_s
                )
                bench.redis_url = redis.url
                bench.double = double
                await bench.prepare()
                for number in range(1, rounds + 1):
                    for mode in modes:
                        for target in ("warmline", "bare"):
                            began = time.monotonic()
                            result = await bench.round(target, mode)
                            results.append(result)
                            print(
                                f"round {number} {target:8} {mode:7} "
                                f"p50 {result.p50:6.1f} ms  p99 {result.p99:7.1f} ms  "
                                f"{result.deliveries_per_s:8.0f}/s  "
                                f"+{result.per_1000(result.rss_peak):5.0f} MB/1000  "
                                f"cpu {result.worker_cpu:4.0%} "
                                f"(others {result.other_cpu:.2f} cores)  "
                                f"({time.monotonic() - began:.0f} s)"
                                + (f"  errors: {result.errors[:2]}" if result.errors else ""),
                                file=sys.stderr,
                                flush=True,
                            )
        finally:
            redis.stop()
    return results


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(results: list[Round]) -> list[dict[str, Any]]:
    rows = []
    for mode in dict.fromkeys(r.mode for r in results):
        for target in ("warmline", "bare"):
            rounds = [r for r in results if r.mode == mode and r.target == target]
            if not rounds:
                continue
            rows.append(
                {
                    "target": target,
                    "mode": mode,
                    "rounds": len(rounds),
                    "sockets": median([r.sockets for r in rounds]),
                    "extension": ", ".join(sorted({e for r in rounds for e in r.extensions})),
                    "p50_ms": median([r.p50 for r in rounds]),
                    "p99_ms": median([r.p99 for r in rounds]),
                    "max_ms": median([max(r.latencies, default=float("nan")) for r in rounds]),
                    "deliveries_per_s": median([r.deliveries_per_s for r in rounds]),
                    "delivered_ratio": median(
                        [r.delivered / r.expected if r.expected else 0.0 for r in rounds]
                    ),
                    "resyncs": sum(r.resyncs for r in rounds),
                    "rss_idle_mb": median([r.rss_idle / MB for r in rounds]),
                    "mb_per_1000_connected": median([r.per_1000(r.rss_connected) for r in rounds]),
                    "mb_per_1000_load": median([r.per_1000(r.rss_peak) for r in rounds]),
                    "worker_cpu": median([r.worker_cpu for r in rounds]),
                    "client_cpu": median([r.client_cpu for r in rounds]),
                    "other_cpu": median([r.other_cpu for r in rounds]),
                    "callback_p50_ms": median([percentile(r.callback_ms, 50) for r in rounds]),
                    "callback_p99_ms": median([percentile(r.callback_ms, 99) for r in rounds]),
                    "connect_s": median([r.connect_s for r in rounds]),
                    "errors": sorted({e for r in rounds for e in r.errors})[:3],
                }
            )
    bare = {row["mode"]: row for row in rows if row["target"] == "bare"}
    for row in rows:
        base = bare.get(row["mode"])
        row["vs_bare"] = (
            row["deliveries_per_s"] / base["deliveries_per_s"]
            if base and base["deliveries_per_s"]
            else float("nan")
        )
    return rows


def table(rows: list[dict[str, Any]], sockets: int, rate: float) -> str:
    header = (
        "| target | compression | p50 ms | p99 ms | max ms | deliveries/s | delivered "
        "| x bare | idle RSS MB | MB/1000 sockets (connected / under load) | worker CPU "
        "| clients CPU | others' CPU (cores) | callback p50/p99 ms |"
    )
    lines = [header, "|" + " --- |" * 14]
    for row in rows:
        lines.append(
            f"| {row['target']} | {row['mode']} ({row['extension']}) | {row['p50_ms']:.1f} "
            f"| {row['p99_ms']:.1f} | {row['max_ms']:.0f} | {row['deliveries_per_s']:,.0f} "
            f"| {row['delivered_ratio']:.2%} | {row['vs_bare']:.2f} | {row['rss_idle_mb']:.0f} "
            f"| {row['mb_per_1000_connected']:.0f} / {row['mb_per_1000_load']:.0f} "
            f"| {row['worker_cpu']:.0%} | {row['client_cpu']:.0%} | {row['other_cpu']:.2f} "
            f"| {row['callback_p50_ms']:.1f} / {row['callback_p99_ms']:.1f} |"
        )
    target = sockets * rate
    lines.append("")
    lines.append(
        f"{sockets} sockets x {rate:g} changes/s = {target:,.0f} deliveries/s offered. "
        "Targets: p99 ≤ 100 ms, ≤ 150 MB per 1,000 sockets, ≥ 0.8 x bare deliveries/s."
    )
    for row in rows:
        if row["target"] != "warmline":
            continue
        checks = [
            ("p99 ≤ 100 ms", row["p99_ms"] <= 100),
            ("≤ 150 MB/1000", row["mb_per_1000_load"] <= 150),
            ("≥ 0.8 x bare", row["vs_bare"] >= 0.8),
        ]
        verdict = ", ".join(f"{name}: {'ok' if ok else 'MISS'}" for name, ok in checks)
        lines.append(f"warmline, {row['mode']}: {verdict}")
    for row in rows:
        if row["errors"]:
            lines.append(f"{row['target']}/{row['mode']} errors: {row['errors']}")
    return "\n".join(lines)


def register(commands: argparse._SubParsersAction) -> None:
    """``python -m bench fanout``."""
    fan = commands.add_parser("fanout", help="WebSocket fan-out: Warmline beside a bare broadcast")
    fan.add_argument("--sockets", type=int, default=1000)
    fan.add_argument("--rate", type=float, default=20.0, help="callbacks per second")
    fan.add_argument("--seconds", type=float, default=8.0, help="measured window per round")
    fan.add_argument("--rounds", type=int, default=3)
    fan.add_argument(
        "--modes",
        default="deflate,none",
        help="comma list: deflate (offered as browsers do), none (not offered), "
        "refused (offered, declined by the server: see bench/refuse_deflate.py)",
    )
    fan.add_argument("--clients", type=int, default=2, help="client processes")
    fan.add_argument("--json", type=Path, help="also write every figure here")
    fan.add_argument("--profile", type=Path, help="py-spy raw stacks of Warmline's worker here")
    fan.add_argument(
        "--settle",
        type=float,
        default=5.0,
        help="before each round, wait up to this long for the machine to be quiet",
    )
    fan.set_defaults(main=main)


def main(args: argparse.Namespace) -> int:
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= {"deflate", "none", "refused"}:
        raise SystemExit("--modes takes deflate, none, refused")
    results = asyncio.run(
        run(
            args.sockets,
            args.rate,
            args.seconds,
            args.rounds,
            modes,
            args.clients,
            args.profile,
            args.settle,
        )
    )
    rows = summarize(results)
    print(table(rows, args.sockets, args.rate))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0
