"""A loopback proxy in front of the sandbox's gateway that answers chosen mints with an HTML
page, as a misconfigured corporate proxy would, and counts the mints that reached it."""

from __future__ import annotations

import json
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

HTML = "<html><body><h1>Access denied</h1><p>Your request was blocked.</p></body></html>"


@dataclass
class GatewayProxy:
    url: str
    # Which mints get the HTML page: called with the mint's userId and the count so far.
    html_for: Callable[[str, int], bool]
    mints: Counter[str] = field(default_factory=Counter)  # by userId


@asynccontextmanager
async def html_proxy(target: str, html_for: Callable[[str, int], bool]) -> AsyncIterator[
        GatewayProxy]:
    """A proxy to the gateway at ``target``; mints ``html_for`` picks get a 200 HTML page."""
    proxy = GatewayProxy("", html_for)
    async with aiohttp.ClientSession() as session:

        async def forward(request: web.Request) -> web.Response:
            body = await request.read()
            user = str(json.loads(body)["variables"]["input"]["userId"])
            proxy.mints[user] += 1
            if proxy.html_for(user, sum(proxy.mints.values())):
                return web.Response(status=200, text=HTML, content_type="text/html")
            sent = {k: v for k, v in request.headers.items()
                    if k.lower() in ("authorization", "content-type", "accept")}
            async with session.post(target, data=body, headers=sent) as answer:
                return web.Response(status=answer.status, body=await answer.read(),
                                    content_type="application/json")

        app = web.Application()
        app.router.add_post("/graphql", forward)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port = runner.addresses[0][1]
            proxy.url = f"http://127.0.0.1:{port}/graphql"
            yield proxy
        finally:
            await runner.cleanup()


def closed_port_url() -> str:
    """A gateway URL on a loopback port nothing listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/graphql"
