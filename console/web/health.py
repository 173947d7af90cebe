"""/healthz for the platform's checks, /metrics for Prometheus."""

from __future__ import annotations

import hmac

from quart import Blueprint, Response, jsonify, request
from redis.exceptions import RedisError

from console.domain import keys
from console.extension import get_settings
from console.redis_ext import get_redis
from console.web import metrics

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
async def get_healthz() -> tuple[Response, int]:
    try:
        await get_redis().ping()
    except (RedisError, OSError) as exc:
        return jsonify({"status": "unhealthy", "reason": f"redis: {type(exc).__name__}"}), 503
    return jsonify({"status": "ok"}), 200


@blueprint.get("/metrics")
async def get_metrics() -> Response:
    token = get_settings().metrics_token
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return Response("401 Unauthorized\n", 401, mimetype="text/plain")
    try:
        async with get_redis().pipeline(transaction=False) as pipe:
            pipe.llen(keys.QUEUE)
            pipe.scard(keys.LIVE)
            pipe.hget(keys.COUNTERS, "events_published")
            queue, live, published = await pipe.execute()
    except (RedisError, OSError):
        return Response("503 Redis unavailable\n", 503, mimetype="text/plain")
    body = metrics.get_metrics().exposition(
        {
            "warmline_queue_size": ("gauge", "Customers waiting for an agent.", queue),
            "warmline_live_conferences": ("gauge", "Conferences not yet ended.", live),
            "warmline_events_published_total": (
                "counter",
                "Events written to the log by every process.",
                int(published or 0),
            ),
        }
    )
    return Response(body, content_type=metrics.CONTENT_TYPE)
