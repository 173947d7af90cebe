"""The one entry point of the product that webhooks/ calls: what Twilio reports, recorded
as units of work whose Twilio REST actions the runner carries out afterwards, plus the
webhook health notes and the few names Twilio's edge shares with the domain."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from console.domain import dialable, expected_wait, flow, recordings, voicemails
from console.domain.derive import CUSTOMER_LABEL
from console.domain.errors import Contended
from console.domain.events import now_ms
from console.domain.expected_wait import Place
from console.domain.flow import Answer, Arrival, Choice
from console.domain.recordings import STATUSES as RECORDING_STATUSES
from console.domain.recordings import RecordingReport
from console.domain.records import Callback
from console.domain.unit import Unit
from console.domain.webhook_health import note_request, note_signature_failure
from console.extension import get_settings
from console.redis_ext import get_redis
from console.telephony.gateway import CONFERENCE_EVENTS
from console.telephony.runner import get_runner

__all__ = [
    "CONFERENCE_EVENTS",
    "CUSTOMER_LABEL",
    "NOT_RECORDED",
    "RECORDING_STATUSES",
    "Answer",
    "Arrival",
    "Callback",
    "Choice",
    "Place",
    "RecordingReport",
    "agent_answer",
    "call_status",
    "callback_number",
    "choose",
    "conference_callback",
    "incoming_call",
    "note_bad_signature",
    "note_webhook",
    "now_ms",
    "place_in_line",
    "recording_status",
    "voicemail_recorded",
]

# What a failed recording raises: Redis down or slow, or a unit that kept losing races.
# Nothing was written; Twilio's retry (or reconcile) records it later.
NOT_RECORDED = (RedisError, OSError, Contended)


async def _record(
    change: Callable[[Unit], Awaitable[object]], conference: str, received_at: int
) -> object:
    """Run ``change``, reading ``conference`` with the rest of the state up front."""
    return await get_runner().unit(change, received_at=received_at, conferences=(conference,))


async def incoming_call(call_sid: str, from_number: str | None, received_at: int) -> Arrival:
    """A customer called: their conference is created and they join the waiting line,
    or they are sent to leave a message (closed, nobody signed in), or, for a CallSid
    whose call has already ended (a replay), nothing changes."""
    arrival = await _record(
        lambda unit: flow.enqueue_call(unit, call_sid, from_number), call_sid, received_at
    )
    assert isinstance(arrival, Arrival)
    if arrival in (Arrival.CLOSED, Arrival.NO_AGENTS):
        caller = voicemails.Caller(from_number, received_at, arrival.value)
        await voicemails.note_caller(get_redis(), call_sid, caller)
    return arrival


async def choose(
    call_sid: str, from_number: str | None, digits: str, long_wait: bool, received_at: int
) -> Choice:
    """The caller's key at the callback-or-message choice (SPEC §9), recorded: a
    callback takes their place in line, or they leave the line to leave a message."""
    choice = await _record(
        lambda unit: flow.choose(unit, call_sid, digits, long_wait), call_sid, received_at
    )
    assert isinstance(choice, Choice)
    if choice == Choice.VOICEMAIL or (choice == Choice.ENDED and long_wait):
        reason = "long-wait" if long_wait else "voicemail"
        caller = voicemails.Caller(from_number, received_at, reason)
        await voicemails.note_caller(get_redis(), call_sid, caller)
    return choice


def callback_number(from_number: str | None) -> str | None:
    """The caller's number in E.164 when a callback may dial it (SPEC §9), else None."""
    return dialable.callback_number(from_number, get_settings().caller_id)


async def voicemail_recorded(report: RecordingReport, received_at: int) -> None:
    """The recording status callback of a caller's message (``<Record>``): a completed
    one becomes a voicemail; an absent or failed one (too short, silent) none."""
    if report.status != "completed":
        return
    await voicemails.record_message(
        get_redis(), get_settings(), report.conference, report.sid, report.duration, received_at
    )


async def agent_answer(conference: str, dial: str, call_sid: str, received_at: int) -> Answer:
    """A dialed softphone answered: whether it may join, and how."""
    answer = await _record(
        lambda unit: flow.accept_answer(unit, conference, dial, call_sid), conference, received_at
    )
    assert isinstance(answer, Answer)
    return answer


async def conference_callback(name: str, callback: Callback, received_at: int) -> None:
    """One conference status callback, folded into that conference's facts."""
    await _record(
        lambda unit: flow.apply_conference_callback(unit, name, callback), name, received_at
    )


async def call_status(
    conference: str,
    dial: str,
    call_sid: str,
    status: str,
    seq: int | None,
    received_at: int,
    answered_by: str | None = None,
) -> None:
    """The call-progress callback of a call the app dialed."""
    await _record(
        lambda unit: flow.apply_call_status(
            unit, conference, dial, call_sid, status, seq, answered_by
        ),
        conference,
        received_at,
    )


async def recording_status(report: RecordingReport, received_at: int) -> None:
    """A recording status callback of a conference the app recorded."""
    await _record(
        lambda unit: recordings.apply_report(unit, report), report.conference, received_at
    )


async def place_in_line(call_sid: str, now: int) -> Place | None:
    """A waiting caller's place in line and expected wait; None once they left it."""
    return await expected_wait.read(get_redis(), call_sid, now, get_settings().center_zone)


def note_webhook(route: str) -> None:
    """Twilio reached ``route`` (kept for the webhook health view, in the background)."""
    note_request(get_redis(), route)


async def note_bad_signature(route: str, reason: str, client: str, checked_url: str) -> None:
    """A request from ``client`` to ``route`` was refused for ``reason``; its signature
    was checked against ``checked_url`` (PUBLIC_BASE_URL + the route, no query)."""
    await note_signature_failure(get_redis(), route, reason, client, checked_url)
