"""`forge-runner doctor --manifest`: the shipped manifest passes; a broken one fails its check."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.cli import main
from runner.config.configfile import load_config
from runner.doctor.manifest import load_manifest
from runner.doctor.manifest_check import Check, check_manifest, passed
from runner.doctor.scopes import scopes_needed
from runner.errors import ManifestError
from runner.job.jobfile import load_job

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config.example.toml"
MIGRATION = REPO / "jobs" / "example-migration.toml"
NIGHTLY = REPO / "jobs" / "nightly-sync.toml"
SHIPPED = REPO / "jobs" / "manifest.yml"

GOOD: dict[str, Any] = {
    "app": {"id": "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"},
    "permissions": {"scopes": {
        "write:jira-work": {"allowImpersonation": True},
        "read:app-system-token": {},
    }},
    "modules": {
        "endpoint": [{"key": "remote", "remote": "backend", "route": {"path": "/events"},
                      "auth": {"appSystemToken": {"enabled": True}}}],
        "scheduledTrigger": [{"key": "refresh", "endpoint": "remote", "interval": "hour"}],
    },
    "remotes": [{"key": "backend", "baseUrl": "https://backend.example.com"}],
}


def checks_for(tmp_path: Path, manifest: dict[str, Any] | str, job: Path = MIGRATION
               ) -> list[Check]:
    path = tmp_path / "manifest.yml"
    path.write_text(manifest if isinstance(manifest, str) else yaml.safe_dump(manifest))
    needs = scopes_needed(load_job(job, load_config(CONFIG)).actions)
    return check_manifest(load_manifest(path), needs)


def failing(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.status == "fail"]


def broken(**changes: Any) -> dict[str, Any]:
    """GOOD with dotted paths replaced (a value of None deletes the key)."""
    doc = copy.deepcopy(GOOD)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return doc


@pytest.mark.parametrize("job", [MIGRATION, NIGHTLY])
def test_shipped_manifest_passes_for_the_example_jobs(job: Path, capsys: Any) -> None:
    """jobs/manifest.yml passes every check for both example jobs: exit 0, no ✗ line."""
    code = main(["doctor", "--manifest", str(SHIPPED), str(job), "--config", str(CONFIG)])
    out = capsys.readouterr().out
    assert code == 0
    assert "✗" not in out
    assert "✓ write:jira-work: a map entry with allowImpersonation: true" in out
    assert "Every check passed." in out
    assert "forge deploy" in out and "forge install --upgrade" in out


def test_minimal_good_manifest_passes(tmp_path: Path) -> None:
    """The test's own baseline passes, so each broken variant fails for its own change only."""
    assert passed(checks_for(tmp_path, GOOD))


@pytest.mark.parametrize(
    ("scopes", "said"),
    [
        (["write:jira-work", "read:app-system-token"], "write:jira-work: a list entry"),
        ("write:jira-work", "write:jira-work: a plain string"),
        ({"write:jira-work": {}, "read:app-system-token": {}},
         "write:jira-work: a map entry without allowImpersonation"),
        ({"write:jira-work": {"allowImpersonation": False}, "read:app-system-token": {}},
         "allowImpersonation is a boolean False, not true"),
        ({"write:jira-work": {"allowImpersonation": "true"}, "read:app-system-token": {}},
         "allowImpersonation is a string 'true', not true"),
        ({"write:jira-work": None, "read:app-system-token": {}},
         "a map entry whose value is nothing, not a map"),
        ({"read:jira-work": {"allowImpersonation": True}, "read:app-system-token": {}},
         "write:jira-work: not declared"),
    ],
)
def test_each_wrong_scope_form_fails_with_the_yaml_to_write(
    tmp_path: Path, scopes: Any, said: str
) -> None:
    """A needed scope as a list entry, a plain string, a map without allowImpersonation: true,
    or absent fails, naming the actions that need it and giving the map entry to write."""
    checks = checks_for(tmp_path, broken(permissions__scopes=scopes))
    scope_check = next(c for c in failing(checks) if c.title.startswith("write:jira-work"))
    assert said in scope_check.title
    assert "(needed by actions[0] comment.add" in scope_check.title
    assert scope_check.fix.endswith(
        "permissions:\n  scopes:\n    'write:jira-work':\n      allowImpersonation: true")


def test_list_form_gets_the_whole_map_to_write(tmp_path: Path) -> None:
    """Scopes written as a list: one more failure gives the full map, every entry kept."""
    checks = checks_for(tmp_path, broken(permissions__scopes=[
        "write:jira-work", "read:app-system-token", "storage:app"]))
    whole = next(c for c in failing(checks) if "is a list, not a map" in c.title)
    assert yaml.safe_load(whole.fix.split("\n", 1)[1]) == {"permissions": {"scopes": {
        "write:jira-work": {"allowImpersonation": True},
        "read:app-system-token": {},
        "storage:app": {},
    }}}


