"""Settings.from_env: REDIS_TLS_VERIFY, the socket and proxy limits, the history settings,
the caller's wait (business hours, holidays, callbacks)."""

from __future__ import annotations

from datetime import date

import pytest

from console.config import (
    DEFAULT_CLOSED_MESSAGE,
    BusinessHours,
    ConfigError,
    HoursClause,
    RedisSentinels,
    Settings,
    database_url,
    redis_sentinels,
    redis_tls_verify,
)
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


def test_the_callers_wait_settings_default_to_the_spec() -> None:
    settings = Settings.from_env(ENV)
    assert settings.business_hours is None
    assert settings.holidays == frozenset()
    assert settings.closed_message == DEFAULT_CLOSED_MESSAGE
    assert "closed" in settings.closed_message
    assert settings.announce_seconds == 60
    assert settings.callback_offer_seconds is None
    assert settings.max_wait_seconds is None
    assert settings.callback_attempts == 3
    assert settings.nobody_signed_in == "queue"


def test_the_callers_wait_settings_are_read() -> None:
    env = {
        **ENV,
        "BUSINESS_HOURS": "Mon-Fri 09:00-17:30; Sat 10:00-14:00",
        "HOLIDAYS": "2026-12-25, 2027-01-01,",
        "CLOSED_MESSAGE": "We are closed.",
        "ANNOUNCE_SECONDS": "0",
        "CALLBACK_OFFER_SECONDS": "0",
        "MAX_WAIT_SECONDS": "900",
        "CALLBACK_ATTEMPTS": "1",
        "NOBODY_SIGNED_IN": "Voicemail",
    }
    settings = Settings.from_env(env)
    assert settings.business_hours == BusinessHours(
        (HoursClause((0, 1, 2, 3, 4), 9 * 60, 17 * 60 + 30), HoursClause((5,), 10 * 60, 14 * 60))
    )
    assert settings.holidays == frozenset({date(2026, 12, 25), date(2027, 1, 1)})
    assert settings.closed_message == "We are closed."
    assert settings.announce_seconds == 0
    assert settings.callback_offer_seconds == 0
    assert settings.max_wait_seconds == 900
    assert settings.callback_attempts == 1
    assert settings.nobody_signed_in == "voicemail"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Mon,Wed 09:00-12:00", (HoursClause((0, 2), 540, 720),)),
        ("sat-MON 9:00-24:00", (HoursClause((5, 6, 0), 540, 1440),)),
        (
            "Mon - Fri 08:00 - 12:00;; Fri 13:00-17:00;",
            (
                HoursClause((0, 1, 2, 3, 4), 480, 720),
                HoursClause((4,), 780, 1020),
            ),
        ),
        ("Mon-Mon,Sun 00:00-00:01", (HoursClause((0, 6), 0, 1),)),
    ],
)
def test_business_hours_syntax(raw: str, expected: tuple[HoursClause, ...]) -> None:
    assert Settings.from_env({**ENV, "BUSINESS_HOURS": raw}).business_hours == BusinessHours(
        expected
    )


HOURS_PROBLEM = "BUSINESS_HOURS must be like 'Mon-Fri 09:00-17:30; Sat 10:00-14:00': "


@pytest.mark.parametrize(
    ("name", "raw", "problem"),
    [
        (
            "BUSINESS_HOURS",
            "Mon-Fri 17:30-09:00",
            HOURS_PROBLEM + "the end 09:00 is not after the start in 'Mon-Fri 17:30-09:00', "
            "got 'Mon-Fri 17:30-09:00'",
        ),
        (
            "BUSINESS_HOURS",
            "Mon 10:00-10:00",
            HOURS_PROBLEM + "the end 10:00 is not after the start in 'Mon 10:00-10:00', "
            "got 'Mon 10:00-10:00'",
        ),
        (
            "BUSINESS_HOURS",
            "Mon-Fry 09:00-17:00",
            HOURS_PROBLEM + "'Fry' is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun), "
            "got 'Mon-Fry 09:00-17:00'",
        ),
        (
            "BUSINESS_HOURS",
            "Monday 09:00-17:00",
            HOURS_PROBLEM + "'Monday' is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun), "
            "got 'Monday 09:00-17:00'",
        ),
        (
            "BUSINESS_HOURS",
            "Mon 09:00-25:00",
            HOURS_PROBLEM + "'25:00' is not a time like 09:00, got 'Mon 09:00-25:00'",
        ),
        (
            "BUSINESS_HOURS",
            "Mon 9am-5pm",
            HOURS_PROBLEM + "'9am' is not a time like 09:00, got 'Mon 9am-5pm'",
        ),
        (
            "BUSINESS_HOURS",
            "Mon 24:00-24:00",
            HOURS_PROBLEM + "a clause cannot start at 24:00, got 'Mon 24:00-24:00'",
        ),
        (
            "BUSINESS_HOURS",
            "09:00-17:00",
            HOURS_PROBLEM + "'09:00-17:00' is not days then HH:MM-HH:MM, got '09:00-17:00'",
        ),
        ("BUSINESS_HOURS", ";", HOURS_PROBLEM + "no opening hours given, got ';'"),
        (
            "HOLIDAYS",
            "2026-12-25,25/12/2027",
            "HOLIDAYS must be dates like 2026-12-25,2027-01-01, got '25/12/2027'",
        ),
        (
            "HOLIDAYS",
            "2026-02-30",
            "HOLIDAYS must be dates like 2026-12-25,2027-01-01, got '2026-02-30'",
        ),
        ("ANNOUNCE_SECONDS", "-1", "ANNOUNCE_SECONDS must be at least 0, got -1"),
        ("ANNOUNCE_SECONDS", "1m", "ANNOUNCE_SECONDS must be a whole number, got '1m'"),
        ("CALLBACK_OFFER_SECONDS", "-5", "CALLBACK_OFFER_SECONDS must be at least 0, got -5"),
        (
            "CALLBACK_OFFER_SECONDS",
            "never",
            "CALLBACK_OFFER_SECONDS must be a whole number, got 'never'",
        ),
        ("MAX_WAIT_SECONDS", "0", "MAX_WAIT_SECONDS must be at least 1, got 0"),
        ("MAX_WAIT_SECONDS", "10.5", "MAX_WAIT_SECONDS must be a whole number, got '10.5'"),
        ("CALLBACK_ATTEMPTS", "0", "CALLBACK_ATTEMPTS must be at least 1, got 0"),
        ("CALLBACK_ATTEMPTS", "three", "CALLBACK_ATTEMPTS must be a whole number, got 'three'"),
        ("NOBODY_SIGNED_IN", "hangup", "NOBODY_SIGNED_IN must be queue or voicemail, got 'hangup'"),
    ],
)
def test_a_bad_callers_wait_setting_is_one_problem_line(name: str, raw: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**ENV, name: raw})
    assert caught.value.problems == [problem]


