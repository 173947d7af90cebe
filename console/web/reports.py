"""Reports read from the projections (docs/api.md): a conference's timeline, the
queue figures of the supervisor console and the webhook health."""

from __future__ import annotations

import logging
from typing import Any

from psycopg import OperationalError
from pydantic import BaseModel
from quart import Blueprint
from quart_schema import validate_response

from console.domain import expected_wait, figures, keys, timeline
from console.domain.errors import BadRequest, DomainError, NotFound
from console.domain.events import now_ms
from console.domain.webhook_health import read_health
from console.extension import get_settings
from console.history import queries
from console.ids import NAME
from console.postgres_ext import HistoryUnavailable, get_pool
from console.redis_ext import get_redis
from console.web.auth import current_user, login_required, role_required

log = logging.getLogger(__name__)

blueprint = Blueprint("reports", __name__, url_prefix="/api")


class TimelineEntry(BaseModel):
    at: int
    type: str
    actor: str
    call_sid: str | None
    detail: str


class Timeline(BaseModel):
    conference: str
    entries: list[TimelineEntry]


class TransferFigures(BaseModel):
    succeeded: int
    failed: int
    failed_reasons: dict[str, int]
    canceled: int


class AnswerTime(BaseModel):
    count: int
    mean_ms: int | None


class Figures(BaseModel):
    day: str
    waiting: int
    longest_wait_ms: int | None
    answered: int
    abandoned: int
    callbacks_requested: int  # callers who left the line for a callback (SPEC §9)
    left_messages: int  # and for a message
    mean_wait_ms: int | None
    service_level_seconds: int
    answered_within_service_level: int
    service_level: float | None
    transfers: TransferFigures
    transfer_answer: AnswerTime
    expected_wait_ms: int | None  # for a caller arriving now (console.domain.expected_wait)


@blueprint.get("/conferences/<name>/timeline")
@validate_response(Timeline)
@login_required
async def get_timeline(name: str) -> dict[str, Any]:
    """Supervisors read any timeline; an agent only one of a conference they were an
    agent in or a party to a transfer of (403 otherwise, so names do not leak
    anything beyond existence)."""
    if not NAME.fullmatch(name):
        raise BadRequest("invalid conference name")
    redis = get_redis()
    entries = await timeline.read(redis, name)
    if not entries and not await redis.exists(keys.conference(name)):
        entries = await _stored_timeline(name)  # Redis has let the call go
        if not entries:
            raise NotFound(f"no conference {name}")
    user = await current_user()
    assert user is not None  # login_required guarantees it
    if not user.is_supervisor and not timeline.involves(entries, user.username):
        raise DomainError("you can only see the timeline of your own calls", 403)
    readable = timeline.readable_by(entries, user.is_supervisor)
    return {"conference": name, "entries": [timeline.public(e) for e in readable]}


async def _stored_timeline(name: str) -> list[dict[str, Any]]:
    """The timeline rebuilt from the history's events (none without a database; 503
    when PostgreSQL is down)."""
    try:
        pool = get_pool()
    except HistoryUnavailable:
        return []
    try:
        return await queries.stored_timeline(pool, name)
    except OperationalError as error:
        log.warning("timeline of %s: history is unavailable: %s", name, error)
        raise DomainError("history is unavailable", 503) from None


@blueprint.get("/figures")
@validate_response(Figures)
@role_required("supervisor")
async def get_figures() -> dict[str, Any]:
    """Today's queue figures, today in CENTER_TIMEZONE; see console.domain.figures for
    each one's definition."""
    settings = get_settings()
    now, redis = now_ms(), get_redis()
    read = await figures.read(redis, now, settings.service_level_seconds, settings.center_zone)
    newcomer = await expected_wait.read(redis, None, now, settings.center_zone)
    return {**read, "expected_wait_ms": newcomer.expected_ms if newcomer else None}


class SignatureFailure(BaseModel):
    """A refused webhook request: nothing in it is text the sender chose."""

    route: str
    at: int
    reason: str
    client: str
    url: str


class WebhookHealth(BaseModel):
    last_request: dict[str, int]
    signature_failures: list[SignatureFailure]


@blueprint.get("/webhooks")
@validate_response(WebhookHealth)
@role_required("supervisor")
async def get_webhook_health() -> dict[str, Any]:
    """When Twilio last reached each webhook route and the recent signature failures
    (route, time, reason, client and the URL checked, never the query or the token):
    why a deployment "hears nothing"."""
    return await read_health(get_redis())
