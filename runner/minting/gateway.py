"""The ``offlineUserAuthToken`` client: one mint, one classified outcome.

The gateway fails in HTTP 200 as often as not (atlassian-facts.md section 1), so the body
decides, not the status. Every answer becomes one of the outcomes below; what no rule
recognises raises ``GatewayError`` (``GatewayRefusalError`` for a refusal whose text no
``[gateway_messages]`` pattern matches), and what may never have been processed (5xx, timeout,
reset) raises ``TransportError`` (``RequestNotSentError`` when no connection could be made).
Every ``GatewayError`` reason opens with what was wrong, before any ``:`` and the detail, so
that failures of one kind can be told apart from another's. The client never retries or
sleeps: that is the minter's policy. Outcomes carry the gateway's ``request_id``/``trace_id``
for support; the token itself only lives in ``Minted.token``, which no repr shows.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from runner.config.configfile import GatewayMessages
from runner.errors import GatewayError, GatewayRefusalError, RequestNotSentError, TransportError
from runner.logs.redact import redact
from runner.retry import parse_reset, parse_retry_after

# The documented operation, field for field: selecting anything the schema lacks would make the
# gateway reject the whole document.
MUTATION = (
    "mutation forge_remote_offlineUserAuthToken($input: OfflineUserAuthTokenInput!) "
    "{ offlineUserAuthToken(input: $input) "
    "{ success errors { message } authToken { token ttl } } }"
)

RateLimitShape = Literal["retry_after", "reset", "graphql", "backoff"]


@dataclass(frozen=True)
class GatewayIds:
    """What support asks for about one gateway answer."""

    request_id: str | None = None
    trace_id: str | None = None


@dataclass(frozen=True)
class Minted:
    """A user token. ``received_at`` is when the mint was sent: the token's life can't have
    begun earlier, so an expiry counted from it errs on the early side."""

    token: str = field(repr=False)
    ttl_s: float
    received_at: float
    request_id: str | None = None
    trace_id: str | None = None

    @property
    def expires_at(self) -> float:
        return self.received_at + self.ttl_s


@dataclass(frozen=True)
class UserRefused:
    """This user can't be impersonated (deactivated, no access, unknown...). Permanent."""

    reason: str
    ids: GatewayIds = GatewayIds()


@dataclass(frozen=True)
class ContextRefused:
    """``Could not load permissions ... contextIds``: the environment can't mint on this site."""

    message: str
    context_aris: tuple[str, ...]
    ids: GatewayIds = GatewayIds()


@dataclass(frozen=True)
class MintRateLimited:
    """The mint budget is spent. ``shape`` says how the gateway said so."""

    retry_after_s: float | None
    reset_at: float | None
    shape: RateLimitShape
    ids: GatewayIds = GatewayIds()


@dataclass(frozen=True)
class SystemTokenRejected:
    """HTTP 401: the system token is expired, revoked or not this environment's."""

    ids: GatewayIds = GatewayIds()


MintOutcome = Minted | UserRefused | ContextRefused | MintRateLimited | SystemTokenRejected

_MAX_TEXT = 300


