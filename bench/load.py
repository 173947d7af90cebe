"""What the fan-out benchmark sends: signed Twilio conference status callbacks that
each change one participant (Warmline), or the same-sized message (bare broadcast).

Warmline's load is a set of live conferences, each with its customer waiting alone
(called in through the Voice URL, conference started, customer joined), whose hold
flag is toggled by ``participant-hold`` / ``participant-unhold`` callbacks exactly as
Twilio sends them: every callback is one unit of work and one ``participant.updated``
event. The conferences are spread so that each gets one callback a second, which
keeps each conference's record (and its replay) small and lets a message be matched
to its callback by conference and receive time.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

import aiohttp
from twilio.request_validator import RequestValidator

from tests.conftest import ACCOUNT_SID, AUTH_TOKEN
from tests.support.twilio_double import TwilioDouble

CUSTOMER = "+15557654321"


def call_sid() -> str:
    return "CA" + secrets.token_hex(16)


@dataclass
class Conference:
    name: str  # the customer's CallSid (SPEC: FriendlyName = customer CallSid)
    sid: str = field(default_factory=lambda: "CF" + secrets.token_hex(16))
    seq: itertools.count = field(default_factory=lambda: itertools.count(1))
    held: bool = False
    joined_at: int = 0


@dataclass
class Sent:
    conference: str
    at_ms: float
    status: int = 0
    response_ms: float = 0.0


class Producer:
    """Base: ``send(session)`` posts one change to the next conference, round robin."""

    path = ""

    def __init__(self, conferences: list[Conference]) -> None:
        self.conferences = conferences
        self._next = itertools.cycle(conferences)

    def request(self, conference: Conference, base_url: str) -> tuple[dict[str, str], object]:
        raise NotImplementedError

    async def send(self, session: aiohttp.ClientSession, base_url: str) -> Sent:
        conference = next(self._next)
        headers, body = self.request(conference, base_url)
        sent = Sent(conference.name, time.time() * 1000)
        async with session.post(base_url + self.path, data=body, headers=headers) as response:
            await response.read()
            sent.status = response.status
        sent.response_ms = time.time() * 1000 - sent.at_ms
        return sent


class WarmlineProducer(Producer):
    path = "/conference/status"

    def __init__(self, conferences: list[Conference]) -> None:
        super().__init__(conferences)
        self.validator = RequestValidator(AUTH_TOKEN)

    def signed(self, url: str, params: dict[str, str]) -> dict[str, str]:
        return {"X-Twilio-Signature": self.validator.compute_signature(url, params)}

    def request(self, conference: Conference, base_url: str) -> tuple[dict[str, str], object]:
        conference.held = not conference.held
        params = self.conference_params(conference)
        params.update(
            StatusCallbackEvent="participant-hold" if conference.held else "participant-unhold",
            CallSid=conference.name,
            Muted="false",
            Hold="true" if conference.held else "false",
            Coaching="false",
            EndConferenceOnExit="false",
            StartConferenceOnEnter="true",
        )
        return self.signed(base_url + self.path, params), params

    @staticmethod
    def conference_params(conference: Conference) -> dict[str, str]:
        return {
            "AccountSid": ACCOUNT_SID,
            "ConferenceSid": conference.sid,
            "FriendlyName": conference.name,
            "SequenceNumber": str(next(conference.seq)),
            "Timestamp": format_datetime(datetime.now(UTC)),
        }

    async def setup(
        self, session: aiohttp.ClientSession, base_url: str, double: TwilioDouble
    ) -> None:
        """Every conference live with its customer alone in it (on the wait music:
        the app asks the REST stand-in to hold them, once)."""
        for conference in self.conferences:
            incoming = {
                "AccountSid": ACCOUNT_SID,
                "ApiVersion": "2010-04-01",
                "CallSid": conference.name,
                "CallStatus": "ringing",
                "Called": "+15550001111",
                "Caller": CUSTOMER,
                "Direction": "inbound",
                "From": CUSTOMER,
                "To": "+15550001111",
            }
            await self._post(session, base_url, "/conference/connect/client", incoming, 200)
            double.add_conference(conference.name, sid=conference.sid, status="init")
            start = self.conference_params(conference)
            start["StatusCallbackEvent"] = "conference-start"
            double.set_conference_status(conference.sid, "in-progress")
            await self._post(session, base_url, self.path, start, 204)
            join = self.conference_params(conference)
            join.update(
                StatusCallbackEvent="participant-join",
                CallSid=conference.name,
                ParticipantLabel="customer",
                Muted="false",
                Hold="false",
                Coaching="false",
                EndConferenceOnExit="false",
                StartConferenceOnEnter="true",
            )
            double.add_participant(conference.sid, conference.name, label="customer")
            await self._post(session, base_url, self.path, join, 204)

    async def _post(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        path: str,
        params: dict[str, str],
        expected: int,
    ) -> None:
        headers = self.signed(base_url + path, params)
        async with session.post(base_url + path, data=params, headers=headers) as response:
            body = await response.text()
            if response.status != expected:
                raise RuntimeError(f"{path}: {response.status} {body}")


class BareProducer(Producer):
    """The payload Warmline would send for the same change, as the message body."""

    path = "/publish"

    def request(self, conference: Conference, base_url: str) -> tuple[dict[str, str], object]:
        conference.held = not conference.held
        data = {
            "conference": conference.name,
            "call_sid": conference.name,
            "role": "customer",
            "agent": None,
            "from": CUSTOMER,
            "muted": False,
            "hold": conference.held,
            "coaching": False,
            "joined_at": conference.joined_at or int(time.time() * 1000),
        }
        body = json.dumps(data, separators=(",", ":"))
        return {"Content-Type": "application/json"}, body
