"""JSON too deep or too big for the parser (issue 16): a body or a ``/ws`` message
nested deeper than 32 levels is refused with 400 (an error message on the socket),
a body over 64 KiB with 413 (an error message on the socket, which stays open);
never a 500, a traceback or a dead socket reader (docs/api.md, docs/websocket.md)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from console.web.json_limits import (
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    TOO_BIG,
    TOO_DEEP,
    json_depth,
    too_deep,
)
from tests.console.web.test_ws import receive
from tests.support.flow_helpers import login, set_available

DEPTH_MESSAGE = f"nested deeper than {MAX_JSON_DEPTH} levels"
BODY_METHODS = {"POST", "PUT", "PATCH"}
SOME_CONFERENCE = "CA" + "0" * 32


def deep_list(levels: int) -> str:
    return "[" * levels + "]" * levels


def deep_object(levels: int) -> str:
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


def json_targets(app: Any) -> list[str]:
    """``/login`` and every /api route that takes a body, its parameters filled in."""
    targets = ["/login"]
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/") and rule.methods & BODY_METHODS:
            path = rule.rule
            for argument in rule.arguments:
                path = path.replace(f"<{argument}>", SOME_CONFERENCE)
            targets.append(path)
    return sorted(set(targets))


async def post_json(client: Any, path: str, body: str | bytes) -> tuple[int, str]:
    response = await client.post(path, data=body, headers={"Content-Type": "application/json"})
    return response.status_code, await response.get_data(as_text=True)


def error_of(path: str, text: str) -> str:
    """The message of an error answer: JSON under /api/, plain text elsewhere."""
    return json.loads(text)["error"] if path.startswith("/api/") else text


@pytest.fixture
async def supervisor(app, redis) -> Any:
    return await login(app, redis, "sue", role="supervisor")


async def test_the_walk_finds_the_json_routes(app):
    targets = json_targets(app)
    assert {"/login", "/api/me/status", "/api/transfers"} <= set(targets)
    assert any(t.endswith("/monitor") for t in targets)


@pytest.mark.parametrize(
    "body", [deep_list(5000), deep_object(MAX_JSON_DEPTH + 1)], ids=["list-5000", "object-33"]
)
async def test_json_nested_too_deeply_is_a_400_everywhere(app, redis, supervisor, caplog, body):
    for path in json_targets(app):
        status, text = await post_json(supervisor, path, body)
        assert status == 400, (path, status, text[:300])
        assert DEPTH_MESSAGE in error_of(path, text), (path, text[:300])
    anonymous = app.test_client()
    status, text = await post_json(anonymous, "/login", body)
    assert (status, DEPTH_MESSAGE in text) == (400, True)
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


@pytest.mark.parametrize(
    "body",
    [deep_list(MAX_JSON_DEPTH), deep_object(MAX_JSON_DEPTH)],
    ids=["list-32", "object-32"],
)
async def test_json_nested_exactly_32_levels_is_not_refused_for_its_depth(
    app, redis, supervisor, caplog, body
):
    assert json_depth(body) == MAX_JSON_DEPTH
    for path in json_targets(app):
        status, text = await post_json(supervisor, path, body)
        # the schema (or the login form's reader) may well refuse it, for another reason
        assert status < 500, (path, status, text[:300])
        assert DEPTH_MESSAGE not in text, (path, text[:300])
    assert "Traceback" not in caplog.text


async def test_a_body_over_64_kib_is_a_413(app, redis, supervisor, caplog):
    body = json.dumps({"status": "available", "note": "x" * (65 * 1024)})
    for path in json_targets(app):
        status, text = await post_json(supervisor, path, body)
        assert status == 413, (path, status, text[:300])
        if path.startswith("/api/"):
            assert "error" in json.loads(text)
    assert "Traceback" not in caplog.text


async def test_a_deep_or_big_ws_message_gets_an_error_and_the_socket_goes_on(
    app, redis, supervisor, caplog
):
    alice = await login(app, redis, "alice")
    async with supervisor.websocket("/ws") as socket:
        assert (await receive(socket))["type"] == "snapshot"
        await socket.send(deep_list(5000))
        assert await receive(socket) == {"type": "error", "error": TOO_DEEP}
        await socket.send(deep_object(MAX_JSON_DEPTH + 1))
        assert await receive(socket) == {"type": "error", "error": TOO_DEEP}
        await socket.send(json.dumps({"type": "ping", "pad": "x" * (65 * 1024)}))
        assert await receive(socket) == {"type": "error", "error": TOO_BIG}
        await socket.send(b"[" * (MAX_JSON_BYTES + 1))
        assert await receive(socket) == {"type": "error", "error": TOO_BIG}
        await socket.send(json.dumps({"type": "ping"}))  # a good message: no answer

        await set_available(alice)
        event = await receive(socket)
        assert (event["type"], event["data"]["username"]) == ("agent.updated", "alice")
        # the reader still reads: another bad message is still answered
        await socket.send(deep_list(MAX_JSON_DEPTH + 1))
        assert await receive(socket) == {"type": "error", "error": TOO_DEEP}
        with pytest.raises(asyncio.TimeoutError):  # 32 levels is read like any message
            await socket.send(deep_list(MAX_JSON_DEPTH))
            await asyncio.wait_for(socket.receive(), 0.3)
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


# --- the scanner ---------------------------------------------------------------------

# Brackets, quotes and backslashes inside strings must not count.
TRICKY = st.text(alphabet=st.sampled_from('[]{}"\\/,:ab \n\t\u00e9\u2028\U0001f600'), max_size=12)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TRICKY
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TRICKY, children, max_size=4),
    max_leaves=60,
)


def reference_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((reference_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((reference_depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(value=VALUES, ascii_only=st.booleans(), indent=st.sampled_from([None, 0, 2]))
def test_the_scanner_agrees_with_the_parser(value, ascii_only, indent):
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    expected = reference_depth(json.loads(text))
    assert json_depth(text) == expected
    assert json_depth(text.encode()) == expected
    assert too_deep(text) is (expected > MAX_JSON_DEPTH)


@settings(max_examples=100, deadline=None)
@given(
    shape=st.lists(st.sampled_from(["list", "object"]), min_size=1, max_size=200),
    leaf=TRICKY,
)
def test_the_scanner_measures_deep_values(shape, leaf):
    """Nestings up to 200 levels (json.loads and the reference still manage those)."""
    value: Any = leaf
    for kind in reversed(shape):
        value = [leaf, value] if kind == "list" else {leaf: value, "k": leaf}
    text = json.dumps(value)
    assert json_depth(text) == reference_depth(json.loads(text)) == len(shape)
    assert too_deep(text) is (len(shape) > MAX_JSON_DEPTH)
    stopped = json_depth(text, stop_above=MAX_JSON_DEPTH)
    assert stopped == min(len(shape), MAX_JSON_DEPTH + 1)


def test_the_scanner_takes_linear_time_on_unterminated_strings():
    for text in ('"' + '\\"' * 40_000, '"' * 80_000, '["\\' * 25_000):
        started = time.perf_counter()
        json_depth(text)
        json_depth(text.encode())
        assert time.perf_counter() - started < 1.0, text[:20]
