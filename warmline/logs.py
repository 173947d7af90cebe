"""Log lines from Warmline's own loggers, in the shape of Hypercorn's error log.

Without a handler, Python prints a warning as its bare message (the last-resort
handler) and drops everything below: a 503's cause would reach the log with no time,
level or source, and no tool reading the log could tell it is a warning.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"
DATE_FORMAT = "[%Y-%m-%d %H:%M:%S %z]"
OWN_LOGGERS = ("warmline", "console", "webhooks")


def configure(level: int = logging.INFO) -> None:
    """Once per process (the `serve` master or in-process worker, each Hypercorn
    worker): stderr, as Hypercorn's error log. Our loggers do not propagate, so a
    root handler someone else adds does not print them twice."""
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    for name in OWN_LOGGERS:
        logger = logging.getLogger(name)
        if logger.handlers:
            continue
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a line is logged, not as it was when the
    handler was made (a command run in-process, as in a test, may outlive a capture)."""

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass
