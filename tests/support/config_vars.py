"""The environment variables Warmline's configuration code reads, found by reading them:
console.config is run on an environment that records every name asked for. Deployment
files (app.json, compose.yaml) and README's table are checked against this list."""

from __future__ import annotations

import contextlib

from console.config import ConfigError, Settings, database_url, redis_tls_verify

# Read by `warmline serve` itself rather than console.config (warmline/cli.py,
# warmline/worker_metrics.py).
SERVE_VARIABLES = frozenset({"WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR"})
# Read by the configuration but set by the demo alone, not by whoever deploys.
INTERNAL_VARIABLES = frozenset({"WARMLINE_SIMULATOR_URL"})


class _RecordingEnv(dict):
    """An environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)


def configuration_variables() -> frozenset[str]:
    """Every variable a deployment may set: what console.config reads, and serve's own."""
    env = _RecordingEnv()
    with contextlib.suppress(ConfigError):  # an empty environment lacks the required ones;
        Settings.from_env(env)  # every name was still read
    redis_tls_verify(env)
    database_url(env)
    return frozenset(env.asked - INTERNAL_VARIABLES) | SERVE_VARIABLES


def required_variables() -> frozenset[str]:
    """The variables an empty environment is told it lacks."""
    try:
        Settings.from_env({})
    except ConfigError as error:
        suffix = " is required but not set"
        return frozenset(p.removesuffix(suffix) for p in error.problems if p.endswith(suffix))
    raise AssertionError("an empty environment passed the configuration check")
