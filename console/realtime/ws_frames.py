"""Live events written straight onto a caught-up socket's transport.

Sending one message through Quart and Hypercorn costs a task wake-up, a yield,
the ASGI event, wsproto's framing, a lock and a drain, per socket: with many
sockets that, not the kernel's send, is most of the fan-out's CPU
(bench/RESULTS.md). A server-to-client text frame without extensions is the same
bytes for every socket, so the hub frames each event once and, for every socket
that is keeping up, hands those bytes to the socket's transport as it reads the
event: no task, no queue.

A socket that is not keeping up (its transport holds more than ``HIGH_WATER``
bytes unsent), that is still catching up (snapshot, replay, resync) or that is
not served by Hypercorn's asyncio server (the Quart test client) takes the
ordinary path instead: its backlog and Quart's ``websocket.send``, with
Hypercorn's flow control. Frames written directly are whole and in log order, so
they never interleave with a message the ordinary path is writing: the feed only
lets the hub write directly while it has nothing in flight (see ``hub.Subscriber``).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import Any

from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from wsproto.connection import ConnectionState

HIGH_WATER = 64 * 1024  # Hypercorn's own transports pause writers at 64 KiB
FIN_TEXT = 0x81  # FIN bit + opcode 1 (text): one whole, unfragmented message


def text_frame(text: str) -> bytes:
    """RFC 6455 §5.2: an unmasked (server-to-client), uncompressed text frame."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", FIN_TEXT, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", FIN_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", FIN_TEXT, 127, size)
    return header + payload


@dataclass(slots=True)
class DirectWriter:
    """One accepted WebSocket's Hypercorn stream and TCP transport."""

    stream: WSStream
    transport: asyncio.WriteTransport  # or uvloop's, which has the same methods

    def write(self, frame: bytes) -> bool:
        """Write ``frame`` now if the socket is open and keeping up; False means the
        caller must send it the ordinary way (after whatever is already queued)."""
        if (
            self.stream.state is not ASGIWebsocketState.CONNECTED
            or self.stream.connection.state is not ConnectionState.OPEN  # closing: a data
            or self.stream.closed  # frame may not follow a close frame (RFC 6455 §5.5.1)
            or self.transport.is_closing()
            or self.transport.get_write_buffer_size() > HIGH_WATER
        ):
            return False
        try:
            self.transport.write(frame)
        except (OSError, RuntimeError):  # the connection broke under us: the feed's
            return False  # ordinary send and Hypercorn's close handling take over
        return True


def direct_writer(websocket: Any) -> DirectWriter | None:
    """The transport under an accepted Quart ``websocket``, or None when it is not
    Hypercorn's asyncio server over HTTP/1.1 without extensions (raw frames would
    then be wrong): the socket then only ever uses the ordinary path.

    The chain is Quart's ASGI ``send`` → Hypercorn's ``WSStream`` → its HTTP/1.1
    protocol → the ``TCPServer`` and its ``StreamWriter``; tests/console/web/test_ws_servers.py
    fails if an upgrade of either breaks it.
    """
    try:
        asgi_send = websocket._get_current_object()._send.args[0]
        stream = asgi_send.__self__
        server = stream.send.__self__.send.__self__
        transport = server.writer.transport
        extensions = stream.connection._proto.extensions
    except (AttributeError, IndexError, TypeError):
        return None
    if not isinstance(stream, WSStream) or any(e.enabled() for e in extensions):
        return None
    if not all(hasattr(transport, m) for m in ("write", "is_closing", "get_write_buffer_size")):
        return None
    return DirectWriter(stream, transport)
