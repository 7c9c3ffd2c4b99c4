"""The storage URL rules every part of pbtune shares (pbtune.storages): PostgreSQL
spellings and settings (through PgBouncer too), and SQLite's file, in-memory and URI
forms."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import event

from pbtune import StorageError
from pbtune.storages import (
    absolute_sqlite_url,
    is_sqlite_memory,
    is_sqlite_uri,
    normalize_url,
    sqlite_file,
)
from pbtune.storages._engine import create_storage_engine


def test_postgresql_urls_drive_psycopg() -> None:
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///a.db") == "sqlite:///a.db"


@pytest.mark.parametrize(
    ("url", "memory", "uri", "file"),
    [
        ("sqlite:///runs/a.db", False, False, "runs/a.db"),
        ("sqlite:////abs/a.db", False, False, "/abs/a.db"),
        ("sqlite://", True, False, None),
        ("sqlite:///:memory:", True, False, None),
        ("sqlite:///file:a.db?mode=ro&uri=true", False, True, None),
        ("postgresql://u@h/db", False, False, None),
        ("not a url", False, False, None),
    ],
)
def test_sqlite_forms(url: str, memory: bool, uri: bool, file: str | None) -> None:
    assert (is_sqlite_memory(url), is_sqlite_uri(url), sqlite_file(url)) == (memory, uri, file)


def test_a_relative_sqlite_file_is_made_absolute(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_sqlite_url("sqlite:///a.db") == f"sqlite:///{os.path.join(tmp_path, 'a.db')}"
    for url in ("sqlite:////abs/a.db", "sqlite:///file:a.db?uri=true", "sqlite://",
                "postgresql+psycopg://u:secret@h/db"):
        assert absolute_sqlite_url(url) == url


def _connect_args(url: str) -> dict[str, object]:
    """What pbtune's engine for ``url`` would pass psycopg, without connecting."""
    engine = create_storage_engine(normalize_url(url))
    seen: dict[str, object] = {}

    @event.listens_for(engine, "do_connect")
    def capture(_dialect: object, _record: object, _args: object,
                params: dict[str, object]) -> None:
        seen.update(params)
        raise _Captured

    with pytest.raises(_Captured):
        engine.connect()
    return seen


class _Captured(Exception):
    pass


def test_a_postgresql_url_reaches_the_server_with_pbtunes_settings() -> None:
    params = _connect_args("postgresql://u@h/db?options=-csearch_path%3Dx")
    assert params["application_name"] == "pbtune"
    assert params["options"] == ("-c idle_in_transaction_session_timeout=60000 "
                                 "-csearch_path=x")  # the URL's options are kept
    assert "prepare_threshold" not in params  # psycopg's default: prepared statements
    named = _connect_args("postgresql://u@h/db?application_name=tuner")
    assert named["application_name"] == "tuner"


def test_a_url_through_pgbouncer_sends_what_a_pooler_takes() -> None:
    params = _connect_args("postgresql://u@h:6432/db?pbtune_pooler=transaction")
    assert "pbtune_pooler" not in params  # pbtune's, not libpq's
    assert "options" not in params  # PgBouncer refuses startup options
    assert params["prepare_threshold"] is None  # the next transaction: another server
    session = _connect_args("postgresql://u@h:6432/db?pbtune_pooler=session")
    assert "options" not in session and "prepare_threshold" not in session


@pytest.mark.parametrize("value", ["statement", "yes", "transaction&pbtune_pooler=session"])
def test_a_pooler_option_must_name_a_pool_mode(value: str) -> None:
    with pytest.raises(StorageError, match="pbtune_pooler must be one of transaction, session"):
        create_storage_engine(normalize_url(f"postgresql://u@h/db?pbtune_pooler={value}"))
