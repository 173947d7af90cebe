"""The application factory: one configured Quart app per call, so each test (and
each worker) gets its own settings, Redis client and Twilio gateway."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from quart import Quart, Response
from quart.sessions import SessionInterface
from quart_schema import QuartSchema

from console.config import Settings
from console.extension import SETTINGS_KEY
from console.history.retention import DailyPurge
from console.history.writer import HistoryWriter
from console.postgres_ext import PostgresExtension
from console.realtime.commit_feed import CommitFeed
from console.realtime.hub import Hub
from console.realtime.presence import Presence
from console.redis_ext import RedisExtension
from console.telephony.gateway import TwilioGateway
from console.telephony.reconcile import AutoReconcile
from console.telephony.runner import Runner
from console.web.errors import register_error_handlers
from console.web.json_limits import MAX_JSON_BYTES
from console.web.metrics import Metrics
from console.web.openapi import WarmlineOpenAPI
from warmline.assets import asset_dir
from warmline.history_process import writer_in_workers
from warmline.hypercorn_ws import decline_permessage_deflate

# The Voice JS SDK signals over wss to Twilio, reports to its insights gateway and
# plays its ringtones from sdk.twilio.com; nothing else leaves the origin.
TWILIO_CONNECT = "https://*.twilio.com wss://*.twilio.com"
TWILIO_MEDIA = "https://sdk.twilio.com"
# A request body must arrive within this many seconds of the app starting to read it,
# or the request gets 408 and Hypercorn closes the connection (SPEC §11): a trickled
# body cannot hold a connection. A route that answers without reading the body ends
# the connection when it answers (Hypercorn does not wait for the rest).
BODY_TIMEOUT_SECONDS = 10


class NoCookieSessions(SessionInterface):
    """Logins live in Redis behind Warmline's own cookie (console/web/auth.py), never
    in Quart's signed cookie session: not opening one spares every request (every
    webhook) building a signer. Quart's null session refuses any write to it."""

    async def open_session(self, app: Quart, request: object) -> None:
        return None

    async def save_session(self, app: Quart, session: object, response: object) -> None:
        return None


def content_security_policy(settings: Settings) -> str:
    """A strict policy: no inline script or style, no framing, own origin only, plus
    Twilio's endpoints for the softphone (or the simulator's in demo mode)."""
    connect = f"'self' {settings.simulator_url or TWILIO_CONNECT}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect}; media-src 'self' blob: data: {TWILIO_MEDIA}; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def create_app(
    settings: Settings | None = None,
    redis_url: str | None = None,
    database_url: str | None = None,
    history_writer: bool | None = None,
) -> Quart:
    """Build the app for ``settings`` (default: from the environment). With a database
    (``database_url``, else DATABASE_URL) it keeps the call history; without, the
    history routes answer 503. It runs a history writer of its own unless
    ``history_writer`` is false (default: unless `serve` runs one beside it)."""
    settings = settings or Settings.from_env()
    if database_url and database_url != settings.database_url:
        # Every part sees that history is on (the event log keeps what it has not stored).
        settings = dataclasses.replace(settings, database_url=database_url)
    decline_permessage_deflate()
    app = Quart(
        __name__,
        static_folder=asset_dir("static"),
        template_folder=asset_dir("templates"),
    )
    app.config[SETTINGS_KEY] = settings
    app.secret_key = settings.secret_key
    app.session_interface = NoCookieSessions()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        MAX_CONTENT_LENGTH=MAX_JSON_BYTES,
        BODY_TIMEOUT=BODY_TIMEOUT_SECONDS,
    )
    QuartSchema(
        app,
        openapi_path="/openapi.json",
        swagger_ui_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
        info={
            "title": "Warmline",
            "version": "0.1.0",
            "description": "Every call needs the session cookie warmline_session from "
            "POST /login; state-changing calls take JSON bodies.",
        },
        openapi_provider_class=WarmlineOpenAPI,
    )
    app.make_response = responses_as_they_are(app.make_response)  # type: ignore[method-assign]
    # The runner comes first: after_serving hooks run in this order, and it must
    # drain its REST actions while Redis and the Twilio client are still open.
    Runner(app)

    async def stop_reconcile() -> None:
        # Reconcile starts after Redis and the gateway (it needs both to start) but
        # must stop before they close: a run cut off by a closed pool would wait for
        # a connection for seconds, stalling the app's shutdown.
        await AutoReconcile.of(app).stop()

    app.after_serving(stop_reconcile)
    if settings.database_url:  # stops before the clients it uses close
        if writer_in_workers() if history_writer is None else history_writer:
            HistoryWriter(
                lambda: RedisExtension.of(app).client, lambda: PostgresExtension.of(app).pool, app
            )
        DailyPurge(
            lambda: RedisExtension.of(app).client,
            lambda: PostgresExtension.of(app).pool,
            lambda sid: TwilioGateway.of(app).delete_recording(sid),
            settings.history_retention_days,
            settings.center_zone,
            app,
        )
    RedisExtension(
        app,
        url=redis_url or settings.redis_url,
        max_connections=settings.redis_max_connections,
        tls_verify=settings.redis_tls_verify,
    )
    TwilioGateway(app, settings)
    database_url = database_url or settings.database_url
    if database_url:
        PostgresExtension(app, url=database_url)
    Hub(app)
    Presence(app)
    CommitFeed(app)
    Metrics(app)
    AutoReconcile(app)  # after Redis and the gateway: it uses both at start-up
    _register_blueprints(app)
    register_error_handlers(app)
    app.after_request(security_headers(settings))
    return app


def _register_blueprints(app: Quart) -> None:
    from console.web.api import blueprint as api
    from console.web.auth import blueprint as auth
    from console.web.call_reports import blueprint as call_reports
    from console.web.callbacks import blueprint as callbacks
    from console.web.calls import blueprint as calls
    from console.web.directory import blueprint as directory
    from console.web.health import blueprint as health
    from console.web.help import blueprint as help_requests
    from console.web.recordings import blueprint as recordings
    from console.web.reports import blueprint as reports
    from console.web.views import blueprint as views
    from console.web.voicemails import blueprint as voicemails
    from console.web.wrap_up import blueprint as wrap_up
    from console.web.ws import blueprint as ws
    from webhooks.routes import blueprint as webhooks

    blueprints = (
        webhooks,
        api,
        reports,
        calls,
        call_reports,
        recordings,
        voicemails,
        callbacks,
        wrap_up,
        help_requests,
        directory,
        auth,
        views,
        health,
        ws,
    )
    for blueprint in blueprints:
        app.register_blueprint(blueprint)


def responses_as_they_are(
    make_response: Callable[[object], Awaitable[Response]],
) -> Callable[[object], Awaitable[Response]]:
    """Wraps quart_schema's make_response: a view's own Response (every webhook's) goes
    out as Quart would send it, skipping a conversion that returns it unchanged;
    anything else is converted as before."""

    async def make(result: object) -> Response:
        if type(result) is Response:
            return result
        return await make_response(result)

    return make


def security_headers(settings: Settings) -> Callable[[Response], Awaitable[Response]]:
    """The after-request hook setting the security headers every answer carries (a
    view's own take precedence), worked out once for the app's settings."""
    defaults = {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
    }
    if settings.secure_cookies:
        defaults["Strict-Transport-Security"] = "max-age=31536000"

    async def add(response: Response) -> Response:
        headers = response.headers
        for name, value in defaults.items():
            headers.setdefault(name, value)
        return response

    return add
