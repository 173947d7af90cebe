"""Prometheus metrics: webhook counts and latencies, sockets, events, the history's
lag (docs/api.md, docs/history.md).

Counters about this process (webhooks served, sockets held, messages delivered,
resyncs) live in a registry per app; figures about the deployment (queue size,
live conferences, events published by every process) are read from Redis at
scrape time, so any worker answers them the same. When `warmline serve` runs
several workers it gives them PROMETHEUS_MULTIPROC_DIR (warmline.worker_metrics):
each worker then writes its counters there (prometheus-client's multiprocess mode)
and a scrape, whichever worker answers it, adds up every worker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from quart import Quart, Response, current_app, g, request

from console.domain.history_log import Backlog
from console.extension import ServingExtension
from console.realtime.hub import Hub
from console.tasks import cancel

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Set before prometheus_client is first imported, it switches it to shared files.
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# How often a worker copies its hub's figures into the shared files.
PUBLISH_SECONDS = 1.0

WS_CONNECTED = ("warmline_ws_connected", "WebSockets open, in every worker of this instance.")
# The hub's counters: metric name, help, the Hub attribute holding the count.
HUB_COUNTERS = (
    ("warmline_ws_delivered", "Event messages sent to sockets.", "delivered"),
    (
        "warmline_ws_delivered_direct",
        "Of those, written straight onto a caught-up socket by the log reader.",
        "delivered_direct",
    ),
    ("warmline_ws_resyncs", "Sockets that fell behind and were resynced.", "resyncs"),
    (
        "warmline_events_read",
        "Events the processes read from the log (while they held sockets).",
        "published",
    ),
)


def shared_across_workers() -> bool:
    """True in a worker of a multi-process `warmline serve`."""
    return bool(os.environ.get(MULTIPROC_DIR))


class _HubCollector(Collector):
    """Reads the hub's plain integers at scrape time: cheaper than a locked counter
    incremented for each of thousands of deliveries per second."""

    def __init__(self, app: Quart) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        hub = Hub.of(self.app)
        yield GaugeMetricFamily(*WS_CONNECTED, len(hub.subscribers))
        for name, text, attribute in HUB_COUNTERS:
            yield CounterMetricFamily(name, text, getattr(hub, attribute))


class _SharedHubFigures:
    """The hub's integers copied into the shared files (a collector of our own is not
    read across processes): open sockets summed over the live workers, the counts
    over every worker since the start."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected = Gauge(*WS_CONNECTED, multiprocess_mode="livesum", registry=registry)
        self.counters = {
            attribute: Counter(name, text, registry=registry)
            for name, text, attribute in HUB_COUNTERS
        }
        self.copied = dict.fromkeys(self.counters, 0)

    def publish(self, hub: Hub) -> None:
        self.connected.set(len(hub.subscribers))
        for attribute, counter in self.counters.items():
            value = getattr(hub, attribute)
            counter.inc(value - self.copied[attribute])
            self.copied[attribute] = value


class Metrics(ServingExtension):
    """The app's registry and request timing."""

    key = "metrics"

    def __init__(self, app: Quart) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = Counter(
            "warmline_webhook_requests",
            "Twilio webhook requests by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "warmline_webhook_latency_seconds",
            "Time to answer a Twilio webhook, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.shared: _SharedHubFigures | None = None
        if shared_across_workers():
            self.shared = _SharedHubFigures(self.registry)
        else:
            self.registry.register(_HubCollector(app))
        self._publisher: asyncio.Task[None] | None = None
        # Each label set's child, looked up once (``labels`` locks and hashes per call).
        self._latencies: dict[str, Any] = {}
        self._served: dict[tuple[str, int], Any] = {}
        self.init_app(app)
        app.before_request(self._start_timer)
        app.after_request(self._observe)

    async def start(self) -> None:
        if self.shared is not None:
            self._publisher = asyncio.create_task(self._publish_hub())

    async def stop(self) -> None:
        await cancel(self._publisher)
        if self.shared is not None:
            # This worker's open sockets leave the sum; its counts stay in it.
            with contextlib.suppress(OSError):
                mark_process_dead(os.getpid())

    async def _publish_hub(self) -> None:
        assert self.app is not None and self.shared is not None
        while True:
            self.shared.publish(Hub.of(self.app))
            await asyncio.sleep(PUBLISH_SECONDS)

    async def _start_timer(self) -> None:
        g.warmline_started = time.perf_counter()

    async def _observe(self, response: Response) -> Response:
        rule = request.url_rule
        view = current_app.view_functions.get(request.endpoint or "") if rule else None
        if view is not None and getattr(view, "__warmline_webhook__", False):
            route = rule.rule  # type: ignore[union-attr]
            elapsed = time.perf_counter() - g.get("warmline_started", time.perf_counter())
            latency = self._latencies.get(route)
            if latency is None:
                latency = self._latencies[route] = self.latency.labels(route)
            latency.observe(elapsed)
            served = self._served.get((route, response.status_code))
            if served is None:
                served = self.webhooks.labels(route, str(response.status_code))
                self._served[(route, response.status_code)] = served
            served.inc()
        return response

    def _process_metrics(self) -> bytes:
        """This process's metrics; with several workers, every worker's added up (the
        others' hub figures as of their last copy, at most PUBLISH_SECONDS old)."""
        if self.shared is None:
            return generate_latest(self.registry)
        assert self.app is not None
        self.shared.publish(Hub.of(self.app))
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker)
        return generate_latest(every_worker)

    def exposition(self, deployment: dict[str, tuple[str, str, float]]) -> bytes:
        """The workers' metrics plus ``deployment``: name -> (type, help, value)."""
        lines = []
        for name, (kind, text, value) in deployment.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return self._process_metrics() + ("\n".join(lines) + "\n").encode()


def history_figures(lag: Backlog) -> dict[str, tuple[str, str, float]]:
    """The history writers' lag and losses (read from Redis, the same from any worker)."""
    return {
        "warmline_history_lag_events": (
            "gauge",
            "Events in the log the history writers have not stored yet.",
            lag.events,
        ),
        "warmline_history_lag_seconds": (
            "gauge",
            "How long the oldest event not stored yet has waited, in seconds.",
            lag.seconds,
        ),
        "warmline_history_events_lost_total": (
            "counter",
            "Events trimmed from the log before the history stored them.",
            lag.lost,
        ),
    }


def get_metrics() -> Metrics:
    return Metrics.current()
