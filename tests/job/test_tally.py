"""Counting distinct keys in compact hashes (runner.tally), as check_rows and plan do."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from runner.job.tally import HashTally, key_hash


def test_distinct_counts_match_a_set_across_many_flushes() -> None:
    """Counts stay exact across buffer flushes and run merges."""
    tally = HashTally()
    keys = [f"user-{i % 40_000}" for i in range(100_000)]
    for k in keys:
        tally.add(k)
    assert tally.total == 100_000
    assert tally.distinct() == 40_000
    counts = Counter(keys)
    assert dict(tally.items()) == {key_hash(k): n for k, n in counts.items()}


def test_repeated_and_most() -> None:
    """repeated() gives hashes seen twice or more; most() the most frequent one."""
    tally = HashTally()
    for k in ["a", "b", "b", "c", "c", "c"]:
        tally.add(k)
    assert set(tally.repeated()) == {key_hash("b"), key_hash("c")}
    assert tally.most() == (key_hash("c"), 3)
    assert HashTally().most() is None
    assert HashTally().distinct() == 0


def test_hashes_are_stable_across_processes() -> None:
    """key_hash does not depend on PYTHONHASHSEED, unlike hash(): another process agrees."""
    code = "from runner.job.tally import key_hash; print(key_hash('5b10a2844c20165700ede21g'))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert int(out.stdout) == key_hash("5b10a2844c20165700ede21g")
