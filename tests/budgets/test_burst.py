"""Burst buckets: the documented rates, bursts no bigger than half of Jira's, AIMD per key."""

from __future__ import annotations

import pytest

from runner.budgets.burst import BurstBucket, burst_rate
from runner.config.configfile import JiraBudgets
from runner.jira.ratelimit import Scope

T0 = 1_000_000.0
KEY = Scope.burst("acme", "GET", "/rest/api/3/issue/{issueIdOrKey}")


def sends(bucket: BurstBucket, start: float, end: float) -> list[float]:
    """Times a client with endless demand sends at, each as soon as the bucket allows."""
    t, out = start, list[float]()
    while True:
        ready = bucket.ready_at(t)
        if ready >= end:
            return out
        if ready > t:
            t = ready
            continue
        bucket.take(t)
        out.append(t)


def most_in_any(times: list[float], span: float) -> int:
    """The most sends in any half-open interval [t, t + span)."""
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - span:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_rates_are_the_documented_ones_per_method() -> None:
    """GET and POST get burst_get_post per second, PUT and DELETE burst_put_delete."""
    budgets = JiraBudgets()
    assert [burst_rate(budgets, m) for m in ("GET", "POST", "PUT", "DELETE")] == [
        100.0, 100.0, 50.0, 50.0,
    ]
    small = JiraBudgets(burst_get_post=7, burst_put_delete=3)
    assert (burst_rate(small, "get"), burst_rate(small, "delete")) == (7.0, 3.0)


def test_endless_demand_gets_the_rate_and_bursts_of_half_a_second_at_most() -> None:
    """Over ten seconds a greedy client sends at the key's rate; no second holds more than one
    second's worth plus half a second's burst, and the first instant only half a second's."""
    bucket = BurstBucket(KEY, 100, now=T0)
    times = sends(bucket, T0, T0 + 10)
    assert len(times) == pytest.approx(1000 + 50, abs=2)
    assert sum(1 for t in times if t == T0) == 50
    assert most_in_any(times, 1.0) <= 150


def test_a_burst_429_halves_the_rate_once_per_hold() -> None:
    """A 429 halves the key's rate; 429s from calls already in flight (within the hold) don't
    halve it again."""
    bucket = BurstBucket(KEY, 100, now=T0)
    assert bucket.cut(T0 + 1)
    assert bucket.rate(T0 + 1) == 50
    assert not bucket.cut(T0 + 1.5)
    assert bucket.rate(T0 + 1.5) == pytest.approx(50.5)
    assert bucket.cut(T0 + 2.1)
    assert bucket.rate(T0 + 2.1) == pytest.approx((50 + 1.1) / 2)


def test_the_rate_regrows_by_one_per_second_back_to_the_default() -> None:
    """Without a 429 the cut rate grows by 1/s each second and stops at the default."""
    bucket = BurstBucket(KEY, 20, now=T0)
    bucket.cut(T0)
    assert bucket.rate(T0) == 10
    assert bucket.rate(T0 + 4) == pytest.approx(14)
    assert bucket.rate(T0 + 10) == 20
    assert bucket.rate(T0 + 100) == 20


def test_the_rate_never_falls_below_one_call_a_second() -> None:
    """However many 429s come, the key still gets a call a second."""
    bucket = BurstBucket(KEY, 100, now=T0, regrow_per_s=0.0)
    for i in range(20):
        bucket.cut(T0 + 2 * i)
    assert bucket.rate(T0 + 40) == 1.0
    times = sends(bucket, T0 + 41, T0 + 51)
    assert 9 <= len(times) <= 11


def test_sends_follow_the_regrowing_rate() -> None:
    """After a cut the bucket is empty and sends follow the rate as it regrows: the calls
    allowed are the integral of the rate, not the default's."""
    bucket = BurstBucket(KEY, 20, now=T0, capacity_s=0.05)
    bucket.cut(T0)
    times = sends(bucket, T0, T0 + 10)
    # 10/s growing to 20/s over 10 s: 150 calls, give or take the rounding of tokens.
    assert len(times) == pytest.approx(150, abs=2)
    assert most_in_any(times, 1.0) <= 21


def test_a_call_given_back_is_sent_again_at_once() -> None:
    """A token taken for a call that was not sent is returned."""
    bucket = BurstBucket(KEY, 2, now=T0, capacity_s=0.5)
    bucket.take(T0)
    assert bucket.ready_at(T0) > T0
    bucket.give_back(T0)
    assert bucket.ready_at(T0) == T0


def test_a_bucket_back_at_its_default_can_be_forgotten() -> None:
    """A key cut and fully regrown, its bucket full, is no different from a new one."""
    bucket = BurstBucket(KEY, 10, now=T0)
    bucket.cut(T0)
    assert not bucket.forgettable(T0 + 1)
    assert bucket.forgettable(T0 + 30)
