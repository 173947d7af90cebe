"""The directory where `warmline serve`'s worker processes keep their Prometheus
figures, so that /metrics, whichever worker answers it, reports them all
(prometheus-client's multiprocess mode; console.web.metrics reads it)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def shared_metrics_dir() -> Iterator[Path]:
    """Set PROMETHEUS_MULTIPROC_DIR for the workers about to start (each reads it when
    it first imports prometheus_client): the operator's directory, emptied of a past
    run's files, or a new temporary one, removed afterwards."""
    given = os.environ.get(MULTIPROC_DIR, "").strip()
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="warmline-metrics-"))
    os.environ[MULTIPROC_DIR] = str(path)
    try:
        yield path
    finally:
        del os.environ[MULTIPROC_DIR]
        shutil.rmtree(path, ignore_errors=True)
