"""GET /metrics behind several workers (SPEC §11): a real `warmline serve` with two
worker processes; requests and sockets pinned to each worker (found through /proc);
a scrape answered by either worker reports both workers' figures."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from console.domain import keys
from console.domain.users import add_user
from console.urls import VOICE_PATH
from simulator.testing import ACCOUNT_SID, call_sid
from tests.support.flow_helpers import PASSWORD
from tests.support.servers import AppServer, app_server

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]

WORKERS = 2
ROUTE = (("route", VOICE_PATH),)


def _hex_port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)


def worker_serving(server: AppServer, client_port: int) -> int:
    """The pid of the worker process holding the server's end of the connection from
    ``client_port`` (its socket's inode, from /proc/net/tcp, among the workers' fds)."""
    server_port = int(server.url.rsplit(":", 1)[1])
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if _hex_port(fields[1]) == server_port and _hex_port(fields[2]) == client_port:
                inode = fields[9]
    assert inode is not None, f"no server socket for client port {client_port}"
    for pid in children(server.process.pid):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
        except OSError:
            continue
    raise AssertionError(f"no worker holds socket {inode}")


def children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry))
    return found


class KeepAlive:
    """One HTTP/1.1 connection kept open, so its requests all reach one worker."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.port = writer.get_extra_info("sockname")[1]

    @classmethod
    async def open(cls, server: AppServer) -> KeepAlive:
        host, port = server.url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def request(self, method: str, path: str, form: str = "") -> tuple[int, bytes]:
        body = form.encode()
        self.writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        length = next(
            int(line.split(":", 1)[1])
            for line in head
            if line.lower().startswith("content-length:")
        )
        return int(head[0].split()[1]), await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()


async def pinned_connections(server: AppServer) -> dict[int, KeepAlive]:
    """One kept-open connection per worker: new connections until each worker has one."""
    pinned: dict[int, KeepAlive] = {}
    spare: list[KeepAlive] = []
    while len(pinned) < WORKERS:
        assert len(spare) < 30, "the workers did not both accept connections"
        connection = await KeepAlive.open(server)
        assert (await connection.request("GET", "/healthz"))[0] == 200  # accepted by now
        worker = worker_serving(server, connection.port)
        if worker in pinned:
            spare.append(connection)
        else:
            pinned[worker] = connection
    for connection in spare:
        await connection.close()
    return pinned


async def refused_webhook(connection: KeepAlive) -> None:
    form = f"AccountSid={ACCOUNT_SID}&CallSid={call_sid()}"
    assert (await connection.request("POST", VOICE_PATH, form))[0] == 403


async def scrape(connection: KeepAlive) -> dict:
    status, body = await connection.request("GET", "/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def worker_env(pid: int, name: str) -> str:
    environ = Path(f"/proc/{pid}/environ").read_text().split("\0")
    return dict(line.split("=", 1) for line in environ if "=" in line)[name]


async def sockets_on_each_worker(server: AppServer, redis: Redis) -> list:
    """A supervisor's /ws on each worker."""
    await add_user(redis, "sam", "supervisor", PASSWORD)
    jar = aiohttp.CookieJar(unsafe=True)
    session = aiohttp.ClientSession(base_url=server.url, cookie_jar=jar)
    form = {"username": "sam", "password": PASSWORD}
    async with session.post("/login", data=form, allow_redirects=False) as response:
        assert response.status == 303
    held: dict[int, aiohttp.ClientWebSocketResponse] = {}
    tries = 0
    while len(held) < WORKERS:
        # Under load one worker may win the accepts for a while: try again, closing each
        # spare socket at once so the user's socket cap (8) is never what stops us.
        tries += 1
        assert tries < 40, "every socket went to one worker"
        socket = await session.ws_connect("/ws")
        await socket.receive(timeout=10)  # the snapshot
        worker = worker_serving(server, socket.get_extra_info("sockname")[1])
        if worker in held:
            await socket.close()
            await asyncio.sleep(0.05)
        else:
            held[worker] = socket
    return [session, *held.values()]


async def test_one_scrape_reports_every_workers_figures(redis_server, redis, twilio, tmp_path):
    async with app_server(
        redis_server.url, twilio.base_url, tmp_path, WEB_CONCURRENCY=str(WORKERS)
    ) as server:
        connections = await pinned_connections(server)
        opened: list = []
        try:
            (first, on_first), (_, on_second) = connections.items()
            for _ in range(3):
                await refused_webhook(on_first)
            for _ in range(2):
                await refused_webhook(on_second)
            opened = await sockets_on_each_worker(server, redis)

            for worker, connection in connections.items():
                assert worker_serving(server, connection.port) == worker  # still pinned
                deadline = time.monotonic() + 10
                while True:  # each worker copies its open sockets out every second
                    values = await scrape(connection)
                    if values[("warmline_ws_connected", ())] == WORKERS:
                        break
                    assert time.monotonic() < deadline, values[("warmline_ws_connected", ())]
                    await asyncio.sleep(0.2)
                requests = ("warmline_webhook_requests_total", (*ROUTE, ("status", "403")))
                assert values[requests] == 5
                assert values[("warmline_webhook_latency_seconds_count", ROUTE)] == 5
                assert values[("warmline_queue_size", ())] == await redis.llen(keys.QUEUE)
                assert ("warmline_ws_delivered_total", ()) in values
            shared_dir = worker_env(first, "PROMETHEUS_MULTIPROC_DIR")
        finally:
            for item in [*opened[1:], *opened[:1], *connections.values()]:
                await item.close()
        assert await asyncio.to_thread(os.path.isdir, shared_dir)
    assert not await asyncio.to_thread(os.path.exists, shared_dir)  # removed when serve stops
