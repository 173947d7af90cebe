"""WebSockets are served uncompressed, on purpose.

Hypercorn 0.18 accepts permessage-deflate whenever a client offers it (every browser
does) and has no setting to refuse it. For dashboard messages of a few hundred
bytes, a zlib context per socket and compressing every message for every socket
cost far more memory and CPU than the bytes they save (bench/RESULTS.md). Hypercorn
reads the offer from the raw request before the ASGI app runs, so no middleware can
strip it; the extension it instantiates is replaced instead by one that declines
every offer. tests/console/web/test_ws_servers.py fails if a Hypercorn
upgrade makes this stop working.
"""

from __future__ import annotations

from hypercorn.protocol import ws_stream
from wsproto.extensions import PerMessageDeflate


class DeclinedDeflate(PerMessageDeflate):
    """permessage-deflate that declines every offer: never enabled, never compresses."""

    def accept(self, offer: str) -> None:
        return None


def decline_permessage_deflate() -> None:
    """Make this process's Hypercorn answer WebSocket handshakes without compression."""
    ws_stream.PerMessageDeflate = DeclinedDeflate  # type: ignore[misc]
