"""Three `forge-runner run` processes and a nightly run of `serve` on one environment and one
journal share its budgets: the sandbox's own arrival logs show every budget kept, together.

The sandbox allows 100 mints in any sliding 3 s and a points quota of 60 per 2.5 s window (24
a second, below what the mints would feed: the quota binds; Atlassian's windows scaled down so
the 220 users take four quota windows, not a quarter of a minute). Every user needs one mint and one
property write (1 point). The runs are real processes; `serve` runs in the test's process (its
real server, its real engine) and Forge's nightly trigger starts its job while the runs go on.
The PostgreSQL variant puts the journal (and so the budgets) in a PostgreSQL database of the
test's own: the runs are then shared by lanes (``runner.cluster``), serve's nightly run beside
them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import sys
from collections import Counter
from pathlib import Path

import pytest

from runner.config.configfile import load_config
from runner.minting.sealed import SealKey
from runner.remote.server import serve_remote
from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import ForgeTrigger, JiraLimits, MintLimit
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.testing import CLOUD_A, INSTALLATION_A, StartSandbox, pattern_account
from tests.e2e.harness import APP_ID, Process, Rehearsal, _child_env
from tests.remote.helpers import ROUTES, forge_of, forge_sandbox_config, write_serve_config

MINTS, MINT_WINDOW_S = 100, 3.0
QUOTA, QUOTA_WINDOW_S = 60, 2.5
RUN_USERS = 60  # per run process
NIGHTLY_USERS = 40
NIGHTLY = ForgeTrigger(key="nightly-sync", path="/forge/nightly-sync", interval="day")
BUDGETS = f"""
[jira_budgets]
quota_points = {QUOTA}
quota_window_s = {QUOTA_WINDOW_S}
"""
ACTION = """
[[actions]]
type = "user.property.set"
key = "shared"
value = {{ job = "{job}" }}
"""


def run_config(folder: Path, sb: RunningSandbox, token_file: Path, journal: str) -> str:
    return f"""[runner]
concurrency = 8
{journal}
[environments.dev]
app_id = "{APP_ID}"
gateway_url = "{sb.gateway_url}"
mint_limit = {MINTS}
mint_window_s = {MINT_WINDOW_S}

[environments.dev.system_token]
file = "{token_file.name}"

[sites.acme]
cloud_id = "{CLOUD_A}"
api_base_url = "{sb.jira_base(CLOUD_A)}"
installation_id = "{INSTALLATION_A}"
environment = "dev"
{BUDGETS}"""


def write_jobs(folder: Path) -> list[Path]:
    jobs = []
    for j in range(3):
        rows = "\n".join(f'{{"account_id": "{pattern_account(1000 * (j + 1) + n)}"}}'
                         for n in range(RUN_USERS))
        (folder / f"job{j}.jsonl").write_text(rows + "\n")
        path = folder / f"job{j}.toml"
        path.write_text(f'name = "job{j}"\nsite = "acme"\n[source]\njsonl = "job{j}.jsonl"\n'
                        + ACTION.format(job=f"job{j}"))
        jobs.append(path)
    write_nightly_job(folder, NIGHTLY_USERS)
    return jobs


def write_nightly_job(folder: Path, users: int) -> None:
    """``folder/nightly.toml``: serve's nightly job, a property for each of ``users`` users."""
    rows = "\n".join(f'{{"account_id": "{pattern_account(5000 + n)}"}}' for n in range(users))
    (folder / "nightly.jsonl").write_text(rows + "\n")
    (folder / "nightly.toml").write_text('name = "nightly"\nsite = "any"\n[source]\n'
                                         'jsonl = "nightly.jsonl"\n'
                                         + ACTION.format(job="nightly"))


def journal_line(backend: str, request: pytest.FixtureRequest) -> str:
    """The configs' `journal = ...` line: the test's file, or its own PostgreSQL database."""
    # [runner] journal given twice is refused, so the PostgreSQL URL replaces the file's line.
    return ('journal = "journal.db"' if backend == "sqlite"
            else f'journal = "{request.getfixturevalue("pg_url")}"')


def write_nightly_serve(folder: Path, sb: RunningSandbox, journal: str, *, mint_limit: int,
                        mint_window_s: float, budgets: str) -> Path:
    """serve's config: the nightly trigger runs ``folder/nightly.toml`` on ``journal``."""
    routes = ROUTES + f"""
[[serve.routes]]
path = "{NIGHTLY.path}"
kind = "job"
job = "{folder / 'nightly.toml'}"
interval = "day"
"""
    # On PostgreSQL serve keeps system tokens sealed in the journal: the key is the test's own
    # (FORGE_RUNNER_TEST_SEAL_KEY, set by the test).
    seal = ("" if journal == 'journal = "journal.db"'
            else '\n[serve.seal]\nsecret_env = "FORGE_RUNNER_TEST_SEAL_KEY"\n')
    path = write_serve_config(folder, sb, routes=routes, concurrency=8, mint_limit=mint_limit,
                              mint_window_s=mint_window_s, extra=budgets + seal)
    path.write_text(path.read_text().replace('journal = "journal.db"', journal, 1))
    return path


