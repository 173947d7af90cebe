"""Test tooling on top of the simulator: the same Twilio, held still and driven by
hand.

``TwilioDouble`` serves the simulator's own REST API (``rest.RestApi`` over a
``calls.Switchboard``: the same resources, JSON, validation, error bodies,
pagination and auth) in a *held* mode where nothing progresses on its own: a
created call stays ``queued``, nothing rings, no TwiML is fetched and no webhook
is sent. Tests move things along with the seeding helpers and send Twilio's
webhooks themselves with ``TwilioVoice``. On top of the REST API it records every
request (also refused ones) and injects faults::

    async with TwilioDouble(ACCOUNT_SID, AUTH_TOKEN) as twilio:
        # the app's TWILIO_API_BASE_URL (client.api.base_url) = twilio.base_url
        room = twilio.add_conference("CA...", status="init")
        twilio.add_participant(room, "CA...", label="customer", hold=True)
        twilio.fail_next("/Calls.json", status=503, code=20503)  # or delay_next, refuse
        ...
        [dial] = twilio.calls_created()  # RecordedRequest: .param("To"), .form, .status

``TwilioVoice`` plays Twilio's side of the webhooks step by step against an app's
test client (anything with ``post(path, form=, headers=)``): the customer's call,
conference and call-progress callbacks, built by ``params`` and signed by
``wire.sign`` exactly as the running simulator sends them, with a ticking clock
for Timestamps; also a ``<Gather>``'s and a ``<Record>``'s action, a message's
recording status callback (``TwilioDouble.add_message`` seeds the recording), and a
dialed number answering or not (``numbers_dialed``, ``person_answers``,
``person_misses``). It keeps the double's picture in step (a conference it reports
started is ``in-progress`` over REST, a participant it reports joined is listed).

``ACCOUNT_SID``, ``AUTH_TOKEN``, ``API_KEY`` and ``API_SECRET`` are a made-up
account for tests, benchmarks and local runs; no real Twilio knows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit
from xml.etree import ElementTree

from aiohttp import BasicAuth, web

from simulator import callbacks
from simulator.callbacks import Deliverer
from simulator.calls import Script, Switchboard
from simulator.model import Call, Conference, JoinSpec, Participant
from simulator.params import (
    conference_params,
    participant_params,
    progress_params,
    voice_params,
)
from simulator.parties import Phones, is_number
from simulator.recordings import PUBLIC_API, TOO_SHORT, Recording, status_params
from simulator.resources import call_json, conference_json, error, participant_json
from simulator.rest import RestApi
from simulator.server import TWILIO_NUMBER, VOICE_PATH
from simulator.wire import API_VERSION, SIGNATURE_HEADER, flag, new_sid, rfc2822, sign

__all__ = [
    "ACCOUNT_SID",
    "API_KEY",
    "API_SECRET",
    "AUTH_TOKEN",
    "SIGNATURE_HEADER",
    "ConferenceTrack",
    "Delivery",
    "RecordedRequest",
    "TwilioDouble",
    "TwilioVoice",
    "call_sid",
    "conference_of",
    "conference_params",
    "conference_sid",
    "participant_params",
    "progress_params",
    "rfc2822",
    "sign",
    "voice_params",
]

ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
API_KEY = "SK" + "b2" * 16
API_SECRET = "test-api-secret-0123456789abcdef0123"

JSON = dict[str, Any]
_ACCOUNT = rf"^/{API_VERSION}/Accounts/[^/]+"
_PARTICIPANT_FLAGS = frozenset(
    {
        "muted",
        "hold",
        "coaching",
        "call_sid_to_coach",
        "start_conference_on_enter",
        "end_conference_on_exit",
        "status",
    }
)
_UNANSWERED = frozenset({"queued", "ringing"})


def _check_flags(flags: Mapping[str, Any]) -> None:
    unknown = set(flags) - _PARTICIPANT_FLAGS
    if unknown:
        raise TypeError(f"unknown participant flags: {sorted(unknown)}")


def call_sid() -> str:
    """A fresh CallSid."""
    return new_sid("CA")


def conference_sid() -> str:
    """A fresh ConferenceSid."""
    return new_sid("CF")


# -- the REST double ---------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One REST request as received; ``status`` is filled in once it is answered."""

    method: str
    path: str
    form: dict[str, list[str]]
    query: dict[str, list[str]]
    auth_user: str | None
    headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None

    def param(self, name: str) -> str | None:
        """First value of a form field, falling back to the query string."""
        values = self.form.get(name) or self.query.get(name)
        return values[0] if values else None

    def params(self, name: str) -> list[str]:
        """All values of a (possibly repeated) form field, e.g. ``StatusCallbackEvent``."""
        return list(self.form.get(name, []))


