"""``[environments.X.system_token]``: where an environment's system token comes from.

Secrets never live in the file: the token comes from an environment variable, a file, a command,
a ``forge-runner serve`` process on this host (over loopback), or the journal's PostgreSQL, where
serve replicas keep every installation's tokens sealed (``sealed = true``, the key read from
``secret_env``/``secret_file``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runner.config.ari import AriError, validate_ari
from runner.config.tables import Table, describe
from runner.tokenroute import SecretRef, loopback_url_problem, secret_ref

KINDS = ("env", "file", "command", "serve", "sealed")


@dataclass(frozen=True)
class SystemTokenSource:
    """Where an environment's system token comes from: one of env, file, command, serve, sealed.

    ``serve`` is the loopback URL of a ``forge-runner serve`` process on this host, which keeps
    the freshest token of each installation; ``installation_id`` says whose, and the shared
    secret is read from ``serve_secret`` (an environment variable or a file). ``sealed`` is the
    journal's PostgreSQL URL, where serve replicas keep every installation's tokens sealed
    (``runner.minting.sealed``); the key is read from ``seal_key``."""

    env: str | None = None
    file: Path | None = None
    command: tuple[str, ...] | None = None
    serve: str | None = None
    installation_id: str | None = None
    serve_secret: SecretRef | None = None
    # Only ever set in memory, by the serve process for its own jobs; never read from a file.
    serve_secret_value: str | None = field(default=None, repr=False, compare=False)
    sealed: str | None = field(default=None, repr=False)  # may hold a password
    seal_key: SecretRef | None = None
    # Only ever set in memory, by a serve replica for its own runs.
    seal_key_value: str | None = field(default=None, repr=False, compare=False)
    # Work waits this long for a valid system token before the environment is blocked.
    max_wait_s: float = 600.0
    # Relative files and commands run from here (the config file's folder).
    cwd: Path = Path(".")


def token_source(t: Table, base: Path, journal_url: str | None) -> SystemTokenSource:
    """The table ``t`` read; ``journal_url`` is the config's PostgreSQL journal (for sealed)."""
    expected = "exactly one of env, file, command, serve or sealed (where the token comes from)"
    if "token" in t:
        # Said plainly: a token in a config file ends up in backups and version control.
        raise t.error("token", expected, "a token in the file (secrets never live in the config)")
    given = [k for k in KINDS if k in t]
    if len(given) != 1:
        found = "none of them" if not given else " and ".join(given)
        raise t.make_error(t.path, expected, found)
    env = t.nonempty("env", None, expected="an environment variable name")
    file = t.nonempty("file", None, expected="a file path")
    command = t.strings("command", None, nonempty=True)
    serve: str | None = t.nonempty("serve", None, expected="the serve process's loopback URL")
    installation_id = None
    secret = None
    if serve is not None:
        problem = loopback_url_problem(serve)
        if problem:
            # The token travels only over loopback: never to another address.
            raise t.error("serve", "an http://127.0.0.1:PORT URL (loopback only)",
                          f"{serve!r}: {problem}")
        installation_id = _installation(t)
        secret = secret_ref(t, base, required=True)
    sealed_url = None
    seal_key = None
    if "sealed" in t:
        if t.raw("sealed") is not True:
            raise t.error("sealed", "true (the tokens serve replicas sealed in the journal)",
                          describe(t.raw("sealed")))
        t.boolean("sealed", True)
        if journal_url is None:
            raise t.error("sealed", "[runner] journal set to the replicas' postgresql:// URL "
                          "(sealed tokens live in that database)", "a SQLite journal")
        sealed_url = journal_url
        installation_id = _installation(t)
        seal_key = secret_ref(t, base, required=True)
    file_path = None
    if file is not None:
        file_path = Path(file).expanduser()
        file_path = file_path if file_path.is_absolute() else base / file_path
    source = SystemTokenSource(
        env=env,
        file=file_path,
        command=command,
        serve=serve.rstrip("/") if serve is not None else None,
        installation_id=installation_id,
        serve_secret=secret,
        sealed=sealed_url,
        seal_key=seal_key,
        max_wait_s=t.number("max_wait_s", SystemTokenSource.max_wait_s, minimum=0),
        cwd=base,
    )
    t.done()
    return source


def _installation(t: Table) -> str:
    value: str = t.string("installation_id")
    try:
        validate_ari(value, product="ecosystem", type="installation")
    except AriError as exc:
        raise t.error("installation_id", f"an ARI of the form {exc.expected}",
                      describe(value)) from None
    return value
