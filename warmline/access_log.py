"""Hypercorn's access log with each value worked out only when the format asks for it:
Hypercorn's own atoms copy every header and the whole environment per request, for a
line that shows eight values. Same lines; any other key comes from Hypercorn's atoms."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import Any

from hypercorn.logging import AccessLogAtoms, Logger


class AccessLogger(Logger):
    """Hypercorn's Logger (``Config.logger_class``) with lazily worked-out atoms."""

    def atoms(self, request: Any, response: Any, request_time: float) -> Mapping[str, str]:
        return LazyAtoms(request, response, request_time)


class LazyAtoms(Mapping[str, Any]):
    """What ``AccessLogAtoms`` would hold for a key, looked up when the format asks."""

    def __init__(self, request: Any, response: Any, request_time: float) -> None:
        self._request = request
        self._response = response
        self._request_time = request_time

    def __getitem__(self, key: str) -> Any:
        cheap = _CHEAP.get(key)
        if cheap is not None:
            return cheap(self)
        return self._all[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def __bool__(self) -> bool:  # logging asks, and __len__ would build every atom
        return True

    @cached_property
    def _all(self) -> AccessLogAtoms:
        return AccessLogAtoms(self._request, self._response, self._request_time)

    def remote_addr(self) -> str | None:
        client = self._request.get("client")
        if client is None or len(client) not in (1, 2):
            return self._all["h"]
        return client[0] if len(client) == 1 else f"{client[0]}:{client[1]}"

    def request_line(self) -> str:
        request = self._request
        method = request["method"] if request["type"] == "http" else "GET"
        return f"{method} {request['path']} {request.get('http_version', 'ws')}"

    def status(self) -> str:
        return "-" if self._response is None else str(self._response["status"])

    def request_header(self, name: bytes) -> str:
        return _header(self._request["headers"], name)

    def response_header(self, name: bytes) -> str:
        return "-" if self._response is None else _header(self._response.get("headers", []), name)


def _header(headers: Any, name: bytes) -> str:
    """The last value of header ``name`` (lower case), as the atoms' dict keeps it."""
    found = "-"
    for key, value in headers:
        if key.lower() == name:
            found = value.decode("latin1")
    return found


# The keys of Hypercorn's default format.
_CHEAP = {
    "h": LazyAtoms.remote_addr,
    "l": lambda _atoms: "-",
    "t": lambda _atoms: time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
    "r": LazyAtoms.request_line,
    "s": LazyAtoms.status,
    "b": lambda atoms: atoms.response_header(b"content-length"),
    "f": lambda atoms: atoms.request_header(b"referer"),
    "a": lambda atoms: atoms.request_header(b"user-agent"),
}
