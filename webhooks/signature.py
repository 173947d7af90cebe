"""The X-Twilio-Signature check every webhook route goes through.

The URL is rebuilt from PUBLIC_BASE_URL, the path and the *raw* query string,
never from the Host or X-Forwarded-* headers (an attacker controls those) and
never from Quart's ``request.url`` (it re-encodes the query, breaking signatures).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import multidict
from quart import Response, request
from twilio.request_validator import RequestValidator, compare
from werkzeug.datastructures import MultiDict

from console import intake
from console.extension import get_settings

View = Callable[..., Awaitable[Any]]


def checked_url() -> str:
    """The URL Twilio signed, as this deployment is reached publicly."""
    settings = get_settings()
    query = request.query_string.decode("latin-1")
    return settings.public_base_url + request.path + (f"?{query}" if query else "")


async def signed_params() -> MultiDict[str, str] | None:
    """The request's parameters when its signature is valid and from our account."""
    settings = get_settings()
    params: MultiDict[str, str] = await request.form if request.method == "POST" else MultiDict()
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        await _note_refused("missing signature")
        return None
    if not signed(RequestValidator(settings.auth_token), checked_url(), params, signature):
        await _note_refused("signature does not match")
        return None
    account = params.get("AccountSid") or request.args.get("AccountSid")
    if account != settings.account_sid:
        await _note_refused("wrong account")
        return None
    return params


async def _note_refused(reason: str) -> None:
    """Keep a refused request for the webhook health panel: the matched route (one of
    the app's own paths, never the query), the URL checked without its query, the
    reason and the peer address; nothing else the sender chose."""
    rule = request.url_rule  # a webhook view always has one: only its routes get here
    route = rule.rule if rule is not None else "unknown"
    # The client's address: the peer's, or through TRUSTED_PROXY_HOPS the one the
    # proxy saw (warmline/proxies.py).
    client = request.remote_addr or "unknown"
    url = get_settings().public_base_url + route
    await intake.note_bad_signature(route, reason, client, url)


def signed(
    validator: RequestValidator, url: str, params: MultiDict[str, str], signature: str
) -> bool:
    """The twilio package's check, made cheap for the usual case: a request signed
    over ``url`` as it is (no port, or the one PUBLIC_BASE_URL names) is checked with
    one signature over a ``multidict.MultiDict`` (``validate`` signs twice, and looks
    up each parameter of a Werkzeug MultiDict the slow way). Any other signature
    still goes through ``validate``, port rules and all (docs/twilio.md)."""
    fields = multidict.MultiDict(params.items(multi=True))
    return compare(validator.compute_signature(url, fields), signature) or validator.validate(
        url, fields, signature
    )


def twilio_webhook(view: View) -> View:
    """Run ``view(params)`` only for a correctly signed request from our account;
    anything else gets 403 and changes nothing."""

    @wraps(view)
    async def checked(*args: Any, **kwargs: Any) -> Any:
        params = await signed_params()
        if params is None:
            return Response("403 Forbidden: invalid Twilio signature\n", 403, mimetype="text/plain")
        intake.note_webhook(request.path)
        return await view(params, *args, **kwargs)

    checked.__warmline_webhook__ = True  # type: ignore[attr-defined]
    return checked
