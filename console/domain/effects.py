"""Twilio REST actions a state change asks for, carried out after it commits.

A unit of work never calls Twilio inside its Redis transaction (a retried
transaction would call twice, and a slow Twilio would hold the webhook); it
returns these instead and the runner executes them in the background.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PlaceCall:
    """Dial an agent's softphone for a queued customer or a transfer."""

    conference: str
    dial: str
    agent: str
    kind: str


@dataclass(frozen=True)
class HangUp:
    """End a call the app placed: ``canceled`` while it rings, ``completed`` after."""

    conference: str
    call_sid: str
    status: str = "canceled"


@dataclass(frozen=True)
class UpdateParticipant:
    """Change a participant's hold or endConferenceOnExit flags."""

    conference: str
    conference_sid: str
    call_sid: str
    params: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class DialNumber:
    """Dial a callback's number into its conference (Participants API, label
    ``customer``, machine detection on)."""

    conference: str
    conference_sid: str
    dial: str
    number: str


@dataclass(frozen=True)
class MoveCall:
    """Move a waiting caller out of their conference to the longest-wait choice
    (Calls API update, SPEC §9)."""

    call_sid: str


@dataclass(frozen=True)
class Route:
    """Match waiting customers with available agents."""


Effect = PlaceCall | HangUp | UpdateParticipant | DialNumber | MoveCall | Route
