"""Reports over the call history (docs/api.md, reports): ``GET /api/reports`` and the
same rows as CSV, per hour, day or agent of days in CENTER_TIMEZONE, for supervisors
(console/history/reports.py computes them). Without a database, or with it down,
503 ``history is unavailable``, as for the calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from psycopg import OperationalError
from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, jsonify
from quart_schema import document_response, validate_querystring
from quart_schema.validation import QuerystringValidationError

from console.domain.events import now_ms
from console.extension import get_settings
from console.history import reports
from console.postgres_ext import HistoryUnavailable, get_pool
from console.web.auth import role_required
from console.web.calls import bad_query, history_unavailable

blueprint = Blueprint("call_reports", __name__, url_prefix="/api")
blueprint.register_error_handler(HistoryUnavailable, history_unavailable)
blueprint.register_error_handler(OperationalError, history_unavailable)
blueprint.register_error_handler(QuerystringValidationError, bad_query)

DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


class ReportQuery(BaseModel):
    """The range (inclusive days in CENTER_TIMEZONE, today when absent) and buckets.
    Typed ``str`` with a None default, so the document gives each its pattern plainly."""

    model_config = ConfigDict(extra="forbid")

    from_: str = Field(
        default=None, alias="from", pattern=DATE_PATTERN, description="first day, 2026-03-08"
    )
    to: str = Field(default=None, pattern=DATE_PATTERN, description="last day (included)")
    by: str = Field(
        default=None, pattern=r"^(hour|day|agent)$", description="hour, day (default) or agent"
    )


class ReportRow(BaseModel):
    """One bucket (SPEC §8 shapes); the agent fields only ``by=agent``."""

    bucket: str
    offered: int
    answered: int
    abandoned: int
    voicemails: int
    callbacks: int
    service_level: float | None
    wait_mean_ms: int | None
    wait_p90_ms: int | None
    handle_mean_ms: int | None
    transfers_succeeded: int
    transfers_failed: int
    handled: int | None = None
    missed: int | None = None
    occupancy: float | None = None
    break_ms: int | None = None


class ReportOut(BaseModel):
    from_: str = Field(alias="from")
    to: str
    by: str
    rows: list[ReportRow]


@blueprint.get("/reports")
@document_response(ReportOut, 200)
@role_required("supervisor")
@validate_querystring(ReportQuery)
async def get_reports(query_args: ReportQuery) -> Response:
    """Offered, answered, abandoned, service level, waits, handle time and transfers
    per hour, day or agent (then also handled, missed, occupancy, break time)."""
    return jsonify(await _report(query_args))


@blueprint.get("/reports.csv")
@role_required("supervisor")
@validate_querystring(ReportQuery)
async def get_reports_csv(query_args: ReportQuery) -> Response:
    """The same rows as CSV, a header row of the field names first, streamed."""
    answer = await _report(query_args)  # a database down answers 503, before any byte
    response = Response(_lines(answer), mimetype="text/csv")
    name = f"report-{answer['by']}-{answer['from']}-{answer['to']}.csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    return response


async def _report(query_args: ReportQuery) -> dict[str, Any]:
    settings = get_settings()
    zone = settings.center_zone
    chosen = reports.parse_range(
        query_args.from_, query_args.to, query_args.by, zone, datetime.now(zone).date()
    )
    threshold = settings.service_level_seconds * 1000
    return await reports.report(get_pool(), chosen, threshold, now_ms())


async def _lines(answer: dict[str, Any]) -> AsyncIterator[bytes]:
    for line in reports.csv_lines(answer):
        yield line.encode()
