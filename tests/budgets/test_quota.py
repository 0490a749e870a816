"""The points quota: paced across its window, never overrun, kept in step with Jira's headers."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from runner.budgets.quota import (
    PointsQuota,
    aligned_reset,
    measured_cost,
    quota_rate,
)
from runner.config.configfile import JiraBudgets
from runner.jira.client import JiraRequest
from runner.jira.ratelimit import Scope

POINTS = 1000
WINDOW = 100.0
START = 1000 * WINDOW  # the start of a window
MARGIN = 0.02


def new_quota(now: float = START, **kw: float) -> PointsQuota:
    return PointsQuota(Scope.global_quota(), POINTS, WINDOW, now=now, **kw)


def spend_greedily(quota: PointsQuota, start: float, end: float, cost: int = 1) -> list[float]:
    """A client with endless demand: each request leaves the moment the quota allows it."""
    t, spends = start, list[float]()
    while True:
        ready = quota.ready_at(cost, t)
        if ready >= end:
            return spends
        if ready > t:
            t = ready
            continue
        quota.take(cost, t)
        quota.answered(cost)
        spends.append(t)


def per_window(spends: list[float]) -> Counter[float]:
    return Counter(math.floor(t / WINDOW) for t in spends)


def test_windows_end_at_multiples_of_the_window_since_the_epoch() -> None:
    """An hour's window ends at the top of the next UTC hour, wherever in it we start."""
    assert aligned_reset(1_800_000_123.4, 3600.0) == 1_800_003_600.0
    assert aligned_reset(START, WINDOW) == START + WINDOW
    assert aligned_reset(START + 99.9, WINDOW) == START + WINDOW
    assert new_quota(START + 42.0).reset_at == START + WINDOW


def test_endless_demand_is_spread_evenly_across_the_window() -> None:
    """A client that wants more than the quota spends it evenly up to the reset, not at once:
    after the small initial allowance, every tenth of the window gets the same share."""
    quota = new_quota()
    spends = spend_greedily(quota, START, START + WINDOW)
    tenths = Counter(math.floor((t - START) / (WINDOW / 10)) for t in spends)
    allowance = 0.05 * POINTS
    assert sum(1 for t in spends if t == START) <= allowance
    later = [tenths[i] for i in range(1, 10)]
    mean = sum(later) / len(later)
    assert all(abs(n - mean) <= 0.05 * mean + 1 for n in later), later
    assert tenths[0] <= mean + allowance + 1
    # The last tenth is still spending: nothing stalls before the reset.
    assert max(spends) > START + 0.99 * WINDOW


def test_never_spends_more_than_the_quota_less_its_margin_in_any_window() -> None:
    """Started mid-window and run for several windows, no window gets more than the quota less
    the margin (so no quota 429), and each full window gets nearly all of it."""
    quota = new_quota(START + 37.3)
    spends = spend_greedily(quota, START + 37.3, START + 5 * WINDOW)
    counts = per_window(spends)
    assert max(counts.values()) <= POINTS * (1 - MARGIN)
    full = [counts[k] for k in sorted(counts)[1:]]
    assert all(n >= POINTS * (1 - MARGIN) - 2 for n in full), full


def test_a_job_within_the_allowance_never_waits() -> None:
    """Spending no more than the allowance (5% of the quota) goes at once."""
    quota = new_quota()
    for _ in range(int(0.05 * POINTS)):
        assert quota.ready_at(1, START) == START
        quota.take(1, START)


def test_what_is_left_unspent_is_offered_later_in_the_window() -> None:
    """The pace is what is left over the time to the reset: idle for half the window, the pace
    doubles."""
    quota = new_quota()
    early = quota.rate(START)
    assert early == pytest.approx(POINTS * (1 - MARGIN) / WINDOW)
    assert quota.rate(START + WINDOW / 2) == pytest.approx(2 * early)


def test_a_big_cost_waits_until_the_allowance_has_refilled() -> None:
    """A request costing more than the allowance waits for a full allowance, then goes."""
    quota = new_quota(burst=0.01)
    quota.take(10, START)
    ready = quota.ready_at(30, START)
    assert ready > START
    quota.take(30, ready)  # the debt delays the next spender
    assert quota.ready_at(1, ready) > ready


def test_the_actual_cost_corrects_the_estimate() -> None:
    """A read that turned out dearer is charged the difference; a cheaper one gets it back."""
    quota = new_quota()
    quota.take(2, START)
    quota.correct(2, 12, START)
    assert quota.remaining(START) == POINTS - 12
    quota.correct(12, 1, START)
    assert quota.remaining(START) == POINTS - 1


def test_jira_reporting_less_left_wins_and_more_left_does_not() -> None:
    """Jira's remaining replaces ours when smaller, less our other calls still in flight, and
    never raises ours."""
    quota = new_quota()
    for _ in range(5):
        quota.take(1, START)  # five in flight; Jira answers the first
    quota.report(600, None, START + 1, cost=1)
    assert quota.remaining(START + 1) == 600 - 4
    quota.report(900, None, START + 2, cost=1)
    assert quota.remaining(START + 2) == 596


