"""One Jira request, end to end: site, route, faults, token, limits, shape, then the endpoint.

The order is the order a real request meets them: an unknown site or path is refused before
anything else, faults strike at the edge (or, for ``after_effect`` draws, once the write is
done), a bad token is refused before any quota is spent, limits apply before the body is read
for meaning, and only a request that passed everything reaches the endpoint.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from runner.sandbox.arrivals import JiraArrival, marker_of
from runner.sandbox.jira import activity, issues, jql, limits, properties
from runner.sandbox.jira.base import Call, JiraError, Route, Router
from runner.sandbox.jira.faults import Draw, FaultPlan
from runner.sandbox.jira.state import JiraState
from runner.sandbox.jira.validation import make_validator
from runner.sandbox.world import World

API = "/rest/api/3"
ROUTES = [*issues.ROUTES, *activity.ROUTES, *properties.ROUTES, *jql.ROUTES]


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    if body is None:
        return web.Response(status=status, headers=headers)
    return web.json_response(body, status=status, headers=headers)


def _error(status: int, *messages: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return _json(status, {"errorMessages": list(messages), "errors": {}}, headers)


class JiraService:
    def __init__(self, world: World) -> None:
        config = world.config
        self.world = world
        self.state = JiraState(config, world.clock())
        self.router = Router(ROUTES)
        self.validator = make_validator(config.spec_dir)
        self.limits = limits.RateLimits(config.jira_limits, world.clock)
        self.faults = FaultPlan(config.faults, config.seed)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        cloud_id = request.match_info["cloudId"]
        if self.world.config.site_by_cloud_id(cloud_id) is None:
            return _error(404, f"No Jira site with cloud ID {cloud_id}.")
        found = self.router.match(request.method, "/" + request.match_info["tail"])
        if found is None:
            return _error(404, f"No {request.method} operation at {request.path}.")
        route, params = found
        self.world.jira_calls[route.name] += 1
        arrival = await self._arrival(request, cloud_id, route, params)
        draw = self.faults.draw(cloud_id, request.method, request.path)
        if draw.latency_s > 0:
            await asyncio.sleep(draw.latency_s)
        if draw.kind is not None and not draw.after_effect:
            return self._answered(arrival, self._fault(request, draw))
        response = await self._serve(request, cloud_id, route, params, draw, arrival)
        if draw.kind is not None:  # after the effect: the work is done, its answer is lost
            return self._answered(arrival, self._fault(request, draw))
        return self._answered(arrival, response)

    async def _arrival(self, request: web.Request, cloud_id: str, route: Route,
                       params: dict[str, str]) -> JiraArrival | None:
        """Log the request's arrival (when the log is on) and return its entry."""
        world = self.world
        if world.jira_arrivals is None:
            return None
        # Read here only when logging: aiohttp keeps the body, so `_serve` reads the same bytes.
        raw = await request.read() if request.can_read_body else b""
        arrival = JiraArrival(
            world.clock(), cloud_id, route.name, params.get("issueIdOrKey"),
            path=request.path, sender=request.headers.get("User-Agent"),
            account=world.token_account(request.headers.get("Authorization", ""), cloud_id),
            marker=marker_of(raw),
        )
        world.record_arrival(arrival)
        return arrival

    @staticmethod
    def _answered(arrival: JiraArrival | None, response: web.Response) -> web.Response:
        if arrival is not None:
            arrival.status = response.status
        return response

    async def _serve(
        self, request: web.Request, cloud_id: str, route: Route, params: dict[str, str],
        draw: Draw, arrival: JiraArrival | None,
    ) -> web.Response:
        caller = self._caller(request, cloud_id)
        if isinstance(caller, web.Response):
            return caller
        site = self.state.site(cloud_id)
        cfg = self.world.config.jira_limits
        warn: dict[str, str] = {}
        if cfg.enabled:
            issue_key = None
            if route.issue_write:
                issue = site.find(params["issueIdOrKey"])
                issue_key = issue.key if issue else params["issueIdOrKey"].upper()
            hit = self.limits.admit(cloud_id, route.name, request.method, issue_key)
            if hit is not None:
                if cfg.beta_headers:
                    warn = limits.beta(self.limits.limited_headers(hit))
                else:
                    return self._limited(hit, draw)
        raw = await request.read()
        invalid = self.validator.check(
            route.name, API + "/" + request.match_info["tail"], request.query, raw,
            request.content_type if raw else "",
        )
        call = Call(
            state=self.state,
            site=site,
            caller=caller,
            params=params,
            query=request.query,
            body=json.loads(raw) if raw and invalid is None and route.method != "GET" else None,
            base=f"{request.url.origin()}/ex/jira/{cloud_id}{API}",
            now=self.world.clock(),
        )
        if invalid is not None:
            status, body = invalid.status, invalid.body()
        else:
            try:
                reply = route.endpoint(call)
                status, body = reply.status, reply.body
            except JiraError as exc:
                status, body = exc.status, exc.body()
        if arrival is not None and invalid is None and status < 300:
            arrival.applied = True
            if route.method == "POST" and not route.is_read and isinstance(body, dict) \
                    and "id" in body:
                arrival.created = str(body["id"])
        if not cfg.enabled:
            return _json(status, body)
        reads = call.core_reads + 2 * call.identity_reads if route.is_read else 0
        self.limits.charge(1 + reads)
        if arrival is not None:
            arrival.points = 1 + reads
        quota = self.limits.success_headers()
        headers = {**(limits.beta(quota) if cfg.beta_headers else quota), **warn}
        return _json(status, body, headers)

    def _caller(self, request: web.Request, cloud_id: str) -> str | web.Response:
        """The account the bearer token acts as, or the 401 Jira gives."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        known = self.world.user_tokens.get(token) if scheme.lower() == "bearer" else None
        if known is not None and known.cloud_id == cloud_id:
            if self.world.lookup_user_token(token, cloud_id) is not None:
                return known.account_id
            return _error(
                401, "The access token expired.",
                headers={"x-failure-category": "FAILURE_CLIENT_AUTH_EXPIRED"},
            )
        return _error(
            401, "Unauthorized; scope does not match",
            headers={"x-failure-category": "FAILURE_CLIENT_AUTH_MISMATCH"},
        )

    def _limited(self, hit: limits.Limited, draw: Draw) -> web.Response:
        if draw.edge < self.world.config.jira_limits.edge_429_rate:
            self.world.record_429("jira", "edge", hit.scope, None)
            return _error(429, "Rate limit exceeded.", headers=self.limits.edge_headers(hit))
        self.world.record_429("jira", hit.reason, hit.scope, float(hit.retry_after))
        return _error(429, "Rate limit exceeded.", headers=self.limits.limited_headers(hit))

    def _fault(self, request: web.Request, draw: Draw) -> web.Response:
        kind = draw.kind or "500"
        self.world.faults[kind] += 1
        if draw.after_effect:
            self.world.faults["after_effect"] += 1
        if kind == "drop":
            if request.transport is not None:
                request.transport.close()
            # The connection is gone; aiohttp has nowhere to send this and sends nothing.
            raise web.HTTPInternalServerError()
        if kind == "503":
            retry = str(self.world.config.faults.retry_after_503_s)
            return _error(503, "Service unavailable.", headers={"Retry-After": retry})
        if kind == "502":
            return web.Response(status=502, text="Bad Gateway", content_type="text/html")
        return _error(500, "Internal server error.")
