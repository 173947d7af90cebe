"""One client process holding many WebSocket connections (``python -m bench.clients``).

The fan-out benchmark starts two of these so that the clients, not the server, are
never what limits the figures. A process connects ``--count`` sockets, says
``{"event": "ready", ...}`` on stdout, then obeys one JSON command per stdin line:

- ``{"cmd": "mark"}``: start recording (every text message with its arrival time);
- ``{"cmd": "report", "sends": {conference: [send_ms, ...]}}``: stop recording and
  answer with the latency of every recorded message, in ms, from the send time of the
  callback that caused it (matched by conference and the event's ``ts``);
- ``{"cmd": "close"}``: close every socket and exit.

Work per message is kept minimal (a clock read and an append); parsing happens at
report time, outside the measured window.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import sys
import time
from dataclasses import dataclass, field

import aiohttp

# What a browser offers: aiohttp's compress=15 sends exactly
# "permessage-deflate; client_max_window_bits".
BROWSER_DEFLATE = 15
CONNECT_CONCURRENCY = 25


@dataclass
class Socket:
    records: list[tuple[str, float]] = field(default_factory=list)
    total: int = 0


@dataclass
class Clients:
    url: str
    cookie: str
    compress: int
    sockets: list[Socket] = field(default_factory=list)
    measuring: bool = False
    negotiated: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closing: bool = False

    async def connect_all(self, count: int) -> None:
        jar = aiohttp.DummyCookieJar()
        connector = aiohttp.TCPConnector(limit=0)
        self.session = aiohttp.ClientSession(connector=connector, cookie_jar=jar)
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        opened = await asyncio.gather(*(self._open(gate) for _ in range(count)))
        for socket, ws in opened:
            if ws is not None:
                self.tasks.append(asyncio.create_task(self._read(socket, ws)))

    async def _open(
        self, gate: asyncio.Semaphore
    ) -> tuple[Socket, aiohttp.ClientWebSocketResponse | None]:
        socket = Socket()
        headers = {"Cookie": self.cookie} if self.cookie else {}
        async with gate:
            for attempt in range(5):
                try:
                    ws = await self.session.ws_connect(
                        self.url,
                        headers=headers,
                        compress=self.compress,
                        max_msg_size=0,
                        autoping=True,
                    )
                except (aiohttp.ClientError, OSError) as exc:
                    if attempt == 4:
                        self.errors.append(repr(exc))
                        return socket, None
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                self.negotiated.add(f"deflate wbits={ws.compress}" if ws.compress else "none")
                # The first message (Warmline's snapshot, the baseline's hello) says
                # the socket is live; nothing is measured before "mark".
                first = await ws.receive(timeout=30)
                if first.type is not aiohttp.WSMsgType.TEXT:
                    self.errors.append(f"first message {first.type!r}")
                    return socket, None
                self.sockets.append(socket)
                return socket, ws
        return socket, None  # unreachable

    async def _read(self, socket: Socket, ws: aiohttp.ClientWebSocketResponse) -> None:
        records = socket.records
        clock = time.time
        text = aiohttp.WSMsgType.TEXT
        async for message in ws:
            if message.type is text:
                socket.total += 1
                if self.measuring:
                    records.append((message.data, clock()))
        if not self.closing:
            self.errors.append("socket closed by the server")

    def mark(self) -> None:
        for socket in self.sockets:
            socket.records.clear()
        self.cpu_mark = time.process_time()
        self.wall_mark = time.monotonic()
        self.measuring = True

    def report(self, sends: dict[str, list[float]]) -> dict[str, object]:
        self.measuring = False
        cpu = time.process_time() - self.cpu_mark
        wall = time.monotonic() - self.wall_mark
        floors = {conf: [int(ms) for ms in times] for conf, times in sends.items()}
        latencies: list[float] = []
        per_socket: list[int] = []
        unmatched = resyncs = 0
        first = float("inf")
        last = 0.0
        for socket in self.sockets:
            per_socket.append(len(socket.records))
            for text, at in socket.records:
                if '"type":"resync"' in text:
                    resyncs += 1
                    continue
                sent = _sent_at(text, sends, floors)
                if sent is None:
                    unmatched += 1
                    continue
                latencies.append(round(at * 1000 - sent, 2))
                first = min(first, at)
                last = max(last, at)
            socket.records.clear()
        return {
            "event": "report",
            "latencies": latencies,
            "messages": sum(per_socket),
            "per_socket_min": min(per_socket, default=0),
            "per_socket_max": max(per_socket, default=0),
            "unmatched": unmatched,
            "resyncs": resyncs,
            "first_at": first if latencies else None,
            "last_at": last if latencies else None,
            "cpu_s": cpu,
            "wall_s": wall,
            "errors": self.errors[:5],
        }

    async def close(self) -> None:
        self.closing = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.session.close()


def _sent_at(
    text: str, sends: dict[str, list[float]], floors: dict[str, list[int]]
) -> float | None:
    """The send time of the callback that caused ``text``: the last one sent to the
    same conference at or before the app's receive time ``ts`` (both in ms)."""
    start = text.find('"conference":"')
    at = text.find('"ts":')
    if start < 0 or at < 0:
        return None
    start += 14
    conference = text[start : text.index('"', start)]
    end = at + 5
    while text[end].isdigit():
        end += 1
    ts = int(text[at + 5 : end])
    floor = floors.get(conference)
    if not floor:
        return None
    index = bisect.bisect_right(floor, ts) - 1
    return sends[conference][index] if index >= 0 else None


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--cookie", default="")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--compress", type=int, default=0)
    args = parser.parse_args()
    clients = Clients(args.url, args.cookie, args.compress)
    started = time.monotonic()
    await clients.connect_all(args.count)
    say(
        {
            "event": "ready",
            "connected": len(clients.sockets),
            "seconds": round(time.monotonic() - started, 2),
            "extensions": sorted(clients.negotiated),
            "errors": clients.errors[:5],
        }
    )
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        if command["cmd"] == "mark":
            clients.mark()
            say({"event": "marked"})
        elif command["cmd"] == "report":
            say(clients.report(command["sends"]))
        elif command["cmd"] == "close":
            break
    await clients.close()


def say(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
