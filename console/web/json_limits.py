"""How deep and how big a client's JSON may be, checked before anything parses it.

Python's JSON decoder and pydantic's validation recurse once per level of nesting:
a 10 KB body of 5,000 nested lists ends in a RecursionError (a 500 and a
traceback over HTTP, a dead reader on ``/ws``). So every JSON body and every
``/ws`` message is scanned first, without recursion: brackets are counted
outside strings, and a message nested deeper than ``MAX_JSON_DEPTH`` is refused
as the client's error (docs/api.md, docs/websocket.md).
"""

from __future__ import annotations

import re

MAX_JSON_DEPTH = 32
MAX_JSON_BYTES = 64 * 1024  # the app's MAX_CONTENT_LENGTH, and the cap on a /ws message
TOO_DEEP = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
TOO_BIG = f"message larger than {MAX_JSON_BYTES // 1024} KiB"

# A bracket, or a whole string (skipped in C, brackets and escaped quotes inside it
# included). An unterminated string runs to the end, so no position is scanned
# twice: linear time whatever the input.
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"?'
_TOKENS_STR = re.compile(r"[\[\]{}]|" + _STRING, re.DOTALL)
_TOKENS_BYTES = re.compile(rb"[\[\]{}]|" + _STRING.encode(), re.DOTALL)
_OPENERS = frozenset("[{")
_OPENERS_BYTES = frozenset(b"[{")


def json_depth(text: str | bytes, stop_above: int | None = None) -> int:
    """The deepest nesting of arrays and objects in ``text`` (0 for a scalar, 1 for
    ``[]``), or, once it passes ``stop_above``, ``stop_above + 1`` at once. Meant for
    valid JSON; for anything else it is only an estimate, never an error."""
    if isinstance(text, str):
        tokens, openers, closers = _TOKENS_STR, _OPENERS, frozenset("]}")
    else:
        tokens, openers, closers = _TOKENS_BYTES, _OPENERS_BYTES, frozenset(b"]}")
    depth = deepest = 0
    for match in tokens.finditer(text):
        token = match.group()
        first = token[0]
        if first in openers:
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_above is not None and deepest > stop_above:
                    return deepest
        elif first in closers:
            depth = max(0, depth - 1)
    return deepest


def too_deep(text: str | bytes) -> bool:
    """True when ``text`` nests arrays and objects deeper than ``MAX_JSON_DEPTH``."""
    return json_depth(text, stop_above=MAX_JSON_DEPTH) > MAX_JSON_DEPTH
