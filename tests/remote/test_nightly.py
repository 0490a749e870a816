"""Job templates: one job per installation, its site the installation's; [serve] config."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from runner.config.configfile import load_config
from runner.errors import ConfigError, JobError
from runner.job.jobfile import check_rows
from runner.remote.installation_tokens import Installation
from runner.remote.nightly import JobTemplate, job_config, journal_identity, site_for
from runner.remote.settings import INTERVALS, serve_config

REPO = Path(__file__).resolve().parents[2]
CLOUD = "0f1e2d3c-4b5a-4697-8877-665544332211"
INST = "ari:cloud:ecosystem::installation/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"


def installation(cloud: str = CLOUD, inst: str = INST) -> Installation:
    return Installation(inst, cloud, f"https://api.atlassian.com/ex/jira/{cloud}",
                        "PRODUCTION", "env-1", 0.0)


def test_example_config_has_a_serve_section() -> None:
    """config.example.toml's [serve] names the nightly template and the hourly refresh."""
    config = load_config(REPO / "config.example.toml")
    serve = serve_config(config)
    assert serve is not None
    kinds = {r.kind for r in serve.routes}
    assert kinds == {"lifecycle", "refresh", "job"}
    (job_route,) = [r for r in serve.routes if r.kind == "job"]
    assert job_route.job == REPO / "jobs" / "nightly-sync.toml"
    assert job_route.dedup_window_s == INTERVALS["day"] / 2


def test_shipped_template_runs_on_the_invoking_installation() -> None:
    """jobs/nightly-sync.toml as a template: every row is on the new installation's site, the
    job named and journaled per site, its system token read from serve over loopback."""
    config = load_config(REPO / "config.example.toml")
    serve = serve_config(config)
    assert serve is not None
    template = JobTemplate.load(REPO / "jobs" / "nightly-sync.toml", config)
    site = site_for(config, serve, installation())
    assert site.name == CLOUD and site.installation_id == INST
    assert site.context_ari == f"ari:cloud:jira:{CLOUD}:workspace/{CLOUD}"
    assert site.api_base_url == f"https://api.atlassian.com/ex/jira/{CLOUD}"
    job = template.for_site(site)
    assert job.name == f"nightly-sync@{CLOUD}" and job.sites == (CLOUD,)
    rows = list(job.source.rows())
    assert rows and {row.site for row in rows} == {CLOUD}
    cfg = job_config(config, serve, site, "http://127.0.0.1:9999", "s" * 32)
    assert check_rows(job, cfg).rows == len(rows)
    source = cfg.environments[site.environment].system_token
    assert (source.serve, source.installation_id) == ("http://127.0.0.1:9999", INST)
    assert "s" * 32 not in repr(source)
    assert journal_identity(template.path, site.name).endswith(f"nightly-sync.toml@{CLOUD}")


def test_configured_site_is_matched_by_installation_or_cloud() -> None:
    """An installation of a configured site is that site; a reinstall (new installation ID,
    same cloud) too, with the new ID."""
    config = load_config(REPO / "config.example.toml")
    serve = serve_config(config)
    assert serve is not None
    acme = config.sites["acme"]
    same = site_for(config, serve, installation(acme.cloud_id, acme.installation_id))
    assert same == acme
    reinstalled = site_for(config, serve, installation(acme.cloud_id, INST))
    assert reinstalled == replace(acme, installation_id=INST)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('sites = ["acme"]\n', "site"),
        ('site = "x"\n[source]\nrows = [{account_id = "5ca1ab1e0000000000000001", site = "x"}]'
         '\n[[actions]]\ntype = "issue.watch"\nissue = "MIG-1"\n', "source"),
    ],
)
def test_template_refusals(tmp_path: Path, text: str, where: str) -> None:
    """A template naming several sites, or rows carrying their own site: JobError."""
    path = tmp_path / "t.toml"
    path.write_text(text)
    config = load_config(REPO / "config.example.toml")
    with pytest.raises(JobError) as info:
        JobTemplate.load(path, config)
    assert info.value.where == where


def _serve_config(tmp_path: Path, serve: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f"""
[environments.dev]
app_id = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"
[environments.dev.system_token]
env = "X"
[serve]
{serve}
""")
    return path


@pytest.mark.parametrize(
    ("serve", "key"),
    [
        ('environment = "prod"', "serve.environment"),
        ('jwks_url = "ftp://x"', "serve.jwks_url"),
        ('context_ari = "not-an-ari"', "serve.context_ari"),
        ('[serve.token_endpoint]\nhost = "0.0.0.0"', "serve.token_endpoint.host"),
        ('[serve.token_endpoint]\nsecret = "inline"', "serve.token_endpoint.secret"),
        ('[[serve.routes]]\npath = "/a"\nkind = "cron"', "serve.routes[0].kind"),
        ('[[serve.routes]]\npath = "/a"\nkind = "job"', "serve.routes[0].job"),
        ('[[serve.routes]]\npath = "/a"\nkind = "refresh"\ninterval = "month"',
         "serve.routes[0].interval"),
        ('[serve.status]\nsecret = "inline"', "serve.status.secret"),
        ('[serve.status]\ntoken_env = "X"', "serve.status.token_env"),
    ],
)
def test_serve_config_refusals(tmp_path: Path, serve: str, key: str) -> None:
    """A bad [serve] key is a ConfigError naming it (the token route can't be moved off
    loopback, nor hold its secret inline)."""
    with pytest.raises(ConfigError) as info:
        serve_config(load_config(_serve_config(tmp_path, serve)))
    assert info.value.key == key


def test_serve_status_names_where_the_operator_token_is(tmp_path: Path) -> None:
    """[serve.status] secret_env is where the status page's operator token is read from; with
    no [serve.status] there is none (the page answers loopback only)."""
    with_token = serve_config(load_config(_serve_config(
        tmp_path, '[serve.status]\nsecret_env = "FORGE_RUNNER_OPERATOR_TOKEN"')))
    assert with_token is not None and with_token.operator_token is not None
    assert with_token.operator_token.env == "FORGE_RUNNER_OPERATOR_TOKEN"
    without = serve_config(load_config(_serve_config(tmp_path, "")))
    assert without is not None and without.operator_token is None
