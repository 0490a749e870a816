"""A loopback proxy in front of the sandbox's gateway that answers chosen mints itself (an HTML
page, as a misconfigured corporate proxy would, or any answer a test gives) and counts the mints
that reached it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

HTML = "<html><body><h1>Access denied</h1><p>Your request was blocked.</p></body></html>"


# The proxy's own answer to a mint (or a coroutine giving it, which may never finish: a hung
# gateway), or None to forward it: called with the mint's userId and the count of mints so far.
Answer = Callable[[str, int], web.Response | Awaitable[web.Response] | None]


@dataclass
class GatewayProxy:
    url: str
    answer: Answer
    mints: Counter[str] = field(default_factory=Counter)  # by userId


def html_page() -> web.Response:
    return web.Response(status=200, text=HTML, content_type="text/html")


@asynccontextmanager
async def html_proxy(target: str, html_for: Callable[[str, int], bool]) -> AsyncIterator[
        GatewayProxy]:
    """A proxy to the gateway at ``target``; mints ``html_for`` picks get a 200 HTML page."""
    async with answering_proxy(
        target, lambda user, count: html_page() if html_for(user, count) else None
    ) as proxy:
        yield proxy


@asynccontextmanager
async def answering_proxy(target: str, answer: Answer) -> AsyncIterator[GatewayProxy]:
    """A proxy to the gateway at ``target``; a mint ``answer`` answers gets that answer."""
    proxy = GatewayProxy("", answer)
    async with aiohttp.ClientSession() as session:

        async def forward(request: web.Request) -> web.Response:
            body = await request.read()
            user = str(json.loads(body)["variables"]["input"]["userId"])
            proxy.mints[user] += 1
            own = proxy.answer(user, sum(proxy.mints.values()))
            if isinstance(own, web.Response):
                return own
            if own is not None:
                return await own
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


async def hang() -> web.Response:
    """An answer that never comes, as from a gateway that accepted the connection and hung."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def closed_port_url() -> str:
    """A gateway URL on a loopback port nothing listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/graphql"
