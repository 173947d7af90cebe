"""Fixtures shared by the web layer's tests that run real app processes."""

from __future__ import annotations

import pytest

from tests.support.servers import app_server


@pytest.fixture
async def two_servers(redis_server, redis, twilio, tmp_path):
    many = {"MAX_SOCKETS_PER_USER": "16"}  # one supervisor opens a dozen sockets here
    async with (
        app_server(redis_server.url, twilio.base_url, tmp_path, **many) as first,
        app_server(redis_server.url, twilio.base_url, tmp_path, **many) as second,
    ):
        yield first, second
