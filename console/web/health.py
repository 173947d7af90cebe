"""/healthz for the platform's checks, /metrics for Prometheus."""

from __future__ import annotations

import hmac

from quart import Blueprint, Response, jsonify, request
from redis.exceptions import RedisError

from console.domain import keys
from console.domain.history_log import Backlog, backlog
from console.extension import get_settings
from console.redis_ext import get_redis
from console.web import metrics

blueprint = Blueprint("health", __name__)

DEGRADED_LAG_SECONDS = 60  # history further behind than this: /healthz says degraded


async def history_backlog() -> Backlog | None:
    """What the history writers have not stored yet; None when the app keeps no
    history (no database)."""
    if not get_settings().database_url:
        return None
    return await backlog(get_redis())


@blueprint.get("/healthz")
async def get_healthz() -> tuple[Response, int]:
    try:
        await get_redis().ping()
        lag = await history_backlog()
    except (RedisError, OSError) as exc:
        return jsonify({"status": "unhealthy", "reason": f"redis: {type(exc).__name__}"}), 503
    if lag is not None and lag.seconds > DEGRADED_LAG_SECONDS:
        # Still 200: live calls are unaffected; the history catches up when it can.
        return jsonify({"status": "degraded", "history_lag_seconds": int(lag.seconds)}), 200
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
        lag = await history_backlog()
    except (RedisError, OSError):
        return Response("503 Redis unavailable\n", 503, mimetype="text/plain")
    deployment: dict[str, tuple[str, str, float]] = {
        "warmline_queue_size": ("gauge", "Customers waiting for an agent.", queue),
        "warmline_live_conferences": ("gauge", "Conferences not yet ended.", live),
        "warmline_events_published_total": (
            "counter",
            "Events written to the log by every process.",
            int(published or 0),
        ),
    }
    if lag is not None:
        deployment |= metrics.history_figures(lag)
    body = metrics.get_metrics().exposition(deployment)
    return Response(body, content_type=metrics.CONTENT_TYPE)
