"""The app as Hypercorn serves it, behind TRUSTED_PROXY_HOPS proxies (SPEC §3, §11).

Hypercorn's own ProxyFixMiddleware (legacy mode) takes the client address from
X-Forwarded-For, the value that many hops from the right, so a client cannot choose
its address by sending the header itself; it also takes the scheme and Host from
X-Forwarded-Proto and -Host, which nothing in Warmline reads (webhook signatures are
checked against PUBLIC_BASE_URL). With 0 hops the headers are ignored.
"""

from __future__ import annotations

from hypercorn.middleware import ProxyFixMiddleware
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope
from quart import Quart

from console.extension import settings_of

WEBSOCKET_SCHEMES = {"http": "ws", "https": "wss"}


def served(app: Quart) -> ASGIFramework:
    """``app`` behind its settings' trusted proxies; ``app`` itself with none."""
    hops = settings_of(app).trusted_proxy_hops
    if not hops:
        return app
    return ProxyFixMiddleware(WebSocketScheme(app), mode="legacy", trusted_hops=hops)


class WebSocketScheme:
    """Undoes the middleware's one slip (pgjones/hypercorn#198): it gives a WebSocket
    the forwarded http(s) scheme, and Quart then routes the handshake as plain HTTP
    (400); ASGI says ws(s)."""

    def __init__(self, app: ASGIFramework) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "websocket" and scope["scheme"] in WEBSOCKET_SCHEMES:
            scope = {**scope, "scheme": WEBSOCKET_SCHEMES[scope["scheme"]]}
        await self.app(scope, receive, send)
