"""Errors about a file that is not what was expected quote a short prefix of its lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config.configfile import load_config
from runner.errors import JobError
from runner.job.jobfile import load_job
from tests.actions.test_segments import CONFIG
from tests.clirun import example_folder, forge_runner, one_line


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



def test_plan_quotes_a_long_wrong_header_short(tmp_path: Path) -> None:
    """`forge-runner plan` over a CSV whose header is one long column exits 2 with one line
    quoting its first 80 characters and '…', not the whole line."""
    config = example_folder(tmp_path)
    header = ";".join(f"column_number_{n}" for n in range(40))
    (tmp_path / "rows.csv").write_text(header + "\n" + ";".join("v" * 40) + "\n")
    job = tmp_path / "job.toml"
    job.write_text('name = "j"\nsite = "acme"\n[source]\ncsv = "rows.csv"\n[[actions]]\n'
                   'type = "myself"\n')
    result = forge_runner("plan", job, "--config", config, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert header[:80] + "…" in line and header not in line


def test_doctor_quotes_a_file_that_is_no_manifest_short(tmp_path: Path) -> None:
    """`forge-runner doctor --manifest` on a file holding one 3,000-character line exits 2
    with one line that quotes only a short prefix of it."""
    config = example_folder(tmp_path)
    (tmp_path / "manifest.yml").write_text("x" * 3000 + "\n")
    result = forge_runner("doctor", "--manifest", "manifest.yml", "jobs/example-migration.toml",
                          "--config", config, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert line.startswith("forge-runner: manifest.yml: (top level): expected a Forge manifest")
    assert "x" * 40 in line and len(line) < 300
