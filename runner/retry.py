"""Retry policy arithmetic: how long to wait before the next try, and why.

One vocabulary for minting and Jira (``RetryPolicy``: attempts, wait_initial_s, wait_max_s,
wait_jitter_s, deadline_s). A server's ``Retry-After`` is a floor: jitter is only ever added on
top of it, never taken off. Without it, ``X-RateLimit-Reset``; without both, exponential backoff.
Nothing here sleeps: callers wait on their own clock.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from runner.config import RetryPolicy

_rng = random.Random()


def backoff_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff for retry number ``attempt`` (from 1), capped, plus jitter."""
    base = min(policy.wait_max_s, policy.wait_initial_s * 2.0 ** max(0, attempt - 1))
    return base + (rng or _rng).uniform(0.0, policy.wait_jitter_s)


def rate_limit_delay(
    policy: RetryPolicy,
    *,
    retry_after_s: float | None,
    reset_at: float | None,
    now: float,
    attempt: int,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after a 429: Retry-After as a floor, else the reset time, else backoff."""
    jitter = (rng or _rng).uniform(0.0, policy.wait_jitter_s)
    if retry_after_s is not None:
        return max(0.0, retry_after_s) + jitter
    if reset_at is not None:
        return max(0.0, reset_at - now) + jitter
    return backoff_delay(policy, attempt, rng)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` in seconds: either delta-seconds or an HTTP date. None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def parse_reset(value: str | None) -> float | None:
    """``X-RateLimit-Reset`` as a POSIX time. ISO 8601, seconds optional (``2026-03-26T16:00Z``)."""
    if value is None:
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        try:
            return float(text)  # some edges send epoch seconds
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
