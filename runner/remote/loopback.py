"""The freshest system token, handed over loopback to jobs on this host: route and client.

A ``forge-runner serve`` process holds the system tokens Forge brings (``TokenStore``). A job
it runs itself, or a standalone ``forge-runner run`` on the same host whose config says
``system_token.serve = "http://127.0.0.1:PORT"``, asks this route for the token of one
installation. The route listens on 127.0.0.1 only, refuses any peer that is not loopback, and
wants the shared secret in ``X-Forge-Runner-Secret`` (compared in constant time).

    GET /system-token?installation=<installation ARI>
    200 {"token": "...", "expires_at": 1767225600}   the freshest token held (maybe expired:
                                                      the caller's provider judges and waits)
    404 {"error": "..."}                               none held yet for that installation
    401 / 403                                          wrong secret / not a loopback peer
"""

from __future__ import annotations

import hmac

import aiohttp
from aiohttp import web

from runner.errors import SystemTokenError
from runner.logs import register_secret
from runner.remote.settings import is_loopback
from runner.remote.tokens import TokenStore

PATH = "/system-token"
SECRET_HEADER = "X-Forge-Runner-Secret"


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


async def fetch_system_token(url: str, installation_id: str, secret: str,
                             environment: str) -> str:
    """The token the serve process at ``url`` holds for ``installation_id``; "" when it holds
    none yet. SystemTokenError when it can't be asked (down, wrong secret)."""
    where = f"the serve process at {url}"
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}{PATH}", params={"installation": installation_id},
                        headers={SECRET_HEADER: secret}, allow_redirects=False) as resp,
        ):
            if resp.status == 404:
                return ""
            if resp.status in (401, 403):
                raise SystemTokenError(environment, f"{where} refused us (HTTP {resp.status}; "
                                       "check the shared secret)")
            if resp.status != 200:
                raise SystemTokenError(environment, f"{where} answered HTTP {resp.status}")
            body = await resp.json()
    except aiohttp.ClientError as exc:
        raise SystemTokenError(environment, f"{where} is unreachable ({type(exc).__name__})") \
            from None
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str):
        raise SystemTokenError(environment, f"{where} answered without a token")
    register_secret(token)
    return token
