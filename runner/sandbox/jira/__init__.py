"""The sandbox's Jira half: REST v3 under ``/ex/jira/{cloudId}/rest/api/3/...``.

``install`` registers the routes on the sandbox app and publishes the state in the World, so
tests read the effect of each call back from ``world.parts["jira"]`` (a ``JiraState``) and the
inspection report carries it under ``"jira"``; ``world.parts["jira.faults"]`` is the
``FaultPlan``.
"""

from __future__ import annotations

from aiohttp import web

from runner.sandbox.jira.service import JiraService
from runner.sandbox.jira.state import JiraState
from runner.sandbox.world import World

__all__ = ["JIRA_PREFIX", "JiraService", "JiraState", "install"]

JIRA_PREFIX = "/ex/jira/{cloudId}/rest/api/3"


def install(app: web.Application, world: World) -> None:
    """Serve Jira on ``app``: every path under ``/ex/jira/{cloudId}/rest/api/3/``."""
    service = JiraService(world)
    app.router.add_route("*", JIRA_PREFIX + "/{tail:.*}", service.handle)
    world.parts["jira"] = service.state
    # A test turns faults on or off between runs by replacing its ``faults``.
    world.parts["jira.faults"] = service.faults
    world.reporters["jira"] = service.state.snapshot
