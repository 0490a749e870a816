"""The gateway's mint limit: one budget per OAuth client, by one of three algorithms.

Atlassian documents 1,000 mints per minute per OAuth client but not how the window works, so
the sandbox offers the three plausible ones and the runner must pace correctly under each:

- ``sliding``: at most ``limit`` accepted in any ``window_s`` (a log of accepted times);
- ``fixed``: at most ``limit`` per window, windows aligned to multiples of ``window_s`` on the
  clock, so a burst at a window's end and another at the next one's start both pass;
- ``token_bucket``: ``limit`` tokens, refilled at ``limit / window_s`` per second.

A rejected attempt consumes nothing: a client hammering a closed budget is not punished further.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from runner.sandbox.config import MintLimit


@dataclass(frozen=True)
class Verdict:
    """The limiter's answer to one attempt. ``retry_after_s`` and ``reset_at`` only when refused."""

    allowed: bool
    retry_after_s: float = 0.0
    # When the budget next has room (POSIX time): what `X-RateLimit-Reset` reports.
    reset_at: float = 0.0


@dataclass
class _ClientState:
    accepted: deque[float] = field(default_factory=deque)  # sliding
    window_start: float = -math.inf  # fixed
    count: int = 0  # fixed
    tokens: float = 0.0  # token_bucket
    refilled_at: float | None = None  # token_bucket


class MintLimiter:
    """Per OAuth client mint budgets under one ``MintLimit``."""

    def __init__(self, limit: MintLimit) -> None:
        self.limit = limit
        self._clients: dict[str, _ClientState] = {}

    def attempt(self, client_id: str, now: float) -> Verdict:
        """Try to spend one mint of ``client_id``'s budget at time ``now``."""
        state = self._clients.setdefault(client_id, _ClientState())
        if self.limit.limit <= 0:
            # No budget at all: nothing will ever pass; tell the client to wait a window.
            return Verdict(False, self.limit.window_s, now + self.limit.window_s)
        if self.limit.algorithm == "fixed":
            return self._fixed(state, now)
        if self.limit.algorithm == "token_bucket":
            return self._token_bucket(state, now)
        return self._sliding(state, now)

    def _sliding(self, state: _ClientState, now: float) -> Verdict:
        window = self.limit.window_s
        log = state.accepted
        while log and log[0] <= now - window:
            log.popleft()
        if len(log) < self.limit.limit:
            log.append(now)
            return Verdict(True)
        # Room opens when the oldest accepted mint leaves the window.
        reset_at = log[0] + window
        return Verdict(False, reset_at - now, reset_at)

    def _fixed(self, state: _ClientState, now: float) -> Verdict:
        window = self.limit.window_s
        start = math.floor(now / window) * window
        if start != state.window_start:
            state.window_start = start
            state.count = 0
        if state.count < self.limit.limit:
            state.count += 1
            return Verdict(True)
        reset_at = start + window
        return Verdict(False, reset_at - now, reset_at)

    def _token_bucket(self, state: _ClientState, now: float) -> Verdict:
        capacity = float(self.limit.limit)
        rate = capacity / self.limit.window_s
        if state.refilled_at is None:
            state.tokens = capacity
        else:
            state.tokens = min(capacity, state.tokens + (now - state.refilled_at) * rate)
        state.refilled_at = now
        if state.tokens >= 1.0:
            state.tokens -= 1.0
            return Verdict(True)
        wait = (1.0 - state.tokens) / rate
        return Verdict(False, wait, now + wait)