def test_bad_callers_wait_settings_are_listed_together() -> None:
    env = {**ENV, "BUSINESS_HOURS": "Mon", "HOLIDAYS": "xmas", "NOBODY_SIGNED_IN": "x"}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert [line.split()[0] for line in caught.value.problems] == [
        "BUSINESS_HOURS",
        "HOLIDAYS",
        "NOBODY_SIGNED_IN",
    ]


def test_break_reasons_and_dispositions_are_comma_separated_choices():
    settings = Settings.from_env(
        {**ENV, "BREAK_REASONS": " Lunch , Coaching,,Lunch", "DISPOSITIONS": "Sold"}
    )
    assert settings.break_reasons == ("Lunch", "Coaching")
    assert settings.dispositions == ("Sold",)
    defaults = Settings.from_env(ENV)
    assert defaults.dispositions == ("Resolved", "Follow-up", "Escalated", "Wrong number", "Other")
    assert defaults.break_reasons == ("Lunch", "Break", "Training", "Meeting")
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**ENV, "DISPOSITIONS": " , ", "BREAK_REASONS": "x" * 101})
    assert "DISPOSITIONS must be comma-separated names" in str(raised.value)
    assert "BREAK_REASONS must be comma-separated names" in str(raised.value)


# --- REDIS_SENTINELS / REDIS_SENTINEL_MASTER / REDIS_SENTINEL_PASSWORD


SENTINEL_ENV = {
    "REDIS_SENTINELS": " 10.0.0.1:26379, [fd00::2]:26380,sentinel-3.internal:26379 ",
    "REDIS_SENTINEL_MASTER": "warmline",
}


def test_sentinels_and_their_master_name_where_redis_is() -> None:
    settings = Settings.from_env({**ENV, **SENTINEL_ENV, "REDIS_SENTINEL_PASSWORD": "pw"})
    sentinels = settings.redis_sentinels
    assert sentinels == RedisSentinels(
        (("10.0.0.1", 26379), ("fd00::2", 26380), ("sentinel-3.internal", 26379)), "warmline", "pw"
    )
    assert settings.redis_url is None and settings.redis_target == sentinels
    assert sentinels.describe() == (
        "Redis master warmline via sentinels "
        "10.0.0.1:26379,[fd00::2]:26380,sentinel-3.internal:26379"
    )
    assert "pw" not in repr(settings)
    assert redis_sentinels({**SENTINEL_ENV, "REDIS_SENTINEL_PASSWORD": "pw"}) == sentinels
    assert redis_sentinels({}) is None
    assert Settings.from_env(ENV).redis_sentinels is None


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (
            {"REDIS_SENTINELS": "10.0.0.1:26379"},
            "REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together: set both or neither",
        ),
        (
            {"REDIS_SENTINEL_MASTER": "warmline"},
            "REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together: set both or neither",
        ),
        (
            {**SENTINEL_ENV, "REDIS_URL": "redis://redis:6379/0"},
            "set REDIS_URL or REDIS_SENTINELS with REDIS_SENTINEL_MASTER, not both",
        ),
        (
            {**SENTINEL_ENV, "REDIS_SENTINELS": "10.0.0.1:26379,10.0.0.2"},
            "REDIS_SENTINELS must be comma-separated host:port addresses like "
            "10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379, got '10.0.0.2'",
        ),
        (
            {**SENTINEL_ENV, "REDIS_SENTINELS": "redis://10.0.0.1:26379"},
            "REDIS_SENTINELS must be comma-separated host:port addresses like "
            "10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379, got 'redis://10.0.0.1:26379'",
        ),
        (
            {**SENTINEL_ENV, "REDIS_SENTINELS": "10.0.0.1:70000"},
            "REDIS_SENTINELS must be comma-separated host:port addresses like "
            "10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379, got '10.0.0.1:70000'",
        ),
        (
            {**SENTINEL_ENV, "REDIS_SENTINELS": " , "},
            "REDIS_SENTINELS must list host:port addresses like "
            "10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379",
        ),
        (
            {"REDIS_SENTINEL_PASSWORD": "pw"},
            "REDIS_SENTINEL_PASSWORD is set but REDIS_SENTINELS and REDIS_SENTINEL_MASTER are not",
        ),
    ],
)
def test_a_bad_sentinel_setting_is_one_problem_line(extra: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**ENV, **extra})
    assert caught.value.problems == [problem]
    with pytest.raises(ConfigError) as alone:
        redis_sentinels(extra)
    assert alone.value.problems == [problem]
