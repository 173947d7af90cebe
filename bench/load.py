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
import time
from dataclasses import dataclass, field

import aiohttp

from simulator.testing import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    SIGNATURE_HEADER,
    TwilioDouble,
    call_sid,
    conference_params,
    conference_sid,
    participant_params,
    rfc2822,
    sign,
    voice_params,
)

__all__ = ["CUSTOMER", "BareProducer", "Conference", "Producer", "WarmlineProducer", "call_sid"]

CUSTOMER = "+15557654321"
NUMBER = "+15550001111"


@dataclass
class Conference:
    name: str  # the customer's CallSid, which the app uses as the FriendlyName
    sid: str = field(default_factory=conference_sid)
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

    @staticmethod
    def signed(url: str, params: dict[str, str]) -> dict[str, str]:
        return {SIGNATURE_HEADER: sign(url, params, AUTH_TOKEN)}

    def request(self, conference: Conference, base_url: str) -> tuple[dict[str, str], object]:
        conference.held = not conference.held
        event = "participant-hold" if conference.held else "participant-unhold"
        params = self.conference_params(conference, event)
        params.update(participant_params(conference.name, hold=conference.held))
        return self.signed(base_url + self.path, params), params

    @staticmethod
    def conference_params(conference: Conference, event: str) -> dict[str, str]:
        seq = next(conference.seq)
        return conference_params(
            ACCOUNT_SID, conference.sid, conference.name, event, seq, rfc2822()
        )

    async def setup(
        self, session: aiohttp.ClientSession, base_url: str, double: TwilioDouble
    ) -> None:
        """Every conference live with its customer alone in it (on the wait music:
        the app asks the REST stand-in to hold them, once)."""
        for conference in self.conferences:
            incoming = voice_params(
                ACCOUNT_SID, conference.name, "ringing", "inbound", CUSTOMER, NUMBER
            )
            await self._post(session, base_url, "/conference/connect/client", incoming, 200)
            double.add_conference(conference.name, sid=conference.sid, status="init")
            start = self.conference_params(conference, "conference-start")
            double.set_conference_status(conference.sid, "in-progress")
            await self._post(session, base_url, self.path, start, 204)
            join = self.conference_params(conference, "participant-join")
            join.update(participant_params(conference.name, label="customer"))
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
