"""`warmline serve` and its workers log the app's own lines with time, process,
level and source, like Hypercorn's error log, once each."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import logging
from warmline import logs
logs.configure()
logs.configure()  # a second call (the in-process worker) must not double the lines
logging.getLogger("console.domain.errors").warning("POST /api/x: 503, %s", "Contended")
logging.getLogger("webhooks.routes").info("a note")
logging.getLogger("console.domain.unit").debug("too fine")
logging.getLogger("elsewhere").info("not ours")
"""


def test_own_loggers_write_timed_levelled_lines_to_stderr_once() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    lines = done.stderr.splitlines()
    assert len(lines) == 2, lines
    warning, note = lines
    assert "[WARNING] console.domain.errors: POST /api/x: 503, Contended" in warning
    assert warning.startswith("[20") and "] [" in warning  # [date] [pid]
    assert "[INFO] webhooks.routes: a note" in note
    assert done.stdout == ""
