"""The simulated GraphQL gateway: ``offlineUserAuthToken`` as the facts (section 1) describe it.

One request passes, in order: the system token (401 if missing, forged, unknown or expired), the
document (parsed and validated against the mutation schema; 400 if rejected), then for each mint
field the OAuth client's mint limit, the app's impersonation scopes, the context ARIs and the
user's state. Refusals are HTTP 200 with ``success: false``, as the real gateway answers.
Every answer, whatever its status, carries ``extensions.gateway`` with a request and trace ID.
"""

from __future__ import annotations

import math
import secrets
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLResolveInfo,
    execute_sync,
    parse,
    validate,
)

from runner.sandbox.arrivals import MintArrival
from runner.sandbox.config import SandboxEnvironment, SandboxSite
from runner.sandbox.graphql_schema import load_schema
from runner.sandbox.mintlimit import MintLimiter, Verdict
from runner.sandbox.systemtokens import verify_system_token
from runner.sandbox.world import World

PATHS = ("/graphql", "/gateway/api/graphql")
# Valid documents kept, by their text: a runner sends the same mutation text mint after mint,
# and validating it against the schema again each time was most of a mint's cost here.
VALID_DOCUMENTS_KEPT = 64

# The runner classifies refusals by these texts: change them only together with its classifier.
CONTEXT_MESSAGE = "Could not load permissions for app user in the provided contextIds of [{aris}]"
DEACTIVATED_MESSAGE = "User {user} is deactivated and cannot be impersonated"
NO_ACCESS_MESSAGE = "User {user} does not have access to this app"
UNKNOWN_USER_MESSAGE = "User {user} not found"
RATE_LIMIT_MESSAGE = "Rate limit exceeded: too many requests for this app"

Json = dict[str, Any]


def install(app: web.Application, world: World) -> None:
    """Serve the gateway on both of its paths, sharing ``world``."""
    gateway = Gateway(world)
    world.parts["gateway"] = gateway
    for path in PATHS:
        # Every method, so that even a wrong one is answered with the gateway's IDs.
        app.router.add_route("*", path, gateway.handle)


class _RateLimited(Exception):
    """Raised inside the resolver when a 429 (rather than a 200 error) must answer the request."""

    def __init__(self, verdict: Verdict):
        super().__init__("mint rate limited")
        self.verdict = verdict


