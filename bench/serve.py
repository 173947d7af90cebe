"""``python -m bench.serve MODULE:APP``: serve an ASGI app exactly as `warmline serve`
serves Warmline (``warmline.cli.cmd_serve``): same Hypercorn Config fields, one worker
(``WEB_CONCURRENCY``) served in-process, bound to ``PORT``, and with DATABASE_URL the
history writer's process beside it."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys

from hypercorn.config import Config
from hypercorn.run import run

from warmline.access_log import AccessLogger
from warmline.cli import worker_class
from warmline.history_process import writer_process
from warmline.shutdown import run_in_process


def main(argv: list[str]) -> int:
    config = Config()
    config.application_path = argv[0] if argv else "bench.broadcast_app:app"
    config.bind = [f"0.0.0.0:{os.environ.get('PORT', '5000')}"]
    config.workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
    config.graceful_timeout = 10.0
    config.worker_class = worker_class()
    config.accesslog = "-"
    config.logger_class = AccessLogger
    config.errorlog = "-"
    # As `warmline serve` does: with a database, the history writer in a process of its own.
    with writer_process() if os.environ.get("DATABASE_URL") else contextlib.nullcontext():
        if config.workers == 1:
            module, _, name = config.application_path.partition(":")
            run_in_process(getattr(importlib.import_module(module), name), config)
            return 0
        return run(config)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
