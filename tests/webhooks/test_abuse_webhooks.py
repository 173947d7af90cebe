"""Hypothesis against every webhook route (docs/webhooks.md): correctly signed requests with
missing, malformed, duplicated, huge, unicode and unknown parameters never get a
5xx, and a rejected one (4xx) changes no state; the same request unsigned or
mis-signed gets 403 and changes nothing.

The routes are found by walking the app's URL map for views marked
``__warmline_webhook__``, so a new webhook route is fuzzed without being listed.
Requests go against a live call (a customer talking to an agent), so that some
generated callbacks name a real conference, call and dial.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from werkzeug.datastructures import MultiDict

from console.domain import keys
from console.telephony import reconcile
from console.telephony.runner import Runner
from console.urls import (
    AGENT_CONNECT_PATH,
    CALL_STATUS_PATH,
    CONFERENCE_STATUS_PATH,
    VOICE_PATH,
    WAIT_PATH,
)
from simulator.testing import TwilioVoice, call_sid, conference_sid, sign
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE_URL, make_settings
from tests.support.flow_helpers import agent_answers, customer_waits, login, set_available
from warmline.app import create_app
from webhooks import params as p

EXAMPLES = int(os.environ.get("WARMLINE_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

# Keys a rejected request may see change: the per-route health bookkeeping of
# docs/webhooks.md (when Twilio last reached a route, the recent signature failures),
# and the reconcile marker, which a background loop claims whenever it is missing.
BOOKKEEPING = frozenset({keys.WEBHOOK_HEALTH, keys.SIGNATURE_FAILURES, reconcile.MARKER})


def webhook_routes() -> list[tuple[str, str]]:
    """(rule, method) for every view marked as a Twilio webhook."""
    app = create_app(make_settings(), redis_url="redis://127.0.0.1:9/0")
    routes = []
    for rule in app.url_map.iter_rules():
        if getattr(app.view_functions[rule.endpoint], "__warmline_webhook__", False):
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                routes.append((rule.rule, method))
    return routes


ROUTES = webhook_routes()


def test_the_walk_finds_every_spec_webhook():
    paths = {path for path, _ in ROUTES}
    assert {VOICE_PATH, WAIT_PATH, AGENT_CONNECT_PATH, CONFERENCE_STATUS_PATH} <= paths
    assert CALL_STATUS_PATH in paths
    assert (WAIT_PATH, "GET") in ROUTES and (WAIT_PATH, "POST") in ROUTES


# --- generated input -----------------------------------------------------------------


@dataclass
class Live:
    """Real names from the seeded call, for generated requests to hit."""

    conference: str
    conference_sid: str
    agent_call: str
    dial: str


NASTY = [
    "",
    " ",
    "0",
    "-1",
    "1e3",
    "0x10",
    "9" * 10,
    "9" * 40,
    "²",  # str.isdigit() but not int()-able
    "١٢",  # Arabic-Indic digits
    "\U0001d7d7",
    "NaN",
    "null",
    "true",
    "TRUE",
    "None",
    "\x00",
    "\ufeff",
    "a\r\nb",
    "<Response><Hangup/></Response>",
    "'; DROP TABLE calls; --",
    "../../etc/passwd",
    "%00",
    "%zz",
    "{}",
    "[]",
    "CA" + "0" * 32,
    "CA" + "F" * 32,
    "CF" + "0" * 31,
    "client:alice",
]

# Events Twilio may send that Warmline does not track (answered 204, nothing recorded).
UNTRACKED_EVENTS = ["participant-speech-start", "announcement-end", "conference-record-end"]

TIMESTAMPS = [
    "Wed, 25 Nov 2026 12:00:00 +0000",
    "Mon, 01 Jan 0001 00:00:00 +0000",
    "Mon, 01 Jan 0001 00:00:00 +2359",
    "Fri, 31 Dec 9999 23:59:59 -2359",
    "Thu, 01 Jan 1970 00:00:00 +0000",
    "31 Dec 1969 23:59:59 GMT",
    "Tue, 30 Feb 2026 12:00:00 +0000",
    "Tue, 25 Nov 2026 25:61:61 +0000",
    "Wed, 25 Nov 99999 12:00:00 +0000",
    "2026-11-25T12:00:00Z",
    "yesterday",
    "1700000000",
]


def text(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(max_size=max_size)


def huge() -> st.SearchStrategy[str]:
    return st.sampled_from(["x", "é", "9", "%"]).flatmap(
        lambda c: st.integers(1_000, 12_000).map(lambda n: c * n)
    )


def anything() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(NASTY), text(), huge(), st.integers().map(str))


def field_values(live: Live) -> dict[str, st.SearchStrategy[str]]:
    """Per Twilio parameter: mostly plausible values, with garbage mixed in."""
    sids = st.one_of(
        st.sampled_from([live.conference, live.agent_call]), st.builds(call_sid), anything()
    )
    flags = st.one_of(st.sampled_from(["true", "false", "True", "FALSE"]), anything())
    return {
        "AccountSid": st.one_of(st.just(ACCOUNT_SID), st.just("AC" + "0" * 32), anything()),
        "CallSid": sids,
        "ConferenceSid": st.one_of(
            st.just(live.conference_sid), st.builds(conference_sid), anything()
        ),
        "FriendlyName": st.one_of(
            st.just(live.conference), st.builds(call_sid), st.just("a" * 129), anything()
        ),
        "StatusCallbackEvent": st.one_of(
            st.sampled_from([*sorted(p.CONFERENCE_EVENTS), *UNTRACKED_EVENTS]),
            anything(),
        ),
        "SequenceNumber": st.one_of(
            st.integers(0, 10**12).map(str),
            st.sampled_from(["²", "٣", "\U0001d7d7", "1_000"]),
            anything(),
        ),
        "Timestamp": st.one_of(
            st.sampled_from(TIMESTAMPS),
            st.datetimes(timezones=st.timezones()).map(format_datetime),
            anything(),
        ),
        "CallStatus": st.one_of(
            st.sampled_from([*sorted(p.CALL_STATUSES), "exploded"]),
            anything(),
        ),
        "Muted": flags,
        "Hold": flags,
        "Coaching": flags,
        "EndConferenceOnExit": flags,
        "StartConferenceOnEnter": flags,
        "ParticipantLabel": st.one_of(st.sampled_from(["customer", live.dial]), anything()),
        "ParticipantCallStatus": st.one_of(st.just("completed"), anything()),
        "ReasonConferenceEnded": anything(),
        "From": st.one_of(st.just("+15557654321"), anything()),
        "To": st.one_of(st.just("client:alice"), anything()),
    }


def templates(live: Live) -> list[list[tuple[str, str]]]:
    """Complete, valid forms of every kind Twilio sends, to mutate from."""
    common = [("ApiVersion", "2010-04-01")]
    conference = [
        *common,
        ("ConferenceSid", live.conference_sid),
        ("FriendlyName", live.conference),
        ("SequenceNumber", "100"),
        ("Timestamp", TIMESTAMPS[0]),
    ]
    participant = [
        ("CallSid", live.agent_call),
        ("Muted", "false"),
        ("Hold", "false"),
        ("Coaching", "false"),
        ("EndConferenceOnExit", "false"),
        ("ParticipantLabel", live.dial),
    ]
    forms = [
        [*common, ("CallSid", call_sid()), ("From", "+15557654321"), ("CallStatus", "ringing")],
        [*common, ("CallSid", live.agent_call), ("CallStatus", "in-progress")],
        [
            *common,
            ("CallSid", live.agent_call),
            ("CallStatus", "completed"),
            ("SequenceNumber", "7"),
            ("Timestamp", TIMESTAMPS[0]),
        ],
        [*conference, ("StatusCallbackEvent", "conference-start")],
        [*conference, ("StatusCallbackEvent", "conference-end")],
    ]
    for event in ("participant-join", "participant-leave", "participant-hold", "participant-mute"):
        forms.append([*conference, ("StatusCallbackEvent", event), *participant])
    return forms


@st.composite
def webhook_requests(draw: st.DrawFn, live: Live, method: str) -> tuple[str, bytes, str]:
    """(query, body, content type): a valid form with some of it broken."""
    values = field_values(live)
    pairs = list(draw(st.sampled_from(templates(live))))
    if pairs and draw(st.booleans()):
        dropped = draw(st.sets(st.sampled_from(sorted({k for k, _ in pairs}))))
        pairs = [(k, v) for k, v in pairs if k not in dropped]
    for name in draw(st.lists(st.sampled_from(sorted(values)), max_size=4)):
        replacement = (name, draw(values[name]))
        if draw(st.booleans()):  # replace, or repeat the key with a second value
            pairs = [(k, v) for k, v in pairs if k != name]
        pairs.append(replacement)
    pairs += draw(st.lists(st.tuples(text(20), text(60)), max_size=3))
    # Mostly our account (else the request is refused before its parameters are read);
    # Hypothesis favours small integers, so the plain case is the low one.
    account = draw(st.integers(0, 9))
    if account < 9:
        pairs.insert(0, ("AccountSid", ACCOUNT_SID if account < 8 else "AC" + "0" * 32))
    if draw(st.booleans()):
        pairs = draw(st.permutations(pairs))

    query_pairs: list[tuple[str, str]] = []
    if method == "GET":  # Twilio sends a GET's parameters in the query
        query_pairs += [(k, v) for k, v in pairs if k in ("AccountSid", "CallSid")]
    conference = draw(st.one_of(st.just(live.conference), anything(), st.none()))
    dial = draw(st.one_of(st.just(live.dial), st.just("dial-x"), anything(), st.none()))
    for name, value in (("conference", conference), ("dial", dial)):
        if value is not None:
            query_pairs.append((name, value))
    if draw(st.booleans()):
        query_pairs.append(("greeting", draw(st.sampled_from(["no", "yes", ""]))))
    if draw(st.integers(0, 9)) == 9:
        query_pairs.append(("conference", draw(anything())))  # a duplicate query key
    query = urlencode(query_pairs)

    body = urlencode(pairs).encode()
    kind = draw(st.integers(0, 19))
    content_type = "application/x-www-form-urlencoded"
    if kind == 16:
        body += b"&Raw=\xff\xfe"  # not UTF-8: the form does not parse at all
    elif kind == 17:
        body += b"&%zz=%ff%fe&=&&=x"
    elif kind == 18:
        content_type = "application/json"
        body = json.dumps(dict(pairs)).encode()
    elif kind == 19:
        content_type = "text/plain"
    return query, body, content_type


def parsed_form(body: bytes, content_type: str) -> MultiDict[str, str]:
    """The form as the app will see it (what Twilio would have signed)."""
    if content_type != "application/x-www-form-urlencoded":
        return MultiDict()
    try:
        return MultiDict(parse_qsl(body.decode(), keep_blank_values=True))
    except ValueError:
        return MultiDict()


# --- state ---------------------------------------------------------------------------


async def state_dump(redis: Redis) -> dict[str, Any]:
    """Every ``wl:`` key with its value, but for the webhook-health bookkeeping."""
    dump: dict[str, Any] = {}
    for key in sorted(await redis.keys(keys.PREFIX + "*")):
        if key in BOOKKEEPING:
            continue
        kind = await redis.type(key)
        if kind == "string":
            dump[key] = await redis.get(key)
        elif kind == "hash":
            dump[key] = await redis.hgetall(key)
        elif kind == "list":
            dump[key] = await redis.lrange(key, 0, -1)
        elif kind == "set":
            dump[key] = sorted(await redis.smembers(key))
        elif kind == "zset":
            dump[key] = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            dump[key] = await redis.xrange(key)
        else:
            dump[key] = kind
    return dump


@pytest.fixture
async def live(app, redis, voice) -> Live:
    alice = await login(app, redis, "alice")
    await set_available(alice)
    await login(app, redis, "bob")
    name = await customer_waits(voice)
    leg = await agent_answers(voice, name, "alice")
    dial = parse_qs(urlsplit(leg.create.param("Url") or "").query)["dial"][0]
    return Live(name, voice.conferences[name].sid, leg.call_sid, dial)


class Tally:
    """What the fuzzing tried: responses by status, printed after each route's run."""

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}

    def note(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


@pytest.fixture
def tally(request: pytest.FixtureRequest):
    counts = Tally()
    yield counts
    total = sum(counts.statuses.values())
    print(f"\n{request.node.name}: {total} requests, by status {counts.statuses}")


async def send(voice: TwilioVoice, method: str, target: str, body: bytes, headers: dict) -> Any:
    if method == "GET":
        return await voice.client.get(target, headers=headers)
    return await voice.client.post(target, data=body, headers=headers)


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("path", "method"), ROUTES)
@given(data=st.data())
@FUZZ
async def test_generated_requests_never_5xx_and_rejections_change_nothing(
    app, redis, voice, live, tally, path, method, data
):
    query, body, content_type = data.draw(webhook_requests(live, method), label="request")
    target = path + (f"?{query}" if query else "")
    form = parsed_form(body, content_type) if method == "POST" else MultiDict()
    if method == "GET":
        body = b""
    url = PUBLIC_BASE_URL + target
    headers = {"Content-Type": content_type}
    runner = Runner.of(app)

    # Unsigned, mis-signed, and signed for another host: 403, nothing changed. A sweep
    # first: the alerts it raises for this world (SPEC §10) are not the requests' doing.
    await runner.sweep()
    await runner.drain()
    before = await state_dump(redis)
    forgeries = (None, sign(url, form, "wrong-token"), sign("https://x" + target, form, AUTH_TOKEN))
    for signature in forgeries:
        forged = dict(headers)
        if signature is not None:
            forged["X-Twilio-Signature"] = signature
        response = await send(voice, method, target, body, forged)
        # 413 when the body is over MAX_CONTENT_LENGTH: refused before it is read.
        assert response.status_code in (403, 413), (target, body[:300], response.status_code)
        tally.note(response.status_code)
    await runner.drain()
    assert await state_dump(redis) == before

    # Correctly signed: never a 5xx; a 4xx leaves the state as it was.
    signed = {**headers, "X-Twilio-Signature": sign(url, form, AUTH_TOKEN)}
    response = await send(voice, method, target, body, signed)
    status = response.status_code
    tally.note(status)
    answer = await response.get_data(as_text=True)
    assert status < 500, (target, body[:500], status, answer[:500])
    await runner.drain()
    if 400 <= status < 500:
        assert await state_dump(redis) == before, (target, body[:500], status, answer)
    assert AUTH_TOKEN not in answer


