"""`forge-runner export RUN`: what a run made, as CSV, JSON Lines and JSON, through the real command
against a served sandbox; the IDs it lists are checked against the sandbox's Jira."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from runner.actions import ITEM_PROPERTY_KEY
from runner.sandbox.app import RunningSandbox, serve
from runner.sandbox.testing import CLOUD_A, MIGRATION_ACTIONS
from tests.e2e.harness import (
    Rehearsal,
    account,
    bulk_sandbox_config,
    run_id_of,
    write_csv,
)

pytestmark = pytest.mark.slow


def _rows(n: int) -> list[dict[str, str]]:
    return [{"legacy_id": f"LEG-{i:03d}", "account_id": account(i % 3),
             "issue": f"MIG-{i % 4 + 1}", "author": f"user{i}"} for i in range(n)]


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with serve(bulk_sandbox_config(4), port=0) as running:
        yield running


@pytest.fixture
def rehearsal(tmp_path: Path, sandbox: RunningSandbox) -> Rehearsal:
    return Rehearsal.start(tmp_path, sandbox, concurrency=3)


def _comments(rehearsal: Rehearsal) -> dict[str, tuple[str, str]]:
    """Each comment the sandbox holds, by the item that made it: (comment ID, issue ID)."""
    out = {}
    for issue in rehearsal.jira.site(CLOUD_A).issues.values():
        for comment in issue.comments:
            prop: Any = comment.properties.get(ITEM_PROPERTY_KEY)
            if isinstance(prop, Mapping):
                out[prop["item"]] = (comment.id, issue.id)
    return out


async def _migrate(rehearsal: Rehearsal, rows: list[dict[str, str]]) -> str:
    job = rehearsal.write_job("migration", rows, MIGRATION_ACTIONS)
    done = await rehearsal.cli("run", job)
    assert done.code == 0, done.text
    return run_id_of(done)


async def test_csv_maps_each_row_to_the_comment_it_made(rehearsal: Rehearsal) -> None:
    """`export RUN --field legacy_id --field author` writes one line per comment created, in
    the source's order: row key, the fields asked for, action, site, account, and the comment's
    id and self link as Jira has them; the property items (nothing created) are left out."""
    rows = _rows(5)
    run_id = await _migrate(rehearsal, rows)
    exported = await rehearsal.cli("export", run_id, "--field", "legacy_id", "--field", "author")
    assert exported.code == 0, exported.text
    made = _comments(rehearsal)
    base = rehearsal.sandbox.jira_base(CLOUD_A)
    expected = [["row", "legacy_id", "author", "action_index", "action", "site", "account_id",
                 "id", "key", "self"]]
    for row in rows:
        comment_id, issue_id = made[f"{row['legacy_id']}#0"]
        expected.append([row["legacy_id"], row["legacy_id"], row["author"], "0", "comment.add",
                         "acme", row["account_id"], comment_id, "",
                         f"{base}/rest/api/3/issue/{issue_id}/comment/{comment_id}"])
    assert list(csv.reader(io.StringIO(exported.out))) == expected


async def test_jsonl_and_json_say_what_the_csv_says(rehearsal: Rehearsal) -> None:
    """`--format jsonl` is one JSON object a line, `--format json` one document with the run's
    head and the same items; `--all` adds every done item, those that made nothing too."""
    run_id = await _migrate(rehearsal, _rows(3))
    lines = await rehearsal.cli("export", run_id, "--field", "issue", "--format", "jsonl")
    assert lines.code == 0, lines.text
    items = [json.loads(line) for line in lines.out.splitlines()]
    made = _comments(rehearsal)
    assert [(i["row"], i["fields"], i["action"], i["created"]["id"]) for i in items] == [
        (f"LEG-{n:03d}", {"issue": f"MIG-{n % 4 + 1}"}, "comment.add", made[f"LEG-{n:03d}#0"][0])
        for n in range(3)
    ]
    document = await rehearsal.cli("export", run_id, "--field", "issue", "--format", "json")
    parsed = json.loads(document.out)
    assert parsed["schema"] == "forge-runner.export/1" and parsed["run"] == run_id
    assert parsed["fields"] == ["issue"] and parsed["items"] == items
    every = await rehearsal.cli("export", run_id, "--all", "--format", "jsonl")
    actions = [json.loads(line)["action"] for line in every.out.splitlines()]
    assert actions == ["comment.add", "issue.property.set"] * 3


async def test_csv_values_a_spreadsheet_would_run_are_made_inert(rehearsal: Rehearsal) -> None:
    """A row key and a field starting with = or @ are written with a ' in front in CSV, and as
    they are in JSON Lines."""
    rows = [{"legacy_id": "=HYPERLINK(\"http://x\")", "account_id": account(1),
             "issue": "MIG-1", "author": "@boss"}]
    run_id = await _migrate(rehearsal, rows)
    exported = await rehearsal.cli("export", run_id, "--field", "author")
    line = list(csv.reader(io.StringIO(exported.out)))[1]
    assert line[:2] == ["'=HYPERLINK(\"http://x\")", "'@boss"]
    lines = await rehearsal.cli("export", run_id, "--field", "author", "--format", "jsonl")
    item = json.loads(lines.out)
    assert (item["row"], item["fields"]["author"]) == (rows[0]["legacy_id"], "@boss")


async def test_rows_gone_from_the_source_are_counted_on_stderr(rehearsal: Rehearsal) -> None:
    """Two rows removed from the CSV after the run: `export --field` lists the other rows and
    says on one stderr line that 2 done items have no row any more; without --field all 4
    comments are listed (the source is not read)."""
    rows = _rows(4)
    run_id = await _migrate(rehearsal, rows)
    write_csv(rehearsal.folder / "migration.csv", rows[:2])
    joined = await rehearsal.cli("export", run_id, "--field", "legacy_id", "--format", "jsonl")
    assert joined.code == 0, joined.text
    assert [json.loads(line)["row"] for line in joined.out.splitlines()] == ["LEG-000", "LEG-001"]
    said = [line for line in joined.err.splitlines() if line.startswith("forge-runner: ")]
    assert len(said) == 1 and "2 done item(s) of run" in said[0], joined.err
    plain = await rehearsal.cli("export", run_id, "--format", "jsonl")
    assert len(plain.out.splitlines()) == 4 and plain.err == ""


async def test_output_file_and_a_trial_run(rehearsal: Rehearsal) -> None:
    """`--output FILE` writes the map there (nothing on stdout), with the permissions the
    umask gives a new file; a trial run exports its own rows, with fields read from the job's
    whole source."""
    job = rehearsal.write_job("migration", _rows(4), MIGRATION_ACTIONS)
    trial = await rehearsal.cli("run", job, "--only", "LEG-002")
    assert trial.code == 0, trial.text
    target = rehearsal.folder / "map.csv"
    exported = await rehearsal.cli("export", run_id_of(trial), "--field", "author",
                                   "--output", target)
    assert exported.code == 0 and exported.out == "", exported.text
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()
    lines = list(csv.reader(io.StringIO(target.read_text())))
    assert [line[:2] for line in lines] == [["row", "author"], ["LEG-002", "user2"]]


@pytest.mark.parametrize(("args", "says"), [
    (("--field", "nope"), "--field nope: not a column of"),
    (("--field", "id"), "--field id: the export has a column of that name already"),
])
async def test_a_field_that_cannot_be_exported_is_refused(
    rehearsal: Rehearsal, args: tuple[str, ...], says: str
) -> None:
    """An unknown column, or one named like a column of the export, exits 2 with one line."""
    run_id = await _migrate(rehearsal, _rows(1))
    refused = await rehearsal.cli("export", run_id, *args)
    assert refused.code == 2, refused.text
    lines = [line for line in refused.err.splitlines() if line.startswith("forge-runner: ")]
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in refused.err
    assert refused.out == ""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
