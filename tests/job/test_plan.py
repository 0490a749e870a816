"""forge-runner plan: counts, the shortest duration under each budget, the one that binds."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from runner.cli import main
from runner.config.configfile import Config, load_config
from runner.job.jobfile import load_job
from runner.job.plan import Plan, make_plan

REPO = Path(__file__).resolve().parents[2]
APP = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"
INST = "ari:cloud:ecosystem::installation/0e7c1d2b-6a4f-4f0e-8b1a-3c5d7e9f1a2b"
PROP = "/rest/api/3/issue/{issueIdOrKey}/properties/{propertyKey}"


def config_with(tmp_path: Path, extra: str = "", env: str = "") -> Config:
    text = f"""
        [environments.dev]
        app_id = "{APP}"
        system_token = {{ env = "FORGE_SYSTEM_TOKEN" }}
        {env}

        [sites.acme]
        cloud_id = "5b1e6c3a-0d6f-4e4b-9d0a-2f3c4b5a6d7e"
        installation_id = "{INST}"

        [sites.globex]
        cloud_id = "7c2f7d4b-1e7a-4f5c-8e1b-3a4d5c6b7e8f"
        installation_id = "{INST}"
    """
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(text) + textwrap.dedent(extra))
    return load_config(path)


def plan_for(tmp_path: Path, config: Config, actions: str, rows: Sequence[tuple[str, ...]],
             header: str = "account_id,issue", head: str = 'site = "acme"') -> Plan:
    lines = [header, *(",".join(r) for r in rows)]
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    job = tmp_path / "job.toml"
    job.write_text(f'{head}\n[source]\ncsv = "rows.csv"\n' + textwrap.dedent(actions))
    return make_plan(load_job(job, config), config)


def user(i: int) -> str:
    return f"5ca1ab1e{i:016x}"


PROPERTY_SET = """
    [[actions]]
    type = "issue.property.set"
    issue = "{issue}"
    key = "legacy"
    value = { done = true }
"""


def test_mint_bucket_binds_a_job_of_many_users(tmp_path: Path) -> None:
    """300 users at 1 mint/s: 300 s of minting outlasts 900 points of /myself."""
    config = config_with(tmp_path, env="mint_limit = 60\nmint_window_s = 60")
    plan = plan_for(tmp_path, config, '[[actions]]\ntype = "myself"\n',
                    [(user(i), "MIG-1") for i in range(300)])
    assert (plan.rows, plan.users, plan.items, plan.mints, plan.points) == (300, 300, 300, 300, 900)
    assert plan.mints_by_bucket == {"dev": 300}
    assert [(c.method, c.template, c.calls, c.points) for c in plan.calls] == [
        ("GET", "/rest/api/3/myself", 300, 900)]
    assert plan.binding is not None
    assert (plan.binding.budget, plan.binding.scope) == ("mint bucket", "dev")
    assert plan.shortest_s == pytest.approx(300.0)
    assert plan.issues_written == 0


def test_per_issue_writes_bind_when_every_row_hits_one_issue(tmp_path: Path) -> None:
    """250 writes to one issue, at most 100 in any 30 s: the last can go at 60 s, which
    outlasts the points quota's 14 s."""
    config = config_with(tmp_path)
    rows = [(user(i % 5), "MIG-1") for i in range(250)] + [(user(0), "MIG-2")]
    plan = plan_for(tmp_path, config, PROPERTY_SET, rows)
    assert (plan.users, plan.mints, plan.issues_written) == (5, 5, 2)
    assert (plan.busiest_issue, plan.busiest_issue_writes) == ("acme MIG-1", 250)
    assert plan.binding is not None
    assert (plan.binding.budget, plan.binding.scope, plan.binding.amount) == (
        "per-issue writes", "acme MIG-1", 250)
    assert plan.shortest_s == pytest.approx(60.0)


