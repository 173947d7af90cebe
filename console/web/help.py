"""Asking for help on the JSON API (docs/api.md, SPEC §10): an agent on a call asks
supervisors for help, and cancels it; a supervisor dismisses it (monitoring the call
takes it too: console/web/api.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, validate_request

from console.domain import actions, keys
from console.domain.help_requests import TEXT_MAX
from console.ids import HELP_ID, NAME, anchored
from console.redis_ext import get_redis
from console.telephony.runner import get_runner
from console.web.auth import login_required, signed_in_user
from console.web.errors import error_response

blueprint = Blueprint("help", __name__, url_prefix="/api/help")


class HelpBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conference: str = Field(pattern=anchored(NAME))
    text: str = Field(min_length=1, max_length=TEXT_MAX)


class HelpOut(BaseModel):
    """The help request shape (docs/websocket.md)."""

    id: str
    agent: str
    conference: str
    text: str
    at: int
    status: str


@blueprint.post("")
@document_response(HelpOut, 201)
@login_required
@validate_request(HelpBody)
async def post_help(data: HelpBody) -> tuple[Response, int]:
    """An agent on the call asks supervisors for help (one open request per call)."""
    user = await signed_in_user()
    if user.is_supervisor:
        return error_response("supervisors take help requests; they do not make them", 403), 403
    if not data.text.strip():
        return error_response("text: say what you need help with", 400), 400
    request = await get_runner().unit(
        lambda unit: actions.ask_for_help(unit, user.username, data.conference, data.text),
        conferences=(data.conference,),
    )
    return jsonify(request.public(data.conference)), 201


@blueprint.delete("/<help_id>")
@document_response(HelpOut, 200)
@login_required
async def delete_help(help_id: str) -> Response:
    """The agent cancels their request; a supervisor dismisses it (taken)."""
    conference = await get_redis().hget(keys.HELP, help_id) if HELP_ID.fullmatch(help_id) else None
    if conference is None:
        return error_response(f"no help request {help_id}", 404)
    user = await signed_in_user()
    request = await get_runner().unit(
        lambda unit: actions.withdraw_help(
            unit, conference, help_id, user.username, user.is_supervisor
        ),
        conferences=(conference,),
    )
    return jsonify(request.public(conference))
