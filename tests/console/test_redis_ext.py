"""The bounded Redis pool: a burst wider than the pool waits its turn instead of
failing, and a request that waited too long is a clear 503, never a 500."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis.exceptions

import console.redis_ext
from console.config import RedisSentinels
from console.domain import keys
from console.domain.users import add_user
from console.realtime.hub import Hub
from console.redis_ext import BlockingSentinelConnectionPool, RedisExtension, connect
from simulator.testing import call_sid
from tests.conftest import make_settings
from tests.support.flow_helpers import AppVoice, login, set_available
from tests.support.sentinel import MASTER, PASSWORD, SentinelSet, start_sentinel_set
from warmline import cli
from warmline.app import create_app
from warmline.diagnosis import redis_state
from warmline.embedded_redis import find_redis_server, free_port


@pytest.fixture
def small_pool_app(twilio, redis, redis_server):
    settings = make_settings(api_base_url=twilio.base_url, redis_max_connections=4)
    return create_app(settings, redis_url=redis_server.url)


async def test_a_burst_of_calls_wider_than_the_pool_queues_every_caller(
    small_pool_app, twilio, redis
):
    """redis-py's own pool raised "Too many connections" past 100 at once; 60 calls
    through a pool of 4 must all be answered and all be queued."""
    async with small_pool_app.test_app(), small_pool_app.test_client() as client:
        voice = AppVoice(client, twilio, small_pool_app, "https://warmline.example.com")
        sids = [call_sid() for _ in range(60)]
        responses = await asyncio.gather(*(voice.send(voice.incoming(s)) for s in sids))
        assert [r.status_code for r in responses] == [200] * len(sids)
        assert set(await redis.lrange(keys.QUEUE, 0, -1)) == set(sids)
        pool = RedisExtension.of(small_pool_app).client.connection_pool
        assert pool.max_connections == 4


async def test_no_free_connection_is_a_503_on_the_api_and_nothing_is_written(
    small_pool_app, redis, monkeypatch
):
    monkeypatch.setattr(console.redis_ext, "POOL_WAIT_SECONDS", 0.2)
    async with small_pool_app.test_app():
        alice = await login(small_pool_app, redis, "alice")
        pool = RedisExtension.of(small_pool_app).client.connection_pool
        held = [await pool.get_connection() for _ in range(pool.max_connections)]
        try:
            response = await alice.post("/api/me/status", json={"status": "available"})
            assert response.status_code == 503
            assert "try again" in (await response.get_json())["error"]
            page = await alice.get("/agent")
            assert page.status_code == 503
            assert (await page.get_data(as_text=True)).startswith("503 Service Unavailable")
        finally:
            for connection in held:
                await pool.release(connection)
        assert await redis.hget(keys.AGENTS, "alice") is None
        await set_available(alice)  # connections are back: the same request now works


# --- TLS: REDIS_TLS_VERIFY against a real redis-server behind certificates made by openssl


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def _server_cert(directory: Path, name: str, alt_names: str) -> None:
    """``name``.crt/.key signed by the test CA, valid for ``alt_names``."""
    (directory / f"{name}.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
        f"subjectAltName={alt_names}\n"
    )
    _openssl(directory, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj",
             f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.csr")  # fmt: skip
    _openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey",
             "ca.key", "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
             "-out", f"{name}.crt")  # fmt: skip


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA; ``signed`` (by it, for 127.0.0.1); ``elsewhere`` (by it, for another host
    name); ``self`` (self-signed, for 127.0.0.1)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: cannot make test certificates")
    directory = tmp_path_factory.mktemp("tls")
    _openssl(directory, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=Warmline Test CA", "-keyout", "ca.key", "-out", "ca.crt",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    _server_cert(directory, "signed", "IP:127.0.0.1")
    _server_cert(directory, "elsewhere", "DNS:redis.elsewhere.example")
    _openssl(directory, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=127.0.0.1", "-keyout", "self.key", "-out", "self.crt",
             "-addext", "subjectAltName=IP:127.0.0.1")  # fmt: skip
    return directory


@pytest.fixture(scope="module")
def tls_redis(certificates: Path) -> Iterator[Callable[[str], str]]:
    """``tls_redis(cert)``: the ``rediss://`` URL of a redis-server presenting
    ``cert`` (started once per certificate for this module)."""
    binary = find_redis_server()
    if binary is None:
        pytest.skip("no redis-server to start with TLS")
    processes: dict[str, tuple[subprocess.Popen[bytes], str]] = {}

    def start(cert: str) -> str:
        if cert in processes:
            return processes[cert][1]
        port = free_port()
        process = subprocess.Popen(
            [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
             "--tls-cert-file", str(certificates / f"{cert}.crt"),
             "--tls-key-file", str(certificates / f"{cert}.key"),
             "--tls-ca-cert-file", str(certificates / "ca.crt"),
             "--tls-auth-clients", "no", "--save", "", "--appendonly", "no",
             "--dir", str(certificates)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        url = f"rediss://127.0.0.1:{port}/0"
        processes[cert] = (process, url)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None:
                message = (process.stderr.read() if process.stderr else b"").decode()
                if "TLS" in message or "tls" in message:
                    pytest.skip(f"this redis-server cannot serve TLS: {message.strip()}")
                raise RuntimeError(f"TLS redis-server exited: {message.strip()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return url
            time.sleep(0.05)
        raise RuntimeError("TLS redis-server did not listen within 10 s")

    yield start
    for process, _ in processes.values():
        process.terminate()
        process.wait(5)


@pytest.fixture
def no_trusted_test_ca(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


async def ping(url: str, tls_verify: bool) -> bool:
    client = connect(url, tls_verify=tls_verify)
    try:
        return await client.ping()
    finally:
        await client.aclose()


async def test_a_self_signed_server_is_refused_when_verifying(tls_redis, no_trusted_test_ca):
    with pytest.raises(redis.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await ping(tls_redis("self"), tls_verify=True)


async def test_a_self_signed_server_answers_without_verification(tls_redis, no_trusted_test_ca):
    """REDIS_TLS_VERIFY=false: Heroku Redis's case (encrypted, not authenticated)."""
    assert await ping(tls_redis("self"), tls_verify=False) is True


