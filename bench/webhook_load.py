"""The load generator of the webhooks benchmark (``python -m bench.webhook_load``).

A process of its own, so that the bench's orchestration (and the Twilio stand-in it
hosts) never shares an event loop with the load, and so that its CPU can be measured
apart. It speaks HTTP/1.1 over keep-alive connections with pre-built request bytes
(uvloop where installed): per request it writes one buffer, reads the head, then the
body by Content-Length (or chunks), so it costs far less CPU than the servers it drives.

It obeys one JSON command per stdin line and answers one JSON line on stdout:

- ``{"cmd": "target", "url": "http://127.0.0.1:PORT"}``: drop open connections; the
  next requests go there (signatures are computed over this URL, which is the
  server's PUBLIC_BASE_URL);
- ``{"cmd": "prepare", "kind": "status"|"voice"|"hello", "count": N, "conferences":
  [{"name", "sid", "seq", "held"}]}``: build and sign N requests before any timing:
  ``status`` toggles hold on each conference in turn with WarmlineProducer (each
  request a new SequenceNumber for its conference; without ``conferences`` it goes on
  with the previous ones, from the last request actually sent); ``voice`` is an
  incoming call with a new CallSid each; ``hello`` is the body of a status callback,
  for the hello app;
- ``{"cmd": "closed", "seconds": S, "concurrency": C}``: C connections, each sending
  the next prepared request as soon as its previous one is answered, for S seconds;
- ``{"cmd": "open", "rate": R, "seconds": S, "concurrency": C}``: R requests a second
  on a fixed schedule, handed to whichever of the C connections is free; latency is
  counted from the *scheduled* send time, so a stalled server (or a request waiting
  for a free connection) shows in the figures instead of delaying the schedule;
- ``{"cmd": "quit"}``.

Answers carry counts by status, latency percentiles (ms), the window, and the CPU
this process used meanwhile (``cpu_s``, ``wall_s``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

from bench.load import CUSTOMER, NUMBER, Conference, WarmlineProducer, call_sid
from console.urls import CONFERENCE_STATUS_PATH, VOICE_PATH
from simulator.testing import ACCOUNT_SID
from simulator.testing import voice_params as standard_params


def voice_params(sid: str) -> dict[str, str]:
    """An incoming call's Voice URL request, with the caller-location parameters
    Twilio adds to the standard ones (so the body has a real call's size)."""
    return {
        **standard_params(ACCOUNT_SID, sid, "ringing", "inbound", CUSTOMER, NUMBER),
        "CallToken": "%7B%22parentCallInfoToken%22%3A%22eyJhbGciOiJFUzI1NiJ9%22%7D",
        "CalledCity": "",
        "CalledCountry": "US",
        "CalledState": "CA",
        "CalledZip": "",
        "CallerCity": "SAN FRANCISCO",
        "CallerCountry": "US",
        "CallerState": "CA",
        "CallerZip": "94105",
        "FromCity": "SAN FRANCISCO",
        "FromCountry": "US",
        "FromState": "CA",
        "FromZip": "94105",
        "StirVerstat": "TN-Validation-Passed-A",
        "ToCity": "",
        "ToCountry": "US",
        "ToState": "CA",
        "ToZip": "",
    }


def http_request(host: str, path: str, params: dict[str, str], headers: dict[str, str]) -> bytes:
    """One form POST as Twilio sends it, as bytes ready to write."""
    body = urlencode(params).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "User-Agent: TwilioProxy/1.1",
        "Accept: */*",
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def roundtrip(self, raw: bytes) -> int:
        """Send ``raw``, read the whole answer; its status, or 0 on a connection error."""
        try:
            if self.writer is None:
                await self.connect()
            assert self.reader is not None and self.writer is not None
            self.writer.write(raw)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                length = int(lower[at + 17 : lower.index(b"\r\n", at + 2)])
                if length:
                    await self.reader.readexactly(length)
            elif b"\r\ntransfer-encoding: chunked" in lower:
                await self._chunks()
            if b"\r\nconnection: close" in lower:
                self.close()
            return status
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.close()
            return 0

    async def _chunks(self) -> None:
        assert self.reader is not None
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await self.reader.readexactly(size + 2)
            if size == 0:
                return

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def summary(latencies: list[float]) -> dict[str, float]:
    """Percentiles in ms (nearest rank)."""
    if not latencies:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "max": 0.0}
    ordered = sorted(latencies)

    def rank(pct: float) -> float:
        index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
        return ordered[index] * 1000

    return {
        "p50": rank(50),
        "p90": rank(90),
        "p99": rank(99),
        "p999": rank(99.9),
        "max": ordered[-1] * 1000,
        "mean": sum(ordered) / len(ordered) * 1000,
    }