def test_jira_reporting_nothing_left_holds_spending_until_the_reset() -> None:
    """Remaining 0 from Jira: the next request waits for the reset, then the quota is full."""
    quota = new_quota()
    quota.report(0, START + WINDOW, START + 5)
    assert quota.ready_at(1, START + 5) == START + WINDOW
    assert quota.remaining(START + WINDOW) == POINTS


def test_a_reset_in_whole_seconds_keeps_our_window_but_never_rolls_before_jira() -> None:
    """A reset a fraction of a second after ours (Jira rounds up to whole seconds) is the same
    reset: we take the later one, so we never start spending a new window before Jira does."""
    quota = new_quota()
    quota.report(500, START + WINDOW + 0.6, START + 10)
    assert quota.reset_at == START + WINDOW + 0.6
    quota.report(400, START + WINDOW + 0.2, START + 11)
    assert quota.reset_at == START + WINDOW + 0.6


def test_an_answer_from_before_our_reset_is_ignored() -> None:
    """An answer that left Jira before the reset but arrived after ours doesn't undo it."""
    quota = new_quota()
    now = START + WINDOW + 0.5
    # Jira's t is rounded up and the answer was on its way: its reset reads a little late.
    quota.report(3, START + WINDOW + 0.9, now)
    assert quota.remaining(now) == POINTS
    assert quota.reset_at == START + 2 * WINDOW


def test_jira_windows_elsewhere_are_followed() -> None:
    """When Jira's reset is not where our window says, Jira's clock wins."""
    quota = new_quota()
    quota.report(700, START + 40.0, START + 10)
    assert quota.reset_at == START + 40.0
    assert quota.remaining(START + 40.0) == POINTS
    assert quota.reset_at == START + 40.0 + WINDOW


def test_jira_already_in_the_next_window_rolls_ours() -> None:
    """An answer showing Jira has reset (a window later than ours) starts our new window too."""
    quota = new_quota()
    quota.take(900, START)
    quota.answered(900)
    now = START + WINDOW - 0.3
    quota.report(995, START + 2 * WINDOW, now)
    assert quota.reset_at == START + 2 * WINDOW
    assert quota.remaining(now) == 995


def test_near_limit_caps_what_is_left_and_halves_the_pace_until_the_reset() -> None:
    """NearLimit from a Jira that has less left than we think: a fifth is left at most, paced
    at half; after the reset the pace is whole again."""
    quota = new_quota()
    now = START + 50
    assert quota.near_limit(now)
    left = 0.2 * POINTS
    assert quota.remaining(now) == left
    assert quota.rate(now) == pytest.approx(0.5 * (left - MARGIN * POINTS) / 50)
    assert quota.reason(now) == "near limit"
    after = START + WINDOW + 1
    assert quota.rate(after) == pytest.approx(POINTS * (1 - MARGIN) / (WINDOW - 1))


def test_near_limit_we_already_knew_of_changes_nothing() -> None:
    """Under a fifth left by our own count, NearLimit tells nothing new: the pace stays."""
    quota = new_quota()
    quota.take(900, START)
    before = quota.rate(START + 10)
    assert not quota.near_limit(START + 10)
    assert quota.rate(START + 10) == before


def test_a_quota_429_zeroes_the_quota_until_its_reset() -> None:
    """After a quota 429 nothing may be spent until the reset it names; then the new window's
    points are paced from the reset (no herd of deferred calls at once)."""
    quota = new_quota()
    quota.exhausted(START + WINDOW, START + 3)
    assert quota.ready_at(1, START + 3) == START + WINDOW
    assert quota.ready_at(1, START + 99) == START + WINDOW
    assert quota.reason(START + 50) == "quota spent (429)"
    assert quota.remaining(START + WINDOW) == POINTS
    pace = POINTS * (1 - MARGIN) / WINDOW
    assert quota.ready_at(1, START + WINDOW) == pytest.approx(START + WINDOW + 1 / pace,
                                                              rel=0, abs=0.01)


def test_a_quota_429_without_a_reset_zeroes_until_our_own() -> None:
    """A quota 429 naming no reset holds spending until our window's end."""
    quota = new_quota()
    quota.exhausted(None, START + 3)
    assert quota.ready_at(1, START + 3) == START + WINDOW


def test_a_permit_given_back_restores_the_quota() -> None:
    """Points taken for a request that was not sent come back."""
    quota = new_quota()
    quota.take(7, START)
    quota.give_back(7, START)
    assert quota.remaining(START) == POINTS
    assert quota.ready_at(int(0.05 * POINTS), START) == START


def test_a_search_answer_shows_the_points_it_cost() -> None:
    """A search returning N issues costs 1 + N; other answers show nothing beyond the
    estimate."""
    search = JiraRequest("POST", "/rest/api/3/search/jql", "/rest/api/3/search/jql")
    assert measured_cost(search, {"issues": [{}, {}, {}]}) == 4
    assert measured_cost(search, {"values": []}) is None
    write = JiraRequest("PUT", "/rest/api/3/issue/A-1", "/rest/api/3/issue/{issueIdOrKey}")
    assert measured_cost(write, {"issues": [{}]}) is None


def test_the_steady_rate_is_the_plans() -> None:
    """The quota's steady rate is quota_points / quota_window_s, the plan's bound."""
    budgets = JiraBudgets()
    assert quota_rate(budgets.quota_points, budgets.quota_window_s) == 65000 / 3600
