"""Minting: user tokens and the system token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from runner.events.base import DEBUG, ERROR, WARNING, Event


@dataclass(frozen=True, slots=True, kw_only=True)
class MintOk(Event):
    name: ClassVar[str] = "mint.ok"
    environment: str
    site: str
    account: str
    ttl_s: float | None = None
    request_id: str | None = None
    trace_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayCall(Event):
    """One mint request's answer (or none): ``outcome`` is ok, rate_limited, user_refused,
    context_refused, system_token_rejected, error or transport; ``duration_s`` its latency."""

    name: ClassVar[str] = "gateway.call"
    level: ClassVar[int] = DEBUG  # one per mint: the mint's own event is the log line
    environment: str
    outcome: str
    duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MintRateLimited(Event):
    name: ClassVar[str] = "mint.rate_limited"
    level: ClassVar[int] = WARNING
    bucket: str
    until: float
    shape: str
    environment: str | None = None
    retry_after_s: float | None = None
    reset_at: float | None = None
    request_id: str | None = None
    trace_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MintUserRefused(Event):
    name: ClassVar[str] = "mint.user_refused"
    level: ClassVar[int] = WARNING
    environment: str
    site: str
    account: str
    reason: str
    request_id: str | None = None
    trace_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MintContextRefused(Event):
    name: ClassVar[str] = "mint.context_refused"
    level: ClassVar[int] = ERROR
    environment: str
    aris: tuple[str, ...]
    message: str
    site: str | None = None
    request_id: str | None = None
    trace_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MintRetry(Event):
    name: ClassVar[str] = "mint.retry"
    level: ClassVar[int] = WARNING
    environment: str
    reason: str
    attempt: int
    site: str | None = None
    account: str | None = None
    delay_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemTokenWaiting(Event):
    name: ClassVar[str] = "system_token.waiting"
    level: ClassVar[int] = WARNING
    environment: str
    reason: str
    waited_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemTokenOk(Event):
    name: ClassVar[str] = "system_token.ok"
    environment: str
    expires_at: float | None
    source: str | None = None




@dataclass(frozen=True, slots=True, kw_only=True)
class MintSystemTokenRejected(MintRetry):
    """The gateway refused the system token (401): a fresh one is read and the mint retried."""

    name: ClassVar[str] = "mint.system_token_rejected"
    request_id: str | None = None
    trace_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MintFailed(Event):
    """A user's mint failed for good (retries spent, or an answer that is not the gateway's):
    that user's items fail with it. ``kind`` groups alike failures; ``in_a_row`` counts them."""

    name: ClassVar[str] = "mint.failed"
    level: ClassVar[int] = ERROR
    environment: str
    site: str
    account: str
    reason: str
    kind: str = ""
    in_a_row: int = 1
