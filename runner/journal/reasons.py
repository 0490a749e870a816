"""Why an item was not done: a stable code, its short text, and the particulars apart.

The journal's ``reason`` column holds the code (``user-deactivated``, ``http-404``), so `status`
counts 500 deactivated users as one line; the ``detail`` column holds this item's particulars
as a JSON object (``message``: Jira's or the gateway's words; ``status``, ``waited_s``;
``target``: the method and path the item was for). A journal written before codes holds free
text in both: ``fields_of`` reads such a detail as its ``message``.

Every string is redacted before it is cut, so a secret cut in half is still hidden.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.logs.redact import redact

# Kept short: one item's detail, not a payload (the journal's detail column takes 2,000).
MAX_MESSAGE_CHARS = 1000
MAX_TARGET_CHARS = 300

Field = str | int | float

# The short text of each code (`http-NNN` codes: ``_HTTP_TEXTS``). A code not here (a journal's
# free-text reason from before codes) is shown as it is.
TEXTS: Mapping[str, str] = {
    "user-deactivated": "the user is deactivated",
    "user-no-access": "the user has no access to the app",
    "user-refused": "the user can't be impersonated",
    "environment-blocked": "the environment can't mint",
    "system-token": "no usable system token",
    "mint-failed": "the user's token could not be minted",
    "mint-refused": "the gateway refused the mint in words no pattern knows",
    "unauthorized": "Jira refused the user's fresh token (401)",
    "deadline": "the run's deadline passed",
    "attempts": "every attempt failed",
    "action": "the action could not be completed",
    "render": "the row could not fill the action's templates",
    "python": "the job's Python action raised",
    "outcome-unknown": "sent, but the answer was lost; not sent again",
    "lookup-failed": "could not tell whether the create was made; not sent again",
    "python-may-have-run": "a non-idempotent Python action may have run; not run again",
    "row-stopped": "an earlier action of the row failed (on_failure = \"stop-row\")",
}
_HTTP = re.compile(r"^http-(\d{3})$")
_HTTP_TEXTS = {
    400: "Jira refused the request as invalid",
    401: "Jira refused the user's token",
    403: "the user may not do this",
    404: "not found, or the user can't see it",
    409: "Jira reported a conflict",
}


@dataclass(frozen=True)
class Reason:
    """``code`` is stable and shared; ``message`` and ``fields`` are this item's own."""

    code: str
    message: str = ""
    fields: Mapping[str, Field] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return text_of(self.code)

    def detail(self, target: str | None = None) -> str:
        """The journal's ``detail``: compact JSON of the message, fields and target."""
        out: dict[str, Field] = {k: _cut(v, MAX_MESSAGE_CHARS) if isinstance(v, str) else v
                                 for k, v in self.fields.items()}
        if self.message:
            out["message"] = _cut(self.message, MAX_MESSAGE_CHARS)
        if target:
            out["target"] = _cut(target, MAX_TARGET_CHARS)
        return json.dumps(out, separators=(",", ":"), ensure_ascii=False) if out else ""


def text_of(code: str | None) -> str:
    """The short text of ``code`` (the code itself when it is not one of ours)."""
    if not code:
        return ""
    http = _HTTP.match(code)
    if http:
        status = int(http.group(1))
        return f"{_HTTP_TEXTS.get(status, 'Jira answered')} (http {status})"
    return TEXTS.get(code, code)


def fields_of(detail: str | None) -> dict[str, Any]:
    """A journaled ``detail`` as its fields; free text (an older journal's) as the message."""
    if not detail:
        return {}
    if detail.startswith("{"):
        try:
            value = json.loads(detail)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
    return {"message": detail}


# What a report says of an item's reason, in this order (CSV columns).
REPORT_FIELDS = ("reason", "reason_text", "message", "target", "status", "waited_s")


def report_fields(reason: str | None, detail: str | None) -> dict[str, Any]:
    """A journaled reason and detail as a report's fields: the code, its text, the item's
    message, what it was for (``target``), the HTTP status and the seconds waited (None when
    the item has none)."""
    fields = fields_of(detail)
    return {
        "reason": reason or "",
        "reason_text": text_of(reason),
        "message": fields.get("message", ""),
        "target": fields.get("target", ""),
        "status": fields.get("status"),
        "waited_s": fields.get("waited_s"),
    }


def http(status: int, messages: tuple[str, ...] | list[str] = ()) -> Reason:
    return Reason(f"http-{status}", "; ".join(messages), {"status": status})


def user_refused(message: str) -> Reason:
    """A user the gateway won't mint for: the code says why when its words do."""
    lowered = message.lower()
    if "deactivated" in lowered:
        code = "user-deactivated"
    elif "access" in lowered:
        code = "user-no-access"
    else:
        code = "user-refused"
    return Reason(code, message)


def short(text: str, limit: int) -> str:
    """``text`` redacted, then cut to ``limit`` characters with an ellipsis."""
    return _cut(text, limit)


def _cut(text: str, limit: int) -> str:
    cleaned = redact(text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
