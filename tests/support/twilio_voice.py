"""Plays Twilio Voice's side of the webhooks against the app's test client.

Requests are built as Twilio builds them: form-encoded, Twilio's parameter names
and value formats, a per-conference SequenceNumber, RFC 2822 Timestamps, and an
``X-Twilio-Signature`` over the public URL (without the connection-override
fragment). Deliveries can be prepared first and sent later in any order, which is
what the order-independence tests need.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

from console.telephony.runner import Runner
from tests.support.twilio_double import RecordedRequest, TwilioDouble, sign

DIAL_EVENTS = ("participant-join", "participant-leave")


def call_sid() -> str:
    return "CA" + secrets.token_hex(16)


def conference_sid() -> str:
    return "CF" + secrets.token_hex(16)


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
    sid: str
    seq: itertools.count = field(default_factory=lambda: itertools.count(1))


class TwilioVoice:
    """Twilio's webhooks for one test: see the module docstring."""

    def __init__(self, client: Any, double: TwilioDouble, app: Any, base_url: str) -> None:
        self.client = client
        self.double = double
        self.app = app
        self.base_url = base_url
        self.account_sid = double.account_sid
        self.token = double.auth_token
        self.conferences: dict[str, ConferenceTrack] = {}
        self.call_seq: dict[str, itertools.count] = {}
        self.clock = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)

    # -- sending --------------------------------------------------------------

    async def send(self, delivery: Delivery, signature: str | None = None) -> Any:
        url = delivery.url.split("#", 1)[0]
        headers = {"X-Twilio-Signature": signature or sign(url, delivery.params, self.token)}
        return await self.client.post(delivery.path, form=delivery.params, headers=headers)

    async def settle(self) -> None:
        """Wait until every background REST action the app started has finished."""
        await Runner.of(self.app).drain()

    def tick(self) -> str:
        self.clock += timedelta(seconds=1)
        return format_datetime(self.clock)

    # -- the customer's call ----------------------------------------------------

    def incoming(self, sid: str, from_number: str = "+15557654321") -> Delivery:
        return Delivery(
            self.base_url + "/conference/connect/client",
            {
                "AccountSid": self.account_sid,
                "ApiVersion": "2010-04-01",
                "CallSid": sid,
                "CallStatus": "ringing",
                "Called": "+15550001111",
                "Caller": from_number,
                "Direction": "inbound",
                "From": from_number,
                "To": "+15550001111",
            },
        )

    async def call_in(self, from_number: str = "+15557654321") -> tuple[str, ElementTree.Element]:
        sid = call_sid()
        response = await self.send(self.incoming(sid, from_number))
        assert response.status_code == 200, await response.get_data(as_text=True)
        return sid, ElementTree.fromstring(await response.get_data(as_text=True))

    # -- conference callbacks ---------------------------------------------------

    def track(self, name: str) -> ConferenceTrack:
        if name not in self.conferences:
            self.conferences[name] = ConferenceTrack(conference_sid())
            self.double.add_conference(name, sid=self.conferences[name].sid, status="init")
        return self.conferences[name]

    def conference_event(
        self, name: str, event: str, call: str | None = None, **fields: Any
    ) -> Delivery:
        track = self.track(name)
        params = {
            "AccountSid": self.account_sid,
            "ConferenceSid": track.sid,
            "FriendlyName": name,
            "StatusCallbackEvent": event,
            "SequenceNumber": str(next(track.seq)),
            "Timestamp": self.tick(),
        }
        if call is not None:
            params["CallSid"] = call
            defaults = {
                "Muted": False,
                "Hold": False,
                "Coaching": False,
                "EndConferenceOnExit": False,
                "StartConferenceOnEnter": True,
            }
            for key, value in {**defaults, **fields}.items():
                params[key] = str(value).lower() if isinstance(value, bool) else str(value)
        else:
            params.update({k: str(v) for k, v in fields.items()})
        self._mirror(track, event, call, fields)
        return Delivery(self.base_url + "/conference/status#rc=3&rp=5xx,ct,rt", params)

    def _mirror(self, track: ConferenceTrack, event: str, call: str | None, fields: dict) -> None:
        """Keep the REST double's picture in step, so the app's REST calls find things."""
        if event == "conference-start":
            self.double.set_conference_status(track.sid, "in-progress")
        elif event == "participant-join" and call is not None:
            label = fields.get("ParticipantLabel")
            self.double.add_participant(track.sid, call, label=label)
        elif event == "conference-end":
            self.double.set_conference_status(track.sid, "completed")

    # -- calls the app placed ----------------------------------------------------

    def call_status(self, create: RecordedRequest, sid: str, status: str) -> Delivery:
        seq = self.call_seq.setdefault(sid, itertools.count(0))
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": sid,
            "CallStatus": status,
            "CallbackSource": "call-progress-events",
            "Direction": "outbound-api",
            "From": create.param("From") or "",
            "To": create.param("To") or "",
            "SequenceNumber": str(next(seq)),
            "Timestamp": self.tick(),
        }
        return Delivery(create.param("StatusCallback") or "", params)

    def answer(self, create: RecordedRequest, sid: str) -> Delivery:
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": sid,
            "CallStatus": "in-progress",
            "Direction": "outbound-api",
            "From": create.param("From") or "",
            "To": create.param("To") or "",
        }
        return Delivery(create.param("Url") or "", params)

    async def ring(self, create: RecordedRequest) -> str:
        """The dialed softphone rings; returns the leg's CallSid (the double's)."""
        sid = self.created_sid(create)
        for status in ("initiated", "ringing"):
            response = await self.send(self.call_status(create, sid, status))
            assert response.status_code == 204
        return sid

    def created_sid(self, create: RecordedRequest) -> str:
        """The CallSid the double answered the create request with."""
        to = create.param("To")
        matches = [c for c in self.double.calls.values() if c["to"] == to]
        assert matches, f"no call created to {to}"
        return matches[-1]["sid"]

    async def pick_up(self, create: RecordedRequest, sid: str) -> ElementTree.Element:
        response = await self.send(self.answer(create, sid))
        assert response.status_code == 200
        twiml = ElementTree.fromstring(await response.get_data(as_text=True))
        assert (await self.send(self.call_status(create, sid, "in-progress"))).status_code == 204
        return twiml

    async def decline(self, create: RecordedRequest, sid: str, status: str = "no-answer") -> None:
        response = await self.send(self.call_status(create, sid, status))
        assert response.status_code == 204

    async def event(self, name: str, event: str, call: str | None = None, **fields: Any) -> None:
        response = await self.send(self.conference_event(name, event, call, **fields))
        assert response.status_code == 204, await response.get_data(as_text=True)


def conference_of(twiml: ElementTree.Element) -> ElementTree.Element:
    conference = twiml.find("./Dial/Conference")
    assert conference is not None, ElementTree.tostring(twiml)
    return conference
