"""Loading the config file: defaults, paths, token sources, and errors that say where and what."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from runner.cli import main
from runner.config.configfile import (
    DEFAULT_GATEWAY_URL,
    Config,
    RetryPolicy,
    load_config,
)
from runner.errors import ConfigError
from runner.remote.settings import serve_config
from runner.sandbox.config import sandbox_config

REPO = Path(__file__).resolve().parents[2]
CLOUD = "5b1e6c3a-0d6f-4e4b-9d0a-2f3c4b5a6d7e"
APP = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"
INSTALLATION = "ari:cloud:ecosystem::installation/0e7c1d2b-6a4f-4f0e-8b1a-3c5d7e9f1a2b"

MINIMAL = f"""
[environments.prod]
app_id = "{APP}"
system_token = {{ env = "FORGE_SYSTEM_TOKEN" }}

[sites.acme]
cloud_id = "{CLOUD}"
installation_id = "{INSTALLATION}"
"""


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_all(path: Path) -> Config:
    """The config as the commands read it: the core, then [sandbox] and [serve] by their own."""
    config = load_config(path)
    sandbox_config(config)
    serve_config(config)
    return config


def error_for(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_all(path)
    assert info.value.file == path
    assert str(info.value).startswith(f"{path}: ")
    return info.value


def test_example_config_loads() -> None:
    """config.example.toml loads as shipped, sandbox section included."""
    config = load_config(REPO / "config.example.toml")
    assert set(config.sites) == {"acme"}
    site = config.sites["acme"]
    assert site.environment == "dev"
    assert site.context_ari == f"ari:cloud:jira:{site.cloud_id}:workspace/{site.cloud_id}"
    assert config.environments["dev"].system_token.command is not None
    sandbox = sandbox_config(config)
    assert sandbox is not None and "acme" in sandbox.sites
    assert serve_config(config) is not None


def test_defaults_are_filled(tmp_path: Path) -> None:
    """A minimal file gets the documented defaults, with {cloud_id} filled in."""
    config = load_config(write(tmp_path, MINIMAL))
    env = config.environments["prod"]
    assert (env.gateway_url, env.mint_limit, env.mint_window_s) == (DEFAULT_GATEWAY_URL, 1000, 60)
    assert env.bucket == "prod"
    site = config.sites["acme"]
    assert site.environment == "prod"  # the only environment
    assert site.api_base_url == f"https://api.atlassian.com/ex/jira/{CLOUD}"
    assert site.context_ari == f"ari:cloud:jira:{CLOUD}:workspace/{CLOUD}"
    assert config.retry_mint == RetryPolicy()
    assert config.retry_jira == Config.retry_jira
    assert config.runner.concurrency == 16
    assert config.sandbox_table is None and sandbox_config(config) is None
    assert config.serve_table is None and serve_config(config) is None


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    """journal and system_token.file are relative to the config file, not the cwd."""
    sub = tmp_path / "conf"
    sub.mkdir()
    text = MINIMAL.replace('{ env = "FORGE_SYSTEM_TOKEN" }', '{ file = "secrets/token" }')
    config = load_config(write(sub, text + '\n[runner]\njournal = "state/run.db"\n'))
    assert config.runner.journal == sub.resolve() / "state" / "run.db"
    source = config.environments["prod"].system_token
    assert source.file == sub.resolve() / "secrets" / "token"
    assert source.cwd == sub.resolve()


def test_the_shared_budgets_live_with_the_journal_unless_named(tmp_path: Path) -> None:
    """Without [runner] budgets the shared budgets are the journal's; a path is resolved like
    the journal's, a postgresql:// URL kept as written."""
    from runner.budgets.store import location_of

    plain = load_config(write(tmp_path, MINIMAL + '\n[runner]\njournal = "run.db"\n'))
    assert location_of(plain.runner) == tmp_path.resolve() / "run.db"
    named = load_config(write(tmp_path, MINIMAL + '\n[runner]\nbudgets = "b/budgets.db"\n'))
    assert location_of(named.runner) == tmp_path.resolve() / "b" / "budgets.db"
    url = "postgresql://forge@db.internal/forge"
    remote = load_config(write(tmp_path, MINIMAL + f'\n[runner]\nbudgets = "{url}"\n'))
    assert location_of(remote.runner) == url


def test_fingerprint_is_the_sha256_of_the_file(tmp_path: Path) -> None:
    """A resumed run compares this to know the config did not change."""
    path = write(tmp_path, MINIMAL)
    assert load_config(path).fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()


