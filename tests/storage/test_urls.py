"""The storage URL rules every part of pbtune shares (pbtune.storages): PostgreSQL
spellings, and SQLite's file, in-memory and URI forms."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pbtune.storages import (
    absolute_sqlite_url,
    is_sqlite_memory,
    is_sqlite_uri,
    normalize_url,
    sqlite_file,
)


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
