"""End-to-end rehearsals: a sandbox served in the test process, `forge-runner` as a real process.

``Rehearsal.start(tmp_path, sandbox)`` writes what a user would write into ``tmp_path``: a
runner config pointing at the served sandbox (journal beside it, budgets out of the way unless a
test tightens them), a system token in a file (signed by the sandbox), then jobs and their CSVs.
``rehearsal.spawn("run", job)`` starts ``python -m runner`` with its output in files, so a test
can read everything the process printed, whatever signal ended it.

``ArrivalWatch`` replaces the sandbox's arrival log with one that calls back when the N-th
request of chosen routes arrives: that is how a test picks a moment in a run's progress (and
kills the process right then, with its request on the wire) without sleeping.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from runner.actions import ITEM_PROPERTY_KEY
from runner.journal.open import JournalTarget
from runner.sandbox.app import RunningSandbox
from runner.sandbox.config import Faults, JiraLimits, MintLimit, SandboxConfig, SandboxIssue
from runner.sandbox.jira.state import JiraState
from runner.sandbox.systemtokens import issue_system_token
from runner.sandbox.testing import CLOUD_A, INSTALLATION_A, make_sandbox_config
from runner.sandbox.world import JiraArrival

COMMENT_ROUTE = "POST /rest/api/3/issue/{issueIdOrKey}/comment"
PROPERTY_ROUTE = "PUT /rest/api/3/issue/{issueIdOrKey}/properties/{propertyKey}"
WRITE_ROUTES = frozenset({COMMENT_ROUTE, PROPERTY_ROUTE})

APP_ID = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"
# A process of a test job that runs longer than this is stuck, not slow.
PROCESS_LIMIT_S = 120.0
# Limits far above what a test job reaches, so a job is as quick as the machine allows.
HIGH = 1_000_000


def bulk_sandbox_config(issues: int = 50, *, limits_enabled: bool = True,
                        faults: Faults | None = None) -> SandboxConfig:
    """The test world with ``issues`` issues MIG-1.. on acme, mints and Jira limits raised.

    The limits stay enforced (their headers too) unless ``limits_enabled`` is false; they are
    only high enough that a job of a few thousand items never meets them.
    """
    base = make_sandbox_config()
    acme = replace(
        base.sites["acme"],
        issues=tuple(SandboxIssue(f"MIG-{n}", "MIG", f"Migrated issue {n}")
                     for n in range(1, issues + 1)),
    )
    return replace(
        base,
        sites={**base.sites, "acme": acme},
        mint_limit=MintLimit(limit=HIGH, window_s=60.0),
        jira_limits=JiraLimits(
            quota_points=HIGH, burst_get_post=HIGH, burst_put_delete=HIGH,
            per_issue_2s=HIGH, per_issue_30s=HIGH, enabled=limits_enabled,
        ),
        faults=faults or Faults(),
    )


def account(n: int) -> str:
    """The ``n``-th synthetic user (``5ca1ab1e`` + 16 hex), active on every sandbox site."""
    return f"5ca1ab1e{n:016x}"


def write_csv(path: Path, rows: Sequence[Mapping[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@dataclass(frozen=True)
class Exit:
    """How a `forge-runner` process ended and what it printed."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Process:
    """A `forge-runner` process started by ``Rehearsal.spawn``; output goes to files."""

    proc: asyncio.subprocess.Process
    out_path: Path
    err_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, signum: int) -> None:
        if self.proc.returncode is None:
            os.kill(self.proc.pid, signum)

    def signal_group(self, signum: int) -> None:
        """Signal the runner's whole process group (it and anything it started): as when the
        machine is lost, nothing of the run gets to finish anything."""
        if self.proc.returncode is None:
            os.killpg(self.proc.pid, signum)

    async def wait(self, limit_s: float = PROCESS_LIMIT_S) -> Exit:
        """Its exit; a process still going after ``limit_s`` is killed and the test fails."""
        try:
            code = await asyncio.wait_for(self.proc.wait(), limit_s)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"forge-runner did not end within {limit_s} s:\n"
                                 f"{self.err_path.read_text()}") from None
        return Exit(code, self.out_path.read_text(), self.err_path.read_text())


