"""The JSON API (docs/api.md): everything the agent and supervisor views do.

State-changing calls take JSON bodies (a cross-site form cannot send one) and the
session cookie; errors are ``{"error": message}``.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, jsonify, request
from quart_schema import document_response, validate_request
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant

from console.domain import actions, audit, directory, keys
from console.domain.errors import BadRequest, DomainError, NotFound
from console.domain.records import ConferenceRecord
from console.domain.snapshot import read_snapshot
from console.domain.users import Role, get_user
from console.extension import get_settings
from console.ids import CALL_SID, NAME, USERNAME, anchored
from console.redis_ext import get_redis
from console.telephony.gateway import GatewayError, get_gateway
from console.telephony.runner import get_runner
from console.urls import call_status_url, hold_url
from console.web.auth import login_required, role_required, signed_in_user
from console.web.errors import error_response

log = logging.getLogger(__name__)
blueprint = Blueprint("api", __name__, url_prefix="/api")

TOKEN_TTL_SECONDS = 3600
NO_SUCH_AGENT = "no such agent"


class Body(BaseModel):
    """A request body: unknown fields are refused (400), so a typo is not ignored."""

    model_config = ConfigDict(extra="forbid")


class StatusBody(Body):
    status: Literal["available", "offline", "break"]
    reason: str | None = Field(default=None, max_length=100)  # a break's (BREAK_REASONS)


class TransferBody(Body):
    conference: str = Field(pattern=anchored(NAME))
    mode: Literal["warm", "blind", "queue", "external"] = "warm"
    to: str | None = Field(default=None, pattern=anchored(USERNAME))  # None: any agent
    to_number: str | None = Field(default=None, max_length=16)  # external: E.164
    leave_after_dial: bool = False  # external: leave once the number is dialed (blind)
    note: str = Field(default="", max_length=500)


class HoldBody(Body):
    call_sid: str = Field(pattern=anchored(CALL_SID))
    hold: bool


class MonitorBody(Body):
    mode: Literal["listen", "whisper", "barge"]


class AgentOut(BaseModel):
    username: str
    status: Literal["offline", "available", "ringing", "busy", "missed", "wrap-up", "break"]
    since: int
    reason: str | None  # the break's reason (BREAK_REASONS), else null


class TransferOut(BaseModel):
    id: str
    conference: str
    from_agent: str
    to_agent: str | None
    status: Literal["requested", "ringing", "answered", "joined", "completed", "failed", "canceled"]
    reason: str | None
    note: str
    created_at: int
    updated_at: int


class StateOut(BaseModel):
    """The state snapshot (docs/websocket.md), filtered to what the caller may see."""

    conferences: list[dict[str, Any]]
    queue: list[dict[str, Any]]
    agents: list[AgentOut]
    transfers: list[TransferOut]
    voicemails: list[dict[str, Any]]
    callbacks: list[dict[str, Any]]


class TokenOut(BaseModel):
    identity: str
    token: str
    expires: int


class SoftphoneOut(BaseModel):
    kind: Literal["twilio", "simulator"]
    url: str | None = None


class MeOut(BaseModel):
    username: str
    role: Literal["agent", "supervisor"]
    softphone: SoftphoneOut
    dispositions: list[str]
    break_reasons: list[str]
    wrap_up_seconds: int
    callback_attempts: int


class LeftOut(BaseModel):
    conference: str
    call_sid: str
    left: bool


class HeldOut(BaseModel):
    conference: str
    call_sid: str
    hold: bool


class MonitorOut(BaseModel):
    conference: str
    mode: Literal["listen", "whisper", "barge"]
    call_sid: str | None


def _upstream_error(error: GatewayError) -> Response:
    return error_response(f"Twilio did not accept the request ({error.detail})", 502)


@blueprint.get("/state")
@document_response(StateOut, 200)
@login_required
async def get_state() -> Response:
    user = await signed_in_user()
    snapshot = await read_snapshot(get_redis())
    return jsonify(snapshot.visible_to(user.username, user.is_supervisor))


@blueprint.get("/me")
@document_response(MeOut, 200)
@login_required
async def get_me() -> Response:
    """Who is signed in, which softphone their browser should use (Twilio's Voice
    SDK, or in demo mode the simulator at ``url``), and the dispositions a voicemail
    may be closed with (DISPOSITIONS)."""
    user = await signed_in_user()
    settings = get_settings()
    simulator = settings.simulator_url
    softphone = {"kind": "simulator", "url": simulator} if simulator else {"kind": "twilio"}
    return jsonify(
        {
            "username": user.username,
            "role": str(user.role),
            "softphone": softphone,
            "dispositions": list(settings.dispositions),
            "break_reasons": list(settings.break_reasons),
            "wrap_up_seconds": settings.wrap_up_seconds,
            "callback_attempts": settings.callback_attempts,
        }
    )


@blueprint.get("/token")
@document_response(TokenOut, 200)
@login_required
async def get_token() -> Response:
    """A Voice Access Token for the logged-in user's own identity only."""
    user = await signed_in_user()
    settings = get_settings()
    grant = VoiceGrant(incoming_allow=True, outgoing_application_sid=settings.twiml_app_sid)
    token = AccessToken(
        settings.account_sid,
        settings.api_key,
        settings.api_secret,
        identity=user.username,
        ttl=TOKEN_TTL_SECONDS,
        grants=[grant],
    )
    expires = int(time.time()) + TOKEN_TTL_SECONDS
    response = jsonify({"identity": user.username, "token": token.to_jwt(), "expires": expires})
    response.headers["Cache-Control"] = "no-store"  # a credential: never kept by a cache
    return response


