"""Job files: structure, sites, actions, placeholders, and every row checked (runner.job)."""

from __future__ import annotations

import textwrap
import tracemalloc
from pathlib import Path

import pytest

from runner.actions import PythonAction
from runner.config.configfile import Config, load_config
from runner.errors import JobError
from runner.job.jobfile import check_rows, item_key, load_job

REPO = Path(__file__).resolve().parents[2]
ADA = "5b10a2844c20165700ede21g"
BO = "5b10ac8d82e05b22cc7d4ef5"
CY = "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077"
APP = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"
INST = "ari:cloud:ecosystem::installation/0e7c1d2b-6a4f-4f0e-8b1a-3c5d7e9f1a2b"
CONFIG = f"""
[environments.dev]
app_id = "{APP}"
system_token = {{ env = "FORGE_SYSTEM_TOKEN" }}

[sites.acme]
cloud_id = "5b1e6c3a-0d6f-4e4b-9d0a-2f3c4b5a6d7e"
installation_id = "{INST}"

[sites.globex]
cloud_id = "7c2f7d4b-1e7a-4f5c-8e1b-3a4d5c6b7e8f"
installation_id = "{INST}"
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    return load_config(path)


def write_job(tmp_path: Path, body: str, csv: str | None = None) -> Path:
    if csv is not None:
        (tmp_path / "rows.csv").write_text(textwrap.dedent(csv).lstrip())
    path = tmp_path / "job.toml"
    path.write_text(textwrap.dedent(body))
    return path


ROWS = f"""
    legacy,account_id,issue,note
    L-1,{ADA},MIG-1,first
    L-2,{BO},MIG-2,second
    L-3,{ADA},MIG-1,third
"""
COMMENT_JOB = """
    site = "acme"
    row_key = "legacy"
    [source]
    csv = "rows.csv"
    [[actions]]
    type = "comment.add"
    issue = "{issue}"
    body = "From {legacy}: {note}"