@dataclass
class Rehearsal:
    """A folder holding a runner config for ``sandbox``, and the processes run from it."""

    folder: Path
    sandbox: RunningSandbox
    config_path: Path
    journal_path: Path
    system_token: str = field(repr=False)
    spawned: int = 0
    # A PostgreSQL journal's URL, when the config names one instead of the file.
    journal_url: str | None = None

    @classmethod
    def start(
        cls, folder: Path, sandbox: RunningSandbox, *, concurrency: int = 16,
        extra: str = "", journal_url: str | None = None,
    ) -> Rehearsal:
        """Write the config (``extra`` TOML appended) and the system token file; the journal
        is the SQLite file beside the config, or the PostgreSQL database ``journal_url``."""
        token = issue_system_token(sandbox.config, "dev")
        token_file = folder / "system-token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        journal = folder / "forge-runner.db"
        config = folder / "forge-runner.toml"
        config.write_text(runner_config(sandbox, concurrency=concurrency,
                                        journal=journal_url or journal.name,
                                        token_file=token_file.name) + extra)
        return cls(folder, sandbox, config, journal, token, journal_url=journal_url)

    @property
    def journal_target(self) -> JournalTarget:
        """The journal the config names: the URL, else the file."""
        return self.journal_url if self.journal_url is not None else self.journal_path

    @property
    def jira(self) -> JiraState:
        state: JiraState = self.sandbox.world.parts["jira"]
        return state

    def write_job(self, name: str, rows: Sequence[Mapping[str, str]], actions: str,
                  *, row_key: str | None = "legacy_id", on_failure: str | None = None) -> Path:
        """``name``.toml on site acme over ``name``.csv holding ``rows``."""
        write_csv(self.folder / f"{name}.csv", rows)
        key = f'row_key = "{row_key}"\n' if row_key else ""
        if on_failure:
            key += f'on_failure = "{on_failure}"\n'
        path = self.folder / f"{name}.toml"
        path.write_text(f'name = "{name}"\nsite = "acme"\n{key}\n'
                        f'[source]\ncsv = "{name}.csv"\n\n{actions}')
        return path

    async def spawn(self, *args: str | Path, log_format: str = "plain") -> Process:
        """Start ``forge-runner ARGS --config CONFIG`` (stdout is a file: no live view; ``run``,
        ``resume`` and ``retry`` log in ``log_format``, every info line included)."""
        self.spawned += 1
        out = self.folder / f"process-{self.spawned}.out"
        err = self.folder / f"process-{self.spawned}.err"
        argv = [str(a) for a in args]
        if argv[0] in ("run", "resume", "retry"):
            argv += ["--log-format", log_format]
        with out.open("wb") as out_f, err.open("wb") as err_f:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "runner", *argv, "--config", str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL, stdout=out_f, stderr=err_f,
                cwd=self.folder, env=_child_env(),
                # Its own process group, as under cron or systemd: `signal_group` reaches it all.
                start_new_session=True,
            )
        return Process(proc, out, err)

    async def cli(self, *args: str | Path, log_format: str = "plain") -> Exit:
        """Run ``forge-runner ARGS --config CONFIG`` to its end."""
        return await (await self.spawn(*args, log_format=log_format)).wait()

    def files(self) -> dict[str, bytes]:
        """Every file in the folder (journal, WAL, locks, outputs, reports), by name."""
        return {str(p.relative_to(self.folder)): p.read_bytes()
                for p in sorted(self.folder.rglob("*")) if p.is_file()}


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # No colours or terminal width games in what the process prints.
    for name in ("FORCE_COLOR", "CLICOLOR_FORCE", "COLUMNS"):
        env.pop(name, None)
    env["NO_COLOR"] = "1"
    return env


