"""Voicemails on the JSON API (docs/api.md, SPEC §9): claim one, close it with a
disposition. The messages themselves are in the state (``voicemails``) and its events;
they play through ``GET /api/recordings/<sid>``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, validate_request

from console.domain import callbacks, dialable, voicemails, wrap_up
from console.domain.events import now_ms
from console.extension import get_settings
from console.ids import CALL_SID
from console.redis_ext import get_redis
from console.telephony.runner import get_runner
from console.web.auth import login_required, signed_in_user
from console.web.callbacks import CallbackOut, CloseBody
from console.web.errors import error_response

blueprint = Blueprint("voicemails", __name__, url_prefix="/api/voicemails")


class VoicemailOut(BaseModel):
    """The voicemail shape (docs/websocket.md)."""

    id: str
    from_: str | None = Field(alias="from")
    at: int
    duration: int | None
    recording: dict[str, Any]
    status: str
    claimed_by: str | None
    disposition: str | None
    reason: str


def _known_id(voicemail_id: str) -> Response | None:
    """404 for what cannot be a voicemail's id (a CallSid), before Redis is asked."""
    if not CALL_SID.fullmatch(voicemail_id):
        return error_response(f"no voicemail {voicemail_id}", 404)
    return None


@blueprint.post("/<voicemail_id>/claim")
@document_response(VoicemailOut, 200)
@login_required
async def post_claim(voicemail_id: str) -> Response:
    """Take the message: one agent (or supervisor) wins; 409 for the others."""
    refused = _known_id(voicemail_id)
    if refused is not None:
        return refused
    user = await signed_in_user()
    claimed = await voicemails.claim(
        get_redis(), get_settings(), voicemail_id, user.username, now_ms()
    )
    return jsonify(claimed.public())


@blueprint.post("/<voicemail_id>/close")
@document_response(VoicemailOut, 200)
@login_required
@validate_request(CloseBody)
async def post_close(voicemail_id: str, data: CloseBody) -> Response:
    """Close the message with a disposition (its claimer, or a supervisor)."""
    refused = _known_id(voicemail_id)
    if refused is not None:
        return refused
    settings = get_settings()
    wrap_up.check_disposition(settings.dispositions, data.disposition)
    user = await signed_in_user()
    closed = await voicemails.close(
        get_redis(),
        settings,
        voicemail_id,
        user.username,
        user.is_supervisor,
        data.disposition,
        now_ms(),
    )
    return jsonify(closed.public())


@blueprint.post("/<voicemail_id>/callback")
@document_response(CallbackOut, 200)
@login_required
async def post_callback(voicemail_id: str) -> Response:
    """Call the caller back: the message becomes the user's (409 when it is someone
    else's), their phone rings at once, and the number is dialed once they answer."""
    refused = _known_id(voicemail_id)
    if refused is not None:
        return refused
    settings = get_settings()
    user = await signed_in_user()
    claimed = await voicemails.claim(get_redis(), settings, voicemail_id, user.username, now_ms())
    number = dialable.callback_number(claimed.from_number, settings.caller_id)
    if number is None:
        return error_response("this caller's number cannot be called back", 409)
    record = await get_runner().unit(
        lambda unit: callbacks.for_voicemail(unit, voicemail_id, number, user.username)
    )
    assert record.callback is not None
    return jsonify(record.callback.public(record.name))
