"""A job template run once per installation: the site filled from the invoking installation.

A template is an ordinary job file naming one site (``jobs/nightly-sync.toml`` names ``acme``,
so ``forge-runner run`` and cron can use it as is). When Forge's trigger comes from an
installation, the template's rows are placed on that installation's site, the job is named
``<name>@<site>`` and journaled under ``<template path>@<site>``, so each installation has its
own runs, resumes and lock. The system token comes from this serve process over loopback.

An installation whose cloud ID or installation ID matches a configured site is that site (its
own context ARI and API base URL). Any other installation becomes a new site named by its cloud
ID, with the context ARI from ``[serve] context_ari`` and the FIT's ``app.apiBaseUrl``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from runner.config.ari import AriError, validate_ari
from runner.config.configfile import Config, SiteConfig, SystemTokenSource
from runner.errors import JobError
from runner.job.jobfile import Job, parse_job
from runner.job.sources import SITE_COLUMN, Row, Source
from runner.remote.installation_tokens import Installation
from runner.remote.settings import ServeConfig


def site_for(config: Config, serve: ServeConfig, inst: Installation) -> SiteConfig:
    """The site an installation is: a configured one that matches, else a new one."""
    for site in config.sites.values():
        if inst.installation_id == site.installation_id:
            return site
    for site in config.sites.values():
        if inst.cloud_id == site.cloud_id:
            # The same site, reinstalled: the installation ID changes on reinstall.
            return replace(site, installation_id=inst.installation_id)
    context_ari = serve.context_ari.replace("{cloud_id}", inst.cloud_id)
    try:
        validate_ari(context_ari)
    except AriError as exc:
        raise JobError("serve.context_ari", f"expected an ARI of the form {exc.expected} for "
                       f"cloud {inst.cloud_id}, found {context_ari!r}") from None
    return SiteConfig(
        name=inst.cloud_id,
        cloud_id=inst.cloud_id,
        installation_id=inst.installation_id,
        environment=serve.environment,
        api_base_url=inst.api_base_url,
        context_ari=context_ari,
    )


def job_config(config: Config, serve: ServeConfig, site: SiteConfig, token_url: str,
               secret: str, sealed: tuple[str, str] | None = None) -> Config:
    """``config`` with ``site`` in it and its environment's system token read from this serve
    process (``token_url``, over loopback), waiting up to ``token_max_wait_s`` for a fresh one.
    With ``sealed`` (the database's URL and the seal key, base64), the token is read from the
    sealed tokens every replica writes, as a run on any host would."""
    env = config.environments[site.environment]
    source = SystemTokenSource(
        serve=token_url,
        installation_id=site.installation_id,
        serve_secret=serve.token_endpoint.secret,
        serve_secret_value=secret,
        max_wait_s=serve.token_max_wait_s,
        cwd=env.system_token.cwd,
    )
    if sealed is not None:
        source = SystemTokenSource(
            sealed=sealed[0], installation_id=site.installation_id, seal_key=serve.seal_key,
            seal_key_value=sealed[1], max_wait_s=serve.token_max_wait_s,
            cwd=env.system_token.cwd)
    return replace(
        config,
        environments={**config.environments, env.name: replace(env, system_token=source)},
        sites={**config.sites, site.name: site},
    )


def journal_identity(template: Path, site: str) -> str:
    """What the journal matches this installation's runs by (and locks)."""
    return f"{template.resolve()}@{site}"


@dataclass(frozen=True)
class JobTemplate:
    """A job file checked once at start, then instantiated per installation."""

    path: Path
    job: Job

    @classmethod
    def load(cls, path: Path, config: Config) -> JobTemplate:
        """Load and check the template. Its ``site`` is a placeholder: it need not be one of
        the config's sites, but there must be exactly one and no ``site`` column."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise JobError("(file)", f"expected a readable job template, found "
                           f"{exc.strerror or exc}", file=path) from None
        return cls.parse(data, path, config)

    @classmethod
    def parse(cls, data: bytes, path: Path, config: Config, *,
              stored: Sequence[str] | None = None) -> JobTemplate:
        """``load`` from the template's bytes; ``stored``: its rows are in the journal (a
        worker rebuilding a run serve started, ``runner.cluster.placed``)."""
        declared = _declared_site(data, path)
        probe = config
        if declared not in config.sites:
            environment = next(iter(config.environments))
            placeholder = SiteConfig(
                name=declared, cloud_id="template", installation_id="",
                environment=environment, api_base_url="https://template.invalid",
                context_ari="ari:cloud:jira:template:workspace/template",
            )
            probe = replace(config, sites={**config.sites, declared: placeholder})
        job = parse_job(data, path, probe, stored=stored)
        if SITE_COLUMN in job.source.columns:
            raise JobError("source", f"expected no '{SITE_COLUMN}' column in a template (each "
                           "run's site is the invoking installation's)", file=path)
        return cls(path, job)

    def for_site(self, site: SiteConfig) -> Job:
        """The template's job on ``site``."""
        job = self.job
        if job.environment is not None and job.environment != site.environment:
            raise JobError("environment", f"expected the installation's environment "
                           f"{site.environment!r}, found {job.environment!r}", file=self.path)
        return replace(
            job,
            name=f"{job.name}@{site.name}",
            sites=(site.name,),
            site_weights={},
            source=_OnSite(job.source, site.name),
        )


class _OnSite:
    """The template's rows, each placed on the installation's site."""

    def __init__(self, inner: Source, site: str) -> None:
        self._inner = inner
        self._site = site
        self.description = inner.description
        self.columns = inner.columns

    def rows(self) -> Iterator[Row]:
        for row in self._inner.rows():
            yield replace(row, site=self._site)


def _declared_site(data: bytes, path: Path) -> str:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise JobError("(file)", f"expected valid TOML, found {exc}", file=path) from None
    site = doc.get("site")
    if not isinstance(site, str) or not site or "sites" in doc:
        raise JobError("site", "expected one site (a placeholder: each run's site is the "
                       "invoking installation's)", file=path)
    return site
