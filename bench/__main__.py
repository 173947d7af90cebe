"""``python -m bench fanout [options]``: run a benchmark and print its table."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from bench import fanout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    commands = parser.add_subparsers(dest="command", required=True)
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
    args = parser.parse_args(argv)

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= {"deflate", "none", "refused"}:
        parser.error("--modes takes deflate, none, refused")
    results = asyncio.run(
        fanout.run(
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
    rows = fanout.summarize(results)
    print(fanout.table(rows, args.sockets, args.rate))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
