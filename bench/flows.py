"""Whole call flows (issue 6 item 4): ``--calls`` customers, each with a warm
transfer, through the built-in Twilio simulator and a real `warmline serve`.

The simulator (in this process) plays Twilio over HTTP: customers call the Voice URL,
softphones ring and answer by themselves, status callbacks are signed. The bench plays
the people: ``--agents`` agents and ``--supervisors`` supervisors logged in over
HTTP, each holding their own /ws socket; an agent's browser actions (transfer, leave)
are JSON API calls made as that agent, in reaction to what the agent's own socket
says. Afterwards every socket's messages are checked against the event log, and the
simulator's record of REST calls against double assignment. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import logging
import random
import re
import sys
import tempfile
import time
from array import array
from bisect import bisect_right
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import psutil
from redis.asyncio import Redis

from bench.measure import busy_seconds, cpu_seconds, percentile
from bench.servers import Server, server_env, spawn
from console.domain import keys
from console.domain.users import add_user
from simulator import AutoAnswer, Simulator
from simulator.testing import ACCOUNT_SID, AUTH_TOKEN
from warmline.embedded_redis import free_port, start_redis
from warmline.localserver import wait_healthy

AGENT_PREFIX = "flow_agent_"
SUPERVISOR_PREFIX = "flow_boss_"
PASSWORD = "bench-password-123"
SESSION_COOKIE = "warmline_session"
RETRY_SECONDS = 0.5  # a refused transfer is tried again after this, or when someone frees up
LEAVE_TRIES = 5
KEEPALIVE_SECONDS = 3.0  # under Hypercorn's 5 s keep-alive: never reuse a closing connection
STALL_SECONDS = 30.0  # all placed, calls live, no call ended, no event: the rest is stuck
PROGRESS_SECONDS = 5.0
SETTLE_SECONDS = 60.0  # after the last flow: time for the app to show no call, no queue
DELIVERY_SECONDS = 15.0  # after settling: time for every socket to receive the log's tail
SETUP_CONCURRENCY = 4
START_TIMEOUT_SECONDS = 60.0
RING_TIMEOUT_SECONDS = 20  # the app's REST Timeout (simulated seconds)
MB = 1024 * 1024

# The head of every message the app sends: events and snapshots start with id, type.
HEAD = re.compile(r'\{"id":"(\d+)-(\d+)","type":"([^"]+)"')
RESYNC_TEXT = '{"type":"resync"'
AGENT_PARSES = frozenset({"participant.joined", "transfer.updated", "agent.updated"})
SEQ_BITS = 20  # an event id (ms, seq) as one int: ms << SEQ_BITS | seq, same order
DONE = frozenset({"joined", "completed", "failed", "canceled"})


def id_key(raw: str) -> int:
    ms, _, seq = raw.partition("-")
    return int(ms) << SEQ_BITS | int(seq)


def key_id(key: int) -> str:
    return f"{key >> SEQ_BITS}-{key & ((1 << SEQ_BITS) - 1)}"


def now_ms() -> int:
    return int(time.time() * 1000)


# -- what one socket received ---------------------------------------------------------------


@dataclass
class Segment:
    """A snapshot (its id) and the event ids received after it, until a resync."""

    start: int
    ids: array = field(default_factory=lambda: array("q"))


class Recorder:
    """Keeps, per socket, only what the check needs: snapshot ids and event ids."""

    def __init__(self, username: str, supervisor: bool) -> None:
        self.username = username
        self.supervisor = supervisor
        self.segments: list[Segment] = []
        self.resyncs = 0
        self.messages = 0
        self.bytes = 0
        self.early = 0  # events before any snapshot
        self.closed_by_server = False

    def feed(self, text: str) -> str:
        """Record one message; returns its type."""
        self.messages += 1
        self.bytes += len(text)
        head = HEAD.match(text, 0, 120)
        if head is None:
            if text.startswith(RESYNC_TEXT):
                self.resyncs += 1
                return "resync"
            return "?"
        key = int(head[1]) << SEQ_BITS | int(head[2])
        kind = head[3]
        if kind == "snapshot":
            self.segments.append(Segment(key))
        elif self.segments:
            self.segments[-1].ids.append(key)
        else:
            self.early += 1
        return kind

    @property
    def last(self) -> int:
        if not self.segments:
            return -1
        segment = self.segments[-1]
        return segment.ids[-1] if segment.ids else segment.start


# -- the people ------------------------------------------------------------------------------


@dataclass
class Flow:
    """One customer call, as the bench saw it."""

    name: str  # the customer's CallSid, also the conference name
    index: int
    placed_ms: int
    first_agent: str | None = None
    colleague: str | None = None
    attempts: int = 0  # POST /api/transfers
    refused: int = 0  # ... answered 409 (nobody available)
    errors: int = 0  # ... answered 5xx or not at all
    transfers: list[str] = field(default_factory=list)
    gave_up: bool = False  # no colleague within --transfer-patience: the agent ended it
    abandoned: bool = False  # the customer hung up waiting (--patience)
    stuck: bool = False  # still live at --deadline: hung up by the bench


class Person:
    """A logged-in user with their /ws socket."""

    def __init__(self, bench: Bench, username: str, supervisor: bool) -> None:
        self.bench = bench
        self.username = username
        self.supervisor = supervisor
        self.cookie = ""
        self.recorder = Recorder(username, supervisor)
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.snapshot = asyncio.Event()

    async def login(self) -> None:
        form = {"username": self.username, "password": PASSWORD}
        async with self.bench.session.post(
            self.bench.url + "/login", data=form, allow_redirects=False
        ) as response:
            if response.status != 303:
                raise RuntimeError(f"login {self.username}: {response.status}")
            self.cookie = f"{SESSION_COOKIE}={response.cookies[SESSION_COOKIE].value}"

    async def connect(self) -> None:
        url = self.bench.url.replace("http://", "ws://") + "/ws"
        self.ws = await self.bench.session.ws_connect(
            url,
            headers={"Cookie": self.cookie},
            compress=15 if self.bench.opts.deflate else 0,
            max_msg_size=0,
            autoping=True,
        )
        self.reader = asyncio.create_task(self._read(self.ws))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            kind = self.recorder.feed(message.data)
            if kind == "snapshot":
                self.snapshot.set()
                self.on_snapshot(message.data)
            elif kind in AGENT_PARSES and not self.supervisor:
                self.on_event(kind, json.loads(message.data)["data"])
        if not self.bench.closing:
            self.recorder.closed_by_server = True

    def on_snapshot(self, text: str) -> None:
        pass

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        pass

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await self.bench.api(self.cookie, method, path, body)

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader


class Agent(Person):
    """An agent's browser: reacts to its own socket as the agent view would.

    * joined a customer's conference (not as a transfer's colleague): talk ``--talk``
      seconds, then warm-transfer (``--to``); when the colleague has joined, leave;
      a failed transfer is tried again; nobody available within
      ``--transfer-patience``: end the call alone;
    * the colleague of a transfer: once it is completed (the first agent left), talk
      ``--talk`` seconds, then the call ends (the customer or this agent hangs up).
    """

    def __init__(self, bench: Bench, username: str) -> None:
        super().__init__(bench, username, supervisor=False)
        self.present: dict[str, str] = {}  # presence as this agent's socket shows it
        self.handled: set[str] = set()  # conferences this agent has acted on
        self.incoming: dict[str, str] = {}  # conference -> transfer id, as the colleague
        self.ending: set[str] = set()
        self.statuses: dict[str, tuple[str, str | None]] = {}  # my transfers, latest
        self.outcomes: dict[str, asyncio.Future[tuple[str, str | None]]] = {}
        self.kick = asyncio.Event()

    def on_snapshot(self, text: str) -> None:
        state = json.loads(text)["data"]
        for agent in state["agents"]:
            self.present[agent["username"]] = agent["status"]
        for transfer in state["transfers"]:
            self.on_transfer(transfer)
        for conference in state["conferences"]:
            for participant in conference["participants"]:
                self.on_joined(participant)

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "agent.updated":
            self.present[data["username"]] = data["status"]
            if data["status"] == "available" and data["username"] != self.username:
                self.kick.set()
        elif kind == "transfer.updated":
            self.on_transfer(data)
        else:
            self.on_joined(data)

    def on_joined(self, participant: dict[str, Any]) -> None:
        if participant["role"] != "agent" or participant["agent"] != self.username:
            return
        name = participant["conference"]
        if name in self.handled:
            return
        self.handled.add(name)
        if name in self.incoming:
            return  # the colleague: waits for the transfer to complete
        self.bench.spawn(self.first_agent(name))

    def on_transfer(self, transfer: dict[str, Any]) -> None:
        name, status = transfer["conference"], transfer["status"]
        if transfer["to_agent"] == self.username:
            self.incoming[name] = transfer["id"]
            if status == "completed" and name not in self.ending:
                self.ending.add(name)
                self.bench.spawn(self.colleague(name))
        if transfer["from_agent"] == self.username:
            self.statuses[transfer["id"]] = (status, transfer["reason"])
            future = self.outcomes.get(transfer["id"])
            if status in DONE and future is not None and not future.done():
                future.set_result((status, transfer["reason"]))

    # -- the first agent ---------------------------------------------------------------------

    async def first_agent(self, name: str) -> None:
        bench = self.bench
        flow = bench.flows.get(name)
        if flow is None:
            return
        flow.first_agent = flow.first_agent or self.username
        await asyncio.sleep(bench.opts.talk)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + bench.opts.transfer_patience
        while not bench.ended(name):
            transfer = await self._place_transfer(flow, deadline)
            if transfer is None:
                break
            status, reason = await self._outcome(transfer)
            if status in ("joined", "completed"):
                await self.leave(name)
                return
            bench.transfer_failures[reason or status] += 1
            if loop.time() >= deadline:
                break
        if not bench.ended(name):
            flow.gave_up = True
            await self.leave(name)

    async def _place_transfer(self, flow: Flow, deadline: float) -> str | None:
        """Ask for a transfer, taking turns with the other agents who wait for a
        colleague (one asks at a time, as people would); returns its id, or None when
        patience ran out or the call ended."""
        bench = self.bench
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(bench.turn.acquire(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            return None
        try:
            while not bench.ended(flow.name):
                self.kick.clear()
                target = self._target()
                if target is not False:
                    status, body = await self.api(
                        "POST",
                        "/api/transfers",
                        {"conference": flow.name, "to": target, "note": "bench"},
                    )
                    flow.attempts += 1
                    if status == 201:
                        flow.transfers.append(body["id"])
                        flow.colleague = body["to_agent"]
                        return body["id"]
                    if status == 409 and "ended" not in str(body):
                        flow.refused += 1
                    elif status == 0 or status >= 500:
                        flow.errors += 1  # the agent clicks again
                    else:
                        return None
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.kick.wait(), min(RETRY_SECONDS, remaining))
            return None
        finally:
            bench.turn.release()

    def _target(self) -> str | bool | None:
        """The colleague to ask for: None for "any"; a named one this agent's socket
        shows available (False: nobody shows available, wait)."""
        if self.bench.opts.to == "any":
            return None
        free = [n for n, s in self.present.items() if s == "available" and n != self.username]
        return random.choice(free) if free else False

    async def _outcome(self, transfer: str) -> tuple[str, str | None]:
        latest = self.statuses.get(transfer)
        if latest is not None and latest[0] in DONE:
            return latest
        future = asyncio.get_running_loop().create_future()
        self.outcomes[transfer] = future
        try:
            ring = RING_TIMEOUT_SECONDS * self.bench.opts.time_scale
            return await asyncio.wait_for(future, ring + 30)
        except TimeoutError:
            return "timeout", "no outcome seen on the socket"
        finally:
            self.outcomes.pop(transfer, None)

    # -- the colleague --------------------------------------------------------------------

    async def colleague(self, name: str) -> None:
        bench = self.bench
        await asyncio.sleep(bench.opts.talk)
        flow = bench.flows.get(name)
        if flow is None or bench.ended(name):
            return
        by = bench.opts.end_by
        if by == "customer" or (by == "both" and flow.index % 2 == 0):
            bench.sim.hangup(name)
        else:
            await self.leave(name)

    async def leave(self, name: str) -> None:
        """Press "Leave"; again after a server error or a dropped connection."""
        for _ in range(LEAVE_TRIES):
            status, body = await self.api("POST", f"/api/conferences/{name}/leave")
            if status == 200 or self.bench.ended(name):
                return
            if 0 < status < 500:
                break
            await asyncio.sleep(RETRY_SECONDS)
        self.bench.note(f"leave {name} as {self.username}: {status} {body}")


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Options:
    calls: int = 1000
    agents: int = 100
    supervisors: int = 1
    workers: int = 1
    rate: float = 100.0
    talk: float = 1.0
    answer_delay: float = 1.0
    time_scale: float = 1.0
    to: str = "any"
    transfer_patience: float = 5.0
    patience: float = 0.0
    end_by: str = "both"
    deadline: float = 240.0
    deflate: bool = False
    keep: Path | None = None


class Bench:
    def __init__(self, opts: Options, sim: Simulator, url: str) -> None:
        self.opts = opts
        self.sim = sim
        self.url = url
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_SECONDS),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self.flows: dict[str, Flow] = {}
        self.agents: list[Agent] = []
        self.supervisors: list[Person] = []
        self.turn = asyncio.Lock()
        self.closing = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.answers: collections.Counter[tuple[str, int]] = collections.Counter()
        self.transfer_failures: collections.Counter[str] = collections.Counter()
        self.notes: list[str] = []
        self.task_errors: list[str] = []

    @property
    def people(self) -> list[Person]:
        return [*self.supervisors, *self.agents]

    def note(self, text: str) -> None:
        if len(self.notes) < 50:
            self.notes.append(text)

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.task_errors.append(repr(task.exception()))

    def ended(self, name: str) -> bool:
        call = self.sim.board.calls.get(name)
        return call is None or call.ended

    async def api(self, cookie: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        route = path.split("/")[2] if path.count("/") >= 2 else path
        if "/leave" in path:
            route = "leave"
        try:
            async with self.session.request(
                method, self.url + path, json=body, headers={"Cookie": cookie}
            ) as response:
                status, text = response.status, await response.text()
        except aiohttp.ClientError as exc:
            self.answers[(route, 0)] += 1
            self.note(f"{method} {path}: {exc!r}")
            return 0, None
        self.answers[(route, status)] += 1
        if status >= 500:
            self.note(f"{method} {path}: {status} {text[:200]}")
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text

    async def setup_people(self, redis: Redis) -> None:
        names = [f"{SUPERVISOR_PREFIX}{i}" for i in range(self.opts.supervisors)]
        names += [f"{AGENT_PREFIX}{i:03d}" for i in range(self.opts.agents)]
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def create(name: str) -> None:
            role = "supervisor" if name.startswith(SUPERVISOR_PREFIX) else "agent"
            async with gate:
                await add_user(redis, name, role, PASSWORD)

        await asyncio.gather(*(create(n) for n in names))
        self.supervisors = [Person(self, n, True) for n in names[: self.opts.supervisors]]
        self.agents = [Agent(self, n) for n in names[self.opts.supervisors :]]
        auto = AutoAnswer(delay=self.opts.answer_delay, talk=None)
        for agent in self.agents:
            self.sim.phone(agent.username, auto=auto)

        async def ready(person: Person) -> None:
            async with gate:
                await person.login()
            await person.connect()
            await asyncio.wait_for(person.snapshot.wait(), 30)
            if not person.supervisor:
                status, body = await person.api("POST", "/api/me/status", {"status": "available"})
                if status != 200:
                    raise RuntimeError(f"{person.username} available: {status} {body}")

        await asyncio.gather(*(ready(p) for p in self.supervisors))
        await asyncio.gather(*(ready(a) for a in self.agents))

    async def place_calls(self) -> None:
        interval = 1 / self.opts.rate if self.opts.rate > 0 else 0.0
        start = time.monotonic()
        loop = asyncio.get_running_loop()
        for index in range(self.opts.calls):
            if interval:
                delay = start + index * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif index % 50 == 0:
                await asyncio.sleep(0)  # let the first callbacks out while placing
            placed = now_ms()
            name = await self.sim.call_in()
            self.flows[name] = Flow(name, index, placed)
            if self.opts.patience > 0:
                loop.call_later(self.opts.patience, self._give_up, name)

    def _give_up(self, name: str) -> None:
        flow = self.flows[name]
        if flow.first_agent is None and not self.ended(name):
            flow.abandoned = True
            self.sim.hangup(name)

    def live(self) -> int:
        return sum(1 for name in self.flows if not self.ended(name))

    def waiting(self) -> int:
        return sum(
            1 for f in self.flows.values() if f.first_agent is None and not self.ended(f.name)
        )

    async def close(self) -> None:
        self.closing = True
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(p.close() for p in self.people), return_exceptions=True)
        await self.session.close()


# -- measuring the server --------------------------------------------------------------------


class Meter:
    """CPU over the flows' window and RSS sampled every half second, for the Hypercorn
    workers (the server itself with one worker, which serves in process; else its
    children), and CPU for the rest of our processes, to tell the machine's other
    load apart (another benchmark on the same cores skews every figure)."""

    def __init__(self, server: psutil.Process, workers: int, redis: psutil.Process) -> None:
        self.workers = [server]
        if workers > 1:
            children = [
                c
                for c in server.children(recursive=True)
                if "resource_tracker" not in " ".join(c.cmdline())
            ]
            self.workers = children or [server]
        self.groups = {
            "workers": self.workers,
            "server master": [server] if workers > 1 else [],
            "redis": [redis],
            "bench": [psutil.Process()],
        }
        self.peak: dict[int, int] = {p.pid: 0 for p in self.workers}
        self.total_peak = 0
        self.rss_idle = self.rss()
        self._task: asyncio.Task[None] | None = None
        self._began = 0.0
        self._before: dict[str, float] = {}
        self._per_worker: list[float] = []
        self.window = 0.0
        self.cores: dict[str, float] = {}
        self.per_worker: list[float] = []

    def rss(self) -> int:
        total = 0
        for process in self.workers:
            with contextlib.suppress(psutil.Error):
                rss = process.memory_info().rss
                total += rss
                self.peak[process.pid] = max(self.peak[process.pid], rss)
        self.total_peak = max(self.total_peak, total)
        return total

    def _read(self) -> dict[str, float]:
        out = {name: cpu_seconds(group) for name, group in self.groups.items()}
        out["machine"] = busy_seconds()
        return out

    def start(self) -> None:
        self._began = time.monotonic()
        self._before = self._read()
        self._per_worker = [cpu_seconds([w]) for w in self.workers]
        self._task = asyncio.create_task(self._sample())

    def stop(self) -> None:
        self.window = time.monotonic() - self._began
        after = self._read()
        used = {name: after[name] - self._before[name] for name in after}
        machine = used.pop("machine")
        self.cores = {name: v / self.window for name, v in used.items()}
        self.cores["others"] = (machine - sum(used.values())) / self.window
        self.per_worker = [
            (cpu_seconds([w]) - before) / self.window
            for w, before in zip(self.workers, self._per_worker, strict=True)
        ]
        if self._task is not None:
            self._task.cancel()

    async def _sample(self) -> None:
        while True:
            self.rss()
            await asyncio.sleep(0.5)

    def report(self) -> dict[str, Any]:
        return {
            "workers": len(self.workers),
            "cpu_cores": self.cores.get("workers", 0.0),
            "cpu_cores_per_worker": [round(v, 3) for v in self.per_worker],
            "cpu_cores_by_process": {k: round(v, 3) for k, v in self.cores.items()},
            "rss_idle_mb": self.rss_idle / MB,
            "rss_peak_mb": self.total_peak / MB,
            "rss_peak_per_worker_mb": [round(v / MB, 1) for v in self.peak.values()],
        }


# -- checks ----------------------------------------------------------------------------------


@dataclass
class LogFacts:
    """What the event log says, read once after the run."""

    keys: array = field(default_factory=lambda: array("q"))
    audiences: list[frozenset[str] | None] = field(default_factory=list)
    types: collections.Counter[str] = field(default_factory=collections.Counter)
    ended: dict[str, int] = field(default_factory=dict)  # conference -> ts
    first_agent_join: dict[str, int] = field(default_factory=dict)
    agents_joined: dict[str, list[str]] = field(default_factory=dict)
    agent_left: dict[str, int] = field(default_factory=dict)  # agent call sid -> first ts
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> latest
    dequeued_hung_up: set[str] = field(default_factory=set)
    queued: dict[str, int] = field(default_factory=dict)  # conference -> first call.queued ts
    routed: dict[str, int] = field(default_factory=dict)  # ... first call.dequeued (routed)
    presence: dict[str, tuple[str, int]] = field(default_factory=dict)  # agent -> last
    idle_to_ring_s: list[float] = field(default_factory=list)  # available -> ringing
    length: int = 0
    published: int = 0


async def read_log(redis: Redis) -> LogFacts:
    facts = LogFacts()
    cursor = "-"
    while True:
        page = await redis.xrange(keys.EVENTS, min=cursor, max="+", count=2000)
        if cursor != "-" and page and page[0][0] == cursor:
            page = page[1:]
        if not page:
            break
        for raw_id, fields in page:
            kind = fields["type"]
            facts.keys.append(id_key(raw_id))
            audience = fields.get("audience", "*")
            facts.audiences.append(
                None if audience == "*" else frozenset(filter(None, audience.split(",")))
            )
            facts.types[kind] += 1
            if kind in (
                "conference.ended",
                "participant.joined",
                "participant.left",
                "transfer.updated",
            ):
                data, ts = json.loads(fields["data"]), int(fields["ts"])
                if kind == "conference.ended":
                    facts.ended.setdefault(data["name"], ts)
                elif kind == "participant.joined" and data["role"] == "agent":
                    facts.first_agent_join.setdefault(data["conference"], ts)
                    facts.agents_joined.setdefault(data["conference"], []).append(data["agent"])
                elif kind == "participant.left" and data["role"] == "agent":
                    facts.agent_left.setdefault(data["call_sid"], ts)
                elif kind == "transfer.updated":
                    facts.transfers[data["id"]] = data
            elif kind == "call.dequeued":
                data, ts = json.loads(fields["data"]), int(fields["ts"])
                if data["reason"] == "hung-up":
                    facts.dequeued_hung_up.add(data["call_sid"])
                else:
                    facts.routed.setdefault(data["call_sid"], ts)
            elif kind == "call.queued":
                data = json.loads(fields["data"])
                facts.queued.setdefault(data["call_sid"], int(fields["ts"]))
            elif kind == "agent.updated":
                data, ts = json.loads(fields["data"]), int(fields["ts"])
                before = facts.presence.get(data["username"])
                if before and before[0] == "available" and data["status"] == "ringing":
                    facts.idle_to_ring_s.append((ts - before[1]) / 1000)
                facts.presence[data["username"]] = (data["status"], ts)
        cursor = page[-1][0]
    facts.length = await redis.xlen(keys.EVENTS)
    facts.published = int(await redis.hget(keys.COUNTERS, "events_published") or 0)
    return facts


@dataclass
class SocketCheck:
    sockets: int = 0
    messages: int = 0
    megabytes: float = 0.0
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    not_visible: int = 0  # received but not the user's to see
    unknown: int = 0  # ids that are not in the log
    resyncs: int = 0
    after_read: int = 0  # received after the log was read: not checked
    early: int = 0
    closed_by_server: int = 0
    no_snapshot: int = 0
    examples: list[str] = field(default_factory=list)


def check_sockets(people: list[Person], facts: LogFacts, log_end: int) -> SocketCheck:
    """Every event a user may see after their socket's snapshot, exactly once, in
    order; a resync restarts the expectation at the snapshot that follows it."""
    result = SocketCheck()
    everyone = array("q", facts.keys)
    position = {k: i for i, k in enumerate(facts.keys)}
    for person in people:
        recorder = person.recorder
        result.sockets += 1
        result.messages += recorder.messages
        result.megabytes += recorder.bytes / MB
        result.resyncs += recorder.resyncs
        result.early += recorder.early
        result.closed_by_server += recorder.closed_by_server
        if not recorder.segments:
            result.no_snapshot += 1
            continue
        if person.supervisor:
            visible = everyone
        else:
            name = person.username
            visible = array(
                "q",
                (
                    k
                    for k, a in zip(facts.keys, facts.audiences, strict=True)
                    if a is None or name in a
                ),
            )
        for number, segment in enumerate(recorder.segments):
            last = number == len(recorder.segments) - 1
            ids = segment.ids
            if last and ids and ids[-1] > log_end:
                # Events committed after the log was read (the app was still busy): the
                # check covers the log up to ``log_end`` only.
                kept = array("q", (k for k in ids if k <= log_end))
                result.after_read += len(ids) - len(kept)
                ids = kept
            if segment.start != 0 and segment.start not in position:
                result.unknown += 1
                _example(result, person, f"snapshot id {key_id(segment.start)} not in the log")
            upto = log_end if last else (ids[-1] if ids else segment.start)
            expected = visible[bisect_right(visible, segment.start) : bisect_right(visible, upto)]
            result.expected += len(expected)
            received = set(ids)
            result.delivered += len(received & set(expected))
            lost = len(set(expected) - received)
            duplicated = len(ids) - len(received)
            disorder = sum(1 for a, b in itertools.pairwise(ids) if b <= a)
            strange = received - set(expected)
            not_visible = sum(1 for k in strange if k in position)
            result.lost += lost
            result.duplicated += duplicated
            result.out_of_order += disorder
            result.not_visible += not_visible
            result.unknown += len(strange) - not_visible
            if lost:
                missing = sorted(set(expected) - received)[:3]
                _example(
                    result,
                    person,
                    f"segment {number}: {lost} lost, e.g. {[key_id(k) for k in missing]}",
                )
            if duplicated or disorder or strange:
                _example(
                    result,
                    person,
                    f"segment {number}: {duplicated} duplicated, {disorder} out of order, "
                    f"{len(strange)} not expected",
                )
    return result


def _example(result: SocketCheck, person: Person, text: str) -> None:
    if len(result.examples) < 10:
        result.examples.append(f"{person.username}: {text}")


@dataclass
class Leg:
    sid: str
    agent: str
    conference: str
    created: datetime
    answered: datetime | None
    ended: datetime | None
    status: str


@dataclass
class AssignmentCheck:
    legs: int = 0
    agent_overlaps: int = 0  # an agent dialed for two calls at once
    conference_overlaps: int = 0  # a customer offered to two agents at once
    examples: list[str] = field(default_factory=list)


def agent_legs(sim: Simulator) -> list[Leg]:
    legs = []
    for call in sim.board.calls.values():
        if call.direction != "outbound-api" or not call.to.startswith("client:") or not call.url:
            continue
        query = parse_qs(urlsplit(call.url).query)
        legs.append(
            Leg(
                call.sid,
                call.identity,
                query.get("conference", ["?"])[0],
                call.created,
                call.start_time,
                call.end_time,
                call.status,
            )
        )
    return legs


def engaged_until(leg: Leg, facts: LogFacts, until: datetime) -> datetime:
    """When ``leg``'s agent was free again: its end, or its leaving the conference."""
    end = leg.ended or until
    left = facts.agent_left.get(leg.sid)
    if left is not None:
        end = min(end, datetime.fromtimestamp(left / 1000, UTC))
    return end


