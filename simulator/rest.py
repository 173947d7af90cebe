"""The REST API the app calls at ``TWILIO_API_BASE_URL``: Calls, Conferences,
Participants and Recordings (JSON, media, delete; a conference's pause and resume)
under ``/2010-04-01/Accounts/{AccountSid}``, with HTTP Basic auth
(the account SID and auth token, or an API key and its secret) and Twilio's error
bodies (20003 auth, 20004 method, 20404 not found, 21201/21603/21205 missing
parameters, 21220 call not in progress, 16025 duplicate label, 20001 bad value: the
Twilio codes where known, representative ones for validation). A call or participant
is created ``queued``; what happens next is the ``Switchboard``'s."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import BasicAuth, web
from multidict import MultiDictProxy

from simulator.calls import CallEnded, Switchboard
from simulator.model import Call, CallbackTarget, Conference, JoinSpec, Participant
from simulator.recordings import Recording, byte_range, recording_json
from simulator.resources import (
    call_json,
    conference_json,
    error,
    page,
    participant_json,
    pending_participant,
)
from simulator.wire import API_VERSION, parse_flag

CF_SID = re.compile(r"CF[0-9a-f]{32}")
BEEP_VALUES = ("true", "false", "onEnter", "onExit")
MACHINE_DETECTION = ("Enable", "DetectMessageEnd")
Form = MultiDictProxy[Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """Answered as Twilio's legacy error JSON."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def _not_found(request: web.Request) -> ApiError:
    return ApiError(404, 20404, f"The requested resource {request.path} was not found")


def _bool(form: Mapping[str, str], name: str) -> bool | None:
    try:
        return parse_flag(form.get(name))
    except ValueError:
        raise ApiError(400, 20001, f"{name} must be true or false") from None


def _events(form: Form, name: str, default: str = "") -> frozenset[str]:
    """A list parameter: repeated fields (as twilio-python sends) or space-separated."""
    values = form.getall(name, []) or [default]
    return frozenset(word for value in values for word in str(value).split())


def _target(form: Form, prefix: str, default_events: str = "") -> CallbackTarget | None:
    url = form.get(f"{prefix}StatusCallback")
    if not url:
        return None
    method = str(form.get(f"{prefix}StatusCallbackMethod") or "POST").upper()
    return CallbackTarget(
        url, method, _events(form, f"{prefix}StatusCallbackEvent", default_events)
    )


def _detection(form: Form) -> str | None:
    """``MachineDetection`` (answering-machine detection), if asked for."""
    value = form.get("MachineDetection")
    if value in (None, ""):
        return None
    if value not in MACHINE_DETECTION:
        raise ApiError(400, 20001, "MachineDetection must be Enable or DetectMessageEnd")
    return str(value)


def _timeout(form: Form) -> int:
    try:
        return max(1, min(600, int(form.get("Timeout") or 60)))
    except ValueError:
        raise ApiError(400, 20001, "Timeout must be an integer") from None


