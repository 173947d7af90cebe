"""The shapes of the names Warmline takes from outside, written once: the API's bodies
and paths, Twilio's parameters, the users' names and reconcile all check against
these. Imports nothing from the product, so every layer (and webhooks/) may use it.

Patterns are matched whole (``fullmatch``); ``anchored`` gives the form JSON Schema,
pydantic and OpenAPI take.
"""

from __future__ import annotations

import re

USERNAME = re.compile(r"[A-Za-z0-9_]{1,121}")
"""A console user's name. It doubles as the Twilio Voice SDK identity of the user's
softphone (``client:<username>``), so it follows Twilio's identity rule."""

USERNAME_RULE = "1 to 121 letters, digits or underscores"
"""``USERNAME`` in words, for the message that refuses a name."""

NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
"""A conference name (the customer's CallSid), a dial id (also the participant's
label) or a transfer id. These travel in the query of the callback URLs Warmline
gives Twilio (console/urls.py) and in the API's paths: Twilio has been inconsistent
in escaping anything else, and its signature covers the query."""

CALL_SID = re.compile(r"CA[0-9a-f]{32}")
"""A Twilio CallSid."""

CONFERENCE_SID = re.compile(r"CF[0-9a-f]{32}")
"""A Twilio ConferenceSid."""

CALLBACK_ID = re.compile(r"CB[0-9a-f]{32}")
"""A callback's id (SPEC §9): also the name of its first conference, never a CallSid."""

HELP_ID = re.compile(r"HP[0-9a-f]{32}")
"""A help request's id (SPEC §10)."""

DIRECTORY_ID = re.compile(r"DE[0-9a-f]{16}")
"""An entry of the supervisors' directory of external numbers (SPEC §10)."""

RECORDING_SID = re.compile(r"RE[0-9a-f]{32}")
"""A Twilio RecordingSid (a recording's playback and delete routes take one)."""


def anchored(pattern: re.Pattern[str]) -> str:
    """``pattern`` matched against a whole string, as JSON Schema writes it."""
    return f"^{pattern.pattern}$"
