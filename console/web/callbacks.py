"""Callbacks on the JSON API (docs/api.md, SPEC §9): the agent serving one dials the
number again or closes it with a disposition. Callbacks themselves are in the state
(``callbacks``) and their ``callback.updated`` events."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, validate_request

from console.domain import callbacks, wrap_up
from console.extension import get_settings
from console.ids import CALLBACK_ID
from console.redis_ext import get_redis
from console.telephony.runner import get_runner
from console.web.auth import login_required, signed_in_user
from console.web.errors import error_response

blueprint = Blueprint("callbacks", __name__, url_prefix="/api/callbacks")


class CloseBody(BaseModel):
    """Closing a callback or a voicemail: the disposition (one of DISPOSITIONS)."""

    model_config = ConfigDict(extra="forbid")

    disposition: str = Field(min_length=1, max_length=100)


class CallbackOut(BaseModel):
    """The callback shape (docs/websocket.md)."""

    id: str
    number: str
    requested_at: int
    attempts: int
    status: str
    agent: str | None
    origin: str
    result: str | None
    disposition: str | None
    conference: str


async def _conference(callback_id: str) -> str | None:
    if not CALLBACK_ID.fullmatch(callback_id):
        return None
    return await callbacks.find(get_redis(), callback_id)


@blueprint.post("/<callback_id>/retry")
@document_response(CallbackOut, 200)
@login_required
async def post_retry(callback_id: str) -> Response:
    """Dial the number again, while the agent waits in the callback's conference."""
    conference = await _conference(callback_id)
    if conference is None:
        return error_response(f"no callback {callback_id}", 404)
    user = await signed_in_user()
    callback = await get_runner().unit(
        lambda unit: callbacks.retry(unit, conference, user.username, user.is_supervisor),
        conferences=(conference,),
    )
    return jsonify(callback.public(conference))


@blueprint.post("/<callback_id>/close")
@document_response(CallbackOut, 200)
@login_required
@validate_request(CloseBody)
async def post_close(callback_id: str, data: CloseBody) -> Response:
    """Close it with a disposition: its calls still up are hung up."""
    settings = get_settings()
    wrap_up.check_disposition(settings.dispositions, data.disposition)
    conference = await _conference(callback_id)
    if conference is None:
        return error_response(f"no callback {callback_id}", 404)
    user = await signed_in_user()
    callback = await get_runner().unit(
        lambda unit: callbacks.close(
            unit, conference, user.username, user.is_supervisor, data.disposition
        ),
        conferences=(conference,),
    )
    return jsonify(callback.public(conference))
