"""Storages this process may not write: a PostgreSQL user without the right to create
tables, a read-only SQLite database, a path that names a folder. Each is one
`StorageError` line that says what to do, and following its advice works."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from sqlalchemy.engine import make_url

import pbtune
from conftest import postgres_url
from pbtune import StorageError


def _create(storage: str, name: str = "perm") -> pbtune.Study:
    return pbtune.create_study(
        name=name, storage=storage, metric="loss", mode="min",
        space={"lr": pbtune.Float(1e-3, 0.5, log=True)}, population_size=2,
        steps_per_trial=1, max_steps=2, checkpoint_root="unused", load_if_exists=True)


class Schema:
    """A new PostgreSQL schema and a role that may use it but not create tables in it."""

    def __init__(self, url: str) -> None:
        self.admin_url = url
        tag = uuid.uuid4().hex[:8]
        self.name, self.role = f"pbtune_perm_{tag}", f"pbtune_perm_{tag}_user"

    def url(self, *, as_role: bool) -> str:
        base = make_url(self.admin_url)
        if as_role:
            base = base.set(username=self.role, password=None)
        text = base.render_as_string(hide_password=False)
        separator = "&" if "?" in text else "?"
        return f"{text}{separator}options={quote(f'-csearch_path={self.name}')}"

    def sql(self, statement: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(statement)  # type: ignore[arg-type]


@pytest.fixture
def schema() -> Iterator[Schema]:
    chosen = Schema(postgres_url())
    try:
        chosen.sql(f"CREATE ROLE {chosen.role} LOGIN")
    except psycopg.errors.InsufficientPrivilege:
        pytest.skip("the test server's user may not create roles")
    chosen.sql(f"CREATE SCHEMA {chosen.name}")
    chosen.sql(f"GRANT USAGE ON SCHEMA {chosen.name} TO {chosen.role}")
    try:
        yield chosen
    finally:
        chosen.sql(f"DROP SCHEMA {chosen.name} CASCADE")
        chosen.sql(f"DROP OWNED BY {chosen.role}")
        chosen.sql(f"DROP ROLE {chosen.role}")


def test_a_postgresql_user_who_may_not_create_tables_is_told_what_to_grant(
        schema: Schema) -> None:
    with pytest.raises(StorageError) as raised:
        _create(schema.url(as_role=True))
    line = str(raised.value)
    assert "\n" not in line and "permission denied" in line
    assert "Grant it CREATE on the schema" in line and "USAGE on their sequences" in line

    # Its advice, followed: the tables made by a user who may, and the grants.
    pbtune.Storage(schema.url(as_role=False)).dispose()
    schema.sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema.name} "
               f"TO {schema.role}")
    schema.sql(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema.name} TO {schema.role}")
    assert len(_create(schema.url(as_role=True)).trials()) == 2


def test_a_read_only_sqlite_database_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "study.db"
    _create(f"sqlite:///{db}")
    read_only = f"sqlite:///file:{db}?mode=ro&uri=true"
    assert len(pbtune.load_study("perm", storage=read_only).trials()) == 2  # reads work
    with pytest.raises(StorageError) as raised:
        _create(read_only, name="another")
    line = str(raised.value)
    assert "\n" not in line and "cannot be written" in line


def test_a_sqlite_path_that_names_a_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as raised:
        _create(f"sqlite:///{tmp_path}")
    line = str(raised.value)
    assert "\n" not in line and "names a file, not a folder" in line