def test_missing_system_token_scope_fails(tmp_path: Path) -> None:
    """Without read:app-system-token Forge sends no system token: that check fails alone."""
    doc = broken(permissions__scopes={"write:jira-work": {"allowImpersonation": True}})
    [fail] = failing(checks_for(tmp_path, doc))
    assert "read:app-system-token is not declared" in fail.title
    assert "'read:app-system-token': {}" in fail.fix


@pytest.mark.parametrize(
    ("auth", "said"),
    [
        ({}, "auth.appSystemToken.enabled is absent"),
        ({"appSystemToken": {"enabled": False}}, "is a boolean False, not true"),
        ({"appUserToken": {"enabled": True}}, "auth.appSystemToken.enabled is absent"),
    ],
)
def test_endpoint_without_system_token_fails(tmp_path: Path, auth: Any, said: str) -> None:
    """An endpoint whose auth.appSystemToken.enabled is not true fails, with the YAML; the
    trigger on it fails too, since its invocations bring no token."""
    fails = failing(checks_for(tmp_path, broken(modules__endpoint__0__auth=auth)))
    endpoint = next(c for c in fails if c.title.startswith("endpoint remote"))
    assert said in endpoint.title
    assert "appSystemToken:\n          enabled: true" in endpoint.fix
    assert any("refresh's endpoint remote receives no system token" in c.title for c in fails)


def test_endpoint_naming_an_undeclared_remote_fails(tmp_path: Path) -> None:
    """An endpoint's remote must be one of remotes:; otherwise the check says which."""
    [fail] = failing(checks_for(tmp_path, broken(remotes=[{"key": "other", "baseUrl": "x"}])))
    assert fail.title == "endpoint remote names remote backend, which remotes: does not declare"
    assert "remotes:\n  - key: backend" in fail.fix


def test_no_endpoint_fails(tmp_path: Path) -> None:
    """No endpoint module at all: Forge invokes no remote; the fix declares one and a remote."""
    fails = failing(checks_for(tmp_path, broken(modules__endpoint=None)))
    assert any(c.title.startswith("no remote endpoint") for c in fails)
    fix = next(c.fix for c in fails if c.title.startswith("no remote endpoint"))
    assert "remotes:" in fix and "enabled: true" in fix


@pytest.mark.parametrize(
    ("trigger", "said"),
    [
        (None, "modules.scheduledTrigger declares none"),
        ([{"key": "refresh", "function": "main", "interval": "hour"}],
         "refresh runs function main, a Forge function, not the remote"),
        ([{"key": "refresh", "endpoint": "remote", "interval": "day"}],
         "refresh runs every day: too rare, system tokens live at most 4 hours"),
        ([{"key": "refresh", "endpoint": "remote", "interval": "week"}], "runs every week"),
        ([{"key": "refresh", "endpoint": "elsewhere", "interval": "hour"}],
         "names endpoint elsewhere, which modules.endpoint does not declare"),
    ],
)
def test_scheduled_trigger_must_invoke_the_remote_hourly(
    tmp_path: Path, trigger: Any, said: str
) -> None:
    """Only a trigger with endpoint: on a system-token endpoint, every five minutes or hour,
    keeps tokens fresh; otherwise the check fails saying why, with the trigger to write."""
    [fail] = failing(checks_for(tmp_path, broken(modules__scheduledTrigger=trigger)))
    assert fail.title.startswith("no scheduledTrigger invokes the remote directly")
    assert said in fail.title
    assert "endpoint: remote\n      interval: hour" in fail.fix


def test_five_minute_trigger_passes(tmp_path: Path) -> None:
    """interval: fiveMinute is at least hourly."""
    checks = checks_for(tmp_path, broken(modules__scheduledTrigger=[
        {"key": "often", "endpoint": "remote", "interval": "fiveMinute"}]))
    assert passed(checks)
    assert any("every five minutes" in c.title for c in checks)


def test_cli_failing_manifest_exits_1_with_checklist(tmp_path: Path, capsys: Any) -> None:
    """A failing manifest: exit 1, a ✗ line with an indented fix, the reminder, the count."""
    path = tmp_path / "manifest.yml"
    path.write_text(yaml.safe_dump(broken(permissions__scopes=["write:jira-work"])))
    code = main(["doctor", "--manifest", str(path), str(MIGRATION), "--config", str(CONFIG)])
    out = capsys.readouterr().out
    assert code == 1
    assert "  ✗ write:jira-work: a list entry" in out
    assert "      fix: offline tokens carry only scopes that allow impersonation" in out
    assert "Reminder: After changing scopes: run `forge deploy`" in out
    assert "checks failed." in out


