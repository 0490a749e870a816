"""CI (`.ci/run`) runs exactly the README's test command, and a failing test fails CI.

The script is run for real, in a copy of the repository's layout whose `python3` and `.venv`
tools are stand-ins (the process boundary): each records that it ran and exits as told.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("Run the whole test suite:", 1)[1]
    match = re.search(r"```sh\n(.+?)\n```", section, re.S)
    assert match, "the README's test command is in a sh block after 'Run the whole test suite:'"
    return match.group(1).strip()


def _tool(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _ci(tmp_path: Path, pytest_fails_on: str) -> tuple[int, list[str]]:
    """Run a copy of `.ci/run` with stand-in tools; pytest exits 1 when its arguments contain
    ``pytest_fails_on`` (empty: never). Returns the script's code and what ran, in order."""
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    (repo / ".ci" / "run").write_text((ROOT / ".ci" / "run").read_text())
    ran = tmp_path / "ran"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    venv_bin = repo / ".venv" / "bin"
    record = f'echo "$(basename "$0") $*" >> {ran}\n'
    _tool(bin_dir / "apt-get", record)
    _tool(bin_dir / "python3", record + f"mkdir -p {venv_bin}\n")
    venv_bin.mkdir(parents=True)
    _tool(venv_bin / "pip", record)
    _tool(venv_bin / "ruff", record)
    _tool(venv_bin / "mypy", record)
    fails = f'[[ -n "{pytest_fails_on}" && "$*" == *"{pytest_fails_on}"* ]] && exit 1\nexit 0\n'
    _tool(venv_bin / "python", record + fails)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(repo / ".ci" / "run")], env=env, capture_output=True)
    return done.returncode, ran.read_text().splitlines() if ran.exists() else []


def test_ci_runs_the_readme_test_command() -> None:
    """The README's test command is in `.ci/run`, character for character."""
    assert _readme_test_command() in (ROOT / ".ci" / "run").read_text()


def test_ci_passes_when_every_test_passes(tmp_path: Path) -> None:
    """Both pytest passes run, then ruff and mypy, and the script exits 0."""
    code, ran = _ci(tmp_path, pytest_fails_on="")
    assert code == 0
    pytests = [line for line in ran if line.startswith("python -m pytest")]
    assert len(pytests) == 2
    assert [line.split()[0] for line in ran[-2:]] == ["ruff", "mypy"]


@pytest.mark.parametrize("failing", ["not restarts_postgres", "-m restarts_postgres"])
def test_a_failing_test_pass_fails_ci(tmp_path: Path, failing: str) -> None:
    """A failure in either pytest pass makes `.ci/run` exit non-zero, and lint never runs
    after it (inside an && list `set -e` alone would carry on and exit 0)."""
    code, ran = _ci(tmp_path, pytest_fails_on=failing)
    assert code != 0
    assert not any(line.split()[0] in ("ruff", "mypy") for line in ran)