class RestApi:
    """aiohttp routes over a ``Switchboard``; see the module docstring."""

    def __init__(
        self,
        board: Switchboard,
        account_sid: str,
        auth_token: str,
        api_keys: Mapping[str, str] | None = None,
    ) -> None:
        self.board = board
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.api_keys = dict(api_keys or {})
        self.touched: Callable[[], None] = lambda: None  # told of every REST request

    def routes(self) -> list[web.RouteDef]:
        base = f"/{API_VERSION}/Accounts/{{account}}"
        conf = base + "/Conferences/{conf}"
        part = conf + "/Participants/{part}.json"
        return [
            web.post(base + "/Calls.json", self.create_call),
            web.get(base + "/Calls.json", self.list_calls),
            web.get(base + "/Calls/{call}.json", self.fetch_call),
            web.post(base + "/Calls/{call}.json", self.update_call),
            web.get(base + "/Conferences.json", self.list_conferences),
            web.get(conf + ".json", self.fetch_conference),
            web.post(conf + ".json", self.update_conference),
            web.get(conf + "/Participants.json", self.list_participants),
            web.post(conf + "/Participants.json", self.create_participant),
            web.get(part, self.fetch_participant),
            web.post(part, self.update_participant),
            web.delete(part, self.delete_participant),
            web.post(conf + "/Recordings/{rec}.json", self.update_conference_recording),
            web.get(base + "/Recordings/{rec}.json", self.fetch_recording),
            web.delete(base + "/Recordings/{rec}.json", self.delete_recording),
            web.get(base + "/Recordings/{rec}.wav", self.recording_media),
        ]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Basic auth and Twilio-shaped errors for everything under /2010-04-01."""
        if not request.path.startswith(f"/{API_VERSION}/"):
            return await handler(request)
        self.touched()
        try:
            self._authenticate(request)
            if request.match_info.get("account", self.account_sid) != self.account_sid:
                raise _not_found(request)
            return await handler(request)
        except ApiError as exc:
            response = _json(error(exc.status, exc.code, exc.message), exc.status)
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            return response
        except web.HTTPNotFound:
            return _json(
                error(404, 20404, f"The requested resource {request.path} was not found"), 404
            )
        except web.HTTPMethodNotAllowed:
            return _json(error(405, 20004, "Method not allowed"), 405)

    def _authenticate(self, request: web.Request) -> None:
        credentials = None
        with contextlib.suppress(ValueError):
            credentials = BasicAuth.decode(request.headers.get("Authorization", ""))
        if credentials is not None:
            if credentials.login == self.account_sid and credentials.password == self.auth_token:
                return
            if self.api_keys.get(credentials.login) == credentials.password:
                return
        raise ApiError(401, 20003, "Authenticate")

    # -- calls ---------------------------------------------------------------------------

    def _call(self, request: web.Request) -> Call:
        call = self.board.calls.get(request.match_info["call"])
        if call is None:
            raise _not_found(request)
        return call

    async def create_call(self, request: web.Request) -> web.Response:
        form = await request.post()
        to, from_ = _parties(form)
        if not any(form.get(name) for name in ("Url", "Twiml", "ApplicationSid")):
            raise ApiError(400, 21205, "Url parameter is required.")
        call = Call(to=to, from_=from_, direction="outbound-api", account_sid=self.account_sid)
        call.url = form.get("Url") or None
        call.twiml = form.get("Twiml") or None
        call.method = str(form.get("Method") or "POST").upper()
        call.progress = _target(form, "")
        call.timeout = _timeout(form)
        call.machine_detection = _detection(form)
        self.board.dial(call)
        return _json(call_json(call), 201)

    async def list_calls(self, request: web.Request) -> web.Response:
        query = request.query
        calls = [
            call_json(c)
            for c in self.board.calls.values()
            if query.get("Status") in (None, c.status)
            and query.get("To") in (None, c.to)
            and query.get("From") in (None, c.from_)
            and query.get("ParentCallSid") in (None, c.parent_call_sid)
        ]
        return _json(page(request.path, dict(query), "calls", calls))

    async def fetch_call(self, request: web.Request) -> web.Response:
        return _json(call_json(self._call(request)))

    async def update_call(self, request: web.Request) -> web.Response:
        call = self._call(request)
        form = await request.post()
        status = form.get("Status")
        if status not in (None, "canceled", "completed"):
            raise ApiError(400, 20001, "Status must be canceled or completed")
        if status is not None:
            self.board.hangup(call.sid, str(status))
        elif form.get("Url") or form.get("Twiml"):
            try:
                method = str(form.get("Method") or "POST").upper()
                self.board.redirect(call, form.get("Url"), method, form.get("Twiml"))
            except CallEnded:
                raise ApiError(400, 21220, "Call is not in-progress. Cannot redirect.") from None
        return _json(call_json(call))

    # -- conferences -----------------------------------------------------------------------

    def _conference(self, request: web.Request, by_name: bool = True) -> Conference:
        segment = request.match_info["conf"]
        hub = self.board.hub
        found = hub.find(segment) if by_name else hub.conferences.get(segment)
        if found is None:
            raise _not_found(request)
        return found

    async def list_conferences(self, request: web.Request) -> web.Response:
        query = request.query
        items = [
            conference_json(c)
            for c in self.board.hub.conferences.values()
            if query.get("Status") in (None, c.status)
            and query.get("FriendlyName") in (None, c.friendly_name)
        ]
        return _json(page(request.path, dict(query), "conferences", items))

    async def fetch_conference(self, request: web.Request) -> web.Response:
        return _json(conference_json(self._conference(request, by_name=False)))

    async def update_conference(self, request: web.Request) -> web.Response:
        conference = self._conference(request, by_name=False)
        status = (await request.post()).get("Status")
        if status not in (None, "completed"):
            raise ApiError(400, 20001, "Status must be completed")
        if status == "completed":
            self.board.hub.end(conference, "conference-ended-via-api")
        return _json(conference_json(conference))

    # -- participants ----------------------------------------------------------------------

    def _participant(self, request: web.Request) -> tuple[Conference, Participant]:
        conference = self._conference(request)
        participant = conference.member(request.match_info["part"])
        if participant is None:
            raise _not_found(request)
        return conference, participant

    async def list_participants(self, request: web.Request) -> web.Response:
        conference = self._conference(request)
        wanted = {name: _bool(request.query, name) for name in ("Muted", "Hold", "Coaching")}
        items = [
            participant_json(self.account_sid, p)
            for p in conference.participants.values()
            if all(v is None or getattr(p, k.lower()) is v for k, v in wanted.items())
        ]
        return _json(page(request.path, dict(request.query), "participants", items))

    async def create_participant(self, request: web.Request) -> web.Response:
        form = await request.post()
        to, from_ = _parties(form)
        segment = request.match_info["conf"]
        existing = self.board.hub.find(segment)
        if existing is None and CF_SID.fullmatch(segment):
            raise _not_found(request)
        spec = _participant_spec(form, existing.friendly_name if existing else segment)
        if spec.label and existing is not None and existing.labelled(spec.label):
            raise ApiError(400, 16025, f"Participant label {spec.label} already exists")
        conference = self.board.hub.open(spec)
        call = Call(to=to, from_=from_, direction="outbound-api", account_sid=self.account_sid)
        call.progress = _target(form, "")
        call.timeout = _timeout(form)
        call.machine_detection = _detection(form)
        call.join = spec
        self.board.dial(call)
        return _json(pending_participant(self.account_sid, conference.sid, call, spec), 201)

    async def fetch_participant(self, request: web.Request) -> web.Response:
        _, participant = self._participant(request)
        return _json(participant_json(self.account_sid, participant))

    async def update_participant(self, request: web.Request) -> web.Response:
        conference, participant = self._participant(request)
        form = await request.post()
        changes: dict[str, Any] = {
            "hold": _bool(form, "Hold"),
            "muted": _bool(form, "Muted"),
            "coaching": _bool(form, "Coaching"),
            "end_on_exit": _bool(form, "EndConferenceOnExit"),
            "call_sid_to_coach": form.get("CallSidToCoach"),
            "hold_url": form.get("HoldUrl"),
            "hold_method": str(form.get("HoldMethod") or "GET").upper(),
        }
        changes = {k: v for k, v in changes.items() if v is not None}
        if changes.get("coaching") is False:
            changes.setdefault("call_sid_to_coach", None)
        self.board.hub.update(conference, participant, changes)
        return _json(participant_json(self.account_sid, participant))

    async def delete_participant(self, request: web.Request) -> web.Response:
        conference, participant = self._participant(request)
        # The call itself goes on with its next TwiML verb, as on Twilio.
        reason = "participant_updated_via_api"
        self.board.hub.leave(participant.call_sid, reason, "in-progress", conference)
        return web.Response(status=204)

    # -- recordings ------------------------------------------------------------------------

    def _recording(self, request: web.Request) -> Recording:
        recording = self.board.hub.recordings.recordings.get(request.match_info["rec"])
        if recording is None:
            raise _not_found(request)
        return recording

    async def fetch_recording(self, request: web.Request) -> web.Response:
        return _json(recording_json(self._recording(request)))

    async def delete_recording(self, request: web.Request) -> web.Response:
        recording = self._recording(request)
        del self.board.hub.recordings.recordings[recording.sid]
        return web.Response(status=204)

    async def recording_media(self, request: web.Request) -> web.Response:
        """The audio as WAV, whole or the one byte range asked for."""
        recording = self._recording(request)
        if recording.status != "completed":
            raise _not_found(request)  # no media until it is complete
        data = recording.media()
        size = len(data)
        headers = {"Accept-Ranges": "bytes", "Content-Type": "audio/x-wav"}
        wanted = byte_range(request.headers.get("Range"), size)
        if wanted is False:
            headers["Content-Range"] = f"bytes */{size}"
            return web.Response(status=416, headers=headers)
        if wanted is None:
            return web.Response(body=data, headers=headers)
        first, last = wanted
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return web.Response(status=206, body=data[first : last + 1], headers=headers)

    async def update_conference_recording(self, request: web.Request) -> web.Response:
        """Pause or resume a conference's recording, by SID or ``Twilio.CURRENT``."""
        conference = self._conference(request, by_name=False)
        recordings = self.board.hub.recordings
        key = request.match_info["rec"]
        if key == "Twilio.CURRENT":
            recording = recordings.current(conference.sid)
        else:
            recording = recordings.recordings.get(key)
        if recording is None or recording.conference_sid != conference.sid:
            raise _not_found(request)
        status = (await request.post()).get("Status")
        if status not in ("paused", "in-progress"):
            raise ApiError(400, 20001, "Status must be paused or in-progress")
        if recording.status not in ("paused", "in-progress"):
            raise ApiError(400, 21220, "Recording is not in progress")
        recordings.set_paused(recording, status == "paused")
        return _json(recording_json(recording))


