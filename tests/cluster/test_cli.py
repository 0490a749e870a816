"""The cluster's commands refuse what can't work, in one line with exit 2, before anything is
opened: a worker or a detached run on an SQLite journal, a lease shorter than twice a request."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.cli import main

CONFIG = """\
[runner]
journal = "{journal}"
request_timeout_s = 10.0

[environments.dev]
app_id = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"

[environments.dev.system_token]
env = "FORGE_TEST_NO_TOKEN"

[sites.acme]
cloud_id = "0f9c7a43-5b2e-4c1d-9a8f-1e2d3c4b5a69"
api_base_url = "https://api.atlassian.com/ex/jira/0f9c7a43-5b2e-4c1d-9a8f-1e2d3c4b5a69"
installation_id = "ari:cloud:ecosystem::installation/11111111-2222-3333-4444-555555555555"
environment = "dev"
"""
JOB = """\
name = "j"
site = "acme"
[source]
rows = [{ account_id = "5ca1ab1e0000000000000001" }]
[[actions]]
type = "user.property.set"
key = "k"
value = { n = "1" }
"""


def _write(tmp_path: Path, journal: str, extra: str = "") -> tuple[Path, Path]:
    config = tmp_path / "forge-runner.toml"
    config.write_text(CONFIG.format(journal=journal) + extra)
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    return config, job


@pytest.mark.parametrize("argv", [["worker"], ["run", "JOB", "--detach"]])
def test_an_sqlite_journal_is_refused_for_sharing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """`worker` and `run --detach` on an SQLite journal exit 2 with one line naming the key and
    what it needs; no journal file is made."""
    config, job = _write(tmp_path, "journal.db")
    args = [str(job) if a == "JOB" else a for a in argv]
    assert main([*args, "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "runner.journal" in err and "postgresql://" in err
    assert not (tmp_path / "journal.db").exists()


def test_a_lease_shorter_than_twice_a_request_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """[cluster] lease_s under twice [runner] request_timeout_s: exit 2, one line naming
    cluster.lease_s and the bound."""
    config, _ = _write(tmp_path, "postgresql://nobody@127.0.0.1:1/none",
                       "\n[cluster]\nlease_s = 15\n")
    assert main(["worker", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "cluster.lease_s" in err and "twice" in err and "15" in err
