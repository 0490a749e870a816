"""The scopes table (runner.scopes) against Jira's real spec, and the scopes jobs need."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.actions import BUILTINS, PythonAction
from runner.config.configfile import Config, load_config
from runner.doctor.scopes import BUILTIN_OPERATIONS, OPERATION_SCOPES, operations_of, scopes_needed
from runner.job.jobfile import Job, item_key, load_job

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "config.example.toml"
ADA = "5b10a2844c20165700ede21g"


def config() -> Config:
    return load_config(EXAMPLE_CONFIG)


def write_job(folder: Path, actions: str, *, fields: str = "") -> Path:
    """A job on site acme with one inline row, and the given [[actions]] tables."""
    path = folder / "job.toml"
    path.write_text(f"""
site = "acme"

[[source.rows]]
account_id = "{ADA}"
issue = "MIG-1"
status = "In Progress"
{fields}
{actions}""")
    return path


EVERY_BUILTIN = """
[[actions]]
type = "myself"
[[actions]]
type = "comment.add"
issue = "{issue}"
body = "hello"
[[actions]]
type = "issue.create"
project = "MIG"
issuetype = "Task"
summary = "s"
[[actions]]
type = "issue.edit"
issue = "{issue}"
fields = { summary = "s" }
[[actions]]
type = "issue.transition"
issue = "{issue}"
transition_id = "21"
[[actions]]
type = "issue.transition"
issue = "{issue}"
transition = "{status}"
[[actions]]
type = "issue.assign"
issue = "{issue}"
[[actions]]
type = "issue.watch"
issue = "{issue}"
[[actions]]
type = "issue.property.set"
issue = "{issue}"
key = "k"
value = { a = 1 }
[[actions]]
type = "user.property.set"
key = "k"
value = { a = 1 }
[[actions]]
type = "worklog.add"
issue = "{issue}"
time_spent_seconds = 60
started = "2024-05-01"
"""


def test_table_matches_the_real_spec(specs_dir: Path) -> None:
    """Every table entry is an operation of Jira's spec with exactly its classic scopes."""
    spec: dict[str, Any] = json.loads((specs_dir / "jira-platform-openapi.json").read_text())
    for (method, template), scopes in OPERATION_SCOPES.items():
        operation = spec["paths"][template][method.lower()]
        oauth = [s["OAuth2"] for s in operation["security"] if "OAuth2" in s]
        assert oauth == [list(scopes)], (method, template)
        current = [s["scopes"] for s in operation["x-atlassian-oauth2-scopes"]
                   if s.get("state") == "Current"]
        assert current == [list(scopes)], (method, template)


def test_every_builtin_has_its_operations_in_the_table() -> None:
    """A new built-in can't be added without saying which operations (and scopes) it uses."""
    assert set(BUILTIN_OPERATIONS) == set(BUILTINS) - {"request"}
    for operations in BUILTIN_OPERATIONS.values():
        assert all(op in OPERATION_SCOPES for op in operations)


def test_declared_operations_are_what_the_actions_send(tmp_path: Path) -> None:
    """Each built-in's rendered request (and a transition by name's read) is an operation the
    table says it sends."""
    job: Job = load_job(write_job(tmp_path, EVERY_BUILTIN), config())
    row = next(iter(job.source.rows()))
    for action in job.actions:
        assert not isinstance(action, PythonAction)
        request = action.render(row, item_key(row, action.index))
        sent = [(request.method, request.template)]
        if request.resolve is not None:
            sent.append((request.resolve.request.method, request.resolve.request.template))
        declared = operations_of(action)
        assert declared is not None and set(sent) == set(declared), action.name


def test_example_jobs_need_write_and_read_scopes() -> None:
    """The example migration needs write:jira-work for its three actions; the nightly sync's
    transition by name needs read:jira-work too."""
    migration = scopes_needed(load_job(REPO / "jobs" / "example-migration.toml", config()).actions)
    assert dict(migration.scopes) == {"write:jira-work": (
        "actions[0] comment.add", "actions[1] issue.property.set", "actions[2] issue.transition")}
    assert migration.undetermined == ()
    nightly = scopes_needed(load_job(REPO / "jobs" / "nightly-sync.toml", config()).actions)
    assert list(nightly.scopes) == ["write:jira-work", "read:jira-work"]
    assert nightly.scopes["read:jira-work"] == ("actions[2] issue.transition",)


def test_raw_requests_are_looked_up_or_undetermined(tmp_path: Path) -> None:
    """A raw request to a known endpoint gets its scope from the table; an unknown endpoint and
    a Python action are reported as undetermined, with the reason."""
    (tmp_path / "scopes_probe_hooks.py").write_text(
        "async def act(jira, row):\n    return None\n")
    job = load_job(write_job(tmp_path, """
[[actions]]
type = "request"
method = "GET"
path = "/rest/api/3/user"
query = { accountId = "{account_id}" }
[[actions]]
type = "request"
method = "POST"
path = "/rest/api/3/custom/thing"
json = { a = 1 }
[[actions]]
python = "scopes_probe_hooks:act"
"""), config())
    needs = scopes_needed(job.actions)
    assert dict(needs.scopes) == {"read:jira-user": ("actions[0] request",)}
    assert [(u.action, u.reason) for u in needs.undetermined] == [
        ("actions[1] request", "POST /rest/api/3/custom/thing is not an operation forge-runner "
                               "knows"),
        ("actions[2] python scopes_probe_hooks:act", "a Python action may call any operation"),
    ]
