"""``python -m simulator``: run the Twilio Voice simulator against an app until Ctrl-C.

Point the app's ``TWILIO_API_BASE_URL`` at the printed URL and give both the same
account SID and auth token (read from ``TWILIO_ACCOUNT_SID``/``TWILIO_AUTH_TOKEN``
unless given)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal

from simulator.callbacks import Chaos
from simulator.load import LoadPlan
from simulator.server import Simulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    parser.add_argument("--app", required=True, help="the app's PUBLIC_BASE_URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--account-sid", default=os.environ.get("TWILIO_ACCOUNT_SID"))
    parser.add_argument("--auth-token", default=os.environ.get("TWILIO_AUTH_TOKEN"))
    parser.add_argument("--rate", type=float, help="customer calls per second")
    parser.add_argument("--in-flight", type=int, help="keep this many customer calls live")
    parser.add_argument("--agents", default="", help="comma-separated auto-answering agents")
    parser.add_argument("--talk", type=float, default=30.0, help="seconds an agent talks")
    parser.add_argument("--chaos", action="store_true", help="late/duplicate/reordered callbacks")
    parser.add_argument("--seed", type=int, help="seed for chaos and generated numbers")
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiplies sim durations")
    args = parser.parse_args(argv)
    if not args.account_sid or not args.auth_token:
        parser.error("--account-sid and --auth-token (or TWILIO_* env) are required")
    return args


async def run(args: argparse.Namespace) -> None:
    chaos = Chaos(seed=args.seed) if args.chaos else None
    sim = Simulator(
        args.app,
        args.account_sid,
        args.auth_token,
        seed=args.seed,
        chaos=chaos,
        time_scale=args.time_scale,
    )
    await sim.start(args.host, args.port)
    print(f"simulator on {sim.base_url} (TWILIO_API_BASE_URL), calling {sim.voice_url}")
    agents = tuple(a for a in args.agents.split(",") if a)
    if args.rate or args.in_flight:
        sim.load.start(LoadPlan(args.rate, args.in_flight, agents, talk=args.talk))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    main()
