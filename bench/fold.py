"""Fold benchmark (issue 21, "cost flat in a call's length"): one status callback on a
conference with ``--history`` earlier callbacks against one on a fresh conference, on
one `warmline serve` worker, side by side in one run.

Setup: ``--conferences`` long conferences, each opened as Twilio would (Voice URL,
conference-start, the customer's participant-join) and then given hold / unhold
toggles until it holds ``--history`` callbacks. Then ``--rounds`` rounds; in each,
two windows in alternation (long first in odd rounds, fresh first in even ones):

- long: one more hold toggle on each long conference;
- fresh: ``--conferences`` new conferences are opened (untimed, before the windows),
  and the window sends the same hold toggle to each, its third callback.

Every request is sent alone and timed from send to answer. Each window also reads
Redis's command counts and its network bytes (INFO, before and after): the units'
round trips (WATCH, EVALSHA, MGET, HMGET: one per trip, as in bench/webhooks.py; a
callback below the folded ones would add an LRANGE, which in-order delivery never
needs) and the bytes moved per request, the app's background work included. The
ratio long ÷ fresh of the median wall time is the figure checked (target: at most
1.10).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from bench.load import Conference, WarmlineProducer, call_sid
from bench.measure import TRIP_COMMANDS, cpu_seconds, percentile, settle
from bench.servers import Server, start_server
from console.domain import keys
from simulator.testing import ACCOUNT_SID, AUTH_TOKEN, TwilioDouble
from warmline.embedded_redis import start_redis

TARGET_RATIO = 1.10
SETUP_CONCURRENCY = 8


@dataclass
class Window:
    kind: str  # long | fresh
    round: int
    wall_ms: list[float] = field(default_factory=list)
    commands: dict[str, int] = field(default_factory=dict)
    net_in: int = 0  # bytes clients sent Redis
    net_out: int = 0  # bytes Redis sent clients
    record_bytes: float = 0.0  # mean size of the conferences' records afterwards

    @property
    def trips(self) -> float:
        return sum(self.commands.get(c, 0) for c in TRIP_COMMANDS) / max(1, len(self.wall_ms))


async def redis_counts(client: Redis) -> tuple[dict[str, int], int, int]:
    """INFO: calls per command, and the bytes Redis read and wrote on its sockets."""
    stats = await client.info("commandstats")
    net = await client.info("stats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    return calls, int(net["total_net_input_bytes"]), int(net["total_net_output_bytes"])


async def quiet(server: Server, limit_s: float = 10.0) -> None:
    """Until the server uses under 5 % of a core over 0.25 s: the effects of the last
    window (the REST hold of a lone customer, and its unit) are done."""
    began = time.monotonic()
    while time.monotonic() - began < limit_s:
        before = cpu_seconds(server.processes())
        await asyncio.sleep(0.25)
        if cpu_seconds(server.processes()) - before < 0.0125:
            return


class Fold:
    def __init__(self, args: argparse.Namespace, server: Server, double: TwilioDouble) -> None:
        self.args = args
        self.server = server
        self.double = double
        self.client = Redis.from_url(args.redis_url, decode_responses=True)
        self.long = [Conference(call_sid()) for _ in range(args.conferences)]
        self.windows: list[Window] = []

    async def open(self, session: aiohttp.ClientSession, conferences: list[Conference]) -> None:
        """Conferences opened as Twilio would, their customer alone (on hold music)."""
        groups = [conferences[i::SETUP_CONCURRENCY] for i in range(SETUP_CONCURRENCY)]
        await asyncio.gather(
            *(
                WarmlineProducer(group).setup(session, self.server.url, self.double)
                for group in groups
                if group
            )
        )

    async def fill(self, session: aiohttp.ClientSession) -> None:
        """Each long conference given hold toggles up to ``--history`` callbacks (the
        Voice URL is no callback; conference-start and the join are two)."""

        async def one(conference: Conference) -> None:
            producer = WarmlineProducer([conference])
            for _ in range(self.args.history - 2):
                sent = await producer.send(session, self.server.url)
                if sent.status != 204:
                    raise RuntimeError(f"status callback answered {sent.status}")

        await self.open(session, self.long)
        await asyncio.gather(*(one(c) for c in self.long))

    async def window(
        self, session: aiohttp.ClientSession, kind: str, number: int, targets: list[Conference]
    ) -> Window:
        window = Window(kind, number)
        producer = WarmlineProducer(targets)
        calls0, in0, out0 = await redis_counts(self.client)
        for _ in targets:
            sent = await producer.send(session, self.server.url)
            if sent.status != 204:
                raise RuntimeError(f"status callback answered {sent.status}")
            window.wall_ms.append(sent.response_ms)
        await quiet(self.server)
        calls1, in1, out1 = await redis_counts(self.client)
        window.commands = {k: v - calls0.get(k, 0) for k, v in calls1.items()}
        window.commands = {k: v for k, v in window.commands.items() if v and k != "info"}
        window.net_in, window.net_out = in1 - in0, out1 - out0
        sizes = [await self.client.strlen(keys.conference(c.name)) for c in targets]
        window.record_bytes = statistics.fmean(sizes)
        return window

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            began = time.monotonic()
            await self.fill(session)
            say(
                f"filled {len(self.long)} conferences to {self.args.history} callbacks "
                f"in {time.monotonic() - began:.1f} s"
            )
            await quiet(self.server)
            for number in range(1, self.args.rounds + 1):
                fresh = [Conference(call_sid()) for _ in range(self.args.conferences)]
                await self.open(session, fresh)
                await quiet(self.server)
                order = ["long", "fresh"] if number % 2 else ["fresh", "long"]
                for kind in order:
                    targets = self.long if kind == "long" else fresh
                    self.windows.append(await self.window(session, kind, number, targets))
                await self.client.delete(*(keys.conference(c.name) for c in fresh))
                await self.client.srem(keys.LIVE, *(c.name for c in fresh))
        await self.client.aclose()


def say(text: str) -> None:
    print(text, flush=True)


def summarize(windows: list[Window]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("long", "fresh"):
        chosen = [w for w in windows if w.kind == kind]
        wall = [ms for w in chosen for ms in w.wall_ms]
        requests = max(1, len(wall))
        commands: dict[str, int] = {}
        for w in chosen:
            for k, v in w.commands.items():
                commands[k] = commands.get(k, 0) + v
        out[kind] = {
            "requests": len(wall),
            "median_ms": statistics.median(wall),
            "mean_ms": statistics.fmean(wall),
            "p90_ms": percentile(wall, 90),
            "window_medians_ms": [statistics.median(w.wall_ms) for w in chosen],
            "trips": sum(commands.get(c, 0) for c in TRIP_COMMANDS) / requests,
            "commands": sum(commands.values()) / requests,
            "commands_by_name": {k: v / requests for k, v in sorted(commands.items())},
            "bytes_in": sum(w.net_in for w in chosen) / requests,
            "bytes_out": sum(w.net_out for w in chosen) / requests,
            "record_bytes": statistics.fmean(w.record_bytes for w in chosen),
        }
    long, fresh = out["long"], out["fresh"]
    out["ratio_median"] = long["median_ms"] / fresh["median_ms"]
    out["ratio_mean"] = long["mean_ms"] / fresh["mean_ms"]
    # Each round's long ÷ fresh (same round, alternated order): its spread shows the noise.
    pairs = zip(long["window_medians_ms"], fresh["window_medians_ms"], strict=True)
    out["ratio_by_round"] = [a / b for a, b in pairs]
    return out


def table(summary: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"One status callback (hold toggle), {args.conferences} conferences a window, "
        f"{args.rounds} rounds, one worker",
        "",
        "| conference | requests | median ms | mean ms | p90 ms | Redis trips/req "
        "| commands/req | bytes to Redis/req | bytes from Redis/req | record bytes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, label in (("long", f"{args.history} earlier callbacks"), ("fresh", "fresh")):
        row = summary[kind]
        lines.append(
            f"| {label} | {row['requests']} | {row['median_ms']:.2f} | {row['mean_ms']:.2f} "
            f"| {row['p90_ms']:.2f} | {row['trips']:.2f} | {row['commands']:.1f} "
            f"| {row['bytes_in']:.0f} | {row['bytes_out']:.0f} | {row['record_bytes']:.0f} |"
        )
    rounds = ", ".join(f"{r:.2f}" for r in summary["ratio_by_round"])
    ok = summary["ratio_median"] <= TARGET_RATIO
    lines += [
        "",
        f"long ÷ fresh, median wall time: {summary['ratio_median']:.3f} "
        f"(target ≤ {TARGET_RATIO:.2f}: {'met' if ok else 'NOT met'}); "
        f"mean: {summary['ratio_mean']:.3f}",
        f"per round (median of each window): {rounds}",
    ]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.settle:
        await settle(args.settle)
    with tempfile.TemporaryDirectory(prefix="warmline-fold-") as tmp:
        workdir = Path(tmp)
        redis = start_redis(workdir / "redis", persist=False)
        try:
            async with TwilioDouble(ACCOUNT_SID, AUTH_TOKEN) as double:
                server = await start_server("warmline", workdir, redis.url, double.base_url)
                try:
                    args.redis_url = redis.url
                    bench = Fold(args, server, double)
                    await bench.run()
                finally:
                    server.stop()
        finally:
            redis.stop()
    summary = summarize(bench.windows)
    summary["windows"] = [asdict(w) for w in bench.windows]
    return summary


def register(commands: argparse._SubParsersAction) -> None:
    """``python -m bench fold``."""
    fold = commands.add_parser(
        "fold", help="a status callback on a long conference vs on a fresh one (issue 21)"
    )
    fold.add_argument("--history", type=int, default=500, help="callbacks before the measured")
    fold.add_argument("--conferences", type=int, default=20, help="conferences per window")
    fold.add_argument("--rounds", type=int, default=20)
    fold.add_argument(
        "--settle", type=float, default=5.0, help="first wait up to this long for a quiet machine"
    )
    fold.add_argument("--json", type=Path, help="also write every figure here")
    fold.set_defaults(main=main)


def main(args: argparse.Namespace) -> int:
    if args.history < 3 or args.conferences < 1 or args.rounds < 1:
        print("bench fold: --history must be at least 3, --conferences and --rounds at least 1")
        return 2
    summary = asyncio.run(run(args))
    print(table(summary, args))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0 if summary["ratio_median"] <= TARGET_RATIO else 1
