"""/healthz for the platform's checks, /metrics for Prometheus."""

from __future__ import annotations

import hmac

from quart import Blueprint, Response, jsonify, request
from redis.exceptions import RedisError

from console import keys
from console.app import get_settings
from console.redis_ext import get_redis

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
    redis = get_redis()
    try:
        queue = await redis.llen(keys.QUEUE)
        live = await redis.scard(keys.LIVE)
        events = 0
        if await redis.exists(keys.EVENTS):
            events = (await redis.xinfo_stream(keys.EVENTS)).get("entries-added", 0)
    except (RedisError, OSError):
        return Response("503 Redis unavailable\n", 503, mimetype="text/plain")
    lines = [
        "# HELP warmline_queue_size Customers waiting for an agent.",
        "# TYPE warmline_queue_size gauge",
        f"warmline_queue_size {queue}",
        "# HELP warmline_live_conferences Conferences not yet ended.",
        "# TYPE warmline_live_conferences gauge",
        f"warmline_live_conferences {live}",
        "# HELP warmline_events_published_total Events written to the log.",
        "# TYPE warmline_events_published_total counter",
        f"warmline_events_published_total {events}",
    ]
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")
