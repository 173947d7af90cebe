"""A Redis set watched by Sentinel, on loopback in a temporary folder: a primary, a
replica and three Sentinels, each a real ``redis-server`` (``--sentinel`` for the
Sentinels). The data nodes require a password; the replica replicates as its own ACL
user, so a test can cut replication off (``cut_replication``) and make the primary's
next writes ones the replica never receives."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from console.config import RedisSentinels
from warmline.embedded_redis import find_redis_server, free_port

MASTER = "warmline"
PASSWORD = "data-node-password"
REPLICATION_USER, REPLICATION_PASSWORD = "replication", "replication-password"
DOWN_AFTER_MS = 1000  # how long the primary is silent before a Sentinel thinks it down
READY_SECONDS = 30.0


@dataclass
class Node:
    """One redis-server process (data node or Sentinel) on 127.0.0.1:``port``."""

    name: str
    port: int
    process: subprocess.Popen[bytes] = field(repr=False)
    log: Path

    def client(self, password: str | None = PASSWORD) -> redis.Redis:
        return redis.Redis(
            port=self.port, password=password, socket_timeout=2, decode_responses=True
        )

    def kill(self) -> None:
        """SIGKILL: nothing is flushed, no client is told."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@dataclass
class SentinelSet:
    primary: Node
    replica: Node
    sentinels: list[Node]

    @property
    def target(self) -> RedisSentinels:
        """What console.redis_ext.connect takes for this set."""
        return RedisSentinels(
            tuple(("127.0.0.1", s.port) for s in self.sentinels), MASTER, PASSWORD
        )

    def env(self) -> dict[str, str]:
        """The app's environment for this set (REDIS_URL left empty)."""
        return {
            "REDIS_URL": "",
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels),
            "REDIS_SENTINEL_MASTER": MASTER,
            "REDIS_SENTINEL_PASSWORD": PASSWORD,
        }

    def nodes(self) -> list[Node]:
        return [self.primary, self.replica, *self.sentinels]

    def stop(self) -> None:
        for node in self.nodes():
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                node.kill()

    def cut_replication(self) -> None:
        """Disable the replica's user on the primary and drop its link: what the primary
        writes from now on never reaches the replica (it keeps failing to log in)."""
        with self.primary.client() as primary:
            primary.execute_command("ACL", "SETUSER", REPLICATION_USER, "off")
            primary.execute_command("CLIENT", "KILL", "USER", REPLICATION_USER)
        with self.replica.client() as replica:
            _until(lambda: _link(replica) == "down", "the replica never lost its link")

    def master_address(self) -> tuple[str, int]:
        with self.sentinels[0].client(None) as sentinel:
            host, port = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        return host, int(port)


def _until(check: Callable[[], bool], failure: str, seconds: float = READY_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.05)


def _link(replica: redis.Redis) -> str:
    return str(replica.info("replication").get("master_link_status"))


def _start(
    binary: str, directory: Path, name: str, port: int, lines: list[str], sentinel: bool
) -> Node:
    folder = directory / name
    folder.mkdir(parents=True)
    conf = folder / "redis.conf"  # a Sentinel rewrites its own configuration file
    conf.write_text(
        "\n".join([f"port {port}", "bind 127.0.0.1", f"dir {folder}", "protected-mode no", *lines])
        + "\n"
    )
    log = folder / "log.txt"
    args = [binary, str(conf)] + (["--sentinel"] if sentinel else [])
    with log.open("wb") as sink:
        process = subprocess.Popen(
            args, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Node(name, port, process, log)


def start_sentinel_set(directory: Path) -> SentinelSet:
    """Start the five processes and wait until the replica is in sync and each Sentinel
    knows the replica and the two other Sentinels. The caller calls ``stop()``."""
    binary = find_redis_server()
    assert binary, "no redis-server to run"
    data = [
        'save ""',
        "appendonly no",
        f"requirepass {PASSWORD}",
        f"user {REPLICATION_USER} on >{REPLICATION_PASSWORD} +psync +replconf +ping",
    ]
    nodes: list[Node] = []
    try:
        primary = _start(binary, directory, "primary", free_port(), data, sentinel=False)
        nodes.append(primary)
        replica_lines = [
            *data,
            f"replicaof 127.0.0.1 {primary.port}",
            f"masteruser {REPLICATION_USER}",
            f"masterauth {REPLICATION_PASSWORD}",
        ]
        replica = _start(binary, directory, "replica", free_port(), replica_lines, sentinel=False)
        nodes.append(replica)
        watch = [
            f"sentinel monitor {MASTER} 127.0.0.1 {primary.port} 2",
            f"sentinel auth-pass {MASTER} {PASSWORD}",
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER} 10000",
            f"sentinel parallel-syncs {MASTER} 1",
        ]
        sentinels = []
        for number in range(3):
            node = _start(
                binary, directory, f"sentinel-{number}", free_port(), watch, sentinel=True
            )
            nodes.append(node)
            sentinels.append(node)
        found = SentinelSet(primary, replica, sentinels)
        with replica.client() as client:
            _until(lambda: _link(client) == "up", f"the replica never synced:\n{_logs(nodes)}")
        for node in sentinels:
            with node.client(None) as client:

                def knows_all(client: redis.Redis = client) -> bool:
                    state = client.sentinel_master(MASTER)
                    return state["num-slaves"] == 1 and state["num-other-sentinels"] == 2

                _until(knows_all, f"sentinel {node.port} never saw the set:\n{_logs(nodes)}")
        return found
    except BaseException:
        for node in nodes:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                node.kill()
        raise


def _logs(nodes: list[Node]) -> str:
    return "\n".join(f"--- {n.name}\n{n.log.read_text(errors='replace')[-2000:]}" for n in nodes)
