"""A run that serve started from a job template, rebuilt by any worker.

serve places a template's job on the invoking installation's site (``runner.remote.nightly``).
That site may be in no config file (a new installation is a site named by its cloud ID), and
the run's system token is the installation's own, which serve replicas keep sealed in the
journal's database. So the run's row keeps the placement (``runs.placed``: the site's fields as
JSON, no secret), and a worker rebuilds the run's job and config from it, the template's text in
the journal and its own config's ``[serve.seal]`` key: the job the replica runs, with the
installation's token read from the sealed tokens, as the replica reads it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from runner.config.configfile import Config, SiteConfig
from runner.errors import ConfigError, JobError, SealKeyError
from runner.job.jobfile import Job
from runner.minting.sealed import SealKey
from runner.remote.nightly import JobTemplate, job_config
from runner.remote.settings import serve_config


@dataclass(frozen=True)
class Placement:
    """The installation's site a template's run was placed on."""

    site: SiteConfig

    def dumps(self) -> str:
        return json.dumps({"site": asdict(self.site)}, sort_keys=True)

    @classmethod
    def loads(cls, text: str) -> Placement:
        return cls(SiteConfig(**json.loads(text)["site"]))


def placed_run(config: Config, placement: Placement, text: str, path: Path,
               columns: Sequence[str], journal_url: str) -> tuple[Job, Config]:
    """The run's job and the config it runs under: ``config`` with the placement's site, its
    environment's system token read sealed from ``journal_url`` with ``[serve.seal]``'s key.
    JobError when this worker can't run it (no key, a template that does not fit)."""
    try:
        serve = serve_config(config)
        key = SealKey.load(serve.seal_key) if serve and serve.seal_key else None
    except (ConfigError, SealKeyError) as exc:
        raise JobError("serve.seal", f"expected a seal key this worker can read, found {exc}",
                       file=config.path) from None
    if serve is None or key is None:
        raise JobError("serve.seal", "expected [serve.seal] in the worker's config (the key "
                       "serve's replicas seal installations' system tokens with): the run was "
                       "started by serve", file=config.path)
    site = placement.site
    if site.environment not in config.environments:
        raise JobError("environment", f"expected the environment {site.environment!r} of the "
                       "installation's site in the worker's config", file=config.path)
    run_config = job_config(config, serve, site, "", "", (journal_url, key.encoded()))
    template = JobTemplate.parse(text.encode(), path, run_config, stored=columns)
    return template.for_site(site), run_config