async def test_a_server_signed_by_a_trusted_ca_answers_when_verifying(
    tls_redis, certificates, monkeypatch
):
    """The system trust store is OpenSSL's default paths, which SSL_CERT_FILE sets."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates / "ca.crt"))
    assert await ping(tls_redis("signed"), tls_verify=True) is True


async def test_the_host_name_is_verified_too(tls_redis, certificates, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates / "ca.crt"))
    with pytest.raises(redis.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await ping(tls_redis("elsewhere"), tls_verify=True)


async def test_the_app_and_its_hub_follow_redis_tls_verify(tls_redis, no_trusted_test_ca):
    settings = make_settings(redis_tls_verify=False)
    app = create_app(settings, redis_url=tls_redis("self"))
    async with app.test_app(), app.test_client() as client:
        response = await client.get("/healthz")
        assert response.status_code == 200
        assert await Hub.of(app)._redis.ping() is True  # the hub's own connection

    verifying = create_app(make_settings(), redis_url=tls_redis("self"))
    async with verifying.test_app(), verifying.test_client() as client:
        response = await client.get("/healthz")
        assert response.status_code == 503
        assert (await response.get_json())["reason"] == "redis: ConnectionError"


def test_warmline_user_reports_an_unverified_server_in_one_line(
    tls_redis, no_trusted_test_ca, monkeypatch, capsys
):
    monkeypatch.setenv("REDIS_URL", tls_redis("self"))
    monkeypatch.delenv("REDIS_TLS_VERIFY", raising=False)
    assert cli.main(["user", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach Redis: ")
    assert "TLS failure: self-signed certificate" in err
    assert err.count("\n") == 1  # one line, no traceback

    monkeypatch.setenv("REDIS_TLS_VERIFY", "false")
    assert cli.main(["user", "list"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_warmline_user_reports_a_bad_redis_tls_verify_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", "rediss://127.0.0.1:9/0")
    monkeypatch.setenv("REDIS_TLS_VERIFY", "maybe")
    assert cli.main(["user", "list"]) == 2
    assert capsys.readouterr().err == (
        "warmline: REDIS_TLS_VERIFY must be true or false, got 'maybe'\n"
    )


# --- Sentinel: REDIS_SENTINELS / REDIS_SENTINEL_MASTER against a real primary, replica and
# three Sentinels (the failover itself: tests/system/test_failover_sentinel.py)


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    redis_set = start_sentinel_set(tmp_path_factory.mktemp("sentinel"))
    try:
        yield redis_set
    finally:
        redis_set.stop()


async def test_a_sentinel_client_finds_the_master_and_its_pool_is_bounded_and_blocking(
    sentinels, monkeypatch
):
    client = connect(sentinels.target, max_connections=2)
    try:
        assert await client.set("sentinel-probe", "1") is True
        pool = client.connection_pool
        assert isinstance(pool, BlockingSentinelConnectionPool)
        assert (pool.max_connections, pool.master_address) == (2, sentinels.master_address())
        held = [await pool.get_connection() for _ in range(2)]
        waiting = asyncio.create_task(client.get("sentinel-probe"))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # it waits for a connection instead of failing
        await pool.release(held.pop())
        assert await waiting == "1"
        monkeypatch.setattr(console.redis_ext, "POOL_WAIT_SECONDS", 0.2)
        short = connect(sentinels.target, max_connections=2)
        try:
            held_short = [await short.connection_pool.get_connection() for _ in range(2)]
            with pytest.raises(redis.exceptions.ConnectionError, match="No connection available"):
                await short.ping()
            for connection in held_short:
                await short.connection_pool.release(connection)
        finally:
            await short.aclose()
        for connection in held:
            await pool.release(connection)
    finally:
        await client.aclose()


async def test_what_check_and_serve_say_names_the_master_and_its_sentinels(sentinels):
    assert (await redis_state(sentinels.target, tls_verify=True))[0] is None
    unknown = RedisSentinels(sentinels.target.addresses[:1], "nobody", PASSWORD)
    host, port = unknown.addresses[0]
    line, _ = await redis_state(unknown, tls_verify=True)
    assert line == (
        f"cannot reach Redis master nobody via sentinels {host}:{port}: "
        "no sentinel names a master by that name that is up"
    )
    # one Sentinel down, the next one answers; but the data node wants its password
    closed = RedisSentinels((("127.0.0.1", free_port()), unknown.addresses[0]), MASTER)
    line, _ = await redis_state(closed, tls_verify=True)
    assert line.startswith(
        f"cannot reach Redis master {MASTER} via sentinels "
        f"127.0.0.1:{closed.addresses[0][1]},{host}:{port}: the password was refused ("
    )
    nobody = RedisSentinels((("127.0.0.1", free_port()),), MASTER)
    line, _ = await redis_state(nobody, tls_verify=True)
    assert line == (
        f"cannot reach Redis master {MASTER} via sentinels 127.0.0.1:{nobody.addresses[0][1]}: "
        "1 sentinel(s) did not answer and no other named a master up"
    )


async def test_the_app_and_its_hub_reach_redis_through_the_sentinels(sentinels):
    app = create_app(make_settings(redis_sentinels=sentinels.target))
    async with app.test_app(), app.test_client() as client:
        response = await client.get("/healthz")
        assert response.status_code == 200, await response.get_data(as_text=True)
        assert RedisExtension.of(app).target == sentinels.target
        hub_pool = Hub.of(app)._redis.connection_pool
        assert isinstance(hub_pool, BlockingSentinelConnectionPool)
        assert await Hub.of(app)._redis.ping() is True


def test_warmline_user_goes_through_the_sentinels(sentinels, monkeypatch, capsys):
    async def seed() -> None:
        client = connect(sentinels.target)
        try:
            await add_user(client, "sentinel_sam", "supervisor", "correct horse battery")
        finally:
            await client.aclose()

    asyncio.run(seed())
    for name, value in sentinels.env().items():
        monkeypatch.setenv(name, value)
    assert cli.main(["user", "list"]) == 0
    assert "sentinel_sam" in capsys.readouterr().out

    monkeypatch.delenv("REDIS_SENTINEL_MASTER")
    assert cli.main(["user", "list"]) == 2
    assert capsys.readouterr().err == (
        "warmline: REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together: set both or neither\n"
    )
