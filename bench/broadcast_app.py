"""The bare Quart broadcast the fan-out benchmark measures Warmline against.

No state, no Redis, no authentication: ``POST /publish`` stamps the body (a JSON
object) with the receive time, wraps it as Warmline wraps an event, and puts the one
encoded text in every socket's queue; each ``GET /ws`` handler sends what its queue
holds. Served by ``python -m bench.serve`` with Warmline's Hypercorn settings.
"""

from __future__ import annotations

import asyncio
import itertools
import time

from quart import Quart, Response, request, websocket

app = Quart(__name__)
queues: set[asyncio.Queue[str]] = set()
counter = itertools.count(1)
BACKLOG = 1000  # as Warmline's WS_BACKLOG; a full queue drops the message


@app.get("/healthz")
async def healthz() -> Response:
    return Response("ok", mimetype="text/plain")


@app.post("/publish")
async def publish() -> Response:
    ts = int(time.time() * 1000)
    body = await request.get_data(as_text=True)
    text = f'{{"id":"{ts}-{next(counter)}","type":"participant.updated","ts":{ts},"data":{body}}}'
    for queue in queues:
        if queue.qsize() < BACKLOG:
            queue.put_nowait(text)
    return Response(status=204)


@app.websocket("/ws")
async def ws() -> None:
    await websocket.accept()
    queue: asyncio.Queue[str] = asyncio.Queue()
    queues.add(queue)
    try:
        await websocket.send('{"type":"hello"}')
        while True:
            await websocket.send(await queue.get())
    finally:
        queues.discard(queue)
