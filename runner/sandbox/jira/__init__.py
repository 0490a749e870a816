"""The sandbox's Jira half: REST v3 under ``/ex/jira/{cloudId}/rest/api/3/...``.

``install`` registers the routes on the sandbox app and publishes the state in the World, so
tests read the effect of each call back from ``world.parts["jira"]``.
"""

from __future__ import annotations

from aiohttp import web

from runner.sandbox.world import World

__all__ = ["install"]

JIRA_PREFIX = "/ex/jira/{cloudId}/rest/api/3"


def install(app: web.Application, world: World) -> None:
    """Serve Jira on ``app``: every path under ``/ex/jira/{cloudId}/rest/api/3/``."""

    async def not_yet(request: web.Request) -> web.Response:
        return web.json_response({"errorMessages": ["Not found"]}, status=404)

    app.router.add_route("*", JIRA_PREFIX + "/{tail:.*}", not_yet)
    world.parts["jira"] = None
    world.reporters["jira"] = dict
