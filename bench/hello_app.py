"""The hello-world Quart app the webhooks benchmark measures Warmline against.

No state, no Redis, no signature: every ``POST`` parses its form body (as Warmline
parses Twilio's) and answers 204; ``GET /healthz`` answers ok. Served by
``python -m bench.serve bench.hello_app:app`` with Warmline's Hypercorn settings
(``WEB_CONCURRENCY`` workers).
"""

from __future__ import annotations

from quart import Quart, Response, request

app = Quart(__name__)


@app.get("/healthz")
async def healthz() -> Response:
    return Response("ok", mimetype="text/plain")


@app.post("/<path:path>")
async def form(path: str) -> Response:
    params = await request.form
    if not params:
        return Response("no form\n", 400, mimetype="text/plain")
    return Response(status=204)
