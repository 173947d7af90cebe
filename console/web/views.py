"""The HTML pages: each user is sent to their view. The live views themselves are
ES modules under /static/js built on /api and /ws; these routes serve their shells,
and the Twilio Voice SDK's browser bundle from the npm package (there is no CDN
since 2.0, and it is not committed: ``npm install`` puts it in node_modules/)."""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, redirect, render_template, send_file

from console.web.auth import current_user, page_login_required, page_role_required

blueprint = Blueprint("views", __name__)

VOICE_SDK = Path("node_modules", "@twilio", "voice-sdk", "dist", "twilio.min.js")
# An editable install (and `warmline demo` from a clone) finds the repo's
# node_modules; a deployment that installs the package runs from the app's root.
VENDOR_ROOTS = (Path(__file__).resolve().parents[2], Path.cwd())


def voice_sdk_path() -> Path | None:
    """Where ``npm install`` put the Voice SDK bundle, if it did."""
    for root in VENDOR_ROOTS:
        candidate = root / VOICE_SDK
        if candidate.is_file():
            return candidate
    return None


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
    return await render_template("agent.html", user=user)


@blueprint.get("/supervisor")
@page_role_required("supervisor")
async def get_supervisor() -> str:
    user = await current_user()
    return await render_template("supervisor.html", user=user)


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
    response = await send_file(path, mimetype="text/javascript")
    response.cache_control.public = True
    response.cache_control.max_age = 3600
    return response