class GatewayClient:
    """Mints offline user tokens through one gateway URL."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        messages: GatewayMessages,
        timeout_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self.url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        flags = re.IGNORECASE
        self._context = [re.compile(p, flags) for p in messages.context_refused]
        self._rate = [re.compile(p, flags) for p in messages.rate_limited]
        self._user = [re.compile(p, flags) for p in messages.user_refused]

    async def mint(self, system_token: str, context_ari: str, account_id: str) -> MintOutcome:
        """Ask for ``account_id``'s offline token in ``context_ari``; classify the answer."""
        body = {
            "query": MUTATION,
            "variables": {"input": {"contextIds": [context_ari], "userId": account_id}},
        }
        headers = {
            "Authorization": f"Bearer {system_token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        sent_at = self._clock()
        try:
            async with self._session.post(
                self.url, json=body, headers=headers, timeout=self._timeout
            ) as resp:
                text = await resp.text()
                status = resp.status
                resp_headers: Mapping[str, str] = resp.headers
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # No connection (a connect timeout is a TimeoutError too, hence first): the gateway
            # is down, the URL is wrong, or a proxy is in the way.
            raise RequestNotSentError("gateway mint", f"not sent: {_no_connection(exc)}") from exc
        except TimeoutError as exc:
            raise TransportError("gateway mint", "timed out") from exc
        except aiohttp.ClientError as exc:
            # The exception's text names the URL and the OS error, never a header.
            raise TransportError("gateway mint", f"{type(exc).__name__}: {exc}") from exc
        return self._classify(status, resp_headers, text, sent_at, (context_ari,), system_token)

    # -- classification -------------------------------------------------------------------

    def _classify(
        self,
        status: int,
        headers: Mapping[str, str],
        text: str,
        sent_at: float,
        aris: tuple[str, ...],
        system_token: str,
    ) -> MintOutcome:
        payload = _json_object(text)
        ids = _ids(payload, headers)
        now = self._clock()
        if status == 401:
            return SystemTokenRejected(ids)
        if status == 429:
            return self._rate_limited(headers, now, ids, graphql=False)
        if status >= 500:
            raise TransportError(
                "gateway mint",
                f"HTTP {status}",
                status=status,
                retry_after=parse_retry_after(headers.get("Retry-After"), now),
            )
        if status != 200:
            raise GatewayError(
                f"HTTP {status}: {_excerpt(text, system_token)}", **_id_kwargs(ids)
            )
        if payload is None:
            raise GatewayError(f"not a JSON object: {_excerpt(text, system_token)}",
                               **_id_kwargs(ids))
        result = _mutation_result(payload)
        if result is not None and result.get("success") is True:
            return self._minted(result, sent_at, ids)
        messages = _messages(result, payload)
        if not messages:
            raise GatewayError("neither a token nor an error message", **_id_kwargs(ids))
        message = _excerpt("; ".join(messages), system_token)
        # Context first: that refusal blocks a whole environment and must never be mistaken
        # for one user's problem. Then rate limits, which are deferrals. Then user refusals.
        if any(p.search(message) for p in self._context):
            return ContextRefused(message, aris, ids)
        if _says_rate_limited(payload) or any(p.search(message) for p in self._rate):
            return self._rate_limited(headers, now, ids, graphql=True)
        if any(p.search(message) for p in self._user):
            return UserRefused(message, ids)
        raise GatewayRefusalError(f"unrecognised refusal: {message}", **_id_kwargs(ids))

    def _minted(self, result: Mapping[str, Any], sent_at: float, ids: GatewayIds) -> Minted:
        auth = result.get("authToken")
        token = auth.get("token") if isinstance(auth, dict) else None
        ttl = auth.get("ttl") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise GatewayError("success without a token", **_id_kwargs(ids))
        # NaN compares false with everything, so ``ttl <= 0`` alone would let it through, and a
        # token that never counts as fresh is minted again on every call.
        if (isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl)
                or ttl <= 0):
            raise GatewayError(f"success with a bad ttl: {ttl!r} (expected seconds > 0)",
                               **_id_kwargs(ids))
        return Minted(token, float(ttl), sent_at, ids.request_id, ids.trace_id)

    @staticmethod
    def _rate_limited(
        headers: Mapping[str, str], now: float, ids: GatewayIds, *, graphql: bool
    ) -> MintRateLimited:
        retry_after = parse_retry_after(headers.get("Retry-After"), now)
        reset_at = parse_reset(headers.get("X-RateLimit-Reset"))
        shape: RateLimitShape
        if graphql:
            shape = "graphql"
        elif retry_after is not None:
            shape = "retry_after"
        elif reset_at is not None:
            shape = "reset"
        else:
            shape = "backoff"
        return MintRateLimited(retry_after, reset_at, shape, ids)


def _no_connection(exc: aiohttp.ClientError) -> str:
    """Why no connection was made, short: the OS's words ("Connection refused") when it gave
    an error number, else aiohttp's."""
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.errno and os_error.errno > 0:
        return os.strerror(os_error.errno).lower()
    return f"{type(exc).__name__}: {exc}"


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _ids(payload: Mapping[str, Any] | None, headers: Mapping[str, str]) -> GatewayIds:
    gateway: Any = None
    if payload is not None:
        extensions = payload.get("extensions")
        if isinstance(extensions, dict):
            gateway = extensions.get("gateway")
    request_id = gateway.get("request_id") if isinstance(gateway, dict) else None
    trace_id = gateway.get("trace_id") if isinstance(gateway, dict) else None
    # Answers without a body (a 429 from the edge) still carry ids in headers.
    request_id = request_id or headers.get("X-Request-Id") or headers.get("Atl-Request-Id")
    trace_id = trace_id or headers.get("Atl-Traceid") or headers.get("X-B3-Traceid")
    return GatewayIds(
        str(request_id) if request_id else None, str(trace_id) if trace_id else None
    )


def _id_kwargs(ids: GatewayIds) -> dict[str, str | None]:
    return {"request_id": ids.request_id, "trace_id": ids.trace_id}


def _mutation_result(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    data = payload.get("data")
    result = data.get("offlineUserAuthToken") if isinstance(data, dict) else None
    return result if isinstance(result, dict) else None


def _messages(result: Mapping[str, Any] | None, payload: Mapping[str, Any]) -> list[str]:
    """The mutation's own error messages, else the document's top-level GraphQL errors."""
    found: list[str] = []
    for source in (result.get("errors") if result else None, payload.get("errors")):
        if isinstance(source, list):
            found.extend(
                str(e["message"]) for e in source if isinstance(e, dict) and e.get("message")
            )
        if found:
            break
    return found


def _says_rate_limited(payload: Mapping[str, Any]) -> bool:
    """A top-level GraphQL error whose extensions mark it as a rate limit (status 429 or an
    errorType naming one), whatever its message says."""
    errors = payload.get("errors")
    if not isinstance(errors, list):
        return False
    for error in errors:
        ext = error.get("extensions") if isinstance(error, dict) else None
        if not isinstance(ext, dict):
            continue
        if ext.get("statusCode") == 429:
            return True
        kind = str(ext.get("errorType") or ext.get("classification") or "")
        if "RATE_LIMIT" in kind.upper():
            return True
    return False


def _excerpt(text: str, secret: str) -> str:
    """Text safe for an exception message: short, and without the system token even if a
    misbehaving server echoed it back."""
    if secret:
        text = text.replace(secret, "[system token]")
    # Redacted before it is cut: a token cut in two no longer matches what hides it.
    text = redact(" ".join(text.split()))
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."
