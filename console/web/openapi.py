"""The OpenAPI document of the JSON API (/openapi.json), complete enough for
clients and for schemathesis to hold the API to it.

quart-schema documents what the views declare; this provider adds what is true of
every /api call and would be noise on each view: the ``{"error": message}`` answers
and their statuses, the required JSON bodies and the path parameters' patterns.
Webhooks, pages and sockets are not part of the API and are left out. The session
cookie (``warmline_session``, from ``POST /login``) is described in the document's
info rather than as a security scheme: generators such as schemathesis would
otherwise make up cookies of their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from quart_schema import OpenAPIProvider
from werkzeug.routing import Rule

from console.ids import CALL_SID, CALLBACK_ID, DIRECTORY_ID, HELP_ID, NAME, RECORDING_SID, anchored

ERROR_STATUSES = {
    400: "bad body or parameter",
    401: "no valid session",
    403: "the caller's role or conference does not allow it",
    404: "unknown conference or transfer",
    409: "the state does not allow it",
    502: "Twilio did not accept the request",
    503: "Redis or the history's PostgreSQL is unavailable; try again",
}
PATH_PATTERNS = {
    "name": anchored(NAME),
    "transfer_id": anchored(NAME),
    "call_id": anchored(NAME),
    "sid": anchored(RECORDING_SID),
    "voicemail_id": anchored(CALL_SID),
    "callback_id": anchored(CALLBACK_ID),
    "help_id": anchored(HELP_ID),
    "entry_id": anchored(DIRECTORY_ID),
}
# A CSV export (a route ending in .csv) answers text, not JSON.
CSV_RESPONSE = {
    "description": "CSV: a header row, then one row per item",
    "content": {"text/csv": {"schema": {"type": "string"}}},
}

# A recording's audio (console/web/recordings.py): WAV, whole or one byte range.
AUDIO_RESPONSE = {
    "description": "the recording's audio (WAV); 206 with Content-Range for a Range",
    "content": {"audio/x-wav": {"schema": {"type": "string", "format": "binary"}}},
}


class ErrorBody(BaseModel):
    error: str


class WarmlineOpenAPI(OpenAPIProvider):
    """Only /api, with the cross-cutting facts above."""

    def generate_rules(self) -> Iterable[Rule]:
        return (rule for rule in super().generate_rules() if rule.rule.startswith("/api/"))

    def build_paths(self, rule: Rule) -> tuple[dict, dict]:
        paths, components = super().build_paths(rule)
        error_object, error_components = self.build_response_object(ErrorBody, None)
        components.update(error_components)
        for path, operations in paths.items():
            for operation in operations.values():
                _complete(operation, error_object)
                if path.endswith(".csv"):
                    operation["responses"] = {**operation["responses"], 200: CSV_RESPONSE}
        if rule.rule == "/api/recordings/<sid>" and "get" in paths.get("/api/recordings/{sid}", {}):
            get = paths["/api/recordings/{sid}"]["get"]
            get["responses"] = {**get["responses"], 200: AUDIO_RESPONSE, 206: AUDIO_RESPONSE}
        return paths, components


def _complete(operation: dict[str, Any], error_object: dict[str, Any]) -> None:
    if "requestBody" in operation:
        operation["requestBody"] = {**operation["requestBody"], "required": True}
    operation["parameters"] = [
        {**p, "schema": {**p["schema"], "pattern": PATH_PATTERNS[p["name"]]}}
        if p["in"] == "path" and p["name"] in PATH_PATTERNS
        else p
        for p in operation["parameters"]
    ]
    responses = dict(operation["responses"])
    for status, description in ERROR_STATUSES.items():
        responses.setdefault(status, {**error_object, "description": description})
    operation["responses"] = responses
