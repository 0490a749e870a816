"""A job file -> ``Job``: which sites, where the rows come from, which actions run per row.

``load_job`` checks the file's structure against the config (sites exist, actions are known with
their parameters, every placeholder names a source column). ``check_rows`` then streams every
row once (account ID forms, sites, every action rendering) before anything is sent, keeping only
compact counts, so checking a million rows stays far under 200 MB. The format is documented in
jobs/README.md.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner.actions import Action, PythonAction, RenderError, build_action
from runner.config.configfile import Config
from runner.config.tables import Table, describe, excerpt
from runner.errors import JobError
from runner.jira.client import JiraRequest
from runner.job.accounts import account_id_problem
from runner.job.rowkeys import Repeat, RowKeys
from runner.job.sources import (
    ACCOUNT_COLUMN,
    SITE_COLUMN,
    CsvSource,
    InlineSource,
    JsonlSource,
    Row,
    RowShape,
    Source,
)
from runner.job.tally import HashTally

# What a row does after one of its actions failed: skip the rest (a migration's rows are
# wholes: a property saying "migrated" after its comment failed would be wrong), or go on.
ON_FAILURE = ("stop-row", "continue")

__all__ = ["ON_FAILURE", "Job", "Row", "RowCheck", "Source", "StoredSource", "check_rows",
           "item_key", "load_job", "parse_job"]


@dataclass(frozen=True)
class Job:
    path: Path
    name: str
    sites: tuple[str, ...]  # configured site names the job may touch
    site_weights: Mapping[str, float]  # share of workers per site (default 1.0)
    source: Source
    actions: tuple[Action | PythonAction, ...]
    fingerprint: str  # sha256 of the job file's bytes
    text: str  # the job file's text (the journal keeps it to say what changed)
    row_key: str | None = None  # the column giving stable row keys, if any
    environment: str | None = None  # the environment the job declared, if it did
    allow_empty: bool = False  # a run that does nothing (no rows, every item skipped) is fine
    # After a row's action fails or is uncertain: "stop-row" skips the row's later actions,
    # "continue" runs them anyway.
    on_failure: str = "stop-row"


def item_key(row: Row, action_index: int) -> str:
    """An item's stable name: ``"{row key}#{action index}"``."""
    return f"{row.key}#{action_index}"


def load_job(path: str | Path, config: Config) -> Job:
    """Read and check a job file against ``config``. JobError names the file and key path."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JobError("(file)", f"expected a readable job file, found {exc.strerror or exc}",
                       file=path) from None
    return parse_job(data, path, config)


def parse_job(data: bytes, path: Path, config: Config, *,
              stored: Sequence[str] | None = None) -> Job:
    """Check a job file's bytes (read from ``path``) against ``config``. With ``stored`` (the
    source's columns, as a journal keeps them for a run whose rows it holds) the job's source
    is not opened: its rows come from the journal (``StoredSource``)."""
    try:
        text = data.decode("utf-8")
        doc = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise JobError("(file)", f"expected valid TOML, found {exc}", file=path) from None

    def error(key: str, expected: str, found: str) -> JobError:
        return JobError(key, f"expected {expected}, found {found}", file=path)

    root = Table(doc, "", error)
    name: str = root.nonempty("name", path.stem, expected="the job's name")
    root.string("description", "")
    allow_empty: bool = root.boolean("allow_empty", False)
    on_failure: str = root.string("on_failure", "stop-row")
    if on_failure not in ON_FAILURE:
        raise error("on_failure", " or ".join(repr(c) for c in ON_FAILURE), describe(on_failure))
    sites = _sites(root, config)
    environment = _environment(root, config, sites)
    row_key: str | None = root.nonempty("row_key", None, expected="a column name")
    shape = RowShape(row_key=row_key, default_site=sites[0] if len(sites) == 1 else None)
    try:
        table = root.table("source", required=True)
        source = (_source(table, path.parent, shape) if stored is None
                  else StoredSource(str(path), tuple(stored)))
    except JobError as exc:
        if exc.file is not None:
            raise
        raise JobError(exc.where, exc.problem, file=path) from None
    columns = frozenset(source.columns)
    if ACCOUNT_COLUMN not in columns:
        raise error("source", f"a source with an {ACCOUNT_COLUMN} column",
                    f"the columns {excerpt(', '.join(source.columns)) or '(none)'}")
    if row_key is not None and row_key not in columns:
        raise error("row_key", f"one of the source's columns "
                    f"({excerpt(', '.join(source.columns))})",
                    repr(row_key))
    if len(sites) > 1 and SITE_COLUMN not in columns:
        raise error("sites", f"a '{SITE_COLUMN}' column in the source saying each row's site "
                    "(the job names several sites)", "no such column")
    weights = _weights(root.table("weights"), sites)
    tables = root.table_list("actions")
    if not tables:
        raise error("actions", "at least one [[actions]] table", "none")
    actions = tuple(build_action(i, t, path.parent, columns) for i, t in enumerate(tables))
    root.done()
    return Job(path, name, sites, weights, source, actions, hashlib.sha256(data).hexdigest(),
               text, row_key, environment, allow_empty, on_failure)


class StoredSource:
    """A run's source whose rows the journal holds: only its columns are known here."""

    def __init__(self, description: str, columns: tuple[str, ...]):
        self.description = description
        self.columns = columns

    def rows(self) -> Iterator[Row]:
        raise RuntimeError("a stored run's rows are read from its journal, not its source")


