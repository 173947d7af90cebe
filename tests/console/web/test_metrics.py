"""GET /metrics: Prometheus text with webhook latencies, sockets and deployment figures."""

from __future__ import annotations

import dataclasses

from prometheus_client.parser import text_string_to_metric_families

from tests.support.flow_helpers import login
from warmline.app import create_app


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_webhooks_sockets_and_the_queue(app, redis, voice):
    await voice.call_in()
    await voice.send(voice.incoming("CA" + "f" * 32, "+15550000002"))
    alice = await login(app, redis, "alice")
    async with alice.websocket("/ws") as socket:
        await socket.receive()
        response = await app.test_client().get("/metrics")
        assert response.status_code == 200
        assert response.content_type.startswith("text/plain")
        values = samples(await response.get_data(as_text=True))
    route = (("route", "/conference/connect/client"),)
    assert values[("warmline_webhook_latency_seconds_count", route)] == 2
    assert values[("warmline_webhook_requests_total", (*route, ("status", "200")))] == 2
    assert values[("warmline_queue_size", ())] == 2
    assert values[("warmline_ws_connected", ())] == 1
    assert values[("warmline_events_published_total", ())] >= 2


async def test_metrics_token_is_required_when_set(settings, redis, redis_server):
    guarded = create_app(
        dataclasses.replace(settings, metrics_token="s3cret"), redis_url=redis_server.url
    )
    async with guarded.test_app():
        client = guarded.test_client()
        assert (await client.get("/metrics")).status_code == 401
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200
