"""Every error forge-runner raises, in one hierarchy.

    RunnerError                      base of everything below
    ├── InputError                   a bad file or argument; nothing was sent (exit 2)
    │   ├── FieldError               a key of a file is wrong: its path, expected, found
    │   │   ├── ConfigError          a config key is missing or wrong
    │   │   └── ManifestError        a Forge manifest is not YAML or not a manifest
    │   ├── JobError                 a job file, source row or template is wrong
    │   ├── JobChangedError          the job changed since its unfinished run started
    │   ├── SealKeyError             the system tokens' seal key is missing, malformed or not the
    │   │                            database's (serve replicas, sealed sources)
    │   └── RunNotFoundError         no run has the ID given
    ├── SystemTokenError             no valid system token could be had for an environment
    ├── InvocationTokenError         a Forge Invocation Token failed verification (answered 401)
    ├── TransportError               the request may not have arrived: timeout, reset, 5xx
    │   ├── RequestNotSentError      it surely did not: the connection was never made
    │   └── JiraUncertainError       a Jira write's outcome is unknown; it was not sent again
    ├── GatewayError                 the gateway answered in a way we don't understand
    │   └── GatewayRefusalError      it refused with a message no [gateway_messages] pattern matches
    ├── UserRefusedError             the gateway won't mint for this user (deactivated, no access)
    ├── JiraCallError                a Jira call failed for good (status, Jira's messages)
    ├── ActionError                  an action can't be completed for one row (the item fails)
    ├── JournalError                 the journal can't be opened, read or written (exit 6)
    │   ├── NoJournalError           no journal at the path given to status or report (exit 2)
    │   └── RunLockedError           another process is running this job (exit 4)
    ├── LaneLostError                a worker no longer holds a lane: it sends no more in it
    └── BlockedEnvironmentError      an environment can't mint at all (wrong ARI, scopes) (exit 3)

Errors carry structured fields and build their message from them. No message ever holds a
token: callers pass identifiers (account IDs, request IDs), never credentials.

``ExitCode`` is what the command exits with for each outcome, these errors' included
(``ExitCode.of``).
"""

from __future__ import annotations

import signal
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """The command's exit codes; README.md and ``forge-runner --help`` list the same."""

    OK = 0
    FAILED = 1  # some items (run) or some checks (doctor) failed
    INVALID_INPUT = 2
    BLOCKED = 3
    ALREADY_RUNNING = 4
    # A run with work to do of which nothing was done (every item skipped), or a source with
    # no rows: a nightly sync that lost everyone's access must not look green to cron.
    NOTHING_DONE = 5
    # The journal can't be opened, read or written: corrupt, unreadable, read-only, disk full.
    # What was journaled is safe; the same command resumes once the file or disk is fixed.
    JOURNAL = 6
    # An unexpected exception: a bug. sysexits' EX_SOFTWARE, so it never reads as 1 (items
    # failed), which is what Python exits with on an uncaught exception.
    BUG = 70
    # 128 + the signal's number, as shells report a process the signal ended and as systemd
    # expects of a service stopped with SIGTERM.
    INTERRUPTED = 128 + signal.SIGINT
    TERMINATED = 128 + signal.SIGTERM

    @classmethod
    def stopped_by(cls, signum: int | None) -> ExitCode:
        """The code of a run stopped by ``signum``; a stop asked for in code counts as SIGINT."""
        return cls.TERMINATED if signum == signal.SIGTERM else cls.INTERRUPTED

    @classmethod
    def of(cls, error: RunnerError) -> ExitCode:
        """The code the command exits with when ``error`` ends it."""
        # Most specific first: NoJournalError and RunLockedError are JournalErrors.
        if isinstance(error, InputError | NoJournalError):
            return cls.INVALID_INPUT
        if isinstance(error, RunLockedError):
            return cls.ALREADY_RUNNING
        if isinstance(error, JournalError):
            return cls.JOURNAL
        if isinstance(error, BlockedEnvironmentError | SystemTokenError):
            return cls.BLOCKED
        return cls.FAILED


class RunnerError(Exception):
    """Base of every forge-runner error."""


class InputError(RunnerError):
    """A file or argument is wrong. Nothing was sent."""


class FieldError(InputError):
    """A key of a file is missing or wrong.

    ``key`` is the key's path, ``expected`` what was expected, ``found`` what was there, and
    ``file`` the file, when known.
    """

    def __init__(self, key: str, expected: str, found: str, *, file: Path | str | None = None):
        self.key = key
        self.expected = expected
        self.found = found
        self.file = file
        where = f"{file}: " if file else ""
        super().__init__(f"{where}{key}: expected {expected}, found {found}")


class ConfigError(FieldError):
    """A config key is missing or wrong; ``key`` is its dotted path
    (``environments.prod.mint_limit``)."""


class SealKeyError(InputError):
    """The key sealing system tokens in the database is missing, malformed, or not the one they
    were sealed with. The message says which and what to do; it never holds the key."""


class JobError(InputError):
    """A job file, one of its rows or one of its templates is wrong.

    ``where`` names the place: a key path (``actions[2].path``) or a row (``rows.csv line 17``).
    """

    def __init__(self, where: str, problem: str, *, file: Path | str | None = None):
        self.where = where
        self.problem = problem
        self.file = file
        prefix = f"{file}: " if file else ""
        super().__init__(f"{prefix}{where}: {problem}")


class ManifestError(FieldError):
    """A Forge manifest (``manifest.yml``) is not YAML, or not shaped like a manifest; ``key``
    is the key's path (``modules.endpoint[0].auth``)."""


