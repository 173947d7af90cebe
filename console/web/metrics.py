"""Prometheus metrics: webhook counts and latencies, sockets, events (docs/api.md).

Counters about this process (webhooks served, sockets held, messages delivered,
resyncs) live in a registry per app; figures about the deployment (queue size,
live conferences, events published by every process) are read from Redis at
scrape time, so any worker answers them the same. Behind several workers each
scrape sees one worker's process counters, as with any multi-process server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from quart import Quart, Response, current_app, g, request

from console.extension import Extension
from console.realtime.hub import Hub

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _HubCollector(Collector):
    """Reads the hub's plain integers at scrape time: cheaper than a locked counter
    incremented for each of thousands of deliveries per second."""

    def __init__(self, app: Quart) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        hub = Hub.of(self.app)
        yield GaugeMetricFamily(
            "warmline_ws_connected", "WebSockets open in this process.", len(hub.subscribers)
        )
        yield CounterMetricFamily(
            "warmline_ws_delivered", "Event messages sent to sockets.", hub.delivered
        )
        yield CounterMetricFamily(
            "warmline_ws_delivered_direct",
            "Of those, written straight onto a caught-up socket by the log reader.",
            hub.delivered_direct,
        )
        yield CounterMetricFamily(
            "warmline_ws_resyncs", "Sockets that fell behind and were resynced.", hub.resyncs
        )
        yield CounterMetricFamily(
            "warmline_events_read", "Events this process read from the log.", hub.published
        )


class Metrics(Extension):
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
        self.registry.register(_HubCollector(app))
        self.register(app)
        app.before_request(self._start_timer)
        app.after_request(self._observe)

    async def _start_timer(self) -> None:
        g.warmline_started = time.perf_counter()

    async def _observe(self, response: Response) -> Response:
        rule = request.url_rule
        view = current_app.view_functions.get(request.endpoint or "") if rule else None
        if view is not None and getattr(view, "__warmline_webhook__", False):
            route = rule.rule  # type: ignore[union-attr]
            elapsed = time.perf_counter() - g.get("warmline_started", time.perf_counter())
            self.latency.labels(route).observe(elapsed)
            self.webhooks.labels(route, str(response.status_code)).inc()
        return response

    def exposition(self, deployment: dict[str, tuple[str, str, float]]) -> bytes:
        """This process's metrics plus ``deployment``: name -> (type, help, value)."""
        lines = []
        for name, (kind, text, value) in deployment.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return generate_latest(self.registry) + ("\n".join(lines) + "\n").encode()


def get_metrics() -> Metrics:
    return Metrics.current()