def _parties(form: Mapping[str, Any]) -> tuple[str, str]:
    to, from_ = form.get("To"), form.get("From")
    if not to:
        raise ApiError(400, 21201, "No 'To' number is specified")
    if not from_:
        raise ApiError(400, 21603, "A 'From' phone number is required.")
    return str(to), str(from_)


def _participant_spec(form: Form, name: str) -> JoinSpec:
    """A Participants-API add: its flags and the conference callback settings (which
    count only if it is the first participant; default events ``start end``)."""
    start = _bool(form, "StartConferenceOnEnter")
    beep = str(form.get("Beep") or "true")
    if beep not in BEEP_VALUES:
        raise ApiError(400, 20001, f"Beep must be one of {', '.join(BEEP_VALUES)}")
    return JoinSpec(
        name=name,
        label=form.get("Label") or None,
        muted=bool(_bool(form, "Muted")),
        beep=beep,
        start_on_enter=True if start is None else start,
        end_on_exit=bool(_bool(form, "EndConferenceOnExit")),
        coaching=bool(_bool(form, "Coaching")),
        call_sid_to_coach=form.get("CallSidToCoach") or None,
        wait_url=form.get("WaitUrl") or None,
        wait_method=str(form.get("WaitMethod") or "POST").upper(),
        status_callback=_target(form, "Conference", "start end"),
    )
