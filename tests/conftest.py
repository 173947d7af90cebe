"""Shared fixtures: one real redis-server per test session (flushed per test), the
simulator's REST API held still for tests (simulator.testing), and a configured app;
one real PostgreSQL per session (a fresh database per test) for the call history."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg.rows import DictRow, dict_row
from redis.asyncio import Redis

from console.config import Settings
from simulator.testing import ACCOUNT_SID, API_KEY, API_SECRET, AUTH_TOKEN, TwilioDouble
from tests.support.flow_helpers import AppVoice
from tests.support.postgres import (
    create_database,
    create_empty_database,
    drop_database,
    start_test_postgres,
)
from warmline.app import create_app
from warmline.embedded_postgres import EmbeddedPostgres
from warmline.embedded_redis import EmbeddedRedis, start_redis

__all__ = ["ACCOUNT_SID", "API_KEY", "API_SECRET", "AUTH_TOKEN", "PUBLIC_BASE_URL"]

PUBLIC_BASE_URL = "https://warmline.example.com"

# The twilio client rewrites hosts when these are set; tests must never inherit them.
for _name in ("TWILIO_REGION", "TWILIO_EDGE"):
    os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = start_redis(tmp_path_factory.mktemp("redis"), persist=False)
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: EmbeddedRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioDouble]:
    async with TwilioDouble(ACCOUNT_SID, AUTH_TOKEN, api_keys={API_KEY: API_SECRET}) as double:
        yield double


def make_settings(api_base_url: str = "http://127.0.0.1:9", **overrides: object) -> Settings:
    values: dict[str, object] = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "caller_id": "+15550001111",
        "public_base_url": PUBLIC_BASE_URL,
        "secret_key": "test-secret-key",
        "api_base_url": api_base_url,
        "rest_timeout_seconds": 1.0,
        # A test's abandoned call would bring today's service level under 80 %, and
        # the background sweeper would raise an alert (SPEC §10) in the middle of a
        # test that counts events; the alerts' own tests set the thresholds they test.
        "alert_service_level": 0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(twilio: TwilioDouble) -> Settings:
    return make_settings(api_base_url=twilio.base_url)


@pytest.fixture
async def app(settings: Settings, redis: Redis, redis_server: EmbeddedRedis):
    app = create_app(settings, redis_url=redis_server.url)
    async with app.test_app():
        yield app


@pytest.fixture
async def voice(app, twilio: TwilioDouble):
    """Twilio's webhooks, played against ``app``."""
    async with app.test_client() as client:
        yield AppVoice(client, twilio, app, PUBLIC_BASE_URL)


@pytest.fixture
async def raw_redis(redis_server: EmbeddedRedis) -> AsyncIterator[Redis]:
    """A client of the test Redis that does not decode answers (DUMP and RESTORE)."""
    client = Redis.from_url(redis_server.url)  # bytes: DUMP/RESTORE payloads
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[EmbeddedPostgres]:
    """A throwaway PostgreSQL (fsync off) holding the migrated template database."""
    server = start_test_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def servers_database_url(postgres_server: EmbeddedPostgres) -> str:
    """One migrated database for the `warmline serve` children of the whole session."""
    return create_database(postgres_server)


@pytest.fixture(autouse=True)
def _spawned_servers_keep_history_in_the_test_postgres(
    request: pytest.FixtureRequest,
) -> Iterator[None]:
    """A `warmline serve` child started against the test Redis inherits DATABASE_URL:
    the session's test PostgreSQL, rather than each child starting or sharing the
    embedded one in the user's cache folder (or a developer's own DATABASE_URL)."""
    if "redis_server" not in request.fixturenames:
        yield
        return
    before = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = request.getfixturevalue("servers_database_url")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = before


@pytest.fixture
def database_url(postgres_server: EmbeddedPostgres) -> Iterator[str]:
    """A fresh, migrated, empty database for this test alone."""
    url = create_database(postgres_server)
    yield url
    drop_database(postgres_server, url)


@pytest.fixture
def empty_database_url(postgres_server: EmbeddedPostgres) -> Iterator[str]:
    """A database with no schema at all, for this test alone."""
    url = create_empty_database(postgres_server)
    yield url
    drop_database(postgres_server, url)


@pytest.fixture
async def pg(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[DictRow]]:
    """An autocommit connection to the test's database; rows come back as dicts."""
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        yield conn


@pytest.fixture
async def history_app(
    settings: Settings, redis: Redis, redis_server: EmbeddedRedis, database_url: str
):
    """Like ``app``, with the call history kept in the test's database."""
    app = create_app(settings, redis_url=redis_server.url, database_url=database_url)
    async with app.test_app():
        yield app