async def spawn_run(folder: Path, config: Path, job: Path, n: int) -> Process:
    out, err = folder / f"run{n}.out", folder / f"run{n}.err"
    with out.open("wb") as out_f, err.open("wb") as err_f:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runner", "run", str(job), "--config", str(config),
            "--quiet", stdin=asyncio.subprocess.DEVNULL, stdout=out_f, stderr=err_f,
            cwd=folder, env=_child_env(), start_new_session=True)
    return Process(proc, out, err)


def most_in_sliding(times: list[float], window_s: float) -> int:
    """The most arrivals in any window [t, t + window_s) (the sandbox's sliding rule)."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_three_runs_and_a_nightly_serve_share_every_budget(
        tmp_path: Path, start_sandbox: StartSandbox, request: pytest.FixtureRequest,
        backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """3 run processes + serve's nightly run, one environment, one journal: at most 100 mints
    in every sliding 3 s and at most the quota in every window, server-side; no 429 of any
    kind; every user's property written once, by its own job."""
    journal = journal_line(backend, request)
    sandbox = dataclasses.replace(
        forge_sandbox_config(triggers=(NIGHTLY,)),
        mint_limit=MintLimit(limit=MINTS, window_s=MINT_WINDOW_S, algorithm="sliding"),
        jira_limits=JiraLimits(quota_points=QUOTA, quota_window_s=QUOTA_WINDOW_S))
    jobs = write_jobs(tmp_path)
    monkeypatch.setenv("FORGE_RUNNER_TEST_SEAL_KEY", SealKey.generate().encoded())
    async with start_sandbox(sandbox) as sb:
        sb.world.mint_arrivals = []
        sb.world.jira_arrivals = []
        token_file = tmp_path / "system-token"
        token_file.write_text(issue_system_token(sb.config, "dev") + "\n")
        config_path = tmp_path / "run.toml"
        config_path.write_text(run_config(tmp_path, sb, token_file, journal))
        serve_path = write_nightly_serve(tmp_path, sb, journal, mint_limit=MINTS,
                                         mint_window_s=MINT_WINDOW_S, budgets=BUDGETS)
        serve_config = load_config(serve_path)
        assert (serve_config.runner.journal_url or str(serve_config.runner.journal)) in (
            journal.split('"')[1], str(tmp_path / "journal.db"))
        async with serve_remote(serve_config) as remote:
            forge = forge_of(sb)
            forge.remote_url = remote.url
            await forge.install("acme")
            runs = [await spawn_run(tmp_path, config_path, job, n) for n, job in enumerate(jobs)]
            await forge.trigger(NIGHTLY.key, "acme")
            exits = [await run.wait(240.0) for run in runs]
            (outcome,) = await remote.desk.wait_for_outcomes(1)
        mints = [a for a in sb.world.mint_arrivals if a.client_id == "dev"]
        calls = list(sb.world.jira_arrivals)
        refused = list(sb.world.rate_limits)
        props = sb.world.parts["jira"].site(CLOUD_A).user_properties

    assert all(e.code == 0 for e in exits), [e.text[-2000:] for e in exits]
    assert outcome.exit_code == 0, outcome
    users = 3 * RUN_USERS + NIGHTLY_USERS
    assert len(props) == users
    assert Counter(p["shared"]["job"] for p in props.values()) == {
        "job0": RUN_USERS, "job1": RUN_USERS, "job2": RUN_USERS, "nightly": NIGHTLY_USERS}
    assert refused == [], refused
    assert all(m.allowed for m in mints) and len(mints) == users
    assert most_in_sliding([m.at for m in mints], MINT_WINDOW_S) <= MINTS
    per_window = Counter(math.floor(c.at / QUOTA_WINDOW_S) for c in calls)
    assert max(per_window.values()) <= QUOTA
    # The quota bound: the calls needed more than one window's quota.
    assert len(per_window) > 1


async def test_an_unreachable_budgets_database_is_one_line_and_exit_6(
        tmp_path: Path, sandbox: RunningSandbox) -> None:
    """`[runner] budgets` naming a PostgreSQL server that isn't there: exit 6, one line naming
    the URL without its password, nothing sent, no traceback."""
    rehearsal = Rehearsal.start(tmp_path, sandbox)
    text = rehearsal.config_path.read_text()
    rehearsal.config_path.write_text(text.replace(
        "[runner]\n", '[runner]\nbudgets = "postgresql://forge:s3cret@127.0.0.1:1/forge"\n', 1))
    job = rehearsal.write_job("j", [{"legacy_id": "L1", "account_id": pattern_account(1)}],
                              '[[actions]]\ntype = "user.property.set"\nkey = "k"\n'
                              'value = { v = "1" }\n')
    done = await rehearsal.cli("run", job)
    assert done.code == 6, done.text
    (line,) = [ln for ln in done.err.splitlines() if "budgets' database" in ln]
    assert "postgresql://forge:***@127.0.0.1:1/forge can't be opened" in line
    assert "s3cret" not in done.text and "Traceback" not in done.text
    assert sandbox.world.mints_accepted["dev"] == 0
