"""Row keys checked for repeats on disk: exact, in source order, with both rows' places."""

from __future__ import annotations

from runner.job.rowkeys import Repeat, RowKeys


def _feed(keys: RowKeys, values: list[str]) -> Repeat | None:
    for line, value in enumerate(values, start=2):
        repeat = keys.add(value, f"rows.csv line {line}")
        if repeat is not None:
            return repeat
    return keys.finish()


def test_distinct_keys_pass() -> None:
    """Keys all different, over several batches and a partial one, give no repeat."""
    with RowKeys(batch=3) as keys:
        assert _feed(keys, [f"L-{n}" for n in range(10)]) is None


def test_a_repeat_within_one_batch_names_both_rows() -> None:
    """A key seen twice in one batch is found with the later row's place and the first's,
    even when the places sort the other way (line 10 sorts before line 9 as text)."""
    values = ["a", "b", "c", "d", "e", "f", "g", "x", "x"]
    with RowKeys(batch=100) as keys:
        assert _feed(keys, values) == Repeat("x", "rows.csv line 10", "rows.csv line 9")


def test_a_repeat_across_batches_is_the_first_in_source_order() -> None:
    """Across batches, the first row in source order that repeats an earlier key is reported."""
    values = ["a", "b", "c", "d", "b", "a"]
    with RowKeys(batch=2) as keys:
        assert _feed(keys, values) == Repeat("b", "rows.csv line 6", "rows.csv line 3")


def test_keys_are_compared_by_value() -> None:
    """Keys differing only in case or by a trailing space are different keys."""
    with RowKeys(batch=2) as keys:
        assert _feed(keys, ["L-1", "l-1", "L-1 ", "L-2"]) is None
