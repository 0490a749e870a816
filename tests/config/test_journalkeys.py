"""[runner] journal and journal_url_env: an SQLite file, a PostgreSQL URL, or a variable
holding the URL; what each selects, and the errors that say which key is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config.configfile import load_config
from runner.errors import ConfigError
from runner.journal import PostgresJournal, SqliteJournal
from runner.journal.open import describe, journal_target, open_journal
from tests.config.test_configfile import MINIMAL, write

URL = "postgresql://runner:pw@db.example:5432/forge"


def test_a_path_selects_sqlite_and_a_url_postgresql(tmp_path: Path) -> None:
    """A file path is the SQLite journal (the default); a postgresql:// URL is PostgreSQL, and
    the config's repr never shows the URL (it may hold a password)."""
    config = load_config(write(tmp_path, MINIMAL))
    assert journal_target(config.runner) == tmp_path.resolve() / "forge-runner.db"
    assert isinstance(open_journal(journal_target(config.runner)), SqliteJournal)
    config = load_config(write(tmp_path, MINIMAL + f'\n[runner]\njournal = "{URL}"\n'))
    assert journal_target(config.runner) == URL
    assert isinstance(open_journal(journal_target(config.runner)), PostgresJournal)
    assert "pw" not in repr(config.runner)
    assert describe(URL) == "postgresql://runner@db.example:5432/forge"


def test_the_url_can_come_from_a_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """journal_url_env names a variable holding the URL, so a password stays out of the file."""
    monkeypatch.setenv("FORGE_RUNNER_JOURNAL_URL", URL)
    text = MINIMAL + '\n[runner]\njournal_url_env = "FORGE_RUNNER_JOURNAL_URL"\n'
    config = load_config(write(tmp_path, text))
    assert journal_target(config.runner) == URL


@pytest.mark.parametrize(("runner", "env", "said"), [
    ('journal_url_env = "FORGE_RUNNER_JOURNAL_URL"', None, "is not set"),
    ('journal_url_env = "FORGE_RUNNER_JOURNAL_URL"', "/var/db", "set to something else"),
    ('journal = "x.db"\njournal_url_env = "FORGE_RUNNER_JOURNAL_URL"', URL, "not both"),
])
def test_a_wrong_variable_is_a_config_error_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: str, env: str | None, said: str
) -> None:
    """A variable that is not set or holds no URL, or both keys at once, stop the load with
    runner.journal_url_env and what was wrong (never the value itself)."""
    if env is None:
        monkeypatch.delenv("FORGE_RUNNER_JOURNAL_URL", raising=False)
    else:
        monkeypatch.setenv("FORGE_RUNNER_JOURNAL_URL", env)
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, MINIMAL + f"\n[runner]\n{runner}\n"))
    assert "runner.journal_url_env" in str(caught.value) and said in str(caught.value)
    assert "pw" not in str(caught.value)
