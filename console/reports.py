"""Reports read from the projections: conference timelines and the queue figures
(SPEC §4). Placeholder blueprint until the timeline/figures work lands."""

from __future__ import annotations

from quart import Blueprint

blueprint = Blueprint("reports", __name__, url_prefix="/api")
