"""What the simulated Jira holds, per site: issues and everything hung on them, user properties.

Plain data, no HTTP: the endpoints change it and render it; tests read it back from
``world.parts["jira"]`` to check the effect of a call without going through Jira again.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from runner.sandbox.config import SandboxConfig, SandboxSite

_KEY = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)-(\d+)$")
# Jira's IDs are numeric strings; the sandbox starts each kind at this value.
FIRST_ID = 10000


@dataclass
class Comment:
    id: str
    author: str  # account ID
    body: Any
    created: float
    updated: float
    visibility: dict[str, Any] | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class Worklog:
    id: str
    issue_id: str
    author: str
    started: str
    time_spent_seconds: int
    created: float
    updated: float
    comment: Any = None
    visibility: dict[str, Any] | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class Issue:
    id: str
    key: str
    project: str
    summary: str
    status: str
    created: float
    updated: float
    assignee: str | None = None
    reporter: str | None = None
    # Every other field, as last set (description, labels, custom fields...).
    fields: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    comments: list[Comment] = field(default_factory=list)
    watchers: list[str] = field(default_factory=list)
    worklogs: list[Worklog] = field(default_factory=list)
    # When search (``search/jql``) first sees the issue: Jira's index lags behind its writes.
    indexed_at: float = 0.0


@dataclass
class SiteState:
    site: SandboxSite
    issues: dict[str, Issue] = field(default_factory=dict)  # by key, in creation order
    user_properties: dict[str, dict[str, Any]] = field(default_factory=dict)  # by account ID
    last_number: dict[str, int] = field(default_factory=dict)  # per project key
    _by_id: dict[str, str] = field(default_factory=dict)

    def find(self, id_or_key: str) -> Issue | None:
        """The issue with this ID or key (keys match case-insensitively, as in Jira)."""
        key = self._by_id.get(id_or_key, id_or_key.upper())
        return self.issues.get(key)

    def projects(self) -> set[str]:
        return {*self.site.projects, *(i.project for i in self.issues.values())}

    def statuses(self) -> list[str]:
        """Every status this site knows, in a stable order (their IDs are positions)."""
        names: dict[str, None] = {}
        for issue in self.site.issues:
            names[issue.status] = None
        for transition in self.site.workflow:
            names[transition.to] = None
        return list(names)

    def status_id(self, name: str) -> str:
        known = self.statuses()
        return str(known.index(name) + 1) if name in known else "0"

    def add(self, issue: Issue) -> None:
        self.issues[issue.key] = issue
        self._by_id[issue.id] = issue.key
        match = _KEY.match(issue.key)
        if match:
            project, number = match.group(1), int(match.group(2))
            self.last_number[project] = max(self.last_number.get(project, 0), number)


class JiraState:
    """Every site's state, and the ID counters they share (Jira IDs are unique per site)."""

    def __init__(self, config: SandboxConfig, now: float) -> None:
        self.sites: dict[str, SiteState] = {}
        self.search_lag_s = config.search_lag_s
        self._issue_ids = itertools.count(FIRST_ID)
        self._comment_ids = itertools.count(FIRST_ID)
        self._worklog_ids = itertools.count(FIRST_ID)
        for site in config.sites.values():
            state = SiteState(site)
            for seeded in site.issues:
                state.add(
                    Issue(
                        id=str(next(self._issue_ids)),
                        key=seeded.key.upper(),
                        project=seeded.project,
                        summary=seeded.summary,
                        status=seeded.status,
                        created=now,
                        updated=now,
                    )
                )
            self.sites[site.cloud_id] = state

    def site(self, cloud_id: str) -> SiteState:
        return self.sites[cloud_id]

    def issue(self, cloud_id: str, id_or_key: str) -> Issue | None:
        """Convenience for tests: the issue of that site, or None."""
        return self.sites[cloud_id].find(id_or_key)

    def create_issue(
        self, site: SiteState, project: str, summary: str, reporter: str, now: float
    ) -> Issue:
        """A new issue keyed ``<PROJECT>-<n>``, numbered after every issue the project has."""
        number = site.last_number.get(project, 0) + 1
        statuses = site.statuses()
        issue = Issue(
            id=str(next(self._issue_ids)),
            key=f"{project}-{number}",
            project=project,
            summary=summary,
            status=statuses[0] if statuses else "To Do",
            created=now,
            updated=now,
            reporter=reporter,
            indexed_at=now + self.search_lag_s,
        )
        site.add(issue)
        return issue

    def new_comment_id(self) -> str:
        return str(next(self._comment_ids))

    def new_worklog_id(self) -> str:
        return str(next(self._worklog_ids))

    def snapshot(self) -> dict[str, Any]:
        """Every site's state as plain JSON values, for the inspection report."""
        return {
            cloud_id: {
                "issues": {
                    key: {
                        "id": i.id,
                        "project": i.project,
                        "summary": i.summary,
                        "status": i.status,
                        "assignee": i.assignee,
                        "fields": i.fields,
                        "properties": i.properties,
                        "comments": [
                            {"id": c.id, "author": c.author, "properties": c.properties}
                            for c in i.comments
                        ],
                        "watchers": list(i.watchers),
                        "worklogs": [
                            {
                                "id": w.id,
                                "author": w.author,
                                "timeSpentSeconds": w.time_spent_seconds,
                                "properties": w.properties,
                            }
                            for w in i.worklogs
                        ],
                    }
                    for key, i in site.issues.items()
                },
                "user_properties": site.user_properties,
            }
            for cloud_id, site in self.sites.items()
        }
