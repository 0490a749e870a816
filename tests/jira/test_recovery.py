"""How long a create not found by search must wait before "missing" is believed."""

from __future__ import annotations

from runner.jira.recovery import Found, Missing, Unknown, too_early


def test_missing_by_search_waits_out_the_settle_time_from_the_items_start() -> None:
    """Not found by search 2 s after the item's start, with 30 s to settle: 28 s to wait;
    once 30 s have passed (or the start is unknown) there is nothing to wait for."""
    by_search = Missing(by_search=True)
    assert too_early(by_search, 1000.0, 1002.0, 30.0) == 28.0
    assert too_early(by_search, 1000.0, 1030.0, 30.0) == 0.0
    assert too_early(by_search, 1000.0, 1200.0, 30.0) == 0.0
    assert too_early(by_search, None, 1002.0, 30.0) == 0.0
    assert too_early(by_search, 1000.0, 1000.0, 0.0) == 0.0


def test_only_a_search_miss_waits() -> None:
    """A miss in an issue's own list of comments or worklogs, a find, or a failed look-up is
    acted on at once: only search lags behind writes."""
    for verdict in (Missing(), Found({"id": "1"}), Unknown("search failed")):
        assert too_early(verdict, 1000.0, 1001.0, 30.0) == 0.0
