"""The page shells and their static files (no browser): each view loads its ES module,
nothing inline that the CSP would block, every referenced asset is served, and the
Twilio Voice SDK bundle comes from node_modules or a clear 404."""

from __future__ import annotations

import re

import pytest

from console.web import views
from tests.support.flow_helpers import login
from warmline.assets import asset_dir

STATIC = asset_dir("static")


async def test_each_user_gets_their_view_with_its_module(app, redis) -> None:
    alice = await login(app, redis, "alice")
    sam = await login(app, redis, "sam", role="supervisor")
    page = await (await alice.get("/agent")).get_data(as_text=True)
    assert '<script type="module" src="/static/js/agent.js">' in page
    assert 'data-username="alice"' in page
    board = await (await sam.get("/supervisor")).get_data(as_text=True)
    assert '<script type="module" src="/static/js/supervisor.js">' in board
    assert (await alice.get("/supervisor")).status_code == 403
    assert (await alice.get("/")).headers["Location"] == "/agent"
    assert (await sam.get("/")).headers["Location"] == "/supervisor"


async def test_pages_have_nothing_inline_and_every_asset_is_served(app, redis) -> None:
    sam = await login(app, redis, "sam", role="supervisor")
    alice = await login(app, redis, "alice")
    pages = (
        (alice, "/agent"),
        (sam, "/supervisor"),
        (sam, "/history"),
        (sam, "/reports"),
        (app.test_client(), "/login"),
    )
    for client, path in pages:
        page = await (await client.get(path)).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), f"inline script in {path}"
        assert "<style" not in page and " style=" not in page, path
        assert not re.search(r"\son[a-z]+=", page), f"inline handler in {path}"
        for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
            response = await client.get(asset)
            assert response.status_code == 200, asset


async def test_history_and_reports_are_supervisor_pages_linked_from_the_console(app, redis) -> None:
    alice = await login(app, redis, "alice")
    sam = await login(app, redis, "sam", role="supervisor")
    for path, module in (("/history", "history"), ("/reports", "reports")):
        page = await (await sam.get(path)).get_data(as_text=True)
        assert f'<script type="module" src="/static/js/{module}.js">' in page
        assert f'<a href="{path}" aria-current="page">' in page
        assert 'id="connection"' not in page  # no live socket on these pages
        assert (await alice.get(path)).status_code == 403
        anonymous = await app.test_client().get(path)
        assert anonymous.status_code == 303
        assert anonymous.headers["Location"] == f"/login?next=%2F{path[1:]}"
    board = await (await sam.get("/supervisor")).get_data(as_text=True)
    live = '<a href="/supervisor" aria-current="page">'
    for link in ('href="/history"', 'href="/reports"', live):
        assert link in board
    reports = await (await sam.get("/reports")).get_data(as_text=True)
    assert '<link rel="stylesheet" href="/vendor/uplot.min.css">' in reports
    agent_page = await (await alice.get("/agent")).get_data(as_text=True)
    assert 'href="/history"' not in agent_page  # agents have no history page
    assert 'id="recent-calls"' in agent_page


async def test_modules_import_only_served_siblings() -> None:
    scripts = sorted((STATIC / "js").glob("*.js"))
    assert {p.name for p in scripts} >= {"agent.js", "supervisor.js", "ws.js", "model.js"}
    for script in scripts:
        text = script.read_text()
        for target in re.findall(r'from "(\.[^"]+)"', text):
            assert (script.parent / target).is_file(), f"{script.name} imports {target}"
        assert ".innerHTML" not in text and "eval(" not in text, script.name


async def test_js_is_served_as_javascript(app) -> None:
    response = await app.test_client().get("/static/js/agent.js")
    assert response.status_code == 200
    assert response.mimetype in ("text/javascript", "application/javascript")


async def test_voice_sdk_is_served_from_node_modules(app, tmp_path, monkeypatch) -> None:
    bundle = tmp_path / views.VOICE_SDK
    bundle.parent.mkdir(parents=True)
    bundle.write_text("window.Twilio = {Device: function () {}};")
    monkeypatch.setattr(views, "VENDOR_ROOTS", (tmp_path,))
    response = await app.test_client().get("/vendor/twilio.min.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert "Twilio" in await response.get_data(as_text=True)


async def test_voice_sdk_missing_is_a_clear_404(app, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(views, "VENDOR_ROOTS", (tmp_path,))
    response = await app.test_client().get("/vendor/twilio.min.js")
    assert response.status_code == 404
    assert "npm install" in await response.get_data(as_text=True)


@pytest.mark.skipif(
    views.vendor_path(views.UPLOT["uplot.esm.js"][0]) is None,
    reason="`npm install` has not been run",
)
async def test_uplot_is_served_from_node_modules(app) -> None:
    script = await app.test_client().get("/vendor/uplot.esm.js")
    assert script.status_code == 200
    assert script.mimetype == "text/javascript"
    assert "export { uPlot as default }" in await script.get_data(as_text=True)
    style = await app.test_client().get("/vendor/uplot.min.css")
    assert style.status_code == 200
    assert style.mimetype == "text/css"


async def test_uplot_missing_is_a_clear_404(app, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(views, "VENDOR_ROOTS", (tmp_path,))
    for path in ("/vendor/uplot.esm.js", "/vendor/uplot.min.css"):
        response = await app.test_client().get(path)
        assert response.status_code == 404
        assert "npm install" in await response.get_data(as_text=True)


@pytest.mark.skipif(views.voice_sdk_path() is None, reason="`npm install` has not been run")
async def test_installed_voice_sdk_is_2x(app) -> None:
    response = await app.test_client().get("/vendor/twilio.min.js")
    assert response.status_code == 200
    package = views.voice_sdk_path().parents[1] / "package.json"  # type: ignore[union-attr]
    assert '"version": "2.' in package.read_text()
