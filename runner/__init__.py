"""forge-runner: bulk work as many Atlassian users at once, paced, journaled and resumable.

The public API, for running jobs from Python rather than the command line::

    config = load_config("forge-runner.toml")
    job = load_job("jobs/example-migration.toml", config)
    plan = make_plan(job, config)                      # checks every row; sends nothing
    async with open_journal(journal_target(config.runner)) as journal, \
            open_store(location_of(config.runner)) as budgets:  # SQLite or PostgreSQL
        handle = await journal.open_run(job.name, str(job.path), job.fingerprint,
                                        config.fingerprint, job.text)
        await journal.set_total(handle.run_id, plan.items)
        result = await Engine(config, job, journal, budget_store=budgets).run(handle)

``open_store`` opens the budgets every process on the journal shares; without
``budget_store`` the engine paces in memory, as if it were alone.

Names other than the errors are imported on first use, so the command line starts quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from runner.errors import (
    ActionError,
    BlockedEnvironmentError,
    ConfigError,
    ExitCode,
    GatewayError,
    InputError,
    JobError,
    JournalError,
    RunLockedError,
    RunnerError,
    SystemTokenError,
    TransportError,
    UserRefusedError,
)

if TYPE_CHECKING:
    from runner.budgets.store import BudgetStore, location_of, open_store
    from runner.config.configfile import Config, load_config
    from runner.engine.engine import Engine, RunResult
    from runner.events import Observer
    from runner.job.jobfile import Job, Row, load_job
    from runner.job.plan import Plan, make_plan
    from runner.journal import Journal, MemoryJournal, PostgresJournal, SqliteJournal
    from runner.journal.open import journal_target, open_journal

_LAZY = {
    "BudgetStore": "runner.budgets.store",
    "open_store": "runner.budgets.store",
    "location_of": "runner.budgets.store",
    "Config": "runner.config.configfile",
    "load_config": "runner.config.configfile",
    "Engine": "runner.engine.engine",
    "RunResult": "runner.engine.engine",
    "Observer": "runner.events",
    "Job": "runner.job.jobfile",
    "Row": "runner.job.jobfile",
    "load_job": "runner.job.jobfile",
    "Journal": "runner.journal",
    "MemoryJournal": "runner.journal",
    "PostgresJournal": "runner.journal",
    "SqliteJournal": "runner.journal",
    "journal_target": "runner.journal.open",
    "open_journal": "runner.journal.open",
    "Plan": "runner.job.plan",
    "make_plan": "runner.job.plan",
}

__all__ = [
    "ActionError",
    "BlockedEnvironmentError",
    "BudgetStore",
    "Config",
    "ConfigError",
    "Engine",
    "ExitCode",
    "GatewayError",
    "InputError",
    "Job",
    "JobError",
    "Journal",
    "JournalError",
    "MemoryJournal",
    "Observer",
    "Plan",
    "PostgresJournal",
    "Row",
    "RunLockedError",
    "RunResult",
    "RunnerError",
    "SqliteJournal",
    "SystemTokenError",
    "TransportError",
    "UserRefusedError",
    "journal_target",
    "load_config",
    "load_job",
    "location_of",
    "make_plan",
    "open_journal",
    "open_store",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