def _sites(root: Table, config: Config) -> tuple[str, ...]:
    known = ", ".join(sorted(config.sites)) or "none are configured"
    expected = f"a site configured in {config.path} ({known})"
    if ("site" in root) == ("sites" in root):
        raise root.error("site", "exactly one of site or sites",
                         "both" if "site" in root else "neither")
    if "site" in root:
        site: str = root.nonempty("site", expected="a site's name")
        if site not in config.sites:
            raise root.error("site", expected, repr(site))
        return (site,)
    sites: tuple[str, ...] = root.strings("sites", nonempty=True)
    for i, site in enumerate(sites):
        if site not in config.sites:
            raise root.make_error(f"sites[{i}]", expected, repr(site))
        if site in sites[:i]:
            raise root.make_error(f"sites[{i}]", "each site once", f"{site!r} again")
    return sites


def _environment(root: Table, config: Config, sites: Sequence[str]) -> str | None:
    env: str | None = root.nonempty("environment", None, expected="an environment's name")
    if env is None:
        return None
    if env not in config.environments:
        known = ", ".join(sorted(config.environments)) or "none are configured"
        raise root.error("environment", f"an environment configured in {config.path} ({known})",
                         repr(env))
    for site in sites:
        if config.sites[site].environment != env:
            raise root.error("environment", f"the environment of site {site!r} "
                             f"({config.sites[site].environment!r})", repr(env))
    return env


def _source(t: Table, base: Path, shape: RowShape) -> Source:
    kinds = [k for k in ("csv", "jsonl", "rows") if k in t]
    if len(kinds) != 1:
        raise t.make_error(t.path, "exactly one of csv, jsonl or rows",
                           " and ".join(kinds) or "none of them")
    source: Source
    if "rows" in t:
        records = [r.data for r in t.table_list("rows")]
        source = InlineSource(records, shape, description=f"{t.path}.rows")
    elif "csv" in t:
        file = base / t.nonempty("csv", expected="a CSV file's path")
        delimiter: str = t.string("delimiter", ",")
        if len(delimiter) != 1:
            raise t.error("delimiter", "one character", describe(delimiter))
        source = CsvSource(file, shape, delimiter=delimiter,
                           encoding=t.nonempty("encoding", "utf-8-sig"))
    else:
        file = base / t.nonempty("jsonl", expected="a JSONL file's path")
        columns = t.strings("columns", None, nonempty=True)
        source = JsonlSource(file, shape, columns=columns,
                             encoding=t.nonempty("encoding", "utf-8"))
    t.done()
    return source


