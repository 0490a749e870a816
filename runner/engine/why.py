"""The reason an item ends without being done, from what the row worker was told.

Each is a ``runner.journal.reasons.Reason``: a stable code for `status` to count, with the
particulars (Jira's messages, the seconds waited, the HTTP status) in its own fields.
"""

from __future__ import annotations

from runner.actions import Action, PythonAction
from runner.errors import GatewayError, GatewayRefusalError, SystemTokenError, TransportError
from runner.jira.client import JiraRequest
from runner.jira.executor import Failed, Uncertain
from runner.job.jobfile import Row
from runner.journal.base import item_key
from runner.journal.reasons import Reason, http

BLOCKED = Reason("environment-blocked")


def failed(outcome: Failed) -> Reason:
    """A call that failed for good (``Failed.reason``: "http 404", "unauthorized",
    "deadline", "attempts: <last error>", or an action's own words)."""
    status = {"status": outcome.status} if outcome.status is not None else {}
    said = "; ".join(outcome.messages)
    if outcome.reason.startswith("http ") and outcome.status is not None:
        return http(outcome.status, outcome.messages)
    if outcome.reason in ("unauthorized", "deadline"):
        return Reason(outcome.reason, said, status)
    if outcome.reason.startswith("attempts: "):
        last = outcome.reason.removeprefix("attempts: ")
        return Reason("attempts", "; ".join(filter(None, (last, said))), status)
    return Reason("action", "; ".join(filter(None, (outcome.reason, said))), status)


def uncertain(outcome: Uncertain) -> Reason:
    status = {"status": outcome.status} if outcome.status is not None else {}
    return Reason("outcome-unknown", outcome.reason, status)


def system_token(exc: SystemTokenError) -> Reason:
    waited = {"waited_s": round(exc.waited_s)} if exc.waited_s is not None else {}
    return Reason("system-token", exc.reason, waited)


def mint_failed(exc: GatewayError | TransportError, blocked: bool) -> tuple[str, Reason]:
    """The state and reason of the items of a user whose mint failed for good (``blocked``:
    the failure blocked the environment)."""
    if blocked:
        return "blocked", BLOCKED
    if isinstance(exc, TransportError):
        status = {"status": exc.status} if exc.status is not None else {}
        return "failed", Reason("mint-failed", exc.reason, status)
    if isinstance(exc, GatewayRefusalError):
        return "blocked", Reason("mint-refused", str(exc))
    return "failed", Reason("mint-failed", str(exc))


def row_stopped(what: str) -> Reason:
    """A row's later action, not sent because an earlier one ended badly (``on_failure``)."""
    return Reason("row-stopped", what)


def target_of(action: Action | PythonAction, row: Row) -> str | None:
    """What an item not sent was for, when its templates can say (a Python action can't)."""
    if isinstance(action, PythonAction):
        return None
    try:
        return target(action.render(row, item_key(row.key, action.index)))
    except Exception:  # rows were checked before the run; the name is only for the report
        return None


def target(request: JiraRequest) -> str:
    """What the item was for, as the report names it: ``POST /rest/api/3/issue/MIG-9/comment``."""
    return f"{request.method} {request.path}"
