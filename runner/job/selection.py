"""A trial run's rows: the first N of the source (``--limit``), or the rows with given keys
(``--only``), or both (the first N of those).

A trial is a run of its own, never mixed with the job's full run: its runs are matched by the
job's path with the selection written after it (``/srv/jobs/m.toml (trial: --limit 5)``), so a
later full run still does every row, and the same trial run again finds its own finished run
and says "nothing to do". The journal stores that identity as the run's job path; ``resume`` and
``retry`` read the selection back from it.

Selected rows are filtered while the source streams: memory does not grow with the source.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path

from runner.errors import InputError
from runner.job.jobfile import Job
from runner.job.sources import Row, Source

_MARK = " (trial: "


@dataclass(frozen=True)
class Selection:
    """Which rows a run works on; the default, nothing given, is every row."""

    limit: int | None = None
    only: tuple[str, ...] = ()  # row keys, distinct, in the order given

    @classmethod
    def of(cls, limit: int | None, only: Sequence[str] | None) -> Selection:
        keys: list[str] = []
        for group in only or ():
            keys += [k.strip() for k in group.split(",") if k.strip()]
        if only and not keys:
            raise InputError("--only: give one or more row keys, separated by commas")
        return cls(limit, tuple(dict.fromkeys(keys)))

    @property
    def trial(self) -> bool:
        return self.limit is not None or bool(self.only)

    def describe(self) -> str:
        """As the options are written: ``--limit 5 --only LEG-1,LEG-2``."""
        parts = []
        if self.limit is not None:
            parts.append(f"--limit {self.limit}")
        if self.only:
            parts.append(f"--only {','.join(self.only)}")
        return " ".join(parts)

    def identity(self, job_path: Path) -> str:
        """What the journal matches this run's runs by: the job's resolved path, and for a
        trial the selection after it."""
        path = str(Path(job_path).resolve())
        return f"{path}{_MARK}{self.describe()})" if self.trial else path

    def apply(self, job: Job) -> Job:
        """``job`` over the selected rows only, named as a trial when it is one."""
        if not self.trial:
            return job
        return replace(job, name=f"{job.name} (trial: {self.describe()})",
                       source=SelectedSource(job.source, self))


def from_identity(identity: str) -> tuple[Path, Selection]:
    """The job path and the selection of a run's stored job path (see ``identity``)."""
    path, mark, rest = identity.rpartition(_MARK)
    if not mark or not rest.endswith(")"):
        return Path(identity), Selection()
    limit: int | None = None
    only: tuple[str, ...] = ()
    for part in rest[:-1].split(" --"):
        name, _, value = part.removeprefix("--").partition(" ")
        if name == "limit" and value.isdigit():
            limit = int(value)
        elif name == "only":
            only = tuple(value.split(","))
        else:  # not one of ours: a path that merely looks like one
            return Path(identity), Selection()
    return Path(path), Selection(limit, only)


class SelectedSource:
    """A source's rows as a selection picks them, streamed."""

    def __init__(self, inner: Source, selection: Selection) -> None:
        self.inner = inner
        self.selection = selection
        self.description = inner.description
        self.columns = inner.columns

    def rows(self) -> Iterator[Row]:
        rows = self.inner.rows()
        if self.selection.only:
            wanted = frozenset(self.selection.only)
            rows = (row for row in rows if row.key in wanted)
        if self.selection.limit is not None:
            rows = islice(rows, self.selection.limit)
        return rows


def missing_keys(job: Job, selection: Selection, found: int) -> None:
    """Refuse (exit 2) an ``--only`` naming keys no row has, given the ``found`` rows that the
    check counted: the source is read again only when some are missing, to name them."""
    if not selection.only or found >= len(selection.only):
        return
    source = job.source.inner if isinstance(job.source, SelectedSource) else job.source
    wanted = set(selection.only)
    for row in source.rows():
        wanted.discard(row.key)
        if not wanted:
            return
    missing = [k for k in selection.only if k in wanted]
    keys = (f"the values of its row_key column {job.row_key!r}" if job.row_key
            else "row positions such as line-17 (set row_key for keys that last)")
    raise InputError(f"--only: no row of {source.description} has the key "
                     f"{', '.join(missing)}; a row's key is {keys}")