# --- targeted: one bad value in an otherwise valid callback ------------------------------

TARGETED = [
    ("SequenceNumber", value)
    for value in ("²", "³", "¹²", "\U0001d7d7", "٣", "1_0", " 1", "+1", "-1", "1.0", "9" * 10)
] + [
    ("Timestamp", value)
    for value in (*TIMESTAMPS, "Mon, 01 Jan 0001 00:00:00 -2359", "\x00", "a" * 5000)
]


@pytest.mark.parametrize("kind", ["conference", "call"])
async def test_one_bad_number_or_time_in_a_valid_callback_is_a_4xx_or_accepted(
    app, redis, voice, live, kind
):
    runner = Runner.of(app)
    if kind == "conference":
        template = dict(templates(live)[-3])  # participant-join of the agent's leg
        target = CONFERENCE_STATUS_PATH
    else:
        template = dict(templates(live)[2])  # the agent's leg completed
        query = urlencode({"conference": live.conference, "dial": live.dial})
        target = f"{CALL_STATUS_PATH}?{query}"
    url = PUBLIC_BASE_URL + target
    for field, value in TARGETED:
        form = {**template, "AccountSid": ACCOUNT_SID, field: value}
        await runner.drain()
        before = await state_dump(redis)
        response = await voice.client.post(
            target, form=form, headers={"X-Twilio-Signature": sign(url, form, AUTH_TOKEN)}
        )
        answer = await response.get_data(as_text=True)
        assert response.status_code < 500, (field, value, answer)
        await runner.drain()
        if response.status_code >= 400:
            assert field in answer, (field, value, answer)
            assert await state_dump(redis) == before, (field, value)