def test_undetermined_scopes_are_flagged_not_failed(tmp_path: Path, capsys: Any) -> None:
    """A raw request to an unknown endpoint: a ? line saying the scope could not be
    determined; the other checks still decide the exit code."""
    job = tmp_path / "job.toml"
    job.write_text("""site = "acme"
[[source.rows]]
account_id = "5b10a2844c20165700ede21g"
[[actions]]
type = "request"
method = "POST"
path = "/rest/api/3/custom/thing"
json = { a = 1 }
[[actions]]
type = "comment.add"
issue = "MIG-1"
body = "hi"
""")
    code = main(["doctor", "--manifest", str(SHIPPED), str(job), "--config", str(CONFIG)])
    out = capsys.readouterr().out
    assert code == 0
    assert "  ? actions[0] request: scope could not be determined (POST /rest/api/3/custom/thing" \
        in out
    assert "1 action with scopes that could not be determined" in out


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("permissions: [unclosed", "(file)", "valid YAML"),
        ("- just\n- a list\n", "(top level)", "a Forge manifest"),
        ("name: x\nversion: 2\n", "(top level)", "a Forge manifest"),
        ("app: {}\npermissions:\n  scopes: 7\n", "permissions.scopes", "a map of scopes"),
        ("app: {}\nmodules:\n  endpoint: {key: x}\n", "modules.endpoint", "a list of maps"),
        ("app: {}\nmodules:\n  endpoint:\n    - remote: r\n", "modules.endpoint[0].key",
         "a non-empty string"),
        ("app: {}\nmodules:\n  scheduledTrigger:\n    - key: t\n      endpoint: [a]\n",
         "modules.scheduledTrigger[0].endpoint", "a non-empty string"),
        ("app: {}\nmodules:\n  endpoint:\n    - key: e\n      auth:\n        appSystemToken: on\n",
         "modules.endpoint[0].auth.appSystemToken", "a map with enabled"),
    ],
)
def test_not_a_manifest_is_input_error_naming_file_and_key(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    """Not YAML, or not a manifest's shape: ManifestError naming the file and key path."""
    path = tmp_path / "manifest.yml"
    path.write_text(text)
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert caught.value.key == key
    assert expected in caught.value.expected
    assert str(caught.value).startswith(f"{path}: {key}: expected")


def test_cli_not_a_manifest_exits_2(tmp_path: Path, capsys: Any) -> None:
    """The command turns a bad manifest into exit 2 with the file and key on stderr."""
    path = tmp_path / "manifest.yml"
    path.write_text("app: {}\npermissions: nope\n")
    code = main(["doctor", "--manifest", str(path), str(MIGRATION), "--config", str(CONFIG)])
    assert code == 2
    assert f"{path}: permissions: expected a map" in capsys.readouterr().err


def test_cli_manifest_needs_a_job(capsys: Any) -> None:
    """--manifest without a job is bad input (exit 2)."""
    assert main(["doctor", "--manifest", str(SHIPPED), "--config", str(CONFIG)]) == 2
    assert "the job file is missing" in capsys.readouterr().err


def test_an_endpoint_route_serve_does_not_route_fails(tmp_path: Path, capsys: Any) -> None:
    """With the config's [serve.routes], a manifest endpoint on /forge/events fails naming the
    route and the routes served (exit 1); the served routes no endpoint invokes are noted."""
    manifest = tmp_path / "manifest.yml"
    manifest.write_text(yaml.safe_dump(broken(modules__endpoint__0__route={
        "path": "/forge/events"})))
    code = main(["doctor", "--manifest", str(manifest), str(MIGRATION), "--config", str(CONFIG)])
    out = capsys.readouterr().out
    assert code == 1
    assert ("✗ endpoint remote invokes /forge/events, which [serve.routes] does not route (it "
            "serves /forge/lifecycle, /forge/refresh, /forge/nightly-sync): every invocation "
            "gets 404") in out
    assert "· refresh route /forge/refresh of [serve.routes] is invoked by no endpoint" in out
    assert "1 check failed." in out


def test_routes_are_not_checked_without_serve_routes(tmp_path: Path) -> None:
    """A config without [serve.routes] adds no route check: the baseline still passes."""
    assert not [c for c in checks_for(tmp_path, GOOD) if c.section.startswith("Routes")]
