"""The points quota: an hourly budget of points, paced across its window, never overrun.

Jira's quota (atlassian-facts.md section 3) is 65,000 points an hour per app, shared by every
tenant, resetting at the top of each UTC hour; once spent, everything is refused until the
reset. Spending it as fast as the bursts allow empties it in minutes and then stalls the whole
app (this runner and the app's own traffic) for the rest of the hour. So spending is *paced*:
points accrue at ``usable / time-to-reset`` per second, where ``usable`` is what is left less a
safety margin. A job that spends more than that rate spreads evenly to the reset and keeps the
margin untouched; a job that spends less lets ``usable / time-to-reset`` grow, so what it left
unspent is offered again later in the window. A small allowance (``burst`` of the quota) may go
at once, so a small job doesn't trickle.

Accrual is integrated exactly: with ``U`` usable and ``T`` seconds to the reset, the rate is
``U / T``, and from ``T0`` to ``T1`` it adds ``U * ln(T0 / T1)``. (The rate only grows while
nothing is spent, so the time a waiter needs has a closed form; no polling.)

Our own count is charged with each request's estimated cost before it is sent and corrected when
the actual cost is known. Jira's headers report what is left; whenever theirs is smaller
(another client spent, or estimates were low) theirs wins. ``X-RateLimit-NearLimit`` from a
Jira that still has more than a fifth left by our count means Jira knows better: cap what is
left at a fifth and halve the pace until the reset. A quota 429 sets what is left to zero until
the reset it names.

Every method takes ``now`` (POSIX seconds): the quota keeps no clock, its owner does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from runner.actions.base import CORE_OBJECT_COST, REQUEST_COST
from runner.jira.client import JiraRequest
from runner.jira.ratelimit import Scope

# Kept out of the pacing: estimate errors and the app's other traffic spend from it.
DEFAULT_MARGIN = 0.02
# Share of the quota that may be spent at once, before pacing holds spending to the rate.
DEFAULT_BURST = 0.05
# X-RateLimit-NearLimit: true means less than this share is left (atlassian-facts.md).
NEAR_LIMIT_SHARE = 0.2
NEAR_LIMIT_SLOWDOWN = 0.5
# Reset times in headers come in whole seconds (RateLimit's t is rounded up) and arrive a
# latency late: two resets closer than this are the same reset.
RESET_TOLERANCE_S = 1.0
# An answer Jira sent just before its reset may arrive after ours; its reset then lies about a
# window behind ours, late by its rounding and latency. Such an answer is stale, not news.
STALE_SLACK_S = 3.0


def aligned_reset(now: float, window_s: float) -> float:
    """The end of the window holding ``now``: windows are aligned to multiples of
    ``window_s`` since the epoch, so an hour's window ends at the top of a UTC hour."""
    return (math.floor(now / window_s) + 1) * window_s


def quota_rate(points: int, window_s: float) -> float:
    """The quota's rate in points per second (``runner.plan`` bounds with the share of it the
    pacer spends: all but the margin)."""
    return points / window_s


