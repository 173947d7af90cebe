"""A test double of Twilio's REST API (``api.twilio.com/2010-04-01``) for Calls, Conferences
and Participants.

Why a real HTTP server rather than mocks: the app talks to Twilio through the real ``twilio``
async client, so serialisation (``StatusCallbackEvent`` repeated, booleans as ``true``/``false``,
labels and friendly names in paths), Basic auth, status codes and error bodies are all exercised
exactly as in production. The app only needs ``client.api.base_url = double.base_url``.

Scope and fidelity:

* The double keeps a small in-memory picture (calls, conferences, participants) so that
  operations on known objects succeed and unknown ones get Twilio's 404 body (code 20404).
  Nothing progresses on its own: no call rings, no webhook is sent. Tests drive state with the
  seeding helpers (``add_call``, ``add_conference``, ``add_participant``, ``set_*_status``).
* Error codes 20003 (auth), 20004 (method), 20404 (not found) and 20500 are Twilio's. Codes for
  validation errors (21201, 21603, 21205, 21220, 20001) are representative, not exhaustive.
* Every request is recorded in arrival order in ``requests``, including ones that were refused
  (bad auth, injected faults), so tests can assert on retries too.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode

from aiohttp import BasicAuth, web
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

API_VERSION = "2010-04-01"
DEFAULT_PAGE_SIZE = 50

JSON = dict[str, Any]

_SID_RE = re.compile(r"^(?P<prefix>[A-Z]{2})[0-9a-f]{32}$")
_ACCOUNT = r"^/2010-04-01/Accounts/(?P<account>[^/]+)"
_ENDED_CALL_STATUSES = frozenset({"completed", "canceled", "failed", "busy", "no-answer"})
_PARTICIPANT_FLAGS = frozenset(
    {
        "muted",
        "hold",
        "coaching",
        "call_sid_to_coach",
        "start_conference_on_enter",
        "end_conference_on_exit",
        "status",
        "queue_time",
    }
)
_BEEP_VALUES = frozenset({"true", "false", "onEnter", "onExit"})


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two-letter prefix and 32 lowercase hex digits."""
    return prefix + uuid.uuid4().hex


def sign(url: str, params: Mapping[str, Any] | Sequence[tuple[str, str]], token: str) -> str:
    """X-Twilio-Signature for a webhook POST to ``url`` with form ``params``.

    Uses the library's own algorithm so tests sign exactly as the app validates. ``params`` may
    be a dict (values may be lists for repeated keys) or a list of pairs; both become a werkzeug
    ``MultiDict`` so that multi-valued keys are handled like Quart's ``request.form``.
    """
    form = MultiDict(list(params) if not isinstance(params, Mapping) else params)
    return RequestValidator(token).compute_signature(url, form)


def _now() -> str:
    """Twilio's RFC 2822 timestamp format, e.g. ``Tue, 31 Aug 2010 20:36:28 +0000``."""
    return format_datetime(datetime.now(UTC).replace(microsecond=0))


