"""``python -m bench NAME [options]``: run one benchmark and print its table.

Each benchmark module registers its own subcommand (``register``) and the function
that runs it (``main``), so a new benchmark is one module and one name below.
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = ("fanout", "webhooks", "flows", "fold", "units")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in BENCHMARKS:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"bench.{name}":
                raise
            continue  # not written yet
        module.register(commands)
    args = parser.parse_args(argv)
    return args.main(args)


if __name__ == "__main__":
    sys.exit(main())