def check_assignments(legs: list[Leg], facts: LogFacts, until: datetime) -> AssignmentCheck:
    """From the simulator's record of every REST dial: no agent rung for two calls at
    once; no customer offered to two agents at once. Two legs of one customer overlap
    only as a warm transfer: the second dialed after the first answered, to the
    transfer's colleague. An agent is free once the app has seen their leg leave the
    conference (Twilio ends the leg itself a moment later, when its TwiML runs out;
    a dial in that moment is not a second call at once)."""
    result = AssignmentCheck(legs=len(legs))
    colleagues: dict[str, set[str]] = collections.defaultdict(set)
    for transfer in facts.transfers.values():
        if transfer["to_agent"]:
            colleagues[transfer["conference"]].add(transfer["to_agent"])
    by_agent: dict[str, list[Leg]] = collections.defaultdict(list)
    by_conference: dict[str, list[Leg]] = collections.defaultdict(list)
    for leg in legs:
        by_agent[leg.agent].append(leg)
        by_conference[leg.conference].append(leg)
    for agent, mine in by_agent.items():
        mine.sort(key=lambda leg: leg.created)
        for before, after in itertools.pairwise(mine):
            if engaged_until(before, facts, until) > after.created:
                result.agent_overlaps += 1
                if len(result.examples) < 10:
                    result.examples.append(
                        f"{agent} dialed for {after.conference} ({after.sid}) while still on "
                        f"{before.conference} ({before.sid}, {before.status})"
                    )
    for name, theirs in by_conference.items():
        theirs.sort(key=lambda leg: leg.created)
        for i, first in enumerate(theirs):
            for second in theirs[i + 1 :]:
                if (first.ended or until) <= second.created:
                    continue
                transfer = (
                    first.answered is not None
                    and first.answered <= second.created
                    and second.agent in colleagues[name]
                )
                if not transfer:
                    result.conference_overlaps += 1
                    if len(result.examples) < 10:
                        result.examples.append(
                            f"customer {name} dialed to {second.agent} ({second.sid}) while "
                            f"{first.agent} ({first.sid}) was {first.status}"
                        )
    return result


