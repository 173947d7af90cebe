"""Twilio's value formats on the wire: SIDs, timestamps, booleans, signatures and
connection-override fragments. Kept in one place so every module (and the test
tooling in ``simulator.testing``) speaks the dialect the app parses; see
docs/twilio.md for the behaviours themselves."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import parse_qsl

from multidict import MultiDict
from twilio.request_validator import RequestValidator

API_VERSION = "2010-04-01"
SIGNATURE_HEADER = "X-Twilio-Signature"
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two-letter prefix and 32 lowercase hex digits."""
    return prefix + uuid.uuid4().hex


def rfc2822(moment: datetime | None = None) -> str:
    """Twilio's timestamp format, e.g. ``Tue, 31 Aug 2010 20:36:28 +0000``."""
    return format_datetime((moment or datetime.now(UTC)).replace(microsecond=0))


def flag(value: bool) -> str:
    """Twilio sends booleans as lowercase strings."""
    return "true" if value else "false"


def parse_flag(value: str | None) -> bool | None:
    """``true``/``false`` (any case) to bool; None when absent; ValueError otherwise."""
    if value is None or value == "":
        return None
    if value.lower() not in ("true", "false"):
        raise ValueError(value)
    return value.lower() == "true"


Params = Mapping[str, str | Iterable[str]] | Iterable[tuple[str, str]]


def sign(url: str, params: Params, token: str) -> str:
    """X-Twilio-Signature exactly as Twilio computes it (HMAC-SHA1, base64) over the
    URL as requested (no fragment) and the sorted POST parameters.

    ``params`` is a mapping (a value may be a list for a repeated key, such as
    ``StatusCallbackEvent``) or a list of pairs; repeated keys are signed the way
    the app's validator reads a multi-valued form."""
    form: MultiDict[str] = MultiDict()
    pairs = params.items() if isinstance(params, Mapping) else params
    for key, value in pairs:
        if isinstance(value, str):
            form.add(key, value)
        else:
            for item in value:
                form.add(key, item)
    return RequestValidator(token).compute_signature(url, form)


@dataclass(frozen=True)
class Overrides:
    """Connection overrides from a callback URL's fragment (Twilio's defaults when absent)."""

    retry_count: int = 1
    retry_policy: frozenset[str] = frozenset({"ct"})
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    total_timeout: float = 15.0

    def retries_on(self, failure: str) -> bool:
        """``failure`` is ``4xx``, ``5xx``, ``ct`` or ``rt``."""
        return "all" in self.retry_policy or failure in self.retry_policy


def _ms(value: str, low: int, high: int, default: float) -> float:
    try:
        return max(low, min(high, int(value))) / 1000
    except ValueError:
        return default


def split_fragment(url: str) -> tuple[str, Overrides]:
    """The URL Twilio requests (and signs) and the overrides its fragment asks for."""
    base, _, fragment = url.partition("#")
    values = dict(parse_qsl(fragment, keep_blank_values=True))
    defaults = Overrides()
    try:
        count = max(0, min(5, int(values.get("rc", defaults.retry_count))))
    except ValueError:
        count = defaults.retry_count
    policy = values.get("rp")
    return base, Overrides(
        retry_count=count,
        retry_policy=frozenset(policy.split(",")) if policy else defaults.retry_policy,
        connect_timeout=_ms(values.get("ct", "5000"), 100, 10000, 5.0),
        read_timeout=_ms(values.get("rt", "15000"), 100, 15000, 15.0),
        total_timeout=_ms(values.get("tt", "15000"), 100, 15000, 15.0),
    )