@blueprint.post("/me/status")
@document_response(AgentOut, 200)
@login_required
@validate_request(StatusBody)
async def post_my_status(data: StatusBody) -> Response:
    user = await signed_in_user()
    if user.is_supervisor:
        return error_response("supervisors are not routed queue calls", 403)
    agent = await get_runner().unit(
        lambda unit: actions.set_presence(unit, user.username, data.status, data.reason)
    )
    return jsonify(agent)


@blueprint.post("/transfers")
@document_response(TransferOut, 201)
@login_required
@validate_request(TransferBody)
async def post_transfer(data: TransferBody) -> tuple[Response, int]:
    """A transfer by ``mode`` (SPEC §10): warm (the colleague joins, then the agent
    leaves), blind (the agent leaves once the colleague is rung), queue (the customer
    goes to the front of the line), external (a number from the directory or under
    EXTERNAL_TRANSFER_ALLOW; anything else 403)."""
    user = await signed_in_user()
    await _check_transfer_target(data)
    runner = get_runner()
    start = await runner.unit(
        lambda unit: actions.start_transfer(
            unit,
            user.username,
            data.conference,
            data.to,
            data.note.strip(),
            data.mode,
            data.to_number,
            data.leave_after_dial,
        )
    )
    gateway = get_gateway()
    try:
        await gateway.update_participant(
            start.conference_sid, start.from_call_sid, end_conference_on_exit=False
        )
    except GatewayError:
        await runner.unit(lambda unit: actions.fail_transfer(unit, data.conference, start.transfer))
    else:
        if start.dial is not None and start.to_agent is not None:
            await runner.place_call(data.conference, start.dial, start.to_agent)
        elif start.dial is not None and start.number is not None:
            await runner.dial_external(
                data.conference, start.conference_sid, start.dial, start.number
            )
    transfer = await _transfer_now(data.conference, start.transfer)
    if start.leave and transfer["status"] not in ("failed", "canceled"):
        try:  # blind, queue, or an external transfer that leaves after dialing
            await gateway.end_call(start.from_call_sid, "completed")
        except GatewayError as error:
            log.warning("transfer %s: the agent's leg did not hang up: %s", start.transfer, error)
    return jsonify(transfer), 201


async def _check_transfer_target(data: TransferBody) -> None:
    """The body fits its mode, and its target may be transferred to."""
    if data.mode == "external":
        if data.to is not None or not data.to_number:
            raise BadRequest("an external transfer takes to_number (E.164), not to")
        if not await directory.allowed(get_redis(), get_settings(), data.to_number):
            raise DomainError(
                "to_number is neither in the directory nor under EXTERNAL_TRANSFER_ALLOW", 403
            )
        return
    if data.to_number is not None or data.leave_after_dial:
        raise BadRequest("to_number and leave_after_dial are for external transfers")
    if data.mode == "queue" and data.to is not None:
        raise BadRequest("a transfer to the line takes no colleague")
    if data.to is not None:
        # A supervisor is never a transfer target, and is answered exactly like a name
        # nobody has: this call must not tell an agent who the supervisors are.
        target = await get_user(get_redis(), data.to)
        if target is None or target.role is Role.SUPERVISOR:
            raise NotFound(NO_SUCH_AGENT)


