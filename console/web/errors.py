"""The one shape of every error on the API (``{"error": message}``), plain text for
Twilio and pages, and never a traceback."""

from __future__ import annotations

import logging

from quart import Quart, Response, has_websocket_context, jsonify, request, websocket
from quart_schema import RequestSchemaValidationError
from redis.exceptions import RedisError
from werkzeug.exceptions import BadRequest as WerkzeugBadRequest
from werkzeug.exceptions import HTTPException

from console.domain.errors import Contended, DomainError
from console.web.json_limits import TOO_DEEP, too_deep

log = logging.getLogger(__name__)


def error_response(message: str, status: int) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


def register_error_handlers(app: Quart) -> None:
    """JSON errors under /api, plain text for Twilio and pages; never a traceback."""

    @app.before_request
    async def refuse_undecodable_json() -> None:
        """Refuse, as the client's error, a JSON body that would fail under the parser
        rather than in it: one that is not UTF-8 (Quart raises UnicodeDecodeError) or
        nests deeper than MAX_JSON_DEPTH (RecursionError in the decoder or in
        validation). Reading the body enforces MAX_CONTENT_LENGTH (413) first. Only
        a JSON mimetype is ever parsed as JSON (``request.get_json``)."""
        if request.mimetype == "application/json" or request.mimetype.endswith("+json"):
            body = await request.get_data(as_text=False)
            try:
                body.decode()
            except UnicodeDecodeError:
                raise WerkzeugBadRequest(description="the body is not UTF-8 JSON") from None
            if too_deep(body):
                raise WerkzeugBadRequest(description=TOO_DEEP)

    @app.errorhandler(DomainError)
    async def domain_error(error: DomainError) -> Response:
        return error_response(error.message, error.status)

    @app.errorhandler(RequestSchemaValidationError)
    async def schema_error(error: RequestSchemaValidationError) -> Response:
        return error_response(f"invalid body: {_describe(error)}", 400)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        return _plain_or_json(status, error.name, error.description or error.name)

    @app.errorhandler(RecursionError)
    async def too_deep_to_handle(error: RecursionError) -> Response:
        """Defence in depth: input nested too deeply for Python that the JSON check
        did not catch is still the client's error, without a traceback."""
        log.warning("%s: 400, RecursionError: %s", _where(), error)
        return _plain_or_json(400, "Bad Request", "the request is nested too deeply")

    @app.errorhandler(RedisError)
    @app.errorhandler(Contended)
    async def state_unavailable(error: Exception) -> Response:
        """Redis down, its connections all busy past the wait, or a unit that kept
        losing races: nothing was written, so the client may simply try again."""
        log.warning("%s: 503, %s: %s", _where(), type(error).__name__, error)
        return _plain_or_json(503, "Service Unavailable", "state is unavailable; try again")


def _path() -> str:
    """The path asked for, by a request or a WebSocket handshake (to /healthz, say)."""
    return websocket.path if has_websocket_context() else request.path


def _where() -> str:
    return (
        f"WEBSOCKET {websocket.path}"
        if has_websocket_context()
        else f"{request.method} {request.path}"
    )


def _plain_or_json(status: int, name: str, description: str) -> Response:
    if _path().startswith("/api/"):
        return error_response(description, status)
    return Response(f"{status} {name}: {description}\n", status, mimetype="text/plain")


def _describe(error: RequestSchemaValidationError) -> str:
    cause = error.validation_error
    errors = getattr(cause, "errors", None)
    if callable(errors):
        parts = []
        for item in errors():
            where = ".".join(str(p) for p in item.get("loc", ())) or "body"
            parts.append(f"{where}: {item.get('msg', 'invalid')}")
        return "; ".join(parts)
    return str(cause)