def test_shared_bucket_and_overrides_are_read(tmp_path: Path) -> None:
    """Settings given in the file replace the defaults, checked for type."""
    text = MINIMAL.replace(
        'system_token = { env = "FORGE_SYSTEM_TOKEN" }',
        'system_token = { env = "T" }\nmint_bucket = "shared"\nmint_limit = 60\n'
        'mint_window_s = 3\ngateway_url = "http://127.0.0.1:9/graphql"',
    )
    text += ('\n[retry.jira]\nattempts = 2\n\n[jira_budgets]\nquota_points = 100\n'
             'serve_reserve = 0.25\n')
    config = load_config(write(tmp_path, text))
    env = config.environments["prod"]
    assert (env.bucket, env.mint_limit, env.mint_window_s) == ("shared", 60, 3.0)
    assert env.gateway_url == "http://127.0.0.1:9/graphql"
    assert config.retry_jira.attempts == 2 and config.retry_jira.wait_initial_s == 2.0
    assert config.jira_budgets.quota_points == 100
    assert config.jira_budgets.serve_reserve == 0.25


@pytest.mark.parametrize(
    ("edit", "key", "expected", "found"),
    [
        (("[sites.acme]", "[sites.acme]\ncolud_id = 'x'"), "sites.acme.colud_id",
         "one of the known keys", "an unknown key"),
        (("[environments.prod]", "[environments.prod]\nmint_limt = 5"),
         "environments.prod.mint_limt", "one of the known keys", "an unknown key"),
        (("[environments.prod]", "[environments.prod]\nmint_limit = 'many'"),
         "environments.prod.mint_limit", "an integer >= 1", "'many' (a string)"),
        (("[environments.prod]", "[environments.prod]\nmint_window_s = 0"),
         "environments.prod.mint_window_s", "a number > 0", "0"),
        ((APP, "ari:cloud:ecosystem::installation/x"), "environments.prod.app_id",
         "ari:cloud:ecosystem:{siteId}:app/{id}", "installation/x"),
        ((INSTALLATION, "0e7c1d2b"), "sites.acme.installation_id",
         "installation/{id}", "'0e7c1d2b'"),
        (("[sites.acme]", "[sites.acme]\nenvironment = 'staging'"), "sites.acme.environment",
         "a configured environment (prod)", "'staging'"),
        (("[sites.acme]", "[sites.acme]\ncontext_ari = 'workspace/{cloud_id}'"),
         "sites.acme.context_ari", "{cloud_id} is filled in", "workspace/{cloud_id}"),
        (("[sites.acme]", "[sites.acme]\napi_base_url = 'api.atlassian.com/{site}'"),
         "sites.acme.api_base_url", "an http:// or https:// URL", "api.atlassian.com/{site}"),
        (("[sites.acme]", "[runner]\nconcurrency = 0\n[sites.acme]"), "runner.concurrency",
         "an integer >= 1", "0"),
        (("[sites.acme]", "[retry.mint]\nwait_initial_s = 5\nwait_max_s = 1\n[sites.acme]"),
         "retry.mint.wait_max_s", "a number >= wait_initial_s", "1.0"),
        (("[sites.acme]", "[gateway_messages]\nuser_refused = ['(']\n[sites.acme]"),
         "gateway_messages.user_refused[0]", "a regular expression", "'('"),
        (("[sites.acme]", "[sandbox.mint_limit]\nalgorithm = 'magic'\n[sites.acme]"),
         "sandbox.mint_limit.algorithm", "sliding, fixed or token_bucket", "magic"),
        (("[environments.prod]", "colour = 'blue'\n[environments.prod]"), "colour",
         "one of the known keys", "an unknown key"),
        (("[sites.acme]", "[jira_budgets]\nserve_reserve = 0.6\n[sites.acme]"),
         "jira_budgets.serve_reserve", "a share of the quota from 0 to 0.5", "0.6"),
        (("[sites.acme]", "[jira_budgets]\nserve_reserve = -0.1\n[sites.acme]"),
         "jira_budgets.serve_reserve", "a share of the quota from 0 to 0.5", "-0.1"),
    ],
)
def test_errors_name_the_key_path_and_the_expectation(
    tmp_path: Path, edit: tuple[str, str], key: str, expected: str, found: str
) -> None:
    """Each wrong key is reported with the file, its dotted path, what was expected and found."""
    err = error_for(tmp_path, MINIMAL.replace(*edit, 1))
    assert err.key == key
    assert expected in err.expected
    assert found in err.found
    assert f": {key}: expected " in str(err)


def test_a_site_needs_its_environment_named_when_there_are_several(tmp_path: Path) -> None:
    """With two environments, a site without `environment` is an error at its key."""
    text = MINIMAL + f'\n[environments.dev]\napp_id = "{APP}"\nsystem_token = {{ env = "X" }}\n'
    err = error_for(tmp_path, text)
    assert err.key == "sites.acme.environment"
    assert "missing" in err.found


