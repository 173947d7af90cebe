"""Settings read once from the environment (12-factor), as a frozen dataclass.

Every problem with the environment is reported as one line naming the variable,
so that a deployment that fails to start says exactly what to fix.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_API_BASE_URL = "https://api.twilio.com"
DEFAULT_HOLD_MUSIC_URL = "https://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3"
DEFAULT_WELCOME_MESSAGE = (
    "Thank you for calling. All of our agents are busy right now. "
    "Please stay on the line and the next available agent will be with you shortly."
)
# Per process: each unit's round trip takes one; hosted Redis plans cap clients.
DEFAULT_REDIS_MAX_CONNECTIONS = 40
DEFAULT_RECORDING_NOTICE = "This call may be recorded."
DEFAULT_HISTORY_RETENTION_DAYS = 400
DEFAULT_CLOSED_MESSAGE = (
    "Thank you for calling. We are closed right now. "
    "Please leave a message after the tone and we will get back to you."
)
DEFAULT_ANNOUNCE_SECONDS = 60
DEFAULT_CALLBACK_ATTEMPTS = 3
DEFAULT_BREAK_REASONS = ("Lunch", "Break", "Training", "Meeting")
DEFAULT_DISPOSITIONS = ("Resolved", "Follow-up", "Escalated", "Wrong number", "Other")
MAX_NAME_LENGTH = 100  # a break reason or a disposition

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # index = date.weekday()
_DAY_NUMBERS = {name.lower(): number for number, name in enumerate(DAY_NAMES)}
_CLAUSE = re.compile(r"(?P<days>.*?)\s+(?P<start>\S+?)\s*-\s*(?P<end>\S+)")
_TIME = re.compile(r"(?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2})")
BUSINESS_HOURS_EXAMPLE = "Mon-Fri 09:00-17:30; Sat 10:00-14:00"
SENTINELS_EXAMPLE = "10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379"


class ConfigError(Exception):
    """The environment cannot run Warmline; ``problems`` holds one line per variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class RedisSentinels:
    """Where Redis is when Sentinel finds it: the Sentinels' addresses, the name they
    monitor the master under, and the data nodes' password (the Sentinels need none)."""

    addresses: tuple[tuple[str, int], ...]
    master: str
    password: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        """How `warmline check` and `serve` name it: ``Redis master <name> via sentinels
        a:1,b:2`` (never the password)."""
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.addresses)
        return f"Redis master {self.master} via sentinels {hosts}"


@dataclass(frozen=True)
class HoursClause:
    """One clause of BUSINESS_HOURS: open on ``days`` (0 = Monday, in the order written)
    from ``start`` to ``end``, minutes after local midnight, end excluded (at most 1440)."""

    days: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class BusinessHours:
    """Opening hours in the center's local wall-clock time, parsed from BUSINESS_HOURS."""

    clauses: tuple[HoursClause, ...]

    @classmethod
    def parse(cls, text: str) -> BusinessHours:
        """Parse ``Mon-Fri 09:00-17:30; Sat 10:00-14:00`` (comma lists and ranges that wrap
        the week, like ``Sat-Mon``, allowed); raise ValueError saying what is wrong."""
        clauses = tuple(_parse_clause(part.strip()) for part in text.split(";") if part.strip())
        if not clauses:
            raise ValueError("no opening hours given")
        return cls(clauses)


def _parse_clause(text: str) -> HoursClause:
    match = _CLAUSE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not days then HH:MM-HH:MM")
    days: list[int] = []
    for item in match["days"].split(","):
        first, dash, last = (part.strip() for part in item.partition("-"))
        number = _day(first)
        span = (_day(last) - number) % 7 if dash else 0
        for offset in range(span + 1):
            day = (number + offset) % 7
            if day not in days:
                days.append(day)
    start, end = _minutes(match["start"]), _minutes(match["end"])
    if start >= 24 * 60:
        raise ValueError(f"a clause cannot start at {match['start']}")
    if end <= start:
        raise ValueError(f"the end {match['end']} is not after the start in {text!r}")
    return HoursClause(tuple(days), start, end)


def _day(name: str) -> int:
    number = _DAY_NUMBERS.get(name.lower())
    if number is None:
        raise ValueError(f"{name!r} is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)")
    return number