class PointsQuota:
    """One points quota (the app's, or one site's under a per-tenant tier)."""

    def __init__(
        self,
        scope: Scope,
        points: int,
        window_s: float,
        *,
        now: float,
        margin: float = DEFAULT_MARGIN,
        burst: float = DEFAULT_BURST,
    ) -> None:
        if points < 1 or window_s <= 0:
            raise ValueError("a points quota needs points >= 1 and window_s > 0")
        if not 0.0 <= margin < 1.0 or burst < 0.0:
            raise ValueError("a points quota needs 0 <= margin < 1 and burst >= 0")
        self.scope = scope
        self.points = points
        self.window_s = window_s
        self._margin = margin * points
        self._capacity = max(1.0, burst * points)
        self._reset_at = aligned_reset(now, window_s)
        self._remaining = float(points)
        self._in_flight = 0.0
        self._slow = 1.0
        self._zeroed = False
        self._tokens = self._capacity
        self._tokens_at = now

    # -- state -----------------------------------------------------------------------------
    @property
    def reset_at(self) -> float:
        return self._reset_at

    def remaining(self, now: float) -> float:
        """Points left by our count (estimates of requests in flight already taken off)."""
        self._advance(now)
        return self._remaining

    def rate(self, now: float) -> float:
        """Points per second the pacing allows now."""
        self._advance(now)
        return self._slow * max(0.0, self._usable()) / max(self._reset_at - now, 1e-9)

    def reason(self, now: float) -> str:
        """Why the quota holds work back (for ``pause`` events)."""
        self._advance(now)
        if self._zeroed:
            return "quota spent (429)"
        if self._usable() < 1.0:
            return "quota spent"
        return "near limit" if self._slow < 1.0 else "pacing"

    def _usable(self) -> float:
        return self._remaining - self._margin

    # -- time ------------------------------------------------------------------------------
    def _advance(self, now: float) -> None:
        """Accrue pacing allowance up to ``now``, rolling into new windows on the way."""
        while now >= self._reset_at:
            self._accrue(self._reset_at)
            self._roll(self._reset_at + self.window_s)
        self._accrue(now)

    def _roll(self, next_reset: float) -> None:
        self._tokens_at = self._reset_at
        self._reset_at = next_reset
        # Calls in flight across the reset may be counted by Jira in either window; the margin
        # covers them (carrying them over would leak if an answer never came).
        self._remaining = float(self.points)
        self._slow = 1.0
        self._zeroed = False
        self._tokens = min(self._tokens, self._cap())

    def _accrue(self, until: float) -> None:
        if until <= self._tokens_at:
            return
        usable = self._usable()
        if usable > 0:
            t0 = self._reset_at - self._tokens_at
            t1 = self._reset_at - until
            # ln(t0 / 0) is infinite: at the reset whatever is usable has accrued.
            gain = math.inf if t1 <= 0 else self._slow * usable * math.log(t0 / t1)
            self._tokens = min(self._cap(), self._tokens + gain)
        self._tokens_at = until

    def _cap(self) -> float:
        return min(self._capacity, max(0.0, self._usable()))

    # -- spending --------------------------------------------------------------------------
    def _need(self, cost: float) -> float:
        # A cost above a whole window's usable points could never be met: let it go at the
        # start of a window, when everything is left.
        return min(float(cost), self.points - self._margin)

    def ready_at(self, cost: float, now: float) -> float:
        """The earliest time ``cost`` points may be spent (``now`` when they may be now)."""
        self._advance(now)
        need = self._need(cost)
        if self._zeroed or self._usable() < need:
            return max(now, self._reset_at)
        target = min(need, self._capacity)
        if self._tokens >= target:
            return now
        # Solve slow * U * ln(T / T1) = deficit for T1, the time to the reset at readiness.
        left = self._reset_at - now
        deficit = target - self._tokens
        t1 = left * math.exp(-deficit / (self._slow * self._usable()))
        return now + (left - t1)

    def take(self, cost: float, now: float) -> None:
        """Charge ``cost`` estimated points for a request about to be sent."""
        self._advance(now)
        self._remaining -= cost
        self._in_flight += cost
        # May go below zero for a cost above the allowance: the debt delays the next spender.
        self._tokens -= cost

    def give_back(self, cost: float, now: float) -> None:
        """A charged request was not sent after all."""
        self._advance(now)
        self._remaining = min(float(self.points), self._remaining + cost)
        self._in_flight = max(0.0, self._in_flight - cost)
        self._tokens = min(self._cap(), self._tokens + cost)

    def answered(self, cost: float) -> None:
        """A charged request is no longer in flight (answered or lost on the way)."""
        self._in_flight = max(0.0, self._in_flight - cost)

    def correct(self, estimated: float, actual: float, now: float) -> None:
        """The answer showed the request's actual cost: charge (or give back) the difference."""
        self._advance(now)
        extra = actual - estimated
        self._remaining = min(float(self.points), self._remaining - extra)
        self._tokens = min(self._cap(), self._tokens - extra)

    # -- what Jira says ----------------------------------------------------------------------
    def report(
        self, remaining: float | None, reset_at: float | None, now: float, cost: float = 0.0,
        *, rounded: bool = False,
    ) -> None:
        """Jira says ``remaining`` points are left until ``reset_at`` (either may be unknown),
        in the answer to a request of estimated ``cost`` (counted by Jira in ``remaining``).

        ``rounded``: ``reset_at`` was counted in whole seconds rounded up (``RateLimit``'s
        ``t``), so it only places Jira's reset within a second or so of it."""
        self._advance(now)
        theirs = None
        if remaining is not None:
            # Jira hasn't counted our other requests still in flight; our count has.
            theirs = remaining - max(0.0, self._in_flight - cost)
        if reset_at is not None and reset_at > now:
            offset = reset_at - self._reset_at
            windows = round(offset / self.window_s)
            off_phase = abs(offset - windows * self.window_s)
            if windows < 0 and off_phase <= min(STALE_SLACK_S, self.window_s / 2):
                return  # sent by Jira before the reset we have already rolled past: stale
            if off_phase > RESET_TOLERANCE_S:
                # Jira's windows don't end where ours do (a skewed clock): follow Jira's.
                self._reset_at = reset_at
            elif windows > 0:
                # Jira has already reset (its clock runs a little ahead): so do we.
                self._reset_at = reset_at
                self._remaining = float(self.points)
                self._slow = 1.0
                self._zeroed = False
            elif not rounded:
                # The same reset; take the later of the two, so we never roll before Jira.
                self._reset_at = max(self._reset_at, reset_at)
            # else the same reset, ours as exact as a rounded one can tell: keep ours. Taking
            # the later would pace what is left to a reset up to a second late, every window,
            # and leave that second's points unspent when Jira resets.
        if theirs is not None and theirs < self._remaining:
            self._remaining = theirs
            self._tokens = min(self._tokens, self._cap())

    def near_limit(self, now: float) -> bool:
        """Jira says less than a fifth is left. Returns whether that changed the pacing."""
        self._advance(now)
        share = NEAR_LIMIT_SHARE * self.points
        if self._remaining <= share:
            # Our count already knew: the pacing already spreads what is left to the reset.
            return False
        self._remaining = share
        self._slow = min(self._slow, NEAR_LIMIT_SLOWDOWN)
        self._tokens = min(self._tokens, self._cap())
        return True

    def exhausted(self, until: float | None, now: float) -> None:
        """A quota 429: nothing is left until ``until`` (Jira's reset; ours when unknown)."""
        self._advance(now)
        if until is not None:
            if until <= now:
                return  # refused before a reset we have already seen
            self._reset_at = until
        self._remaining = 0.0
        self._zeroed = True
        self._tokens = min(self._tokens, 0.0)

    def snapshot(self, now: float) -> Mapping[str, Any]:
        """The quota's state as plain values (for logs and tests)."""
        self._advance(now)
        return {
            "scope": str(self.scope),
            "remaining": round(self._remaining, 3),
            "in_flight": self._in_flight,
            "reset_at": self._reset_at,
            "rate": self.rate(now),
            "slow": self._slow,
        }


def measured_cost(request: JiraRequest, body: Any) -> int | None:
    """A read's actual cost from its answer, when the answer shows it: a search returns a page
    of issues, each a core object read. None when the answer shows nothing beyond the estimate."""
    reads = request.method == "GET" or request.template.endswith("/search/jql")
    if not reads or not isinstance(body, Mapping):
        return None
    issues = body.get("issues")
    if not isinstance(issues, list):
        return None
    return REQUEST_COST + CORE_OBJECT_COST * len(issues)
