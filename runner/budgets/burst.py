"""Burst budgets: a token bucket per (site, endpoint template, method), adapting by AIMD.

Jira's burst limit is a token bucket per tenant x endpoint x method (GET/POST 100/s, PUT/DELETE
50/s by default), shared with every other app on the tenant (atlassian-facts.md section 3). Our
bucket for a key refills at the key's rate and holds at most ``capacity_s`` seconds of it, half
of Jira's one second by default: calls leave in bursts no larger than half of Jira's, so arrival
jitter up to half a second (latency varying between calls) still fits Jira's bucket.

Other apps spend the same bucket, so the default rate may be too much: a ``jira-burst-based``
429 on a key halves that key's rate (multiplicative decrease, at most once per ``cut_hold_s``,
because the calls already in flight when the first 429 came back are one signal, not several),
never below ``min_rate``; without a 429 the rate regrows by ``regrow_per_s`` each second
(additive increase) back to the default. Other keys are untouched.

Every method takes ``now`` (POSIX seconds): the bucket keeps no clock, its owner does.
"""

from __future__ import annotations

import math

from runner.config.configfile import JiraBudgets
from runner.jira.ratelimit import Scope

DEFAULT_CAPACITY_S = 0.5
DEFAULT_REGROW_PER_S = 1.0
DEFAULT_MIN_RATE = 1.0
DEFAULT_CUT_HOLD_S = 1.0


def burst_rate(budgets: JiraBudgets, method: str) -> float:
    """Calls per second Jira's burst budget allows for ``method`` (the rate ``runner.plan``
    bounds with): PUT and DELETE have their own, lower budget; every other method GET/POST's."""
    if method.upper() in ("PUT", "DELETE"):
        return float(budgets.burst_put_delete)
    return float(budgets.burst_get_post)


class BurstBucket:
    """One (site, template, method) key's bucket."""

    def __init__(
        self,
        scope: Scope,
        rate: float,
        *,
        now: float,
        capacity_s: float = DEFAULT_CAPACITY_S,
        regrow_per_s: float = DEFAULT_REGROW_PER_S,
        min_rate: float = DEFAULT_MIN_RATE,
        cut_hold_s: float = DEFAULT_CUT_HOLD_S,
    ) -> None:
        if rate <= 0 or capacity_s <= 0 or regrow_per_s < 0 or min_rate <= 0:
            raise ValueError("a burst bucket needs rate, capacity_s, min_rate > 0")
        self.scope = scope
        self.default_rate = float(rate)
        self.capacity_s = capacity_s
        self.regrow_per_s = regrow_per_s
        self.min_rate = min(min_rate, self.default_rate)
        self.cut_hold_s = cut_hold_s
        # The rate line: cut_rate at cut_at, growing by regrow_per_s to default_rate.
        self._cut_rate = self.default_rate
        self._cut_at = -math.inf
        self._tokens = self._capacity(self.default_rate)
        self._tokens_at = now
        self.cuts = 0

    # -- the rate ----------------------------------------------------------------------------
    def rate(self, now: float) -> float:
        """Calls per second allowed now."""
        if self._cut_rate >= self.default_rate or self.regrow_per_s == 0:
            return self._cut_rate
        return min(self.default_rate, self._cut_rate + self.regrow_per_s * (now - self._cut_at))

    def _full_at(self) -> float:
        """When the regrowing rate is back at the default."""
        if self._cut_rate >= self.default_rate:
            return -math.inf
        if self.regrow_per_s == 0:
            return math.inf
        return self._cut_at + (self.default_rate - self._cut_rate) / self.regrow_per_s

    def _integral(self, a: float, b: float) -> float:
        """Calls the rate allows from ``a`` to ``b``: linear while regrowing, then flat."""
        if b <= a:
            return 0.0
        full = self._full_at()
        total = 0.0
        if a < full:
            end = min(b, full)
            total += (self.rate(a) + self.rate(end)) / 2 * (end - a)
            a = end
        if b > a:
            total += self.default_rate * (b - a)
        return total

    def _capacity(self, rate: float) -> float:
        return max(1.0, rate * self.capacity_s)

    def _refill(self, now: float) -> None:
        if now > self._tokens_at:
            gained = self._integral(self._tokens_at, now)
            self._tokens = min(self._capacity(self.rate(now)), self._tokens + gained)
            self._tokens_at = now

    # -- spending ----------------------------------------------------------------------------
    def ready_at(self, now: float) -> float:
        """The earliest time one call may leave."""
        self._refill(now)
        deficit = 1.0 - self._tokens
        if deficit <= 0:
            return now
        full = self._full_at()
        if now < full and self.regrow_per_s > 0:
            # Regrowing: tokens(x) = r0 x + g x^2 / 2 from now; solve for ``deficit``.
            r0, g = self.rate(now), self.regrow_per_s
            span = full - now
            in_ramp = r0 * span + g * span * span / 2
            if in_ramp >= deficit:
                x = (2 * deficit / (r0 + math.sqrt(r0 * r0 + 2 * g * deficit)))
                return now + x
            return full + (deficit - in_ramp) / self.default_rate
        return now + deficit / self.rate(now)

    def take(self, now: float) -> None:
        self._refill(now)
        self._tokens -= 1.0

    def give_back(self, now: float) -> None:
        """A call taken but not sent."""
        self._refill(now)
        self._tokens = min(self._capacity(self.rate(now)), self._tokens + 1.0)

    def cut(self, now: float) -> bool:
        """A ``jira-burst-based`` 429 on this key: halve the rate (not below ``min_rate``) and
        empty the bucket. Returns False when a cut came less than ``cut_hold_s`` ago."""
        if now - self._cut_at < self.cut_hold_s:
            return False
        self._refill(now)
        self._cut_rate = max(self.min_rate, self.rate(now) / 2)
        self._cut_at = now
        self._tokens = min(self._tokens, 0.0)
        self.cuts += 1
        return True

    def forgettable(self, now: float) -> bool:
        """Back at the default rate with a full bucket: a new bucket would be the same."""
        self._refill(now)
        return self.rate(now) >= self.default_rate and self._tokens >= self._capacity(
            self.default_rate
        )
