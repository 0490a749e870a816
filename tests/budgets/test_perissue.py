"""Per-issue writes: never more than 20 in any 2 s nor 100 in any 30 s to one issue."""

from __future__ import annotations

from runner.budgets.perissue import IssueWrites, per_issue_rate
from runner.config.configfile import JiraBudgets

T0 = 1_000_000.0


def writes(log: IssueWrites, key: str, start: float, end: float) -> list[float]:
    """Times a writer with endless demand writes to ``key``, each as soon as allowed."""
    t, out = start, list[float]()
    while True:
        ready = log.ready_at(key, t)
        if ready >= end:
            return out
        if ready > t:
            t = ready
            continue
        log.take(key, t)
        out.append(t)


def most_in_any(times: list[float], span: float) -> int:
    """The most writes in any closed interval [t, t + span] (stricter than Jira's)."""
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - span:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_endless_writes_to_one_issue_stay_within_both_windows() -> None:
    """Two minutes of greedy writes to one issue: at most 20 in any 2 s and 100 in any 30 s,
    even counting both ends of each window."""
    log = IssueWrites(20, 100)
    times = writes(log, "MIG-1", T0, T0 + 120)
    assert most_in_any(times, 2.0) <= 20
    assert most_in_any(times, 30.0) <= 100
    # Near the budget: about 100 per 30.25 s (the guard) over four windows.
    assert len(times) >= 390


def test_the_guard_absorbs_arrival_jitter() -> None:
    """Jira counts arrivals: with latency varying by up to the guard, the writes Jira sees in
    2 s left within 2 s + guard. With the guard no such span holds 21 sends; without it, some
    do (an early arrival after late ones would be refused)."""
    jitter = 0.25
    guarded = writes(IssueWrites(20, 100, guard_s=jitter), "MIG-1", T0, T0 + 60)
    assert most_in_any(guarded, 2.0 + jitter - 1e-9) <= 20
    bare = writes(IssueWrites(20, 100, guard_s=0.0), "MIG-1", T0, T0 + 60)
    assert most_in_any(bare, 2.0 + jitter - 1e-9) > 20


def test_other_issues_are_not_held_back() -> None:
    """A full window on one issue doesn't delay a write to another."""
    log = IssueWrites(2, 100)
    log.take("MIG-1", T0)
    log.take("MIG-1", T0)
    assert log.ready_at("MIG-1", T0) > T0
    assert log.ready_at("MIG-2", T0) == T0


def test_idle_issues_are_forgotten() -> None:
    """Memory follows the issues written lately: an issue idle past the longest window is
    dropped, an issue written within it is kept."""
    log = IssueWrites(20, 100)
    for n in range(1000):
        log.take(f"OLD-{n}", T0)
    log.take("NEW-1", T0 + 20)
    assert len(log) == 1001
    assert log.ready_at("NEW-1", T0 + 40) == T0 + 40
    assert len(log) == 1


def test_a_write_given_back_is_not_counted() -> None:
    """A write recorded but never sent frees its place in the windows."""
    log = IssueWrites(1, 100)
    log.take("MIG-1", T0)
    assert log.ready_at("MIG-1", T0) > T0
    log.give_back("MIG-1", T0)
    assert log.ready_at("MIG-1", T0) == T0
    assert len(log) == 0


def test_the_steady_rate_is_the_plans() -> None:
    """One issue takes min(20/2, 100/30) writes per second at length, the plan's bound."""
    assert per_issue_rate(JiraBudgets()) == 100 / 30
    assert per_issue_rate(JiraBudgets(per_issue_2s=2, per_issue_30s=100)) == 1.0


def test_a_busy_issue_keeps_only_writes_its_windows_can_see() -> None:
    """Under limits set far above the traffic, an issue written without pause for ten minutes
    keeps the writes of its last window only, not every write since the first."""
    log = IssueWrites(1_000_000, 1_000_000, guard_s=0.0)
    for n in range(6000):
        log.take("MIG-1", T0 + n / 10)
    kept = log._logs["MIG-1"]
    assert len(kept) <= 301
    assert kept[0] > T0 + 599.9 - 30
