"""``python -m bench.serve MODULE:APP``: serve an ASGI app exactly as `warmline serve`
serves Warmline (``console.cli.cmd_serve``): same Hypercorn Config fields, one worker
process (``WEB_CONCURRENCY``), bound to ``PORT``."""

from __future__ import annotations

import os
import sys

from hypercorn.config import Config
from hypercorn.run import run

from console.cli import worker_class


def main(argv: list[str]) -> int:
    config = Config()
    config.application_path = argv[0] if argv else "bench.broadcast_app:app"
    config.bind = [f"0.0.0.0:{os.environ.get('PORT', '5000')}"]
    config.workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
    config.graceful_timeout = 10.0
    config.worker_class = worker_class()
    config.accesslog = "-"
    config.errorlog = "-"
    return run(config)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