def scan_log(text: str) -> dict[str, Any]:
    """Tracebacks, errors, 5xx answers and warnings in the server's output."""
    statuses: collections.Counter[str] = collections.Counter()
    warnings: collections.Counter[str] = collections.Counter()
    errors: list[str] = []
    tracebacks = 0
    for line in text.splitlines():
        access = re.search(r'"(GET|POST|DELETE|PUT) ([^ ?"]+)[^"]*" (\d{3}) ', line)
        if access:
            if access[3].startswith("5"):
                statuses[f"{access[3]} {access[1]} {access[2]}"] += 1
            continue
        if line.startswith("Traceback"):
            tracebacks += 1
        if "ERROR" in line or "CRITICAL" in line:
            if len(errors) < 10:
                errors.append(line[:300])
        elif "WARNING" in line:
            message = re.sub(r"CA[0-9a-f]{32}|dial-[0-9a-f]+|TR[0-9a-f]+|\d+", "#", line)
            warnings[message[message.find("WARNING") :][:160]] += 1
    return {
        "tracebacks": tracebacks,
        "errors": errors,
        "5xx": dict(statuses),
        "warnings": dict(warnings.most_common(8)),
    }


# -- one run ---------------------------------------------------------------------------------


async def settle(boss: Person, agents: int) -> tuple[bool, str]:
    """Wait until the app shows no live call, an empty queue, every agent available."""
    deadline = time.monotonic() + SETTLE_SECONDS
    detail = ""
    while time.monotonic() < deadline:
        status, state = await boss.api("GET", "/api/state")
        if status == 200:
            live = [c for c in state["conferences"] if c["status"] != "ended"]
            busy = [a for a in state["agents"] if a["status"] != "available"]
            detail = (
                f"{len(live)} live conferences, {len(state['queue'])} queued, "
                f"{len(busy)} agents not available "
                f"({dict(collections.Counter(a['status'] for a in busy))})"
            )
            if live:
                detail += "; e.g. " + ", ".join(
                    f"{c['name']} ({c['status']}, "
                    f"{[(p['role'], p['agent']) for p in c['participants']]})"
                    for c in live[:3]
                )
            if not live and not state["queue"] and not busy and len(state["agents"]) >= agents:
                return True, detail
        await asyncio.sleep(1.0)
    return False, detail


