"""Row sources: CSV, JSONL and inline rows, streamed (runner.sources)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from runner.errors import JobError
from runner.job.sources import CsvSource, InlineSource, JsonlSource, RowShape

ACCOUNT = "5b10a2844c20165700ede21g"


def test_csv_rows_carry_fields_keys_and_sites(tmp_path: Path) -> None:
    """Each CSV record becomes a Row: every column as a string, keyed by its line."""
    path = tmp_path / "rows.csv"
    path.write_text(f"account_id,issue\n{ACCOUNT},MIG-1\n\n{ACCOUNT},MIG-2\n")
    source = CsvSource(path, RowShape(default_site="acme"))
    assert source.columns == ("account_id", "issue")
    rows = list(source.rows())
    assert [(r.index, r.key, r.site, r.account_id) for r in rows] == [
        (0, "line-2", "acme", ACCOUNT),
        (1, "line-4", "acme", ACCOUNT),
    ]
    assert rows[1].fields == {"account_id": ACCOUNT, "issue": "MIG-2"}
    assert rows[1].where == f"{path} line 4"


def test_csv_line_of_a_multiline_record_is_where_it_starts(tmp_path: Path) -> None:
    """A quoted value spanning lines does not shift the next records' line numbers."""
    path = tmp_path / "rows.csv"
    path.write_text(f'account_id,note\n{ACCOUNT},"one\ntwo"\n{ACCOUNT},three\n')
    rows = list(CsvSource(path, RowShape()).rows())
    assert [r.key for r in rows] == ["line-2", "line-4"]
    assert rows[0].fields["note"] == "one\ntwo"


def test_row_key_and_site_columns_are_used(tmp_path: Path) -> None:
    """With a row_key column the key is its value; a site column overrides the default."""
    path = tmp_path / "rows.csv"
    path.write_text(f"legacy,account_id,site\nL-7,{ACCOUNT},globex\n")
    (row,) = CsvSource(path, RowShape(row_key="legacy", default_site="acme")).rows()
    assert (row.key, row.site) == ("L-7", "globex")


def test_rows_start_again_on_each_call(tmp_path: Path) -> None:
    """rows() can be iterated more than once, from the beginning each time."""
    path = tmp_path / "rows.csv"
    path.write_text(f"account_id\n{ACCOUNT}\n{ACCOUNT}\n")
    source = CsvSource(path, RowShape())
    assert len(list(source.rows())) == len(list(source.rows())) == 2


@pytest.mark.parametrize(
    ("text", "where", "said"),
    [
        ("", "line 1", "found an empty file"),
        ("account_id,a,a\n", "line 1", "column 'a' appears twice"),
        ("account_id,,x\n", "line 1", "column 2 has no name"),
    ],
)
def test_bad_csv_headers_are_named(tmp_path: Path, text: str, where: str, said: str) -> None:
    """A CSV without a usable header is refused at load, naming line 1."""
    path = tmp_path / "rows.csv"
    path.write_text(text)
    with pytest.raises(JobError, match=said) as info:
        CsvSource(path, RowShape())
    assert info.value.where == f"{path} {where}"


def test_a_record_with_the_wrong_number_of_fields_is_named(tmp_path: Path) -> None:
    """A short or long record fails with its line and the expected field count."""
    path = tmp_path / "rows.csv"
    path.write_text(f"account_id,issue\n{ACCOUNT},MIG-1\n{ACCOUNT}\n")
    rows = CsvSource(path, RowShape()).rows()
    next(rows)
    with pytest.raises(JobError, match="expected 2 fields") as info:
        next(rows)
    assert info.value.where == f"{path} line 3"


@pytest.mark.slow
def test_csv_is_streamed_not_loaded(tmp_path: Path) -> None:
    """Reading 200,000 rows keeps the traced memory peak under 2 MB (the file is ~15 MB)."""
    path = tmp_path / "big.csv"
    note = "a note of some length, " * 2
    with path.open("w", newline="") as f:
        f.write("account_id,issue,note\n")
        f.writelines(f'5ca1ab1e{i:016x},MIG-{i % 97},"{note}"\n' for i in range(200_000))
    assert path.stat().st_size > 10_000_000
    source = CsvSource(path, RowShape(default_site="acme"))
    tracemalloc.start()
    try:
        count = sum(1 for _ in source.rows())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_000
    assert peak < 2_000_000


def test_jsonl_values_become_strings(tmp_path: Path) -> None:
    """JSON numbers, booleans, null and nested values reach templates as text."""
    path = tmp_path / "rows.jsonl"
    record = {"account_id": ACCOUNT, "n": 12, "f": 1.5, "ok": True, "none": None,
              "tags": ["a", "b"], "ü": "é"}
    path.write_text(json.dumps(record) + "\n\n" + json.dumps({"account_id": ACCOUNT}) + "\n")
    source = JsonlSource(path, RowShape())
    assert source.columns == ("account_id", "n", "f", "ok", "none", "tags", "ü")
    first, second = source.rows()
    assert first.fields == {"account_id": ACCOUNT, "n": "12", "f": "1.5", "ok": "true",
                            "none": "", "tags": '["a","b"]', "ü": "é"}
    assert second.key == "line-3"


def test_jsonl_declared_columns_win_over_the_first_record(tmp_path: Path) -> None:
    """`columns` declares what later records may hold, without reading them."""
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"account_id": ACCOUNT}) + "\n")
    assert JsonlSource(path, RowShape(), columns=["account_id", "issue"]).columns == (
        "account_id", "issue")


@pytest.mark.parametrize(("line", "said"), [("[1, 2]", "found list"), ("{oops", "invalid JSON")])
def test_bad_jsonl_lines_are_named(tmp_path: Path, line: str, said: str) -> None:
    """A line that is not a JSON object fails with its line number."""
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"account_id": ACCOUNT}) + "\n" + line + "\n")
    with pytest.raises(JobError, match=said) as info:
        list(JsonlSource(path, RowShape()).rows())
    assert info.value.where == f"{path} line 2"


def test_inline_rows_are_keyed_by_position() -> None:
    """Inline rows get keys row-1, row-2 and the union of their keys as columns."""
    source = InlineSource([{"account_id": ACCOUNT, "a": 1}, {"account_id": ACCOUNT, "b": "x"}],
                          RowShape(default_site="acme"))
    assert source.columns == ("account_id", "a", "b")
    rows = list(source.rows())
    assert [r.key for r in rows] == ["row-1", "row-2"]
    assert rows[0].fields["a"] == "1"
    assert rows[1].where == "source.rows[1]"
