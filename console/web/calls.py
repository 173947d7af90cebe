"""The call history (docs/api.md, call history): the list of calls, one call with its
timeline, and the list as CSV, read from PostgreSQL (console/history/queries.py).
Supervisors see every call, agents the calls they were on; without a database, or
with it down, every route answers 503 ``history is unavailable``."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from psycopg import OperationalError
from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, validate_querystring
from quart_schema.validation import QuerystringValidationError

from console.domain.errors import BadRequest, NotFound
from console.extension import get_settings
from console.history import queries
from console.history.dates import parse_range
from console.ids import NAME, USERNAME, anchored
from console.postgres_ext import HistoryUnavailable, get_pool
from console.web.auth import current_user, login_required
from console.web.errors import error_response
from console.web.reports import TimelineEntry

log = logging.getLogger(__name__)

blueprint = Blueprint("calls", __name__, url_prefix="/api")

UNAVAILABLE = "history is unavailable"
# The CSV's columns: the call's JSON fields, in the same order; legs, transfers,
# recording and voicemail as compact JSON text.
CSV_COLUMNS = (
    "id",
    "kind",
    "from",
    "arrived_at",
    "answered_at",
    "answered_by",
    "ended_at",
    "outcome",
    "wait_ms",
    "talk_ms",
    "hold_ms",
    "legs",
    "transfers",
    "disposition",
    "notes",
    "recording",
    "voicemail",
)
# A text cell starting like a formula is one to a spreadsheet: such cells get a
# leading apostrophe (phone numbers such as +15550100 and negative numbers do not).
_FORMULA_START = ("=", "@", "\t", "\r", "+", "-")


# A date, or a date and time, optionally with its offset (the parser says what is wrong).
_DAY_OR_TIME = r"^\d{4}-\d{2}-\d{2}(T[0-9:.]{2,15}(Z|[+-]\d{2}:?\d{2})?)?$"


class ExportQuery(BaseModel):
    """Which calls (all filters optional; unknown parameters are refused). Typed ``str``
    with a None default, so the document gives each parameter its pattern plainly."""

    model_config = ConfigDict(extra="forbid")

    from_: str = Field(
        default=None,
        alias="from",
        pattern=_DAY_OR_TIME,
        description="first day (2026-03-08) or time (2026-03-08T09:30) in CENTER_TIMEZONE",
    )
    to: str = Field(
        default=None,
        pattern=_DAY_OR_TIME,
        description="last day (inclusive) or time in CENTER_TIMEZONE",
    )
    agent: str = Field(default=None, pattern=anchored(USERNAME), description="an agent on the call")
    number: str = Field(
        default=None, pattern=r"^[0-9+() .-]{1,40}$", description="digits of the caller's number"
    )
    outcome: str = Field(
        default=None,
        pattern=r"^[a-z-]{1,40}(,[a-z-]{1,40}){0,9}$",
        description="end reasons, comma-separated",
    )


class CallsQuery(ExportQuery):
    limit: str = Field(
        default=None,
        pattern=r"^[0-9]{1,4}$",
        description="calls per page (default 50, at most 500)",
    )
    cursor: str = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_=-]{1,400}$",
        description="the `next` of the previous page",
    )


class LegOut(BaseModel):
    agent: str
    role: str
    joined_at: int
    left_at: int | None
    hold_ms: int


class AudioOut(BaseModel):
    sid: str
    duration: int | None
    url: str


class CallOut(BaseModel):
    """A call of the history (SPEC §8 shapes)."""

    id: str
    kind: str
    from_: str | None = Field(alias="from")
    arrived_at: int
    answered_at: int | None
    answered_by: str | None
    ended_at: int | None
    outcome: str | None
    wait_ms: int | None
    talk_ms: int
    hold_ms: int
    legs: list[LegOut]
    transfers: list[dict[str, Any]]
    disposition: str | None
    notes: str | None
    recording: AudioOut | None
    voicemail: AudioOut | None


class CallsOut(BaseModel):
    """A page of calls, newest first; ``next`` fetches the following page."""

    calls: list[CallOut]
    next: str | None


class CallDetailOut(CallOut):
    """One call with its timeline (docs/api.md, timelines)."""

    timeline: list[TimelineEntry]


@blueprint.errorhandler(HistoryUnavailable)
@blueprint.errorhandler(OperationalError)
async def history_unavailable(error: Exception) -> Response:
    """No database configured, or PostgreSQL down or too slow: the client may try later."""
    log.warning("history: 503, %s: %s", type(error).__name__, error)
    return error_response(UNAVAILABLE, 503)


@blueprint.errorhandler(QuerystringValidationError)
async def bad_query(error: QuerystringValidationError) -> Response:
    """A bad query parameter, named (the app's handler would call it a body)."""
    cause = error.validation_error
    items = cause.errors() if callable(getattr(cause, "errors", None)) else []
    parts = [f"{'.'.join(str(p) for p in i.get('loc', ())) or 'query'}: {_say(i)}" for i in items]
    return error_response("; ".join(parts) or f"invalid query: {cause}", 400)


def _say(item: dict[str, Any]) -> str:
    """Pydantic's message, without the regular expression a mismatch would quote."""
    return (
        "not in the expected form" if item.get("type") == "string_pattern_mismatch" else item["msg"]
    )


@blueprint.get("/calls")
@document_response(CallsOut, 200)
@login_required
@validate_querystring(CallsQuery)
async def get_calls(query_args: CallsQuery) -> Response:
    """Calls, newest first, filtered, a page at a time."""
    chosen = _filter(query_args)
    after = None if query_args.cursor is None else queries.Cursor.decode(query_args.cursor)
    limit = queries.DEFAULT_LIMIT if query_args.limit is None else int(query_args.limit)
    if not 1 <= limit <= queries.MAX_LIMIT:
        raise BadRequest(f"limit: give 1 to {queries.MAX_LIMIT}")
    calls, more = await queries.list_calls(get_pool(), chosen, await _viewer(), limit, after)
    return jsonify({"calls": calls, "next": more.encode() if more else None})


@blueprint.get("/calls.csv")
@login_required
@validate_querystring(ExportQuery)
async def get_calls_csv(query_args: ExportQuery) -> Response:
    """Every call the filters select, as CSV (a header row, then newest first), streamed."""
    rows = queries.stream_calls(get_pool(), _filter(query_args), await _viewer())
    try:
        first = await anext(rows, [])  # a database down answers 503, before any byte
    except BaseException:
        await rows.aclose()
        raise
    response = Response(_csv_body(first, rows), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="calls.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.get("/calls/<call_id>")
@document_response(CallDetailOut, 200)
@login_required
async def get_call(call_id: str) -> Response:
    """One call with its legs, transfers, recording, voicemail and timeline.

    404 for a call an agent was not on, exactly as for an unknown id."""
    if not NAME.fullmatch(call_id):
        raise BadRequest("invalid call id")
    call = await queries.get_call(get_pool(), call_id, await _viewer())
    if call is None:
        raise NotFound(f"no call {call_id}")
    return jsonify(call)


def _filter(query_args: ExportQuery) -> queries.CallFilter:
    start, end = parse_range(query_args.from_, query_args.to, get_settings().center_zone)
    return queries.CallFilter(
        start=start,
        end=end,
        agent=query_args.agent,
        number=None if query_args.number is None else queries.parse_number(query_args.number),
        outcomes=() if query_args.outcome is None else queries.parse_outcomes(query_args.outcome),
    )


async def _viewer() -> queries.Viewer:
    user = await current_user()
    assert user is not None  # login_required guarantees it
    return queries.Viewer(user.username, user.is_supervisor)


async def _csv_body(
    first: list[dict[str, Any]], rest: AsyncIterator[list[dict[str, Any]]]
) -> AsyncIterator[bytes]:
    """The header row, then each chunk of calls as it is fetched."""
    try:
        yield _csv_lines([CSV_COLUMNS])
        if first:
            yield _csv_lines([_csv_row(call) for call in first])
        async for chunk in rest:
            yield _csv_lines([_csv_row(call) for call in chunk])
    finally:
        await rest.aclose()


def _csv_lines(rows: Iterable[Iterable[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()


def _csv_row(call: dict[str, Any]) -> list[str]:
    return [_csv_cell(call[column]) for column in CSV_COLUMNS]


def _csv_cell(value: Any) -> str:
    """null: empty; numbers as digits; lists and objects as compact JSON; text as is,
    but for text a spreadsheet would run as a formula."""
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    text = str(value)
    if text.startswith(_FORMULA_START) and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    return text[:1] in "+-" and text[1:].isdigit()