async def await_delivery(people: list[Person], facts: LogFacts, log_end: int) -> None:
    """Give every socket time to receive the last event of the log it may see."""
    wanted = {}
    for person in people:
        wanted[person.username] = log_end
        if not person.supervisor:
            wanted[person.username] = max(
                (
                    k
                    for k, a in zip(facts.keys, facts.audiences, strict=True)
                    if a is None or person.username in a
                ),
                default=-1,
            )
    deadline = time.monotonic() + DELIVERY_SECONDS
    while time.monotonic() < deadline:
        if all(
            p.recorder.last >= wanted[p.username] or p.recorder.closed_by_server for p in people
        ):
            return
        await asyncio.sleep(0.2)


async def run(opts: Options) -> dict[str, Any]:
    """Start Redis, the simulator and `warmline serve`; run the flows; check; stop
    everything whatever happens (an error, Ctrl-C)."""
    with tempfile.TemporaryDirectory(prefix="warmline-flows-") as tmp:
        workdir = Path(tmp)
        log = workdir / "warmline.log"
        redis_server = start_redis(workdir / "redis", persist=False)
        redis = Redis.from_url(redis_server.url, decode_responses=True)
        sim = Simulator(
            "http://127.0.0.1:9", ACCOUNT_SID, AUTH_TOKEN, seed=7, time_scale=opts.time_scale
        )
        server: Server | None = None
        bench: Bench | None = None
        try:
            await sim.start()
            server = await start_server(opts, redis_server.url, sim.base_url, log)
            sim.point_at(server.url)
            bench = Bench(opts, sim, server.url)
            began = time.monotonic()
            await bench.setup_people(redis)
            say(
                f"{len(bench.agents)} agents, {len(bench.supervisors)} supervisors ready "
                f"({time.monotonic() - began:.0f} s)"
            )
            meter = Meter(
                psutil.Process(server.process.pid),
                opts.workers,
                psutil.Process(redis_server.process.pid),
            )
            meter.start()
            try:
                peaks = await drive(bench)
            finally:
                meter.stop()
            say(f"flows done in {meter.window:.0f} s; settling and checking")
            report = await verify(bench, redis)
            report.update(peaks)
            report["options"] = {k: str(v) for k, v in asdict(opts).items()}
            report["window_s"] = meter.window
            report["server"] = meter.report()
            report["server_log"] = scan_log(log.read_text(errors="replace"))
            return report
        finally:
            if bench is not None:
                with contextlib.suppress(Exception):
                    await bench.close()
            with contextlib.suppress(Exception):
                await sim.stop()
            if server is not None:
                server.stop()
            with contextlib.suppress(Exception):
                await redis.aclose()
            redis_server.stop()
            if opts.keep is not None and log.exists():
                opts.keep.parent.mkdir(parents=True, exist_ok=True)
                opts.keep.write_bytes(log.read_bytes())


