"""Rules every journal applies the same way: state moves, resume or new, what may be stored."""

from __future__ import annotations

import difflib
import json
import os
import secrets
import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from runner.errors import JobChangedError, JournalError
from runner.journal.base import REQUEUEABLE_STATES, ItemState, RunRecord, RunState
from runner.logs.redact import redact, redact_value

# Reasons are counted by `status`; details are for one item. Both stay short so a journal of a
# million failures stays small and a report readable.
MAX_REASON_CHARS = 200
MAX_DETAIL_CHARS = 2000
# "A small JSON of what Jira returned that matters later": IDs and keys, not whole payloads.
MAX_RESULT_BYTES = 16_384
# Lines of the job's diff shown when a changed job is refused.
MAX_DIFF_LINES = 40


def check_move(key: str, old: ItemState | None, new: ItemState) -> None:
    """Refuse any move out of ``done``: a done item is never sent again."""
    if old is ItemState.DONE and new is not ItemState.DONE:
        raise refused_move(key, new)


def refused_move(key: str, new: ItemState) -> JournalError:
    return JournalError(f"item {key} is already done; refusing to mark it {new}")


def parse_states(states: Iterable[str]) -> tuple[ItemState, ...]:
    try:
        return tuple(dict.fromkeys(ItemState(s) for s in states))
    except ValueError as exc:
        raise JournalError(f"unknown item state: {exc}") from None


def requeueable(states: Iterable[str]) -> tuple[ItemState, ...]:
    parsed = parse_states(states)
    wrong = [s for s in parsed if s not in REQUEUEABLE_STATES]
    if wrong:
        allowed = ", ".join(REQUEUEABLE_STATES)
        raise JournalError(f"cannot requeue {', '.join(wrong)} items (only {allowed})")
    return parsed


def resumes(
    latest: RunRecord | None,
    *,
    job_path: str,
    job_fingerprint: str,
    job_text: str,
    fresh: bool,
) -> bool:
    """Whether ``open_run`` picks ``latest`` (the job's newest run) up again rather than
    starting anew: always, unless ``fresh``. A finished run is picked up too, so its done items
    are not sent again; only rows it never saw are left to do.

    Only the newest run counts: once a fresh run has started, older runs of the same job are
    history, not work to pick up.
    """
    if fresh or latest is None:
        return False
    if latest.job_fingerprint != job_fingerprint:
        raise JobChangedError(job_path, latest.run_id, job_changes(latest.job_text, job_text),
                              finished=latest.state is RunState.FINISHED)
    return True


def job_changes(old_text: str, new_text: str, *, max_lines: int = MAX_DIFF_LINES) -> str:
    """A unified diff of the job's text, cut to ``max_lines`` lines."""
    diff = list(
        difflib.unified_diff(
            old_text.splitlines(),
            new_text.splitlines(),
            fromfile="job when the run started",
            tofile="job now",
            lineterm="",
            n=1,
        )
    )
    if not diff:
        return "The job's text is the same: what it reads (its source rows) changed."
    added = sum(1 for line in diff if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in diff if line.startswith("-") and not line.startswith("---"))
    head = f"{removed} line(s) removed, {added} added:"
    shown = diff[:max_lines]
    if len(diff) > max_lines:
        shown.append(f"... ({len(diff) - max_lines} more diff lines)")
    return "\n".join([head, *shown])


def new_run_id(now: float) -> str:
    """Short and typable: ``r-20261128-ab12cd``."""
    return f"r-{time.strftime('%Y%m%d', time.gmtime(now))}-{secrets.token_hex(3)}"


def this_holder() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


def job_identity(job_path: str | os.PathLike[str]) -> str:
    """The job's path as runs are matched by: absolute, symlinks resolved."""
    return str(Path(job_path).resolve())


def clean_text(text: str | None, limit: int) -> str | None:
    """``text`` with secrets hidden, cut to ``limit`` characters; None for empty."""
    if not text:
        return None
    cleaned = redact(text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def clean_result(result: Mapping[str, Any] | None) -> str | None:
    """``result`` as compact JSON with secrets hidden; refuses anything large."""
    if result is None:
        return None
    try:
        encoded = json.dumps(redact_value(dict(result)), separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise JournalError(f"an item's result must be JSON: {exc}") from None
    if len(encoded.encode()) > MAX_RESULT_BYTES:
        raise JournalError(
            f"an item's result is {len(encoded)} characters; keep only the IDs and keys "
            f"created (at most {MAX_RESULT_BYTES} bytes)"
        )
    return encoded


def load_result(encoded: str | None) -> Mapping[str, Any] | None:
    if encoded is None:
        return None
    value = json.loads(encoded)
    return value if isinstance(value, dict) else {"value": value}
