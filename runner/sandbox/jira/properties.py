"""Entity property endpoints: an issue's properties and a user's properties."""

from __future__ import annotations

import json
from typing import Any

from runner.sandbox.jira.base import Call, JiraError, Reply, Route

# Jira's documented limits for a property: key length, value as JSON text.
MAX_KEY = 255
MAX_VALUE_CHARS = 32768


def get_issue_property(call: Call) -> Reply:
    issue = call.issue()
    key = call.params["propertyKey"]
    call.core_reads += 1
    if key not in issue.properties:
        raise JiraError(404, (f"The property with key '{key}' does not exist.",))
    return Reply(200, {"key": key, "value": issue.properties[key]})


def set_issue_property(call: Call) -> Reply:
    issue = call.issue()
    key = _checked(call.params["propertyKey"], call.body)
    created = key not in issue.properties
    issue.properties[key] = call.body
    return Reply(201 if created else 200, {})


def get_user_property(call: Call) -> Reply:
    bag = _user_bag(call)
    key = call.params["propertyKey"]
    call.core_reads += 1
    if key not in bag:
        raise JiraError(404, (f"The property with key '{key}' does not exist.",))
    return Reply(200, {"key": key, "value": bag[key]})


def set_user_property(call: Call) -> Reply:
    bag = _user_bag(call)
    key = _checked(call.params["propertyKey"], call.body)
    created = key not in bag
    bag[key] = call.body
    return Reply(201 if created else 200, {})


def _user_bag(call: Call) -> dict[str, Any]:
    """The properties of the user ``accountId`` names, who must be the caller: the sandbox has
    no Jira administrators, and only they may touch another user's record."""
    account = call.query.get("accountId")
    if not account:
        raise JiraError(400, ("The accountId query parameter is required.",))
    if call.site.site.user_state(account) is None:
        raise JiraError(404, (f"The user with account ID '{account}' does not exist.",))
    if account != call.caller:
        raise JiraError(403, ("You can only access your own user properties.",))
    return call.site.user_properties.setdefault(account, {})


def _checked(key: str, value: Any) -> str:
    if len(key) > MAX_KEY:
        raise JiraError(400, (f"The property key can't be longer than {MAX_KEY} characters.",))
    if len(json.dumps(value)) > MAX_VALUE_CHARS:
        raise JiraError(
            400, (f"The property value can't be longer than {MAX_VALUE_CHARS} characters.",)
        )
    return key


ROUTES = [
    Route("GET", "/issue/{issueIdOrKey}/properties/{propertyKey}", get_issue_property),
    Route(
        "PUT", "/issue/{issueIdOrKey}/properties/{propertyKey}", set_issue_property,
        issue_write=True,
    ),
    Route("GET", "/user/properties/{propertyKey}", get_user_property),
    Route("PUT", "/user/properties/{propertyKey}", set_user_property),
]
