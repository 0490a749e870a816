"""The freshest system token, handed over loopback to jobs on this host: the route.

A ``forge-runner serve`` process holds the system tokens Forge brings (``TokenStore``). A job
it runs itself, or a standalone ``forge-runner run`` on the same host whose config says
``system_token.serve = "http://127.0.0.1:PORT"``, asks this route for the token of one
installation, and tells it when the gateway refused that token (so it is dropped here too, not
only by the run). The route listens on 127.0.0.1 only, refuses any peer that is not loopback,
and wants the shared secret in ``X-Forge-Runner-Secret`` (compared in constant time). The
protocol and its client live in ``runner.tokenroute``, which the core uses without this server.
"""

from __future__ import annotations

import hmac
import json
import re

from aiohttp import web

from runner.logs.redact import register_secret
from runner.remote.installation_tokens import TokenStore
from runner.tokenroute import PATH, REFUSED_PATH, SECRET_HEADER, is_loopback

# A refusal's body is two short strings; anything much bigger is not one.
MAX_REFUSAL_BYTES = 4096
_DIGEST = re.compile(r"[0-9a-f]{64}")


def build_token_app(store: TokenStore, secret: str) -> web.Application:
    """The loopback application serving ``store``'s tokens to holders of ``secret``."""
    register_secret(secret)
    expected = secret.encode()

    def refusal(request: web.Request) -> web.Response | None:
        """The answer for a caller that may not use the route, or None when it may."""
        if not is_loopback(request.remote or ""):
            return web.json_response({"error": "loopback callers only"}, status=403)
        try:
            given = request.headers.get(SECRET_HEADER, "").encode()
        except UnicodeEncodeError:
            # Bytes that are not UTF-8 arrive as surrogates: not the secret, whatever they are.
            given = b""
        if not given or not hmac.compare_digest(given, expected):
            return web.json_response({"error": "wrong or missing secret"}, status=401)
        return None

    async def handle(request: web.Request) -> web.Response:
        refused = refusal(request)
        if refused is not None:
            return refused
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

    async def handle_refused(request: web.Request) -> web.Response:
        refused = refusal(request)
        if refused is not None:
            return refused
        wanted = 'a JSON object {"installation": "<ARI>", "digest": "<SHA-256 hex>"}'
        raw = await request.content.read(MAX_REFUSAL_BYTES + 1)
        if len(raw) > MAX_REFUSAL_BYTES:
            return web.json_response({"error": f"expected {wanted}, found a larger body"},
                                     status=400)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            # RecursionError: nested past the parser's depth.
            return web.json_response({"error": f"expected {wanted}, found no JSON"},
                                     status=400)
        installation = body.get("installation") if isinstance(body, dict) else None
        digest = body.get("digest") if isinstance(body, dict) else None
        if not (isinstance(installation, str) and installation and isinstance(digest, str)
                and _DIGEST.fullmatch(digest)):
            return web.json_response({"error": f"expected {wanted}"}, status=400)
        store.refuse(installation, digest)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get(PATH, handle)
    app.router.add_post(REFUSED_PATH, handle_refused)
    return app
