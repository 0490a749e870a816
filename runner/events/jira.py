"""Jira calls and the budgets that pace them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from runner.events.base import DEBUG, WARNING, Event


@dataclass(frozen=True, slots=True, kw_only=True)
class JiraCall(Event):
    name: ClassVar[str] = "jira.call"
    level: ClassVar[int] = DEBUG  # one per request: the log would drown in them
    site: str
    method: str
    template: str
    status: int
    # From the request's send to its answer's body read (seconds); None where not measured.
    duration_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JiraRateLimited(Event):
    name: ClassVar[str] = "jira.rate_limited"
    site: str
    scope: str
    reason: str | None
    until: float | None
    method: str | None = None
    template: str | None = None
    retry_after_s: float | None = None
    reset_at: float | None = None
    wait_s: float | None = None
    deferrals: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JiraRetry(Event):
    name: ClassVar[str] = "jira.retry"
    site: str
    template: str
    reason: str
    attempt: int
    method: str | None = None
    wait_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JiraFailed(Event):
    """A call failed for good: ``reason`` is "http <status>", "unauthorized", "deadline" or
    "attempts: <last error>". Info: the item's end (``item.failed``) is the warning."""

    name: ClassVar[str] = "jira.failed"
    site: str
    method: str
    template: str
    reason: str
    status: int | None = None
    messages: tuple[str, ...] = ()
    attempts: int | None = None
    deferrals: int | None = None
    category: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JiraUncertain(Event):
    """A write may or may not have taken effect; it is not sent again."""

    name: ClassVar[str] = "jira.uncertain"
    level: ClassVar[int] = WARNING
    site: str
    method: str
    template: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause(Event):
    name: ClassVar[str] = "pause"
    scope: str
    reason: str
    until: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Resume(Event):
    name: ClassVar[str] = "resume"
    level: ClassVar[int] = DEBUG  # its pause's line already says until when
    scope: str




@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaNearLimit(Event):
    """Jira's headers say the app's points quota is nearly spent."""

    name: ClassVar[str] = "budgets.near_limit"
    scope: str
    remaining: float


@dataclass(frozen=True, slots=True, kw_only=True)
class BurstCut(Event):
    """A burst 429: that endpoint's pace on that site is cut to ``rate`` per second."""

    name: ClassVar[str] = "budgets.burst_cut"
    scope: str
    rate: float


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaExhausted(Event):
    """A quota 429: the quota gives nothing more until ``reset_at`` (POSIX; None: unknown)."""

    name: ClassVar[str] = "budgets.quota_exhausted"
    scope: str
    reset_at: float | None
