"""The HTML pages: each user is sent to their view; supervisors also get the call
history and the reports. The views themselves are ES modules under /static/js built
on /api and /ws; these routes serve their shells, and the browser bundles of npm
packages (not committed: ``npm install`` puts them in node_modules/): the Twilio
Voice SDK (there is no CDN since 2.0) and uPlot, which draws the reports' charts."""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, redirect, render_template, send_file

from console.extension import get_settings
from console.web.auth import current_user, page_login_required, page_role_required

blueprint = Blueprint("views", __name__)

VOICE_SDK = Path("node_modules", "@twilio", "voice-sdk", "dist", "twilio.min.js")
# /vendor/<name> -> (the file npm installs, its type): uPlot as an ES module and its CSS.
UPLOT = {
    "uplot.esm.js": (Path("node_modules", "uplot", "dist", "uPlot.esm.js"), "text/javascript"),
    "uplot.min.css": (Path("node_modules", "uplot", "dist", "uPlot.min.css"), "text/css"),
}
# libphonenumber-js's browser bundle (sets globalThis.libphonenumber): static/js/ui.js
# formats every country's numbers with it.
LIBPHONENUMBER = Path("node_modules", "libphonenumber-js", "bundle", "libphonenumber-min.js")
# An editable install (and `warmline demo` from a clone) finds the repo's
# node_modules; a deployment that installs the package runs from the app's root.
VENDOR_ROOTS = (Path(__file__).resolve().parents[2], Path.cwd())


def vendor_path(relative: Path) -> Path | None:
    """Where ``npm install`` put a package's file, if it did."""
    for root in VENDOR_ROOTS:
        candidate = root / relative
        if candidate.is_file():
            return candidate
    return None


def voice_sdk_path() -> Path | None:
    """Where ``npm install`` put the Voice SDK bundle, if it did."""
    return vendor_path(VOICE_SDK)


@blueprint.get("/")
@page_login_required
async def get_home() -> Response:
    user = await current_user()
    assert user is not None
    return redirect("/supervisor" if user.is_supervisor else "/agent", 303)


@blueprint.get("/agent")
@page_login_required
async def get_agent() -> str:
    user = await current_user()
    return await render_template("agent.html", user=user, timezone=get_settings().center_timezone)


@blueprint.get("/supervisor")
@page_role_required("supervisor")
async def get_supervisor() -> str:
    user = await current_user()
    return await render_template(
        "supervisor.html", user=user, timezone=get_settings().center_timezone
    )


@blueprint.get("/history")
@page_role_required("supervisor")
async def get_history() -> str:
    """Past calls: search, a call's legs, transfers, timeline and recording, CSV."""
    user = await current_user()
    return await render_template("history.html", user=user, timezone=get_settings().center_timezone)


@blueprint.get("/reports")
@page_role_required("supervisor")
async def get_reports() -> str:
    """Charts and tables over days of the history (GET /api/reports), with CSV."""
    user = await current_user()
    return await render_template("reports.html", user=user, timezone=get_settings().center_timezone)


@blueprint.get("/vendor/twilio.min.js")
async def get_voice_sdk() -> Response:
    """The Twilio Voice JS SDK 2.x bundle (sets ``window.Twilio.Device``)."""
    path = voice_sdk_path()
    if path is None:
        message = (
            "// The Twilio Voice SDK is not installed: run `npm install` in the Warmline\n"
            "// directory (package.json depends on @twilio/voice-sdk), then reload.\n"
        )
        return Response(message, 404, content_type="text/javascript; charset=utf-8")
    return await _vendor_file(path, "text/javascript")


@blueprint.get("/vendor/uplot.esm.js")
async def get_uplot() -> Response:
    """uPlot (the reports' charts): an ES module that draws on a canvas and styles its
    elements through the CSSOM only, so the strict CSP needs no exception for it."""
    return await _uplot_file("uplot.esm.js")


@blueprint.get("/vendor/uplot.min.css")
async def get_uplot_css() -> Response:
    return await _uplot_file("uplot.min.css")


@blueprint.get("/vendor/libphonenumber.js")
async def get_libphonenumber() -> Response:
    path = vendor_path(LIBPHONENUMBER)
    if path is None:
        message = "// libphonenumber-js is not installed: run `npm install`.\n"
        return Response(message, 404, content_type="text/javascript; charset=utf-8")
    return await _vendor_file(path, "text/javascript")


async def _uplot_file(name: str) -> Response:
    relative, mimetype = UPLOT[name]
    path = vendor_path(relative)
    if path is None:
        message = "uPlot is not installed: run `npm install` (package.json depends on uplot).\n"
        return Response(message, 404, content_type="text/plain; charset=utf-8")
    return await _vendor_file(path, mimetype)


async def _vendor_file(path: Path, mimetype: str) -> Response:
    response = await send_file(path, mimetype=mimetype)
    response.cache_control.public = True
    response.cache_control.max_age = 3600
    return response