"""


def job_error(path: Path, config: Config) -> JobError:
    with pytest.raises(JobError) as info:
        load_job(path, config)
    assert info.value.file == path
    assert str(info.value).startswith(f"{path}: {info.value.where}: ")
    return info.value


def row_error(path: Path, config: Config) -> JobError:
    job = load_job(path, config)
    with pytest.raises(JobError) as info:
        check_rows(job, config)
    assert info.value.file == path
    return info.value


def test_example_job_loads_and_checks() -> None:
    """jobs/example-migration.toml is valid against config.example.toml, every row included."""
    config = load_config(REPO / "config.example.toml")
    job = load_job(REPO / "jobs" / "example-migration.toml", config)
    assert job.sites == ("acme",)
    assert [a.name for a in job.actions] == ["comment.add", "issue.property.set",
                                            "issue.transition"]
    checked = check_rows(job, config)
    assert 30 <= checked.rows <= 60
    assert checked.items == checked.rows * 3
    assert checked.site_rows == {"acme": checked.rows}
    assert checked.users == checked.site_users["acme"] > 3


def test_nightly_sync_example_loads_and_checks() -> None:
    """jobs/nightly-sync.toml (JSONL rows, a transition by name) is valid as shipped."""
    config = load_config(REPO / "config.example.toml")
    job = load_job(REPO / "jobs" / "nightly-sync.toml", config)
    checked = check_rows(job, config)
    assert checked.rows == 6 and checked.items == 18
    first = next(iter(job.source.rows()))
    transition = job.actions[2].render(first, item_key(first, 2))  # type: ignore[union-attr]
    assert transition.resolve is not None


def test_job_fields_and_fingerprint(tmp_path: Path, config: Config) -> None:
    """A loaded job keeps its text, the sha256 of its bytes, and its name (default: the stem)."""
    import hashlib

    path = write_job(tmp_path, COMMENT_JOB, ROWS)
    job = load_job(path, config)
    assert job.name == "job"
    assert job.text == path.read_text()
    assert job.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
    assert job.source.columns == ("legacy", "account_id", "issue", "note")
    assert job.row_key == "legacy"


def test_counts_rows_items_and_distinct_users(tmp_path: Path, config: Config) -> None:
    """check_rows counts rows, items and distinct users per site."""
    job = load_job(write_job(tmp_path, COMMENT_JOB, ROWS), config)
    checked = check_rows(job, config)
    assert (checked.rows, checked.items, checked.users) == (3, 3, 2)
    assert checked.site_users == {"acme": 2}


def test_item_keys_are_row_key_and_action_index(tmp_path: Path, config: Config) -> None:
    """Items are named "{row key}#{action index}", from the row_key column when given."""
    job = load_job(write_job(tmp_path, COMMENT_JOB, ROWS), config)
    first = next(iter(job.source.rows()))
    assert item_key(first, 0) == "L-1#0"
    request = job.actions[0].render(first, item_key(first, 0))  # type: ignore[union-attr]
    assert request.json["properties"][0]["value"] == {"item": "L-1#0"}


def test_unknown_placeholder_names_the_action_key(tmp_path: Path, config: Config) -> None:
    """A placeholder that is no source column fails at load, naming actions[i].param."""
    err = job_error(write_job(tmp_path, COMMENT_JOB.replace("{note}", "{nte}"), ROWS), config)
    assert err.where == "actions[0].body"
    assert "{nte}" in err.problem
    assert "account_id, issue, legacy, note" in err.problem


def test_unknown_placeholder_inside_json_is_found(tmp_path: Path, config: Config) -> None:
    """Placeholders deep inside a JSON value are checked too."""
    body = COMMENT_JOB + """
    [[actions]]
    type = "issue.property.set"
    issue = "{issue}"
    key = "legacy"
    value = { nested = [{ id = "{legacy_id}" }] }
    """
    err = job_error(write_job(tmp_path, body, ROWS), config)
    assert err.where == "actions[1].value"
    assert "{legacy_id}" in err.problem


def test_unknown_action_type_lists_the_known_ones(tmp_path: Path, config: Config) -> None:
    """An action type that does not exist fails naming its key and the known types."""
    err = job_error(write_job(tmp_path, COMMENT_JOB.replace("comment.add", "comment.ad"), ROWS),
                    config)
    assert err.where == "actions[0].type"
    assert "comment.add" in err.problem and "issue.transition" in err.problem
    assert "'comment.ad'" in err.problem


def test_unknown_and_missing_action_parameters(tmp_path: Path, config: Config) -> None:
    """A misspelt parameter is unknown; a required one left out is missing."""
    err = job_error(write_job(tmp_path, COMMENT_JOB.replace("body =", "boddy ="), ROWS), config)
    assert err.where == "actions[0].body"
    assert "exactly one of body (plain text) or adf (ADF)" in err.problem
    err = job_error(write_job(tmp_path, COMMENT_JOB + 'colour = "x"\n', ROWS), config)
    assert (err.where, "unknown key" in err.problem) == ("actions[0].colour", True)
    err = job_error(write_job(tmp_path, COMMENT_JOB.replace('issue = "{issue}"', ""), ROWS),
                    config)
    assert err.where == "actions[0].issue"
    assert "missing" in err.problem


def test_unknown_site_lists_the_configured_ones(tmp_path: Path, config: Config) -> None:
    """A site the config does not have fails at `site` naming the config's sites."""
    err = job_error(write_job(tmp_path, COMMENT_JOB.replace('"acme"', '"initech"'), ROWS), config)
    assert err.where == "site"
    assert "acme, globex" in err.problem and "'initech'" in err.problem


def test_several_sites_need_a_site_column(tmp_path: Path, config: Config) -> None:
    """A job over several sites must say each row's site."""
    body = COMMENT_JOB.replace('site = "acme"', 'sites = ["acme", "globex"]')
    err = job_error(write_job(tmp_path, body, ROWS), config)
    assert err.where == "sites"
    assert "'site' column" in err.problem


