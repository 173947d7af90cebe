"""Settings.from_env: REDIS_TLS_VERIFY, the socket and proxy limits, the history settings."""

from __future__ import annotations

import pytest

from console.config import ConfigError, Settings, database_url, redis_tls_verify
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


def test_history_settings_default_to_the_spec() -> None:
    settings = Settings.from_env(ENV)
    assert settings.database_url is None
    assert settings.center_timezone == "UTC"
    assert settings.center_zone.key == "UTC"
    assert settings.history_retention_days == 400
    assert settings.record_calls is False
    assert settings.recording_notice == "This call may be recorded."


def test_history_settings_are_read() -> None:
    env = {
        **ENV,
        "DATABASE_URL": "postgresql://u:p@db.example.com:5432/wl",
        "CENTER_TIMEZONE": "Europe/Paris",
        "HISTORY_RETENTION_DAYS": "30",
        "RECORD_CALLS": "On",
        "RECORDING_NOTICE": "Calls are recorded.",
    }
    settings = Settings.from_env(env)
    assert settings.database_url == "postgresql://u:p@db.example.com:5432/wl"
    assert settings.center_zone.key == "Europe/Paris"
    assert settings.history_retention_days == 30
    assert settings.record_calls is True
    assert settings.recording_notice == "Calls are recorded."
    assert "u:p@" not in repr(settings)


def test_heroku_postgres_url_is_normalised_and_keeps_its_query() -> None:
    env = {**ENV, "DATABASE_URL": "postgres://u:p@ec2.example.com:5432/d1?sslmode=require"}
    expected = "postgresql://u:p@ec2.example.com:5432/d1?sslmode=require"
    assert Settings.from_env(env).database_url == expected
    assert database_url(env) == expected
    assert database_url({}) is None


@pytest.mark.parametrize(
    ("name", "raw", "problem"),
    [
        (
            "DATABASE_URL",
            "mysql://u:secret@h/d",
            "DATABASE_URL must be a postgres:// or postgresql:// URL "
            "like postgresql://user:password@host:5432/name",
        ),
        (
            "CENTER_TIMEZONE",
            "Mars/Olympus",
            "CENTER_TIMEZONE must be an IANA time zone like Europe/Paris, got 'Mars/Olympus'",
        ),
        (
            "CENTER_TIMEZONE",
            "../etc/passwd",
            "CENTER_TIMEZONE must be an IANA time zone like Europe/Paris, got '../etc/passwd'",
        ),
        ("HISTORY_RETENTION_DAYS", "0", "HISTORY_RETENTION_DAYS must be at least 1, got 0"),
        (
            "HISTORY_RETENTION_DAYS",
            "a year",
            "HISTORY_RETENTION_DAYS must be a whole number, got 'a year'",
        ),
        ("RECORD_CALLS", "true", "RECORD_CALLS must be on or off, got 'true'"),
    ],
)
def test_a_bad_history_setting_is_one_problem_line(name: str, raw: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**ENV, name: raw})
    assert caught.value.problems == [problem]
    assert "secret" not in str(caught.value)
