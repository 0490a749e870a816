"""What ``run --dry-run`` says beyond the checks: whether each environment's system-token
source holds a token now. The source is read once, as a run would first read it (a command is
run, a file read, a serve process asked), without waiting for a token and without any mint."""

from __future__ import annotations

from dataclasses import replace

from runner.config.configfile import Config
from runner.errors import SystemTokenError
from runner.job.jobfile import Job
from runner.minting.system_tokens import SystemTokenProvider, describe_source


async def token_lines(config: Config, job: Job) -> list[str]:
    """One line per environment the job's sites use: a token there, or why none is."""
    lines = []
    for name in sorted({config.sites[site].environment for site in job.sites}):
        env = config.environments[name]
        source = replace(env.system_token, max_wait_s=0.0)
        try:
            await SystemTokenProvider(source, name).get()
        except SystemTokenError as exc:
            lines.append(f"system token of {name}: none ({exc.reason}); a run would block "
                         "this environment (exit 3) unless one arrives within max_wait_s")
            continue
        lines.append(f"system token of {name}: there ({describe_source(env.system_token)}); "
                     "nothing minted")
    return lines