def test_rows_are_counted_per_site_with_weights(tmp_path: Path, config: Config) -> None:
    """The site column routes rows; weights are read per site."""
    body = COMMENT_JOB.replace('site = "acme"', 'sites = ["acme", "globex"]') + (
        "\n[weights]\nglobex = 2\n")
    csv = f"""
        legacy,account_id,issue,note,site
        L-1,{ADA},MIG-1,a,acme
        L-2,{ADA},MIG-1,b,globex
        L-3,{BO},MIG-2,c,globex
    """
    job = load_job(write_job(tmp_path, body, csv), config)
    assert job.site_weights == {"globex": 2.0}
    checked = check_rows(job, config)
    assert checked.site_rows == {"acme": 1, "globex": 2}
    assert checked.site_users == {"acme": 1, "globex": 2}
    assert checked.users == 2


def test_a_row_for_a_site_outside_the_job_is_named(tmp_path: Path, config: Config) -> None:
    """A row whose site column names another site fails with its line."""
    csv = f"""
        legacy,account_id,issue,note,site
        L-1,{ADA},MIG-1,a,acme
        L-2,{ADA},MIG-1,b,globex
    """
    err = row_error(write_job(tmp_path, COMMENT_JOB, csv), config)
    assert err.where == f"{tmp_path / 'rows.csv'} line 3"
    assert "site: expected one of the job's sites (acme), found 'globex'" in err.problem


def test_bad_account_id_names_file_and_line(tmp_path: Path, config: Config) -> None:
    """An e-mail in account_id fails check_rows with the job, the source file and the line."""
    csv = ROWS.rstrip() + "\n    L-4,ada@example.com,MIG-3,fourth\n"
    path = write_job(tmp_path, COMMENT_JOB, csv)
    err = row_error(path, config)
    assert err.where == f"{tmp_path / 'rows.csv'} line 5"
    assert err.problem == ("account_id: expected an Atlassian account ID (24 letters and digits,"
                           " or 6 digits:UUID), found an e-mail address 'ada@example.com'")
    assert str(err) == f"{path}: {err.where}: {err.problem}"


def test_a_row_that_does_not_render_is_named(tmp_path: Path, config: Config) -> None:
    """Typed parameters are checked per row: a non-integer duration names the row."""
    body = """
        site = "acme"
        [source]
        csv = "rows.csv"
        [[actions]]
        type = "worklog.add"
        issue = "{issue}"
        time_spent_seconds = "{secs}"
        started = "2024-05-01T09:30:00Z"
    """
    csv = f"""
        account_id,issue,secs
        {ADA},MIG-1,60
        {ADA},MIG-1,an hour
    """
    err = row_error(write_job(tmp_path, body, csv), config)
    assert err.where == f"{tmp_path / 'rows.csv'} line 3"
    assert err.problem.startswith("actions[0].time_spent_seconds (worklog.add): expected an "
                                  "integer >= 1, found 'an hour'")


def test_an_empty_issue_value_is_refused(tmp_path: Path, config: Config) -> None:
    """An empty value for a path parameter would make a wrong URL: it is an error."""
    csv = f"""
        legacy,account_id,issue,note
        L-1,{ADA},,first
    """
    err = row_error(write_job(tmp_path, COMMENT_JOB, csv), config)
    assert "actions[0].issue (comment.add): expected a value, found an empty one" in err.problem


def test_repeated_row_keys_are_refused(tmp_path: Path, config: Config) -> None:
    """Two rows with one row key would share items; the second is named with the first."""
    csv = ROWS.rstrip() + f"\n    L-2,{CY},MIG-3,again\n"
    err = row_error(write_job(tmp_path, COMMENT_JOB, csv), config)
    rows_csv = tmp_path / "rows.csv"
    assert err.where == f"{rows_csv} line 5"
    assert f"found 'L-2' again (first at {rows_csv} line 3)" in err.problem


def test_row_key_must_be_a_column(tmp_path: Path, config: Config) -> None:
    """row_key names a column of the source."""
    err = job_error(write_job(tmp_path, COMMENT_JOB.replace('"legacy"', '"legacy_id"'), ROWS),
                    config)
    assert err.where == "row_key"