def _multi(pairs: Iterable[tuple[str, Any]]) -> dict[str, list[str]]:
    """Group pairs by key, keeping repeated keys as ordered lists."""
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(str(value))
    return grouped


@dataclass
class _Fault:
    """A pending injected failure or stall; ``path=None`` matches every request."""

    path: str | None
    method: str | None
    times: int
    status: int = 500
    code: int = 20500
    message: str = "Internal Server Error"
    seconds: float = 0.0

    def take(self, method: str, path: str) -> bool:
        """Consume one use if this fault applies to the request."""
        if self.times <= 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        if self.path is not None and self.path not in path:
            return False
        self.times -= 1
        return True


def _take(faults: list[_Fault], recorded: RecordedRequest) -> _Fault | None:
    """Consume the first pending fault matching the request (first injected, first used)."""
    for fault in faults:
        if fault.take(recorded.method, recorded.path):
            faults[:] = [f for f in faults if f.times > 0]
            return fault
    return None


class _Unsent(Deliverer):
    """A deliverer that sends nothing: in held mode the tests send the webhooks."""

    def send(
        self, key: str, url: str, params: dict[str, str], method: str = "POST"
    ) -> callbacks.Delivery:
        return callbacks.Delivery(key, url, params, method.upper())


class _Held(Switchboard):
    """A switchboard where no call progresses on its own: no ringing, no TwiML, no
    wait or hold music. Hang-ups, cancels, redirects and kicks still follow the
    simulator's rules (a redirected call leaves its conference, and so on)."""

    def _launch(self, call: Call, script: Script) -> None:
        call.task = None

    async def _play(self, call_sid: str, url: str, method: str) -> None:
        return None


