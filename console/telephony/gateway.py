"""The Twilio REST gateway: every call Warmline makes to Twilio goes through here.

The twilio package's async client is created inside the running loop (aiohttp
requires it) and pointed at ``TWILIO_API_BASE_URL``. Its own timeout is ignored
by its ``request()``, so every call is bounded here, and every failure, timeout
included, surfaces as one ``GatewayError`` that callers turn into a visible
outcome (a failed transfer, the next agent) instead of a hung webhook or a 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiohttp
from quart import Quart
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from console.config import Settings
from console.extension import Extension
from console.urls import conference_status_url

log = logging.getLogger(__name__)
T = TypeVar("T")

CALL_PROGRESS_EVENTS = ["initiated", "ringing", "answered", "completed"]
CONFERENCE_EVENTS = "start end join leave mute hold modify"


class GatewayError(Exception):
    """A Twilio REST call failed, timed out or could not be made."""

    def __init__(self, action: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"Twilio {action} failed: {detail}")
        self.action = action
        self.detail = detail
        self.status = status


class TwilioGateway(Extension):
    """Holds the REST client."""

    key = "twilio"

    def __init__(self, app: Quart | None = None, settings: Settings | None = None) -> None:
        self.settings = settings
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Client | None = None
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

    async def close(self) -> None:
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
            log.warning(
                "Twilio %s timed out after %.1f s", action, self.settings.rest_timeout_seconds
            )
            raise GatewayError(action, "timed out") from None
        except TwilioRestException as exc:
            log.warning("Twilio %s answered %s: %s", action, exc.status, exc.msg)
            raise GatewayError(action, f"HTTP {exc.status}: {exc.msg}", exc.status) from None
        except (TwilioException, aiohttp.ClientError, OSError, ValueError) as exc:
            log.warning("Twilio %s could not be made: %s", action, type(exc).__name__)
            raise GatewayError(action, type(exc).__name__) from None

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

    async def live_conferences(self, status: str = "in-progress") -> list[Any]:
        """Conferences Twilio reports in ``status`` (for reconcile: ``in-progress``, and
        ``init`` for customers still waiting alone)."""
        return await self._call(
            "conference list", self.client.conferences.list_async(status=status)
        )

    async def participants(self, conference_sid: str) -> list[Any]:
        return await self._call(
            "participant list", self.client.conferences(conference_sid).participants.list_async()
        )


def get_gateway() -> TwilioGateway:
    return TwilioGateway.current()
