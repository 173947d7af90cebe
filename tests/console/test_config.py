"""Settings.from_env: REDIS_TLS_VERIFY (boolean, verified by default)."""

from __future__ import annotations

import pytest

from console.config import ConfigError, Settings, redis_tls_verify
from simulator.testing import ACCOUNT_SID, API_KEY, API_SECRET, AUTH_TOKEN

ENV = {
    "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    "TWILIO_API_KEY": API_KEY,
    "TWILIO_API_SECRET": API_SECRET,
    "TWILIO_CALLER_ID": "+15550001111",
    "PUBLIC_BASE_URL": "https://warmline.example.com",
    "SECRET_KEY": "test-secret-key",
}


def test_redis_tls_verify_defaults_to_true() -> None:
    assert Settings.from_env(ENV).redis_tls_verify is True
    assert Settings.from_env({**ENV, "REDIS_TLS_VERIFY": " "}).redis_tls_verify is True
    assert redis_tls_verify({}) is True


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("false", False), ("False", False), ("TRUE", True)]
)
def test_redis_tls_verify_reads_true_or_false(raw: str, expected: bool) -> None:
    env = {**ENV, "REDIS_URL": "rediss://redis.example.com:6380", "REDIS_TLS_VERIFY": raw}
    assert Settings.from_env(env).redis_tls_verify is expected
    assert redis_tls_verify(env) is expected


@pytest.mark.parametrize("raw", ["maybe", "0", "no", "off"])
def test_a_bad_redis_tls_verify_is_one_problem_line(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**ENV, "REDIS_TLS_VERIFY": raw})
    assert caught.value.problems == [f"REDIS_TLS_VERIFY must be true or false, got {raw!r}"]
    with pytest.raises(ConfigError) as alone:
        redis_tls_verify({"REDIS_TLS_VERIFY": raw})
    assert alone.value.problems == caught.value.problems


def test_a_bad_redis_tls_verify_is_listed_with_the_other_problems() -> None:
    env = {**ENV, "REDIS_TLS_VERIFY": "yes please", "PORT": "x"}
    del env["SECRET_KEY"]
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert "REDIS_TLS_VERIFY must be true or false, got 'yes please'" in caught.value.problems
    assert len(caught.value.problems) == 3


def test_max_sockets_per_user_defaults_to_8_and_is_read() -> None:
    assert Settings.from_env(ENV).max_sockets_per_user == 8
    assert Settings.from_env({**ENV, "MAX_SOCKETS_PER_USER": "3"}).max_sockets_per_user == 3


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("0", "MAX_SOCKETS_PER_USER must be at least 1, got 0"),
        ("lots", "MAX_SOCKETS_PER_USER must be a whole number, got 'lots'"),
    ],
)
def test_a_bad_max_sockets_per_user_is_one_problem_line(raw: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**ENV, "MAX_SOCKETS_PER_USER": raw})
    assert caught.value.problems == [problem]


def test_trusted_proxy_hops_defaults_to_0_and_is_read() -> None:
    assert Settings.from_env(ENV).trusted_proxy_hops == 0
    assert Settings.from_env({**ENV, "TRUSTED_PROXY_HOPS": "1"}).trusted_proxy_hops == 1


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("-1", "TRUSTED_PROXY_HOPS must be at least 0, got -1"),
        ("heroku", "TRUSTED_PROXY_HOPS must be a whole number, got 'heroku'"),
    ],
)
def test_a_bad_trusted_proxy_hops_is_one_problem_line(raw: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**ENV, "TRUSTED_PROXY_HOPS": raw})
    assert caught.value.problems == [problem]
