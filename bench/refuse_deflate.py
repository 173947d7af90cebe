"""Serve ``app`` (Warmline's, or the bare broadcast's when ``BENCH_APP=bare``) from a
worker in which Hypercorn declines permessage-deflate, as Warmline's own app now does
(``warmline/hypercorn_ws.py``): this lets the bare baseline be measured the same way.

Hypercorn 0.18 parses ``Sec-WebSocket-Extensions`` from the raw request before the
ASGI app runs (``hypercorn.protocol.ws_stream.Handshake``) and always offers wsproto's
``PerMessageDeflate``; an ASGI middleware cannot strip the header in time, and there
is no setting. Replacing the class Hypercorn instantiates with one whose ``accept``
returns None makes wsproto leave the extension out of the 101 answer, so the socket
is uncompressed whatever the browser offered. It must run in the worker process
(Hypercorn spawns workers; the master's imports do not carry over), i.e. in the
module Hypercorn's ``application_path`` names.
"""

from __future__ import annotations

import os

from warmline.hypercorn_ws import decline_permessage_deflate

decline_permessage_deflate()

if os.environ.get("BENCH_APP") == "bare":
    from bench.broadcast_app import app
else:
    from warmline.asgi import app

__all__ = ["app"]
