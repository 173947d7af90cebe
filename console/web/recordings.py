"""Recordings (SPEC §8, docs/api.md): playback streamed from Twilio through the app
(HTTP Range passed on; Twilio's URL and the account's credentials never reach the
browser), deletion by supervisors, and pause/resume of a live call's recording.

Who may play a recording: for an open voicemail, whoever sees it (SPEC §9); else, from
the history, supervisors and the agents who were on its call (or closed its
voicemail); anyone else is answered as for a recording that does not exist.
"""

from __future__ import annotations

import re

from psycopg import OperationalError
from pydantic import BaseModel, ConfigDict
from quart import Blueprint, Response, jsonify, request
from quart_schema import document_response, validate_request

from console.domain import audit, recordings, voicemails
from console.domain.errors import BadRequest, NotFound
from console.history import recordings as recorded
from console.ids import NAME, RECORDING_SID
from console.postgres_ext import HistoryUnavailable, get_pool
from console.redis_ext import get_redis
from console.telephony.gateway import GatewayError, get_gateway
from console.telephony.runner import get_runner
from console.web.auth import current_user, login_required, role_required
from console.web.calls import history_unavailable
from console.web.errors import error_response

blueprint = Blueprint("recordings", __name__, url_prefix="/api")
blueprint.register_error_handler(HistoryUnavailable, history_unavailable)
blueprint.register_error_handler(OperationalError, history_unavailable)

# One range of bytes, as browsers ask for audio; any other Range is ignored (RFC 9110
# §14.2: a server may), so the whole file is sent.
_ONE_RANGE = re.compile(r"bytes=(\d{1,15})?-(\d{1,15})?")


class PauseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paused: bool


class PausedOut(BaseModel):
    conference: str
    paused: bool
    status: str


class DeletedOut(BaseModel):
    sid: str
    deleted: bool


async def _recorded_call(sid: str) -> tuple[str, recorded.RecordedCall]:
    """The viewer's name and the call of recording ``sid``; 404 when there is none or
    the viewer (an agent) was not on it."""
    if not RECORDING_SID.fullmatch(sid):
        raise BadRequest("invalid recording sid")
    user = await current_user()
    assert user is not None  # the decorators guarantee it
    message = await voicemails.by_recording(get_redis(), sid)
    if message is not None:  # an open voicemail: whoever sees it may play it
        if not message.visible_to(user.username, user.is_supervisor):
            raise NotFound(f"no recording {sid}")
        return user.username, recorded.RecordedCall(message.id, ())
    call = await recorded.call_of(get_pool(), sid)
    if call is None or not (user.is_supervisor or user.username in call.agents):
        raise NotFound(f"no recording {sid}")
    return user.username, call


def _media_error(error: GatewayError, sid: str) -> Response:
    if error.status == 404:
        return error_response(f"no recording {sid} (not ready, or deleted)", 404)
    if error.status == 416:
        return error_response("range not satisfiable", 416)
    return error_response(f"Twilio did not give the recording ({error.detail})", 502)


@blueprint.get("/recordings/<sid>")
@login_required
async def get_recording(sid: str) -> Response:
    """The recording's audio (WAV), streamed; a ``Range: bytes=…`` gets a 206."""
    await _recorded_call(sid)
    wanted = request.headers.get("Range")
    if wanted is not None and not _ONE_RANGE.fullmatch(wanted.strip()):
        wanted = None
    try:
        media = await get_gateway().recording_media(sid, wanted)
    except GatewayError as error:
        return _media_error(error, sid)
    response = Response(media.body, status=media.status, headers=media.headers)
    response.headers.setdefault("Content-Type", "audio/wav")
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["Cache-Control"] = "private, no-store"
    return response


@blueprint.delete("/recordings/<sid>")
@document_response(DeletedOut, 200)
@role_required("supervisor")
async def delete_recording(sid: str) -> Response:
    """Delete the recording at Twilio, then in the history (its call's recording
    becomes null). An open voicemail's message is closed first, not deleted from
    under the agents' lists (409)."""
    username, call = await _recorded_call(sid)
    if await voicemails.by_recording(get_redis(), sid) is not None:
        return error_response("close the voicemail before deleting its message", 409)
    try:
        await get_gateway().delete_recording(sid)
    except GatewayError as error:
        return error_response(f"Twilio did not delete the recording ({error.detail})", 502)
    await get_runner().unit(
        lambda unit: recordings.record_deleted(unit, call.id, sid, username, call.agents)
    )
    await recorded.clear(get_pool(), call.id, sid)
    audit.record(
        "recording-delete", actor=username, client=request.remote_addr, call=call.id, sid=sid
    )
    return jsonify({"sid": sid, "deleted": True})


@blueprint.post("/conferences/<name>/recording")
@document_response(PausedOut, 200)
@login_required
@validate_request(PauseBody)
async def post_recording(name: str, data: PauseBody) -> Response:
    """Pause or resume the recording of a live call (its agent, or a supervisor);
    409 when the call is not being recorded."""
    if not NAME.fullmatch(name):
        raise BadRequest("invalid conference name")
    user = await current_user()
    assert user is not None
    runner = get_runner()
    conference_sid, sid = await runner.unit(
        lambda unit: recordings.prepare_pause(unit, user.username, user.is_supervisor, name)
    )
    try:
        await get_gateway().pause_recording(conference_sid, data.paused)
    except GatewayError as error:
        return error_response(f"Twilio did not accept the request ({error.detail})", 502)
    status = await runner.unit(
        lambda unit: recordings.record_pause(unit, name, sid, user.username, data.paused)
    )
    return jsonify({"conference": name, "paused": status == "paused", "status": status})
