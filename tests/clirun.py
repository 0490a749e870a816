"""`forge-runner` as a real process, for tests of what a user sees when something is wrong.

``forge_runner(*args, cwd=...)`` runs ``python -m runner ARGS`` to its end and returns its exit
code and output. ``one_line(stderr)`` is the single ``forge-runner:`` line a process printed on
stderr, and fails the test when there is a traceback or more than one such line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A process of a failure test that runs longer than this is stuck, not slow.
LIMIT_S = 120.0


def forge_runner(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
                 stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    """Run ``forge-runner ARGS`` in ``cwd`` (extra ``env`` on top of ours) to its end."""
    full = dict(os.environ)
    full["NO_COLOR"] = "1"
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=cwd,
                          env=full, stdin=stdin, capture_output=True, text=True,
                          timeout=LIMIT_S, check=False)


def one_line(stderr: str) -> str:
    """The one ``forge-runner:`` line on ``stderr`` (log lines of a run aside); no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("forge-runner: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def example_folder(folder: Path) -> Path:
    """``folder`` holding a copy of config.example.toml and jobs/, as a user starts; returns the
    config's path."""
    shutil.copytree(ROOT / "jobs", folder / "jobs")
    config = folder / "config.example.toml"  # its system_token command names it so
    shutil.copy(ROOT / "config.example.toml", config)
    return config