class TwilioDouble:
    """The simulator's REST API, held, on 127.0.0.1; see the module docstring.

    Credentials: ``account_sid`` with ``auth_token``, or an API key with its secret
    from ``api_keys``. State is the simulator's model (``board``); ``calls``,
    ``conferences`` and ``participants`` are snapshots of it as Twilio's REST JSON.
    """

    def __init__(
        self,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        *,
        api_keys: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.host = host
        self.port = 0
        self.board = _Held(account_sid, _Unsent(auth_token), Phones())
        self.rest = RestApi(self.board, account_sid, auth_token, api_keys)
        self.requests: list[RecordedRequest] = []
        self._failures: list[_Fault] = []
        self._delays: list[_Fault] = []
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._closing = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What the app assigns to ``client.api.base_url`` (TWILIO_API_BASE_URL)."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> Self:
        """Start serving on a free port (``__aenter__`` does this)."""
        app = web.Application(middlewares=[self._record, self.rest.middleware])
        app.add_routes(self.rest.routes())
        # A short shutdown timeout: stalled handlers are released by close() anyway.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await self._listen(0)
        return self

    async def close(self) -> None:
        """Release stalled responses and stop the server."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _listen(self, port: int) -> None:
        assert self._runner is not None, "start() the double first"
        site = web.TCPSite(self._runner, self.host, port)
        await site.start()
        self._site = site
        self.port = self._runner.addresses[0][1]

    async def refuse(self) -> None:
        """Twilio unreachable: stop listening (new connections are refused) and drop
        open keep-alive connections so pooled client connections fail too."""
        if self._site is None or self._runner is None:
            return
        await self._site.stop()
        self._site = None
        if self._runner.server is not None:
            for connection in self._runner.server.connections:
                connection.force_close()

    async def accept(self) -> None:
        """Listen again on the same port after ``refuse()``."""
        if self._site is None:
            await self._listen(self.port)

    # -- fault injection ---------------------------------------------------------------------

    def fail_next(
        self,
        path: str | None = None,
        status: int = 500,
        code: int = 20500,
        times: int = 1,
        *,
        message: str = "Internal Server Error",
        method: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests whose path contains ``path`` (any request if
        None) with a Twilio error body, before auth and without touching state."""
        self._failures.append(_Fault(path, method, times, status, code, message))

    def delay_next(
        self, path: str | None, seconds: float, times: int = 1, *, method: str | None = None
    ) -> None:
        """Stall the next ``times`` matching requests for ``seconds``, then handle them
        normally (a slow Twilio's request still takes effect). ``close()`` releases
        stalls early so test teardown stays fast."""
        self._delays.append(_Fault(path, method, times, seconds=seconds))

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        form = _multi((await request.post()).items()) if request.can_read_body else {}
        credentials: BasicAuth | None = None
        with contextlib.suppress(ValueError):
            credentials = BasicAuth.decode(request.headers.get("Authorization", ""))
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            form=form,
            query=_multi(request.query.items()),
            auth_user=credentials.login if credentials else None,
            headers=dict(request.headers),
        )
        self.requests.append(recorded)
        delay = _take(self._delays, recorded)
        if delay is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=delay.seconds)
        failure = _take(self._failures, recorded)
        if failure is not None:
            body = error(failure.status, failure.code, failure.message)
            response: web.StreamResponse = web.json_response(body, status=failure.status)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                recorded.status = exc.status
                raise
        recorded.status = response.status
        return response

    # -- recorded requests -------------------------------------------------------------------

    def find(self, method: str | None = None, path_contains: str = "") -> list[RecordedRequest]:
        """Recorded requests with this method (any if None) whose path contains the text."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and path_contains in r.path
        ]

    def _matching(self, method: str, pattern: str) -> list[RecordedRequest]:
        regex = re.compile(_ACCOUNT + pattern + "$")
        return [r for r in self.requests if r.method == method and regex.match(r.path)]

    def calls_created(self) -> list[RecordedRequest]:
        """``POST Calls.json`` requests."""
        return self._matching("POST", r"/Calls\.json")

    def call_updates(self) -> list[RecordedRequest]:
        """``POST Calls/{sid}.json`` requests (hang-ups, redirects)."""
        return self._matching("POST", r"/Calls/[^/]+\.json")

    def participants_created(self) -> list[RecordedRequest]:
        """``POST Conferences/{x}/Participants.json`` requests."""
        return self._matching("POST", r"/Conferences/[^/]+/Participants\.json")

    def participant_updates(self) -> list[RecordedRequest]:
        """``POST Conferences/{x}/Participants/{y}.json`` requests (hold, mute, coach)."""
        return self._matching("POST", r"/Conferences/[^/]+/Participants/[^/]+\.json")

    def participant_deletes(self) -> list[RecordedRequest]:
        """``DELETE Conferences/{x}/Participants/{y}.json`` requests (kicks)."""
        return self._matching("DELETE", r"/Conferences/[^/]+/Participants/[^/]+\.json")

    def numbers_dialed(self) -> list[RecordedRequest]:
        """``POST Calls.json`` and ``Participants.json`` requests whose ``To`` is a phone
        number (not ``client:``/``sip:``): callbacks and external parties."""
        creates = self.calls_created() + self.participants_created()
        creates.sort(key=self.requests.index)
        return [r for r in creates if is_number(r.param("To") or "client:")]

    def recording_updates(self) -> list[RecordedRequest]:
        """``POST Conferences/{CF}/Recordings/{RE or Twilio.CURRENT}.json`` (pause, resume)."""
        return self._matching("POST", r"/Conferences/[^/]+/Recordings/[^/]+\.json")

    def recording_deletes(self) -> list[RecordedRequest]:
        """``DELETE Recordings/{RE}.json`` requests."""
        return self._matching("DELETE", r"/Recordings/[^/]+\.json")

    def clear_requests(self) -> None:
        """Forget recorded requests (state is kept)."""
        self.requests.clear()

    # -- seeding -----------------------------------------------------------------------------

    def add_call(
        self,
        to: str = "+15550002222",
        from_: str = "+15550001111",
        *,
        sid: str | None = None,
        status: str = "in-progress",
        direction: str = "inbound",
        parent_call_sid: str | None = None,
    ) -> str:
        """Seed a call (e.g. the inbound customer call the app will redirect); its sid."""
        call = Call(to, from_, direction, self.account_sid, status=status)
        call.sid = sid or call.sid
        call.parent_call_sid = parent_call_sid
        if status not in _UNANSWERED:
            call.start_time = call.created
        self.board.calls[call.sid] = call
        return call.sid

    def add_conference(
        self, friendly_name: str, sid: str | None = None, status: str = "in-progress"
    ) -> str:
        """Seed a conference (with no status callback of its own); its CF sid."""
        conference = Conference(friendly_name, self.account_sid, None, status=status)
        conference.sid = sid or conference.sid
        self.board.hub.conferences[conference.sid] = conference
        return conference.sid

    def add_participant(
        self,
        conference_sid: str,
        call_sid: str,
        label: str | None = None,
        *,
        created: datetime | None = None,
        **flags: Any,
    ) -> JSON:
        """Seed a participant (``connected`` unless ``status`` is given); flags are the
        REST JSON's (``muted``, ``hold``, ``coaching``, ``call_sid_to_coach``,
        ``start_conference_on_enter``, ``end_conference_on_exit``). ``conference_sid``
        may be a friendly name. Seeds the call too if unknown. Returns the JSON (a
        snapshot: change state with the helpers, not the dict)."""
        _check_flags(flags)
        conference = self._conference(conference_sid)
        if call_sid not in self.board.calls:
            self.add_call(sid=call_sid)
        spec = JoinSpec(
            conference.friendly_name,
            label=label,
            muted=bool(flags.get("muted", False)),
            start_on_enter=bool(flags.get("start_conference_on_enter", True)),
            end_on_exit=bool(flags.get("end_conference_on_exit", False)),
            coaching=bool(flags.get("coaching", False)),
            call_sid_to_coach=flags.get("call_sid_to_coach"),
        )
        participant = Participant(
            call_sid,
            conference.sid,
            spec,
            muted=spec.muted,
            hold=bool(flags.get("hold", False)),
            coaching=spec.coaching,
            call_sid_to_coach=spec.call_sid_to_coach,
            end_on_exit=spec.end_on_exit,
            status=flags.get("status", "connected"),
        )
        participant.created = participant.updated = created or participant.created
        conference.participants[call_sid] = participant
        self.board.calls[call_sid].conference = conference.friendly_name
        return participant_json(self.account_sid, participant)

    def update_participant(self, conference: str, call_sid_or_label: str, **flags: Any) -> None:
        """Change a seeded participant's flags (as ``add_participant`` takes them)
        without the events a REST update would fire."""
        _check_flags(flags)
        member = self._conference(conference).member(call_sid_or_label)
        if member is None:
            raise KeyError(f"no participant {call_sid_or_label!r} in {conference!r}")
        names = {"end_conference_on_exit": "end_on_exit", "start_conference_on_enter": None}
        for key, value in flags.items():
            if key == "start_conference_on_enter":
                member.spec.start_on_enter = bool(value)
            else:
                setattr(member, names.get(key) or key, value)
        member.updated = datetime.now(UTC)

    def add_recording(
        self, conference: str, status: str = "in-progress", duration: int | None = None
    ) -> Recording:
        """Seed a recording of a conference (a sid or friendly name): recording, or
        ``completed`` with its media (the simulator's tone)."""
        room = self._conference(conference)
        recording = Recording(self.account_sid, room.sid, None, status=status, duration=duration)
        self.board.hub.recordings.recordings[recording.sid] = recording
        return recording

    def add_message(self, call_sid: str, duration: int = 5, status: str = "completed") -> Recording:
        """Seed a ``<Record>`` message of ``call_sid`` (``RecordingSource=RecordVerb``):
        ``completed`` with media of ``duration`` seconds at the Recordings endpoints,
        or ``absent``. Seeds the call too if unknown."""
        if call_sid not in self.board.calls:
            self.add_call(sid=call_sid)
        recording = Recording(
            self.account_sid, None, None, call_sid, "RecordVerb", status=status, duration=duration
        )
        if status == "absent":
            recording.duration, recording.error_code = 0, TOO_SHORT
        self.board.hub.recordings.recordings[recording.sid] = recording
        return recording

    def save(self) -> object:
        """The calls and conferences as they are now, for ``restore``: a test that tries
        many requests from one starting state puts Twilio's side back with the app's."""
        return copy.deepcopy((self.board.calls, self.board.hub.conferences))

    def restore(self, saved: object) -> None:
        """Put the calls and conferences back as ``save`` found them."""
        calls, conferences = copy.deepcopy(saved)  # type: ignore[misc]
        self.board.calls.clear()
        self.board.calls.update(calls)
        self.board.hub.conferences.clear()
        self.board.hub.conferences.update(conferences)

    def set_created(self, sid: str, when: datetime) -> None:
        """Back-date a call or conference (its ``date_created``), e.g. to order them."""
        found = self.board.calls.get(sid) or self.board.hub.conferences.get(sid)
        if found is None:
            raise KeyError(sid)
        found.created = when

    def set_call_status(self, call_sid: str, status: str) -> None:
        """Move a call along (the double never does this on its own)."""
        call = self.board.calls[call_sid]
        call.status = status
        call.updated = datetime.now(UTC)

    def set_conference_status(self, sid_or_name: str, status: str) -> None:
        """E.g. ``init`` -> ``in-progress`` once the test decides someone has joined."""
        conference = self._conference(sid_or_name)
        conference.status = status
        conference.updated = datetime.now(UTC)

    def _conference(self, sid_or_name: str) -> Conference:
        conference = self.board.hub.find(sid_or_name)
        if conference is None:
            raise KeyError(f"no conference {sid_or_name!r}; add_conference() it first")
        return conference

    # -- state as Twilio's REST JSON ---------------------------------------------------------

    @property
    def calls(self) -> dict[str, JSON]:
        """Every call by sid."""
        return {sid: call_json(call) for sid, call in self.board.calls.items()}

    @property
    def conferences(self) -> dict[str, JSON]:
        """Every conference by sid, ended ones too."""
        return {sid: conference_json(c) for sid, c in self.board.hub.conferences.items()}

    @property
    def participants(self) -> dict[str, dict[str, JSON]]:
        """Conference sid -> call sid -> participant, for the participants still in."""
        return {
            sid: {call: participant_json(self.account_sid, p) for call, p in c.participants.items()}
            for sid, c in self.board.hub.conferences.items()
        }

    def call(self, sid: str) -> JSON | None:
        """A call's JSON, or None."""
        call = self.board.calls.get(sid)
        return call_json(call) if call is not None else None

    def conference(self, sid_or_name: str) -> JSON | None:
        """A conference by CF sid, or the newest live one with that friendly name."""
        conference = self.board.hub.find(sid_or_name)
        return conference_json(conference) if conference is not None else None

    def participant(self, conference: str, call_sid_or_label: str) -> JSON | None:
        """A participant still in the conference (a sid or friendly name), by call sid
        or label."""
        found = self.board.hub.find(conference)
        member = found.member(call_sid_or_label) if found is not None else None
        return participant_json(self.account_sid, member) if member is not None else None


# -- the webhook driver ------------------------------------------------------------------------


@dataclass
class Delivery:
    """One prepared webhook request: the absolute URL Twilio would call and its form."""

    url: str
    params: dict[str, str]

    @property
    def path(self) -> str:
        parts = urlsplit(self.url.split("#", 1)[0])
        return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass
class ConferenceTrack:
    """A conference as the driver reports it: its sid and its SequenceNumbers."""

    sid: str
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


class TwilioVoice:
    """Twilio's webhooks for one test, sent through ``client`` to the app at
    ``base_url`` (its PUBLIC_BASE_URL); see the module docstring. ``settle`` waits
    until the app has finished the background work the last webhook started."""

    # Where the app asks conference callbacks to go, with its connection overrides.
    CONFERENCE_STATUS = "/conference/status#rc=3&rp=5xx,ct,rt"

    def __init__(
        self,
        client: Any,
        double: TwilioDouble,
        base_url: str,
        *,
        settle: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.client = client
        self.double = double
        self.base_url = base_url
        self.account_sid = double.account_sid
        self.token = double.auth_token
        self.conferences: dict[str, ConferenceTrack] = {}
        self.call_seq: dict[str, itertools.count[int]] = {}
        self.clock = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
        self._settle = settle

    # -- sending ---------------------------------------------------------------------------

    async def send(self, delivery: Delivery, signature: str | None = None) -> Any:
        """POST the delivery, signed over its URL without the override fragment."""
        url = delivery.url.split("#", 1)[0]
        headers = {SIGNATURE_HEADER: signature or sign(url, delivery.params, self.token)}
        return await self.client.post(delivery.path, form=delivery.params, headers=headers)

    async def settle(self) -> None:
        """Wait until the app has finished what the webhooks so far started."""
        if self._settle is not None:
            await self._settle()

    def tick(self) -> str:
        """The next Timestamp: one second after the last."""
        self.clock += timedelta(seconds=1)
        return rfc2822(self.clock)

    # -- the customer's call -----------------------------------------------------------------

    def incoming(self, sid: str, from_number: str = "+15557654321") -> Delivery:
        """The customer's call to the number reaching the Voice URL."""
        params = voice_params(
            self.account_sid, sid, "ringing", "inbound", from_number, TWILIO_NUMBER
        )
        return Delivery(self.base_url + VOICE_PATH, params)

    async def call_in(self, from_number: str = "+15557654321") -> tuple[str, ElementTree.Element]:
        """A customer calls; returns the CallSid and the app's TwiML."""
        sid = call_sid()
        response = await self.send(self.incoming(sid, from_number))
        assert response.status_code == 200, await response.get_data(as_text=True)
        return sid, ElementTree.fromstring(await response.get_data(as_text=True))

    # -- conference callbacks ----------------------------------------------------------------

    def track(self, name: str) -> ConferenceTrack:
        """The conference ``name`` as reported so far (created ``init`` in the double)."""
        if name not in self.conferences:
            self.conferences[name] = ConferenceTrack(conference_sid())
            self.double.add_conference(name, sid=self.conferences[name].sid, status="init")
        return self.conferences[name]

    def conference_event(
        self, name: str, event: str, call: str | None = None, **fields: Any
    ) -> Delivery:
        """A conference callback. With ``call``, a participant event: Twilio's
        participant fields default to a plain participant and ``fields`` (Twilio's
        names, e.g. ``Hold=True``, ``ParticipantLabel="agent"``) override them."""
        track = self.track(name)
        params = conference_params(
            self.account_sid, track.sid, name, event, next(track.seq), self.tick()
        )
        if call is not None:
            params.update(participant_params(call))
        params.update({k: flag(v) if isinstance(v, bool) else str(v) for k, v in fields.items()})
        self._mirror(track, event, call, fields)
        return Delivery(self.base_url + self.CONFERENCE_STATUS, params)

    def _mirror(self, track: ConferenceTrack, event: str, call: str | None, fields: dict) -> None:
        """Keep the REST double's picture in step, so the app's REST calls find things."""
        if event == "conference-start":
            self.double.set_conference_status(track.sid, "in-progress")
        elif event == "participant-join" and call is not None:
            label = fields.get("ParticipantLabel")
            self.double.add_participant(track.sid, call, label=label)
        elif event == "conference-end":
            self.double.set_conference_status(track.sid, "completed")

    async def event(self, name: str, event: str, call: str | None = None, **fields: Any) -> None:
        """Send a conference callback; the app must answer 204."""
        response = await self.send(self.conference_event(name, event, call, **fields))
        assert response.status_code == 204, await response.get_data(as_text=True)

    # -- recordings ----------------------------------------------------------------------------

    # Where the app asks recording callbacks to go (its conference in the query).
    RECORDING_STATUS = "/conference/recording"

    def recording_event(
        self, name: str, status: str, recording: Recording | None = None, **fields: Any
    ) -> tuple[Recording, Delivery]:
        """A recordingStatusCallback of conference ``name``'s recording: seeded in the
        double if ``recording`` is None, moved to ``status``; ``fields`` override
        Twilio's parameters (e.g. ``RecordingDuration=7``)."""
        track = self.track(name)
        if recording is None:
            recording = self.double.add_recording(track.sid, status)
        recording.status = status
        duration = fields.get("RecordingDuration")
        if duration is not None and str(duration).isdigit():
            recording.duration = int(duration)
        params = status_params(recording)
        params.update({k: str(v) for k, v in fields.items()})
        url = f"{self.base_url}{self.RECORDING_STATUS}?conference={name}#rc=3&rp=5xx,ct,rt"
        return recording, Delivery(url, params)

    async def recording(
        self, name: str, status: str, recording: Recording | None = None, **fields: Any
    ) -> Recording:
        """Send a recordingStatusCallback (see ``recording_event``); the app must answer 204."""
        recording, delivery = self.recording_event(name, status, recording, **fields)
        response = await self.send(delivery)
        assert response.status_code == 204, await response.get_data(as_text=True)
        return recording

    # -- calls the app placed ----------------------------------------------------------------

    def _voice(self, create: RecordedRequest, sid: str, status: str) -> dict[str, str]:
        to = (create.param("To") or "").split("?", 1)[0]
        return voice_params(
            self.account_sid, sid, status, "outbound-api", create.param("From") or "", to
        )

    def call_status(
        self, create: RecordedRequest, sid: str, status: str, **fields: Any
    ) -> Delivery:
        """A call-progress callback for a call the app created (``create`` is its
        recorded ``POST Calls.json`` or ``Participants.json``); ``fields`` add or
        override parameters (e.g. ``AnsweredBy="machine_start"``)."""
        seq = self.call_seq.setdefault(sid, itertools.count(0))
        params = progress_params(self._voice(create, sid, status), status, next(seq), self.tick())
        params.update({k: str(v) for k, v in fields.items()})
        return Delivery(create.param("StatusCallback") or "", params)

    def answer(self, create: RecordedRequest, sid: str) -> Delivery:
        """The answered call fetching its ``Url``."""
        return Delivery(create.param("Url") or "", self._voice(create, sid, "in-progress"))

    def created_sid(self, create: RecordedRequest) -> str:
        """The CallSid the double answered the create request with."""
        to = create.param("To")
        matches = [c.sid for c in self.double.board.calls.values() if c.to == to]
        assert matches, f"no call created to {to}"
        return matches[-1]

    async def ring(self, create: RecordedRequest) -> str:
        """The dialed softphone rings (initiated, ringing); returns the leg's CallSid."""
        sid = self.created_sid(create)
        for status in ("initiated", "ringing"):
            response = await self.send(self.call_status(create, sid, status))
            assert response.status_code == 204
        return sid

    async def pick_up(self, create: RecordedRequest, sid: str) -> ElementTree.Element:
        """The softphone answers: its TwiML is fetched, then ``in-progress`` is reported."""
        response = await self.send(self.answer(create, sid))
        assert response.status_code == 200
        twiml = ElementTree.fromstring(await response.get_data(as_text=True))
        assert (await self.send(self.call_status(create, sid, "in-progress"))).status_code == 204
        return twiml

    async def decline(self, create: RecordedRequest, sid: str, status: str = "no-answer") -> None:
        """The leg ends unanswered (``no-answer``, ``busy``, ``canceled``...)."""
        response = await self.send(self.call_status(create, sid, status))
        assert response.status_code == 204

    # -- people at phone numbers ---------------------------------------------------------------

    async def person_answers(self, create: RecordedRequest, answered_by: str | None = None) -> str:
        """The number the app dialed (``create``: its recorded Participants/Calls create)
        rings and is answered: ``initiated``, ``ringing``, ``in-progress`` (with
        ``AnsweredBy`` when given, as with ``MachineDetection``). The double's call is
        ``in-progress``; report its ``participant-join`` with ``event``. Its CallSid."""
        sid = await self.ring(create)
        extra = {"AnsweredBy": answered_by} if answered_by else {}
        response = await self.send(self.call_status(create, sid, "in-progress", **extra))
        assert response.status_code == 204, await response.get_data(as_text=True)
        call = self.double.board.calls[sid]
        call.status, call.answered_by = "in-progress", answered_by
        call.start_time = call.start_time or datetime.now(UTC)
        return sid

    async def person_misses(self, create: RecordedRequest, status: str = "no-answer") -> str:
        """The dialed number is ``busy``, ``no-answer`` (rings out) or ``failed``: the
        progress callbacks say so and the double's call ends so. Its CallSid."""
        sid = self.created_sid(create)
        if status != "failed":
            await self.ring(create)
        else:
            first = await self.send(self.call_status(create, sid, "initiated"))
            assert first.status_code == 204
        await self.decline(create, sid, status)
        self.double.set_call_status(sid, status)
        return sid

    # -- <Gather> and <Record> -------------------------------------------------------------------

    def _url(self, url: str) -> str:
        return self.base_url + url if url.startswith("/") else url

    def _inbound(self, sid: str, from_number: str, status: str = "in-progress") -> dict[str, str]:
        return voice_params(self.account_sid, sid, status, "inbound", from_number, TWILIO_NUMBER)

    async def gathered(
        self, action: str, sid: str, digits: str, from_number: str = "+15557654321"
    ) -> ElementTree.Element:
        """The caller pressed ``digits`` at a ``<Gather>``: its ``action`` (a path or URL)
        is requested with ``Digits``; returns the app's TwiML."""
        params = {**self._inbound(sid, from_number), "Digits": digits}
        response = await self.send(Delivery(self._url(action), params))
        assert response.status_code == 200, await response.get_data(as_text=True)
        return ElementTree.fromstring(await response.get_data(as_text=True))

    async def message_left(
        self,
        action: str,
        sid: str,
        recording: Recording,
        digits: str = "#",
        from_number: str = "+15557654321",
    ) -> ElementTree.Element:
        """A ``<Record>`` ended (``digits``: ``#`` or ``hangup``): its ``action`` gets
        RecordingUrl (no extension), RecordingDuration, RecordingSid, Digits; returns
        the app's TwiML. ``recording`` from ``TwilioDouble.add_message``."""
        status = "completed" if digits == "hangup" else "in-progress"
        params = {
            **self._inbound(sid, from_number, status),
            "RecordingUrl": PUBLIC_API + recording.path,
            "RecordingDuration": str(recording.duration or 0),
            "RecordingSid": recording.sid,
            "Digits": digits,
        }
        response = await self.send(Delivery(self._url(action), params))
        assert response.status_code == 200, await response.get_data(as_text=True)
        return ElementTree.fromstring(await response.get_data(as_text=True))

    def message_event(self, url: str, recording: Recording, **fields: Any) -> Delivery:
        """The ``<Record>``'s recordingStatusCallback (``RecordingSource=RecordVerb``,
        ``CallSid``, the recording's status: ``completed`` or ``absent``) to ``url`` (a
        path or URL, connection overrides allowed); ``fields`` override parameters."""
        params = status_params(recording)
        params.update({k: str(v) for k, v in fields.items()})
        return Delivery(self._url(url), params)

    async def message_status(self, url: str, recording: Recording, **fields: Any) -> Any:
        """Send ``message_event``; returns the app's response (the test checks it)."""
        return await self.send(self.message_event(url, recording, **fields))


def conference_of(twiml: ElementTree.Element) -> ElementTree.Element:
    """The ``<Dial><Conference>`` of a TwiML answer."""
    conference = twiml.find("./Dial/Conference")
    assert conference is not None, ElementTree.tostring(twiml)
    return conference
