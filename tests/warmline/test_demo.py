"""`warmline demo` as a newcomer runs it: one command, then calls flow between the
simulated phone network and a logged-in agent, and Ctrl-C/SIGTERM stops it all."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.support.waiting import until
from warmline.demo import DEMO_PASSWORD
from warmline.embedded_redis import free_port

pytestmark = pytest.mark.timeout(120)


def start_demo(log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "warmline.cli", "demo", *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


async def banner(process: subprocess.Popen[bytes], log: Path) -> dict[str, str]:
    """The URLs the demo printed, once it is up."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(log.read_text)
        app = re.search(r"Warmline demo on (\S+)", text)
        sim = re.search(r"simulated phone network: (\S+)", text)
        if app and sim and "Running on" in text:
            return {"app": app.group(1), "sim": sim.group(1)}
        assert process.poll() is None, text
        await asyncio.sleep(0.1)
    raise AssertionError(await asyncio.to_thread(log.read_text))


async def test_demo_routes_a_simulated_call_to_an_agent_and_stops_cleanly(tmp_path):
    log = tmp_path / "demo.log"
    port = free_port()
    process = start_demo(log, "--port", str(port), "--bots", "0", "--rate", "0")  # alice's call
    try:
        urls = await banner(process, log)
        assert "alice" in log.read_text() and DEMO_PASSWORD in log.read_text()
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            app, sim = urls["app"], urls["sim"]
            form = {"username": "alice", "password": DEMO_PASSWORD}
            async with http.post(f"{app}/login", data=form, allow_redirects=False) as r:
                assert r.status == 303
            async with http.get(f"{app}/api/me") as r:
                assert (await r.json())["softphone"] == {"kind": "simulator", "url": sim}
            # Nobody is signed in yet: the demo's caller leaves a message (SPEC §9).
            async with http.post(f"{sim}/sim/calls", json={"message_seconds": 2}) as r:
                assert r.status == 201

            async def voicemail() -> list:
                async with http.get(f"{app}/api/state") as r:
                    return (await r.json())["voicemails"]

            [message] = await until(voicemail)
            assert message["status"] == "new" and message["reason"] == "no-agents"
            async with http.get(f"{app}{message['recording']['url']}") as r:
                assert r.status == 200 and (await r.read())[:4] == b"RIFF"
            async with http.post(f"{sim}/sim/phones/alice/register", json={"auto": "answer"}):
                pass
            async with http.post(f"{app}/api/me/status", json={"status": "available"}) as r:
                assert r.status == 200
            async with http.post(f"{sim}/sim/calls", json={}) as r:
                assert r.status == 201

            async def talking() -> bool:
                async with http.get(f"{app}/api/state") as r:
                    state = await r.json()
                return any(
                    c["status"] == "in-progress"
                    and {p["role"] for p in c["participants"]} == {"customer", "agent"}
                    for c in state["conferences"]
                )

            await until(talking)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_demo_reports_a_busy_port_in_one_line(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "warmline.cli", "demo", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"warmline: 127.0.0.1:{port} is taken: choose another port with --port"
    )
    assert "Warmline demo on" not in result.stdout  # said before anything starts


def test_help_names_every_command_and_the_demo_moves_on_its_own():
    result = subprocess.run(
        [sys.executable, "-m", "warmline.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert "serve, demo, check, reconcile, user, db" in result.stdout
    from warmline.cli import parser

    demo = parser().parse_args(["demo"])
    # A first look shows the floor moving: calls come in and simulated agents take them.
    assert (demo.rate, demo.bots) == (2.0, 3)