async def start_server(opts: Options, redis_url: str, twilio_url: str, log: Path) -> Server:
    """`warmline serve` with ``--workers`` Hypercorn workers and a log long enough to
    hold every event of the run (the socket check reads it all)."""
    port = free_port()
    env = server_env(
        redis_url,
        twilio_url,
        port,
        WEB_CONCURRENCY=str(opts.workers),
        RING_TIMEOUT_SECONDS=str(RING_TIMEOUT_SECONDS),
        EVENT_LOG_MAXLEN=str(max(100_000, opts.calls * 200)),
    )
    process = spawn([sys.executable, "-m", "warmline.cli", "serve"], env, log)
    server = Server("warmline", f"http://127.0.0.1:{port}", process, log)
    try:
        await wait_healthy(server, START_TIMEOUT_SECONDS)
    except BaseException:
        server.stop()
        raise
    return server


async def drive(bench: Bench) -> dict[str, Any]:
    """Place the calls and wait until every customer's call has ended. At
    ``--deadline``, or when neither a call has ended nor the app has published an
    event (the supervisor's socket is quiet) for STALL_SECONDS after the last was
    placed, what is left is hung up and counted as stuck."""
    opts, started = bench.opts, time.monotonic()
    placing = asyncio.create_task(bench.place_calls())
    peak_live = peak_waiting = 0
    next_progress = started + PROGRESS_SECONDS
    last_change, last_seen, stop = started, (-1, -1), ""
    boss = bench.supervisors[0].recorder
    try:
        while not (placing.done() and bench.live() == 0):
            if placing.done() and placing.exception() is not None:
                raise placing.exception()  # type: ignore[misc]
            await asyncio.sleep(0.25)
            now = time.monotonic()
            live, waiting = bench.live(), bench.waiting()
            peak_live, peak_waiting = max(peak_live, live), max(peak_waiting, waiting)
            seen = (live, boss.messages)
            if seen != last_seen or not placing.done():
                last_change, last_seen = now, seen
            if now >= next_progress:
                next_progress += PROGRESS_SECONDS
                say(
                    f"{now - started:5.0f} s: placed {len(bench.flows)}, live {live}, "
                    f"waiting {waiting}, ended {len(bench.flows) - live}"
                )
            if now - started > opts.deadline:
                stop = f"deadline ({opts.deadline:.0f} s)"
            elif now - last_change > STALL_SECONDS:
                stop = f"stalled (no call ended, no event for {STALL_SECONDS:.0f} s)"
            if stop:
                for name, flow in bench.flows.items():
                    if not bench.ended(name):
                        flow.stuck = True
                        bench.sim.hangup(name)
                say(f"{stop}: {sum(f.stuck for f in bench.flows.values())} calls hung up")
                break
    finally:
        placing.cancel()
    return {"peak_live": peak_live, "peak_waiting": peak_waiting, "stopped": stop}


