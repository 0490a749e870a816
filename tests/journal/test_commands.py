"""``forge-runner status`` and ``forge-runner report`` on a real journal: an SQLite file, or a
PostgreSQL database given by its URL."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest

from runner.cli import main
from runner.journal import ItemRef, RunState
from runner.journal.open import JournalTarget, open_journal

ACCOUNT = "5ca1ab1e00000000000000{:02d}"


def _ref(n: int, site: str = "acme", action: int = 0) -> ItemRef:
    return ItemRef(f"row-{n:03d}", action, site, ACCOUNT.format(n), "comment.add")


async def _fill(path: JournalTarget, job: Path) -> tuple[str, str]:
    """An older finished run, and a newer one with items in every state."""
    async with open_journal(path) as journal:
        old = (await journal.open_run("nightly", str(job.with_name("nightly.toml")), "n", "c",
                                      "")).run_id
        await journal.finish_run(old, RunState.FINISHED)
        run = (await journal.open_run("migration", str(job), "j", "c", "")).run_id
        await journal.set_total(run, 12)
        for n in range(3):
            await journal.mark_started(run, _ref(n))
            await journal.mark_done(run, _ref(n), {"id": str(10000 + n)})
        await journal.mark_started(run, _ref(3, "globex"))
        await journal.mark_failed(run, _ref(3, "globex"), "HTTP 404",
                                  detail="Issue does not exist or you do not have permission")
        await journal.mark_failed(run, _ref(4, "globex"), "HTTP 404")
        await journal.mark_skipped(run, _ref(5), "user deactivated")
        await journal.mark_blocked(run, _ref(6), "context refused")
        await journal.mark_started(run, _ref(7, action=1))
        await journal.mark_uncertain(run, _ref(7, action=1), "timeout", detail="after 30s")
        await journal.finish_run(run, RunState.INTERRUPTED)
    return old, run


@pytest.fixture
def filled(target: JournalTarget, tmp_path: Path) -> tuple[JournalTarget, str, str]:
    """A journal with two runs: (its path or URL, older run, newer run)."""
    old, run = asyncio.run(_fill(target, tmp_path / "migration.toml"))
    return target, old, run


def test_status_lists_the_latest_runs(
    filled: tuple[JournalTarget, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Without RUN, status lists runs newest first with their state and counts."""
    path, old, run = filled
    assert main(["status", "--journal", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["RUN", "JOB", "STATE"]
    assert lines[1].startswith(run) and "migration" in lines[1] and "interrupted" in lines[1]
    assert lines[2].startswith(old) and "finished" in lines[2]
    header = lines[0].split()
    newest = dict(zip(header[-7:], lines[1].split()[-7:], strict=True))
    assert newest == {"done": "3", "failed": "2", "skipped": "1", "blocked": "1",
                      "uncertain": "1", "started": "0", "pending": "4"}


def test_status_of_one_run_counts_by_state_site_and_reason(
    filled: tuple[JournalTarget, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """With RUN, status shows that run's counts by state, per site and by reason (as text and
    as JSON)."""
    path, _, run = filled
    assert main(["status", run, "--journal", str(path)]) == 0
    text = capsys.readouterr().out
    assert f"run {run}: migration" in text
    assert "By site" in text and "globex" in text
    assert "HTTP 404" in text and "user deactivated" in text

    assert main(["status", run, "--journal", str(path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run"] == run and data["state"] == "interrupted"
    assert data["counts"]["pending"] == 4 and data["counts"]["done"] == 3
    assert data["by_site"] == {
        "acme": {"done": 3, "skipped": 1, "blocked": 1, "uncertain": 1},
        "globex": {"failed": 2},
    }
    assert {"state": "failed", "reason": "HTTP 404", "text": "HTTP 404",
            "count": 2} in data["by_reason"]


def test_report_json_lists_every_problem_item(
    filled: tuple[JournalTarget, str, str], tmp_path: Path
) -> None:
    """report --format json writes each failed, skipped, blocked and uncertain item with its
    row, account, site, action and reason; done items are not in it."""
    path, _, run = filled
    out = tmp_path / "report.json"
    assert main(["report", run, "--journal", str(path), "--format", "json",
                 "--output", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["run"] == run
    items = {(i["row"], i["action_index"]): i for i in data["items"]}
    assert set(items) == {("row-003", 0), ("row-004", 0), ("row-005", 0), ("row-006", 0),
                          ("row-007", 1)}
    first = items[("row-003", 0)]
    assert (first["state"], first["reason"], first["site"], first["account_id"],
            first["action"]) == ("failed", "HTTP 404", "globex", ACCOUNT.format(3), "comment.add")
    assert first["message"].startswith("Issue does not exist")
    assert items[("row-007", 1)]["state"] == "uncertain"


def test_report_csv_has_one_line_per_item(
    filled: tuple[JournalTarget, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """report --format csv prints a header and one row per problem item; --state narrows it."""
    path, _, run = filled
    assert main(["report", run, "--journal", str(path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sorted((r["row"], r["state"], r["reason"]) for r in rows) == [
        ("row-003", "failed", "HTTP 404"),
        ("row-004", "failed", "HTTP 404"),
        ("row-005", "skipped", "user deactivated"),
        ("row-006", "blocked", "context refused"),
        ("row-007", "uncertain", "timeout"),
    ]
    assert main(["report", run, "--journal", str(path), "--format", "csv",
                 "--state", "skipped"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["row"] for r in rows] == ["row-005"]


def test_unknown_run_or_journal_is_an_input_error(
    filled: tuple[JournalTarget, str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown run ID or a missing journal exits 2 with a message, and creates nothing."""
    path, _, _ = filled
    out = tmp_path / "never.json"
    assert main(["report", "r-20200101-000000", "--journal", str(path),
                 "--output", str(out)]) == 2
    assert "no run 'r-20200101-000000'" in capsys.readouterr().err
    assert not out.exists()
    missing = tmp_path / "missing.db"
    assert main(["status", "--journal", str(missing)]) == 2
    assert "no journal" in capsys.readouterr().err
    assert not missing.exists()


def test_the_journal_path_comes_from_the_config(
    filled: tuple[JournalTarget, str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--config FILE reads runner.journal from the config (a file relative to the config's
    folder, or a URL)."""
    path, _, run = filled
    example = Path(__file__).resolve().parents[2] / "config.example.toml"
    where = path if isinstance(path, str) else path.name
    text = example.read_text().replace('journal = "forge-runner.db"', f'journal = "{where}"')
    assert f'journal = "{where}"' in text
    config = tmp_path / "config.toml"
    config.write_text(text)
    assert main(["status", "--config", str(config)]) == 0
    assert run in capsys.readouterr().out


def test_report_csv_neutralises_formulas(
    target: JournalTarget, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Row keys and reasons a spreadsheet would run as formulas get a ' in front in CSV;
    JSON keeps them as they are."""
    path = target
    keys = ['=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", "\tx", "plain"]

    async def fill() -> str:
        async with open_journal(path) as journal:
            run = (await journal.open_run("m", str(tmp_path / "m.toml"), "j", "c", "")).run_id
            for n, key in enumerate(keys):
                ref = ItemRef(key, 0, "acme", ACCOUNT.format(n), "comment.add")
                await journal.mark_failed(run, ref, "=cmd|' /C calc'!A0" if n == 0 else "x")
            return run

    run = asyncio.run(fill())
    assert main(["report", run, "--journal", str(path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out, newline="")))
    assert sorted(r["row"] for r in rows) == sorted(
        k if k == "plain" else "'" + k for k in keys)
    assert {r["reason"] for r in rows} == {"'=cmd|' /C calc'!A0", "x"}
    assert main(["report", run, "--journal", str(path), "--format", "json"]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert sorted(i["row"] for i in items) == sorted(keys)
