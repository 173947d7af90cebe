"""The floor the webhooks benchmark measures Warmline against (issue 21): the least a
Twilio webhook can cost on this stack (Quart, Hypercorn, redis-py, the twilio package).

Every ``POST`` parses its form body, checks ``X-Twilio-Signature`` with twilio's
``RequestValidator`` over PUBLIC_BASE_URL + the path (as ``webhooks/signature.py`` does:
one signature over a ``multidict.MultiDict``, ``validate`` only when that one fails) and
the ``AccountSid``, then sends one Redis MULTI: a state write (the request's fields as
JSON under a key of its conference or call) and one ``XADD`` to a capped event stream
(approximate MAXLEN, as Warmline's log). It answers 204, or 403 for a bad signature.
No state is read, nothing is retried: that is what makes it a floor. ``GET /healthz``
answers ok. Served by ``python -m bench.serve bench.floor_app:app``.
"""

from __future__ import annotations

import json
import os

import multidict
from quart import Quart, Response, request
from redis.asyncio import Redis
from twilio.request_validator import RequestValidator, compare

STATE_PREFIX = "floor:state:"  # one key per conference (or call), bench-only names
EVENTS = "floor:events"
EVENTS_MAXLEN = 10_000

app = Quart(__name__)
validator = RequestValidator(os.environ.get("TWILIO_AUTH_TOKEN", ""))
public_base_url = os.environ.get("PUBLIC_BASE_URL", "").rstrip("/")
account_sid = os.environ.get("TWILIO_ACCOUNT_SID", "")
redis: Redis | None = None


@app.before_serving
async def connect() -> None:
    global redis
    redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


@app.after_serving
async def disconnect() -> None:
    if redis is not None:
        await redis.aclose()


@app.get("/healthz")
async def healthz() -> Response:
    return Response("ok", mimetype="text/plain")


@app.post("/<path:path>")
async def webhook(path: str) -> Response:
    form = await request.form
    fields = multidict.MultiDict(form.items(multi=True))
    query = request.query_string.decode("latin-1")
    url = public_base_url + request.path + (f"?{query}" if query else "")
    signature = request.headers.get("X-Twilio-Signature", "")
    valid = compare(validator.compute_signature(url, fields), signature) or validator.validate(
        url, fields, signature
    )
    if not signature or not valid or fields.get("AccountSid") != account_sid:
        return Response("403 Forbidden: invalid Twilio signature\n", 403, mimetype="text/plain")
    key = fields.get("ConferenceSid") or fields.get("CallSid") or "unknown"
    body = json.dumps(dict(fields), separators=(",", ":"))
    assert redis is not None
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(STATE_PREFIX + key, body)
        pipe.xadd(EVENTS, {"data": body}, maxlen=EVENTS_MAXLEN, approximate=True)
        await pipe.execute()
    return Response(status=204)
