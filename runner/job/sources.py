"""Where a job's rows come from: a CSV file, a JSONL file, or rows written inline in the job.

Files are streamed: ``rows()`` opens the file and yields one ``Row`` at a time, so a job of a
million rows needs no more memory than one of a thousand (design principle 7). Each call starts
again from the beginning. ``columns`` is known from the header (CSV), the declared ``columns``
or the first record (JSONL), without reading the rest.

Every value is a string: JSON and TOML numbers and booleans are written as JSON writes them
(``12``, ``true``), null as ``""``, tables and lists as compact JSON text.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Protocol

from runner.config.tables import excerpt
from runner.errors import JobError

ACCOUNT_COLUMN = "account_id"
SITE_COLUMN = "site"


@dataclass(frozen=True)
class Row:
    """One record of the source."""

    index: int  # 0-based position in the source
    key: str  # the row_key column's value, else the position ("line-17"); stable across runs
    account_id: str
    site: str  # the row's `site` column if present, else the job's only site ("" if neither)
    fields: Mapping[str, str]  # every column, account_id included
    line: int = 0  # the line it starts on, in a file source; 0 for inline rows
    origin: str = ""  # the source's description

    @property
    def where(self) -> str:
        """For errors: ``jobs/data/users.csv line 17`` or ``source.rows[3]``."""
        if self.line:
            return f"{self.origin} line {self.line}"
        return f"{self.origin}[{self.index}]" if self.origin else f"row {self.index + 1}"


class Source(Protocol):
    description: str  # "jobs/data/users.csv"
    columns: tuple[str, ...]

    def rows(self) -> Iterator[Row]: ...


@dataclass(frozen=True)
class RowShape:
    """How a record becomes a Row: which column keys it, which site it belongs to."""

    row_key: str | None = None
    default_site: str | None = None  # the job's only site

    def make(self, index: int, line: int, origin: str, fields: Mapping[str, str]) -> Row:
        if self.row_key:
            key = fields.get(self.row_key, "")
        else:
            key = f"line-{line}" if line else f"row-{index + 1}"
        site = fields.get(SITE_COLUMN) or self.default_site or ""
        return Row(index, key, fields.get(ACCOUNT_COLUMN, ""), site, fields, line, origin)


def text_value(value: Any) -> str:
    """A JSON or TOML value as the string a template sees."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def undecodable(path: Path, encoding: str, description: str) -> JobError:
    """The error for a file that is not ``encoding`` text, naming the line of its first bad byte.

    A text reader decodes ahead of what it has handed out (8 KB at a time), so the line the
    reader had reached when decoding failed is not the bad byte's line: read it again as bytes,
    line by line, counting the lines decoded before the one that fails.
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    name = "UTF-8" if codecs.lookup(encoding).name.startswith("utf-8") else encoding
    line = 1
    try:
        with path.open("rb") as f:
            for raw in f:
                try:
                    decoder.decode(raw)
                except UnicodeDecodeError as exc:
                    byte = raw[exc.start:exc.start + 1].hex()
                    return JobError(f"{description} line {line}", f"expected {name} text, "
                                    f"found byte 0x{byte} ({exc.reason}); save the file as "
                                    f"{name}")
                line += raw.count(b"\n")
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:  # the file ends inside a character
        return JobError(f"{description} line {line}", f"expected {name} text, found a "
                        f"truncated character at the end ({exc.reason})")
    except OSError as exc:
        return JobError(description, f"expected a readable file, found {exc.strerror or exc}")
    return JobError(description, f"expected {name} text")  # changed while read again


def _columns_problem(columns: Sequence[str]) -> str | None:
    seen: set[str] = set()
    for i, name in enumerate(columns):
        if not name.strip():
            return f"column {i + 1} has no name"
        if name in seen:
            return f"column {excerpt(name)!r} appears twice"
        seen.add(name)
    return None


class CsvSource:
    """A CSV file with a header line. Records may span lines (quoted newlines); a record's line
    is the line it starts on."""

    def __init__(self, path: Path, shape: RowShape, *, delimiter: str = ",",
                 encoding: str = "utf-8-sig"):
        self.path = path
        self.description = str(path)
        self.shape = shape
        self.delimiter = delimiter
        self.encoding = encoding
        with self._open() as f:
            try:
                header = next(csv.reader(f, delimiter=delimiter), None)
            except UnicodeDecodeError:
                raise undecodable(path, encoding, self.description) from None
            except csv.Error as exc:
                raise JobError(f"{path} line 1", f"expected a CSV header line, found {exc}"
                               ) from None
        if header is None:
            raise JobError(f"{path} line 1", "expected a header line naming the columns, "
                           "found an empty file")
        if len(header) == 1:
            # A file separated by another character reads as one column named by the whole line.
            other = next((c for c in (";", "\t", "|") if c != delimiter and c in header[0]), None)
            if other is not None:
                shown = "tab" if other == "\t" else repr(other)
                raise JobError(f"{path} line 1", f"expected columns separated by {delimiter!r}, "
                               f"found one column {excerpt(header[0])!r}; if the file is "
                               f"separated by {shown}, set delimiter = {json.dumps(other)} in "
                               "[source]")
        problem = _columns_problem(header)
        if problem:
            raise JobError(f"{path} line 1", f"expected a header of distinct column names, "
                           f"found that {problem}")
        self.columns: tuple[str, ...] = tuple(header)

    def _open(self) -> Any:
        try:
            return self.path.open(newline="", encoding=self.encoding)
        except OSError as exc:
            raise JobError(str(self.path), f"expected a readable CSV file, found "
                           f"{exc.strerror or exc}") from None

    def rows(self) -> Iterator[Row]:
        with self._open() as f:
            reader = csv.reader(f, delimiter=self.delimiter)
            try:
                next(reader)
                index = 0
                while True:
                    line = reader.line_num + 1
                    record = next(reader, None)
                    if record is None:
                        return
                    if not record:  # a blank line
                        continue
                    if len(record) != len(self.columns):
                        raise JobError(f"{self.description} line {line}",
                                       f"expected {len(self.columns)} fields (one per header "
                                       f"column), found {len(record)}")
                    fields = dict(zip(self.columns, record, strict=True))
                    yield self.shape.make(index, line, self.description, fields)
                    index += 1
            except UnicodeDecodeError:
                raise undecodable(self.path, self.encoding, self.description) from None
            except csv.Error as exc:
                raise JobError(f"{self.description} line {reader.line_num}",
                               f"expected CSV text, found {exc}") from None


class JsonlSource:
    """One JSON object per line; blank lines are skipped."""

    def __init__(self, path: Path, shape: RowShape, *, columns: Sequence[str] | None = None,
                 encoding: str = "utf-8"):
        self.path = path
        self.description = str(path)
        self.shape = shape
        self.encoding = encoding
        if columns is None:
            with closing(self._records()) as records:
                first = next(records, None)
            columns = tuple(first[1]) if first is not None else ()
        self.columns: tuple[str, ...] = tuple(columns)

    def _records(self) -> Generator[tuple[int, dict[str, str]], None, None]:
        try:
            f = self.path.open(encoding=self.encoding)
        except OSError as exc:
            raise JobError(str(self.path), f"expected a readable JSONL file, found "
                           f"{exc.strerror or exc}") from None
        with f:
            line = 0
            try:
                for line, text in enumerate(f, start=1):
                    if not text.strip():
                        continue
                    where = f"{self.description} line {line}"
                    yield line, _record(text, where)
            except UnicodeDecodeError:
                raise undecodable(self.path, self.encoding, self.description) from None

    def rows(self) -> Iterator[Row]:
        for index, (line, fields) in enumerate(self._records()):
            yield self.shape.make(index, line, self.description, fields)


def _record(text: str, where: str) -> dict[str, str]:
    """One JSONL line as a row's fields."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobError(where, f"expected a JSON object, found invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise JobError(where, "expected a JSON object, found one nested too deeply to "
                       "read") from None
    except ValueError:  # the one other refusal: an integer of more than 4,300 digits
        raise JobError(where, "expected a JSON object, found an integer too long to read "
                       "(Python reads up to 4,300 digits); quote it as a string") from None
    if not isinstance(record, dict):
        raise JobError(where, f"expected a JSON object, found {type(record).__name__}")
    try:
        return {str(k): text_value(v) for k, v in record.items()}
    except RecursionError:  # read, but too deep to write back as a field's JSON text
        raise JobError(where, "expected a JSON object, found one nested too deeply to "
                       "use") from None


class InlineSource:
    """Rows written in the job file itself (``[[source.rows]]``): for small jobs and tests."""

    def __init__(self, records: Sequence[Mapping[str, Any]], shape: RowShape,
                 description: str = "source.rows"):
        self.description = description
        self.shape = shape
        self._records = [{str(k): text_value(v) for k, v in r.items()} for r in records]
        columns: dict[str, None] = {}
        for record in self._records:
            columns.update(dict.fromkeys(record))
        self.columns: tuple[str, ...] = tuple(columns)

    def rows(self) -> Iterator[Row]:
        for index, fields in enumerate(self._records):
            yield self.shape.make(index, 0, self.description, fields)
