"""Per-issue writes: no more than ``per_2s`` writes in any 2 s and ``per_30s`` in any 30 s to
one issue (Jira: 20 and 100; atlassian-facts.md section 3).

A sliding log per issue keeps the times of its last writes; a write may leave once the oldest
write that would fill a window has left it. Each window is lengthened by ``guard_s``: Jira
counts arrivals, not departures, and a write that left late but arrives early (latency varies
from call to call) must still find the window clear. The longest window is what matters for
memory: an issue not written for longer than it is forgotten, so memory follows the issues
being written now, not every issue a job ever touched.

Every method takes ``now`` (POSIX seconds): the log keeps no clock, its owner does.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable

from runner.config.configfile import JiraBudgets

DEFAULT_GUARD_S = 0.25


def per_issue_rate(budgets: JiraBudgets) -> float:
    """Writes per second one issue takes at length (the rate ``runner.plan`` bounds with)."""
    return min(budgets.per_issue_2s / 2.0, budgets.per_issue_30s / 30.0)


class IssueWrites:
    """Sliding logs of recent writes, one per issue key (any hashable, e.g. a ``Scope``)."""

    def __init__(self, per_2s: int, per_30s: int, *, guard_s: float = DEFAULT_GUARD_S) -> None:
        if per_2s < 1 or per_30s < 1 or guard_s < 0:
            raise ValueError("per-issue limits need per_2s, per_30s >= 1 and guard_s >= 0")
        self.rules = ((per_2s, 2.0 + guard_s), (per_30s, 30.0 + guard_s))
        self._horizon = max(window for _, window in self.rules)
        self._depth = max(limit for limit, _ in self.rules)
        # Least recently written first, so forgetting idle issues stops at the first busy one.
        self._logs: OrderedDict[Hashable, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        """Issues remembered."""
        return len(self._logs)

    def ready_at(self, key: Hashable, now: float) -> float:
        """The earliest time a write to ``key`` keeps every window within its limit."""
        self._forget(now)
        log = self._logs.get(key)
        if not log:
            return now
        ready = now
        for limit, window in self.rules:
            if len(log) >= limit:
                ready = max(ready, log[-limit] + window)
        return ready

    def take(self, key: Hashable, now: float) -> None:
        """Record a write to ``key`` leaving at ``now``."""
        self._forget(now)
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = deque(maxlen=self._depth)
        else:
            self._logs.move_to_end(key)
            # Writes older than the longest window count in none: drop them, so that a busy
            # issue's log holds what its windows can see, not ``per_30s`` entries (which a
            # config may set far above the traffic, where they would pile up with the job).
            while log and log[0] <= now - self._horizon:
                log.popleft()
        log.append(now)

    def give_back(self, key: Hashable, at: float) -> None:
        """A write recorded at ``at`` was not sent after all."""
        log = self._logs.get(key)
        if log is None:
            return
        # Usually the newest entry: search from the end.
        for i in range(len(log) - 1, -1, -1):
            if log[i] == at:
                del log[i]
                break
        if not log:
            del self._logs[key]

    def _forget(self, now: float) -> None:
        """Drop issues whose last write has left every window."""
        while self._logs:
            key, log = next(iter(self._logs.items()))
            if log and log[-1] > now - self._horizon:
                break
            del self._logs[key]