class Gateway:
    """The gateway's request handler and the mint budgets of every OAuth client."""

    def __init__(self, world: World):
        self.world = world
        self.config = world.config
        self.schema = load_schema(world.config.spec_dir)
        self.limiter = MintLimiter(world.config.mint_limit)
        self._valid: dict[str, DocumentNode] = {}

    async def handle(self, request: web.Request) -> web.Response:
        ids = {
            "request_id": str(uuid.uuid4()),
            "trace_id": secrets.token_hex(16),
            "crossRegion": False,
            "edgeCrossRegion": False,
        }
        if request.method != "POST":
            errors = [_error("Method not allowed: use POST", "MethodNotAllowed", 405)]
            return _answer(ids, 405, errors=errors, headers={"Allow": "POST"})
        env = self._authenticate(request)
        if env is None:
            return _answer(ids, 401, errors=[_error("Unauthorized", "Unauthorized", 401)],
                           headers={"WWW-Authenticate": "Bearer"})
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            message = "The request body must be a JSON object with a string 'query'"
            return _answer(ids, 400, errors=[_error(message, "InvalidSyntax")])
        variables = body.get("variables")
        operation = body.get("operationName")
        if variables is not None and not isinstance(variables, dict):
            message = "'variables' must be an object"
            return _answer(ids, 400, errors=[_error(message, "InvalidSyntax")])
        if operation is not None and not isinstance(operation, str):
            message = "'operationName' must be a string"
            return _answer(ids, 400, errors=[_error(message, "InvalidSyntax")])
        sender = request.headers.get("User-Agent")
        return self._run(ids, env, body["query"], variables, operation, sender)

    def _authenticate(self, request: web.Request) -> SandboxEnvironment | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return verify_system_token(self.config, token.strip(), now=self.world.clock())

    def _run(
        self,
        ids: Json,
        env: SandboxEnvironment,
        query: str,
        variables: dict[str, Any] | None,
        operation: str | None,
        sender: str | None = None,
    ) -> web.Response:
        document = self._valid.get(query)
        if document is None:
            try:
                document = parse(query)
            except GraphQLError as exc:
                return _answer(ids, 400, errors=[_graphql_error(exc, "InvalidSyntax")])
            invalid = validate(self.schema, document)
            if invalid:
                # Assumption: the real gateway's status for a rejected document is not
                # documented; GraphQL-over-HTTP answers request errors with 400, so the sandbox
                # does too.
                return _answer(ids, 400,
                               errors=[_graphql_error(e, "ValidationError") for e in invalid])
            # Validation depends on the schema and the text alone, so a kept document is as
            # valid as the first time; a rejected one is checked again each time (rare, cheap).
            if len(self._valid) >= VALID_DOCUMENTS_KEPT:
                self._valid.clear()
            self._valid[query] = document
        result = execute_sync(
            self.schema,
            document,
            root_value=_Mutations(self, env, sender),
            variable_values=variables,
            operation_name=operation,
        )
        errors = list(result.errors or ())
        for error in errors:
            original = error.original_error
            if isinstance(original, _RateLimited):
                return self._rate_limited(ids, original.verdict)
            if original is not None and not isinstance(original, GraphQLError):
                raise original  # a sandbox bug: let it surface as a 500
        if result.data is None:
            # Request errors found while executing (variables that don't coerce, an unknown
            # operation name): the document never ran, like a validation failure.
            return _answer(ids, 400, errors=[_graphql_error(e, "ValidationError") for e in errors])
        formatted = [_graphql_error(e, "DataFetchingException") for e in errors] or None
        return _answer(ids, 200, data=result.data, errors=formatted)

    def _rate_limited(self, ids: Json, verdict: Verdict) -> web.Response:
        errors = [_error(RATE_LIMIT_MESSAGE, "RateLimited", 429)]
        if self.config.mint_limit.failure == "reset_header":
            reset = datetime.fromtimestamp(math.ceil(verdict.reset_at), UTC)
            headers = {"X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%SZ")}
        else:
            headers = {"Retry-After": str(max(1, math.ceil(verdict.retry_after_s)))}
        return _answer(ids, 429, errors=errors, headers=headers)

    def mint(self, env: SandboxEnvironment, context_ids: Sequence[str], user_id: str,
             sender: str | None = None) -> Json:
        """One ``offlineUserAuthToken`` call: the mutation's result, or _RateLimited.
        ``sender`` is the request's User-Agent, for the arrival log."""
        world = self.world
        client = env.client_id
        now = world.clock()
        verdict = self.limiter.attempt(client, now)
        arrival = None
        if world.mint_arrivals is not None:
            arrival = MintArrival(now, client, verdict.allowed, sender=sender, account=user_id)
            world.mint_arrivals.append(arrival)
        if not verdict.allowed:
            world.mints_rejected[client] += 1
            # The log records the wait the limiter computed, whichever shape tells the client.
            world.record_429("gateway", "mint", client, verdict.retry_after_s)
            if self.config.mint_limit.failure == "graphql_error":
                return _refusal(RATE_LIMIT_MESSAGE)
            raise _RateLimited(verdict)
        site = self._site_for(context_ids)
        if not env.allow_impersonation or site is None:
            # The real gateway gives this one message for a wrong ARI and for missing scopes.
            world.mints_refused["context" if site is None else "impersonation"] += 1
            return _refusal(CONTEXT_MESSAGE.format(aris=", ".join(context_ids)))
        state = site.user_state(user_id)
        if state != "active":
            reason, template = {
                "deactivated": ("deactivated", DEACTIVATED_MESSAGE),
                "no_access": ("no_access", NO_ACCESS_MESSAGE),
                None: ("unknown_user", UNKNOWN_USER_MESSAGE),
            }[state]
            world.mints_refused[reason] += 1
            return _refusal(template.format(user=user_id))
        token = world.issue_user_token(site.cloud_id, user_id, client, env.token_ttl_s)
        world.mints_accepted[client] += 1
        world.mints_by_user[(site.cloud_id, user_id)] += 1
        if arrival is not None:
            arrival.issued = True
        auth_token = {"token": token, "ttl": env.token_ttl_s}
        return {"success": True, "errors": None, "authToken": auth_token}

    def _site_for(self, context_ids: Sequence[str]) -> SandboxSite | None:
        """The site whose accepted context ARI is the one and only ARI sent, if any."""
        if len(context_ids) != 1:
            return None
        for site in self.config.sites.values():
            if context_ids[0] in site.context_aris():
                return site
        return None


class _Mutations:
    """The root value: graphql-core calls a callable attribute named like the field."""

    def __init__(self, gateway: Gateway, env: SandboxEnvironment, sender: str | None):
        self._gateway = gateway
        self._env = env
        self._sender = sender

    def offlineUserAuthToken(  # the field's name, as graphql-core looks it up
        self, info: GraphQLResolveInfo[Any], input: Mapping[str, Any]
    ) -> Json:
        return self._gateway.mint(self._env, list(input["contextIds"]), input["userId"],
                                  self._sender)


def _refusal(message: str) -> Json:
    # `extensions` of MutationError: nothing observed shows what the gateway puts there.
    errors = [{"message": message, "extensions": None}]
    return {"success": False, "errors": errors, "authToken": None}


def _error(message: str, classification: str, status: int | None = None) -> Json:
    extensions: Json = {"classification": classification}
    if status is not None:
        extensions["statusCode"] = status
    return {"message": message, "extensions": extensions}


def _graphql_error(error: GraphQLError, classification: str) -> Json:
    formatted: Json = dict(error.formatted)
    formatted["extensions"] = {**formatted.get("extensions", {}), "classification": classification}
    return formatted


def _answer(
    ids: Json,
    status: int,
    *,
    data: Any = None,
    errors: list[Json] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body: Json = {}
    if data is not None:
        body["data"] = data
    if errors:
        body["errors"] = errors
    body["extensions"] = {"gateway": ids}
    return web.json_response(body, status=status, headers=headers)
