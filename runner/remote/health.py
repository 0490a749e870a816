"""``GET /healthz`` and ``GET /readyz``: what a load balancer asks a serve replica.

``/healthz`` answers 200 while the process serves at all. ``/readyz`` answers 200 only when the
replica can do its work: the JWKS that verifies Forge's invocations is loaded (fetched now if it
never was), and, on a PostgreSQL journal, the database answers. Otherwise 503 with one line of
JSON saying why. Both are unauthenticated and carry nothing secret: no URL, no key, no token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from runner.remote.fit import JwksCache

Ping = Callable[[], Awaitable[str | None]]


def add_health_routes(app: web.Application, jwks: JwksCache, ping: Ping | None) -> None:
    """``ping``: None when the database answers, else why not (None itself: no database)."""

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(request: web.Request) -> web.Response:
        if ping is not None:
            problem = await ping()
            if problem is not None:
                return web.json_response({"ready": False, "reason": problem}, status=503)
        if not await jwks.loaded():
            return web.json_response({"ready": False, "reason": "JWKS not loaded"}, status=503)
        return web.json_response({"ready": True})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
