"""Rows and sources refused by the check before anything is sent, through the real command."""

from __future__ import annotations

from pathlib import Path

from runner.sandbox.app import RunningSandbox
from tests.e2e.harness import Rehearsal, account

COMMENT = '[[actions]]\ntype = "comment.add"\nissue = "{issue}"\nbody = "{text}"\n'


async def test_a_comment_past_jiras_text_limit_is_refused(tmp_path: Path,
                                                          sandbox: RunningSandbox) -> None:
    """A comment body of 32,768 characters exits 2 naming the row, the limit and the length;
    one of 32,767 passes the check."""
    rehearsal = Rehearsal.start(tmp_path, sandbox)
    fits = {"legacy_id": "L1", "account_id": account(1), "issue": "MIG-1", "text": "x" * 32_767}
    job = rehearsal.write_job("long", [fits, {**fits, "legacy_id": "L2", "text": "y" * 32_768}],
                              COMMENT)
    done = await rehearsal.cli("plan", job)
    assert done.code == 2
    assert "line 3" in done.err
    assert "actions[0].body (comment.add): expected at most 32,767 characters " \
        "(Jira Cloud's limit for a text field), " \
        "found 32,768" in done.err
    job = rehearsal.write_job("fits", [fits], COMMENT)
    assert (await rehearsal.cli("plan", job)).code == 0


async def test_a_semicolon_csv_suggests_the_delimiter(tmp_path: Path,
                                                      sandbox: RunningSandbox) -> None:
    """A CSV separated by `;` read with `,` exits 2 suggesting `delimiter = ";"`; with it set,
    the job passes the check."""
    rehearsal = Rehearsal.start(tmp_path, sandbox)
    (tmp_path / "semi.csv").write_text(f"legacy_id;account_id;issue;text\nL1;{account(1)};"
                                       "MIG-1;hello\n")
    job = tmp_path / "semi.toml"
    job.write_text(f'name = "semi"\nsite = "acme"\n\n[source]\ncsv = "semi.csv"\n\n{COMMENT}')
    done = await rehearsal.cli("plan", job)
    assert done.code == 2
    assert "found one column 'legacy_id;account_id;issue;text'; if the file is separated by " \
        "';', set delimiter = \";\" in [source]" in done.err
    job.write_text(job.read_text().replace('csv = "semi.csv"',
                                           'csv = "semi.csv"\ndelimiter = ";"'))
    assert (await rehearsal.cli("plan", job)).code == 0
