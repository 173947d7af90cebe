"""`warmline serve`'s access log: the same lines as Hypercorn's own atoms give, worked
out only for the keys its format uses (warmline/access_log.py)."""

from __future__ import annotations

import logging
import re
from unittest import mock

import aiohttp
import pytest
from hypercorn.config import Config
from hypercorn.logging import AccessLogAtoms
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.servers import app_server
from tests.support.waiting import until
from warmline.access_log import LazyAtoms

DEFAULT_FORMAT = Config().access_log_format
NAMES = [b"referer", b"Referer", b"user-agent", b"USER-AGENT", b"content-length", b"x-other"]
latin1 = st.binary(max_size=12).map(lambda b: b.decode("latin1").encode("latin1"))
headers = st.lists(st.tuples(st.sampled_from(NAMES) | st.binary(max_size=8), latin1), max_size=6)
clients = (
    st.none() | st.tuples(st.just("10.0.0.1")) | st.tuples(st.just("::1"), st.integers(0, 65535))
)
scopes = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["http", "websocket"]),
        "method": st.sampled_from(["GET", "POST"]),
        "path": st.text(max_size=20),
        "query_string": st.text("a=&%20b", max_size=10).map(str.encode),  # h11 lets ASCII through
        "scheme": st.sampled_from(["http", "https", "ws"]),
        "headers": headers,
        "client": clients,
    },
    optional={"http_version": st.sampled_from(["1.1", "2"])},
)
responses = st.none() | st.fixed_dictionaries(
    {"status": st.sampled_from([101, 200, 204, 404, 599]), "headers": headers}
)


@settings(max_examples=300, deadline=None)
@given(scopes, responses, st.floats(0, 100))
def test_every_key_and_the_default_line_are_hypercorns(scope, response, request_time) -> None:
    with mock.patch("time.strftime", return_value="[06/Dec/2026:04:00:00 +0000]"):
        ours = LazyAtoms(scope, response, request_time)
        theirs = AccessLogAtoms(scope, response, request_time)
        assert DEFAULT_FORMAT % ours == DEFAULT_FORMAT % theirs
        for key in [*theirs, "h", "l", "t", "r", "s", "b", "f", "a", "{nope}i"]:
            assert ours[key] == theirs[key], key


def test_a_logged_default_line_builds_no_full_atoms(caplog) -> None:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/twilio/voice",
        "query_string": b"",
        "scheme": "http",
        "headers": [(b"user-agent", b"TwilioProxy/1.1")],
        "client": ("127.0.0.1", 5000),
        "http_version": "1.1",
    }
    atoms = LazyAtoms(scope, {"status": 200, "headers": [(b"content-length", b"12")]}, 0.01)
    with caplog.at_level(logging.INFO, logger="test.access"):
        logging.getLogger("test.access").info(DEFAULT_FORMAT, atoms)
    assert (
        caplog.records[0]
        .getMessage()
        .endswith('"POST /twilio/voice 1.1" 200 12 "-" "TwilioProxy/1.1"')
    )
    assert "_all" not in atoms.__dict__  # Hypercorn's atoms were never built


@pytest.mark.timeout(120)
async def test_serve_writes_one_access_line_per_request(redis_server, twilio, tmp_path) -> None:
    async with app_server(redis_server.url, twilio.base_url, tmp_path) as server:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                server.url + "/healthz?token=secret",
                headers={"Referer": "https://r.example/", "User-Agent": "probe/1.0"},
            ) as response,
        ):
            length = response.headers["Content-Length"]
        line = re.compile(
            r"127\.0\.0\.1:\d+ - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
            rf'"GET /healthz 1\.1" 200 {length} "https://r\.example/" "probe/1\.0"'
        )

        async def logged() -> list[str]:
            return [x for x in server.output().splitlines() if line.search(x)]

        assert len(await until(logged)) == 1
        assert "secret" not in server.output()  # the query string is not logged
