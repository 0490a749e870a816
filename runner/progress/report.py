"""The JSON report of a run (``forge-runner run JOB --report FILE``).

Schema ``forge-runner.report/1``; every string in it has passed through ``runner.logs.redact``::

    {
      "schema": "forge-runner.report/1",
      "run_id": str, "job": str, "config": str | null, "dry_run": bool, "exit_code": int | null,
      "timings": {
        "started_at": ISO 8601 UTC, "ended_at": ISO 8601 UTC | null, "duration_s": float,
        "lower_bound_s": float | null,          # shortest duration the budgets allow (plan)
        "duration_over_lower_bound": float | null
      },
      "counts": {"total": int | null, "finished": int,
                 "done": int, "failed": int, "skipped": int, "blocked": int, "uncertain": int},
      "sites": {SITE: {"done": int, "failed": int, ...}},
      "mints": {
        "total": int,
        "buckets": {BUCKET: {"used": int, "limit": int | null, "window_s": float | null}},
        "users_refused": {REASON: int},
        "blocked_environments": {ENVIRONMENT: MESSAGE}
      },
      "rate_limits": {"total": int, "by_scope": [{"kind": str, "reason": str, "count": int}]},
      "retries": [{"kind": "mint" | "jira", "reason": str, "count": int}],
      "pauses": {"total": int, "by_scope": [{"kind", "reason", "count"}],
                 "active_at_end": [{"scope": str, "reason": str, "until": ISO 8601 | null}]},
      "jira_calls": {"2xx": int, "4xx": int, ...},
      "failures_by_reason": [{"state": str, "reason": str, "count": int}],   # commonest first
      "items": [{"state": str, "site": str, "reason": str, "reason_text": str,
                 "message": str, "target": str, "status": int | null, ...}, ...]
    }

``items`` lists each failed, skipped, blocked or uncertain item the caller passes, with the
fields of whatever record it is (the journal's ``ItemRecord``: row_key, action_index, action,
state, attempts, reason, detail, result, site, account_id...; or a ``ReportItem``). They are
streamed (``write_report_async`` reads ``journal.records(run_id)`` as it writes): the report
never holds them all. The file is written beside its final
path and renamed into place, so a reader never sees half a report.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from runner.aio import in_thread
from runner.errors import InputError
from runner.journal.reasons import report_fields
from runner.logs.redact import redact_value
from runner.progress.stats import RunStats

SCHEMA = "forge-runner.report/1"


@dataclass(frozen=True)
class RunInfo:
    """What the report says about the run itself (the counts come from ``RunStats``)."""

    run_id: str
    job: str
    config: str | None = None
    dry_run: bool = False
    exit_code: int | None = None
    # The shortest duration the budgets allow, from the plan, when it was computed.
    lower_bound_s: float | None = None


@dataclass(frozen=True)
class ReportItem:
    """One item that did not end done: ``state`` is failed, skipped, blocked or uncertain.

    The journal's ``ItemRecord`` (or any dataclass or mapping) may be passed instead."""

    state: str
    site: str
    account: str
    row: int | str
    action: str
    reason: str
    detail: Mapping[str, Any] | None = field(default=None)


def _iso(posix: float | None) -> str | None:
    if posix is None:
        return None
    return datetime.fromtimestamp(posix, UTC).isoformat().replace("+00:00", "Z")


def _ranked(counter: Mapping[tuple[str, str], int], first: str = "kind") -> list[dict[str, Any]]:
    order = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{first: a, "reason": b, "count": n} for (a, b), n in order]


def report_head(stats: RunStats, run_info: RunInfo) -> dict[str, Any]:
    """Everything in the report but ``items``, as a dict (not yet redacted)."""
    duration = stats.elapsed_s()
    bound = run_info.lower_bound_s
    buckets = {
        bucket: {
            "used": stats.mints[bucket],
            "limit": stats.budgets[bucket].limit if bucket in stats.budgets else None,
            "window_s": stats.budgets[bucket].window_s if bucket in stats.budgets else None,
        }
        for bucket in sorted(set(stats.mints) | set(stats.budgets))
    }
    return {
        "schema": SCHEMA,
        "run_id": run_info.run_id,
        "job": run_info.job,
        "config": run_info.config,
        "dry_run": run_info.dry_run,
        "exit_code": run_info.exit_code,
        "timings": {
            "started_at": _iso(stats.started_at),
            "ended_at": _iso(stats.ended_at),
            "duration_s": round(duration, 3),
            "lower_bound_s": bound,
            "duration_over_lower_bound": round(duration / bound, 3) if bound else None,
        },
        "counts": {"total": stats.total, "finished": stats.finished, **stats.counts.as_dict()},
        "sites": {site: counts.as_dict() for site, counts in sorted(stats.sites.items())},
        "mints": {
            "total": sum(stats.mints.values()),
            "buckets": buckets,
            "users_refused": dict(stats.refused_users.most_common()),
            "blocked_environments": dict(sorted(stats.blocked_environments.items())),
        },
        "rate_limits": {
            "total": sum(stats.rate_limits.values()),
            "by_scope": _ranked(stats.rate_limits),
        },
        "retries": _ranked(stats.retries),
        "pauses": {
            "total": sum(stats.pause_count.values()),
            "by_scope": _ranked(stats.pause_count),
            "active_at_end": [
                {"scope": p.scope, "reason": p.reason, "until": _iso(p.until)}
                for p in stats.active_pauses()
            ],
        },
        "jira_calls": dict(sorted(stats.jira_calls.items())),
        "failures_by_reason": _ranked(stats.reasons, first="state"),
    }