@pytest.mark.parametrize(
    ("token_table", "found"),
    [
        ("{ }", "none of them"),
        ('{ env = "A", file = "b" }', "env and file"),
        ('{ env = "A", command = ["x"], file = "b" }', "env and file and command"),
        ('{ token = "eyJhbGciOi.TOPSECRET" }', "a token in the file"),
    ],
)
def test_exactly_one_token_source(tmp_path: Path, token_table: str, found: str) -> None:
    """A system token comes from exactly one of env, file or command, never the file itself."""
    err = error_for(tmp_path, MINIMAL.replace('{ env = "FORGE_SYSTEM_TOKEN" }', token_table))
    assert err.key.startswith("environments.prod.system_token")
    assert err.expected.startswith("exactly one of env, file")
    assert found in err.found
    assert "TOPSECRET" not in str(err)


def test_a_token_command_must_be_a_list(tmp_path: Path) -> None:
    """command is a program and its arguments, as a list of strings."""
    err = error_for(tmp_path, MINIMAL.replace('env = "FORGE_SYSTEM_TOKEN"', 'command = "x y"'))
    assert err.key == "environments.prod.system_token.command"
    assert err.expected == "a non-empty list of strings"


def test_a_missing_system_token_table_is_named(tmp_path: Path) -> None:
    """An environment without system_token says which key is missing."""
    err = error_for(tmp_path, MINIMAL.replace('system_token = { env = "FORGE_SYSTEM_TOKEN" }', ""))
    assert err.key == "environments.prod.system_token"
    assert "missing" in err.found


def test_invalid_toml_and_missing_files_are_config_errors(tmp_path: Path) -> None:
    """Syntax errors and unreadable files name the file too."""
    err = error_for(tmp_path, "[runner\nconcurrency = 1")
    assert err.expected == "valid TOML"
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml") as info:
        load_config(missing)
    assert info.value.expected == "a readable config file"


SHARED = MINIMAL.replace('[environments.prod]', '[environments.prod]\nmint_bucket = "app"') + f"""
[environments.staging]
app_id = "{APP}"
system_token = {{ env = "FORGE_SYSTEM_TOKEN" }}
mint_bucket = "app"
mint_limit = 500
"""


def test_a_shared_bucket_with_two_budgets_is_refused_at_load(tmp_path: Path) -> None:
    """Environments naming one mint bucket with different budgets fail load_config, naming
    both environments' keys."""
    err = error_for(tmp_path, SHARED.replace("[sites.acme]", '[sites.acme]\nenvironment = "prod"'))
    assert err.key == "environments.staging.mint_limit"
    assert "'app'" in err.expected and "environments.prod" in err.expected
    assert "1000 per 60 s" in err.expected and err.found == "500 per 60 s"


def test_shared_bucket_with_one_budget_loads(tmp_path: Path) -> None:
    """Environments naming one bucket with the same budget share it without complaint."""
    text = SHARED.replace("mint_limit = 500", "mint_limit = 1000")
    config = load_config(write(tmp_path, text.replace("[sites.acme]",
                                                      '[sites.acme]\nenvironment = "prod"')))
    assert {env.bucket for env in config.environments.values()} == {"app"}


JOB = """
site = "acme"
[source]
rows = [{ account_id = "5b10ac8d82e05b22cc7d4ef5" }]
[[actions]]
type = "myself"
"""


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        # No edit: the two budgets of bucket "app" disagree.
        (("", ""), "environments.staging.mint_limit"),
        (("mint_limit = 500", 'mint_limit = 1000\n[sandbox]\nport = "high"'), "sandbox.port"),
        (("mint_limit = 500",
          'mint_limit = 1000\n[serve]\nenvironment = "prod"\njwks_url = "ftp://x"'),
         "serve.jwks_url"),
    ],
)
def test_run_refuses_a_bad_config_before_opening_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], key: str
) -> None:
    """`forge-runner run` on a config refused for a shared bucket's budgets, a bad [sandbox] or
    a bad [serve] exits 2 naming the key, and no journal (so no run) is made."""
    text = SHARED.replace("[sites.acme]", '[sites.acme]\nenvironment = "prod"')
    text = text.replace(*edit) if edit[0] else text
    config = write(tmp_path, text + '\n[runner]\njournal = "state.db"\n')
    job = write(tmp_path, JOB, name="job.toml")
    code = main(["run", str(job), "--config", str(config), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{config}: {key}: expected " in err
    assert not (tmp_path / "state.db").exists()


def test_block_after_failed_mints_is_read_and_checked(tmp_path: Path) -> None:
    """An environment's block_after_failed_mints defaults to 3, is read when given, and must
    be an integer of at least 1."""
    assert load_config(write(tmp_path, MINIMAL)).environments["prod"].block_after_failed_mints \
        == 3
    given = MINIMAL.replace('system_token = {', 'block_after_failed_mints = 7\nsystem_token = {')
    assert load_config(write(tmp_path, given)).environments["prod"].block_after_failed_mints == 7
    err = error_for(tmp_path, given.replace("= 7", "= 0"))
    assert err.key == "environments.prod.block_after_failed_mints"
    assert "an integer >= 1" in err.expected
