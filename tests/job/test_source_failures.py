"""A source file that can't be read as rows stops `forge-runner plan` with exit 2 and one line
naming the true line, never a traceback (runner.job.sources through the real command)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clirun import example_folder, forge_runner, one_line

ACTION = '[[actions]]\ntype = "comment.add"\nissue = "MIG-1"\nbody = "x"\n'


def _job(folder: Path, source: str) -> Path:
    kind = "csv" if source.endswith(".csv") else "jsonl"
    job = folder / "t.toml"
    job.write_text(f'name = "t"\nsite = "acme"\n[source]\n{kind} = "{source}"\n{ACTION}')
    return job


def _account(n: int) -> str:
    return f"5ca1ab1e{n:016x}"


def _bad_byte_on(lines: list[bytes], line: int) -> bytes:
    """``lines`` as a file with byte 0xff at the end of line ``line`` (1-based)."""
    lines = list(lines)
    lines[line - 1] += b"\xff"
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize("bad_line", [3, 3002])
def test_invalid_utf8_in_a_csv_names_its_true_line(tmp_path: Path, bad_line: int) -> None:
    """Invalid UTF-8 in a CSV, in its first 8 KB or far after, exits 2 naming the line the byte
    is on (not the line the decoder had read up to)."""
    config = example_folder(tmp_path)
    lines = [b"account_id,issue"] + [f"{_account(n)},MIG-1".encode() for n in range(3100)]
    (tmp_path / "rows.csv").write_bytes(_bad_byte_on(lines, bad_line))
    result = forge_runner("plan", _job(tmp_path, "rows.csv"), "--config", config, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert f"rows.csv line {bad_line}: expected UTF-8 text, found byte 0xff" in line
    assert "save the file as UTF-8" in line


def test_invalid_utf8_in_a_jsonl_names_its_true_line(tmp_path: Path) -> None:
    """Invalid UTF-8 far into a JSONL file exits 2 naming the line the byte is on."""
    config = example_folder(tmp_path)
    lines = [json.dumps({"account_id": _account(n)}).encode() for n in range(3100)]
    (tmp_path / "rows.jsonl").write_bytes(_bad_byte_on(lines, 3002))
    result = forge_runner("plan", _job(tmp_path, "rows.jsonl"), "--config", config,
                          cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "rows.jsonl line 3002: expected UTF-8 text, found byte 0xff" in one_line(result.stderr)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply to read"),
        ("9" * 5_000, "an integer too long to read (Python reads up to 4,300 digits); quote it"),
    ],
    ids=["nested-100000-deep", "integer-of-5000-digits"],
)
def test_a_jsonl_record_python_cant_read_names_its_line(tmp_path: Path, value: str,
                                                        said: str) -> None:
    """A JSONL record nested past Python's recursion limit, or holding an integer of more
    than 4,300 digits, exits 2 naming its line and what to do."""
    config = example_folder(tmp_path)
    good = json.dumps({"account_id": _account(1)})
    (tmp_path / "rows.jsonl").write_text(f'{good}\n{good}\n{{"a": {value}}}\n')
    result = forge_runner("plan", _job(tmp_path, "rows.jsonl"), "--config", config,
                          cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert "rows.jsonl line 3: expected a JSON object, found " in line
    assert said in line
