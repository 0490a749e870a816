"""``GET /metrics``, ``/status``, ``/status.json`` and ``/status/chart.svg`` on aiohttp.

``/metrics`` answers anyone who can reach the port (counts and budgets, never an account ID or
a token). The status page shows account IDs, rows and Jira's messages, so it answers loopback
clients only, unless an operator token is configured: then a request from elsewhere passes
with ``Authorization: Bearer <operator token>`` (a reverse proxy in front adds it), and is
refused with 403 otherwise.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from runner.monitor.page import chart_svg, page
from runner.monitor.snapshot import snapshot
from runner.monitor.subscriber import Monitor
from runner.tokenroute import is_loopback

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# No page of ours is framed, cached or sniffed into something else.
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
           "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
           "style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'"}


def add_monitor_routes(app: web.Application, monitor: Monitor,
                       operator_token: str | None = None) -> None:
    """Serve ``monitor`` on ``app``."""

    async def metrics(request: web.Request) -> web.StreamResponse:
        await monitor.refresh()
        body = generate_latest(monitor.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST,
                                                "Cache-Control": "no-store"})

    def guarded(handler: Handler) -> Handler:
        async def check(request: web.Request) -> web.StreamResponse:
            if not _allowed(request, operator_token):
                return web.Response(status=403, text="the status page answers loopback "
                                    "clients, or a request with the operator token\n")
            return await handler(request)

        return check

    async def status(request: web.Request) -> web.StreamResponse:
        return web.Response(text=page(), content_type="text/html", headers=HEADERS)

    async def status_json(request: web.Request) -> web.StreamResponse:
        await monitor.refresh()
        return web.Response(text=json.dumps(snapshot(monitor)), content_type="application/json",
                            headers=HEADERS)

    async def chart(request: web.Request) -> web.StreamResponse:
        return web.Response(text=chart_svg(monitor.chart, monitor.clock.now()),
                            content_type="image/svg+xml", headers=HEADERS)

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", guarded(status))
    app.router.add_get("/status.json", guarded(status_json))
    app.router.add_get("/status/chart.svg", guarded(chart))


def _allowed(request: web.Request, operator_token: str | None) -> bool:
    if request.remote is not None and is_loopback(request.remote):
        return True
    if not operator_token:
        return False
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {operator_token}".encode())


@asynccontextmanager
async def serve_monitor(monitor: Monitor, port: int) -> AsyncIterator[str]:
    """Serve /metrics and /status on 127.0.0.1:``port`` (0: a free one) until the block ends;
    yields the base URL. ``run``'s ``--metrics-port``."""
    app = web.Application()
    add_monitor_routes(app, monitor)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        host, bound = runner.addresses[0][:2]
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()
