"""What every benchmark measures with: CPU seconds of processes and of the machine,
waiting for a quiet machine, percentiles, and a py-spy profile of a worker."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import psutil

# One per round trip of a unit (console/domain/unit_state.py): the commit (WATCH), a
# read of the state or a lone check (EVALSHA), conferences or callers read mid-unit
# (MGET, HMGET). Not LRANGE, GET or EVAL: the read script and the commit make those too.
TRIP_COMMANDS = ("watch", "evalsha", "mget", "hmget")


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values (a table shows it as "-")."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU of ``processes``; one that has exited counts nothing."""
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (not idle, not waiting on I/O)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


async def settle(limit_s: float, quiet_cores: float = 0.3) -> float:
    """Wait (up to ``limit_s``) until the machine is quiet: other work running beside
    the bench skews every figure. Returns the cores busy in the last half second."""
    deadline = time.monotonic() + limit_s
    while True:
        before = busy_seconds()
        await asyncio.sleep(0.5)
        busy = (busy_seconds() - before) / 0.5
        if busy <= quiet_cores or time.monotonic() >= deadline:
            return busy


def start_py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Sample ``pid`` for ``seconds`` at 200 Hz into ``out`` (py-spy's raw format, one
    line per stack: feed it to a flame graph or count frames with grep)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--nonblocking",
            "--format",
            "raw",
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            "200",
            "--pid",
            str(pid),
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
