"""A ready-made sandbox world for tests and benches: two sites, two environments, known users.

``make_sandbox_config()`` builds it; the constants name its sites and users so a test can say
"a deactivated user on acme" without repeating IDs. ``find_specs_dir()`` locates the real
Atlassian specs the sandbox can validate against.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.sandbox.config import (
    SandboxConfig,
    SandboxEnvironment,
    SandboxIssue,
    SandboxSite,
    SandboxUser,
)

if TYPE_CHECKING:
    from runner.sandbox.app import RunningSandbox

# The type of the ``start_sandbox`` fixture: ``async with start_sandbox(config, clock=c) as sb``.
StartSandbox = Callable[..., AbstractAsyncContextManager["RunningSandbox"]]

# Two Jira sites (cloud IDs are UUIDs).
CLOUD_A = "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"  # site "acme"
CLOUD_B = "0a9b8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d"  # site "globex"
INSTALLATION_A = "ari:cloud:ecosystem::installation/3e4d5c6b-7a89-4b0c-9d1e-2f3a4b5c6d7e"
INSTALLATION_B = "ari:cloud:ecosystem::installation/9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"

# Users of acme.
ACME_ACTIVE = (
    "5b10a2844c20165700ede21a",
    "5b10ac8d82e05b22cc7d4ef5",
    "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077",
)
ACME_DEACTIVATED = "5b109f2e9729b51b54dc274d"
ACME_NO_ACCESS = "5b10a0effa615349cb016cd8"
# Users of globex.
GLOBEX_ACTIVE = ("6c20b3955d31276811fef32b", "6c20bd9e93f16c33dd8e5f06")
GLOBEX_DEACTIVATED = "6c20a03f8a3ac62c65ed385e"
GLOBEX_NO_ACCESS = "6c20b1f00b726450dc127de9"
# An account ID no site knows.
UNKNOWN_ACCOUNT = "5b10ffffffffffffffffffff"
# Account IDs of this form are active on both sites without being listed (bulk jobs use them).
ACTIVE_PATTERN = r"^5ca1ab1e[0-9a-f]{16}$"


def pattern_account(n: int) -> str:
    """The ``n``-th generated account ID that every site treats as an active user."""
    return f"5ca1ab1e{n:016x}"


def workspace_ari(cloud_id: str) -> str:
    """The context ARI the gateway accepts by default."""
    return f"ari:cloud:jira:{cloud_id}:workspace/{cloud_id}"


def site_ari(cloud_id: str) -> str:
    """The site ARI third-party code sends (the gateway refuses it)."""
    return f"ari:cloud:jira::site/{cloud_id}"


def _users(active: tuple[str, ...], deactivated: str, no_access: str) -> tuple[SandboxUser, ...]:
    return (
        *(SandboxUser(a, f"Active {i}", "active") for i, a in enumerate(active, 1)),
        SandboxUser(deactivated, "Gone Away", "deactivated"),
        SandboxUser(no_access, "No Access", "no_access"),
    )


def make_sandbox_config() -> SandboxConfig:
    """Environments ``dev`` and ``noimp`` (no impersonation); sites ``acme`` and ``globex``;
    no search lag."""
    acme = SandboxSite(
        name="acme",
        cloud_id=CLOUD_A,
        users=_users(ACME_ACTIVE, ACME_DEACTIVATED, ACME_NO_ACCESS),
        active_account_pattern=ACTIVE_PATTERN,
        issues=tuple(
            SandboxIssue(f"MIG-{n}", "MIG", f"Migrated issue {n}") for n in range(1, 6)
        ),
        projects=("MIG",),
    )
    globex = SandboxSite(
        name="globex",
        cloud_id=CLOUD_B,
        users=_users(GLOBEX_ACTIVE, GLOBEX_DEACTIVATED, GLOBEX_NO_ACCESS),
        active_account_pattern=ACTIVE_PATTERN,
        issues=tuple(SandboxIssue(f"GLX-{n}", "GLX", f"Globex issue {n}") for n in range(1, 4)),
        projects=("GLX",),
    )
    return SandboxConfig(
        port=0,
        # Tests find what they create at once; a test about search lag sets its own.
        search_lag_s=0.0,
        environments={
            "dev": SandboxEnvironment("dev", client_id="dev"),
            "noimp": SandboxEnvironment("noimp", client_id="noimp", allow_impersonation=False),
        },
        sites={"acme": acme, "globex": globex},
    )


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def find_specs_dir() -> Path | None:
    """``$FORGE_RUNNER_SPECS``, else ``shared/specs`` beside the repository; None if absent."""
    configured = os.environ.get("FORGE_RUNNER_SPECS")
    path = Path(configured) if configured else repo_root().parent / "shared" / "specs"
    return path if path.is_dir() else None


def require_specs_dir() -> Path:
    """The specs folder; skips the calling test when absent, but fails it when ``CI=true``."""
    import pytest  # only tests call this; the runtime never needs pytest

    path = find_specs_dir()
    if path is not None:
        return path
    where = os.environ.get("FORGE_RUNNER_SPECS") or str(repo_root().parent / "shared" / "specs")
    message = f"the Atlassian specs folder is missing ({where}); set FORGE_RUNNER_SPECS"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


# A job's comment per row (columns ``issue`` and ``legacy_id``): a create that resume must look up.
COMMENT_ACTION = """\
[[actions]]
type = "comment.add"
issue = "{issue}"
body = "Migrated {legacy_id}"
"""

# The comment, then an idempotent write.
MIGRATION_ACTIONS = COMMENT_ACTION + """
[[actions]]
type = "issue.property.set"
issue = "{issue}"
key = "legacy"
value = { id = "{legacy_id}" }
"""


# The documented operation, selecting exactly the documented fields.
MINT_QUERY = (
    "mutation forge_remote_offlineUserAuthToken($input: OfflineUserAuthTokenInput!) "
    "{ offlineUserAuthToken(input: $input) { success errors { message } authToken { token ttl } } }"
)


def mint_request(context_ids: list[str], user_id: str, query: str = MINT_QUERY) -> dict[str, Any]:
    """The JSON body of an ``offlineUserAuthToken`` request."""
    return {"query": query, "variables": {"input": {"contextIds": context_ids, "userId": user_id}}}


class FakeClock:
    """A clock that moves only when told: pass it as ``clock=`` where a test is about time."""

    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def write_runner_config(
    folder: Path,
    sb: RunningSandbox,
    *,
    environment: str = "dev",
    mint_limit: int = 1000,
    mint_window_s: float = 60.0,
    concurrency: int = 16,
    context_ari: str | None = None,
    journal: str = "journal.db",
    system_token_ttl_s: int | None = None,
    extra: str = "",
) -> Path:
    """A runner config in ``folder`` for the served sandbox ``sb``: its gateway, sites acme and
    globex, and a system token for ``environment`` in a file beside it. Returns its path.

    ``extra`` is appended as is (e.g. ``[retry.jira]`` tables) for a test that needs more.
    """
    from runner.sandbox.systemtokens import issue_system_token

    folder.mkdir(parents=True, exist_ok=True)
    token_file = folder / "system-token"
    token_file.write_text(issue_system_token(sb.config, environment, ttl_s=system_token_ttl_s))
    ari_line = f'context_ari = "{context_ari}"\n' if context_ari else ""
    sites = "".join(
        f"""
[sites.{site.name}]
cloud_id = "{site.cloud_id}"
api_base_url = "{sb.jira_base(site.cloud_id)}"
installation_id = "{INSTALLATION_A if site.cloud_id == CLOUD_A else INSTALLATION_B}"
environment = "{environment}"
{ari_line}"""
        for site in sb.config.sites.values()
    )
    path = folder / "config.toml"
    path.write_text(
        f"""[runner]
concurrency = {concurrency}
journal = "{journal}"

[environments.{environment}]
app_id = "ari:cloud:ecosystem::app/8db5c0f5-3a48-4d2b-9c4b-4d2f0a7e6a11"
gateway_url = "{sb.gateway_url}"
mint_limit = {mint_limit}
mint_window_s = {mint_window_s}

[environments.{environment}.system_token]
file = "system-token"
max_wait_s = 5.0
{sites}
{extra}
"""
    )
    return path