def _weights(t: Table, sites: Sequence[str]) -> Mapping[str, float]:
    weights: dict[str, float] = {}
    for site in list(t.keys()):
        if site not in sites:
            raise t.error(site, f"one of the job's sites ({', '.join(sites)})", "another site")
        weights[site] = t.number(site, positive=True)
    t.done()
    return weights


# -- checking every row --------------------------------------------------------------------


@dataclass(frozen=True)
class RowCheck:
    """What streaming every row found: counts only."""

    rows: int
    items: int
    users: int  # distinct account IDs
    site_rows: Mapping[str, int] = field(default_factory=dict)
    site_users: Mapping[str, int] = field(default_factory=dict)  # distinct per site: mints


# Called once per row with the row and each action's request (None for Python actions).
RowVisitor = Callable[[Row, Sequence[JiraRequest | None]], None]


def check_rows(job: Job, config: Config, visit: RowVisitor | None = None) -> RowCheck:
    """Stream every row once; JobError names the source and line and what was expected."""
    site_users = {site: HashTally() for site in job.sites}
    # One site: its distinct users are the job's; don't count them twice.
    users = HashTally() if len(job.sites) > 1 else site_users[job.sites[0]]
    site_rows = dict.fromkeys(job.sites, 0)
    if job.row_key:
        with RowKeys() as keys:
            rows, items = _stream_rows(job, visit, site_users, users, site_rows, keys)
    else:
        rows, items = _stream_rows(job, visit, site_users, users, site_rows, None)
    return RowCheck(rows, items, users.distinct(), site_rows,
                    {site: tally.distinct() for site, tally in site_users.items()})


def _stream_rows(job: Job, visit: RowVisitor | None, site_users: Mapping[str, HashTally],
                 users: HashTally, site_rows: dict[str, int], keys: RowKeys | None
                 ) -> tuple[int, int]:
    rows = items = 0
    for row in job.source.rows():
        _check_row(job, row)
        requests: list[JiraRequest | None] = []
        for action in job.actions:
            if isinstance(action, PythonAction):
                requests.append(None)
                continue
            try:
                requests.append(action.render(row, item_key(row, action.index)))
            except RenderError as exc:
                raise JobError(row.where, f"actions[{action.index}].{exc.param} "
                               f"({action.name}): {exc.problem}", file=job.path) from None
        if visit is not None:
            visit(row, requests)
        rows += 1
        items += len(job.actions)
        site_rows[row.site] += 1
        site_users[row.site].add(row.account_id)
        if users is not site_users[row.site]:
            users.add(row.account_id)
        if keys is not None:
            _no_repeat(job, keys.add(row.key, row.where))
    if keys is not None:
        _no_repeat(job, keys.finish())
    return rows, items


def _check_row(job: Job, row: Row) -> None:
    def fail(problem: str) -> JobError:
        return JobError(row.where, problem, file=job.path)

    problem = account_id_problem(row.account_id)
    if problem:
        raise fail(f"{ACCOUNT_COLUMN}: {problem}")
    if row.site not in job.sites:
        found = repr(row.site) if row.site else "an empty value"
        raise fail(f"{SITE_COLUMN}: expected one of the job's sites ({', '.join(job.sites)}), "
                   f"found {found}")
    if job.row_key and not row.key.strip():
        raise fail(f"{job.row_key}: expected a row key (the job's row_key column), found an "
                   "empty value")


def _no_repeat(job: Job, repeat: Repeat | None) -> None:
    """Two rows with one key would share items: the second would never run."""
    if repeat is not None:
        raise JobError(repeat.where, f"{job.row_key}: expected a key no other row has, found "
                       f"{repeat.key!r} again (first at {repeat.first})", file=job.path)

