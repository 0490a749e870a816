"""``forge-runner doctor``: one user end to end, or a Forge manifest against a job.

``doctor --site S --user ACCOUNT``: one mint and one ``GET /myself`` as that user, each step
shown and any failure explained (``runner.doctor``). Exit 0 when both pass, 3 when the
environment is blocked, 1 for other failures, 2 for bad input.

``doctor --manifest manifest.yml JOB``: the app's manifest against the scopes the job's actions
need and what keeps system tokens coming (``runner.doctor.manifest_check``); when the config has
``[serve.routes]``, that every endpoint's route is one of them. Exit 0 when every check
passes, 1 otherwise, 2 for a file that is not YAML or not a manifest. Actions whose scopes
can't be determined (a raw request to an endpoint the table lacks, a Python action) are listed
with ``?`` for a person to check; they don't change the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import AsyncExitStack
from typing import Any, TextIO

from runner.commands import DEFAULT_CONFIG
from runner.config.configfile import Config, load_config
from runner.doctor.manifest import load_manifest
from runner.doctor.manifest_check import check_manifest, passed, render
from runner.doctor.scopes import scopes_needed
from runner.doctor.user import check_user, resolve
from runner.errors import ExitCode, InputError
from runner.job.jobfile import load_job
from runner.logs.setup import configure_logging
from runner.remote.settings import serve_config
from runner.sandbox.config import SandboxConfig, sandbox_config


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check one user end to end, or a Forge manifest against a job",
        description="--site S --user ACCOUNT: mint one token for the user and call /myself as "
        "them, explaining any failure. --manifest manifest.yml JOB: check the app's manifest "
        "against what the job needs.",
        epilog="Exit codes: 0 every check passed, 1 a check failed, 2 invalid input, "
        "3 the environment is blocked (system token, context refused).",
    )
    p.add_argument("job", nargs="?", metavar="JOB", help="the job file (with --manifest)")
    p.add_argument("--site", metavar="S", help="a site of the config")
    p.add_argument("--user", metavar="ACCOUNT", help="the Atlassian account ID to act as")
    p.add_argument("--manifest", metavar="FILE", help="the Forge app's manifest.yml")
    p.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE",
                   help=f"the config file (default: {DEFAULT_CONFIG})")
    p.add_argument("--verbose", action="store_true", help="also show the runner's log lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.manifest is not None:
        if args.site or args.user:
            raise InputError("doctor: --manifest checks a manifest against a JOB; --site and "
                             "--user check a user: give one or the other")
        if args.job is None:
            raise InputError("doctor --manifest FILE JOB: the job file is missing")
        return check_manifest_command(args.manifest, args.job, args.config, sys.stdout)
    if args.site is None or args.user is None or args.job is not None:
        raise InputError("doctor: give --site S --user ACCOUNT, or --manifest manifest.yml JOB")
    config = load_config(args.config)
    sandbox = sandbox_config(config)
    resolve(config, args.site, args.user)  # bad input stops here, before any sandbox starts
    configure_logging(format="plain", level="INFO" if args.verbose else "ERROR")
    code: int = asyncio.run(_check_user(config, sandbox, args.site, args.user, sys.stdout))
    return code


async def _check_user(config: Config, sandbox: SandboxConfig | None, site: str, user: str,
                      out: TextIO) -> int:
    async with AsyncExitStack() as stack:
        if sandbox is not None and sandbox.embedded:
            # As `run` does: a config pointing at its embedded sandbox works with no other step.
            from runner.sandbox.embedded import serve_embedded

            embedded = await stack.enter_async_context(serve_embedded(sandbox, config))
            config = embedded.config  # pointed at the port served, when its own was taken
            if embedded.moved:
                out.write(f"{embedded.moved}\n")
            out.write(f"sandbox: serving {embedded.sandbox.url} for this check\n")
        return await check_user(config, site, user, out)


def check_manifest_command(manifest_path: str, job_path: str, config_path: str,
                           out: TextIO) -> int:
    """Print the manifest's checklist against the job; 0 when every check passes, else 1."""
    config = load_config(config_path)
    job = load_job(job_path, config)
    manifest = load_manifest(manifest_path)
    serve = serve_config(config)
    routes = {r.path: r.kind for r in serve.routes} if serve is not None else None
    checks = check_manifest(manifest, scopes_needed(job.actions), routes)
    out.write(render(manifest, f"{job.name} ({job.path})", checks))
    return ExitCode.OK if passed(checks) else ExitCode.FAILED
