"""The project's own request schemas for the endpoints the sandbox serves, taken from Jira's
OpenAPI spec (``jira-platform-openapi.json``) so the sandbox validates without the 2.4 MB file.

Only what those endpoints need: their path and query parameters and their request bodies, in
JSON Schema. Spec conventions kept on purpose, so both validators give the same verdict:
``readOnly`` properties may not be sent; ``format`` int32/int64/date-time is checked; OAS
``nullable`` is written as a ``null`` type. ``tests/sandbox/test_jira_schemas.py`` holds these
against the real spec.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
BOOLEAN: Schema = {"type": "boolean"}
INT32: Schema = {"type": "integer", "format": "int32"}
INT64: Schema = {"type": "integer", "format": "int64"}
STRINGS: Schema = {"type": "array", "items": STRING}
ANY: Schema = {}
READ_ONLY: Schema = {"readOnly": True}


def _obj(props: Schema, *, read_only: tuple[str, ...] = (), closed: bool = False) -> Schema:
    schema: Schema = {
        "type": "object",
        "properties": {**props, **{name: READ_ONLY for name in read_only}},
    }
    if closed:
        schema["additionalProperties"] = False
    return schema


ENTITY_PROPERTY = _obj({"key": STRING, "value": ANY}, closed=True)
ENTITY_PROPERTIES: Schema = {"type": "array", "items": ENTITY_PROPERTY}
VISIBILITY = _obj(
    {
        "identifier": {"type": ["string", "null"]},
        "type": {"type": "string", "enum": ["group", "role"]},
        "value": STRING,
    }
)
HISTORY_PARTICIPANT = _obj(
    {n: STRING for n in ("avatarUrl", "displayName", "displayNameKey", "id", "type", "url")}
)
HISTORY_METADATA = _obj(
    {
        **{
            n: STRING
            for n in (
                "activityDescription", "activityDescriptionKey", "description",
                "descriptionKey", "emailDescription", "emailDescriptionKey", "type",
            )
        },
        "actor": HISTORY_PARTICIPANT,
        "cause": HISTORY_PARTICIPANT,
        "generator": HISTORY_PARTICIPANT,
        "extraData": {"type": "object", "additionalProperties": STRING},
    }
)
ISSUE_TRANSITION = _obj(
    {"id": STRING, "looped": BOOLEAN},
    read_only=("expand", "fields", "hasScreen", "isAvailable", "isConditional", "isGlobal",
               "isInitial", "name", "to"),
)
FIELD_UPDATE_OPERATION = _obj(
    {"add": ANY, "copy": ANY, "edit": ANY, "remove": ANY, "set": ANY}, closed=True
)
ISSUE_UPDATE_DETAILS = _obj(
    {
        "fields": {"type": "object"},
        "historyMetadata": HISTORY_METADATA,
        "properties": ENTITY_PROPERTIES,
        "transition": ISSUE_TRANSITION,
        "update": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": FIELD_UPDATE_OPERATION},
        },
    }
)
COMMENT = _obj(
    {"body": ANY, "properties": ENTITY_PROPERTIES, "visibility": VISIBILITY},
    read_only=("author", "created", "id", "jsdAuthorCanSeeRequest", "jsdPublic",
               "renderedBody", "self", "updateAuthor", "updated"),
)
USER = _obj(
    {"accountId": {"type": "string", "maxLength": 128}, "key": STRING, "name": STRING},
    read_only=("accountType", "active", "appType", "applicationRoles", "avatarUrls",
               "displayName", "emailAddress", "expand", "groups", "locale", "self", "timeZone"),
    closed=True,
)
WORKLOG = _obj(
    {
        "comment": ANY,
        "properties": ENTITY_PROPERTIES,
        "started": {"type": "string", "format": "date-time"},
        "timeSpent": STRING,
        "timeSpentSeconds": INT64,
        "visibility": VISIBILITY,
    },
    read_only=("author", "created", "id", "issueId", "self", "updateAuthor", "updated"),
)
SEARCH_REQUEST = _obj(
    {
        "expand": STRING,
        "fields": STRINGS,
        "fieldsByKeys": BOOLEAN,
        "jql": STRING,
        "maxResults": INT32,
        "nextPageToken": STRING,
        "properties": STRINGS,
        "reconcileIssues": {"type": "array", "items": INT64},
    },
    closed=True,
)

_ISSUE = {"issueIdOrKey": STRING}
_PROPERTY = {"issueIdOrKey": STRING, "propertyKey": STRING}
_USER_QUERY = {"accountId": {"type": "string", "maxLength": 128}, "userKey": STRING,
               "username": STRING}

# Per route ("METHOD /rest/api/3/template"): path and query parameter schemas, the body schema
# (None: the operation takes no body) and whether the body is required.
ENDPOINTS: dict[str, Schema] = {
    "GET /rest/api/3/myself": {"path": {}, "query": {"expand": STRING}},
    "POST /rest/api/3/issue": {
        "path": {}, "query": {"updateHistory": BOOLEAN}, "body": ISSUE_UPDATE_DETAILS,
    },
    "GET /rest/api/3/issue/{issueIdOrKey}": {
        "path": _ISSUE,
        "query": {"fields": STRINGS, "fieldsByKeys": BOOLEAN, "expand": STRING,
                  "properties": STRINGS, "updateHistory": BOOLEAN, "failFast": BOOLEAN},
    },
    "PUT /rest/api/3/issue/{issueIdOrKey}": {
        "path": _ISSUE,
        "query": {"notifyUsers": BOOLEAN, "overrideScreenSecurity": BOOLEAN,
                  "overrideEditableFlag": BOOLEAN, "returnIssue": BOOLEAN, "expand": STRING},
        "body": ISSUE_UPDATE_DETAILS,
    },
    "GET /rest/api/3/issue/{issueIdOrKey}/comment": {
        "path": _ISSUE,
        "query": {"startAt": INT64, "maxResults": INT32, "expand": STRING,
                  "orderBy": {"type": "string", "enum": ["created", "-created", "+created"]}},
    },
    "POST /rest/api/3/issue/{issueIdOrKey}/comment": {
        "path": _ISSUE, "query": {"expand": STRING}, "body": COMMENT,
    },
    "GET /rest/api/3/issue/{issueIdOrKey}/transitions": {
        "path": _ISSUE,
        "query": {"expand": STRING, "transitionId": STRING, "skipRemoteOnlyCondition": BOOLEAN,
                  "includeUnavailableTransitions": BOOLEAN, "sortByOpsBarAndStatus": BOOLEAN},
    },
    "POST /rest/api/3/issue/{issueIdOrKey}/transitions": {
        "path": _ISSUE, "query": {}, "body": ISSUE_UPDATE_DETAILS,
    },
    "PUT /rest/api/3/issue/{issueIdOrKey}/assignee": {"path": _ISSUE, "query": {}, "body": USER},
    "GET /rest/api/3/issue/{issueIdOrKey}/watchers": {"path": _ISSUE, "query": {}},
    "POST /rest/api/3/issue/{issueIdOrKey}/watchers": {
        "path": _ISSUE, "query": {}, "body": STRING,
    },
    "GET /rest/api/3/issue/{issueIdOrKey}/properties/{propertyKey}": {
        "path": _PROPERTY, "query": {},
    },
    "PUT /rest/api/3/issue/{issueIdOrKey}/properties/{propertyKey}": {
        "path": _PROPERTY, "query": {}, "body": ANY,
    },
    "GET /rest/api/3/user/properties/{propertyKey}": {
        "path": {"propertyKey": STRING}, "query": _USER_QUERY,
    },
    "PUT /rest/api/3/user/properties/{propertyKey}": {
        "path": {"propertyKey": STRING}, "query": _USER_QUERY, "body": ANY,
    },
    "GET /rest/api/3/issue/{issueIdOrKey}/worklog": {
        "path": _ISSUE,
        "query": {"startAt": INT64, "maxResults": INT32, "startedAfter": INT64,
                  "startedBefore": INT64, "expand": STRING},
    },
    "POST /rest/api/3/issue/{issueIdOrKey}/worklog": {
        "path": _ISSUE,
        "query": {
            "notifyUsers": BOOLEAN,
            "adjustEstimate": {"type": "string", "enum": ["new", "leave", "manual", "auto"]},
            "newEstimate": STRING, "reduceBy": STRING, "expand": STRING,
            "overrideEditableFlag": BOOLEAN,
        },
        "body": WORKLOG,
    },
    "GET /rest/api/3/search/jql": {
        "path": {},
        "query": {"jql": STRING, "nextPageToken": STRING, "maxResults": INT32,
                  "fields": STRINGS, "expand": STRING, "properties": STRINGS,
                  "fieldsByKeys": BOOLEAN, "failFast": BOOLEAN,
                  "reconcileIssues": {"type": "array", "items": INT64}},
    },
    "POST /rest/api/3/search/jql": {"path": {}, "query": {}, "body": SEARCH_REQUEST},
}
