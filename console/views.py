"""The HTML pages: each user is sent to their view. (The live views themselves are
built on /api and /ws; these routes serve their shells.)"""

from __future__ import annotations

from quart import Blueprint, Response, redirect, render_template

from console.auth import current_user, page_login_required, page_role_required

blueprint = Blueprint("views", __name__)


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