def test_source_needs_an_account_id_column(tmp_path: Path, config: Config) -> None:
    """Every row acts as a user: the source must have an account_id column."""
    csv = "legacy,user,issue,note\nL-1,x,MIG-1,n\n"
    err = job_error(write_job(tmp_path, COMMENT_JOB, csv), config)
    assert err.where == "source"
    assert "account_id column" in err.problem


def test_a_missing_source_file_names_the_job(tmp_path: Path, config: Config) -> None:
    """A CSV path that does not exist is an error of the job file."""
    err = job_error(write_job(tmp_path, COMMENT_JOB.replace("rows.csv", "nope.csv")), config)
    assert "expected a readable CSV file" in err.problem


def test_exactly_one_source_kind(tmp_path: Path, config: Config) -> None:
    """A source is csv, jsonl or inline rows: exactly one."""
    body = COMMENT_JOB.replace('csv = "rows.csv"', 'csv = "rows.csv"\njsonl = "rows.jsonl"')
    err = job_error(write_job(tmp_path, body, ROWS), config)
    assert err.where == "source"
    assert "csv and jsonl" in err.problem


def test_inline_rows_job(tmp_path: Path, config: Config) -> None:
    """Rows can be written in the job itself."""
    body = f"""
        site = "acme"
        [[source.rows]]
        account_id = "{ADA}"
        [[source.rows]]
        account_id = "{BO}"
        [[actions]]
        type = "myself"
    """
    job = load_job(write_job(tmp_path, body), config)
    assert check_rows(job, config).users == 2


def test_environment_must_match_the_sites(tmp_path: Path, config: Config) -> None:
    """A declared environment must exist and be the environment of every site."""
    err = job_error(write_job(tmp_path, 'environment = "prod"\n' + COMMENT_JOB, ROWS), config)
    assert err.where == "environment"
    ok = load_job(write_job(tmp_path, 'environment = "dev"\n' + COMMENT_JOB, ROWS), config)
    assert ok.environment == "dev"


def test_python_action_is_imported_from_beside_the_job(tmp_path: Path, config: Config) -> None:
    """python = "module:function" imports an async function, searching the job's folder."""
    (tmp_path / "jobhooks_ok.py").write_text(
        "async def sync(jira, row):\n    return await jira.request('GET', '/rest/api/3/myself')\n"
        "def not_async(jira, row):\n    return None\n"
    )
    body = COMMENT_JOB + '\n[[actions]]\npython = "jobhooks_ok:sync"\n'
    job = load_job(write_job(tmp_path, body, ROWS), config)
    action = job.actions[1]
    assert isinstance(action, PythonAction)
    assert (action.name, action.ref, action.idempotent, action.creates) == (
        "python", "jobhooks_ok:sync", False, None)
    assert check_rows(job, config).items == 6
    err = job_error(write_job(tmp_path, body.replace(":sync", ":not_async"), ROWS), config)
    assert (err.where, "an async function" in err.problem) == ("actions[1].python", True)
    err = job_error(write_job(tmp_path, body.replace("jobhooks_ok", "jobhooks_nope"), ROWS),
                    config)
    assert "ModuleNotFoundError" in err.problem


def test_invalid_toml_is_a_job_error(tmp_path: Path, config: Config) -> None:
    """A syntax error names the job file."""
    err = job_error(write_job(tmp_path, "site = \n"), config)
    assert err.problem.startswith("expected valid TOML")


def test_checking_rows_keeps_only_compact_counts(tmp_path: Path, config: Config) -> None:
    """30,000 rows of distinct users are checked within a 2 MB traced peak (holding the rows
    would take ~20 MB): only compact per-user hashes are kept."""
    path = tmp_path / "rows.csv"
    with path.open("w") as f:
        f.write("account_id\n")
        f.writelines(f"5ca1ab1e{i:016x}\n" for i in range(30_000))
    body = 'site = "acme"\n[source]\ncsv = "rows.csv"\n[[actions]]\ntype = "myself"\n'
    job = load_job(write_job(tmp_path, body), config)
    tracemalloc.start()
    try:
        checked = check_rows(job, config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert checked.users == checked.rows == 30_000
    assert peak < 2_000_000