class Load:
    def __init__(self) -> None:
        self.url = ""
        self.host = ""
        self.port = 0
        self.connections: list[Connection] = []
        self.requests: list[bytes] = []
        self.next = 0
        self.producer = WarmlineProducer([])
        self.pool: list[Conference] = []
        self.turns: Iterator[Conference] = iter(())
        self.toggled: list[tuple[Conference, bool]] = []  # per status request: held after
        self.held_at_start: dict[int, bool] = {}

    @property
    def sent_toggles(self) -> list[tuple[Conference, bool]]:
        return self.toggled[: self.next]

    def target(self, url: str) -> dict[str, Any]:
        for connection in self.connections:
            connection.close()
        self.connections = []
        self.url = url
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        return {"ok": True}

    def prepare(self, kind: str, count: int, conferences: list[dict[str, Any]]) -> dict[str, Any]:
        began = time.perf_counter()
        host = f"{self.host}:{self.port}"
        if kind in ("status", "hello"):
            self._start_turns(conferences)
        self.requests = []
        self.toggled = []
        self.next = 0
        if kind in ("status", "hello"):
            for _ in range(count):
                conference = next(self.turns)
                headers, params = self.producer.request(conference, self.url)
                assert isinstance(params, dict)
                self.requests.append(http_request(host, CONFERENCE_STATUS_PATH, params, headers))
                self.toggled.append((conference, conference.held))
        elif kind == "voice":
            for _ in range(count):
                params = voice_params(call_sid())
                headers = self.producer.signed(self.url + VOICE_PATH, params)
                self.requests.append(http_request(host, VOICE_PATH, params, headers))
        else:
            raise ValueError(f"unknown kind {kind!r}")
        return {
            "prepared": len(self.requests),
            "bytes": sum(len(r) for r in self.requests) // max(1, len(self.requests)),
            "seconds": time.perf_counter() - began,
        }

    def _start_turns(self, conferences: list[dict[str, Any]]) -> None:
        """New conferences, or the same ones again: then each conference's hold flag is
        set back to what its last *sent* callback said (requests prepared but never
        sent are dropped; their SequenceNumbers are skipped, as Twilio's may be)."""
        if conferences or not self.pool:
            self.pool = [
                Conference(c["name"], sid=c["sid"], seq=itertools.count(c["seq"]), held=c["held"])
                for c in conferences
            ] or [Conference(call_sid())]
            self.held_at_start = {id(c): c.held for c in self.pool}
        else:
            last = dict(self.held_at_start)
            last.update((id(c), held) for c, held in self.sent_toggles)
            for conference in self.pool:
                conference.held = last[id(conference)]
            self.held_at_start = last
        self.turns = itertools.cycle(self.pool)

    def _take(self) -> bytes | None:
        if self.next >= len(self.requests):
            return None
        raw = self.requests[self.next]
        self.next += 1
        return raw

    async def _pool(self, concurrency: int) -> list[Connection]:
        """``concurrency`` freshly opened connections, before any clock starts (a server
        closes keep-alive connections left idle between windows)."""
        for connection in self.connections:
            connection.close()
        self.connections = [Connection(self.host, self.port) for _ in range(concurrency)]
        await asyncio.gather(*(c.connect() for c in self.connections))
        return self.connections

    async def closed(self, seconds: float, concurrency: int) -> dict[str, Any]:
        """Closed loop: throughput is the answers received within the window ÷ window."""
        statuses: collections.Counter[int] = collections.Counter()
        latencies: list[float] = []
        exhausted_at: list[float] = []
        cpu0, wall0 = time.process_time(), time.perf_counter()
        start = end = 0.0

        async def loop(connection: Connection) -> None:
            while True:
                sent = time.perf_counter()
                if sent >= end:
                    return
                raw = self._take()
                if raw is None:
                    exhausted_at.append(sent)
                    return
                status = await connection.roundtrip(raw)
                answered = time.perf_counter()
                statuses[status] += 1
                if answered <= end:
                    latencies.append(answered - sent)

        pool = await self._pool(concurrency)
        start = time.perf_counter()
        end = start + seconds
        await asyncio.gather(*(loop(c) for c in pool))
        window = (min(exhausted_at) if exhausted_at else end) - start
        return {
            "window_s": window,
            "in_window": len(latencies),
            "answered": sum(statuses.values()),
            "rate": len(latencies) / window if window > 0 else 0.0,
            "statuses": {str(k): v for k, v in statuses.items()},
            "exhausted": bool(exhausted_at),
            "latency_ms": summary(latencies),
            "cpu_s": time.process_time() - cpu0,
            "wall_s": time.perf_counter() - wall0,
        }

    async def open(self, rate: float, seconds: float, concurrency: int) -> dict[str, Any]:
        """Open loop: request i is due at start + i / rate, whatever came before it."""
        count = min(len(self.requests) - self.next, max(1, round(rate * seconds)))
        statuses: collections.Counter[int] = collections.Counter()
        latencies: list[float] = []
        lags: list[float] = []
        dues: list[float] = []
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        pool = await self._pool(concurrency)
        start = time.perf_counter() + 0.01

        async def dispatch() -> None:
            for i in range(count):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                lags.append(time.perf_counter() - due)
                raw = self._take()
                assert raw is not None
                queue.put_nowait((due, raw))
            for _ in pool:
                queue.put_nowait(None)

        async def loop(connection: Connection) -> None:
            while (item := await queue.get()) is not None:
                due, raw = item
                status = await connection.roundtrip(raw)
                latencies.append(time.perf_counter() - due)
                dues.append(due - start)
                statuses[status] += 1

        await asyncio.gather(dispatch(), *(loop(c) for c in pool))
        last = time.perf_counter()
        return {
            "count": count,
            "answered": sum(statuses.values()),
            "offered_rate": rate,
            "achieved_rate": count / (last - start) if last > start else 0.0,
            "statuses": {str(k): v for k, v in statuses.items()},
            "latency_ms": summary(latencies),
            "dispatch_lag_ms": summary(lags),
            # The slowest answers: (due time in the window s, latency ms), for spotting
            # stalls (one pause delays every request due during it).
            "slowest": sorted(
                ((round(d, 3), round(ms * 1000, 1)) for d, ms in zip(dues, latencies, strict=True)),
                key=lambda pair: -pair[1],
            )[:20],
            "cpu_s": time.process_time() - cpu0,
            "wall_s": time.perf_counter() - wall0,
        }


async def serve() -> None:
    load = Load()
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        message = json.loads(line)
        command = message["cmd"]
        try:
            if command == "quit":
                return
            if command == "target":
                answer = load.target(message["url"])
            elif command == "prepare":
                answer = load.prepare(
                    message["kind"], message["count"], message.get("conferences", [])
                )
            elif command == "closed":
                answer = await load.closed(message["seconds"], message["concurrency"])
            elif command == "open":
                answer = await load.open(
                    message["rate"], message["seconds"], message["concurrency"]
                )
            else:
                answer = {"error": f"unknown command {command!r}"}
        except Exception as exc:  # reported to the bench, which stops with it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def main() -> int:
    argparse.ArgumentParser(prog="python -m bench.webhook_load").parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve())
    else:
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
