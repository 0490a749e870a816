"""The Jira REST client, and what an answer means for the caller.

``JiraClient.send`` makes one request as one user and returns what came back; it never retries
or sleeps (that is the caller's policy, ``runner.jira.executor``). Failing to get an answer at
all is a ``TransportError`` (``RequestNotSentError`` when the connection was never made, so
nothing was sent). ``classify`` turns an answer into an ``Outcome``: ok, rate-limited (with the
scope that was limited), unauthorized, permanent or transient. A 2xx whose body is text, not
JSON (a proxy's HTML page), is transient: nothing says Jira did the work, or what it created.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from runner.config.configfile import SiteConfig
from runner.errors import RequestNotSentError, TransportError
from runner.jira.ratelimit import RateLimitInfo, Scope, parse_rate_limit, scope_for_429
from runner.logs.redact import redact

# Enough of a non-JSON error body to say what went wrong, not enough to flood a log.
_TEXT_MESSAGE_LIMIT = 300


@dataclass(frozen=True)
class JiraRequest:
    """One Jira REST call, relative to the site's ``api_base_url``."""

    method: str  # "GET" | "POST" | "PUT" | "DELETE"
    path: str  # concrete: "/rest/api/3/issue/MIG-1/comment"
    template: str  # the spec's: "/rest/api/3/issue/{issueIdOrKey}/comment"
    query: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    idempotent: bool = True
    cost: int = 1  # estimated points
    issue: str | None = None  # the issue written to; None for reads and issue-less writes
    # Set when a read must come first (see Resolve); `json` is then None until completed.
    resolve: Resolve | None = None


@dataclass(frozen=True)
class Resolve:
    """A read the executor sends first; its answer completes the request.

    ``issue.transition`` by name needs the issue's transitions to learn the ID. The executor
    sends ``request`` (as the same user, within the same budgets), then sends
    ``complete(answer_json)``. ``complete`` raises ``runner.errors.ActionError`` when the answer
    does not allow the action (no transition of that name): the item fails, nothing is retried.
    """

    request: JiraRequest
    complete: Callable[[Any], JiraRequest] = field(repr=False)


@dataclass(frozen=True)
class JiraResponse:
    """One answer: status, headers (case-insensitive) and body (parsed JSON when the answer is
    JSON, else its text; None when empty)."""

    status: int
    headers: Mapping[str, str]
    body: Any = field(default=None, repr=False)


# A worker's last look at its lane's lease, so a process stopped (SIGSTOP) between its checks
# and the wire sends nothing once it wakes past the lease: called once a request's connection is
# ready (the session's ``last_check_trace``), and again, for a request with a body, as the body
# is written (``_CheckedJson``). Set per item by the row worker; None outside a worker's lanes.
LAST_CHECK: ContextVar[Callable[[], None] | None] = ContextVar("last_check", default=None)


def last_check_trace() -> aiohttp.TraceConfig:
    """The trace that calls a Jira request's ``LAST_CHECK`` (as it was when ``send`` began)
    when its connection is made or reused; what it raises ends the request before anything of
    it is written."""
    trace = aiohttp.TraceConfig()

    async def check(session: Any, context: Any, params: Any) -> None:
        ctx = context.trace_request_ctx
        last = ctx.get("last_check") if isinstance(ctx, Mapping) else None
        if last is not None:
            last()

    trace.on_connection_create_end.append(check)
    trace.on_connection_reuseconn.append(check)
    return trace


class _CheckedJson(aiohttp.JsonPayload):
    """A JSON body that calls ``check`` right before its bytes go to the socket, and keeps
    what it raised (aiohttp wraps it in a connection error).

    Why a second check: on Python 3.11 aiohttp writes a body in a task of its own, a turn of
    the event loop after the connection's trace ran, so a process stopped in between wrote
    the request when it woke, past its lease. The headers wait for the body's first write
    (aiohttp 3.12 and later), so a check that raises here leaves nothing of the request sent.
    """

    def __init__(self, value: Any, check: Callable[[], None]) -> None:
        super().__init__(value)
        self._check = check
        self.refused: Exception | None = None

    def _checked(self) -> None:
        try:
            self._check()
        except Exception as exc:
            self.refused = exc
            raise

    async def write(self, writer: Any) -> None:  # what aiohttp before 3.12 calls
        self._checked()
        await super().write(writer)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        self._checked()
        await super().write_with_length(writer, content_length)


def request_url(site: SiteConfig, path: str) -> str:
    """``path`` (relative to the site's API base URL, with or without a leading slash)."""
    return f"{site.api_base_url.rstrip('/')}/{path.lstrip('/')}"


