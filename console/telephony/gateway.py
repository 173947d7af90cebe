"""The Twilio REST gateway: every call Warmline makes to Twilio goes through here.

The twilio package's async client is created inside the running loop (aiohttp
requires it) and pointed at ``TWILIO_API_BASE_URL``. Its own timeout is ignored
by its ``request()``, so every call is bounded here, and every failure, timeout
included, surfaces as one ``GatewayError`` that callers turn into a visible
outcome (a failed transfer, the next agent) instead of a hung webhook or a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from quart import Quart
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from console.config import Settings
from console.extension import Extension
from console.network_errors import plain_reason
from console.urls import conference_status_url

log = logging.getLogger(__name__)
T = TypeVar("T")

CALL_PROGRESS_EVENTS = ["initiated", "ringing", "answered", "completed"]
CONFERENCE_EVENTS = "start end join leave mute hold modify"
MEDIA_CHUNK = 64 * 1024


class GatewayError(Exception):
    """A Twilio REST call failed, timed out or could not be made. ``detail`` says why in
    plain words (``failure_reason``, or ``HTTP <status>: <Twilio's message>``);
    ``status`` is Twilio's HTTP status when it answered."""

    def __init__(self, action: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"Twilio {action} failed: {detail}")
        self.action = action
        self.detail = detail
        self.status = status

    def says(self, base_url: str) -> str:
        """One line for a person: where the request went and why it failed."""
        if self.status is None:
            return f"cannot reach Twilio at {base_url}: {self.detail}"
        return f"Twilio at {base_url} answered {self.detail}{TWILIO_HINTS.get(self.status, '')}"


# What a person should look at when Twilio answers with these statuses.
TWILIO_HINTS = {
    401: "; TWILIO_ACCOUNT_SID or TWILIO_AUTH_TOKEN is wrong",
    404: "; TWILIO_API_BASE_URL may not be Twilio's REST API",
}


def failure_reason(error: BaseException) -> str:
    """Why a request could not be made, in plain words (console.network_errors), else
    the error's name."""
    cause: BaseException = error
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        cause = error.certificate_error
    elif isinstance(error, aiohttp.ClientConnectorError):
        cause = error.os_error
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(error, aiohttp.InvalidURL):
        return "invalid URL"
    if isinstance(cause, OSError):
        return plain_reason(cause)
    return type(error).__name__


def _page_failure(exc: TwilioException) -> tuple[str, int | None]:
    """A list request Twilio answered with an error: the twilio package raises the base
    TwilioException("Unable to fetch page", response) for it. Its detail and status."""
    response = exc.args[1] if len(exc.args) > 1 else None
    status = getattr(response, "status_code", None)
    if not isinstance(status, int):
        return str(exc) or type(exc).__name__, None
    try:
        message = json.loads(response.text).get("message")  # type: ignore[union-attr]
    except (ValueError, TypeError, AttributeError):
        message = None
    return (f"HTTP {status}: {message}" if message else f"HTTP {status}"), status


@dataclass
class Media:
    """A recording's audio on its way from Twilio: status (200, or 206 for a range),
    the headers worth passing on, and the body in chunks."""

    status: int
    headers: dict[str, str]
    body: AsyncIterator[bytes]


async def _chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.content.iter_chunked(MEDIA_CHUNK):
            yield chunk
    finally:
        response.release()


class TwilioGateway(Extension):
    """Holds the REST client."""

    key = "twilio"

    def __init__(self, app: Quart | None = None, settings: Settings | None = None) -> None:
        self.settings = settings
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Client | None = None
        self._media: aiohttp.ClientSession | None = None  # recordings' audio
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        self.register(app)
        app.before_serving(self.open)
        app.after_serving(self.close)

    async def open(self) -> None:
        assert self.settings is not None
        self._http = AsyncTwilioHttpClient()
        # A non-empty environment keeps TWILIO_REGION/TWILIO_EDGE out: either would
        # rewrite the host of TWILIO_API_BASE_URL into an unreachable one.
        self._client = Client(
            self.settings.account_sid,
            self.settings.auth_token,
            http_client=self._http,
            environment={"WARMLINE": "1"},
        )
        self._client.api.base_url = self.settings.api_base_url
        # Recordings' audio is streamed through a session of its own: the twilio
        # client reads whole bodies. A stalled read fails after the REST timeout.
        self._media = aiohttp.ClientSession(
            auth=aiohttp.BasicAuth(self.settings.account_sid, self.settings.auth_token),
            timeout=aiohttp.ClientTimeout(
                sock_connect=self.settings.rest_timeout_seconds,
                sock_read=self.settings.rest_timeout_seconds,
            ),
        )

    async def close(self) -> None:
        if self._media is not None:
            await self._media.close()
            self._media = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("the Twilio gateway is not open: the app is not serving")
        return self._client

    async def _call(self, action: str, request: Awaitable[T]) -> T:
        assert self.settings is not None
        try:
            async with asyncio.timeout(self.settings.rest_timeout_seconds):
                return await request
        except TimeoutError:
            detail = f"timed out after {self.settings.rest_timeout_seconds:g} s"
            status = None
        except TwilioRestException as exc:
            detail, status = f"HTTP {exc.status}: {exc.msg}", exc.status
        except TwilioException as exc:
            detail, status = _page_failure(exc)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            detail, status = failure_reason(exc), None
        log.warning("Twilio %s failed: %s", action, detail)
        raise GatewayError(action, detail, status)

    # -- calls ----------------------------------------------------------------

    async def dial_client(self, identity: str, url: str, status_callback: str) -> str:
        """Ring ``client:<identity>``; returns the new CallSid."""
        assert self.settings is not None
        call = await self._call(
            "dial",
            self.client.calls.create_async(
                to=f"client:{identity}",
                from_=self.settings.caller_id,
                url=url,
                method="POST",
                status_callback=status_callback,
                status_callback_method="POST",
                status_callback_event=CALL_PROGRESS_EVENTS,
                timeout=self.settings.ring_timeout_seconds,
            ),
        )
        return str(call.sid)

    async def fetch_call(self, call_sid: str) -> Any:
        """One call (its ``to`` names an agent's softphone, its ``_from`` the caller):
        reconcile learns who a conference participant is from it."""
        return await self._call("call fetch", self.client.calls(call_sid).fetch_async())

    async def end_call(self, call_sid: str, status: str = "canceled") -> None:
        """``canceled`` stops a ringing call; ``completed`` hangs up a live one."""
        await self._call("hang up", self.client.calls(call_sid).update_async(status=status))

    # -- conferences and participants -----------------------------------------

    async def update_participant(self, conference: str, call_sid: str, **params: Any) -> None:
        await self._call(
            "participant update",
            self.client.conferences(conference).participants(call_sid).update_async(**params),
        )

    async def add_participant(self, conference: str, identity: str, **params: Any) -> str:
        """Add ``client:<identity>`` to a live conference; returns the new CallSid."""
        assert self.settings is not None
        participant = await self._call(
            "add participant",
            self.client.conferences(conference).participants.create_async(
                from_=self.settings.caller_id,
                to=f"client:{identity}",
                beep="false",
                early_media=False,
                timeout=self.settings.ring_timeout_seconds,
                status_callback_method="POST",
                status_callback_event=CALL_PROGRESS_EVENTS,
                conference_status_callback=conference_status_url(self.settings),
                conference_status_callback_method="POST",
                conference_status_callback_event=CONFERENCE_EVENTS.split(),
                **params,
            ),
        )
        return str(participant.call_sid)

    async def add_number(
        self,
        conference_sid: str,
        number: str,
        label: str,
        status_callback: str,
        detect_machine: bool = True,
    ) -> str:
        """Dial ``number`` into a live conference from TWILIO_CALLER_ID: a callback's
        customer (SPEC §9), with machine detection, or an external transfer's party
        (§10); returns the new CallSid. Its leaving never ends the conference (the app
        sets that once it knows a person is the customer)."""
        assert self.settings is not None
        detection = {"machine_detection": "Enable"} if detect_machine else {}
        participant = await self._call(
            "dial number",
            self.client.conferences(conference_sid).participants.create_async(
                from_=self.settings.caller_id,
                to=number,
                label=label,
                beep="false",
                early_media=False,
                start_conference_on_enter=True,
                end_conference_on_exit=False,
                timeout=self.settings.ring_timeout_seconds,
                status_callback=status_callback,
                status_callback_method="POST",
                status_callback_event=CALL_PROGRESS_EVENTS,
                **detection,
            ),
        )
        return str(participant.call_sid)

    async def move_call(self, call_sid: str, url: str) -> None:
        """Move a call to new TwiML at ``url`` (it leaves any conference it is in)."""
        await self._call(
            "call move", self.client.calls(call_sid).update_async(url=url, method="POST")
        )

    async def live_conferences(self, status: str = "in-progress") -> list[Any]:
        """Conferences Twilio reports in ``status`` (for reconcile: ``in-progress``, and
        ``init`` for customers still waiting alone)."""
        return await self._call(
            "conference list", self.client.conferences.list_async(status=status)
        )

    async def conference_status(self, conference_sid: str) -> str:
        """The status Twilio gives one conference (``init``, ``in-progress``, ``completed``)."""
        conference = await self._call(
            "conference fetch", self.client.conferences(conference_sid).fetch_async()
        )
        return str(conference.status)

    async def participants(self, conference_sid: str) -> list[Any]:
        return await self._call(
            "participant list", self.client.conferences(conference_sid).participants.list_async()
        )

    async def delete_recording(self, sid: str) -> None:
        """Delete a recording at Twilio (retention); one Twilio no longer has (404) is
        gone already."""
        try:
            await self._call("recording delete", self.client.recordings(sid).delete_async())
        except GatewayError as error:
            if error.status != 404:
                raise

    # -- recordings (SPEC §8) ---------------------------------------------------------

    async def pause_recording(self, conference_sid: str, paused: bool) -> None:
        """Pause or resume the conference's current recording (Twilio.CURRENT)."""
        status = "paused" if paused else "in-progress"
        await self._call(
            "recording update",
            self.client.conferences(conference_sid)
            .recordings("Twilio.CURRENT")
            .update_async(status=status),
        )

    async def recording_media(self, sid: str, byte_range: str | None) -> Media:
        """Start fetching a recording's audio (WAV) with the account's credentials,
        passing ``byte_range`` (an HTTP Range) on; the caller streams ``Media.body``.
        Twilio's answer other than 200/206 raises GatewayError with its status."""
        assert self.settings is not None
        url = f"{self.settings.api_base_url}/2010-04-01/Accounts/{self.settings.account_sid}"
        url += f"/Recordings/{sid}.wav"
        headers = {"Range": byte_range} if byte_range else {}
        if self._media is None:
            raise RuntimeError("the Twilio gateway is not open: the app is not serving")
        try:
            async with asyncio.timeout(self.settings.rest_timeout_seconds):
                response = await self._media.get(url, headers=headers)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("Twilio recording fetch failed: %s", failure_reason(exc))
            raise GatewayError("recording fetch", failure_reason(exc)) from None
        if response.status not in (200, 206):
            response.release()
            raise GatewayError("recording fetch", f"HTTP {response.status}", response.status)
        kept = ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges")
        return Media(
            response.status,
            {k: response.headers[k] for k in kept if k in response.headers},
            _chunks(response),
        )


def get_gateway() -> TwilioGateway:
    return TwilioGateway.current()
