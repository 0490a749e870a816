"""The mint limiter's three algorithms, on explicit times (time is the subject here)."""

from __future__ import annotations

import pytest

from runner.sandbox.config import MintAlgorithm, MintLimit
from runner.sandbox.mintlimit import MintLimiter

T0 = 1_800_000_000.0  # a multiple of 10, so fixed windows of 10 s start here


def limiter(algorithm: MintAlgorithm, limit: int = 2, window_s: float = 10.0) -> MintLimiter:
    return MintLimiter(MintLimit(limit=limit, window_s=window_s, algorithm=algorithm))


def test_sliding_window_counts_the_last_window_s() -> None:
    """Sliding: the limit holds in any window_s; room opens when the oldest mint leaves it."""
    lim = limiter("sliding")
    assert lim.attempt("c", T0).allowed
    assert lim.attempt("c", T0 + 4).allowed
    refused = lim.attempt("c", T0 + 9)
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(1.0)
    assert refused.reset_at == pytest.approx(T0 + 10)
    assert lim.attempt("c", T0 + 10).allowed
    assert not lim.attempt("c", T0 + 13).allowed
    assert lim.attempt("c", T0 + 14).allowed


def test_fixed_window_resets_at_multiples_of_window_s() -> None:
    """Fixed: windows align to the clock, so full bursts either side of a boundary both pass."""
    lim = limiter("fixed")
    assert lim.attempt("c", T0 + 8).allowed
    assert lim.attempt("c", T0 + 9).allowed
    refused = lim.attempt("c", T0 + 9.5)
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(0.5)
    assert refused.reset_at == pytest.approx(T0 + 10)
    assert lim.attempt("c", T0 + 10).allowed
    assert lim.attempt("c", T0 + 10).allowed
    assert not lim.attempt("c", T0 + 19.9).allowed


def test_token_bucket_refills_at_limit_per_window() -> None:
    """Token bucket: a full burst of `limit`, then one mint per window_s / limit seconds."""
    lim = limiter("token_bucket")
    assert lim.attempt("c", T0).allowed
    assert lim.attempt("c", T0).allowed
    refused = lim.attempt("c", T0 + 1)
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(4.0)
    assert lim.attempt("c", T0 + 5).allowed
    assert not lim.attempt("c", T0 + 5).allowed
    # A long pause refills to capacity, never beyond it.
    assert lim.attempt("c", T0 + 1000).allowed
    assert lim.attempt("c", T0 + 1000).allowed
    assert not lim.attempt("c", T0 + 1000).allowed


@pytest.mark.parametrize("algorithm", ["sliding", "fixed", "token_bucket"])
def test_rejected_attempts_do_not_consume(algorithm: MintAlgorithm) -> None:
    """Hammering a spent budget does not push back the moment it opens again."""
    calm, hammered = limiter(algorithm), limiter(algorithm)
    for lim in (calm, hammered):
        assert lim.attempt("c", T0).allowed
        assert lim.attempt("c", T0).allowed
    for i in range(50):
        assert not hammered.attempt("c", T0 + i * 0.1).allowed
    later = T0 + 10
    assert hammered.attempt("c", later).allowed == calm.attempt("c", later).allowed is True


@pytest.mark.parametrize("algorithm", ["sliding", "fixed", "token_bucket"])
def test_each_client_has_its_own_budget(algorithm: MintAlgorithm) -> None:
    """One OAuth client spending its budget leaves another's untouched."""
    lim = limiter(algorithm)
    assert lim.attempt("dev", T0).allowed
    assert lim.attempt("dev", T0).allowed
    assert not lim.attempt("dev", T0).allowed
    assert lim.attempt("prod", T0).allowed


def test_zero_limit_refuses_everything() -> None:
    """A limit of 0 refuses every mint and asks the client to wait a window."""
    refused = limiter("sliding", limit=0).attempt("c", T0)
    assert not refused.allowed
    assert refused.retry_after_s == 10.0
