"""The routes Twilio calls (docs/webhooks.md).

Handlers parse, run one unit of work, and answer at once; any Twilio REST action
the change needs runs afterwards in the background. Status callbacks answer 204,
duplicates and stale ones included, and 503 when the change could not be
recorded, so that Twilio retries (their URLs ask for retries on 5xx).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from quart import Blueprint, Response, g, request
from werkzeug.datastructures import MultiDict

from console import intake
from console.extension import get_settings
from console.urls import (
    AGENT_CONNECT_PATH,
    CALL_STATUS_PATH,
    CHOICE_PATH,
    CONFERENCE_STATUS_PATH,
    LONG_WAIT_PATH,
    RECORDING_NOTICE_PATH,
    RECORDING_STATUS_PATH,
    VOICE_PATH,
    VOICEMAIL_DONE_PATH,
    VOICEMAIL_RECORDING_PATH,
    WAIT_PATH,
)
from webhooks import params as p
from webhooks import twiml
from webhooks.signature import twilio_webhook

log = logging.getLogger(__name__)
blueprint = Blueprint("webhooks", __name__)

# A caller must never hear "an application error has occurred": the Voice URL
# gives up on Redis after this long and answers the conference TwiML anyway.
VOICE_RECORD_BUDGET_SECONDS = 2.0
WAIT_READ_BUDGET_SECONDS = 1.0  # the wait URL's read of the line, before music alone


def xml(body: str) -> Response:
    return Response(body, 200, mimetype="text/xml")


@blueprint.errorhandler(p.BadParams)
async def bad_request(error: p.BadParams) -> Response:
    """A missing or malformed parameter, named: 400, and nothing was changed."""
    return Response(f"400 Bad Request: {error}\n", 400, mimetype="text/plain")


def no_content() -> Response:
    """204, built with an empty bytes body: Quart sends a body-less Response's empty
    iterable through a thread pool, a thread hop per callback. A 204 carries no
    Content-Length (RFC 9110 §8.6)."""
    response = Response(b"", 204)
    del response.headers["Content-Length"]
    del response.headers["Content-Type"]
    return response


def unavailable(reason: str) -> Response:
    return Response(f"503 Service Unavailable: {reason}\n", 503, mimetype="text/plain")


@blueprint.before_request
async def note_arrival() -> None:
    g.received_at = intake.now_ms()


@blueprint.post(VOICE_PATH)
@twilio_webhook
async def post_incoming_call(form: MultiDict[str, str]) -> Response:
    call = p.incoming_call(form)
    try:
        async with asyncio.timeout(VOICE_RECORD_BUDGET_SECONDS):
            arrival = await intake.incoming_call(call.call_sid, call.from_number, g.received_at)
    except (TimeoutError, *intake.NOT_RECORDED) as exc:
        # The caller still waits on hold music; the conference callbacks (retried)
        # or `warmline reconcile` record the call once Redis answers again.
        log.warning("incoming call %s not recorded yet: %s", call.call_sid, exc)
        arrival = intake.Arrival.QUEUED
    settings = get_settings()
    if arrival == intake.Arrival.ENDED:
        # This CallSid's call has ended: a replayed request. No conference, no queue.
        log.info("Voice URL for ended call %s (a replay?): hanging up", call.call_sid)
        return xml(twiml.hang_up(""))
    if arrival == intake.Arrival.CLOSED:
        return xml(twiml.voicemail(settings, call.call_sid, settings.closed_message))
    if arrival == intake.Arrival.NO_AGENTS:
        return xml(twiml.voicemail(settings, call.call_sid, twiml.NO_AGENTS_MESSAGE))
    if arrival == intake.Arrival.OFFERED:
        return xml(twiml.offer_at_arrival(settings, call.call_sid))
    return xml(twiml.customer_conference(settings, call.call_sid))


@blueprint.post(CHOICE_PATH)
@twilio_webhook
async def post_choice(form: MultiDict[str, str]) -> Response:
    """The callback-or-message ``<Gather>``'s action (SPEC §9): 1 a callback keeping
    the caller's place, 2 a message; else the line (at arrival) or a message (after
    the longest wait)."""
    choice = p.choice(form, request.args)
    settings = get_settings()
    try:
        chosen = await intake.choose(
            choice.call_sid, choice.from_number, choice.digits, choice.long_wait, g.received_at
        )
    except intake.NOT_RECORDED as exc:
        # Nothing was recorded: the caller stays where they were.
        log.warning("choice of %s not recorded: %s", choice.call_sid, exc)
        chosen = intake.Choice.ENDED
    if chosen == intake.Choice.CALLBACK:
        number = intake.callback_number(choice.from_number) or ""
        return xml(twiml.callback_requested(number))
    if chosen == intake.Choice.VOICEMAIL or (chosen == intake.Choice.ENDED and choice.long_wait):
        return xml(twiml.voicemail(settings, choice.call_sid, twiml.MESSAGE_INSTEAD))
    return xml(twiml.customer_conference(settings, choice.call_sid, notice=False))


@blueprint.post(LONG_WAIT_PATH)
@twilio_webhook
async def post_long_wait(form: MultiDict[str, str]) -> Response:
    """Where the app moved a caller who waited MAX_WAIT_SECONDS: the choice, whose
    silence leaves a message (a callback only for a number the app may dial)."""
    caller = p.moved_caller(form, request.args)
    settings = get_settings()
    if intake.callback_number(caller.from_number) is not None:
        return xml(twiml.offer_after_long_wait(settings, caller.call_sid))
    try:  # nothing to choose: they leave the line to leave a message
        await intake.choose(caller.call_sid, caller.from_number, "", True, g.received_at)
    except intake.NOT_RECORDED as exc:
        log.warning("long wait of %s not recorded: %s", caller.call_sid, exc)
    return xml(twiml.voicemail(settings, caller.call_sid, twiml.LONG_WAIT_MESSAGE))


@blueprint.route(WAIT_PATH, methods=["GET", "POST"])
@twilio_webhook
async def wait_music(form: MultiDict[str, str]) -> Response:
    settings = get_settings()
    waiting = p.waiting_caller(request.args)
    if waiting is None or settings.announce_seconds <= 0:
        # Held mid-call (?greeting=no), the caller hears music, not "all agents are busy".
        greeting = request.args.get("greeting") != "no"
        return xml(twiml.wait_music(settings, greeting=greeting))
    first = waiting.announced is None
    announced = waiting.announced or 0  # the first round: never announced, so due
    place = None
    if g.received_at - announced >= settings.announce_seconds * 1000:
        place = await _place(waiting.call_sid, g.received_at)
        if place is not None:
            announced = g.received_at
    return xml(twiml.waiting_in_line(settings, waiting.call_sid, first, place, announced))


async def _place(call_sid: str, now: int) -> intake.Place | None:
    """The caller's place, or None (music alone) when Redis does not answer at once:
    a waitUrl that fails leaves the caller in silence."""
    try:
        async with asyncio.timeout(WAIT_READ_BUDGET_SECONDS):
            return await intake.place_in_line(call_sid, now)
    except (TimeoutError, *intake.NOT_RECORDED) as exc:
        log.warning("place in line of %s unknown: %s", call_sid, exc)
        return None


@blueprint.post(AGENT_CONNECT_PATH)
@twilio_webhook
async def post_agent_connect(form: MultiDict[str, str]) -> Response:
    ref = p.dial_ref(request.args)
    call_sid = p.required(form, "CallSid", p.CALL_SID)
    try:
        answer = await intake.agent_answer(ref.conference, ref.dial, call_sid, g.received_at)
    except intake.NOT_RECORDED as exc:
        log.warning("agent answer on %s not recorded: %s", ref.dial, exc)
        return xml(twiml.hang_up("Sorry, the call could not be connected. Please try again."))
    if not answer.join:
        return xml(twiml.hang_up(answer.message))
    return xml(
        twiml.agent_conference(get_settings(), ref.conference, answer.label, answer.end_on_exit)
    )


@blueprint.post(CONFERENCE_STATUS_PATH)
@twilio_webhook
async def post_conference_status(form: MultiDict[str, str]) -> Response:
    event = p.conference_event(form)
    if event.callback is None:
        return no_content()
    callback = event.callback
    return await _recorded(
        intake.conference_callback(event.name, callback, g.received_at), "conference callback"
    )


@blueprint.post(CALL_STATUS_PATH)
@twilio_webhook
async def post_call_status(form: MultiDict[str, str]) -> Response:
    ref = p.dial_ref(request.args)
    progress = p.call_progress(form)
    return await _recorded(
        intake.call_status(
            ref.conference,
            ref.dial,
            progress.call_sid,
            progress.status,
            progress.seq,
            g.received_at,
            progress.answered_by,
        ),
        "call status",
    )


@blueprint.post(RECORDING_STATUS_PATH)
@twilio_webhook
async def post_recording_status(form: MultiDict[str, str]) -> Response:
    report = p.recording_report(form, request.args)
    return await _recorded(intake.recording_status(report, g.received_at), "recording status")


@blueprint.post(VOICEMAIL_RECORDING_PATH)
@twilio_webhook
async def post_voicemail_recording(form: MultiDict[str, str]) -> Response:
    report = p.message_report(form, request.args)
    return await _recorded(intake.voicemail_recorded(report, g.received_at), "voicemail")


@blueprint.post(VOICEMAIL_DONE_PATH)
@twilio_webhook
async def post_voicemail_done(form: MultiDict[str, str]) -> Response:
    """The ``<Record>``'s action: the message is in (its status callback says whether
    it was kept); Twilio ignores this answer when the caller already hung up."""
    return xml(twiml.voicemail_done())


@blueprint.route(RECORDING_NOTICE_PATH, methods=["GET", "POST"])
@twilio_webhook
async def recording_notice(form: MultiDict[str, str]) -> Response:
    """The announce_url of legs the app dials into a recorded conference."""
    return xml(twiml.recording_notice(get_settings()))


async def _recorded(recording: Awaitable[None], what: str) -> Response:
    try:
        await recording
    except intake.NOT_RECORDED as exc:
        log.warning("%s not recorded, asking Twilio to retry: %s", what, exc)
        return unavailable("state could not be recorded; retry")
    return no_content()
