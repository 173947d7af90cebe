"""The frames the log reader writes straight onto sockets are what a WebSocket client
reads: wsproto, as a client, parses them back into the same text messages."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import TextMessage

from console.realtime.ws_frames import text_frame


def read_back(data: bytes) -> list[TextMessage]:
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(data)
    return list(client.events())


@given(st.lists(st.text(), min_size=1, max_size=5))
def test_frames_parse_back_as_the_same_whole_text_messages(texts: list[str]) -> None:
    events = read_back(b"".join(text_frame(text) for text in texts))
    assert [(e.data, e.frame_finished, e.message_finished) for e in events] == [
        (text, True, True) for text in texts
    ]


def test_every_length_encoding_boundary() -> None:
    # 7-bit, 16-bit and 64-bit payload lengths (RFC 6455 §5.2), in bytes not characters
    for size in (0, 125, 126, 65_535, 65_536, 200_000):
        text = "é" * (size // 2) + "x" * (size % 2)
        assert len(text.encode()) == size
        [event] = read_back(text_frame(text))
        assert event.data == text
