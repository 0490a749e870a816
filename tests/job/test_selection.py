"""A trial's selection, written into the run's job path and read back by resume and retry."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import InputError
from runner.job.selection import Selection, from_identity


@pytest.mark.parametrize("selection", [
    Selection(limit=5),
    Selection(only=("LEG-1", "LEG 2", "=x")),
    Selection(limit=2, only=("LEG-1",)),
])
def test_a_trial_reads_back_from_its_identity(tmp_path: Path, selection: Selection) -> None:
    """The identity names the job's resolved path and the selection, and gives both back."""
    job = tmp_path / "jobs" / "m.toml"
    identity = selection.identity(job)
    assert identity.startswith(str(job.resolve()) + " (trial: --")
    assert from_identity(identity) == (job.resolve(), selection)


def test_a_full_run_is_matched_by_the_path_alone(tmp_path: Path) -> None:
    """No selection: the identity is the resolved path, and reads back as no trial."""
    job = tmp_path / "m.toml"
    assert Selection().identity(job) == str(job.resolve())
    assert from_identity(str(job.resolve())) == (job.resolve(), Selection())


def test_a_path_that_only_looks_like_a_trial_stays_a_path() -> None:
    """A job file really named ``x.toml (trial: oops)`` is not taken for a trial."""
    name = "/srv/jobs/x.toml (trial: oops)"
    assert from_identity(name) == (Path(name), Selection())


def test_only_splits_commas_and_drops_repeats() -> None:
    """``--only A,B --only B,C`` selects A, B and C once each, in the order given; an --only
    with no key is refused."""
    assert Selection.of(None, ["A,B", "B, C"]).only == ("A", "B", "C")
    with pytest.raises(InputError, match="--only: give one or more row keys"):
        Selection.of(None, [" , "])
