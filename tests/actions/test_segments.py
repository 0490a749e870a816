"""A row value that would be a dot segment ('.' or '..') in a URL path is refused, by row and
column, before anything is sent."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.config.configfile import Config, load_config
from runner.errors import ExitCode, JobError
from runner.job.jobfile import check_rows, load_job
from runner.job.templates import dot_segment

ADA = "5b10a2844c20165700ede21g"
CONFIG = """
[environments.dev]
app_id = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"
system_token = { env = "FORGE_SYSTEM_TOKEN" }

[sites.acme]
cloud_id = "5b1e6c3a-0d6f-4e4b-9d0a-2f3c4b5a6d7e"
installation_id = "ari:cloud:ecosystem::installation/0e7c1d2b-6a4f-4f0e-8b1a-3c5d7e9f1a2b"
"""
DELETE_COMMENT = """
    site = "acme"
    [source]
    csv = "rows.csv"
    [[actions]]
    type = "request"
    method = "DELETE"
    path = "/rest/api/3/issue/{issue}/comment/{cid}"
"""
SET_PROPERTY = """
    site = "acme"
    [source]
    csv = "rows.csv"
    [[actions]]
    type = "issue.property.set"
    issue = "{issue}"
    key = "{key}"
    value = { a = "1" }
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    return load_config(path)


def write_job(tmp_path: Path, body: str, rows: str) -> Path:
    (tmp_path / "rows.csv").write_text(textwrap.dedent(rows).lstrip())
    path = tmp_path / "job.toml"
    path.write_text(textwrap.dedent(body))
    return path


def row_error(path: Path, config: Config) -> JobError:
    job = load_job(path, config)
    with pytest.raises(JobError) as info:
        check_rows(job, config)
    return info.value


@pytest.mark.parametrize("value", [".", "..", "%2e%2E", "%2e.", "%252e%252e"])
def test_dot_segments_are_recognised(value: str) -> None:
    """'.' and '..', as written or once or twice percent-decoded, are dot segments."""
    assert dot_segment(value)


@pytest.mark.parametrize("value", ["...", ".x", "MIG-1", "%2e%2e%2e", ""])
def test_other_values_are_not_dot_segments(value: str) -> None:
    """Three dots, a dotted name or an ordinary key name a segment of their own."""
    assert not dot_segment(value)


@pytest.mark.parametrize("cid", ["..", ".", "%2e%2e"])
def test_raw_request_segment_refused(tmp_path: Path, config: Config, cid: str) -> None:
    """cid = '..' would send DELETE .../issue/MIG-1/: the row and the column are named."""
    rows = f"""
        account_id,issue,cid
        {ADA},MIG-1,10001
        {ADA},MIG-1,{cid}
    """
    err = row_error(write_job(tmp_path, DELETE_COMMENT, rows), config)
    assert err.where == f"{tmp_path / 'rows.csv'} line 3"
    assert err.problem.startswith("actions[0].path (request): expected a path segment other "
                                  "than '.' or '..'")
    assert f"found {cid!r} from column cid" in err.problem


def test_builtin_segment_refused(tmp_path: Path, config: Config) -> None:
    """key = '..' would turn a property PUT into an issue edit: refused, naming key."""
    rows = f"""
        account_id,issue,key
        {ADA},MIG-1,..
    """
    err = row_error(write_job(tmp_path, SET_PROPERTY, rows), config)
    assert err.where == f"{tmp_path / 'rows.csv'} line 2"
    assert err.problem.startswith("actions[0].key (issue.property.set): expected a path segment")
    assert "from column key" in err.problem


def test_plan_exits_2_on_a_dot_segment(tmp_path: Path) -> None:
    """The real command refuses the job with exit 2 and one line naming the row and column."""
    (tmp_path / "config.toml").write_text(CONFIG)
    rows = f"""
        account_id,issue,key
        {ADA},..,k
    """
    job = write_job(tmp_path, SET_PROPERTY, rows)
    done = subprocess.run(
        [sys.executable, "-m", "runner", "plan", "--config", str(tmp_path / "config.toml"),
         str(job)], capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode == ExitCode.INVALID_INPUT
    assert "rows.csv line 2" in done.stderr and "from column issue" in done.stderr
    assert "Traceback" not in done.stderr