async def _transfer_now(conference: str, transfer_id: str) -> dict[str, Any]:
    """A plain read: the transfer as the steps so far left it, no unit of work needed."""
    raw = await get_redis().get(keys.conference(conference))
    return ConferenceRecord.from_json(raw).transfers[transfer_id].public(conference)


async def _transfer_conference(transfer_id: str) -> str:
    name = await get_redis().hget(keys.TRANSFERS, transfer_id)
    if name is None:
        raise NotFound(f"no transfer {transfer_id}")
    return name


@blueprint.delete("/transfers/<transfer_id>")
@document_response(TransferOut, 200)
@login_required
async def delete_transfer(transfer_id: str) -> Response:
    user = await signed_in_user()
    name = await _transfer_conference(transfer_id)
    transfer = await get_runner().unit(
        lambda unit: actions.cancel_transfer(
            unit, user.username, user.is_supervisor, name, transfer_id
        )
    )
    return jsonify(transfer)


@blueprint.post("/conferences/<name>/leave")
@document_response(LeftOut, 200)
@login_required
async def post_leave(name: str) -> Response:
    user = await signed_in_user()
    leaving = await get_runner().unit(lambda unit: actions.prepare_leave(unit, user.username, name))
    gateway = get_gateway()
    try:
        if leaving.keep_call_alive:
            await gateway.update_participant(
                leaving.conference_sid, leaving.call_sid, end_conference_on_exit=False
            )
        await gateway.end_call(leaving.call_sid, "completed")
    except GatewayError as error:
        return _upstream_error(error)
    return jsonify({"conference": name, "call_sid": leaving.call_sid, "left": True})


@blueprint.post("/conferences/<name>/hold")
@document_response(HeldOut, 200)
@login_required
@validate_request(HoldBody)
async def post_hold(name: str, data: HoldBody) -> Response:
    user = await signed_in_user()
    runner = get_runner()
    conference_sid = await runner.unit(
        lambda unit: actions.prepare_hold(
            unit, user.username, user.is_supervisor, name, data.call_sid, data.hold
        )
    )
    params: dict[str, Any] = {"hold": data.hold}
    if data.hold:
        params.update(hold_url=hold_url(get_settings()), hold_method="POST")
    try:
        await get_gateway().update_participant(conference_sid, data.call_sid, **params)
    except GatewayError as error:
        await runner.unit(lambda unit: actions.forget_hold_request(unit, name, data.call_sid))
        return _upstream_error(error)
    return jsonify({"conference": name, "call_sid": data.call_sid, "hold": data.hold})


@blueprint.post("/conferences/<name>/monitor")
@document_response(MonitorOut, 200)
@role_required("supervisor")
@validate_request(MonitorBody)
async def post_monitor(name: str, data: MonitorBody) -> Response:
    user = await signed_in_user()
    runner = get_runner()
    monitoring = await runner.unit(
        lambda unit: actions.prepare_monitor(unit, user.username, name, data.mode)
    )
    gateway = get_gateway()
    try:
        if monitoring.call_sid is not None:
            await gateway.update_participant(
                monitoring.conference_sid, monitoring.call_sid, **monitoring.params
            )
            call_sid: str | None = monitoring.call_sid
        else:
            call_sid = await gateway.add_participant(
                monitoring.conference_sid,
                user.username,
                label=monitoring.dial,
                start_conference_on_enter=False,
                end_conference_on_exit=False,
                status_callback=call_status_url(get_settings(), name, monitoring.dial),
                **monitoring.params,
            )
    except GatewayError as error:
        call_sid = None
        if monitoring.call_sid is None:
            await runner.unit(
                lambda unit: actions.record_monitor_call(unit, name, monitoring.dial, None)
            )
        return _upstream_error(error)
    await runner.unit(
        lambda unit: actions.record_monitor_call(unit, name, monitoring.dial, call_sid)
    )
    audit.record(
        "monitor", actor=user.username, client=request.remote_addr, conference=name, mode=data.mode
    )
    return jsonify({"conference": name, "mode": data.mode, "call_sid": call_sid})
