"""Wrap-up on the JSON API (docs/api.md, SPEC §10): an agent's disposition and notes
for a call they took. Needs Redis only: history stores them from the event log."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, validate_request

from console.domain import wrap_up
from console.ids import NAME
from console.telephony.runner import get_runner
from console.web.auth import login_required, signed_in_user
from console.web.errors import error_response

blueprint = Blueprint("wrap_up", __name__, url_prefix="/api")


class WrapUpBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disposition: str = Field(min_length=1, max_length=100)
    notes: str = Field(default="", max_length=wrap_up.NOTES_MAX)


class WrapUpOut(BaseModel):
    call: str
    agent: str
    disposition: str
    notes: str
    at: int


@blueprint.post("/calls/<call_id>/wrap-up")
@document_response(WrapUpOut, 200)
@login_required
@validate_request(WrapUpBody)
async def post_wrap_up(call_id: str, data: WrapUpBody) -> Response:
    """The disposition and notes of a call the user took (the latest given wins)."""
    if not NAME.fullmatch(call_id):
        return error_response(f"no call {call_id}", 404)
    user = await signed_in_user()
    given = await get_runner().unit(
        lambda unit: wrap_up.dispose(unit, user.username, call_id, data.disposition, data.notes),
        conferences=(call_id,),
    )
    return jsonify(given)