async def verify(bench: Bench, redis: Redis) -> dict[str, Any]:
    """Let the app settle, let every socket receive the log's tail, close the sockets,
    then check them against the log and the dials against each other."""
    settled, settle_detail = await settle(bench.supervisors[0], bench.opts.agents)
    facts = await read_log(redis)
    log_end = facts.keys[-1] if facts.keys else 0
    await await_delivery(bench.people, facts, log_end)
    bench.closing = True
    await asyncio.gather(*(p.close() for p in bench.people), return_exceptions=True)
    sockets = check_sockets(bench.people, facts, log_end)
    assignments = check_assignments(agent_legs(bench.sim), facts, datetime.now(UTC))
    report = summarize(bench, facts, sockets, assignments)
    report["settled"] = settled
    report["settle_detail"] = settle_detail
    report["log_trimmed"] = facts.length != facts.published
    report["callbacks"] = callback_answers(bench.sim)
    report["api_answers"] = {f"{r} {s}": n for (r, s), n in sorted(bench.answers.items())}
    report["notes"] = bench.notes
    report["task_errors"] = bench.task_errors[:10]
    return report


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _Counting(logging.Handler):
    """Counts the simulator's own warnings (e.g. a TwiML fetch that failed)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = re.sub(r"CA[0-9a-f]{32}|\d+", "#", record.getMessage())
        self.counts[message[:160]] += 1


def callback_answers(sim: Simulator) -> dict[str, Any]:
    """How the app answered the simulator's status callbacks (the last attempt of
    each), and how many needed a retry."""
    final: collections.Counter[str] = collections.Counter()
    failed: collections.Counter[str] = collections.Counter()  # attempts before the last
    retried = 0
    for delivery in sim.deliverer.sent:
        final[str(delivery.statuses[-1]) if delivery.statuses else "none"] += 1
        retried += len(delivery.statuses) > 1
        failed.update(str(status) for status in delivery.statuses[:-1])
    return {
        "sent": len(sim.deliverer.sent),
        "final": dict(final),
        "retried": retried,
        "failed_attempts": dict(failed),
    }


def summarize(
    bench: Bench, facts: LogFacts, sockets: SocketCheck, assignments: AssignmentCheck
) -> dict[str, Any]:
    completed_transfers = {
        t["conference"] for t in facts.transfers.values() if t["status"] == "completed"
    }
    flow_s, transfer_flow_s, wait_s = [], [], []
    phases: dict[str, list[float]] = collections.defaultdict(list)
    counts: collections.Counter[str] = collections.Counter()
    for name, flow in bench.flows.items():
        joined = facts.first_agent_join.get(name)
        queued, routed = facts.queued.get(name), facts.routed.get(name)
        if queued is None:
            counts["never queued"] += 1
        else:
            phases["placed → queued"].append((queued - flow.placed_ms) / 1000)
        if routed is not None:
            phases["placed → dequeued (answered)"].append((routed - flow.placed_ms) / 1000)
            if joined is not None:
                phases["dequeued → agent joined"].append((joined - routed) / 1000)
        if joined is not None:
            wait_s.append((joined - flow.placed_ms) / 1000)
            if name in facts.ended:
                phases["agent joined → ended"].append((facts.ended[name] - joined) / 1000)
        if flow.stuck:
            counts["stuck"] += 1
            continue
        if joined is None:
            counts["abandoned"] += 1
            continue
        if name not in facts.ended:
            counts["not ended in the log"] += 1
            continue
        seconds = (facts.ended[name] - flow.placed_ms) / 1000
        flow_s.append(seconds)
        if name in completed_transfers:
            counts["with transfer"] += 1
            transfer_flow_s.append(seconds)
        else:
            counts["without transfer"] += 1
    outcomes = collections.Counter(t["status"] for t in facts.transfers.values())
    reasons = collections.Counter(
        t["reason"] or t["status"]
        for t in facts.transfers.values()
        if t["status"] in ("failed", "canceled")
    )
    return {
        "flows": {
            "placed": len(bench.flows),
            "completed": len(flow_s),
            "with_transfer": counts["with transfer"],
            "without_transfer": counts["without transfer"],
            "gave_up": sum(f.gave_up for f in bench.flows.values()),
            "abandoned": counts["abandoned"],
            "stuck": counts["stuck"],
            "not_ended_in_log": counts["not ended in the log"],
            "never_queued": counts["never queued"],
            "flow_p50_s": percentile(flow_s, 50),
            "flow_p99_s": percentile(flow_s, 99),
            "transfer_flow_p50_s": percentile(transfer_flow_s, 50),
            "transfer_flow_p99_s": percentile(transfer_flow_s, 99),
            "queue_wait_p50_s": percentile(wait_s, 50),
            "queue_wait_p99_s": percentile(wait_s, 99),
        },
        "transfers": {
            "requested": len(facts.transfers),
            "outcomes": dict(outcomes),
            "failed_reasons": dict(reasons),
            "attempts": sum(f.attempts for f in bench.flows.values()),
            "refused_409": sum(f.refused for f in bench.flows.values()),
            "errors_5xx_or_no_answer": sum(f.errors for f in bench.flows.values()),
            "failures_seen_by_agents": dict(bench.transfer_failures),
        },
        "phases_p50_p99_s": {
            k: [round(percentile(v, 50), 2), round(percentile(v, 99), 2)] for k, v in phases.items()
        },
        "idle_to_ring_p50_p99_s": [
            round(percentile(facts.idle_to_ring_s, 50), 3),
            round(percentile(facts.idle_to_ring_s, 99), 3),
        ],
        "events": {"log": len(facts.keys), "types": dict(facts.types.most_common())},
        "sockets": asdict(sockets),
        "assignments": asdict(assignments),
    }


def checks(report: dict[str, Any]) -> list[tuple[str, bool, str]]:
    s, a, f = report["sockets"], report["assignments"], report["flows"]
    return [
        (
            "every socket: no event lost, none twice, in order",
            s["lost"] == s["duplicated"] == s["out_of_order"] == 0
            and s["unknown"] == s["early"] == s["no_snapshot"] == 0,
            f"lost {s['lost']}, duplicated {s['duplicated']}, out of order "
            f"{s['out_of_order']}, unknown ids {s['unknown']}, before snapshot {s['early']}",
        ),
        (
            "every socket: nothing the user may not see",
            s["not_visible"] == 0,
            f"{s['not_visible']} events outside the user's audience",
        ),
        (
            "the event log was never trimmed (so the check above is complete)",
            not report["log_trimmed"],
            "",
        ),
        (
            "no agent dialed for two calls at once",
            a["agent_overlaps"] == 0,
            f"{a['agent_overlaps']} overlapping dials",
        ),
        (
            "no customer offered to two agents at once",
            a["conference_overlaps"] == 0,
            f"{a['conference_overlaps']} overlapping dials",
        ),
        (
            "every call ended and the app settled (no call, no queue, all available)",
            f["stuck"] == 0 and f["not_ended_in_log"] == 0 and report["settled"],
            report["settle_detail"],
        ),
    ]


def table(report: dict[str, Any]) -> str:
    f, t, s, a = report["flows"], report["transfers"], report["sockets"], report["assignments"]
    server, opts = report["server"], report["options"]
    rate = "all at once" if float(opts["rate"]) <= 0 else f"{opts['rate']}/s"
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(t["failed_reasons"].items())) or "-"
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(t["outcomes"].items())) or "-"
    log = report["server_log"]
    fives = sum(log["5xx"].values()) + sum(
        v for k, v in report["api_answers"].items() if k.split()[-1].startswith("5")
    )
    rows = [
        ("calls placed", f"{f['placed']} ({rate}) over {opts['agents']} agents"),
        (
            "peak calls in flight / waiting for an agent",
            f"{report['peak_live']} / {report['peak_waiting']}",
        ),
        ("flows completed", f"{f['completed']} in {report['window_s']:.0f} s"),
        (
            "... with a warm transfer / without (agent gave up)",
            f"{f['with_transfer']} / {f['without_transfer']} ({f['gave_up']})",
        ),
        (
            "calls abandoned / stuck (hung up by the bench)",
            f"{f['abandoned']} / {f['stuck']}" + (f" ({report['stopped']})" if f["stuck"] else ""),
        ),
        (
            "flow time p50 / p99 (placed → conference ended)",
            f"{f['flow_p50_s']:.1f} s / {f['flow_p99_s']:.1f} s",
        ),
        (
            "... flows with a transfer p50 / p99",
            f"{f['transfer_flow_p50_s']:.1f} s / {f['transfer_flow_p99_s']:.1f} s",
        ),
        (
            "queue wait p50 / p99 (placed → first agent joined)",
            f"{f['queue_wait_p50_s']:.1f} s / {f['queue_wait_p99_s']:.1f} s",
        ),
        (
            "phases p50 / p99 (s)",
            "; ".join(
                f"{k} {v[0]:.1f} / {v[1]:.1f}" for k, v in report["phases_p50_p99_s"].items()
            ),
        ),
        (
            "agent available → rung again p50 / p99",
            f"{report['idle_to_ring_p50_p99_s'][0] * 1000:.0f} ms / "
            f"{report['idle_to_ring_p50_p99_s'][1] * 1000:.0f} ms",
        ),
        ("customers the app never queued (no call.queued event)", f"{f['never_queued']}"),
        ("transfers requested (outcomes)", f"{t['requested']} ({outcomes})"),
        ("transfers failed or canceled, by reason", reasons),
        (
            "transfer requests refused (409, nobody available)",
            f"{t['refused_409']} of {t['attempts']}",
        ),
        ("events in the log", f"{report['events']['log']:,}"),
        (
            "sockets (agents + supervisors)",
            f"{s['sockets']}: {s['messages']:,} messages, {s['megabytes']:,.0f} MB",
        ),
        ("events expected / delivered", f"{s['expected']:,} / {s['delivered']:,}"),
        (
            "lost / duplicated / out of order / not visible",
            f"{s['lost']} / {s['duplicated']} / {s['out_of_order']} / {s['not_visible']}",
        ),
        ("resyncs / sockets closed by the server", f"{s['resyncs']} / {s['closed_by_server']}"),
        (
            "agent legs dialed / double assignments (agent, customer)",
            f"{a['legs']} / {a['agent_overlaps']}, {a['conference_overlaps']}",
        ),
        (
            "worker CPU (cores, mean over the flows)",
            f"{server['cpu_cores']:.2f} ({server['workers']} worker(s): "
            f"{server['cpu_cores_per_worker']})",
        ),
        (
            "worker RSS idle / peak",
            f"{server['rss_idle_mb']:.0f} MB / {server['rss_peak_mb']:.0f} MB",
        ),
        (
            "CPU elsewhere (cores)",
            ", ".join(
                f"{k} {v:.2f}"
                for k, v in server["cpu_cores_by_process"].items()
                if k != "workers" and (v or k != "server master")
            ),
        ),
        ("5xx answers / tracebacks in the server log", f"{fives} / {log['tracebacks']}"),
        (
            "status callbacks sent (final answers; retried: the failed attempts, "
            "rt = no answer in time, ct = no connection)",
            f"{report['callbacks']['sent']:,} ({report['callbacks']['final']}; "
            f"{report['callbacks']['retried']}: {report['callbacks']['failed_attempts']})",
        ),
    ]
    lines = ["| measure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines.append("")
    for name, ok, detail in checks(report):
        lines.append(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""))
    extra = []
    if log["5xx"]:
        extra.append(f"server 5xx: {log['5xx']}")
    if log["errors"]:
        extra.append("server errors: " + " | ".join(log["errors"][:3]))
    if log["warnings"]:
        extra.append(f"server warnings: {log['warnings']}")
    if report.get("simulator_warnings"):
        extra.append(f"simulator warnings: {report['simulator_warnings']}")
    extra += [f"socket: {e}" for e in s["examples"][:5]]
    extra += [f"assignment: {e}" for e in a["examples"][:5]]
    extra += [f"note: {n}" for n in report["notes"][:5]]
    extra += [f"bench task error: {e}" for e in report["task_errors"][:3]]
    return "\n".join(lines + extra)


def register(commands: argparse._SubParsersAction) -> None:
    """``python -m bench flows``."""
    p = commands.add_parser(
        "flows", help="whole call flows with warm transfers through the simulator"
    )
    p.add_argument("--calls", type=int, default=1000, help="customer calls to place")
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--supervisors", type=int, default=1, help="supervisor sockets")
    p.add_argument("--workers", type=int, default=1, choices=(1, 2), help="Hypercorn workers")
    p.add_argument(
        "--rate", type=float, default=100.0, help="calls placed per second (0: all at once)"
    )
    p.add_argument("--talk", type=float, default=1.0, help="seconds talked before and after")
    p.add_argument(
        "--answer-delay", type=float, default=1.0, help="softphones answer after (simulated s)"
    )
    p.add_argument("--time-scale", type=float, default=1.0, help="simulator time scale")
    p.add_argument(
        "--to", choices=("any", "named"), default="any", help="transfer to: any, or a colleague"
    )
    p.add_argument(
        "--transfer-patience",
        type=float,
        default=5.0,
        help="seconds an agent keeps asking for a colleague before ending the call",
    )
    p.add_argument(
        "--patience", type=float, default=0.0, help="customers hang up after this wait (0: never)"
    )
    p.add_argument(
        "--end-by",
        choices=("customer", "colleague", "both"),
        default="both",
        help="who hangs up at the end (both: alternately)",
    )
    p.add_argument(
        "--deadline", type=float, default=240.0, help="seconds of flows before giving up"
    )
    p.add_argument("--deflate", action="store_true", help="sockets offer permessage-deflate")
    p.add_argument("--json", type=Path, help="also write every figure here")
    p.add_argument("--keep-log", type=Path, help="copy the server's log here")
    p.set_defaults(main=main)


def main(args: argparse.Namespace) -> int:
    opts = Options(
        calls=args.calls,
        agents=args.agents,
        supervisors=max(1, args.supervisors),
        workers=args.workers,
        rate=args.rate,
        talk=args.talk,
        answer_delay=args.answer_delay,
        time_scale=args.time_scale,
        to=args.to,
        transfer_patience=args.transfer_patience,
        patience=args.patience,
        end_by=args.end_by,
        deadline=args.deadline,
        deflate=args.deflate,
        keep=args.keep_log,
    )
    if opts.agents < 2:
        raise SystemExit("--agents: at least 2 (a transfer needs a colleague)")
    counting = _Counting()
    logging.getLogger("simulator").addHandler(counting)
    try:
        report = _run_loop(run(opts))
    except KeyboardInterrupt:
        say("interrupted: everything the run started has been stopped")
        return 130
    report["simulator_warnings"] = dict(counting.counts.most_common(5))
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0 if all(ok for _, ok, _ in checks(report)) else 1


def _run_loop(coroutine: Any) -> dict[str, Any]:
    """On uvloop where installed, as `warmline serve` runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
