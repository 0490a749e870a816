"""Retry policy arithmetic: how long to wait before the next try, and why.

One vocabulary for minting and Jira (``RetryPolicy``: attempts, wait_initial_s, wait_max_s,
wait_jitter_s, deadline_s). A server's ``Retry-After`` is a floor: jitter is only ever added on
top of it, never taken off. Without it, ``X-RateLimit-Reset``; without both, exponential backoff.
Nothing here sleeps: callers wait on their own clock. ``RetryLoop`` is the one loop shape
both use: a classifier turns each failure into a ``Retry`` (its delay, whether it spends an
attempt), and the loop decides from the policy whether another try may follow.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from runner.budgets import Clock
from runner.config.configfile import RetryPolicy

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


def retry_delay(
    policy: RetryPolicy,
    attempt: int,
    *,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Backoff before retry number ``attempt`` after a failure that spends an attempt (5xx,
    timeout). A server's ``Retry-After`` is a floor; jitter still spreads the retries above it."""
    delay = backoff_delay(policy, attempt, rng)
    if retry_after_s is not None:
        delay = max(delay, max(0.0, retry_after_s) + (rng or _rng).uniform(0.0,
                                                                         policy.wait_jitter_s))
    return delay


@dataclass(frozen=True)
class Retry:
    """A classifier's verdict: try again after ``delay`` seconds, because of ``reason``.

    ``spends``: the failure counts against the policy's attempts (5xx, timeout, reset). A 429
    spends none: it is a deferral, bounded by the deadline alone, and its delay is a pause the
    limited scope waits out (the caller sets the pause; the loop does not sleep it).
    """

    delay: float
    reason: str
    spends: bool = True


class RetryLoop:
    """One shape for every retry loop (mints, Jira calls)::

        loop = RetryLoop(policy, clock)
        while True:
            ...one try; a result returns...
            refused = loop.admit(Retry(delay, reason))
            if refused is not None: ...give up ("attempts" or "deadline")...

    The first try is always made (a deadline already past still gets one answer, which is how
    ``doctor`` asks once). After it, the deadline is looked at on every pass, whatever the delay
    was: a 429 answered with ``Retry-After: 0`` and no jitter must end at the deadline, not loop
    past it.
    """

    def __init__(self, policy: RetryPolicy, clock: Clock, *, deadline: float | None = None):
        self.policy = policy
        self._clock = clock
        self.deadline = clock.now() + policy.deadline_s if deadline is None else deadline
        self.attempts = 0  # failures that spent an attempt
        self.deferrals = 0  # 429s waited out

    def admit(self, retry: Retry) -> str | None:
        """Count ``retry``. None: go again after its delay; else why not: "attempts" (the
        policy's are spent) or "deadline" (the delay ends past it)."""
        if retry.spends:
            self.attempts += 1
            if self.attempts >= self.policy.attempts:
                return "attempts"
        else:
            self.deferrals += 1
        now = self._clock.now()
        if now >= self.deadline or now + retry.delay > self.deadline:
            return "deadline"
        return None