class JiraClient:
    """Sends one request as one user. Never retries, never sleeps, never logs the token."""

    def __init__(self, session: aiohttp.ClientSession, *, timeout_s: float) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        # aiohttp silently sends an idempotent request a second time when the connection drops;
        # retries are the executor's to count, so switch that off (as aiohttp's own test client
        # does). The session's other users send POSTs, which aiohttp never resends anyway.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False

    async def send(self, site: SiteConfig, token: str, request: JiraRequest) -> JiraResponse:
        what = f"{request.method} {request.template} on {site.name}"
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        last_check = LAST_CHECK.get()
        body = (None if last_check is None or request.json is None
                else _CheckedJson(request.json, last_check))
        try:
            async with self._session.request(
                request.method,
                request_url(site, request.path),
                params=dict(request.query) or None,
                json=request.json if body is None else None,
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
                # A Jira request only (the gateway's mints share the session).
                trace_request_ctx={"last_check": last_check},
            ) as resp:
                raw = await resp.read()
                return JiraResponse(
                    resp.status,
                    CIMultiDictProxy(CIMultiDict(resp.headers)),
                    _parse_body(raw, resp.content_type),
                )
        # `from None` everywhere: aiohttp's exceptions carry the request, Authorization included.
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise RequestNotSentError(what, f"not sent: {_describe(exc)}") from None
        except TimeoutError:
            raise TransportError(what, "timed out waiting for the answer") from None
        except aiohttp.ClientError as exc:
            if body is not None and body.refused is not None:
                raise body.refused from None  # the last check's: nothing was sent
            raise TransportError(what, _describe(exc)) from None


def _describe(exc: BaseException) -> str:
    """A short reason naming the failure; never the request (which holds the token)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connection to {exc.host}:{exc.port} failed ({exc.os_error.strerror or 'error'})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.ClientOSError):
        return f"connection error ({exc.strerror or type(exc).__name__})"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "answer cut short"
    return type(exc).__name__


def _parse_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type:
        try:
            return jsonlib.loads(text)
        except ValueError:
            return text
    return text


# ---- classification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ok:
    response: JiraResponse


@dataclass(frozen=True)
class RateLimited:
    """A 429: ``scope`` is what to back off; the times are what Jira said (None if absent)."""

    scope: Scope
    reason: str | None
    retry_after_s: float | None
    reset_at: float | None
    info: RateLimitInfo


@dataclass(frozen=True)
class Unauthorized:
    """A 401: the token is expired, revoked or not for this site."""

    failure_category: str | None


@dataclass(frozen=True)
class Permanent:
    """Sending it again won't help (400, 403, 404, 409, ...)."""

    status: int
    messages: tuple[str, ...]


@dataclass(frozen=True)
class Transient:
    """The server failed (5xx, 408, a 2xx that is not JSON); the same request may succeed
    later. ``problem`` says what was wrong when the status alone does not."""

    status: int
    retry_after_s: float | None
    problem: str | None = None


Outcome = Ok | RateLimited | Unauthorized | Permanent | Transient


def classify(request: JiraRequest, response: JiraResponse, now: float, *, site: str) -> Outcome:
    """What ``response`` to ``request`` on ``site`` (a site name) means; ``now`` is POSIX time.

    Only the enforced headers count: a ``Beta-`` family is parsed (in ``info.beta``) and ignored.
    """
    status = response.status
    if 200 <= status < 300:
        if isinstance(response.body, str):
            return Transient(status, None, "an answer that is not JSON")
        return Ok(response)
    if status == 429:
        info = parse_rate_limit(response.headers, now)
        scope = scope_for_429(
            info.reason,
            site=site,
            method=request.method,
            template=request.template,
            issue=request.issue,
        )
        return RateLimited(scope, info.reason, info.retry_after_s, info.reset_at, info)
    if status == 401:
        return Unauthorized(_header(response.headers, "x-failure-category"))
    if status >= 500 or status == 408:
        info = parse_rate_limit(response.headers, now)
        return Transient(status, info.retry_after_s)
    return Permanent(status, error_messages(response.body))


def error_messages(body: Any) -> tuple[str, ...]:
    """Jira's ``errorMessages`` and ``errors`` (field: message), or a plain-text body's start."""
    if isinstance(body, Mapping):
        messages = [str(m) for m in body.get("errorMessages") or () if m]
        errors = body.get("errors")
        if isinstance(errors, Mapping):
            messages.extend(f"{k}: {v}" for k, v in errors.items())
        if not messages and isinstance(body.get("message"), str):
            messages.append(body["message"])
        return tuple(messages)
    if isinstance(body, str) and body.strip():
        # Redacted before it is cut: a token cut in two no longer matches what hides it.
        return (redact(body.strip())[:_TEXT_MESSAGE_LIMIT],)
    return ()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None