def _multi(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Group pairs by key, keeping repeated keys (``StatusCallbackEvent``) as ordered lists."""
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    return grouped


@dataclass
class RecordedRequest:
    """One request as the double received it; ``status`` is filled in once it is answered."""

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


class _ApiError(Exception):
    """Raised by handlers; turned into Twilio's legacy error JSON by the dispatcher."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_body(status: int, code: int, message: str) -> JSON:
    """Twilio's legacy error shape (no ``type``/``title``, so the library raises
    ``TwilioRestException`` rather than ``TwilioServiceException``)."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _json(body: JSON, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, content_type="application/json")


def _not_found(path: str) -> _ApiError:
    return _ApiError(404, 20404, f"The requested resource {path} was not found")


Handler = Callable[[RecordedRequest, dict[str, str]], web.Response]


class TwilioDouble:
    """An aiohttp server on 127.0.0.1 that answers like api.twilio.com and records requests.

    Credentials: ``account_sid`` with ``auth_token``, or an API key (``SK...``) with its secret
    from ``api_keys``. An ``SK`` key that is not in ``api_keys`` is accepted with the auth token,
    so a double built with only ``(account_sid, auth_token)`` serves either style of client.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        api_keys: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.api_keys = dict(api_keys or {})
        self.host = host
        self.port = 0
        self.requests: list[RecordedRequest] = []
        self.calls: dict[str, JSON] = {}
        self.conferences: dict[str, JSON] = {}
        # conference sid -> call sid -> participant JSON (active participants only)
        self.participants: dict[str, dict[str, JSON]] = {}
        self._failures: list[_Fault] = []
        self._delays: list[_Fault] = []
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._closing = asyncio.Event()
        conf = r"/Conferences/(?P<conf>[^/]+)"
        part = conf + r"/Participants/(?P<part>[^/]+)\.json"
        table: list[tuple[str, str, Handler]] = [
            ("POST", r"/Calls\.json", self._create_call),
            ("GET", r"/Calls\.json", self._list_calls),
            ("GET", r"/Calls/(?P<call>[^/]+)\.json", self._fetch_call),
            ("POST", r"/Calls/(?P<call>[^/]+)\.json", self._update_call),
            ("GET", r"/Conferences\.json", self._list_conferences),
            ("GET", conf + r"\.json", self._fetch_conference),
            ("POST", conf + r"\.json", self._update_conference),
            ("GET", conf + r"/Participants\.json", self._list_participants),
            ("POST", conf + r"/Participants\.json", self._create_participant),
            ("GET", part, self._fetch_participant),
            ("POST", part, self._update_participant),
            ("DELETE", part, self._delete_participant),
        ]
        self._routes = [(m, re.compile(_ACCOUNT + p + "$"), h) for m, p, h in table]

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What the app assigns to ``client.api.base_url``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> Self:
        """Start serving on a free port (``__aenter__`` does this)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
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
        """Simulate Twilio being unreachable: stop listening (new connections are refused) and
        drop open keep-alive connections so pooled client connections fail too."""
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
        None) with a Twilio error, without touching state."""
        self._failures.append(_Fault(path, method, times, status, code, message))

    def delay_next(
        self, path: str | None, seconds: float, times: int = 1, *, method: str | None = None
    ) -> None:
        """Stall the next ``times`` matching responses for ``seconds`` before handling them
        normally (so the request still takes effect, as a slow Twilio's would). ``close()``
        releases stalls early so test teardown stays fast."""
        self._delays.append(_Fault(path, method, times, seconds=seconds))

    # -- seeding and state -------------------------------------------------------------------

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
        """Seed a call (e.g. the inbound customer call the app will redirect); returns its sid."""
        call = self._new_call(to, from_, sid=sid, status=status, direction=direction)
        call["parent_call_sid"] = parent_call_sid
        return call["sid"]

    def add_conference(
        self, friendly_name: str, sid: str | None = None, status: str = "in-progress"
    ) -> str:
        """Seed a conference; returns its CF sid."""
        sid = sid or new_sid("CF")
        now = _now()
        self.conferences[sid] = {
            "account_sid": self.account_sid,
            "date_created": now,
            "date_updated": now,
            "api_version": API_VERSION,
            "friendly_name": friendly_name,
            "region": "us1",
            "sid": sid,
            "status": status,
            "uri": f"{self._account_path()}/Conferences/{sid}.json",
            "subresource_uris": {
                "participants": f"{self._account_path()}/Conferences/{sid}/Participants.json",
                "recordings": f"{self._account_path()}/Conferences/{sid}/Recordings.json",
            },
            "reason_conference_ended": None,
            "call_sid_ending_conference": None,
        }
        self.participants[sid] = {}
        return sid

    def add_participant(
        self, conference_sid: str, call_sid: str, label: str | None = None, **flags: Any
    ) -> JSON:
        """Seed an active participant (status ``connected`` unless given). ``conference_sid``
        may also be a friendly name. Also seeds the call if unknown. Returns the JSON."""
        unknown = set(flags) - _PARTICIPANT_FLAGS
        if unknown:
            raise TypeError(f"unknown participant flags: {sorted(unknown)}")
        conference = self.conference(conference_sid)
        if conference is None:
            raise KeyError(f"no conference {conference_sid!r}; add_conference() it first")
        if call_sid not in self.calls:
            self.add_call(sid=call_sid)
        participant = self._new_participant(conference["sid"], call_sid, label)
        participant.update({"status": "connected", **flags})
        return participant

    def set_call_status(self, call_sid: str, status: str) -> None:
        """Move a call along (the double never does this on its own)."""
        self.calls[call_sid]["status"] = status
        self.calls[call_sid]["date_updated"] = _now()

    def set_conference_status(self, sid_or_name: str, status: str) -> None:
        """E.g. ``init`` -> ``in-progress`` once the test decides someone has joined."""
        conference = self.conference(sid_or_name)
        if conference is None:
            raise KeyError(sid_or_name)
        conference["status"] = status
        conference["date_updated"] = _now()

    def call(self, sid: str) -> JSON | None:
        """Current JSON of a call, or None."""
        return self.calls.get(sid)

    def conference(self, sid_or_name: str) -> JSON | None:
        """A conference by CF sid, or the newest non-completed one with that friendly name."""
        if sid_or_name in self.conferences:
            return self.conferences[sid_or_name]
        named = [
            c
            for c in self.conferences.values()
            if c["friendly_name"] == sid_or_name and c["status"] != "completed"
        ]
        return named[-1] if named else None

    def participant(self, conference: str, call_sid_or_label: str) -> JSON | None:
        """An active participant by call sid or label; ``conference`` is a sid or name."""
        found = self.conference(conference)
        if found is None:
            return None
        members = self.participants.get(found["sid"], {})
        if call_sid_or_label in members:
            return members[call_sid_or_label]
        for participant in members.values():
            if participant["label"] == call_sid_or_label:
                return participant
        return None

    # -- recorded-request helpers ------------------------------------------------------------

    def find(self, method: str | None = None, path_contains: str = "") -> list[RecordedRequest]:
        """Recorded requests with this method (any if None) whose path contains the text."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and path_contains in r.path
        ]

    def _matching(self, method: str, pattern: str) -> list[RecordedRequest]:
        regex = re.compile(_ACCOUNT + pattern + r"$")
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

    def clear_requests(self) -> None:
        """Forget recorded requests (state is kept)."""
        self.requests.clear()

    # -- dispatch ----------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        form = _multi((await request.post()).items()) if request.can_read_body else {}
        header = request.headers.get("Authorization")
        credentials: BasicAuth | None = None
        if header:
            with contextlib.suppress(ValueError):
                credentials = BasicAuth.decode(header)
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            form={k: [str(v) for v in vs] for k, vs in form.items()},
            query=_multi(request.query.items()),
            auth_user=credentials.login if credentials else None,
            headers=dict(request.headers),
        )
        self.requests.append(recorded)
        try:
            response = await self._respond(recorded, credentials)
        except _ApiError as error:
            response = _json(error_body(error.status, error.code, error.message), error.status)
            if error.status == 401:
                response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
        recorded.status = response.status
        return response

    async def _respond(
        self, recorded: RecordedRequest, credentials: BasicAuth | None
    ) -> web.Response:
        delay = _take(self._delays, recorded)
        if delay is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=delay.seconds)
        failure = _take(self._failures, recorded)
        if failure is not None:
            raise _ApiError(failure.status, failure.code, failure.message)
        if not self._authorized(credentials):
            raise _ApiError(401, 20003, "Authenticate")
        path_matched = False
        for method, regex, handler in self._routes:
            match = regex.match(recorded.path)
            if match is None:
                continue
            path_matched = True
            if method != recorded.method:
                continue
            if match["account"] != self.account_sid:
                raise _not_found(recorded.path)
            return handler(recorded, match.groupdict())
        if path_matched:
            raise _ApiError(405, 20004, "Method not allowed")
        raise _not_found(recorded.path)

    def _authorized(self, credentials: BasicAuth | None) -> bool:
        if credentials is None:
            return False
        if credentials.login == self.account_sid:
            return credentials.password == self.auth_token
        if credentials.login.startswith("SK"):
            secret = self.api_keys.get(credentials.login, self.auth_token)
            return credentials.password == secret
        return False

    # -- helpers for handlers ----------------------------------------------------------------

    def _account_path(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}"

    @staticmethod
    def _bool(recorded: RecordedRequest, name: str) -> bool | None:
        value = recorded.param(name)
        if value is None:
            return None
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _ApiError(400, 20001, f"{name} must be true or false, got {value!r}")

    def _page(self, recorded: RecordedRequest, key: str, items: list[JSON]) -> JSON:
        """A list page with Twilio's meta keys; ``next_page_uri`` is null on the last page."""
        try:
            size = int(recorded.param("PageSize") or DEFAULT_PAGE_SIZE)
            number = int(recorded.param("Page") or 0)
        except ValueError as error:
            raise _ApiError(400, 20001, "Page and PageSize must be integers") from error
        size = max(1, min(size, 1000))
        start = number * size
        chunk = items[start : start + size]
        query = {k: v[0] for k, v in recorded.query.items() if k not in ("Page", "PageToken")}
        query["PageSize"] = str(size)

        def uri(page: int) -> str:
            return f"{recorded.path}?{urlencode({**query, 'Page': str(page)})}"

        has_next = start + size < len(items)
        return {
            key: chunk,
            "first_page_uri": uri(0),
            "next_page_uri": (uri(number + 1) + f"&PageToken=PA{number + 1}") if has_next else None,
            "previous_page_uri": uri(number - 1) if number > 0 else None,
            "page": number,
            "page_size": size,
            "start": start,
            "end": start + max(len(chunk) - 1, 0),
            "uri": uri(number),
        }

    def _new_call(
        self, to: str, from_: str, *, sid: str | None, status: str, direction: str
    ) -> JSON:
        sid = sid or new_sid("CA")
        now = _now()
        base = f"{self._account_path()}/Calls/{sid}"
        call: JSON = {
            "sid": sid,
            "date_created": now,
            "date_updated": now,
            "parent_call_sid": None,
            "account_sid": self.account_sid,
            "to": to,
            "to_formatted": to,
            "from": from_,
            "from_formatted": from_,
            "phone_number_sid": None,
            "status": status,
            "start_time": None,
            "end_time": None,
            "duration": None,
            "price": None,
            "price_unit": "USD",
            "direction": direction,
            "answered_by": None,
            "api_version": API_VERSION,
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": None,
            "queue_time": "0",
            "trunk_sid": None,
            "uri": f"{base}.json",
            "subresource_uris": {
                "notifications": f"{base}/Notifications.json",
                "recordings": f"{base}/Recordings.json",
                "payments": f"{base}/Payments.json",
                "events": f"{base}/Events.json",
                "siprec": f"{base}/Siprec.json",
                "streams": f"{base}/Streams.json",
                "transcriptions": f"{base}/Transcriptions.json",
                "user_defined_message_subscriptions": (
                    f"{base}/UserDefinedMessageSubscriptions.json"
                ),
                "user_defined_messages": f"{base}/UserDefinedMessages.json",
            },
        }
        self.calls[sid] = call
        return call

    def _new_participant(self, conference_sid: str, call_sid: str, label: str | None) -> JSON:
        now = _now()
        uri = f"{self._account_path()}/Conferences/{conference_sid}/Participants/{call_sid}.json"
        participant: JSON = {
            "account_sid": self.account_sid,
            "call_sid": call_sid,
            "label": label,
            "call_sid_to_coach": None,
            "coaching": False,
            "conference_sid": conference_sid,
            "date_created": now,
            "date_updated": now,
            "end_conference_on_exit": False,
            "muted": False,
            "hold": False,
            "start_conference_on_enter": True,
            "status": "queued",
            "queue_time": "0",
            "uri": uri,
        }
        self.participants.setdefault(conference_sid, {})[call_sid] = participant
        return participant

    def _leave_conferences(self, call_sid: str) -> None:
        """A call that ends or is redirected stops being a participant anywhere."""
        for members in self.participants.values():
            members.pop(call_sid, None)

    def _conference_or_404(self, segment: str, path: str) -> JSON:
        conference = self.conference(segment)
        if conference is None:
            raise _not_found(path)
        return conference

    def _participant_or_404(self, recorded: RecordedRequest, match: dict[str, str]) -> JSON:
        participant = self.participant(match["conf"], match["part"])
        if participant is None:
            raise _not_found(recorded.path)
        return participant

    @staticmethod
    def _require(recorded: RecordedRequest) -> tuple[str, str]:
        to, from_ = recorded.param("To"), recorded.param("From")
        if not to:
            raise _ApiError(400, 21201, "No 'To' number is specified")
        if not from_:
            raise _ApiError(400, 21603, "A 'From' phone number is required.")
        return to, from_

    # -- Calls -------------------------------------------------------------------------------

    def _create_call(self, recorded: RecordedRequest, match: dict[str, str]) -> web.Response:
        to, from_ = self._require(recorded)
        if not any(recorded.param(name) for name in ("Url", "Twiml", "ApplicationSid")):
            raise _ApiError(400, 21205, "Url parameter is required.")
        call = self._new_call(to, from_, sid=None, status="queued", direction="outbound-api")
        return _json(call, 201)

    def _list_calls(self, recorded: RecordedRequest, match: dict[str, str]) -> web.Response:
        filters = {
            "To": "to",
            "From": "from",
            "Status": "status",
            "ParentCallSid": "parent_call_sid",
        }
        calls = [
            call
            for call in self.calls.values()
            if all(
                recorded.param(name) is None or call[key] == recorded.param(name)
                for name, key in filters.items()
            )
        ]
        return _json(self._page(recorded, "calls", calls))

    def _fetch_call(self, recorded: RecordedRequest, match: dict[str, str]) -> web.Response:
        call = self.calls.get(match["call"])
        if call is None:
            raise _not_found(recorded.path)
        return _json(call)

    def _update_call(self, recorded: RecordedRequest, match: dict[str, str]) -> web.Response:
        call = self.calls.get(match["call"])
        if call is None:
            raise _not_found(recorded.path)
        status = recorded.param("Status")
        redirect = recorded.param("Url") or recorded.param("Twiml")
        if status not in (None, "canceled", "completed"):
            raise _ApiError(400, 20001, f"Status must be canceled or completed, got {status!r}")
        if status == "canceled" and call["status"] in ("queued", "ringing"):
            # Twilio ignores `canceled` for a call that is already in progress.
            call["status"] = "canceled"
        elif status == "completed" and call["status"] not in _ENDED_CALL_STATUSES:
            call["status"] = "completed"
        elif status is None and redirect:
            if call["status"] in _ENDED_CALL_STATUSES:
                raise _ApiError(400, 21220, "Call is not in-progress. Cannot redirect.")
            self._leave_conferences(call["sid"])
        if call["status"] in _ENDED_CALL_STATUSES:
            call["end_time"] = call["end_time"] or _now()
            self._leave_conferences(call["sid"])
        call["date_updated"] = _now()
        return _json(call)

    # -- Conferences -------------------------------------------------------------------------

    def _list_conferences(self, recorded: RecordedRequest, match: dict[str, str]) -> web.Response:
        name, status = recorded.param("FriendlyName"), recorded.param("Status")
        conferences = [
            c
            for c in self.conferences.values()
            if (name is None or c["friendly_name"] == name)
            and (status is None or c["status"] == status)
        ]
        return _json(self._page(recorded, "conferences", conferences))

    def _fetch_conference(self, recorded: RecordedRequest, match: dict[str, str]) -> web.Response:
        # Fetch and update need the CF sid; a friendly name is a 404 as on Twilio.
        conference = self.conferences.get(match["conf"])
        if conference is None:
            raise _not_found(recorded.path)
        return _json(conference)

    def _update_conference(self, recorded: RecordedRequest, match: dict[str, str]) -> web.Response:
        conference = self.conferences.get(match["conf"])
        if conference is None:
            raise _not_found(recorded.path)
        status = recorded.param("Status")
        if status not in (None, "completed"):
            raise _ApiError(400, 20001, f"Status must be completed, got {status!r}")
        if status == "completed" and conference["status"] != "completed":
            conference["status"] = "completed"
            conference["reason_conference_ended"] = "conference-ended-via-api"
            self.participants[conference["sid"]] = {}
        conference["date_updated"] = _now()
        return _json(conference)

    # -- Participants ------------------------------------------------------------------------

    def _list_participants(self, recorded: RecordedRequest, match: dict[str, str]) -> web.Response:
        conference = self._conference_or_404(match["conf"], recorded.path)
        filters = {name: self._bool(recorded, name) for name in ("Muted", "Hold", "Coaching")}
        members = [
            p
            for p in self.participants.get(conference["sid"], {}).values()
            if all(value is None or p[name.lower()] is value for name, value in filters.items())
        ]
        return _json(self._page(recorded, "participants", members))

    def _create_participant(self, recorded: RecordedRequest, match: dict[str, str]) -> web.Response:
        to, from_ = self._require(recorded)
        segment = match["conf"]
        conference = self.conference(segment)
        if conference is None:
            if _SID_RE.match(segment):
                raise _not_found(recorded.path)
            # A friendly name with no live conference starts a new one, as on Twilio.
            conference = self.conferences[self.add_conference(segment, status="init")]
        beep = recorded.param("Beep")
        if beep is not None and beep not in _BEEP_VALUES:
            raise _ApiError(400, 20001, f"Beep must be one of {sorted(_BEEP_VALUES)}")
        flags = {
            "muted": self._bool(recorded, "Muted"),
            "coaching": self._bool(recorded, "Coaching"),
            "start_conference_on_enter": self._bool(recorded, "StartConferenceOnEnter"),
            "end_conference_on_exit": self._bool(recorded, "EndConferenceOnExit"),
            "call_sid_to_coach": recorded.param("CallSidToCoach"),
        }
        call = self._new_call(to, from_, sid=None, status="queued", direction="outbound-api")
        participant = self._new_participant(conference["sid"], call["sid"], recorded.param("Label"))
        participant.update({k: v for k, v in flags.items() if v is not None})
        return _json(participant, 201)

    def _fetch_participant(self, recorded: RecordedRequest, match: dict[str, str]) -> web.Response:
        return _json(self._participant_or_404(recorded, match))

    def _update_participant(self, recorded: RecordedRequest, match: dict[str, str]) -> web.Response:
        participant = self._participant_or_404(recorded, match)
        changes = {
            "muted": self._bool(recorded, "Muted"),
            "hold": self._bool(recorded, "Hold"),
            "coaching": self._bool(recorded, "Coaching"),
            "end_conference_on_exit": self._bool(recorded, "EndConferenceOnExit"),
            "call_sid_to_coach": recorded.param("CallSidToCoach"),
        }
        participant.update({k: v for k, v in changes.items() if v is not None})
        participant["date_updated"] = _now()
        return _json(participant)

    def _delete_participant(self, recorded: RecordedRequest, match: dict[str, str]) -> web.Response:
        participant = self._participant_or_404(recorded, match)
        # The call itself is left alone: on Twilio it moves on to its next TwiML verb.
        self.participants[participant["conference_sid"]].pop(participant["call_sid"], None)
        return web.Response(status=204)