def _minutes(text: str) -> int:
    """HH:MM as minutes after midnight; 24:00 (the end of the day) is allowed."""
    match = _TIME.fullmatch(text)
    if match is not None:
        hour, minute = int(match["hour"]), int(match["minute"])
        if (hour < 24 and minute < 60) or (hour, minute) == (24, 0):
            return hour * 60 + minute
    raise ValueError(f"{text!r} is not a time like 09:00")


@dataclass(frozen=True)
class Settings:
    """Everything Warmline reads from its environment."""

    account_sid: str
    auth_token: str = field(repr=False)
    api_key: str
    api_secret: str = field(repr=False)
    caller_id: str
    public_base_url: str
    secret_key: str = field(repr=False)
    api_base_url: str = DEFAULT_API_BASE_URL
    redis_url: str | None = None
    redis_sentinels: RedisSentinels | None = None  # instead of redis_url
    redis_max_connections: int = DEFAULT_REDIS_MAX_CONNECTIONS
    redis_tls_verify: bool = True
    port: int = 5000
    hold_music_url: str = DEFAULT_HOLD_MUSIC_URL
    welcome_message: str = DEFAULT_WELCOME_MESSAGE
    agent_grace_seconds: int = 30
    wrap_up_seconds: int = 0
    event_log_maxlen: int = 100_000
    event_log_max_age_hours: int = 24
    ws_backlog: int = 1000
    max_sockets_per_user: int = 8
    trusted_proxy_hops: int = 0  # proxies trusted to append to X-Forwarded-For
    metrics_token: str | None = field(default=None, repr=False)
    twiml_app_sid: str | None = None
    rest_timeout_seconds: float = 5.0
    ring_timeout_seconds: int = 20
    service_level_seconds: int = 20
    database_url: str | None = field(default=None, repr=False)  # may hold a password
    center_timezone: str = "UTC"
    history_retention_days: int = DEFAULT_HISTORY_RETENTION_DAYS
    record_calls: bool = False
    recording_notice: str = DEFAULT_RECORDING_NOTICE
    business_hours: BusinessHours | None = None  # None: always open
    holidays: frozenset[datetime.date] = frozenset()  # local dates of CENTER_TIMEZONE
    closed_message: str = DEFAULT_CLOSED_MESSAGE
    announce_seconds: int = DEFAULT_ANNOUNCE_SECONDS  # 0: never
    callback_offer_seconds: int | None = None  # None: never offered; 0: whenever one waits
    max_wait_seconds: int | None = None  # None: no limit
    callback_attempts: int = DEFAULT_CALLBACK_ATTEMPTS
    nobody_signed_in: str = "queue"  # or "voicemail"
    break_reasons: tuple[str, ...] = DEFAULT_BREAK_REASONS
    dispositions: tuple[str, ...] = DEFAULT_DISPOSITIONS
    # Supervisor alerts (SPEC §10): the longest wait in seconds, the line's length,
    # today's service level in percent (alerts carry values in these units).
    alert_longest_wait_seconds: int = 120
    alert_queue_size: int = 10
    alert_service_level: int = 80
    transfer_wait_seconds: int = 60  # a transfer to "any available agent" waits this long
    external_transfer_allow: tuple[str, ...] = ()  # E.164 prefixes besides the directory
    demo: bool = False
    simulator_url: str | None = None  # demo mode: browsers' softphones talk to the simulator

    @property
    def redis_target(self) -> str | RedisSentinels | None:
        """What console.redis_ext.connect takes: the Sentinels, else REDIS_URL."""
        return self.redis_sentinels or self.redis_url

    @property
    def secure_cookies(self) -> bool:
        """Cookies are marked Secure when the public URL is https."""
        return self.public_base_url.startswith("https://")

    @property
    def public_origin(self) -> str:
        """Scheme and host of PUBLIC_BASE_URL, as browsers send it in ``Origin``."""
        parts = urlsplit(self.public_base_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def center_zone(self) -> ZoneInfo:
        """CENTER_TIMEZONE as a zone: report days and "today" are days there."""
        return ZoneInfo(self.center_timezone)

    def url(self, path: str) -> str:
        """Absolute URL Twilio uses to reach ``path`` on this deployment."""
        return self.public_base_url + path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); raise ConfigError listing
        every missing or malformed variable at once."""
        return _Reader(os.environ if env is None else env).settings()


def redis_tls_verify(env: Mapping[str, str] | None = None) -> bool:
    """REDIS_TLS_VERIFY alone, for commands that reach Redis without the full settings
    (``warmline user``); raise ConfigError (one line) on a bad value."""
    reader = _Reader(os.environ if env is None else env)
    value = reader.boolean("REDIS_TLS_VERIFY", default=True)
    if reader.problems:
        raise ConfigError(reader.problems)
    return value


def redis_sentinels(env: Mapping[str, str] | None = None) -> RedisSentinels | None:
    """REDIS_SENTINELS and REDIS_SENTINEL_MASTER alone (None when unset), for commands
    that reach Redis without the full settings; raise ConfigError on a bad value."""
    reader = _Reader(os.environ if env is None else env)
    value = reader.redis_sentinels()
    if reader.problems:
        raise ConfigError(reader.problems)
    return value


def database_url(env: Mapping[str, str] | None = None) -> str | None:
    """DATABASE_URL alone (normalised), for commands that reach PostgreSQL without the
    full settings (``warmline db upgrade``); raise ConfigError (one line) on a bad value."""
    reader = _Reader(os.environ if env is None else env)
    value = reader.database_url()
    if reader.problems:
        raise ConfigError(reader.problems)
    return value


class _Reader:
    """Collects every problem instead of stopping at the first one."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(name, "").strip()
        return value or default

    def required(self, name: str) -> str:
        value = self.text(name)
        if value is None:
            self.problems.append(f"{name} is required but not set")
            return ""
        return value

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name} must be a whole number, got {raw!r}")
            return default
        if value < minimum:
            self.problems.append(f"{name} must be at least {minimum}, got {value}")
            return default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        self.problems.append(f"{name} must be true or false, got {raw!r}")
        return default

    def on_off(self, name: str, default: bool) -> bool:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.lower() in ("on", "off"):
            return raw.lower() == "on"
        self.problems.append(f"{name} must be on or off, got {raw!r}")
        return default

    def optional_integer(self, name: str, minimum: int = 0) -> int | None:
        """A whole number, or None when unset (the feature it sets is off)."""
        if self.text(name) is None:
            return None
        return self.integer(name, default=minimum, minimum=minimum)

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        """One of ``choices`` (any case); the first is the default."""
        raw = self.text(name)
        if raw is None:
            return choices[0]
        if raw.lower() in choices:
            return raw.lower()
        self.problems.append(f"{name} must be {' or '.join(choices)}, got {raw!r}")
        return choices[0]

    def business_hours(self, name: str) -> BusinessHours | None:
        raw = self.text(name)
        if raw is None:
            return None
        try:
            return BusinessHours.parse(raw)
        except ValueError as problem:
            self.problems.append(
                f"{name} must be like {BUSINESS_HOURS_EXAMPLE!r}: {problem}, got {raw!r}"
            )
            return None

    def names(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """Comma-separated choices people pick from (each at most 100 characters)."""
        raw = self.text(name)
        if raw is None:
            return default
        chosen = tuple(dict.fromkeys(filter(None, (part.strip() for part in raw.split(",")))))
        if not chosen or any(len(part) > MAX_NAME_LENGTH for part in chosen):
            self.problems.append(
                f"{name} must be comma-separated names of at most {MAX_NAME_LENGTH} "
                f"characters, got {raw!r}"
            )
            return default
        return chosen

    def prefixes(self, name: str) -> tuple[str, ...]:
        """Comma-separated E.164 prefixes (``+`` and 1 to 15 digits); empty when unset."""
        raw = self.text(name)
        if raw is None:
            return ()
        chosen = tuple(dict.fromkeys(filter(None, (part.strip() for part in raw.split(",")))))
        bad = [p for p in chosen if not re.fullmatch(r"\+[0-9]{1,15}", p)]
        if bad:
            self.problems.append(
                f"{name} must be comma-separated E.164 prefixes such as +1555, got {bad[0]!r}"
            )
            return ()
        return chosen

    def dates(self, name: str) -> frozenset[datetime.date]:
        raw = self.text(name)
        if raw is None:
            return frozenset()
        dates = set()
        for part in filter(None, (part.strip() for part in raw.split(","))):
            try:
                dates.add(datetime.date.fromisoformat(part))
            except ValueError:
                self.problems.append(
                    f"{name} must be dates like 2026-12-25,2027-01-01, got {part!r}"
                )
                return frozenset()
        return frozenset(dates)

    def redis_sentinels(self) -> RedisSentinels | None:
        """REDIS_SENTINELS (host:port list) with REDIS_SENTINEL_MASTER, both or neither,
        and not with REDIS_URL; REDIS_SENTINEL_PASSWORD only with them."""
        raw, master = self.text("REDIS_SENTINELS"), self.text("REDIS_SENTINEL_MASTER")
        password = self.text("REDIS_SENTINEL_PASSWORD")
        if raw is None and master is None:
            if password is not None:
                self.problems.append(
                    "REDIS_SENTINEL_PASSWORD is set but REDIS_SENTINELS and "
                    "REDIS_SENTINEL_MASTER are not"
                )
            return None
        if raw is None or master is None:
            self.problems.append(
                "REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together: set both or neither"
            )
            return None
        if self.text("REDIS_URL") is not None:
            self.problems.append(
                "set REDIS_URL or REDIS_SENTINELS with REDIS_SENTINEL_MASTER, not both"
            )
            return None
        addresses = []
        for part in filter(None, (part.strip() for part in raw.split(","))):
            address = _host_port(part)
            if address is None:
                self.problems.append(
                    f"REDIS_SENTINELS must be comma-separated host:port addresses like "
                    f"{SENTINELS_EXAMPLE}, got {part!r}"
                )
                return None
            addresses.append(address)
        if not addresses:
            self.problems.append(
                f"REDIS_SENTINELS must list host:port addresses like {SENTINELS_EXAMPLE}"
            )
            return None
        return RedisSentinels(tuple(dict.fromkeys(addresses)), master, password)

    def database_url(self) -> str | None:
        """DATABASE_URL with Heroku's ``postgres://`` spelled ``postgresql://``; the query
        string (``sslmode=require``) is kept. Never echoed back: it holds a password."""
        value = self.text("DATABASE_URL")
        if value is None:
            return None
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in ("postgres", "postgresql") or not rest:
            self.problems.append(
                "DATABASE_URL must be a postgres:// or postgresql:// URL "
                "like postgresql://user:password@host:5432/name"
            )
            return None
        return "postgresql://" + rest

    def timezone(self, name: str, default: str) -> str:
        value = self.text(name, default) or default
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            self.problems.append(
                f"{name} must be an IANA time zone like Europe/Paris, got {value!r}"
            )
            return default
        return value

    def base_url(self, name: str, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.problems.append(
                f"{name} must be an http(s) URL like https://example.com, got {value!r}"
            )
        elif parts.query or parts.fragment:
            self.problems.append(f"{name} must not carry a query or fragment, got {value!r}")
        return value.rstrip("/")

    def pattern(self, name: str, value: str, regex: str, what: str) -> str:
        if value and not re.fullmatch(regex, value):
            self.problems.append(f"{name} must be {what}, got {_redact(name, value)}")
        return value

    def settings(self) -> Settings:
        account_sid = self.pattern(
            "TWILIO_ACCOUNT_SID",
            self.required("TWILIO_ACCOUNT_SID"),
            r"AC[0-9a-fA-F]{32}",
            "an Account SID (AC followed by 32 hex digits)",
        )
        api_key = self.pattern(
            "TWILIO_API_KEY",
            self.required("TWILIO_API_KEY"),
            r"SK[0-9a-fA-F]{32}",
            "an API Key SID (SK followed by 32 hex digits)",
        )
        redis_url = self.text("REDIS_URL")
        if redis_url and urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
            self.problems.append("REDIS_URL must start with redis://, rediss:// or unix://")
        settings = Settings(
            account_sid=account_sid,
            auth_token=self.required("TWILIO_AUTH_TOKEN"),
            api_key=api_key,
            api_secret=self.required("TWILIO_API_SECRET"),
            caller_id=self.required("TWILIO_CALLER_ID"),
            public_base_url=self.base_url("PUBLIC_BASE_URL", self.required("PUBLIC_BASE_URL")),
            secret_key=self.required("SECRET_KEY"),
            api_base_url=self.base_url(
                "TWILIO_API_BASE_URL", self.text("TWILIO_API_BASE_URL", DEFAULT_API_BASE_URL)
            ),
            redis_url=redis_url,
            redis_sentinels=self.redis_sentinels(),
            redis_max_connections=self.integer(
                "REDIS_MAX_CONNECTIONS", DEFAULT_REDIS_MAX_CONNECTIONS, minimum=2
            ),
            redis_tls_verify=self.boolean("REDIS_TLS_VERIFY", default=True),
            port=self.integer("PORT", 5000, minimum=1),
            hold_music_url=self.text("HOLD_MUSIC_URL", DEFAULT_HOLD_MUSIC_URL),
            welcome_message=self.text("WELCOME_MESSAGE", DEFAULT_WELCOME_MESSAGE),
            agent_grace_seconds=self.integer("AGENT_GRACE_SECONDS", 30),
            wrap_up_seconds=self.integer("WRAP_UP_SECONDS", 0),
            event_log_maxlen=self.integer("EVENT_LOG_MAXLEN", 100_000, minimum=100),
            event_log_max_age_hours=self.integer("EVENT_LOG_MAX_AGE_HOURS", 24),
            ws_backlog=self.integer("WS_BACKLOG", 1000, minimum=200),
            max_sockets_per_user=self.integer("MAX_SOCKETS_PER_USER", 8, minimum=1),
            trusted_proxy_hops=self.integer("TRUSTED_PROXY_HOPS", 0),
            metrics_token=self.text("METRICS_TOKEN"),
            twiml_app_sid=self.text("TWILIO_TWIML_APP_SID"),
            ring_timeout_seconds=self.integer("RING_TIMEOUT_SECONDS", 20, minimum=5),
            service_level_seconds=self.integer("SERVICE_LEVEL_SECONDS", 20, minimum=1),
            simulator_url=self.text("WARMLINE_SIMULATOR_URL"),
            database_url=self.database_url(),
            center_timezone=self.timezone("CENTER_TIMEZONE", "UTC"),
            history_retention_days=self.integer(
                "HISTORY_RETENTION_DAYS", DEFAULT_HISTORY_RETENTION_DAYS, minimum=1
            ),
            record_calls=self.on_off("RECORD_CALLS", default=False),
            recording_notice=self.text("RECORDING_NOTICE", DEFAULT_RECORDING_NOTICE),
            business_hours=self.business_hours("BUSINESS_HOURS"),
            holidays=self.dates("HOLIDAYS"),
            closed_message=self.text("CLOSED_MESSAGE", DEFAULT_CLOSED_MESSAGE),
            announce_seconds=self.integer("ANNOUNCE_SECONDS", DEFAULT_ANNOUNCE_SECONDS),
            callback_offer_seconds=self.optional_integer("CALLBACK_OFFER_SECONDS"),
            max_wait_seconds=self.optional_integer("MAX_WAIT_SECONDS", minimum=1),
            callback_attempts=self.integer(
                "CALLBACK_ATTEMPTS", DEFAULT_CALLBACK_ATTEMPTS, minimum=1
            ),
            nobody_signed_in=self.choice("NOBODY_SIGNED_IN", ("queue", "voicemail")),
            break_reasons=self.names("BREAK_REASONS", DEFAULT_BREAK_REASONS),
            dispositions=self.names("DISPOSITIONS", DEFAULT_DISPOSITIONS),
            alert_longest_wait_seconds=self.integer("ALERT_LONGEST_WAIT_SECONDS", 120, minimum=1),
            alert_queue_size=self.integer("ALERT_QUEUE_SIZE", 10, minimum=1),
            alert_service_level=self.integer("ALERT_SERVICE_LEVEL", 80),
            transfer_wait_seconds=self.integer("TRANSFER_WAIT_SECONDS", 60),
            external_transfer_allow=self.prefixes("EXTERNAL_TRANSFER_ALLOW"),
        )
        if not 0 <= settings.alert_service_level <= 100:
            self.problems.append(
                f"ALERT_SERVICE_LEVEL must be a percent from 0 to 100, got "
                f"{settings.alert_service_level}"
            )
        if settings.port > 65535:
            self.problems.append(f"PORT must be at most 65535, got {settings.port}")
        if self.problems:
            raise ConfigError(self.problems)
        return settings


def _host_port(text: str) -> tuple[str, int] | None:
    """``host:port`` or ``[v6]:port`` as a pair; None when it is neither."""
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or any(c.isspace() or c in "[]/@" for c in host):
        return None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    return host, int(port)


def _redact(name: str, value: str) -> str:
    """Never echo a secret back into a log line."""
    return "(hidden)" if "SECRET" in name or "TOKEN" in name else repr(value)
