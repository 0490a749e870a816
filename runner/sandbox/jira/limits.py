"""Jira's three rate limits (atlassian-facts.md section 3) and the headers that report them.

1. Points quota per app, shared by every site, in windows aligned to multiples of
   ``quota_window_s`` since the epoch (the top of each UTC hour by default).
2. Burst: a token bucket per (site, path template, method), refilled each second.
3. Per-issue writes: sliding 2 s and 30 s windows per issue.

``admit`` decides before the request runs (and takes a burst token, records the write);
``charge`` bills the quota after it ran, when the number of objects read is known.
All time comes from the World's clock, so tests can move it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from runner.sandbox.config import JiraLimits

QUOTA_REASON = "jira-quota-global-based"
BURST_REASON = "jira-burst-based"
PER_ISSUE_REASON = "jira-per-issue-on-write"
QUOTA_POLICY = "global-app-quota"
# Past this share of the quota used, successes carry `RateLimit` with the remaining points.
NEAR_USE = 0.8


@dataclass(frozen=True)
class Limited:
    """A limit the request hit: everything its 429 headers say."""

    reason: str
    scope: str  # "quota", "<cloud_id> <METHOD> <template>", or the issue key
    policy: str  # policy name in RateLimit-Policy / RateLimit
    limit: int
    window_s: float
    wait_s: float  # seconds until the request would be admitted
    reset_at: float  # when that is

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.wait_s))


def iso_time(at: float) -> str:
    """ISO 8601 in UTC with ``Z``; milliseconds only when the instant has them."""
    when = datetime.fromtimestamp(at, UTC)
    spec = "seconds" if when.microsecond == 0 else "milliseconds"
    return when.isoformat(timespec=spec).replace("+00:00", "Z")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class RateLimits:
    def __init__(self, config: JiraLimits, clock: Callable[[], float]) -> None:
        self.config = config
        self._clock = clock
        self._window_start = -math.inf
        self._used = 0
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._writes: dict[str, deque[float]] = {}  # issue key -> times of recent writes

    # -- the quota ---------------------------------------------------------------------------
    def _roll(self, now: float) -> None:
        w = self.config.quota_window_s
        start = math.floor(now / w) * w
        if start != self._window_start:
            self._window_start, self._used = start, 0

    @property
    def quota_remaining(self) -> int:
        self._roll(self._clock())
        return max(0, self.config.quota_points - self._used)

    def _quota_reset(self) -> float:
        return self._window_start + self.config.quota_window_s

    def charge(self, points: int) -> None:
        self._roll(self._clock())
        self._used += points

    # -- admission ---------------------------------------------------------------------------
    def admit(self, cloud_id: str, route_name: str, method: str, issue_key: str | None
              ) -> Limited | None:
        """The first limit this request hits, or None (then its burst token and its write to
        the issue are taken). The quota is checked here but billed by ``charge``."""
        now = self._clock()
        self._roll(now)
        cfg = self.config
        if self._used >= cfg.quota_points:
            reset = self._quota_reset()
            return Limited(QUOTA_REASON, "quota", QUOTA_POLICY, cfg.quota_points,
                           cfg.quota_window_s, reset - now, reset)
        rate = cfg.burst_put_delete if method in ("PUT", "DELETE") else cfg.burst_get_post
        bucket_key = f"{cloud_id} {route_name}"
        tokens, at = self._buckets.get(bucket_key, (float(rate), now))
        tokens = min(float(rate), tokens + (now - at) * rate)
        if tokens < 1.0:
            wait = (1.0 - tokens) / rate
            self._buckets[bucket_key] = (tokens, now)
            return Limited(BURST_REASON, bucket_key, BURST_REASON, rate, 1.0, wait, now + wait)
        if issue_key is not None:
            writes = self._writes.setdefault(issue_key, deque())
            while writes and writes[0] <= now - 30.0:
                writes.popleft()
            for limit, window in ((cfg.per_issue_2s, 2.0), (cfg.per_issue_30s, 30.0)):
                recent = [t for t in writes if t > now - window]
                if len(recent) >= limit:
                    # Admitted again once the oldest write that fills the window leaves it.
                    reset = recent[len(recent) - limit] + window
                    return Limited(PER_ISSUE_REASON, issue_key, PER_ISSUE_REASON, limit,
                                   window, reset - now, reset)
            writes.append(now)
        self._buckets[bucket_key] = (tokens - 1.0, now)
        return None

    # -- headers -----------------------------------------------------------------------------
    def limited_headers(self, hit: Limited) -> dict[str, str]:
        """The full header set of a 429 (or, prefixed, of a beta warning)."""
        t = hit.retry_after
        return {
            "Retry-After": str(t),
            "X-RateLimit-Reset": iso_time(hit.reset_at),
            "X-RateLimit-Limit": str(hit.limit),
            "X-RateLimit-Remaining": "0",
            "RateLimit-Reason": hit.reason,
            "RateLimit-Policy": f'"{hit.policy}";q={hit.limit};w={_number(hit.window_s)}',
            "RateLimit": f'"{hit.policy}";r=0;t={t}',
        }

    def edge_headers(self, hit: Limited) -> dict[str, str]:
        """An edge's 429: a failure category and the X-RateLimit-* numbers, nothing else."""
        return {
            "X-Failure-Category": "FAILURE CLIENT RATE LIMITED",
            "X-RateLimit-Limit": str(hit.limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": iso_time(hit.reset_at),
        }

    def success_headers(self) -> dict[str, str]:
        """The quota as a successful response reports it."""
        now = self._clock()
        self._roll(now)
        cfg = self.config
        remaining = max(0, cfg.quota_points - self._used)
        reset = self._quota_reset()
        headers = {
            "X-RateLimit-Limit": str(cfg.quota_points),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": iso_time(reset),
            "RateLimit-Policy": (
                f'"{QUOTA_POLICY}";q={cfg.quota_points};w={_number(cfg.quota_window_s)}'
            ),
        }
        if self._used > NEAR_USE * cfg.quota_points:
            seconds = max(0, math.ceil(reset - now))
            headers["RateLimit"] = f'"{QUOTA_POLICY}";r={remaining};t={seconds}'
        if remaining < (1.0 - NEAR_USE) * cfg.quota_points:
            headers["X-RateLimit-NearLimit"] = "true"
        return headers


def beta(headers: dict[str, str]) -> dict[str, str]:
    """Informational copies: the same headers, each name prefixed with ``Beta-``."""
    return {f"Beta-{name}": value for name, value in headers.items()}
