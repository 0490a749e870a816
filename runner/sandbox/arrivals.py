"""The sandbox's arrival logs: every Jira request and every mint, as the server saw it.

Off by default (they grow with the job): ``[sandbox] record_arrivals = true``, or a test setting
``world.jira_arrivals = []`` / ``world.mint_arrivals = []``, turns them on. An arrival is
appended when the request arrives, before anything serves it (so a test's hook can act while the
request is on the wire), and its outcome fields are filled in once it is answered.

Each arrival says who sent it (the ``User-Agent``, which names forge-runner's worker), whose
token it carried (the account, not the token), and for a create the item it was for (the
``forge-runner.item`` entity property every create carries) and what it made: enough for a
checker to count lost, duplicated and out-of-order effects, and each budget's use, from the
server's side. ``GET /_sandbox/arrivals`` (``admin.py``) serves the logs as JSON to a test in
another process; ``to_json``/``from_json`` are that format.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

# The entity property forge-runner puts on every create (runner.actions.ITEM_PROPERTY_KEY); the
# sandbox keeps its own copy so it imports nothing of the runner (a test pins the two together).
ITEM_PROPERTY_KEY = "forge-runner.item"


@dataclass(slots=True)
class JiraArrival:
    """One Jira request as it reached the sandbox, before faults, token, limits or endpoint."""

    at: float
    cloud_id: str
    route: str  # "METHOD /rest/api/3/template"
    issue: str | None  # the issueIdOrKey path parameter, if the route has one
    # -- recorded when the log is on (the fields above are known to every arrival) ------------
    path: str = ""  # the request's path, without its query
    sender: str | None = None  # its User-Agent
    account: str | None = None  # whose token it carried (expired or not); None: no known token
    marker: str | None = None  # the item key in the body's forge-runner.item property
    # -- its outcome, filled in when it is answered -------------------------------------------
    status: int | None = None  # what the sandbox answered; None: not yet, or the connection cut
    applied: bool = False  # the endpoint ran and succeeded: its effect happened, answered or not
    created: str | None = None  # the ID of what an applied create made
    points: int = 0  # quota points charged


@dataclass(slots=True)
class MintArrival:
    """One mint as it reached the gateway's limit."""

    at: float
    client_id: str
    allowed: bool  # the mint limit let it through
    sender: str | None = None  # the request's User-Agent
    account: str | None = None  # the user asked for (``userId``)
    issued: bool = False  # a user token was issued


def marker_of(raw: bytes) -> str | None:
    """The ``forge-runner.item`` marker of a request body (a create's), if it has one."""
    if not raw:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    props = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(props, list):
        return None
    for prop in props:
        if isinstance(prop, dict) and prop.get("key") == ITEM_PROPERTY_KEY:
            value = prop.get("value")
            item = value.get("item") if isinstance(value, dict) else None
            return item if isinstance(item, str) else None
    return None


def to_json(arrival: JiraArrival | MintArrival) -> dict[str, Any]:
    return asdict(arrival)


def jira_from_json(data: dict[str, Any]) -> JiraArrival:
    return JiraArrival(**{f.name: data[f.name] for f in fields(JiraArrival) if f.name in data})


def mint_from_json(data: dict[str, Any]) -> MintArrival:
    return MintArrival(**{f.name: data[f.name] for f in fields(MintArrival) if f.name in data})
