"""The freshest system token, handed over loopback to jobs on this host: the route.

A ``forge-runner serve`` process holds the system tokens Forge brings (``TokenStore``). A job
it runs itself, or a standalone ``forge-runner run`` on the same host whose config says
``system_token.serve = "http://127.0.0.1:PORT"``, asks this route for the token of one
installation. The route listens on 127.0.0.1 only, refuses any peer that is not loopback, and
wants the shared secret in ``X-Forge-Runner-Secret`` (compared in constant time). The
protocol and its client live in ``runner.tokenroute``, which the core uses without this server.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from runner.logs.redact import register_secret
from runner.remote.installation_tokens import TokenStore
from runner.tokenroute import PATH, SECRET_HEADER, is_loopback


def build_token_app(store: TokenStore, secret: str) -> web.Application:
    """The loopback application serving ``store``'s tokens to holders of ``secret``."""
    register_secret(secret)

    async def handle(request: web.Request) -> web.Response:
        if not is_loopback(request.remote or ""):
            return web.json_response({"error": "loopback callers only"}, status=403)
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            return web.json_response({"error": "wrong or missing secret"}, status=401)
        installation = request.query.get("installation", "")
        if not installation:
            return web.json_response({"error": "say ?installation=<ARI>"}, status=400)
        held = store.token(installation)
        if held is None:
            return web.json_response(
                {"error": f"no system token for {installation} yet"}, status=404
            )
        return web.json_response({"token": held.token, "expires_at": held.expires_at},
                                 headers={"Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get(PATH, handle)
    return app
