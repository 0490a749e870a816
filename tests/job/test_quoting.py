"""Errors about a file that is not what was expected quote a short prefix of its lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config.configfile import load_config
from runner.errors import JobError
from runner.job.jobfile import load_job
from tests.actions.test_segments import CONFIG


def test_a_long_wrong_header_is_quoted_short(tmp_path: Path) -> None:
    """A header read with the wrong delimiter (one long column) is quoted to 80 chars + '…'."""
    (tmp_path / "config.toml").write_text(CONFIG)
    header = ";".join(f"column_number_{n}" for n in range(40))
    (tmp_path / "rows.csv").write_text(header + "\n" + ";".join("v" * 40) + "\n")
    job = tmp_path / "job.toml"
    job.write_text('site = "acme"\n[source]\ncsv = "rows.csv"\n[[actions]]\n'
                   'type = "myself"\n')
    with pytest.raises(JobError) as info:
        load_job(job, load_config(tmp_path / "config.toml"))
    message = str(info.value)
    assert header[:80] + "…" in message and header not in message