def runner_config(sandbox: RunningSandbox, *, concurrency: int, journal: str,
                  token_file: str) -> str:
    """A runner config for environment dev and site acme of ``sandbox``; budgets high."""
    return f"""\
[runner]
concurrency = {concurrency}
journal = "{journal}"
request_timeout_s = 30.0

[environments.dev]
app_id = "{APP_ID}"
gateway_url = "{sandbox.gateway_url}"
mint_limit = {HIGH}
mint_window_s = 60.0

[environments.dev.system_token]
file = "{token_file}"
max_wait_s = 5.0

[sites.acme]
cloud_id = "{CLOUD_A}"
api_base_url = "{sandbox.jira_base(CLOUD_A)}"
installation_id = "{INSTALLATION_A}"
environment = "dev"

[retry.mint]
attempts = 3
wait_initial_s = 0.05
wait_max_s = 0.2
wait_jitter_s = 0.05
deadline_s = 60.0

[retry.jira]
attempts = 3
wait_initial_s = 0.05
wait_max_s = 0.2
wait_jitter_s = 0.05
deadline_s = 120.0

[jira_budgets]
quota_points = {HIGH}
burst_get_post = {HIGH}
burst_put_delete = {HIGH}
per_issue_2s = {HIGH}
per_issue_30s = {HIGH}
"""


class ArrivalWatch(list[JiraArrival]):
    """The sandbox's arrival log, calling back at the N-th arrival of chosen routes.

    Installed as ``world.jira_arrivals``; the sandbox appends to it as each request arrives,
    before it is served, on the test's own event loop: a callback runs while that request is on
    the wire, and nothing else of the sandbox runs until it returns.
    """

    def __init__(self, routes: Iterable[str] = WRITE_ROUTES) -> None:
        super().__init__()
        self.routes = frozenset(routes)
        self.seen = 0
        self._hooks: list[tuple[int, Callable[[], None]]] = []

    @classmethod
    def install(cls, sandbox: RunningSandbox, routes: Iterable[str] = WRITE_ROUTES
                ) -> ArrivalWatch:
        watch = cls(routes)
        sandbox.world.jira_arrivals = watch
        return watch

    def at(self, count: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the ``count``-th watched arrival (counted from the start)
        comes in; at once if it already has."""
        if self.seen >= count:
            callback()
        else:
            self._hooks.append((count, callback))

    def after(self, more: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` at the ``more``-th watched arrival from now."""
        self.at(self.seen + more, callback)

    def event_after(self, more: int) -> asyncio.Event:
        """An event set at the ``more``-th watched arrival from now."""
        event = asyncio.Event()
        self.after(more, event.set)
        return event

    def append(self, arrival: JiraArrival) -> None:
        super().append(arrival)
        if arrival.route not in self.routes:
            return
        self.seen += 1
        due = [hook for hook in self._hooks if hook[0] <= self.seen]
        self._hooks = [hook for hook in self._hooks if hook[0] > self.seen]
        for _, callback in due:
            callback()


def comments_by_item(jira: JiraState, cloud_id: str = CLOUD_A) -> Counter[str]:
    """How many comments on the site carry each item key in their ``forge-runner.item``."""
    found: Counter[str] = Counter()
    for issue in jira.site(cloud_id).issues.values():
        for comment in issue.comments:
            prop: Any = comment.properties.get(ITEM_PROPERTY_KEY)
            if isinstance(prop, Mapping) and isinstance(prop.get("item"), str):
                found[prop["item"]] += 1
    return found


def run_id_of(exit: Exit) -> str:
    """The run ID a `run` printed first ("starting run r-... of ...", or the JSON line's
    ``"run": "r-..."`` under ``--log-format json``)."""
    found = re.search(r"\br-\d{8}-[0-9a-f]+\b", exit.out + exit.err)
    if found:
        return found.group(0)
    raise AssertionError(f"no run ID in the output:\n{exit.out}\n{exit.err}")