def test_per_issue_short_window_counts_for_a_burst_of_writes(tmp_path: Path) -> None:
    """45 writes to one issue fit in the 30 s window but need three 2 s windows: 4 s."""
    config = config_with(tmp_path)
    plan = plan_for(tmp_path, config, PROPERTY_SET, [(user(1), "MIG-1")] * 45)
    per_issue = next(b for b in plan.bounds if b.budget == "per-issue writes")
    assert per_issue.seconds == pytest.approx(4.0)


def test_points_quota_binds_when_it_is_small(tmp_path: Path) -> None:
    """With 100 points an hour, 50 comments take 27.6 minutes: 5 go in the quota's first burst,
    the other 45 at the 98 an hour the runner spends (it keeps 2% of each window unspent)."""
    config = config_with(tmp_path, "[jira_budgets]\nquota_points = 100\n")
    actions = '[[actions]]\ntype = "comment.add"\nissue = "{issue}"\nbody = "hello"\n'
    plan = plan_for(tmp_path, config, actions, [(user(i), f"MIG-{i}") for i in range(50)])
    assert plan.binding is not None
    assert (plan.binding.budget, plan.binding.scope) == ("points quota", "app")
    assert plan.shortest_s == pytest.approx(45 * 36.0 / 0.98)


def test_the_share_kept_for_serve_slows_other_runs_and_not_serves(tmp_path: Path) -> None:
    """With 30% of the quota kept for serve's runs, a migration's bound is at the 68 an hour
    it may spend (and its limit says why); a serve run's plan is at the usual 98."""
    config = config_with(tmp_path, "[jira_budgets]\nquota_points = 100\nserve_reserve = 0.3\n")
    actions = '[[actions]]\ntype = "comment.add"\nissue = "{issue}"\nbody = "hello"\n'
    rows = [(user(i), f"MIG-{i}") for i in range(50)]
    plan = plan_for(tmp_path, config, actions, rows)
    assert plan.shortest_s == pytest.approx(45 * 36.0 / 0.68)
    assert plan.binding is not None and "30% kept for serve's runs" in plan.binding.limit
    job = load_job(tmp_path / "job.toml", config)
    assert make_plan(job, config, serve_run=True).shortest_s == pytest.approx(45 * 36.0 / 0.98)


def test_a_job_within_the_quota_burst_is_not_bound_by_it(tmp_path: Path) -> None:
    """A job whose points fit in the quota's burst (5% of it) owes the quota no time."""
    config = config_with(tmp_path, "[jira_budgets]\nquota_points = 1000\n")
    actions = '[[actions]]\ntype = "comment.add"\nissue = "{issue}"\nbody = "hello"\n'
    plan = plan_for(tmp_path, config, actions, [(user(i), f"MIG-{i}") for i in range(50)])
    quota = next(b for b in plan.bounds if b.budget == "points quota")
    assert quota.seconds == 0.0


def test_burst_binds_per_endpoint_and_method(tmp_path: Path) -> None:
    """At 1 PUT/s per endpoint (a bucket of one), 50 property writes take 49 s."""
    config = config_with(tmp_path, "[jira_budgets]\nburst_put_delete = 1\n")
    plan = plan_for(tmp_path, config, PROPERTY_SET, [(user(0), f"MIG-{i}") for i in range(50)])
    assert plan.binding is not None
    assert (plan.binding.budget, plan.binding.scope) == ("burst", f"acme PUT {PROP}")
    assert plan.shortest_s == pytest.approx(49.0)
    assert plan.busiest_issue_writes == 1


def test_transition_by_name_counts_its_extra_read(tmp_path: Path) -> None:
    """By name, each row costs a GET of the transitions (2 points) and the POST (1)."""
    config = config_with(tmp_path)
    actions = '[[actions]]\ntype = "issue.transition"\nissue = "{issue}"\ntransition = "Done"\n'
    plan = plan_for(tmp_path, config, actions, [(user(i), "MIG-1") for i in range(10)])
    assert {(c.method, c.calls, c.points) for c in plan.calls} == {("GET", 10, 20),
                                                                  ("POST", 10, 10)}
    assert plan.points == 30
    assert plan.busiest_issue_writes == 10  # the read is not a write


