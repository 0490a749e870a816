"""State shared by the sandbox's gateway and Jira halves: the clock, minted user tokens, counters.

The gateway writes user tokens here; Jira reads them to know who is calling. Counters and the
429 log are what the inspection API reports, so tests can check effects from the outside.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runner.sandbox.arrivals import JiraArrival, MintArrival
from runner.sandbox.config import SandboxConfig

__all__ = ["JiraArrival", "MintArrival", "RateLimitEvent", "UserToken", "World"]

Clock = Callable[[], float]


@dataclass(frozen=True)
class UserToken:
    """What an opaque user token stands for."""

    cloud_id: str
    account_id: str
    client_id: str
    expires_at: float


@dataclass(frozen=True)
class RateLimitEvent:
    """One 429 the sandbox sent."""

    at: float
    api: str  # "gateway" | "jira"
    reason: str  # RateLimit-Reason, "mint", or "edge"
    scope: str  # client ID, or "cloud_id METHOD /path/template", or issue key
    retry_after: float | None


@dataclass
class World:
    config: SandboxConfig
    clock: Clock = time.time
    # Keyed by the token itself: kept out of repr so no token reaches a log or a test failure.
    user_tokens: dict[str, UserToken] = field(default_factory=dict, repr=False)
    mints_accepted: Counter[str] = field(default_factory=Counter)  # per client ID
    mints_rejected: Counter[str] = field(default_factory=Counter)  # per client ID, rate-limited
    mints_refused: Counter[str] = field(default_factory=Counter)  # per reason (user, context...)
    mints_by_user: Counter[tuple[str, str]] = field(default_factory=Counter)  # (cloud, account)
    jira_calls: Counter[str] = field(default_factory=Counter)  # "METHOD /path/template"
    rate_limits: list[RateLimitEvent] = field(default_factory=list)
    # Every Jira request's arrival (``arrivals.py``), when a test sets this to [] or the config
    # says ``record_arrivals`` (off by default: it would grow with the job).
    jira_arrivals: list[JiraArrival] | None = None
    # Every mint's arrival at the gateway's limiter, likewise: when, which OAuth client, who
    # sent it for whom, and whether the limit let it through.
    mint_arrivals: list[MintArrival] | None = None
    faults: Counter[str] = field(default_factory=Counter)  # "500", "503", "drop", ...
    # Each half's own state object, by name (e.g. "jira"), for tests to read back.
    parts: dict[str, Any] = field(default_factory=dict)
    # Extra sections other halves add to the inspection report (e.g. Jira's state).
    reporters: dict[str, Callable[[], Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.config.record_arrivals:
            self.jira_arrivals = []
            self.mint_arrivals = []

    def issue_user_token(self, cloud_id: str, account_id: str, client_id: str, ttl_s: int) -> str:
        token = secrets.token_urlsafe(32)
        self.user_tokens[token] = UserToken(cloud_id, account_id, client_id, self.clock() + ttl_s)
        return token

    def lookup_user_token(self, token: str, cloud_id: str) -> UserToken | None:
        """The token's user if it was minted for ``cloud_id`` and has not expired, else None."""
        info = self.user_tokens.get(token)
        if info is None or info.cloud_id != cloud_id or info.expires_at <= self.clock():
            return None
        return info

    def record_429(self, api: str, reason: str, scope: str, retry_after: float | None) -> None:
        self.rate_limits.append(RateLimitEvent(self.clock(), api, reason, scope, retry_after))

    def record_arrival(self, arrival: JiraArrival) -> None:
        if self.jira_arrivals is not None:
            self.jira_arrivals.append(arrival)

    def token_account(self, authorization: str, cloud_id: str) -> str | None:
        """The account a bearer token of ``cloud_id`` was minted for, expired or not."""
        scheme, _, token = authorization.partition(" ")
        known = self.user_tokens.get(token) if scheme.lower() == "bearer" else None
        return known.account_id if known is not None and known.cloud_id == cloud_id else None

    def report(self) -> dict[str, Any]:
        """The inspection report: counters, the 429 log and each half's own section."""
        by_reason: Counter[str] = Counter(e.reason for e in self.rate_limits)
        return {
            "mints": {
                "accepted": dict(self.mints_accepted),
                "rejected": dict(self.mints_rejected),
                "refused": dict(self.mints_refused),
                "by_user": {f"{c} {a}": n for (c, a), n in self.mints_by_user.items()},
            },
            "jira_calls": dict(self.jira_calls),
            "rate_limits": {
                "by_reason": dict(by_reason),
                "events": [e.__dict__ for e in self.rate_limits],
            },
            "faults": dict(self.faults),
            **{name: fn() for name, fn in self.reporters.items()},
        }
