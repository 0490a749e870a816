"""The sandbox's own routes, under ``/_sandbox/``: inspection and conveniences, not Atlassian's.

- ``GET /_sandbox/report``: ``World.report()`` as JSON (mints, Jira calls, 429s, faults, state).
- ``POST /_sandbox/system-token`` with ``{"environment": "dev", "ttl_s": 3600}`` (``ttl_s``
  optional): ``{"token": "..."}``, a system token the gateway accepts. Real system tokens only
  arrive on Forge invocations; this stands in for that so a shell or another process can mint.
- ``GET /_sandbox/arrivals?jira=N&mints=M``: the arrival logs (``arrivals.py``) from their
  ``N``-th and ``M``-th entries on (0 by default), ``{"jira": [...], "mints": [...]}``, for a
  test that reads them from another process; 404 while the sandbox is not logging them.
  (forge-runner's own code never calls it: it is how a test checks a run from the server's side.)
"""

from __future__ import annotations

from aiohttp import web

from runner.errors import ConfigError
from runner.sandbox.arrivals import to_json
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.world import World

WORLD_KEY = web.AppKey("forge_runner_sandbox_world", World)


def install(app: web.Application, world: World) -> None:
    app[WORLD_KEY] = world
    app.router.add_get("/_sandbox/report", _report)
    app.router.add_post("/_sandbox/system-token", _system_token)
    app.router.add_get("/_sandbox/arrivals", _arrivals)


async def _report(request: web.Request) -> web.Response:
    return web.json_response(request.app[WORLD_KEY].report())


async def _arrivals(request: web.Request) -> web.Response:
    world = request.app[WORLD_KEY]
    jira, mints = world.jira_arrivals, world.mint_arrivals
    if jira is None and mints is None:
        message = "the sandbox is not logging arrivals: set [sandbox] record_arrivals = true"
        return web.json_response({"error": message}, status=404)
    try:
        since_jira = int(request.query.get("jira", "0"))
        since_mints = int(request.query.get("mints", "0"))
    except ValueError:
        return _bad_request("jira and mints must be whole numbers (entries already read)")
    if since_jira < 0 or since_mints < 0:
        return _bad_request("jira and mints must be whole numbers (entries already read)")
    return web.json_response({
        "jira": [to_json(a) for a in (jira or [])[since_jira:]],
        "mints": [to_json(a) for a in (mints or [])[since_mints:]],
    })


async def _system_token(request: web.Request) -> web.Response:
    world = request.app[WORLD_KEY]
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("environment"), str):
        return _bad_request('expected a JSON object {"environment": NAME, "ttl_s": SECONDS}')
    ttl = body.get("ttl_s")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
        return _bad_request("ttl_s must be a positive whole number of seconds")
    try:
        token = issue_system_token(world.config, body["environment"], ttl_s=ttl, now=world.clock())
    except ConfigError as exc:
        return _bad_request(str(exc))
    return web.json_response({"token": token})


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)