class JobChangedError(InputError):
    """The job changed since its latest run started: picking it up would mix two different jobs.

    ``changes`` summarises what changed (a unified diff of the job text, shortened).
    """

    def __init__(self, job_path: Path | str, run_id: str, changes: str, *,
                 finished: bool = False):
        self.job_path = job_path
        self.run_id = run_id
        self.changes = changes
        if finished:
            # Its done items would not be done again under a changed job: say what --fresh costs.
            what = (f"the job changed since its run {run_id}, which finished; restore it to "
                    f"add rows to that run, or pass --fresh to start a new run that does every "
                    f"row again (its creates too).")
        else:
            what = (f"the job changed since its unfinished run {run_id} started; restore it, "
                    f"or pass --fresh to start a new run.")
        super().__init__(f"{job_path}: {what}\n{changes}")


class RunNotFoundError(InputError):
    """No run in the journal has this ID."""

    def __init__(self, run_id: str, journal: Path | str | None = None):
        self.run_id = run_id
        self.journal = journal
        where = f" in {journal}" if journal else ""
        super().__init__(f"no run {run_id!r}{where}")


class SystemTokenError(RunnerError):
    """No valid system token could be had for an environment."""

    def __init__(self, environment: str, reason: str, *, waited_s: float | None = None):
        self.environment = environment
        self.reason = reason
        self.waited_s = waited_s
        waited = f"; waited {waited_s:.0f} s" if waited_s is not None else ""
        super().__init__(f"environment {environment}: no valid system token ({reason}{waited})")


class InvocationTokenError(RunnerError):
    """A request to the remote carries no valid Forge Invocation Token: bad signature, unknown
    key, wrong ``iss`` or ``aud``, expired or not yet valid. ``reason`` says which; the token
    itself is never part of the message."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"invocation token refused: {reason}")


class TransportError(RunnerError):
    """The request may not have arrived or was not processed: timeout, reset, 5xx."""

    def __init__(self, what: str, reason: str, *, status: int | None = None,
                 retry_after: float | None = None):
        self.what = what
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        super().__init__(f"{what}: {reason}")


class RequestNotSentError(TransportError):
    """The connection was never made (refused, unresolvable, connect timeout): nothing was sent,
    so even a non-idempotent request is safe to send again."""


class JiraCallError(RunnerError):
    """A Jira call failed for good: ``reason``, the HTTP ``status`` if one came, and Jira's
    ``errorMessages``/``errors`` as ``messages``."""

    def __init__(self, what: str, reason: str, *, status: int | None = None,
                 messages: tuple[str, ...] = ()):
        self.what = what
        self.reason = reason
        self.status = status
        self.messages = messages
        detail = f" (HTTP {status})" if status is not None else ""
        said = f": {'; '.join(messages)}" if messages else ""
        super().__init__(f"{what}: {reason}{detail}{said}")


class JiraUncertainError(TransportError):
    """A non-idempotent Jira call may or may not have taken effect (a transport error or a 5xx
    after it left); it was not sent again blindly."""


class GatewayError(RunnerError):
    """The gateway answered in a shape that is neither a token nor a known refusal."""

    def __init__(self, reason: str, *, request_id: str | None = None, trace_id: str | None = None):
        self.reason = reason
        self.request_id = request_id
        self.trace_id = trace_id
        ids = f" (request_id={request_id}, trace_id={trace_id})" if request_id or trace_id else ""
        super().__init__(f"gateway: {reason}{ids}")


class GatewayRefusalError(GatewayError):
    """The gateway refused a mint with a message no ``[gateway_messages]`` pattern matches: the
    config can't tell a user's problem from the environment's, so the items are blocked."""


class UserRefusedError(RunnerError):
    """The gateway refuses to mint for one user, for good: that user's items are skipped."""

    def __init__(self, account_id: str, reason: str, request_id: str | None = None):
        self.account_id = account_id
        self.reason = reason
        self.request_id = request_id
        ids = f" (request_id={request_id})" if request_id else ""
        super().__init__(f"user {account_id} can't be impersonated: {reason}{ids}")


class ActionError(RunnerError):
    """An action can't be completed for one row, e.g. the issue has no transition of the name
    the job gave. Permanent: the item fails with ``reason``; nothing is retried."""

    def __init__(self, action: str, reason: str):
        self.action = action
        self.reason = reason
        super().__init__(f"{action}: {reason}")


class JournalError(RunnerError):
    """The journal can't be opened, read or written."""


class LaneLostError(RunnerError):
    """This worker no longer holds a lane (its lease lapsed or another worker took it over):
    nothing more of that lane is sent or journaled by it."""

    def __init__(self, run_id: str, site: str, account_id: str, why: str = "its lease ended"):
        self.lane = (run_id, site, account_id)
        super().__init__(f"run {run_id}: the lane of {account_id} on {site} is no longer this "
                         f"worker's ({why}); another worker goes on with it")


class NoJournalError(JournalError):
    """No journal at the path ``status`` or ``report`` was given (they never create one)."""

    def __init__(self, path: Path | str):
        self.path = path
        super().__init__(f"no journal at {path}; give the journal's path with --journal, or "
                         f"the config naming it with --config")


class RunLockedError(JournalError):
    """Another process is already running this job."""

    def __init__(self, run_id: str, holder: str):
        self.run_id = run_id
        self.holder = holder
        super().__init__(f"run {run_id} is already running ({holder}); not starting it twice")


class BlockedEnvironmentError(RunnerError):
    """An environment can't mint at all: the context ARIs or the app's scopes are wrong."""

    def __init__(self, environment: str, diagnostic: str):
        self.environment = environment
        self.diagnostic = diagnostic
        super().__init__(f"environment {environment} is blocked: {diagnostic}")