Item = Any  # a ReportItem, the journal's ItemRecord (any dataclass), or a mapping


def _item_dict(item: Item) -> dict[str, Any]:
    if is_dataclass(item) and not isinstance(item, type):
        out = asdict(item)
        if isinstance(item, ReportItem) and out["detail"] is None:
            del out["detail"]
        elif isinstance(out.get("detail"), str | None) and "reason" in out:
            # The journal's record: its reason code and detail as the report's fields.
            out.update(report_fields(out["reason"], out.pop("detail")))
        return out
    if isinstance(item, Mapping):
        return dict(item)
    raise TypeError(f"report item: expected a dataclass or a mapping, found {type(item).__name__}")


def _json_default(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    return str(value)


def _head_text(head: Mapping[str, Any]) -> str:
    parts = ["{\n"]
    for key, value in head.items():
        text = json.dumps(value, indent=2, ensure_ascii=False, default=_json_default)
        parts.append(f"  {json.dumps(key)}: {text.replace(chr(10), chr(10) + '  ')},\n")
    parts.append('  "items": [')
    return "".join(parts)


def _item_text(item: Item, first: bool) -> str:
    text = json.dumps(redact_value(_item_dict(item)), ensure_ascii=False, default=_json_default)
    return ("\n    " if first else ",\n    ") + text


def _tail(empty: bool) -> str:
    return "]\n}\n" if empty else "\n  ]\n}\n"


def _temp_beside(target: Path) -> tuple[int, str]:
    target.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)


def check_report_path(path: Path | str, option: str = "--report") -> None:
    """Refuse, before anything is sent, a report path that can't be written, so a run never
    ends with its report lost: an InputError naming ``option`` and what to do.

    It tries what writing will do: a temporary file in the target's folder (or, when that
    folder is still to be made, in its nearest existing ancestor), then removes it.
    """
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{option} {target}: is a folder; give a file path")
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise InputError(f"{option} {target}: can't be written ({exc.strerror or exc} in "
                         f"{folder}); give a path in a folder you can write to") from None
    os.close(fd)
    _discard(name)


def _discard(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name)


def write_report(
    path: Path | str,
    stats: RunStats,
    run_info: RunInfo,
    failures: Iterable[Item] = (),
) -> Path:
    """Write the report to ``path`` (atomically) and return the path.

    ``failures`` is iterated once, item by item, while the file is written.
    """
    target = Path(path)
    head = redact_value(report_head(stats, run_info))
    fd, tmp_name = _temp_beside(target)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(_head_text(head))
            first = True
            for item in failures:
                out.write(_item_text(item, first))
                first = False
            out.write(_tail(first))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        _discard(tmp_name)
        raise
    return target


async def write_report_async(
    path: Path | str,
    stats: RunStats,
    run_info: RunInfo,
    failures: AsyncIterable[Item] | Iterable[Item] = (),
) -> Path:
    """``write_report`` for an async source (``journal.records(run_id)``): the items stream
    from the journal into the file, and file work runs in a worker thread."""
    target = Path(path)
    head = redact_value(report_head(stats, run_info))
    fd, tmp_name = await in_thread(_temp_beside, target)
    try:
        out = await in_thread(open, fd, "w", encoding="utf-8")
        try:
            pending = [_head_text(head)]
            first = True
            async for item in _aiter(failures):
                pending.append(_item_text(item, first))
                first = False
                if len(pending) >= _WRITE_BATCH:
                    await in_thread(out.write, "".join(pending))
                    pending.clear()
            pending.append(_tail(first))
            await in_thread(out.write, "".join(pending))
            await in_thread(out.flush)
            await in_thread(os.fsync, fd)
        finally:
            await in_thread(out.close)
        await in_thread(os.replace, tmp_name, target)
    except BaseException:
        await in_thread(_discard, tmp_name)
        raise
    return target


# Items written per thread hop: few hops, little memory.
_WRITE_BATCH = 500


async def _aiter(items: AsyncIterable[Item] | Iterable[Item]) -> AsyncIterator[Item]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