def test_mints_are_per_site_and_user_and_buckets_are_shared(tmp_path: Path) -> None:
    """One user on two sites needs two mints; sites of one environment share its bucket."""
    config = config_with(tmp_path)
    rows = [(user(1), "MIG-1", "acme"), (user(1), "MIG-1", "globex"), (user(2), "MIG-2", "acme")]
    plan = plan_for(tmp_path, config, PROPERTY_SET, rows, header="account_id,issue,site",
                    head='sites = ["acme", "globex"]')
    assert (plan.users, plan.mints) == (2, 3)
    assert plan.mints_by_bucket == {"dev": 3}
    assert plan.site_rows == {"acme": 2, "globex": 1}
    assert plan.issues_written == 3  # MIG-1 on acme and on globex are different issues


def test_python_items_are_counted_but_not_their_calls(tmp_path: Path) -> None:
    """A Python action's calls are unknown: its items are reported apart."""
    (tmp_path / "planhooks.py").write_text("async def run(jira, row):\n    return None\n")
    config = config_with(tmp_path)
    plan = plan_for(tmp_path, config, '[[actions]]\npython = "planhooks:run"\n',
                    [(user(1), "MIG-1"), (user(2), "MIG-2")])
    assert (plan.items, plan.python_items, plan.points, plan.calls) == (2, 2, 0, ())
    assert plan.binding is not None and plan.binding.budget == "mint bucket"


def test_plan_command_prints_the_table_and_the_binding_budget(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The example job's plan names its counts and the budget that binds, exit 0."""
    code = main(["plan", str(REPO / "jobs" / "example-migration.toml"), "--config",
                 str(REPO / "config.example.toml")])
    out = capsys.readouterr().out
    assert code == 0
    assert "nothing was sent" in out
    assert "mints needed" in out and "<- binds" in out
    assert "Shortest possible duration:" in out


def test_plan_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the same plan for machines."""
    code = main(["plan", str(REPO / "jobs" / "example-migration.toml"), "--config",
                 str(REPO / "config.example.toml"), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["items"] == data["rows"] * 3
    assert data["binding"]["budget"] in {"mint bucket", "points quota", "burst",
                                         "per-issue writes"}
    assert data["shortest_s"] == data["binding"]["seconds"]


def test_plan_command_exits_2_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad job exits 2; stderr names the job file, the key and what was expected."""
    config_with(tmp_path)
    (tmp_path / "rows.csv").write_text(f"account_id,issue\n{user(1)},MIG-1\n")
    job = tmp_path / "job.toml"
    job.write_text('site = "acme"\n[source]\ncsv = "rows.csv"\n[[actions]]\n'
                   'type = "comment.add"\nissue = "{issue}"\nbody = "{note}"\n')
    code = main(["plan", str(job), "--config", str(tmp_path / "config.toml")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{job}: actions[0].body: expected placeholders naming source columns" in err
    assert "{note}" in err


def test_plan_command_exits_2_on_a_bad_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad row exits 2 naming the source file and line."""
    config_with(tmp_path)
    (tmp_path / "rows.csv").write_text(f"account_id,issue\n{user(1)},MIG-1\nbob smith,MIG-2\n")
    job = tmp_path / "job.toml"
    job.write_text('site = "acme"\n[source]\ncsv = "rows.csv"\n' + PROPERTY_SET)
    code = main(["plan", str(job), "--config", str(tmp_path / "config.toml")])
    err = capsys.readouterr().err
    assert code == 2
    assert "rows.csv line 3: account_id: expected an Atlassian account ID" in err


def test_plan_command_exits_2_on_a_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad config exits 2 naming the config file and key."""
    bad = tmp_path / "config.toml"
    bad.write_text("[runner]\nconcurrency = 'lots'\n")
    code = main(["plan", str(REPO / "jobs" / "example-migration.toml"), "--config", str(bad)])
    assert code == 2
    assert f"{bad}: runner.concurrency: expected an integer >= 1" in capsys.readouterr().err
